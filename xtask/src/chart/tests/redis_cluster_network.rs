//! Assertions on where the Redis Cluster's pods run and who reaches them: soft
//! anti-affinity by hostname, a `PodDisruptionBudget` of one node at a time, and
//! `NetworkPolicies` that let the nodes talk on the client and bus ports and the hook Job
//! reach them. The port helper serves `redis_modes.rs` too.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::network::{policy, selects};
use super::redis_cluster::{CLUSTER, config_map, job};
use super::{Rendered, render_set};

fn labels_of_redis_pods(rendered: &Rendered) -> BTreeMap<String, String> {
    let template = &rendered.stateful_sets[0].spec.template;
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    labels.expect("redis pod labels")
}

fn labels_of_job_pods(rendered: &Rendered) -> BTreeMap<String, String> {
    let template = &job(rendered).spec.as_ref().expect("job spec").template;
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    labels.expect("job pod labels")
}

/// The ports of the ingress rules whose peers include a pod selector selecting `labels`.
fn ports_from(policy: &NetworkPolicySpec, labels: &BTreeMap<String, String>) -> Vec<i32> {
    let rules = policy.ingress.iter().flatten();
    ports_of(
        rules.map(|rule| (rule.from.as_ref(), rule.ports.as_ref())),
        labels,
    )
}

/// The ports of the egress rules whose peers include a pod selector selecting `labels`.
fn ports_to(policy: &NetworkPolicySpec, labels: &BTreeMap<String, String>) -> Vec<i32> {
    let rules = policy.egress.iter().flatten();
    ports_of(
        rules.map(|rule| (rule.to.as_ref(), rule.ports.as_ref())),
        labels,
    )
}

/// The sorted ports of the `(peers, ports)` rules with a peer selecting `labels`.
fn ports_of<'a>(
    rules: impl Iterator<
        Item = (
            Option<&'a Vec<NetworkPolicyPeer>>,
            Option<&'a Vec<NetworkPolicyPort>>,
        ),
    >,
    labels: &BTreeMap<String, String>,
) -> Vec<i32> {
    let mut ports = Vec::new();
    for (peers, rule_ports) in rules {
        if peers
            .into_iter()
            .flatten()
            .any(|p| p.pod_selector.as_ref().is_some_and(|s| selects(s, labels)))
        {
            ports.extend(port_numbers(rule_ports));
        }
    }
    ports.sort_unstable();
    ports
}

pub(super) fn port_numbers(ports: Option<&Vec<NetworkPolicyPort>>) -> Vec<i32> {
    let numbers = ports.into_iter().flatten().filter_map(|p| match &p.port {
        Some(IntOrString::Int(n)) => Some(*n),
        _ => None,
    });
    numbers.collect()
}

#[test]
fn cluster_pods_prefer_other_nodes_and_their_budget_lets_one_go_at_a_time() {
    let rendered = render_set("redis-cluster", &[]);
    let redis = labels_of_redis_pods(&rendered);

    let pod = rendered.stateful_sets[0]
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec");
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("anti-affinity");
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none(),
        "soft only: one node must do"
    );
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .clone()
        .unwrap_or_default();
    assert_eq!(preferred.len(), 1);
    let term = &preferred[0].pod_affinity_term;
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert!(selects(
        term.label_selector.as_ref().expect("labelSelector"),
        &redis
    ));

    let pdb = rendered
        .pdbs
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(CLUSTER))
        .expect("the cluster's PDB");
    let spec = pdb.spec.as_ref().expect("pdb spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    let selector = spec.selector.as_ref().expect("selector");
    assert!(selects(selector, &redis));
    assert!(
        !selects(selector, &labels_of_job_pods(&rendered)),
        "the hook Job is not a node"
    );
    let api = rendered
        .deployment("")
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert!(!selects(selector, &api));
}

#[test]
fn cluster_nodes_reach_each_other_on_the_client_and_bus_ports_and_the_job_reaches_them() {
    let rendered = render_set("redis-cluster", &[("redis.cluster.busPort", "17000")]);
    let redis = labels_of_redis_pods(&rendered);
    let job = labels_of_job_pods(&rendered);

    let nodes = policy(&rendered, CLUSTER);
    assert!(selects(
        nodes.pod_selector.as_ref().expect("podSelector"),
        &redis
    ));
    assert_eq!(ports_from(nodes, &redis), [6379, 17000]);
    assert_eq!(ports_to(nodes, &redis), [6379, 17000]);
    assert_eq!(ports_from(nodes, &job), [6379]);
    let dns = nodes
        .egress
        .iter()
        .flatten()
        .any(|rule| port_numbers(rule.ports.as_ref()).contains(&53));
    assert!(dns, "the init container resolves the peers' names");
    let job_policy = policy(&rendered, "cart-cart-service-redis-cluster-init");
    assert!(selects(
        job_policy.pod_selector.as_ref().expect("podSelector"),
        &job
    ));
    assert_eq!(ports_to(job_policy, &redis), [6379]);
    assert!(config_map(&rendered, CLUSTER)["redis.conf"].contains("cluster-port 17000"));

    let standalone = render_set("default", &[]);
    let single = policy(&standalone, "cart-cart-service-redis");
    assert_eq!(
        single.egress.as_deref(),
        Some(&[][..]),
        "a standalone Redis still talks to nobody"
    );
}
