//! The Kubernetes API objects the chart's values take as they are: tolerations, and the
//! peers and egress rules of a NetworkPolicy. Their JSON Schemas are k8s-openapi's, but
//! k8s-openapi belongs to the cluster stack the xtask binary builds without, so the
//! schemas are committed beside this file (`k8s.schema.json`) and a test regenerates them
//! from k8s-openapi (a dev-dependency), rewriting the file and failing when they drift.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// k8s-openapi's schemas of the types below, by type name, inlined as `cargo xtask gen` inlines.
const SCHEMAS: &str = include_str!("k8s.schema.json");

/// A `core/v1` Toleration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Toleration(Map<String, Value>);

/// A `networking/v1` NetworkPolicyPeer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkPolicyPeer(Map<String, Value>);

/// A `networking/v1` NetworkPolicyEgressRule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkPolicyEgressRule(Map<String, Value>);

macro_rules! committed_schema {
    ($($name:ident),*) => {$(
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                committed(stringify!($name))
            }
        }
    )*};
}

committed_schema!(Toleration, NetworkPolicyPeer, NetworkPolicyEgressRule);

/// The committed schema of `name`.
// The file is compiled in, and the test below proves it holds every name as a schema.
#[allow(clippy::expect_used)]
fn committed(name: &str) -> Schema {
    let mut schemas: Map<String, Value> =
        serde_json::from_str(SCHEMAS).expect("values/k8s.schema.json is a JSON object");
    let schema = schemas
        .remove(name)
        .expect("values/k8s.schema.json names every type");
    Schema::try_from(schema).expect("values/k8s.schema.json holds schemas")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use k8s_openapi::api::core::v1;
    use k8s_openapi::api::networking::v1 as networking;

    use super::*;

    #[test]
    fn committed_schemas_are_k8s_openapis() {
        let mut generator = crate::codegen::schema_settings().into_generator();
        let schemas: Map<String, Value> = [
            ("Toleration", generator.subschema_for::<v1::Toleration>()),
            (
                "NetworkPolicyPeer",
                generator.subschema_for::<networking::NetworkPolicyPeer>(),
            ),
            (
                "NetworkPolicyEgressRule",
                generator.subschema_for::<networking::NetworkPolicyEgressRule>(),
            ),
        ]
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema.to_value()))
        .collect();
        let expected = serde_json::to_string_pretty(&schemas).unwrap() + "\n";

        let path = crate::workspace_root().join("xtask/src/values/k8s.schema.json");
        if SCHEMAS != expected {
            std::fs::write(&path, &expected).unwrap();
        }

        assert!(
            SCHEMAS == expected,
            "{} was out of date with k8s-openapi and has been rewritten: review and commit it",
            path.display()
        );
        for name in schemas.keys() {
            committed(name);
        }
    }
}
