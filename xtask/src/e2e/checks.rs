//! What a user checks first once the release runs, through kube-rs port-forwards: a cart
//! round trip and `/healthz` naming the real pod and node (the downward API), the request's
//! line in the log shipper's output, its trace in the release's Jaeger, and k6's thresholds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use http::Method;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, Client, ResourceExt};
use xshell::Shell;

use super::http::{Response, exchange, trace_id};
use crate::cluster::{Release, pods};

/// A request the service traced, and where it ran.
#[derive(Debug, Clone)]
pub struct Traced {
    pub pod: String,
    pub node: String,
    pub trace_id: String,
}

/// One request to a pod through a fresh port-forward stream.
pub async fn call(
    client: &Client,
    namespace: &str,
    target: &pods::Target,
    method: Method,
    path: &str,
    json: Option<&str>,
) -> anyhow::Result<Response> {
    let stream = pods::connect(client.clone(), namespace, target).await?;
    exchange(stream, method, path, json).await
}

/// A cart round trip on the first ready pod, then `/healthz` on the same pod.
pub async fn api(client: &Client, release: &Release) -> anyhow::Result<Traced> {
    let ns = &release.namespace;
    let targets = pods::list_targets(client.clone(), release).await?;
    let target = &targets[0];
    let cart = "/v1/cart/e2e-round-trip";
    let expect = |response: &Response, status: u16, what: &str| {
        ensure!(
            response.status == status,
            "{what} answered {} (not {status}): {}",
            response.status,
            response.body
        );
        Ok(())
    };

    let added = call(
        client,
        ns,
        target,
        Method::POST,
        cart,
        Some(r#"{"product_id":"p-1","quantity":2}"#),
    )
    .await?;
    expect(&added, 200, "POST /v1/cart/{user_id}")?;
    ensure!(
        added.json()?["quantity"] == 2,
        "POST answered {}",
        added.body
    );
    ensure!(
        added.header("traceparent").ends_with("-01"),
        "the POST's trace was not sampled (traceparent {:?}): check telemetry.sampler and samplerArg",
        added.header("traceparent")
    );
    let trace = trace_id(added.header("traceparent"))
        .with_context(|| format!("the POST's answer has no traceparent: {:?}", added.headers))?
        .to_owned();
    let set = call(
        client,
        ns,
        target,
        Method::PUT,
        &format!("{cart}/items/p-2"),
        Some(r#"{"quantity":3}"#),
    )
    .await?;
    expect(&set, 200, "PUT /v1/cart/{user_id}/items/{product_id}")?;
    let read = call(client, ns, target, Method::GET, cart, None).await?;
    expect(&read, 200, "GET /v1/cart/{user_id}")?;
    ensure!(
        read.json()?["total_quantity"] == 5,
        "GET answered {}",
        read.body
    );
    let cleared = call(client, ns, target, Method::DELETE, cart, None).await?;
    expect(&cleared, 204, "DELETE /v1/cart/{user_id}")?;
    let empty = call(client, ns, target, Method::GET, cart, None).await?;
    ensure!(
        empty.json()?["items"].as_array().is_some_and(Vec::is_empty),
        "the cart is not empty after DELETE: {}",
        empty.body
    );

    let health = call(client, ns, target, Method::GET, "/healthz", None).await?;
    expect(&health, 200, "GET /healthz")?;
    let health = health.json()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let node = pods
        .get(&target.pod)
        .await?
        .spec
        .and_then(|spec| spec.node_name)
        .unwrap_or_default();
    ensure!(
        health["pod"] == target.pod.as_str() && health["node"] == node.as_str(),
        "/healthz names pod {} on node {}, but it ran in pod {} on node {node}",
        health["pod"],
        health["node"],
        target.pod
    );
    ensure!(health["redis"] == "ok", "/healthz: {health}");
    Ok(Traced {
        pod: target.pod.clone(),
        node,
        trace_id: trace,
    })
}

/// The traced request's trace id in the log-shipper container's output, within a minute.
pub async fn log_shipper(
    client: &Client,
    release: &Release,
    traced: &Traced,
) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    let params = LogParams {
        container: Some("log-shipper".to_owned()),
        ..LogParams::default()
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let logs = pods
            .logs(&traced.pod, &params)
            .await
            .with_context(|| format!("cannot read the log-shipper logs of pod {}", traced.pod))?;
        if let Some(line) = logs.lines().find(|line| line.contains(&traced.trace_id)) {
            let fields: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            return Ok(format!(
                "{} line(s) shipped; the request's: {} {}",
                logs.lines().count(),
                fields["message"].as_str().unwrap_or(line),
                fields["status"]
            ));
        }
        if Instant::now() > deadline {
            bail!(
                "trace {} not in the log-shipper output of pod {} after 60s ({} lines shipped)",
                traced.trace_id,
                traced.pod,
                logs.lines().count()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The traced request's trace in the release's Jaeger, with its server, cart and Redis spans.
pub async fn traces(client: &Client, release: &Release, traced: &Traced) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    let selector = release.component_selector("jaeger");
    let jaeger = super::first_labelled(&pods, &selector, "Jaeger pod")
        .await
        .map_err(|error| anyhow::anyhow!("{error:#}: is jaeger.enabled on?"))?;
    let target = pods::Target {
        pod: jaeger.name_any(),
        port: 16686,
    };
    let path = format!("/api/traces/{}", traced.trace_id);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answer = call(
            client,
            &release.namespace,
            &target,
            Method::GET,
            &path,
            None,
        )
        .await?;
        if answer.status == 200 {
            let trace = answer.json()?;
            let spans = trace["data"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let names: Vec<&str> = spans
                .iter()
                .filter_map(|span| span["operationName"].as_str())
                .collect();
            if names.contains(&"POST /v1/cart/{user_id}") && names.contains(&"cart.add_item") {
                return Ok(format!("{} spans: {}", names.len(), names.join(", ")));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "trace {} not complete in Jaeger after 90s: GET {path} answered {}: {}",
                traced.trace_id,
                answer.status,
                answer.body.chars().take(300).collect::<String>()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// k6 with the project's script, a short constant load, through a local port-forward.
pub async fn k6(sh: &Shell, client: &Client, release: &Release) -> anyhow::Result<String> {
    let (vus, duration) = (8, "45s");
    let code = crate::k6::forwarded(
        sh,
        client.clone(),
        release.clone(),
        0,
        Some(vus),
        Some(duration),
    )
    .await?;
    match code {
        0 => Ok(format!("every threshold passed ({vus} VUs for {duration})")),
        99 => bail!("k6: a threshold failed (exit 99); its summary above says which"),
        other => bail!("k6 exited with {other}"),
    }
}
