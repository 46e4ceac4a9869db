//! The Helm chart as the tasks and tests see it: where it lives, its `ci/*-values.yaml`
//! sets, and rendering it with the pinned Helm into documents that deserialize into
//! k8s-openapi types. `cargo xtask chart <check>` (in `check.rs`) runs the external
//! checks; the typed assertions are the tests in `tests/`.

mod check;
mod rules;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::command::Invocation;

/// The chart, relative to the workspace root.
pub const CHART: &str = "charts/cart-service";

/// The oldest Kubernetes the chart supports (Chart.yaml `kubeVersion`): templates render
/// against it, since a `go install`ed Helm would otherwise assume v1.20.
pub const KUBE_VERSION: &str = "1.29.0";

/// The value sets CI renders, lints and checks: `charts/cart-service/ci/*-values.yaml`, sorted.
pub fn ci_values_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = crate::workspace_root().join(CHART).join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The name of a value set: `kind` for `ci/kind-values.yaml`.
pub fn set_name(values_file: &Path) -> String {
    let file = values_file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.trim_end_matches("-values.yaml").to_owned()
}

/// `helm template` of the chart as release `release` in `namespace`, with values files
/// and `--set` pairs applied in order.
pub fn template(
    helm: &Path,
    release: &str,
    namespace: &str,
    values_files: &[PathBuf],
    sets: &[(&str, &str)],
) -> Invocation {
    let mut invocation = Invocation::new(&helm.display().to_string()).args([
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for file in values_files {
        invocation = invocation.args(["--values".to_owned(), file.display().to_string()]);
    }
    for (key, value) in sets {
        invocation = invocation.args(["--set".to_owned(), format!("{key}={value}")]);
    }
    invocation
}
