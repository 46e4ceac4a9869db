//! Assertions on the Redis Cluster of `redis.mode: cluster`: its `StatefulSet` and headless
//! Service, each node's configuration, and the hook Job that forms it. Where the pods run
//! and who reaches them is `redis_cluster_network.rs`; what each mode gives the service, and
//! the values refused, `redis_modes.rs`. The object and env helpers here serve all three.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::{Rendered, env_value, render_set};

pub(super) const CLUSTER: &str = "cart-cart-service-redis-cluster";
const DOMAIN: &str = "cart-cart-service-redis-cluster-headless.cart.svc";

/// The host name of node `ordinal` of the in-release cluster.
pub(super) fn node(ordinal: usize) -> String {
    format!("{CLUSTER}-{ordinal}.{DOMAIN}")
}

pub(super) fn config_map<'a>(rendered: &'a Rendered, name: &str) -> &'a BTreeMap<String, String> {
    rendered
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .and_then(|c| c.data.as_ref())
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

pub(super) fn job(rendered: &Rendered) -> &Job {
    assert_eq!(rendered.jobs.len(), 1, "one hook Job");
    &rendered.jobs[0]
}

pub(super) fn job_container(rendered: &Rendered) -> &Container {
    let spec = job(rendered).spec.as_ref().expect("job spec");
    let pod = spec.template.spec.as_ref().expect("job pod spec");
    &pod.containers[0]
}

pub(super) fn env<'a>(container: &'a Container, name: &str) -> &'a EnvVar {
    let mut vars = container.env.iter().flatten();
    vars.find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{}: no {name}", container.name))
}

pub(super) fn secret_ref(var: &EnvVar) -> Option<(&str, &str)> {
    let key_ref = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((key_ref.name.as_str(), key_ref.key.as_str()))
}

pub(super) fn field_ref(var: &EnvVar) -> Option<&str> {
    let field = var.value_from.as_ref()?.field_ref.as_ref()?;
    Some(field.field_path.as_str())
}

#[test]
fn cluster_mode_runs_masters_times_one_plus_replicas_nodes_and_no_standalone_redis() {
    let rendered = render_set("redis-cluster", &[]);

    let names: Vec<_> = rendered
        .stateful_sets
        .iter()
        .map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, [Some(CLUSTER.to_owned())]);
    let spec = &rendered.stateful_sets[0].spec;
    assert_eq!(spec.replicas, Some(6));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let headless = format!("{CLUSTER}-headless");
    assert_eq!(spec.service_name.as_deref(), Some(headless.as_str()));
    let claims = spec.volume_claim_templates.clone().unwrap_or_default();
    assert_eq!(
        claims.len(),
        1,
        "every node keeps its data and nodes.conf on a claim"
    );
    let services: Vec<_> = rendered
        .services
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert!(
        !services.contains(&"cart-cart-service-redis"),
        "no standalone client Service: {services:?}"
    );
    let service = rendered
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(&headless));
    let service = service
        .and_then(|s| s.spec.as_ref())
        .expect("the headless Service");
    assert_eq!(service.cluster_ip.as_deref(), Some("None"));
    assert_eq!(service.publish_not_ready_addresses, Some(true));
    let ports: Vec<_> = service
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(ports, [(Some("redis"), 6379), (Some("bus"), 16379)]);
    let secrets: Vec<_> = rendered
        .secrets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(
        secrets,
        ["cart-cart-service-redis"],
        "the standalone mode's password Secret"
    );

    let bigger = render_set(
        "redis-cluster",
        &[
            ("redis.cluster.masters", "4"),
            ("redis.cluster.replicasPerMaster", "2"),
        ],
    );
    assert_eq!(bigger.stateful_sets[0].spec.replicas, Some(12));
    let nodes = env_value(job_container(&bigger), "NODES").expect("NODES");
    assert_eq!(nodes.split(' ').count(), 12, "{nodes}");
    assert_eq!(env_value(job_container(&bigger), "REPLICAS"), Some("2"));
}

#[test]
fn cluster_nodes_run_redis_cluster_with_host_names_the_password_and_the_standalone_policies() {
    let rendered = render_set("redis-cluster", &[]);

    let conf = &config_map(&rendered, CLUSTER)["redis.conf"];
    for line in [
        "cluster-enabled yes",
        "cluster-config-file /data/nodes.conf",
        "cluster-port 16379",
        "cluster-node-timeout 5000",
        "cluster-preferred-endpoint-type ip",
        "include /etc/redis-acl/node.conf",
        "aclfile /etc/redis-acl/users.acl",
        "maxmemory-policy noeviction",
        "appendonly yes",
    ] {
        assert!(
            conf.lines().any(|l| l.trim() == line),
            "no {line:?} in:\n{conf}"
        );
    }
    let init = &config_map(&rendered, CLUSTER)["init-node.sh"];
    assert!(init.contains(r#"printf 'masterauth %s\ncluster-announce-hostname %s.%s\n' "$REDIS_PASSWORD" "$POD_NAME" "$POD_DOMAIN""#), "{init}");
    let pod = rendered.stateful_sets[0]
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec");
    let acl = &pod.init_containers.as_ref().expect("init containers")[0];
    assert_eq!(
        acl.command.clone().unwrap_or_default(),
        ["sh", "/etc/redis-conf/init-node.sh"]
    );
    assert_eq!(
        secret_ref(env(acl, "REDIS_PASSWORD")),
        Some(("cart-cart-service-redis", "redis-password"))
    );
    assert_eq!(field_ref(env(acl, "POD_NAME")), Some("metadata.name"));
    assert_eq!(field_ref(env(acl, "POD_IP")), Some("status.podIP"));
    assert_eq!(env_value(acl, "POD_DOMAIN"), Some(DOMAIN));
    let mounts: Vec<_> = acl
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        mounts.contains(&"data"),
        "nodes.conf is refreshed before Redis starts: {mounts:?}"
    );
    let redis = pod
        .containers
        .iter()
        .find(|c| c.name == "redis")
        .expect("redis container");
    let ports: Vec<_> = redis
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("redis"), 6379), (Some("bus"), 16379)]);
    let standalone = render_set("default", &[]);
    let standalone_redis = standalone.stateful_sets[0]
        .spec
        .template
        .spec
        .as_ref()
        .expect("pod spec");
    let standalone_redis = standalone_redis
        .containers
        .iter()
        .find(|c| c.name == "redis")
        .expect("redis");
    assert_eq!(redis.security_context, standalone_redis.security_context);
    assert_eq!(redis.resources, standalone_redis.resources);
    assert_eq!(
        pod.security_context,
        standalone.stateful_sets[0]
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
    );
}

#[test]
fn the_hook_job_forms_the_cluster_only_when_every_node_is_new_and_leaves_a_formed_one_alone() {
    let rendered = render_set("redis-cluster", &[]);

    let job = job(&rendered);
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["helm.sh/hook"], "post-install,post-upgrade");
    assert_eq!(
        annotations["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    let container = job_container(&rendered);
    assert_eq!(
        container.command.clone().unwrap_or_default(),
        ["sh", "/etc/redis-conf/form-cluster.sh"]
    );
    let nodes: Vec<String> = (0..6).map(node).collect();
    assert_eq!(
        env_value(container, "NODES"),
        Some(nodes.join(" ").as_str())
    );
    assert_eq!(env_value(container, "REPLICAS"), Some("1"));
    assert_eq!(
        secret_ref(env(container, "REDISCLI_AUTH")),
        Some(("cart-cart-service-redis", "redis-password"))
    );
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("job pod");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

    let script = &config_map(&rendered, CLUSTER)["form-cluster.sh"];
    let position = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{script}"))
    };
    let waits = position(r#"until [ "$(cli "$host" ping 2>/dev/null)" = PONG ]"#);
    let formed =
        position(r#"if [ "$known" != "$expected" ] || [ "$slots" != 16384 ]; then formed=no; fi"#);
    let leaves = position("the cluster is formed already");
    let refuses = position("refusing to touch the Redis Cluster");
    let creates = position(
        r#"redis-cli --no-auth-warning --cluster create $addresses --cluster-replicas "$REPLICAS" --cluster-yes"#,
    );
    assert!(
        waits < formed && formed < leaves && leaves < refuses && refuses < creates,
        "{script}"
    );
    let between = |from: usize, to: usize| &script[from..to];
    assert!(
        between(leaves, refuses).contains("exit 0"),
        "a formed cluster ends the Job successfully"
    );
    assert!(
        between(refuses, creates).contains("exit 1"),
        "a mixed or resized cluster fails the hook"
    );
    assert!(
        between(refuses, creates).contains("--cluster add-node"),
        "the refusal says how to grow it"
    );
}
