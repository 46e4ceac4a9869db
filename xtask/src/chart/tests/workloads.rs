//! Assertions on the workloads: the service's environment and probes, the restricted
//! profile and resources of every container, the HPA, the log shipper and Redis storage.

use super::{all_containers, env_value, render_every_set, render_set};

#[test]
fn downward_api_fills_pod_node_namespace_and_ip_and_the_otel_resource() {
    let rendered = render_set("default", &[]);
    let container = rendered.api_container();

    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ] {
        let env = container.env.iter().flatten().find(|e| e.name == name);
        let field = env.and_then(|e| e.value_from.as_ref()?.field_ref.as_ref());
        assert_eq!(field.map(|f| f.field_path.as_str()), Some(path), "{name}");
    }
    let resource =
        env_value(container, "OTEL_RESOURCE_ATTRIBUTES").expect("OTEL_RESOURCE_ATTRIBUTES");
    for part in [
        "k8s.pod.name=$(POD_NAME)",
        "k8s.node.name=$(NODE_NAME)",
        "k8s.namespace.name=$(POD_NAMESPACE)",
    ] {
        assert!(resource.contains(part), "{resource}");
    }
    assert_eq!(
        env_value(container, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some("http://cart-cart-service-otel-collector:4317")
    );
}

#[test]
fn probes_use_livez_for_startup_and_liveness_and_readyz_for_readiness() {
    let rendered = render_set("default", &[]);
    let container = rendered.api_container();

    let path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        path(container.startup_probe.as_ref()).as_deref(),
        Some("/livez")
    );
    assert_eq!(
        path(container.liveness_probe.as_ref()).as_deref(),
        Some("/livez")
    );
    assert_eq!(
        path(container.readiness_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
}

#[test]
fn every_container_of_every_set_meets_the_restricted_profile_and_has_requests_and_limits() {
    for (set, rendered) in render_every_set() {
        for (owner, spec) in rendered.pod_specs() {
            assert_eq!(
                spec.automount_service_account_token,
                Some(false),
                "{set}/{owner}"
            );
            let pod_sc = spec.security_context.as_ref().expect("pod securityContext");
            assert_eq!(pod_sc.run_as_non_root, Some(true), "{set}/{owner}");
            for c in all_containers(spec) {
                let at = format!("{set}/{owner}/{}", c.name);
                let sc = c
                    .security_context
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: no securityContext"));
                assert_eq!(sc.run_as_non_root, Some(true), "{at}");
                assert!(
                    sc.run_as_user.unwrap_or(0) >= 10000,
                    "{at}: runAsUser below 10000"
                );
                assert_eq!(sc.read_only_root_filesystem, Some(true), "{at}");
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{at}");
                let drop = sc
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.drop.clone())
                    .unwrap_or_default();
                assert_eq!(drop, ["ALL"], "{at}");
                let seccomp = sc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
                assert_eq!(seccomp, Some("RuntimeDefault"), "{at}");
                let resources = c
                    .resources
                    .as_ref()
                    .unwrap_or_else(|| panic!("{at}: no resources"));
                for list in [&resources.requests, &resources.limits] {
                    let list = list
                        .as_ref()
                        .unwrap_or_else(|| panic!("{at}: requests and limits"));
                    assert!(
                        list.contains_key("cpu") && list.contains_key("memory"),
                        "{at}"
                    );
                }
            }
        }
    }
}

#[test]
fn hpa_targets_the_deployment_which_then_has_no_replicas() {
    let rendered = render_set("default", &[]);

    let hpa = rendered.hpas.first().expect("an HPA");
    let spec = &hpa.spec;
    let deployment = rendered.deployment("");
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!(
        spec.scale_target_ref.api_version.as_deref(),
        Some("apps/v1")
    );
    assert_eq!(
        Some(&spec.scale_target_ref.name),
        deployment.metadata.name.as_ref()
    );
    assert!(spec.min_replicas.unwrap_or(1) >= 2);
    let down = spec.behavior.as_ref().and_then(|b| b.scale_down.as_ref());
    assert_eq!(down.and_then(|d| d.stabilization_window_seconds), Some(300));
    assert_eq!(deployment.spec.replicas, None);
}

#[test]
fn with_the_hpa_off_the_deployment_sets_its_replicas() {
    let rendered = render_set("hpa-off", &[]);

    assert!(rendered.hpas.is_empty());
    assert_eq!(rendered.deployment("").spec.replicas, Some(3));
}

#[test]
fn shutdown_fits_in_the_grace_period_with_room_for_the_flush() {
    let rendered = render_set("default", &[]);
    let container = rendered.api_container();

    let seconds = |name| {
        env_value(container, name)
            .and_then(|v| v.parse::<i64>().ok())
            .expect(name)
    };
    let drain = seconds("SHUTDOWN_DRAIN_DELAY_SECONDS");
    let in_flight = seconds("SHUTDOWN_TIMEOUT_SECONDS");
    let grace = rendered
        .api_pod()
        .termination_grace_period_seconds
        .expect("grace period");
    let export_ms = seconds("OTEL_EXPORTER_OTLP_TIMEOUT");
    assert_eq!(drain, 5);
    assert!(
        grace * 1000 >= (drain + in_flight) * 1000 + export_ms,
        "grace {grace} s leaves no time for an export of {export_ms} ms"
    );
}

#[test]
fn the_connection_limits_reach_the_service_as_its_variables() {
    let rendered = render_set(
        "default",
        &[
            ("config.httpIdleTimeoutMs", "45000"),
            ("config.httpMaxConnections", "2048"),
        ],
    );
    let container = rendered.api_container();

    assert_eq!(env_value(container, "HTTP_IDLE_TIMEOUT_MS"), Some("45000"));
    assert_eq!(env_value(container, "HTTP_MAX_CONNECTIONS"), Some("2048"));
}

#[test]
fn log_shipper_is_a_native_sidecar_tailing_the_rotated_log_files() {
    let rendered = render_set("default", &[]);
    let pod = rendered.api_pod();

    let sidecar = pod
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "log-shipper");
    let sidecar = sidecar.expect("a log-shipper init container");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert!(sidecar.liveness_probe.is_some() && sidecar.readiness_probe.is_some());
    assert_eq!(
        env_value(rendered.api_container(), "LOG_FILE"),
        Some("/var/log/app/cart-service.log")
    );
    let logs = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "logs")
        .expect("logs volume");
    assert!(
        logs.empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
            .is_some()
    );
    let config = rendered
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("cart-cart-service-fluent-bit"));
    let conf = config
        .and_then(|c| c.data.as_ref()?.get("fluent-bit.conf").cloned())
        .expect("fluent-bit.conf");
    assert!(
        conf.contains("Path             /var/log/app/cart-service.log*"),
        "{conf}"
    );
}

#[test]
fn log_shipper_type_tail_follows_the_newest_file_with_busybox_and_drops_fluent_bit() {
    let rendered = render_set("default", &[("logShipper.type", "tail")]);
    let pod = rendered.api_pod();

    let sidecar = pod
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "log-shipper")
        .expect("a log-shipper init container");
    assert_eq!(sidecar.image.as_deref(), Some("busybox:1.37"));
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let script = sidecar
        .args
        .iter()
        .flatten()
        .next()
        .expect("the follow script");
    // `$$(` reaches the shell as `$(`; a bare `$(` would be the kubelet's variable syntax.
    assert!(
        script.contains("newest=$$(ls -1 /var/log/app/cart-service.log*"),
        "{script}"
    );
    assert!(script.contains("tail -n +1 -F \"$newest\""), "{script}");
    assert!(sidecar.liveness_probe.is_some() && sidecar.readiness_probe.is_none());
    let mounts = sidecar.volume_mounts.iter().flatten();
    assert_eq!(
        mounts
            .map(|m| (m.mount_path.as_str(), m.read_only))
            .collect::<Vec<_>>(),
        [("/var/log/app", Some(true))]
    );
    assert!(
        rendered.config_maps.iter().all(|c| !c
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .ends_with("fluent-bit")),
        "no Fluent Bit config without Fluent Bit"
    );
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(!volumes.contains(&"fluent-bit-config"), "{volumes:?}");
}

#[test]
fn every_command_and_argument_reaches_the_container_as_written_after_the_kubelet_expands_it() {
    // The kubelet expands `$(NAME)` in command and args and turns `$$` into `$`. Two
    // scripts broke on it: a `$$` shell PID became a `$` in a user id (every `helm test`
    // got 422), and a comment's `$(` swallowed the text up to the next `)`, so a `$$(`
    // escape reached the shell unhalved.
    for (set, rendered) in render_every_set() {
        for (owner, spec) in rendered.pod_specs() {
            for container in super::all_containers(spec) {
                let words = container
                    .command
                    .iter()
                    .flatten()
                    .chain(container.args.iter().flatten());
                for word in words {
                    let where_ = format!("{set}: {owner}/{}", container.name);
                    let halved = word
                        .match_indices("$$")
                        .any(|(at, _)| !word[at + 2..].starts_with('('));
                    assert!(!halved, "{where_}: a $$ the kubelet halves: {word}");
                    let expanded = kubelet_expand(word);
                    assert!(
                        !expanded.contains("$$"),
                        "{where_}: a $$ the kubelet leaves whole: {expanded}"
                    );
                }
            }
        }
    }
}

/// The kubelet's expansion of a command or argument with no variable defined
/// (`third_party/forked/golang/expansion` in Kubernetes): `$$` is `$`, `$(NAME)` of an
/// unknown name stays as written, and `$` before anything else stays.
fn kubelet_expand(input: &str) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let consumed = if after.starts_with('$') {
            out.push('$');
            1
        } else if let Some(name) = after.strip_prefix('(') {
            if let Some(end) = name.find(')') {
                out.push_str(&rest[at..at + end + 3]);
                end + 2
            } else {
                out.push_str("$(");
                1
            }
        } else {
            out.push('$');
            0
        };
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

#[test]
fn kubelet_expand_halves_double_dollars_and_keeps_unknown_references_whole() {
    assert_eq!(kubelet_expand("a$$(date)b"), "a$(date)b");
    assert_eq!(kubelet_expand("pid $$!"), "pid $!");
    assert_eq!(kubelet_expand("$(cat f) $HOME"), "$(cat f) $HOME");
    assert_eq!(
        kubelet_expand("# $(. then $$(date +%s)"),
        "# $(. then $$(date +%s)"
    );
    assert_eq!(kubelet_expand("open $( end$"), "open $( end$");
}

#[test]
fn redis_keeps_its_data_on_a_claim_only_when_persistence_is_on() {
    let on = render_set("default", &[]);
    let off = render_set("persistence-off", &[]);

    let claims = |r: &super::Rendered| {
        r.stateful_sets[0]
            .spec
            .volume_claim_templates
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(claims(&on).len(), 1);
    assert!(claims(&off).is_empty());
    let volumes = off.stateful_sets[0]
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone());
    let data = volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "data")
        .expect("data volume");
    assert!(data.empty_dir.is_some());
}

#[test]
fn redis_conf_never_evicts_and_disables_dangerous_commands() {
    let rendered = render_set("default", &[]);

    let config = rendered
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("cart-cart-service-redis"));
    let data = config
        .and_then(|c| c.data.clone())
        .expect("redis ConfigMap");
    assert!(data["redis.conf"].contains("maxmemory-policy noeviction"));
    assert!(data["redis.conf"].contains("appendonly yes"));
    for command in ["-flushall", "-flushdb", "-config", "-keys", "-debug"] {
        assert!(data["acl-rules"].contains(command), "{command}");
    }
}
