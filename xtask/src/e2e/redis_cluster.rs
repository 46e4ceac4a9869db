//! The `redis-cluster` step: the chart's `redis.mode: cluster` run for real, in a namespace
//! of its own beside the standalone release. It installs the chart (the hook Job forms the
//! cluster), upgrades it unchanged (the hook must leave the formed cluster alone: the same
//! node ids before and after), runs `helm test`, then deletes a master pod while the load
//! pod sends requests through the Service, and requires that the service answers again and
//! the cluster is whole once the pod is back. Requests failing while the master is gone are
//! counted, not forbidden: until its replica is promoted (or it comes back), its slots have
//! no one to serve them, and the service answers 503 for them by design.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use http::Method;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, DeleteParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};
use tokio::io::AsyncReadExt as _;
use xshell::Shell;

use super::checks::call;
use super::disruption::LoadPod;
use super::{first_labelled, setup};
use crate::cluster::ready::wait_for_release;
use crate::cluster::{Release, pods};
use crate::deploy::helm_install;
use crate::image::Build;

/// Laid over `e2e::VALUES` for this step: cluster mode, and only what the step needs.
pub const VALUES: &str = "charts/cart-service/ci/e2e-cluster-values.yaml";

/// Installs cluster mode in `<namespace>-cluster`, checks it, and deletes that namespace
/// afterwards unless `keep`.
pub async fn redis_cluster(
    sh: &Shell,
    client: &Client,
    release: &Release,
    build: &Build,
    keep: bool,
) -> anyhow::Result<String> {
    let cluster = Release {
        namespace: format!("{}-cluster", release.namespace),
        ..release.clone()
    };
    setup::namespace(client, &cluster.namespace).await?;
    let started = Instant::now();
    install(sh, &cluster, build)?;
    let formed = started.elapsed();
    wait_for_release(client.clone(), &cluster, Duration::from_mins(5)).await?;
    let ready = started.elapsed();
    let node0 = Node0::find(client, &cluster).await?;
    let before = node0.nodes().await?;
    ensure!(
        before.len() == 6 && node0.state().await? == "ok",
        "after the install hook: {before:#?}"
    );

    let upgraded = Instant::now();
    install(sh, &cluster, build)?;
    let upgrade = upgraded.elapsed();
    let after = node0.nodes().await?;
    ensure!(
        ids(&before) == ids(&after),
        "the upgrade's hook changed the formed cluster: {before:#?} became {after:#?}"
    );

    setup::helm_test(sh, client, &cluster).await?;
    let failover = master_deletion(client, &cluster, &node0, &before).await?;
    if !keep {
        setup::delete_namespace(client, &cluster.namespace).await?;
    }
    Ok(format!(
        "6 nodes formed by the install hook in {}s, service ready at {}s; the upgrade hook left \
         them alone ({}s); helm test passed; {failover}",
        formed.as_secs(),
        ready.as_secs(),
        upgrade.as_secs()
    ))
}

/// `helm upgrade --install` without `--wait`: Helm runs post-install hooks after its wait,
/// and the service is ready only once the hook has formed the cluster. Helm still waits
/// for the hook Job, so this returns once the cluster is formed (or the hook failed).
fn install(sh: &Shell, cluster: &Release, build: &Build) -> anyhow::Result<()> {
    let values = [super::VALUES.to_owned(), VALUES.to_owned()];
    let helm =
        helm_install(cluster, &values, Some(build.repository_and_tag())).args(["--timeout", "5m"]);
    println!("==> {helm}");
    helm.to_cmd(sh)
        .run()
        .context("helm upgrade --install of cluster mode failed (its hook Job's pod logs say why)")
}

/// A master other than node 0 deleted under load; the service must answer again and the
/// cluster be whole once the pod is back.
async fn master_deletion(
    client: &Client,
    cluster: &Release,
    node0: &Node0,
    formed: &[ClusterNode],
) -> anyhow::Result<String> {
    let victim = formed
        .iter()
        .find(|n| n.flags.contains("master") && n.pod != node0.pod)
        .with_context(|| format!("no master besides {}: {formed:#?}", node0.pod))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &cluster.namespace);
    let uid = pods.get(&victim.pod).await?.uid().unwrap_or_default();
    let load = LoadPod::start(client, cluster).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("==> deleting master pod {}", victim.pod);
    let deleted = Instant::now();
    let deleted_at = utc_clock();
    pods.delete(&victim.pod, &DeleteParams::default()).await?;
    // Both clocks run from the deletion, side by side.
    let (answered, back) = tokio::join!(
        answers_again(client, cluster, deleted),
        pod_back(&pods, &victim.pod, uid, deleted)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tally = load.finish().await?;
    let (answered, back) = (answered?, back?);
    let whole = node0.wait_ok(Duration::from_mins(1)).await?;
    let role = whole
        .iter()
        .find(|n| n.pod == victim.pod)
        .map_or("missing", |n| {
            if n.flags.contains("slave") {
                "replica (its replica was promoted)"
            } else {
                "master (back before a failover)"
            }
        });
    ensure!(
        tally.ok > 0,
        "the load pod made no successful request: {}",
        tally.log
    );
    Ok(format!(
        "master {} deleted at {deleted_at} under load: {} requests answered, {} failed{}; a POST through a \
         ready cart pod succeeded again {:.1}s after the deletion; the pod was back and ready \
         in {:.1}s, as a {role}; cluster_state:ok",
        victim.pod,
        tally.ok,
        tally.failed,
        failure_window(&tally.log),
        answered.as_secs_f64(),
        back.as_secs_f64()
    ))
}

/// Time from `since` until the deleted pod is back (a new one of the same name) and ready.
async fn pod_back(
    pods: &Api<Pod>,
    name: &str,
    uid: String,
    since: Instant,
) -> anyhow::Result<Duration> {
    let back = await_condition(pods.clone(), name, move |pod: Option<&Pod>| {
        pod.is_some_and(|pod| pod.uid().as_deref() != Some(uid.as_str()) && pods::is_ready(pod))
    });
    tokio::time::timeout(Duration::from_mins(3), back)
        .await
        .with_context(|| format!("pod {name} not back and ready after 180s"))??;
    Ok(since.elapsed())
}

/// The time of day in UTC as HH:MM:SS, the load pod's clock (`date +%T` in a UTC container).
fn utc_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        % 86_400;
    format!("{:02}:{:02}:{:02}", now / 3600, now / 60 % 60, now % 60)
}

/// `, between HH:MM:SS and HH:MM:SS`: the first and last failures the load pod logged.
fn failure_window(log: &str) -> String {
    let times: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" failed: "))
        .filter_map(|line| line.rsplit(" at ").next())
        .collect();
    match (times.first(), times.last()) {
        (Some(first), Some(last)) => format!(" (between {first} and {last})"),
        _ => String::new(),
    }
}

/// Time from `since` until a write through a ready cart pod succeeds again.
async fn answers_again(
    client: &Client,
    cluster: &Release,
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = since + Duration::from_mins(2);
    let mut last = String::from("no ready cart pod");
    while Instant::now() < deadline {
        if let Ok(targets) = pods::list_targets(client.clone(), cluster).await {
            let body = r#"{"product_id":"p-1","quantity":1}"#;
            let path = "/v1/cart/e2e-failover";
            match call(
                client,
                &cluster.namespace,
                &targets[0],
                Method::POST,
                path,
                Some(body),
            )
            .await
            {
                Ok(response) if response.status == 200 => return Ok(since.elapsed()),
                Ok(response) => last = format!("{} {}", response.status, response.body),
                Err(error) => last = format!("{error:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the service did not answer a POST within 120s of the master's deletion: {last}")
}

/// One line of `CLUSTER NODES`: the node's id, the pod it runs in, and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterNode {
    id: String,
    pod: String,
    flags: String,
}

/// `CLUSTER NODES` lines with the host names the chart announces (`<pod>.<headless>...`).
fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.to_owned();
            let host = fields.next()?.split(',').nth(1)?;
            let pod = host.split('.').next()?.to_owned();
            let flags = fields.next()?.to_owned();
            Some(ClusterNode { id, pod, flags })
        })
        .collect()
}

fn ids(nodes: &[ClusterNode]) -> Vec<&str> {
    let mut ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

/// The cluster's pod 0, asked with `redis-cli` in its `redis` container (which has the
/// password as `REDISCLI_AUTH`).
struct Node0 {
    pods: Api<Pod>,
    pod: String,
}

impl Node0 {
    async fn find(client: &Client, cluster: &Release) -> anyhow::Result<Self> {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &cluster.namespace);
        let set =
            first_labelled(&sets, &cluster.component_selector("redis"), "StatefulSet").await?;
        Ok(Self {
            pods: Api::namespaced(client.clone(), &cluster.namespace),
            pod: format!("{}-0", set.name_any()),
        })
    }

    async fn redis_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let command: Vec<&str> = ["redis-cli", "--no-auth-warning"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let params = AttachParams::default()
            .container("redis")
            .stdout(true)
            .stderr(false);
        let mut attached = self
            .pods
            .exec(&self.pod, command, &params)
            .await
            .with_context(|| format!("cannot exec redis-cli in {}", self.pod))?;
        let mut out = String::new();
        if let Some(mut stdout) = attached.stdout() {
            stdout.read_to_string(&mut out).await?;
        }
        attached.join().await?;
        Ok(out)
    }

    async fn nodes(&self) -> anyhow::Result<Vec<ClusterNode>> {
        Ok(parse_nodes(&self.redis_cli(&["cluster", "nodes"]).await?))
    }

    async fn state(&self) -> anyhow::Result<String> {
        let info = self.redis_cli(&["cluster", "info"]).await?;
        let state = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:"));
        Ok(state.unwrap_or("unknown").to_owned())
    }

    /// Waits until the cluster reports `ok` with no node failed, and returns its nodes.
    async fn wait_ok(&self, timeout: Duration) -> anyhow::Result<Vec<ClusterNode>> {
        let deadline = Instant::now() + timeout;
        loop {
            let nodes = self.nodes().await?;
            let healthy = nodes.iter().all(|n| !n.flags.contains("fail"));
            if healthy && nodes.len() == 6 && self.state().await? == "ok" {
                return Ok(nodes);
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster is not whole {}s after the pod came back: {nodes:#?}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_give_each_nodes_id_pod_and_flags() {
        let text = "07c3 10.244.0.7:6379@16379,r-redis-cluster-1.r-redis-cluster-headless.ns.svc master - 0 1 2 connected 5461-10922\n\
                    e4b1 10.244.0.9:6379@16379,r-redis-cluster-4.r-redis-cluster-headless.ns.svc myself,slave 07c3 0 1 2 connected\n";

        let nodes = parse_nodes(text);

        assert_eq!(
            nodes,
            [
                ClusterNode {
                    id: "07c3".into(),
                    pod: "r-redis-cluster-1".into(),
                    flags: "master".into()
                },
                ClusterNode {
                    id: "e4b1".into(),
                    pod: "r-redis-cluster-4".into(),
                    flags: "myself,slave".into()
                },
            ]
        );
        assert_eq!(ids(&nodes), ["07c3", "e4b1"]);
    }

    #[test]
    fn the_failure_window_spans_the_first_and_last_failed_request() {
        let log = "worker 1 request 7 failed: 503  at 10:00:01\n\
                   worker 2 request 9 failed: 000 curl: (7) refused at 10:00:06\n\
                   worker 1 ok=120 failed=1\nworker 2 ok=118 failed=1\n";

        assert_eq!(failure_window(log), " (between 10:00:01 and 10:00:06)");
        assert_eq!(failure_window("worker 1 ok=3 failed=0\n"), "");
    }
}
