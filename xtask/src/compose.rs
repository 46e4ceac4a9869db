//! The wiring of docker-compose.yml, checked as a test: the JSON schema (checked by
//! `cargo xtask ci` with check-jsonschema) says the file is well-formed Compose, and this
//! says the stack hangs together: every `depends_on` names a service, a service waited on
//! as healthy has a healthcheck, cart-service and log-shipper share the log volume (the
//! sidecar pattern), no two services publish the same host port, and cart-service and
//! redis carry healthchecks.

use std::collections::BTreeMap;

use serde_norway::Value;

/// Every wiring problem of a compose file, as sentences; empty when it is sound.
pub fn problems(compose: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let services = compose.get("services").and_then(Value::as_mapping);
    let Some(services) = services else {
        return vec!["no services".to_owned()];
    };
    let service = |name: &str| services.get(name);
    let mut host_ports: BTreeMap<String, String> = BTreeMap::new();
    for (name, definition) in services {
        let name = name.as_str().unwrap_or_default();
        for (target, condition) in depends_on(definition) {
            match service(&target) {
                None => found.push(format!(
                    "{name} depends on {target}, which is not a service"
                )),
                Some(dependency)
                    if condition == "service_healthy"
                        && dependency.get("healthcheck").is_none() =>
                {
                    found.push(format!(
                        "{name} waits for {target} to be healthy, but {target} has no healthcheck"
                    ));
                }
                Some(_) => {}
            }
        }
        for port in published_ports(definition) {
            if let Some(other) = host_ports.insert(port.clone(), name.to_owned()) {
                found.push(format!(
                    "host port {port} is published by both {other} and {name}"
                ));
            }
        }
    }
    for name in ["redis", "cart-service"] {
        if service(name).is_none_or(|s| s.get("healthcheck").is_none()) {
            found.push(format!("{name} is missing or has no healthcheck"));
        }
    }
    let app_logs = service("cart-service").map(|s| log_volume(s, "/var/log/app"));
    let shipper_logs = service("log-shipper").map(|s| log_volume(s, "/var/log/app"));
    match (app_logs.flatten(), shipper_logs.flatten()) {
        (Some(app), Some(shipper)) if app == shipper => {}
        (app, shipper) => found.push(format!(
            "cart-service ({app:?}) and log-shipper ({shipper:?}) must mount one named volume at /var/log/app"
        )),
    }
    found
}

/// `depends_on` in either form: a list of names, or a map of name to `{condition}`.
fn depends_on(service: &Value) -> Vec<(String, String)> {
    match service.get("depends_on") {
        Some(Value::Sequence(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(|name| (name.to_owned(), "service_started".to_owned()))
            .collect(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(name, options)| {
                let condition = options
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                (
                    name.as_str().unwrap_or_default().to_owned(),
                    condition.to_owned(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Host ports in short syntax (`"8080:8080"`, `"127.0.0.1:8080:8080"`) or long (`published`).
fn published_ports(service: &Value) -> Vec<String> {
    let ports = service
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten();
    ports
        .filter_map(|port| match port {
            Value::String(short) => {
                let fields: Vec<&str> = short.split(':').collect();
                (fields.len() >= 2).then(|| fields[..fields.len() - 1].join(":"))
            }
            Value::Mapping(_) => port.get("published").map(|p| match p {
                Value::String(s) => s.clone(),
                other => serde_norway::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// The named volume a service mounts at `path`, in short syntax (`name:/path[:ro]`).
fn log_volume(service: &Value, path: &str) -> Option<String> {
    service
        .get("volumes")?
        .as_sequence()?
        .iter()
        .find_map(|volume| {
            let mut parts = volume.as_str()?.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            (target == path && !source.starts_with(['.', '/'])).then(|| source.to_owned())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn docker_compose_yml_is_wired_soundly() {
        let path = crate::workspace_root().join("docker-compose.yml");
        let compose = parse(&std::fs::read_to_string(&path).unwrap());

        let found = problems(&compose);

        assert!(found.is_empty(), "{}: {found:#?}", path.display());
    }

    #[test]
    fn docker_compose_yml_runs_the_image_health_check_and_waits_for_healthy_redis() {
        let compose = parse(
            &std::fs::read_to_string(crate::workspace_root().join("docker-compose.yml")).unwrap(),
        );
        let app = &compose["services"]["cart-service"];

        assert_eq!(
            app["healthcheck"]["test"],
            parse(r#"["CMD", "/usr/local/bin/cart-service", "healthcheck"]"#)
        );
        assert_eq!(
            depends_on(app)[0],
            ("redis".to_owned(), "service_healthy".to_owned())
        );
        assert_eq!(app["environment"]["REDIS_URL"], parse("redis://redis:6379"));
    }

    #[test]
    fn broken_wiring_is_reported_in_sentences() {
        let compose = parse(
            r#"
services:
  redis: {image: redis}
  cart-service:
    ports: ["8080:8080"]
    volumes: ["logs:/var/log/app"]
    depends_on: {redis: {condition: service_healthy}, db: {condition: service_started}}
    healthcheck: {test: ["CMD", "true"]}
  log-shipper:
    ports: ["127.0.0.1:9000:80", {target: 81, published: "8080"}]
    volumes: ["other:/var/log/app:ro"]
"#,
        );

        let found = problems(&compose);

        assert_eq!(
            found,
            [
                "cart-service waits for redis to be healthy, but redis has no healthcheck",
                "cart-service depends on db, which is not a service",
                "host port 8080 is published by both cart-service and log-shipper",
                "redis is missing or has no healthcheck",
                "cart-service (Some(\"logs\")) and log-shipper (Some(\"other\")) must mount one named volume at /var/log/app",
            ]
        );
    }
}
