//! The checks that disturb the release on purpose: the HPA pushed up by `/stress` and left
//! to come down, a rollout restart and a deleted pod under steady load (0 failed requests
//! is the bar: readiness, the drain delay and the PDB have to work together for it), and
//! the Redis pod deleted under data that must survive it.
//!
//! The steady load runs in a pod inside the cluster and goes through the Service, because
//! that is the path that has to stay whole: a port-forward reaches one pod directly and
//! would lose its connections with that pod whatever the service did.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{AttachParams, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use tokio::io::AsyncReadExt as _;

use super::checks::call;
use super::first_labelled;
use crate::cluster::hpa::Row;
use crate::cluster::ready::deployment_ready;
use crate::cluster::{Release, pods};
use crate::hpa_demo::{find_hpa, stress_loop, watch_rows};

/// The image of the load pod: the chart's `tests.image`, which every cluster that ran
/// `helm test` already has.
pub const LOAD_IMAGE: &str = "curlimages/curl:8.12.1";

/// Stress until the HPA adds a replica, then stop and wait until it is back at its minimum.
pub async fn hpa(client: &Client, release: &Release) -> anyhow::Result<String> {
    let name = find_hpa(client.clone(), release).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &release.namespace);
    let at_min = |row: &Row| row.current <= row.min && row.desired <= row.min;
    let started = Instant::now();
    println!("{}", Row::header());
    // Earlier load (k6 calls /stress too) may have scaled it up already: start from the minimum.
    let settled = watch_rows(hpas.clone(), &name, started, Duration::from_mins(8), at_min).await?;
    ensure!(
        settled,
        "the HPA did not come down to its minimum within 480s, before any load"
    );
    let loaded = Instant::now();
    let turn = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(stress_loop(
                client.clone(),
                release.clone(),
                2000,
                turn.clone(),
            ))
        })
        .collect();
    let up = watch_rows(
        hpas.clone(),
        &name,
        started,
        Duration::from_mins(7),
        |row| row.current > row.min,
    )
    .await;
    for worker in &workers {
        worker.abort();
    }
    ensure!(up?, "the HPA did not scale up within 420s of /stress load");
    let up_after = loaded.elapsed();
    let peak = Row::from_hpa(&hpas.get(&name).await?, started.elapsed());
    println!("==> scaled up; load stopped, waiting for the scale-down");
    let down = watch_rows(hpas.clone(), &name, started, Duration::from_mins(8), at_min).await?;
    ensure!(
        down,
        "the HPA did not scale back down within 480s of the load stopping"
    );
    let end = Row::from_hpa(&hpas.get(&name).await?, started.elapsed());
    Ok(format!(
        "{} -> {} replicas {}s into the load, back to {} {}s after it stopped",
        peak.min,
        peak.current,
        up_after.as_secs(),
        end.current,
        loaded.elapsed().saturating_sub(up_after).as_secs()
    ))
}

/// `kubectl rollout restart` (the same annotation patch) under steady load.
pub async fn rollout(client: &Client, release: &Release) -> anyhow::Result<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release.namespace);
    let name = api_deployment(&deployments, release).await?;
    under_load(
        client,
        release,
        "rollout",
        Box::pin(async {
            let now = restart_stamp();
            let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": now
            }}}}});
            deployments
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("cannot restart Deployment {name}"))?;
            wait_rolled_out(&deployments, &name).await
        }),
    )
    .await
}

/// One cart pod deleted (with its grace period, as a node drain would) under steady load.
pub async fn pod_delete(client: &Client, release: &Release) -> anyhow::Result<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release.namespace);
    let name = api_deployment(&deployments, release).await?;
    under_load(
        client,
        release,
        "pod deletion",
        Box::pin(async {
            let targets = pods::list_targets(client.clone(), release).await?;
            let victim = &targets[0].pod;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
            let uid = pods.get(victim).await?.uid().unwrap_or_default();
            println!("==> deleting pod {victim}");
            let started = Instant::now();
            pods.delete(victim, &DeleteParams::default()).await?;
            // Gone means its whole shutdown ran: drain delay, in-flight requests, flush.
            tokio::time::timeout(
                Duration::from_mins(2),
                await_condition(pods.clone(), victim, conditions::is_deleted(&uid)),
            )
            .await
            .with_context(|| format!("pod {victim} still there 120s after its deletion"))??;
            wait_rolled_out(&deployments, &name).await?;
            Ok(started.elapsed())
        }),
    )
    .await
}

/// Carts written, the Redis pod deleted, the carts read back once it is up again.
pub async fn redis(client: &Client, release: &Release) -> anyhow::Result<String> {
    let ns = &release.namespace;
    let target = pods::list_targets(client.clone(), release).await?.remove(0);
    let carts = ["e2e-persist-1", "e2e-persist-2", "e2e-persist-3"];
    for (index, user) in carts.iter().enumerate() {
        let body = format!(r#"{{"product_id":"p-{index}","quantity":{}}}"#, index + 2);
        let added = call(
            client,
            ns,
            &target,
            Method::POST,
            &format!("/v1/cart/{user}"),
            Some(&body),
        )
        .await?;
        ensure!(
            added.status == 200,
            "POST answered {}: {}",
            added.status,
            added.body
        );
    }
    // appendfsync everysec: a second and a bit puts every write in the AOF on disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let redis = first_labelled(&pods, &release.component_selector("redis"), "Redis pod").await?;
    let (name, uid) = (redis.name_any(), redis.uid().unwrap_or_default());
    println!("==> deleting pod {name}");
    let deleted = Instant::now();
    pods.delete(&name, &DeleteParams::default()).await?;
    let back = tokio::time::timeout(
        Duration::from_mins(3),
        await_condition(pods.clone(), &name, move |pod: Option<&Pod>| {
            pod.is_some_and(|pod| pod.uid().as_deref() != Some(uid.as_str()) && pods::is_ready(pod))
        }),
    )
    .await
    .with_context(|| format!("Redis pod {name} not back and ready after 180s"))?;
    back?;
    let ready_after = deleted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, user) in carts.iter().enumerate() {
        let path = format!("/v1/cart/{user}");
        let cart = loop {
            let read = call(client, ns, &target, Method::GET, &path, None).await?;
            if read.status == 200 || Instant::now() > deadline {
                break read;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        ensure!(
            cart.status == 200,
            "GET {path} answered {}: {}",
            cart.status,
            cart.body
        );
        let items = cart.json()?["items"].clone();
        let expected =
            serde_json::json!([{"product_id": format!("p-{index}"), "quantity": index + 2}]);
        ensure!(
            items == expected,
            "cart {user} after the Redis restart: {items}, expected {expected}"
        );
    }
    Ok(format!(
        "{} carts intact; Redis pod back and ready {}s after its deletion",
        carts.len(),
        ready_after.as_secs()
    ))
}

/// Runs `disturb` while a pod sends steady requests through the Service, then requires
/// that none of them failed.
async fn under_load<F>(
    client: &Client,
    release: &Release,
    what: &str,
    disturb: F,
) -> anyhow::Result<String>
where
    F: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let load = LoadPod::start(client, release).await?;
    // A few seconds of load before the disturbance, so a broken path shows up as failures.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let disturbed = disturb.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tally = load.finish().await?;
    let took = disturbed?;
    ensure!(
        tally.ok > 0,
        "the load pod made no successful request: {}",
        tally.log
    );
    if tally.failed > 0 {
        bail!(
            "{} of {} requests failed during the {what}:\n{}",
            tally.failed,
            tally.ok + tally.failed,
            tally.failures()
        );
    }
    Ok(format!(
        "{} requests, 0 failed; the {what} took {}s",
        tally.ok,
        took.as_secs()
    ))
}

/// Waits until the Deployment's newest spec is rolled out and every replica is ready.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_mins(5),
        await_condition(deployments.clone(), name, deployment_ready),
    )
    .await
    .with_context(|| format!("Deployment {name} not rolled out after 300s"))??;
    Ok(started.elapsed())
}

async fn api_deployment(
    deployments: &Api<Deployment>,
    release: &Release,
) -> anyhow::Result<String> {
    let deployment = first_labelled(deployments, &release.api_selector(), "Deployment").await?;
    Ok(deployment.name_any())
}

/// A value the restart annotation has never had (kubectl writes the time; any new value restarts).
fn restart_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("e2e-{}", now.as_millis())
}

/// A pod of four shell loops, each alternating `POST` an item and `DELETE` the cart through
/// the Service with a new connection per request, until `/tmp/stop` exists.
pub(super) struct LoadPod {
    pods: Api<Pod>,
    name: String,
}

/// What the load pod counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub log: String,
}

impl Tally {
    /// Sums the workers' `worker N ok=X failed=Y` lines.
    pub fn parse(log: &str) -> Self {
        let mut tally = Self {
            log: log.to_owned(),
            ..Self::default()
        };
        for line in log.lines().filter(|line| line.starts_with("worker ")) {
            for field in line.split_whitespace() {
                if let Some(n) = field.strip_prefix("ok=") {
                    tally.ok += n.parse::<u64>().unwrap_or(0);
                } else if let Some(n) = field.strip_prefix("failed=") {
                    tally.failed += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
        tally
    }

    /// The lines that report a failed request.
    pub fn failures(&self) -> String {
        let lines: Vec<&str> = self
            .log
            .lines()
            .filter(|l| l.contains(" failed: "))
            .take(20)
            .collect();
        lines.join("\n")
    }
}

/// The load pod's script; `$URL` is the Service.
const LOAD_SCRIPT: &str = r#"
work() {
  ok=0; failed=0; n=0
  while [ ! -e /tmp/stop ]; do
    n=$((n + 1))
    if [ $((n % 2)) = 1 ]; then
      code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST "$URL/v1/cart/load-$1" \
        -H 'content-type: application/json' -d '{"product_id":"p-1","quantity":1}' 2>/tmp/err-$1) || true
      want=200
    else
      code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X DELETE "$URL/v1/cart/load-$1" 2>/tmp/err-$1) || true
      want=204
    fi
    if [ "$code" = "$want" ]; then ok=$((ok + 1)); else
      failed=$((failed + 1)); echo "worker $1 request $n failed: $code $(cat /tmp/err-$1) at $(date +%T)"; fi
  done
  echo "worker $1 ok=$ok failed=$failed"
}
for w in 1 2 3 4; do work "$w" & done
wait
"#;

impl LoadPod {
    pub(super) async fn start(client: &Client, release: &Release) -> anyhow::Result<Self> {
        let services: Api<Service> = Api::namespaced(client.clone(), &release.namespace);
        let service = first_labelled(&services, &release.api_selector(), "Service").await?;
        let port = service
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref()?.first().map(|p| p.port))
            .unwrap_or(80);
        let url = format!("http://{}:{port}", service.name_any());
        let name = format!("{}-e2e-load", release.name);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "cart-service-e2e-load"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "load",
                    "image": LOAD_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", LOAD_SCRIPT],
                    "env": [{"name": "URL", "value": url}],
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
                    "resources": {"requests": {"cpu": "50m", "memory": "16Mi"},
                                  "limits": {"cpu": "500m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Mi"}}],
            },
        }))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
        if pods.get_opt(&name).await?.is_some() {
            pods.delete(&name, &DeleteParams::default().grace_period(0))
                .await?;
            let gone = await_condition(pods.clone(), &name, |pod: Option<&Pod>| pod.is_none());
            tokio::time::timeout(Duration::from_mins(1), gone).await??;
        }
        pods.create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("cannot create the load pod {name}"))?;
        let running = await_condition(pods.clone(), &name, |pod: Option<&Pod>| {
            pod.and_then(|p| p.status.as_ref()?.phase.clone())
                .is_some_and(|phase| phase != "Pending")
        });
        tokio::time::timeout(Duration::from_mins(2), running)
            .await
            .with_context(|| format!("load pod {name} not running after 120s"))??;
        println!("==> load pod {name}: 4 loops of POST/DELETE through {url}");
        Ok(Self { pods, name })
    }

    /// Tells the loops to stop, waits for the pod to end and counts what it logged.
    pub(super) async fn finish(self) -> anyhow::Result<Tally> {
        let mut touch = self
            .pods
            .exec(
                &self.name,
                ["touch", "/tmp/stop"],
                &AttachParams::default().stderr(true),
            )
            .await
            .with_context(|| format!("cannot exec into the load pod {}", self.name))?;
        if let Some(mut stderr) = touch.stderr() {
            let mut said = String::new();
            let _ = stderr.read_to_string(&mut said).await;
            ensure!(said.is_empty(), "touch /tmp/stop in the load pod: {said}");
        }
        touch.join().await?;
        let ended = await_condition(self.pods.clone(), &self.name, |pod: Option<&Pod>| {
            pod.and_then(|p| p.status.as_ref()?.phase.clone())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
        });
        tokio::time::timeout(Duration::from_mins(1), ended)
            .await
            .with_context(|| {
                format!("load pod {} did not end 60s after being told to", self.name)
            })??;
        let log = self.pods.logs(&self.name, &LogParams::default()).await?;
        self.pods
            .delete(&self.name, &DeleteParams::default())
            .await?;
        Ok(Tally::parse(&log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sums_the_workers_and_keeps_the_failed_requests() {
        let log = "worker 2 request 7 failed: 503  at 10:00:01\n\
                   worker 1 ok=120 failed=0\n\
                   worker 2 ok=118 failed=1\n";

        let tally = Tally::parse(log);

        assert_eq!((tally.ok, tally.failed), (238, 1));
        assert_eq!(
            tally.failures(),
            "worker 2 request 7 failed: 503  at 10:00:01"
        );
    }

    #[test]
    fn the_load_image_is_the_charts_test_image() {
        let values: serde_norway::Value = serde_norway::from_str(
            &std::fs::read_to_string(
                crate::workspace_root().join("charts/cart-service/values.yaml"),
            )
            .unwrap_or_default(),
        )
        .unwrap_or_default();
        let image = &values["tests"]["image"];

        let chart = format!(
            "{}:{}",
            image["repository"].as_str().unwrap_or_default(),
            image["tag"].as_str().unwrap_or_default()
        );

        assert_eq!(chart, LOAD_IMAGE);
    }
}
