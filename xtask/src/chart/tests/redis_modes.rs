//! Assertions on what each `redis.mode` gives the service: `REDIS_MODE`, one URL or every
//! seed node's, the `WAIT` settings, the `helm test` pods in every mode, and the values that
//! cannot work refused by Helm with a message naming them.

use super::network::policy;
use super::redis_cluster::{env, node, secret_ref};
use super::redis_cluster_network::port_numbers;
use super::{env_value, render, render_set};

/// Helm's own message for values it must refuse (without the command line, which
/// repeats the values and would name them whatever Helm said).
fn refusal(sets: &[(&str, &str)]) -> String {
    let error = render(&[], sets).expect_err("helm accepted values it must refuse");
    let message = format!("{error:#}");
    let (_, helm) = message.split_once("` failed: ").expect("helm's message");
    helm.to_owned()
}

#[test]
fn in_cluster_mode_the_service_gets_every_node_as_a_seed_and_the_wait_settings() {
    let rendered = render_set("redis-cluster", &[("config.redisWaitTimeoutMs", "400")]);
    let container = rendered.api_container();

    assert_eq!(env_value(container, "REDIS_MODE"), Some("cluster"));
    let url = env_value(container, "REDIS_URL").expect("REDIS_URL");
    let seeds: Vec<String> = (0..6)
        .map(|i| format!("redis://:$(REDIS_PASSWORD)@{}:6379", node(i)))
        .collect();
    assert_eq!(url, seeds.join(","));
    let names: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    let at = |name| names.iter().position(|n| *n == name).expect(name);
    assert!(
        at("REDIS_PASSWORD") < at("REDIS_URL"),
        "$(REDIS_PASSWORD) expands only if defined first"
    );
    assert_eq!(env_value(container, "REDIS_WAIT_REPLICAS"), Some("1"));
    assert_eq!(env_value(container, "REDIS_WAIT_TIMEOUT_MS"), Some("400"));
}

#[test]
fn standalone_mode_keeps_one_url_and_no_redis_mode() {
    let rendered = render_set("default", &[]);
    let container = rendered.api_container();

    assert_eq!(env_value(container, "REDIS_MODE"), None);
    assert_eq!(
        env_value(container, "REDIS_URL"),
        Some("redis://:$(REDIS_PASSWORD)@cart-cart-service-redis:6379")
    );
    assert_eq!(env_value(container, "REDIS_WAIT_REPLICAS"), Some("0"));
    assert_eq!(env_value(container, "REDIS_WAIT_TIMEOUT_MS"), Some("250"));
    let names: Vec<_> = rendered
        .stateful_sets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["cart-cart-service-redis"]);
    assert!(rendered.jobs.is_empty(), "no hook Job outside cluster mode");
    assert_eq!(
        rendered.pdbs.len(),
        1,
        "only the service's PodDisruptionBudget"
    );
}

#[test]
fn an_external_cluster_gets_its_seed_nodes_over_tls_and_no_redis_in_the_release() {
    let rendered = render_set("external-redis-cluster", &[]);
    let container = rendered.api_container();

    assert!(
        rendered.stateful_sets.is_empty()
            && rendered.jobs.is_empty()
            && rendered.secrets.is_empty()
    );
    assert_eq!(env_value(container, "REDIS_MODE"), Some("cluster"));
    assert_eq!(
        env_value(container, "REDIS_URL"),
        Some(
            "rediss://:$(REDIS_PASSWORD)@redis-0.example.internal:6380,\
             rediss://:$(REDIS_PASSWORD)@redis-1.example.internal:6380,\
             rediss://:$(REDIS_PASSWORD)@redis-2.example.internal:6381"
        )
    );
    assert_eq!(
        secret_ref(env(container, "REDIS_PASSWORD")),
        Some(("managed-redis", "password"))
    );
    let cart = policy(&rendered, "cart-cart-service");
    let to_any: Vec<i32> = cart
        .egress
        .iter()
        .flatten()
        .filter(|rule| rule.to.is_none())
        .flat_map(|rule| port_numbers(rule.ports.as_ref()))
        .collect();
    assert_eq!(to_any, [6380, 6381], "each seed port once, to any address");

    let single = render_set("external-redis", &[]);
    assert_eq!(env_value(single.api_container(), "REDIS_MODE"), None);
}

#[test]
fn the_helm_tests_run_in_every_mode() {
    for set in [
        "default",
        "redis-cluster",
        "external-redis",
        "external-redis-cluster",
    ] {
        let rendered = render_set(set, &[]);

        let tests: Vec<_> = rendered
            .pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        assert_eq!(
            tests,
            [
                "cart-cart-service-test-cart-round-trip",
                "cart-cart-service-test-readyz"
            ],
            "{set}"
        );
    }
}

#[test]
fn redis_values_that_cannot_work_are_refused_naming_the_value() {
    let cluster = ("redis.mode", "cluster");
    let external_cluster = [
        ("redis.mode", "external"),
        ("externalRedis.cluster", "true"),
    ];

    let old = refusal(&[("redis.enabled", "true")]);
    assert!(
        old.contains("redis.enabled was replaced by redis.mode"),
        "{old}"
    );
    let old = refusal(&[
        ("redis.enabled", "false"),
        ("externalRedis.host", "redis.example.internal"),
    ]);
    assert!(old.contains("redis.mode"), "{old}");
    let few = refusal(&[cluster, ("redis.cluster.masters", "2")]);
    assert!(
        few.contains("/redis/cluster/masters") && few.contains("want 3"),
        "{few}"
    );
    let seedless = refusal(&external_cluster);
    assert!(
        seedless.contains("externalRedis.nodes needs at least one host:port"),
        "{seedless}"
    );
    let portless = refusal(&[
        external_cluster[0],
        external_cluster[1],
        ("externalRedis.nodes[0]", "redis.example.internal"),
    ]);
    assert!(portless.contains("/externalRedis/nodes/0"), "{portless}");
    let database = refusal(&[
        external_cluster[0],
        external_cluster[1],
        ("externalRedis.nodes[0]", "redis.example.internal:6379"),
        ("externalRedis.database", "2"),
    ]);
    assert!(
        database.contains("externalRedis.database (2) must be 0"),
        "{database}"
    );
    let stray = refusal(&[("externalRedis.nodes[0]", "redis.example.internal:6379")]);
    assert!(stray.contains("externalRedis.nodes"), "{stray}");
    let ephemeral = refusal(&[cluster, ("redis.persistence.enabled", "false")]);
    assert!(
        ephemeral.contains("redis.persistence.enabled"),
        "{ephemeral}"
    );
    let too_many = refusal(&[cluster, ("config.redisWaitReplicas", "2")]);
    assert!(too_many.contains("config.redisWaitReplicas (2) must not be greater than redis.cluster.replicasPerMaster (1)"), "{too_many}");
    let no_replica = refusal(&[("config.redisWaitReplicas", "1")]);
    assert!(
        no_replica.contains("config.redisWaitReplicas (1) must be 0 with redis.mode standalone"),
        "{no_replica}"
    );
    let bus = refusal(&[cluster, ("redis.cluster.busPort", "6379")]);
    assert!(bus.contains("redis.cluster.busPort (6379)"), "{bus}");
}
