//! Reaching cart-service pods without kubectl: choosing which pods may take traffic, and
//! forwarding a local TCP port to them through the API server (`Api::<Pod>::portforward`).
//! Each accepted connection goes to the next ready pod in turn, so a load test spreads
//! over the replicas the HPA adds, as a Service would (new pods get new connections).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::{CONTAINER, DEFAULT_HTTP_PORT, HTTP_PORT_NAME, Release};

/// A pod that can take traffic, and the port its HTTP server listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pod: String,
    pub port: u16,
}

/// The pods that may take traffic: running, Ready, not being deleted, sorted by name so
/// the order is stable; each with the port of its `cart-service` container named `http`.
pub fn ready_targets(pods: &[Pod]) -> Vec<Target> {
    let mut targets: Vec<Target> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && is_ready(pod))
        .map(|pod| Target {
            pod: pod.name_any(),
            port: http_port(pod),
        })
        .collect();
    targets.sort_by(|a, b| a.pod.cmp(&b.pod));
    targets
}

/// The release's ready cart-service pods, or an error that says what to check.
pub async fn list_targets(client: Client, release: &Release) -> anyhow::Result<Vec<Target>> {
    let pods: Api<Pod> = Api::namespaced(client, &release.namespace);
    let selector = release.api_selector();
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("cannot list pods in namespace {}", release.namespace))?;
    let targets = ready_targets(&listed.items);
    if targets.is_empty() {
        bail!(
            "no ready pod labelled {selector} in namespace {} ({} found): run `cargo xtask deploy` or check `kubectl -n {} get pods`",
            release.namespace,
            listed.items.len(),
            release.namespace
        );
    }
    Ok(targets)
}

/// Opens a port-forward stream to one pod's port.
pub async fn connect(
    client: Client,
    namespace: &str,
    target: &Target,
) -> anyhow::Result<impl AsyncRead + AsyncWrite + Unpin + use<>> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let mut forwarder = pods
        .portforward(&target.pod, &[target.port])
        .await
        .with_context(|| format!("cannot port-forward to pod {}", target.pod))?;
    forwarder
        .take_stream(target.port)
        .with_context(|| format!("no stream for port {} of pod {}", target.port, target.pod))
}

/// Binds `127.0.0.1:<port>` and returns the address; `serve` then forwards connections.
pub async fn bind(port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| {
            format!("cannot listen on 127.0.0.1:{port} (pass another --local-port)")
        })?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

/// Forwards every accepted connection to the next ready pod, refreshing the pod list per
/// connection so pods the HPA adds take new connections. Runs until the task is dropped.
pub async fn serve(listener: TcpListener, client: Client, release: Release) {
    let mut turn = 0_usize;
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let targets = match list_targets(client.clone(), &release).await {
            Ok(targets) => targets,
            Err(error) => {
                eprintln!("port-forward: {error:#}");
                continue;
            }
        };
        let target = targets[turn % targets.len()].clone();
        turn = turn.wrapping_add(1);
        let (client, namespace) = (client.clone(), release.namespace.clone());
        tokio::spawn(async move {
            match connect(client, &namespace, &target).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
                Err(error) => eprintln!("port-forward: {error:#}"),
            }
        });
    }
}

/// Running, with its Ready condition true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|status| {
        status.phase.as_deref() == Some("Running")
            && status
                .conditions
                .iter()
                .flatten()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
    })
}

fn http_port(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .filter(|container| container.name == CONTAINER)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| port.name.as_deref() == Some(HTTP_PORT_NAME))
        .and_then(|port| u16::try_from(port.container_port).ok())
        .unwrap_or(DEFAULT_HTTP_PORT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::mock;

    fn pod(name: &str, phase: &str, ready: &str, deleting: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [
                {"name": "log-shipper"},
                {"name": "cart-service", "ports": [{"name": "metrics", "containerPort": 9090}, {"name": "http", "containerPort": 8081}]},
            ]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp =
                serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        }
        pod
    }

    #[test]
    fn only_running_ready_pods_not_being_deleted_are_targets_in_name_order() {
        let pods = [
            pod("cart-b", "Running", "True", false),
            pod("cart-pending", "Pending", "False", false),
            pod("cart-unready", "Running", "False", false),
            pod("cart-leaving", "Running", "True", true),
            pod("cart-a", "Running", "True", false),
        ];

        let targets = ready_targets(&pods);

        assert_eq!(
            targets,
            [
                Target {
                    pod: "cart-a".to_owned(),
                    port: 8081
                },
                Target {
                    pod: "cart-b".to_owned(),
                    port: 8081
                },
            ]
        );
    }

    #[test]
    fn a_pod_without_a_named_http_port_is_reached_on_8080() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "cart-a"},
            "spec": {"containers": [{"name": "cart-service"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();

        assert_eq!(ready_targets(&[pod])[0].port, 8080);
    }

    #[tokio::test]
    async fn list_targets_asks_for_the_release_api_pods() {
        let (client, requests) = mock::client(vec![(
            "/api/v1/namespaces/cart/pods",
            mock::list(&[pod("cart-a", "Running", "True", false)]),
        )]);

        let targets = list_targets(client, &mock::release()).await.unwrap();

        assert_eq!(
            targets,
            [Target {
                pod: "cart-a".to_owned(),
                port: 8081
            }]
        );
        let seen = requests.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "/api/v1/namespaces/cart/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dcart%2Capp.kubernetes.io%2Fcomponent%3Dapi"
            ]
        );
    }

    #[tokio::test]
    async fn list_targets_without_a_ready_pod_says_what_to_check() {
        let (client, _) = mock::client(vec![(
            "/api/v1/namespaces/cart/pods",
            mock::list(&[pod("cart-a", "Pending", "False", false)]),
        )]);

        let error = list_targets(client, &mock::release())
            .await
            .unwrap_err()
            .to_string();

        assert!(
            error.starts_with("no ready pod labelled app.kubernetes.io/instance=cart,app.kubernetes.io/component=api in namespace cart (1 found)"),
            "{error}"
        );
    }
}
