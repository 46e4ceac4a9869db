//! The values themselves: `values.yaml` and every ci set fit the `Values` types with
//! unknown fields denied, and impossible values fail `helm template` naming the value.

use serde_json::Value;

use super::render;
use crate::chart::{CHART, ci_values_files};
use crate::values::Values;

fn defaults() -> Value {
    let path = crate::workspace_root().join(CHART).join("values.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).expect("values.yaml"))
        .expect("values.yaml is YAML")
}

/// Overlays `over` onto `base` the way Helm merges values files.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

#[test]
fn values_yaml_deserializes_into_values_with_unknown_fields_denied() {
    let result = serde_json::from_value::<Values>(defaults());

    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn every_ci_values_file_over_the_defaults_deserializes_into_values() {
    for file in ci_values_files().expect("ci values files") {
        let mut values = defaults();
        let over: Value =
            serde_norway::from_str(&std::fs::read_to_string(&file).expect("read")).expect("YAML");

        merge(&mut values, over);

        let result = serde_json::from_value::<Values>(values);
        assert!(result.is_ok(), "{}: {result:?}", file.display());
    }
}

#[test]
fn an_unknown_value_is_rejected() {
    let mut values = defaults();
    merge(&mut values, serde_json::json!({"redis": {"pasword": "x"}}));

    let error = serde_json::from_value::<Values>(values)
        .expect_err("unknown field accepted")
        .to_string();

    assert!(error.contains("pasword"), "{error}");
}

/// `helm template` with `sets` must fail, and its message must contain `named`.
pub(super) fn assert_rejected(sets: &[(&str, &str)], named: &str) {
    let error = render(&[], sets)
        .map(|_| ())
        .expect_err("helm accepted bad values");
    let message = format!("{error:#}");
    assert!(
        message.contains(named),
        "the error does not name {named}: {message}"
    );
}

#[test]
fn bad_values_fail_helm_with_a_message_naming_the_value() {
    assert_rejected(
        &[
            ("autoscaling.minReplicas", "5"),
            ("autoscaling.maxReplicas", "3"),
        ],
        "autoscaling.minReplicas",
    );
    assert_rejected(
        &[("redis.persistence.size", "lots")],
        "redis.persistence.size",
    );
    assert_rejected(
        &[("autoscaling.minReplicas", "1")],
        "autoscaling.minReplicas",
    );
    assert_rejected(&[("runAsUser", "0")], "runAsUser");
    assert_rejected(&[("redis.mode", "external")], "externalRedis.host");
    assert_rejected(
        &[("resources.limits.memory", "a lot")],
        "resources.limits.memory",
    );
    assert_rejected(&[("redis.maxmemory", "half")], "redis.maxmemory");
}
