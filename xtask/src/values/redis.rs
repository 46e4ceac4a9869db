//! Values of the service's Redis: one Redis in the release (`standalone`), a Redis Cluster
//! in the release (`cluster`), or a Redis or Redis Cluster outside it (`external`). The
//! in-release modes share one StatefulSet template, so both get the same security
//! contexts, persistence, resources and `noeviction` policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::scalars::{HostPort, Image, Quantity, RedisMemory, Resources};

/// Redis in the release.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redis {
    /// Where the service's data lives: `standalone` runs one Redis as a StatefulSet in the release; `cluster` runs a Redis Cluster in the release (see `redis.cluster`); `external` runs no Redis and connects to `externalRedis`. Changing it on an existing release moves no data.
    pub mode: RedisMode,
    /// Removed: `redis.mode` replaced it (`true` is `mode: standalone`, `false` is `mode: external`). Any value is refused with a message saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The Redis image (Redis 7 or newer: cluster mode announces host names).
    pub image: Image,
    /// Redis port.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: u16,
    /// UID and GID Redis runs as (10000 or more).
    #[schemars(range(min = 10000))]
    pub run_as_user: u32,
    /// Authentication; a password is always required, in both in-release modes.
    pub auth: RedisAuth,
    /// `maxmemory` of the dataset (of each node in mode `cluster`), such as `200mb`; the policy is `noeviction`, so a full Redis refuses writes rather than dropping carts.
    pub maxmemory: RedisMemory,
    /// `appendfsync` of the append-only file.
    pub appendfsync: AppendFsync,
    /// The data volume of each Redis pod.
    pub persistence: RedisPersistence,
    /// Requests and limits of each Redis container (and of its init container); keep the memory limit above `maxmemory`.
    pub resources: Resources,
    /// The redis_exporter sidecar.
    pub exporter: RedisExporter,
    /// The Redis Cluster of mode `cluster`.
    pub cluster: RedisCluster,
}

/// Where the service's Redis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    Standalone,
    Cluster,
    External,
}

/// The Redis password.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisAuth {
    /// An existing Secret holding the password (URL-safe characters); empty means the chart creates one with a random password, kept across upgrades and on uninstall. In mode `cluster` it is every node's password and the one replicas give their master (`masterauth`).
    pub existing_secret: String,
    /// Key of the password in the Secret.
    #[schemars(length(min = 1))]
    pub existing_secret_key: String,
}

/// How often Redis fsyncs the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    Everysec,
    Always,
    No,
}

/// The Redis data volume.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisPersistence {
    /// Keep the data on a PersistentVolumeClaim; off means an emptyDir, lost with the pod. Mode `cluster` needs it on: a node's `nodes.conf`, its identity in the cluster, must outlive the pod.
    pub enabled: bool,
    /// Size of the volume (or the emptyDir's `sizeLimit`), such as `1Gi`.
    pub size: Quantity,
    /// StorageClass; empty uses the cluster default.
    pub storage_class: String,
}

/// The redis_exporter sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisExporter {
    /// Run it (Prometheus metrics on port 9121), beside every Redis node.
    pub enabled: bool,
    /// The redis_exporter image.
    pub image: Image,
    /// Requests and limits of the exporter.
    pub resources: Resources,
}

/// A Redis Cluster in the release: `masters × (1 + replicasPerMaster)` pods of one
/// StatefulSet, formed by a post-install and post-upgrade hook Job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisCluster {
    /// Masters, among which the 16384 hash slots are split; at least 3, since a failover needs a majority of masters. Fixed once the cluster is formed: the hook refuses a changed size rather than reshard (see the chart README).
    #[schemars(range(min = 3, max = 100))]
    pub masters: u32,
    /// Replicas of each master; one is promoted when its master fails. 0 means no failover. Fixed once the cluster is formed, like `masters`.
    #[schemars(range(max = 5))]
    pub replicas_per_master: u32,
    /// Cluster bus port (gossip and failover between the nodes); 0 means `port` + 10000.
    pub bus_port: u16,
    /// `cluster-node-timeout` in milliseconds: how long a master may be unreachable before the others mark it failed and promote its replica.
    #[schemars(range(min = 500, max = 120_000))]
    pub node_timeout_ms: u32,
    /// Requests and limits of the hook Job that forms the cluster.
    pub job_resources: Resources,
}

/// A Redis outside the release.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRedis {
    /// Host name of the Redis; required in mode `external` unless `cluster` is true.
    pub host: String,
    /// Its port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Database number; must be 0 with `cluster`, as Redis Cluster has only database 0.
    #[schemars(range(max = 15))]
    pub database: u32,
    /// The Redis is a Redis Cluster (for example ElastiCache or Memorystore in cluster mode, or Valkey cluster): the service gets `nodes` as seeds and `REDIS_MODE=cluster`, and learns the other nodes from them.
    pub cluster: bool,
    /// Seed nodes of the external Redis Cluster, as `host:port`; at least one with `cluster`, more so that one unreachable seed does not stop a start. With NetworkPolicies on, their ports are the ones the service may reach.
    pub nodes: Vec<HostPort>,
    /// Connect over TLS (`rediss://`), verifying the server's certificate and name.
    pub tls: bool,
    /// TLS files from an existing Secret, for a Redis whose certificate comes from a private CA or that requires a client certificate.
    pub tls_secret: RedisTlsSecret,
    /// Secret holding its password (URL-safe characters); empty means no password.
    pub existing_secret: String,
    /// Key of the password in that Secret.
    #[schemars(length(min = 1))]
    pub existing_secret_key: String,
}

/// An existing Secret with TLS files for the external Redis, under the keys cert-manager
/// writes (`ca.crt`, `tls.crt`, `tls.key`); the files chosen here are mounted read-only into
/// the service's pods, which read them at startup (a renewed certificate needs a restart).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTlsSecret {
    /// Name of the Secret; empty means none: the server is verified against the public roots and no client certificate is presented. Needs `externalRedis.tls`.
    pub name: String,
    /// Verify the server against the Secret's `ca.crt` (`REDIS_CA_FILE`) instead of the public roots.
    pub ca: bool,
    /// Present the Secret's `tls.crt` and `tls.key` as a client certificate (`REDIS_CLIENT_CERT_FILE`, `REDIS_CLIENT_KEY_FILE`), for a Redis that requires one.
    pub client_certificate: bool,
}
