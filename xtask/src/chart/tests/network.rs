//! Assertions on how the pieces reach each other: the Redis password only by reference,
//! and `NetworkPolicy` selectors that select the pods they are written for.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Rendered, all_containers, env_value, render_every_set, render_set};

/// Whether `selector` (matchLabels only, which is all the chart uses) selects `labels`.
pub(super) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "matchExpressions are not evaluated here"
    );
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The spec of the `NetworkPolicy` called `name`.
pub(super) fn policy<'a>(
    rendered: &'a Rendered,
    name: &str,
) -> &'a k8s_openapi::api::networking::v1::NetworkPolicySpec {
    rendered
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.spec.as_ref())
        .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
}

fn api_labels(rendered: &Rendered) -> BTreeMap<String, String> {
    let template = &rendered.deployment("").spec.template;
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels")
}

fn redis_labels(rendered: &Rendered) -> BTreeMap<String, String> {
    let template = &rendered.stateful_sets[0].spec.template;
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels")
}

#[test]
fn redis_password_is_referenced_from_the_secret_and_never_inlined() {
    let rendered = render_set("default", &[]);
    let secret = &rendered.secrets[0];
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get("redis-password"))
        .expect("password");
    let password = String::from_utf8(password.0.clone()).expect("utf-8 password");

    let container = rendered.api_container();
    let env: Vec<_> = container.env.iter().flatten().collect();
    let at = |name: &str| env.iter().position(|e| e.name == name).expect(name);
    let key_ref = env[at("REDIS_PASSWORD")]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    assert_eq!(
        key_ref.map(|k| k.name.as_str()),
        secret.metadata.name.as_deref()
    );
    assert!(
        at("REDIS_PASSWORD") < at("REDIS_URL"),
        "$(REDIS_PASSWORD) expands only if defined first"
    );
    assert_eq!(
        env_value(container, "REDIS_URL"),
        Some("redis://:$(REDIS_PASSWORD)@cart-cart-service-redis:6379")
    );
    for (owner, spec) in rendered.pod_specs() {
        for c in all_containers(spec) {
            let literal = format!("{:?}{:?}{:?}", c.env, c.args, c.command);
            assert!(
                !literal.contains(&password),
                "{owner}/{}: the password is inlined",
                c.name
            );
        }
    }
}

#[test]
fn external_redis_url_uses_tls_and_the_given_secret() {
    let rendered = render_set("external-redis", &[]);
    let container = rendered.api_container();

    assert!(rendered.stateful_sets.is_empty() && rendered.secrets.is_empty());
    assert_eq!(
        env_value(container, "REDIS_URL"),
        Some("rediss://:$(REDIS_PASSWORD)@redis.example.internal:6380/0")
    );
    let key_ref = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "REDIS_PASSWORD");
    let key_ref = key_ref
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .expect("secretKeyRef");
    assert_eq!(
        (key_ref.name.as_str(), key_ref.key.as_str()),
        ("managed-redis", "password")
    );
}

#[test]
fn network_policies_select_the_pods_they_are_written_for() {
    for (set, rendered) in render_every_set() {
        let api = api_labels(&rendered);
        let cart = policy(&rendered, "cart-cart-service");
        assert!(
            selects(cart.pod_selector.as_ref().expect("podSelector"), &api),
            "{set}: cart policy misses the cart pods"
        );
        if rendered.stateful_sets.is_empty() {
            continue;
        }
        let redis = redis_labels(&rendered);
        let workload = rendered.stateful_sets[0].metadata.name.as_deref();
        let redis_policy = policy(&rendered, workload.expect("a named StatefulSet"));
        assert!(
            selects(
                redis_policy.pod_selector.as_ref().expect("podSelector"),
                &redis
            ),
            "{set}: redis policy misses redis"
        );
        assert!(
            !selects(
                redis_policy.pod_selector.as_ref().expect("podSelector"),
                &api
            ),
            "{set}: redis policy selects cart pods"
        );
        let clients = redis_policy.ingress.as_ref().expect("redis ingress")[0]
            .from
            .clone()
            .expect("from");
        let client = clients[0].pod_selector.as_ref().expect("podSelector");
        assert!(
            selects(client, &api),
            "{set}: cart pods may not reach redis"
        );
        let egress = cart.egress.as_ref().expect("cart egress");
        let reaches_redis = egress
            .iter()
            .flat_map(|rule| rule.to.iter().flatten())
            .any(|peer| {
                peer.pod_selector
                    .as_ref()
                    .is_some_and(|s| selects(s, &redis))
            });
        assert!(reaches_redis, "{set}: cart egress does not reach redis");
    }
}

#[test]
fn test_pods_are_covered_by_their_own_policy() {
    let rendered = render_set("default", &[]);

    let tests = policy(&rendered, "cart-cart-service-test");
    for pod in &rendered.pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert!(
            selects(tests.pod_selector.as_ref().expect("podSelector"), &labels),
            "{:?}",
            pod.metadata.name
        );
    }
    assert_eq!(rendered.pods.len(), 2, "readyz and the cart round trip");
}

#[test]
fn without_the_collector_the_service_exports_to_the_given_endpoint() {
    let rendered = render_set("collector-off", &[]);
    let container = rendered.api_container();

    assert!(rendered.deployments.iter().all(|d| {
        !d.metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .ends_with("otel-collector")
    }));
    assert_eq!(
        env_value(container, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some("http://otel-collector.observability:4317")
    );
}
