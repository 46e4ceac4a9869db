//! The cluster tasks need kube-rs, k8s-openapi and rustls, which take longer to build than
//! the rest of the xtask together, so they are compiled only with the `cluster` feature and
//! `ci`, `dev` and `gen` start after a short build. A build without the feature hands a
//! cluster task to `cargo run --package xtask --features cluster` with the same arguments:
//! `cargo xtask <task>` stays the one entry point.

use anyhow::{Context, bail};
use xshell::Shell;

use crate::command::Invocation;

/// Set for the relaunched xtask: a build that still lacks the feature stops instead of
/// relaunching itself again.
const RELAUNCHED: &str = "XTASK_RELAUNCHED_WITH_CLUSTER";

/// Runs this command line again in an xtask built with the cluster feature and exits with
/// its status.
pub fn with_cluster_feature(sh: &Shell) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let task = args.first().map_or("", String::as_str);
    if sh.var_os(RELAUNCHED).is_some() {
        bail!(
            "`{task}` needs the cluster feature, but the relaunched xtask was built without it; \
             run `cargo run --package xtask --features cluster -- {task}`"
        );
    }
    let invocation = invocation(args.iter().cloned()).env(RELAUNCHED, "1");
    // On stderr, so a relaunched `--dry-run` prints only its plan on stdout.
    eprintln!(
        "cargo xtask {task}: needs the cluster feature (kube-rs), running it through \
         `cargo run --package xtask --features cluster` (first time: a few minutes to build)"
    );
    let status = std::process::Command::from(invocation.to_cmd(sh))
        .status()
        .with_context(|| format!("cannot run `{invocation}`"))?;
    // The relaunched xtask has reported its own outcome; only its exit code is left to pass on.
    std::process::exit(status.code().unwrap_or(1));
}

/// `cargo run` of the xtask with the cluster feature and `args` after `--`.
fn invocation(args: impl IntoIterator<Item = String>) -> Invocation {
    Invocation::new("cargo")
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--features",
            "cluster",
            "--",
        ])
        .args(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_task_reruns_with_the_feature_and_the_same_arguments() {
        let args = [
            "e2e",
            "--tag",
            "cart-service:dev",
            "--build-with",
            "testbed with-net",
        ];

        let shown = invocation(args.map(String::from)).to_string();

        assert_eq!(
            shown,
            "cargo run --quiet --package xtask --features cluster -- \
             e2e --tag cart-service:dev --build-with 'testbed with-net'"
        );
    }
}
