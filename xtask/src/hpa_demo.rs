//! `cargo xtask hpa-demo`: watch the HorizontalPodAutoscaler do its job. Workers keep
//! `--concurrency` `POST /stress` requests in flight, each over its own kube-rs
//! port-forward to the next ready pod, while a kube-rs watcher on the HPA prints a row
//! per change (replicas current/desired, CPU against target). Once current replicas reach
//! max, or `--timeout` passes, the load stops and the table goes on until the HPA starts
//! scaling down or `--cooldown` passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::ListParams;
use kube::runtime::watcher::watch_object;
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xshell::Shell;

use crate::cluster::hpa::Row;
use crate::cluster::{KubeStep, Release, context_suffix, pods};
use crate::flags;

impl flags::HpaDemo {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        let release = self.target.release();
        if self.dry_run {
            println!("{}", self.describe(&release));
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.demo(release))
    }

    fn describe(&self, release: &Release) -> String {
        format!(
            "cargo xtask hpa-demo would, with kube-rs only (no kubectl, no external program):\n\
             \x20 1. {check}\n\
             \x20 2. find the HorizontalPodAutoscaler labelled {selector} in namespace {ns}{context}\n\
             \x20 3. keep {n} requests `POST /stress?cpu_iterations={cpu}` in flight, each through a port-forward \
             to the next ready pod labelled {selector}\n\
             \x20 4. watch the HPA and print a row per change (time, replicas current/desired, cpu current/target) \
             until current replicas reach max or {timeout}s pass\n\
             \x20 5. stop the load, and keep printing rows until the HPA scales down or {cooldown}s pass",
            check = KubeStep::CheckCluster {
                release: release.clone()
            },
            selector = release.api_selector(),
            ns = release.namespace,
            context = context_suffix(release.context.as_deref()),
            n = self.concurrency,
            cpu = self.cpu_iterations,
            timeout = self.timeout,
            cooldown = self.cooldown,
        )
    }

    async fn demo(self, release: Release) -> anyhow::Result<()> {
        let client = release.connect().await?;
        let hpa = find_hpa(client.clone(), &release).await?;
        let started = Instant::now();
        println!(
            "==> HorizontalPodAutoscaler {hpa}: loading with {} x /stress?cpu_iterations={}",
            self.concurrency, self.cpu_iterations
        );
        println!("{}", Row::header());
        let turn = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..self.concurrency)
            .map(|_| {
                tokio::spawn(stress_loop(
                    client.clone(),
                    release.clone(),
                    self.cpu_iterations,
                    Arc::clone(&turn),
                ))
            })
            .collect();
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client, &release.namespace);
        let reached = watch_rows(
            hpas.clone(),
            &hpa,
            started,
            Duration::from_secs(self.timeout),
            Row::at_max,
        )
        .await?;
        for worker in &workers {
            worker.abort();
        }
        println!(
            "==> {}; load stopped, watching the scale-down (the HPA waits its stabilisation window first)",
            if reached {
                "max replicas reached"
            } else {
                "time limit passed before max replicas"
            }
        );
        let down = watch_rows(
            hpas,
            &hpa,
            started,
            Duration::from_secs(self.cooldown),
            Row::scaling_down,
        )
        .await?;
        println!(
            "==> {}",
            if down {
                "scale-down has begun"
            } else {
                "no scale-down yet: it continues in the cluster"
            }
        );
        Ok(())
    }
}

/// The name of the release's HPA, or an error saying how to get one.
pub async fn find_hpa(client: Client, release: &Release) -> anyhow::Result<String> {
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client, &release.namespace);
    let listed = hpas
        .list(&ListParams::default().labels(&release.api_selector()))
        .await
        .with_context(|| {
            format!(
                "cannot list HorizontalPodAutoscalers in namespace {}{}: the cluster must serve \
                 autoscaling/v2 (Kubernetes 1.23 or later) and let you list them \
                 (`kubectl auth can-i list horizontalpodautoscalers -n {}`)",
                release.namespace,
                context_suffix(release.context.as_deref()),
                release.namespace
            )
        })?;
    match listed.items.first() {
        Some(hpa) => Ok(hpa.name_any()),
        None => bail!(
            "no HorizontalPodAutoscaler labelled {} in namespace {}{}: run `cargo xtask deploy` \
             (or `cargo xtask kind-up`) first, and install the chart with autoscaling.enabled=true",
            release.api_selector(),
            release.namespace,
            context_suffix(release.context.as_deref()),
        ),
    }
}

/// Prints a row whenever the HPA's row changes; true once `done` holds, false at the deadline.
pub async fn watch_rows(
    hpas: Api<HorizontalPodAutoscaler>,
    name: &str,
    started: Instant,
    limit: Duration,
    done: fn(&Row) -> bool,
) -> anyhow::Result<bool> {
    let mut stream = std::pin::pin!(watch_object(hpas, name));
    let mut last: Option<Row> = None;
    let watch = async {
        while let Some(event) = stream.next().await {
            let Some(hpa) = event.with_context(|| {
                format!(
                    "cannot watch HorizontalPodAutoscaler {name}: is the cluster still running? \
                     (`kubectl cluster-info`)"
                )
            })?
            else {
                bail!(
                    "HorizontalPodAutoscaler {name} was deleted during the demo: run \
                     `cargo xtask deploy` again, then `cargo xtask hpa-demo`"
                );
            };
            let row = Row::from_hpa(&hpa, started.elapsed());
            let changed = last.as_ref().is_none_or(|previous| {
                (previous.current, previous.desired, previous.cpu)
                    != (row.current, row.desired, row.cpu)
            });
            if changed {
                println!("{row}");
            }
            if done(&row) {
                return Ok(true);
            }
            last = Some(row);
        }
        Ok(false)
    };
    tokio::time::timeout(limit, watch)
        .await
        .unwrap_or(Ok(false))
}

/// One worker: stress requests back to back, each to the next ready pod in turn.
pub async fn stress_loop(
    client: Client,
    release: Release,
    cpu_iterations: u32,
    turn: Arc<AtomicUsize>,
) {
    loop {
        let outcome = async {
            let targets = pods::list_targets(client.clone(), &release).await?;
            let target = &targets[turn.fetch_add(1, Ordering::Relaxed) % targets.len()];
            let mut stream = pods::connect(client.clone(), &release.namespace, target).await?;
            stream
                .write_all(stress_request(cpu_iterations).as_bytes())
                .await?;
            let mut head = [0_u8; 64];
            let read = stream.read(&mut head).await?;
            anyhow::Ok(status_code(&head[..read]))
        }
        .await;
        match outcome {
            // 429 is the service protecting itself: the load is high enough, keep going.
            Ok(Some(200 | 429)) => {}
            // The chart serves /stress only when asked to, and behind a token when one is set:
            // say which value to change, once a second rather than in a tight loop.
            Ok(Some(status @ (401 | 404))) => {
                eprintln!("stress: {status}: {}", stress_refusal_hint(status));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(status) => eprintln!("stress: unexpected answer {status:?}"),
            Err(error) => {
                eprintln!("stress: {error:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What to change when the release refuses `/stress`.
fn stress_refusal_hint(status: u16) -> &'static str {
    if status == 404 {
        "the release serves no /stress; install it with --set config.stress.enabled=true (the kind values do)"
    } else {
        "the release guards /stress with STRESS_TOKEN (config.stress.token); the demo sends no token, so unset it for the demo"
    }
}

/// An HTTP/1.1 request for /stress that closes the connection after the answer.
fn stress_request(cpu_iterations: u32) -> String {
    format!(
        "POST /stress?cpu_iterations={cpu_iterations} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// The status code of an HTTP/1.x status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut words = line.split_whitespace();
    words
        .next()
        .filter(|version| version.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;
    use crate::cluster::mock;

    #[test]
    fn a_refused_stress_names_the_chart_value_to_change() {
        assert!(stress_refusal_hint(404).contains("config.stress.enabled=true"));
        assert!(stress_refusal_hint(401).contains("config.stress.token"));
    }
    use crate::flags::{Task, Xtask};

    #[test]
    fn dry_run_describes_load_watch_and_cooldown() {
        let Task::HpaDemo(demo) =
            Xtask::parse_from(["cargo xtask", "hpa-demo", "--concurrency", "4"]).task
        else {
            panic!("not hpa-demo");
        };

        let text = demo.describe(&demo.target.release());

        assert!(
            text.contains(
                "\n  1. check that a kubeconfig names the cluster of the current context"
            ),
            "the cluster check must come first: {text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn stress_request_is_a_bodyless_post_that_closes() {
        assert_eq!(
            stress_request(2000),
            "POST /stress?cpu_iterations=2000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_code_reads_the_status_line() {
        assert_eq!(
            status_code(b"HTTP/1.1 429 Too Many Requests\r\n"),
            Some(429)
        );
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\ncontent-type: x"),
            Some(200)
        );
        assert_eq!(status_code(b"garbage"), None);
    }

    #[tokio::test]
    async fn find_hpa_picks_the_release_api_hpa() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "cart-cart-service"},
            "spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "cart-cart-service"}},
        }))
        .unwrap();
        let (client, requests) = mock::client(vec![(
            "/apis/autoscaling/v2/namespaces/cart/horizontalpodautoscalers",
            mock::list(&[hpa]),
        )]);

        let name = find_hpa(client, &mock::release()).await.unwrap();

        assert_eq!(name, "cart-cart-service");
        assert!(requests.lock().unwrap()[0].contains("labelSelector=app.kubernetes.io%2Finstance%3Dcart%2Capp.kubernetes.io%2Fcomponent%3Dapi"));
    }

    #[tokio::test]
    async fn find_hpa_without_one_says_to_enable_autoscaling() {
        let (client, _) = mock::client(vec![(
            "/apis/autoscaling/v2/namespaces/cart/horizontalpodautoscalers",
            mock::list::<HorizontalPodAutoscaler>(&[]),
        )]);

        let error = find_hpa(client, &mock::release())
            .await
            .unwrap_err()
            .to_string();

        assert!(
            error.ends_with(
                "run `cargo xtask deploy` (or `cargo xtask kind-up`) first, \
                 and install the chart with autoscaling.enabled=true"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn find_hpa_when_listing_fails_says_what_the_cluster_must_allow() {
        let (client, _) = mock::client(Vec::new());

        let error = find_hpa(client, &mock::release()).await.unwrap_err();

        assert_eq!(
            error.to_string(),
            "cannot list HorizontalPodAutoscalers in namespace cart: the cluster must serve \
             autoscaling/v2 (Kubernetes 1.23 or later) and let you list them \
             (`kubectl auth can-i list horizontalpodautoscalers -n cart`)"
        );
    }
}
