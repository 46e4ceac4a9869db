//! `cargo xtask kind-up` and `kind-down`: a local Kubernetes cluster running the chart.
//!
//! `kind-up` creates the cluster from `k8s/kind-config.yaml` unless `kind get clusters`
//! already lists it, builds the image and `kind load`s it (nodes cannot pull a local
//! image), installs metrics-server with `--kubelet-insecure-tls` (kind's kubelets have
//! self-signed certificates; without metrics the HPA shows `<unknown>` and never scales),
//! installs the chart with `charts/cart-service/ci/kind-values.yaml`, then waits with
//! kube-rs. Every step is safe to repeat. `kind-down` deletes the cluster if it exists.

use std::time::Duration;

use xshell::Shell;

use crate::cluster::{KubeStep, NAMESPACE, RELEASE, Release};
use crate::command::Invocation;
use crate::deploy::{helm_install, put_pinned_tools_on_path, reach_hint};
use crate::docker;
use crate::flags;
use crate::image::Build;
use crate::plan::{Plan, Step};
use crate::tools;

/// The cluster's configuration (owned by the chart's maintainers).
pub const KIND_CONFIG: &str = "k8s/kind-config.yaml";
/// Chart values for kind: small requests, an HPA that scales on a laptop.
pub const KIND_VALUES: &str = "charts/cart-service/ci/kind-values.yaml";

impl flags::KindUp {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let build = Build::for_head(sh, self.tag.clone())?;
        let plan = up_plan(&self, &build);
        if self.dry_run {
            println!("{plan}");
            return Ok(());
        }
        put_pinned_tools_on_path(sh);
        for tool in [&tools::KIND, &tools::HELM] {
            tool.require(sh)?;
        }
        // kind runs its nodes as containers, so the engine must answer even with --no-build.
        docker::require_docker_engine(sh)?;
        if !self.no_build {
            docker::require_buildx(sh)?;
        }
        plan.execute(sh)
    }
}

impl flags::KindDown {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let plan = down_plan(&self.name);
        if self.dry_run {
            println!("{plan}");
            return Ok(());
        }
        tools::KIND.require(sh)?;
        plan.execute(sh)
    }
}

fn up_plan(flags: &flags::KindUp, build: &Build) -> Plan {
    let name = flags.name.as_str();
    let release = Release {
        name: RELEASE.to_owned(),
        namespace: NAMESPACE.to_owned(),
        context: Some(format!("kind-{name}")),
    };
    let context = format!("kind-{name}");
    let mut plan = Plan::new("cargo xtask kind-up").step(Step::Unless {
        probe: get_clusters(),
        line: name.to_owned(),
        then: Invocation::new("kind").args([
            "create",
            "cluster",
            "--name",
            name,
            "--config",
            KIND_CONFIG,
            "--wait",
            "120s",
        ]),
    });
    if !flags.no_build {
        plan = plan.extend(build.steps());
    }
    plan.run(Invocation::new("kind").args(["load", "docker-image", &build.tag, "--name", name]))
        .run(Invocation::new("helm").args([
            "repo",
            "add",
            "metrics-server",
            tools::METRICS_SERVER_REPO,
            "--force-update",
        ]))
        .run(Invocation::new("helm").args([
            "upgrade",
            "--install",
            "metrics-server",
            "metrics-server/metrics-server",
            "--version",
            tools::METRICS_SERVER_CHART_VERSION,
            "--namespace",
            "kube-system",
            "--kube-context",
            &context,
            "--set",
            "args={--kubelet-insecure-tls}",
            "--wait",
            "--timeout",
            "5m",
        ]))
        .run(helm_install(
            &release,
            &[KIND_VALUES.to_owned()],
            Some(build.repository_and_tag()),
        ))
        .step(Step::Kube(KubeStep::WaitReady {
            release: release.clone(),
            timeout: Duration::from_secs(flags.timeout),
        }))
        .step(Step::Say(reach_hint(&release)))
}

fn down_plan(name: &str) -> Plan {
    Plan::new("cargo xtask kind-down").step(Step::If {
        probe: get_clusters(),
        line: name.to_owned(),
        then: Invocation::new("kind").args(["delete", "cluster", "--name", name]),
    })
}

fn get_clusters() -> Invocation {
    Invocation::new("kind").args(["get", "clusters"])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Task, Xtask};
    use crate::image::VERSION;

    fn kind_up(args: &[&str]) -> flags::KindUp {
        let Task::KindUp(flags) = Xtask::parse_from(args).task else {
            panic!("not kind-up");
        };
        flags
    }

    #[test]
    fn kind_up_creates_builds_loads_installs_metrics_server_and_the_chart_then_waits() {
        let flags = kind_up(&["cargo xtask", "kind-up"]);
        let build = Build::new(None, "0123456789ab", "2026-01-02T03:04:05Z");

        let text = up_plan(&flags, &build).to_string();

        insta::assert_snapshot!(pinned_versions_named(&text));
    }

    #[test]
    fn kind_up_no_build_loads_the_given_image_without_building() {
        let flags = kind_up(&[
            "cargo xtask",
            "kind-up",
            "--name",
            "dev",
            "--no-build",
            "--tag",
            "cart-service:dev",
        ]);
        let build = Build::new(flags.tag.clone(), "0123456789ab", "now");

        let plan = up_plan(&flags, &build);

        let programs: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Run(invocation) => Some(invocation.to_string()),
                _ => None,
            })
            .collect();
        assert!(
            !programs.iter().any(|p| p.contains("docker build")),
            "{programs:?}"
        );
        assert_eq!(
            programs[0],
            "kind load docker-image cart-service:dev --name dev"
        );
        assert!(
            programs[3].ends_with("--set image.repository=cart-service --set image.tag=dev"),
            "{}",
            programs[3]
        );
    }

    #[test]
    fn kind_down_deletes_the_cluster_only_if_it_exists() {
        let text = down_plan("cart").to_string();

        insta::assert_snapshot!(text);
    }

    /// The plan with the versions that change on every bump (the crate's, the
    /// metrics-server chart's) and its repository named, so the snapshot shows the plan.
    fn pinned_versions_named(text: &str) -> String {
        text.replace(VERSION, "[VERSION]")
            .replace(
                tools::METRICS_SERVER_CHART_VERSION,
                "[METRICS_SERVER_CHART_VERSION]",
            )
            .replace(tools::METRICS_SERVER_REPO, "[METRICS_SERVER_REPO]")
    }
}
