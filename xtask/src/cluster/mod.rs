//! Everything that speaks to a Kubernetes API with kube-rs: which release the tasks act on
//! and how its objects are found (by the chart's standard labels, so no object name is
//! hard-coded twice), the check that a cluster is configured and answers before anything
//! uses it, waiting for readiness, port-forwarding and the HPA table. Each in-process step
//! of a plan is a [`KubeStep`], printable for `--dry-run`.

pub mod connect;
pub mod hpa;
#[cfg(test)]
pub mod mock;
pub mod pods;
pub mod ready;

use std::fmt;
use std::time::Duration;

/// The Helm release and where it lives: one place for the names every cluster task uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// kubeconfig context; `None` is the current one.
    pub context: Option<String>,
}

/// Defaults shared by `kind-up`, `deploy`, `k6` and `hpa-demo`.
pub const RELEASE: &str = "cart";
pub const NAMESPACE: &str = "cart";
pub const CHART: &str = "charts/cart-service";
/// The chart's label for the cart-service pods, Deployment and HPA (`component: api`).
pub const API_COMPONENT: &str = "api";
/// The container that serves HTTP in those pods, and its port's name.
pub const CONTAINER: &str = "cart-service";
pub const HTTP_PORT_NAME: &str = "http";
pub const DEFAULT_HTTP_PORT: u16 = 8080;

impl Release {
    /// `app.kubernetes.io/instance=<release>`: every object the chart renders.
    pub fn selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.name)
    }

    /// The cart-service pods, Deployment and HPA of this release (not Redis, not the collector).
    pub fn api_selector(&self) -> String {
        self.component_selector(API_COMPONENT)
    }

    /// One component of this release (`redis`, `jaeger`, `test`, ...), by the chart's label.
    pub fn component_selector(&self, component: &str) -> String {
        format!(
            "{},app.kubernetes.io/component={component}",
            self.selector()
        )
    }
}

/// An in-process step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeStep {
    /// Fail unless a kubeconfig names the release's cluster and its API server answers.
    CheckCluster { release: Release },
    /// Wait until every `Deployment` and `StatefulSet` of the release is ready.
    WaitReady { release: Release, timeout: Duration },
    /// Forward a local port to the release's ready pods until stopped.
    PortForward { release: Release, local_port: u16 },
}

impl KubeStep {
    /// Runs the step on a runtime of its own: plans are run from synchronous code.
    pub fn execute(&self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match self {
            Self::CheckCluster { release } => runtime.block_on(release.connect()).map(drop),
            Self::WaitReady { release, timeout } => runtime.block_on(async {
                let client = release.connect().await?;
                ready::wait_for_release(client, release, *timeout).await
            }),
            Self::PortForward {
                release,
                local_port,
            } => runtime.block_on(async {
                let client = release.connect().await?;
                let (listener, _) = pods::bind(*local_port).await?;
                pods::serve(listener, client, release.clone()).await;
                Ok(())
            }),
        }
    }
}

impl fmt::Display for KubeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CheckCluster { release } => write!(
                f,
                "check that a kubeconfig names the cluster of {} and that its API server answers",
                release.context.as_deref().map_or_else(
                    || "the current context".to_owned(),
                    |c| format!("context {c}")
                ),
            ),
            Self::WaitReady { release, timeout } => write!(
                f,
                "wait up to {}s until every Deployment and StatefulSet labelled {} in namespace {}{} is ready",
                timeout.as_secs(),
                release.selector(),
                release.namespace,
                context_suffix(release.context.as_deref()),
            ),
            Self::PortForward {
                release,
                local_port,
            } => write!(
                f,
                "port-forward 127.0.0.1:{local_port} to the ready pods labelled {} in namespace {}{}, one pod per connection in turn",
                release.api_selector(),
                release.namespace,
                context_suffix(release.context.as_deref()),
            ),
        }
    }
}

/// " (context X)" or "" for the current context.
pub fn context_suffix(context: Option<&str>) -> String {
    context.map_or_else(String::new, |c| format!(" (context {c})"))
}
