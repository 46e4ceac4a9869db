//! Where Redis is and how the service talks to it: one server or a cluster's seed nodes,
//! the connections' timeouts, waiting for replicas, and the TLS files ([`super::tls`]).

use std::time::Duration;

use clap::ValueEnum;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _};

use super::{ConfigError, PemFile, millis};

/// Whether `REDIS_URL` names one server or seed nodes of a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisMode {
    /// One Redis server (with or without replicas behind it).
    Standalone,
    /// A Redis Cluster: `REDIS_URL` lists one or more of its nodes, the rest are discovered.
    Cluster,
}

/// The Redis server and the connections to it.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// `standalone` (one server) or `cluster` (a Redis Cluster; `REDIS_URL` lists seed nodes).
    #[arg(
        id = "redis_mode",
        long = "redis-mode",
        env = "REDIS_MODE",
        value_name = "REDIS_MODE",
        default_value = "standalone",
        value_enum
    )]
    pub mode: RedisMode,

    /// Redis URL: redis:// or rediss:// (TLS), with optional user, password and database.
    /// In cluster mode, one or more nodes' URLs separated by commas (database 0 only).
    #[arg(long = "redis-url", env = "REDIS_URL", value_name = "REDIS_URL",
          default_value = "redis://127.0.0.1:6379", hide_env_values = true,
          value_delimiter = ',', value_parser = redis_url)]
    pub urls: Vec<ConnectionInfo>,

    /// Time to wait for each Redis reply before answering 503, in milliseconds.
    #[arg(long = "redis-response-timeout-ms", env = "REDIS_RESPONSE_TIMEOUT_MS",
          value_name = "REDIS_RESPONSE_TIMEOUT_MS", default_value = "500",
          value_parser = millis(1..=60_000))]
    pub response_timeout: Duration,

    /// Multiplexed Redis connections, used round-robin; each one pipelines the commands of
    /// many requests. In cluster mode, each is a connection to every node.
    #[arg(long = "redis-connections", env = "REDIS_CONNECTIONS",
          value_name = "REDIS_CONNECTIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,

    /// Time to wait for a new Redis connection (TCP, TLS and handshake), in milliseconds.
    #[arg(long = "redis-connect-timeout-ms", env = "REDIS_CONNECT_TIMEOUT_MS",
          value_name = "REDIS_CONNECT_TIMEOUT_MS", default_value = "1000",
          value_parser = millis(1..=60_000))]
    pub connect_timeout: Duration,

    /// Replicas each write must reach (Redis `WAIT`) before it is answered 2xx; 0 answers
    /// once the primary has it. A write not confirmed in time is answered 503.
    #[arg(long = "redis-wait-replicas", env = "REDIS_WAIT_REPLICAS",
          value_name = "REDIS_WAIT_REPLICAS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=5))]
    pub wait_replicas: u8,

    /// Time a write waits for `REDIS_WAIT_REPLICAS` replicas, in milliseconds.
    #[arg(long = "redis-wait-timeout-ms", env = "REDIS_WAIT_TIMEOUT_MS",
          value_name = "REDIS_WAIT_TIMEOUT_MS", default_value = "250",
          value_parser = millis(1..=60_000))]
    pub wait_timeout: Duration,

    /// PEM file of the CA (or CAs) a `rediss://` server's certificate is verified against,
    /// instead of the public roots; read at startup.
    #[arg(long = "redis-ca-file", env = "REDIS_CA_FILE", value_name = "REDIS_CA_FILE",
          value_parser = pem_certificates)]
    pub ca_file: Option<PemFile>,

    /// PEM file of the client certificate (and its chain) presented to a `rediss://` server
    /// that requires one, with `REDIS_CLIENT_KEY_FILE`; read at startup.
    #[arg(long = "redis-client-cert-file", env = "REDIS_CLIENT_CERT_FILE",
          value_name = "REDIS_CLIENT_CERT_FILE", value_parser = pem_certificates)]
    pub client_cert_file: Option<PemFile>,

    /// PEM file of the private key of `REDIS_CLIENT_CERT_FILE`; read at startup.
    #[arg(long = "redis-client-key-file", env = "REDIS_CLIENT_KEY_FILE",
          value_name = "REDIS_CLIENT_KEY_FILE", value_parser = pem_private_key)]
    pub client_key_file: Option<PemFile>,
}

impl RedisConfig {
    /// What the URLs cannot tell alone: one URL for one server; a cluster's seeds all speak
    /// the same way (TLS or not, the same credentials) and use database 0; the TLS files.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let error = |reason: String| {
            Err(ConfigError {
                variable: "REDIS_URL",
                reason,
            })
        };
        let Some(first) = self.urls.first() else {
            return error("is empty: give the URL of a Redis server".into());
        };
        match self.mode {
            RedisMode::Standalone if self.urls.len() > 1 => {
                return error(format!(
                    "lists {} URLs, but REDIS_MODE is standalone: give one URL, or set \
                     REDIS_MODE=cluster for a Redis Cluster's seed nodes",
                    self.urls.len()
                ));
            }
            RedisMode::Standalone => {}
            RedisMode::Cluster => {
                if self.urls.iter().any(|node| node.redis_settings().db() != 0) {
                    return error(
                        "names a database other than 0, which a Redis Cluster does not have".into(),
                    );
                }
                let tls =
                    |node: &ConnectionInfo| matches!(node.addr(), ConnectionAddr::TcpTls { .. });
                let credentials = |node: &ConnectionInfo| {
                    let settings = node.redis_settings();
                    (
                        settings.username().map(ToOwned::to_owned),
                        settings.password().map(ToOwned::to_owned),
                    )
                };
                if self.urls.iter().any(|node| tls(node) != tls(first)) {
                    return error(
                        "mixes redis:// and rediss:// nodes: use one scheme for all".into(),
                    );
                }
                if self
                    .urls
                    .iter()
                    .any(|node| credentials(node) != credentials(first))
                {
                    return error(
                        "gives the nodes different users or passwords: a cluster has one set \
                         (the first URL's is used for every node)"
                            .into(),
                    );
                }
                if matches!(first.addr(), ConnectionAddr::Unix(_)) {
                    return error("names a Unix socket, which a Redis Cluster cannot use".into());
                }
            }
        }
        super::tls::validate(self)
    }

    /// The URL of a standalone server (the first, the only one validation lets through).
    #[must_use]
    pub fn url(&self) -> &ConnectionInfo {
        &self.urls[0]
    }
}

fn redis_url(value: &str) -> Result<ConnectionInfo, String> {
    let info = value
        .trim()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
        return Err(
            "#insecure would skip verifying the server's certificate, which this \
                    service never does; trust a private CA with REDIS_CA_FILE instead"
                .to_owned(),
        );
    }
    Ok(info)
}

fn pem_certificates(value: &str) -> Result<PemFile, String> {
    PemFile::certificates(value.as_ref())
}

fn pem_private_key(value: &str) -> Result<PemFile, String> {
    PemFile::private_key(value.as_ref())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::Cli;

    fn parse(args: &[&str]) -> Result<RedisConfig, String> {
        let config = Cli::try_parse_from(["cart-service"].iter().chain(args))
            .map_err(|e| e.to_string())?
            .config;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config.redis)
    }

    #[test]
    fn a_cluster_takes_a_comma_separated_list_of_seed_nodes() {
        let redis = parse(&[
            "--redis-mode",
            "cluster",
            "--redis-url",
            "redis://:pw@10.0.0.1:6379, redis://:pw@10.0.0.2:6379",
        ])
        .unwrap();
        assert_eq!(redis.mode, RedisMode::Cluster);
        assert_eq!(redis.urls.len(), 2);
        assert_eq!(redis.urls[1].addr().to_string(), "10.0.0.2:6379");

        let one = parse(&[
            "--redis-mode",
            "cluster",
            "--redis-url",
            "redis://seed:7000",
        ]);
        assert_eq!(one.unwrap().urls.len(), 1);
    }

    #[test]
    fn seed_lists_that_cannot_work_name_the_variable_and_the_fix() {
        for (args, says) in [
            (
                &["--redis-url", "redis://a:6379,redis://b:6379"][..],
                "REDIS_MODE=cluster",
            ),
            (
                &["--redis-mode", "cluster", "--redis-url", "redis://a:6379/2"],
                "database other than 0",
            ),
            (
                &[
                    "--redis-mode",
                    "cluster",
                    "--redis-url",
                    "redis://a,rediss://b",
                ],
                "one scheme",
            ),
            (
                &[
                    "--redis-mode",
                    "cluster",
                    "--redis-url",
                    "redis://:x@a,redis://:y@b",
                ],
                "passwords",
            ),
            (
                &[
                    "--redis-mode",
                    "cluster",
                    "--redis-url",
                    "redis+unix:///tmp/redis.sock",
                ],
                "Unix socket",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.starts_with("invalid REDIS_URL:"), "{args:?}: {error}");
            assert!(error.contains(says), "{args:?}: {error}");
        }
        let error = parse(&["--redis-mode", "sharded"]).unwrap_err();
        assert!(error.contains("<REDIS_MODE>"), "{error}");
    }

    #[test]
    fn waiting_for_replicas_is_off_by_default_and_bounded() {
        let redis = parse(&[]).unwrap();
        assert_eq!(
            (redis.wait_replicas, redis.wait_timeout),
            (0, Duration::from_millis(250))
        );
        let error = parse(&["--redis-wait-replicas", "6"]).unwrap_err();
        assert!(error.contains("<REDIS_WAIT_REPLICAS>"), "{error}");
        let error = parse(&["--redis-wait-timeout-ms", "0"]).unwrap_err();
        assert!(error.contains("<REDIS_WAIT_TIMEOUT_MS>"), "{error}");
    }
}
