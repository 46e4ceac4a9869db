//! The small value types the chart's values share: images, resources and the string
//! formats Kubernetes and Redis parse (quantities, Redis memory sizes, `host:port`), each with the
//! pattern that makes Helm reject a malformed one before it reaches the cluster.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A Kubernetes quantity such as `100m`, `1`, `256Mi` or `1Gi`, always written as a string.
pub const QUANTITY_PATTERN: &str =
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$";

/// A Redis memory size such as `200mb` or `1gb`.
pub const REDIS_MEMORY_PATTERN: &str = r"^[0-9]+([kKmMgG][bB]?|[bB])?$";

/// A host and port such as `redis-0.example.internal:6379`, `10.0.0.7:6379` or `[fd00::7]:6379`.
pub const HOST_PORT_PATTERN: &str =
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$";

/// A container image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    /// Image repository.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag.
    pub tag: String,
    /// Image digest (`sha256:...`); when set, the image is pulled by tag and digest.
    #[schemars(pattern(r"^(sha256:[a-f0-9]{64})?$"))]
    pub digest: String,
    /// `IfNotPresent`, `Always` or `Never` (for images loaded into kind).
    pub pull_policy: PullPolicy,
}

/// When the kubelet pulls an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    IfNotPresent,
    Always,
    Never,
}

/// Requests and limits of one container; both are required, so no container runs unbounded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    pub requests: ResourceList,
    /// The most the container may use.
    pub limits: ResourceList,
}

/// CPU and memory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// CPU, as a quantity string such as `100m` or `"1"`.
    pub cpu: Quantity,
    /// Memory, as a quantity string such as `64Mi`.
    pub memory: Quantity,
}

/// A Kubernetes quantity, checked against [`QUANTITY_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": QUANTITY_PATTERN,
        })
    }
}

/// A Redis memory size, checked against [`REDIS_MEMORY_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedisMemory(pub String);

impl JsonSchema for RedisMemory {
    fn schema_name() -> Cow<'static, str> {
        "RedisMemory".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": REDIS_MEMORY_PATTERN,
        })
    }
}

/// A `host:port`, checked against [`HOST_PORT_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostPort(pub String);

impl JsonSchema for HostPort {
    fn schema_name() -> Cow<'static, str> {
        "HostPort".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": HOST_PORT_PATTERN,
        })
    }
}
