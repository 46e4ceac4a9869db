//! `cargo xtask deploy`: a kube-rs check that the current kubeconfig context (or
//! `--context`) has an API server that answers, `helm upgrade --install` of the chart into
//! it, then a kube-rs wait until every `Deployment` and `StatefulSet` of the release is
//! ready. `kind-up` builds its install step here too, so both install the chart the same
//! way. Running it twice is an upgrade to the same state.

use std::time::Duration;

use xshell::Shell;

use crate::cluster::{self, KubeStep, Release};
use crate::command::Invocation;
use crate::flags;
use crate::image::split_reference;
use crate::plan::{Plan, Step};
use crate::tools;

impl flags::Deploy {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let plan = self.plan();
        if self.dry_run {
            println!("{plan}");
            return Ok(());
        }
        crate::install::ensure(sh, &[&tools::PINNED_HELM], false)?;
        put_pinned_tools_on_path(sh);
        tools::HELM.require(sh)?;
        plan.execute(sh)
    }

    /// The cluster check comes first: helm without a kubeconfig falls back to
    /// `localhost:8080`, which may be anything, `cargo xtask dev`'s service included.
    fn plan(&self) -> Plan {
        let release = self.target.release();
        let image = self.image.as_deref().map(split_reference);
        Plan::new("cargo xtask deploy")
            .step(Step::Kube(KubeStep::CheckCluster {
                release: release.clone(),
            }))
            .run(helm_install(&release, &self.values, image))
            .step(Step::Kube(KubeStep::WaitReady {
                release: release.clone(),
                timeout: Duration::from_secs(self.timeout),
            }))
            .step(Step::Say(reach_hint(&release)))
    }
}

/// Puts `target/tools/bin` (where `cargo xtask tools` installs the pinned helm) first on
/// the shell's `PATH`, so a plan's `helm` is the pinned one when it is installed.
pub fn put_pinned_tools_on_path(sh: &Shell) {
    let pinned = crate::workspace_root().join("target/tools/bin");
    let path = sh.var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(pinned).chain(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(dirs) {
        sh.set_var("PATH", joined);
    }
}

impl flags::ReleaseArgs {
    pub fn release(&self) -> Release {
        Release {
            name: self.release.clone(),
            namespace: self.namespace.clone(),
            context: self.context.clone(),
        }
    }
}

/// `helm upgrade --install` of the chart: the release, its namespace (created when
/// missing), the context, values files in order and, if given, the image to run.
pub fn helm_install(
    release: &Release,
    values: &[String],
    image: Option<(&str, &str)>,
) -> Invocation {
    let mut helm = Invocation::new("helm").args([
        "upgrade",
        "--install",
        &release.name,
        cluster::CHART,
        "--namespace",
        &release.namespace,
        "--create-namespace",
    ]);
    if let Some(context) = &release.context {
        helm = helm.args(["--kube-context", context]);
    }
    for file in values {
        helm = helm.args(["--values", file]);
    }
    if let Some((repository, tag)) = image {
        helm = helm.args([
            "--set".to_owned(),
            format!("image.repository={repository}"),
            "--set".to_owned(),
            format!("image.tag={tag}"),
        ]);
    }
    helm
}

/// What to run next once the release is ready.
pub fn reach_hint(release: &Release) -> String {
    let context = release
        .context
        .as_ref()
        .map_or_else(String::new, |c| format!(" --context {c}"));
    format!(
        "release {name} is ready in namespace {ns}. Next:\n\
         \x20 cargo xtask k6 --release {name} --namespace {ns}{context}        # load test through a port-forward\n\
         \x20 cargo xtask hpa-demo --release {name} --namespace {ns}{context}  # watch the HPA scale\n\
         \x20 kubectl -n {ns} port-forward svc/{name}-cart-service 8080:8080   # then curl http://127.0.0.1:8080/healthz",
        name = release.name,
        ns = release.namespace,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Task, Xtask};

    fn plan_for(args: &[&str]) -> String {
        let Task::Deploy(deploy) = Xtask::parse_from(args).task else {
            panic!("not deploy");
        };
        deploy.plan().to_string()
    }

    #[test]
    fn deploy_checks_the_current_context_then_installs_the_chart_and_waits_with_kube_rs() {
        let text = plan_for(&["cargo xtask", "deploy"]);

        let first = text.lines().nth(1).unwrap();
        assert!(
            first.starts_with("  1. (kube-rs) check that a kubeconfig names the cluster"),
            "the cluster check must come before helm touches anything: {first}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn deploy_passes_context_values_and_image_through() {
        let text = plan_for(&[
            "cargo xtask",
            "deploy",
            "--release",
            "shop",
            "--namespace",
            "prod",
            "--context",
            "gke",
            "-f",
            "a.yaml",
            "--values",
            "b.yaml",
            "--image",
            "registry:5000/cart-service:1.2.3",
            "--timeout",
            "60",
        ]);

        insta::assert_snapshot!(text);
    }

    #[test]
    fn reach_hint_names_the_next_commands_for_the_release() {
        let hint = reach_hint(&Release {
            name: "cart".into(),
            namespace: "cart".into(),
            context: Some("kind-cart".into()),
        });

        assert!(
            hint.contains("cargo xtask k6 --release cart --namespace cart --context kind-cart"),
            "{hint}"
        );
        assert!(hint.contains("svc/cart-cart-service 8080:8080"), "{hint}");
    }
}
