//! `cargo xtask e2e`: the deployment story run for real, on whatever cluster and Docker
//! engine it is given (kind after `kind-up`, or any other kubeconfig context). It builds
//! the image from the Dockerfile, loads it into the nodes, installs the chart into a fresh
//! namespace that enforces the restricted Pod Security Standard, runs `helm test`, then
//! checks through kube-rs what users rely on: the API and the downward API, the log
//! shipper, traces in Jaeger, k6's thresholds, the HPA both ways, rollouts and pod loss
//! without a failed request, Redis data surviving its pod, and the chart's Redis Cluster
//! mode surviving the loss of a master. Each step is timed and a
//! summary table ends the run; any failure fails the task.

mod checks;
mod disruption;
pub mod http;
mod redis_cluster;
pub mod report;
mod setup;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, bail};
use kube::Client;
use xshell::Shell;

use crate::cluster::Release;
use crate::deploy::put_pinned_tools_on_path;
use crate::flags;
use crate::image::Build;
use crate::tools;
use report::Report;

pub use disruption::LOAD_IMAGE;
pub use setup::build_image;

/// The values `e2e` installs with, on top of the chart's defaults.
pub const VALUES: &str = "charts/cart-service/ci/e2e-values.yaml";

/// The steps that set the release up, in order.
const SETUP: [&str; 4] = ["image", "load", "namespace", "install"];

/// The steps, in order: the first four set the release up and stop the run when one
/// fails; the checks after them each run and report.
pub const STEPS: [(&str, &str); 14] = [
    (
        "image",
        "docker build the Dockerfile; check the image runs as 65532 and report its size",
    ),
    (
        "load",
        "load every image the release runs into the cluster's nodes",
    ),
    (
        "namespace",
        "create the namespace fresh, labelled pod-security.kubernetes.io/enforce=restricted",
    ),
    (
        "install",
        "helm upgrade --install --wait with ci/e2e-values.yaml and the image built",
    ),
    (
        "helm-test",
        "helm test: the chart's own test pods must pass",
    ),
    (
        "api",
        "a cart round trip through a kube-rs port-forward; /healthz names the real pod and node",
    ),
    (
        "log-shipper",
        "the request's trace_id appears in the log-shipper container's output",
    ),
    (
        "traces",
        "the request's trace is in the release's Jaeger (query API)",
    ),
    (
        "k6",
        "scripts/k6-load-test.js with the pinned k6 through a port-forward; any failed threshold fails",
    ),
    (
        "hpa",
        "/stress load until the HPA scales the Deployment up, then no load until it scales down",
    ),
    (
        "rollout",
        "restart the Deployment while steady load runs through the Service: 0 failed requests",
    ),
    (
        "pod-delete",
        "delete one cart pod while steady load runs through the Service: 0 failed requests",
    ),
    (
        "redis-persistence",
        "delete the Redis pod; carts written before are there once it is back",
    ),
    (
        "redis-cluster",
        "redis.mode cluster in <namespace>-cluster: hook forms it, an upgrade leaves it alone, helm test, a master deleted under load",
    ),
];

impl flags::E2e {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let build = Build::for_head(sh, self.tag.clone())?;
        if self.dry_run {
            print!("{}", self.describe(&build));
            return Ok(());
        }
        for skipped in &self.skip {
            if !STEPS.iter().any(|(name, _)| name == skipped) {
                bail!("--skip {skipped}: no such step (see `cargo xtask e2e --dry-run`)");
            }
        }
        // Built here when missing: `ci` builds only what its own steps use, and k6 is not one.
        crate::install::ensure(sh, &[&tools::PINNED_HELM, &tools::PINNED_K6], false)?;
        put_pinned_tools_on_path(sh);
        tools::HELM.require(sh)?;
        tools::PINNED_K6.require()?;
        let release = Release {
            name: self.release.clone(),
            namespace: self.namespace.clone(),
            context: self.context.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let report = runtime.block_on(async {
            let client = release.connect().await?;
            let mut run = Run {
                sh,
                flags: &self,
                build,
                release,
                client,
                report: Report::new("cargo xtask e2e"),
                request: None,
            };
            run.all().await;
            anyhow::Ok(run.report)
        })?;
        println!("{report}");
        let failed = report.failed();
        if !failed.is_empty() {
            bail!(
                "e2e failed: {}; the namespace {} is kept for a look (`kubectl -n {} get pods,events`)",
                failed.join(", "),
                self.namespace,
                self.namespace
            );
        }
        Ok(())
    }

    fn describe(&self, build: &Build) -> String {
        let mut text = format!(
            "cargo xtask e2e would, against the current Docker engine and kubeconfig context{}:\n",
            crate::cluster::context_suffix(self.context.as_deref())
        );
        for (index, (name, what)) in STEPS.iter().enumerate() {
            let skipped = if self.skip.iter().any(|s| s == name) {
                "  (skipped)"
            } else {
                ""
            };
            let _ = writeln!(text, "  {:>2}. {name:<17} {what}{skipped}", index + 1);
        }
        let _ = writeln!(
            text,
            "  image {}, release {} in namespace {}; the namespace is deleted at the end unless --keep or a step failed",
            build.tag, self.release, self.namespace
        );
        text
    }
}

/// The first object `api` lists with the label selector, or an error naming it as `what`.
async fn first_labelled<K>(api: &kube::Api<K>, selector: &str, what: &str) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = api
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .with_context(|| format!("cannot list {what}s labelled {selector}"))?;
    listed
        .items
        .into_iter()
        .next()
        .with_context(|| format!("no {what} labelled {selector}"))
}

/// One run: what every step needs, and what earlier steps found for later ones.
struct Run<'a> {
    sh: &'a Shell,
    flags: &'a flags::E2e,
    build: Build,
    release: Release,
    client: Client,
    report: Report,
    /// The pod and trace id of the API step's first request, for the log and trace checks.
    request: Option<checks::Traced>,
}

impl Run<'_> {
    async fn all(&mut self) {
        for (name, _) in STEPS {
            if self.flags.skip.iter().any(|s| s == name) {
                self.report.skip(name, "--skip");
                continue;
            }
            // Every step builds on the set-up steps: after one of them fails, nothing runs.
            if self.report.rows.iter().any(|row| {
                SETUP.contains(&row.name) && matches!(row.outcome, report::Outcome::Failed(_))
            }) {
                self.report.skip(name, "the release was not set up");
                continue;
            }
            println!("==> {name}");
            let started = Instant::now();
            let result = self.step(name).await;
            self.report.record(name, started, result);
        }
        if self.report.failed().is_empty() && !self.flags.keep {
            let started = Instant::now();
            let result = setup::delete_namespace(&self.client, &self.release.namespace).await;
            self.report.record("cleanup", started, result);
        }
    }

    async fn step(&mut self, name: &str) -> anyhow::Result<String> {
        match name {
            "image" => setup::image(self.sh, self.flags, &self.build),
            "load" => setup::load(self.sh, self.flags, &self.build, &self.release),
            "namespace" => setup::namespace(&self.client, &self.release.namespace).await,
            "install" => setup::install(self.sh, &self.release, &self.build),
            "helm-test" => setup::helm_test(self.sh, &self.client, &self.release).await,
            "api" => {
                let traced = checks::api(&self.client, &self.release).await?;
                let found = format!(
                    "pod {} on node {}, trace {}",
                    traced.pod, traced.node, traced.trace_id
                );
                self.request = Some(traced);
                Ok(found)
            }
            "log-shipper" => match &self.request {
                Some(traced) => checks::log_shipper(&self.client, &self.release, traced).await,
                None => bail!("no traced request: the api step did not pass"),
            },
            "traces" => match &self.request {
                Some(traced) => checks::traces(&self.client, &self.release, traced).await,
                None => bail!("no traced request: the api step did not pass"),
            },
            "k6" => checks::k6(self.sh, &self.client, &self.release).await,
            "hpa" => disruption::hpa(&self.client, &self.release).await,
            "rollout" => disruption::rollout(&self.client, &self.release).await,
            "pod-delete" => disruption::pod_delete(&self.client, &self.release).await,
            "redis-persistence" => disruption::redis(&self.client, &self.release).await,
            "redis-cluster" => {
                let keep = self.flags.keep;
                redis_cluster::redis_cluster(
                    self.sh,
                    &self.client,
                    &self.release,
                    &self.build,
                    keep,
                )
                .await
            }
            other => bail!("no step {other}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Task, Xtask};

    #[test]
    fn dry_run_lists_every_step_and_marks_the_skipped_ones() {
        let Task::E2e(e2e) = Xtask::parse_from(["cargo xtask", "e2e", "--skip", "hpa,k6"]).task
        else {
            panic!("not e2e");
        };
        let build = Build::new(Some("cart-service:e2e".to_owned()), "abc", "now");

        let text = e2e.describe(&build);

        assert_eq!(
            text.lines().count(),
            STEPS.len() + 2,
            "every step listed: {text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_e2e_values_file_is_one_of_the_sets_ci_checks() {
        let sets = crate::chart::ci_values_files().unwrap();

        assert!(
            sets.iter()
                .any(|path| path.ends_with(VALUES.rsplit('/').next().unwrap())),
            "{sets:?}"
        );
    }
}
