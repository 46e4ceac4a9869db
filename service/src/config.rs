//! The one `Config`, read once at startup from command-line flags and environment
//! variables (clap derive + env), then validated as a whole.
//!
//! Every field is both a flag and a variable; `cart-service --help` lists them with their
//! defaults. A bad value stops startup with a message that names the variable, so an
//! operator reading a crash-looping pod's log knows what to fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

/// The command line: the service itself, or one of its helper subcommands.
#[derive(Debug, Parser)]
#[command(
    name = "cart-service",
    version,
    about = "A shopping-cart microservice over Redis"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// Helper subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when the service answers `GET /livez` with 200: the container health check
    /// for distroless images, which have no curl or shell.
    Healthcheck {
        /// URL to probe; defaults to `/livez` on the port of `LISTEN_ADDR`.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// Log line format on stdout (and in `LOG_FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, for machines and log shippers.
    Json,
    /// Coloured, multi-line, for humans at a terminal.
    Pretty,
}

/// Everything the service reads from its environment.
#[derive(Debug, Clone, clap::Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct Config {
    /// Address the HTTP server binds to.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Redis URL: redis:// or rediss:// (TLS), with optional user, password and database.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Time to wait for each Redis reply before answering 503, in milliseconds.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_response_timeout_ms: u64,

    /// Multiplexed Redis connections, used round-robin; each one pipelines the commands of
    /// many requests.
    #[arg(long, env = "REDIS_CONNECTIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub redis_connections: u16,

    /// Time to wait for a new Redis connection (TCP, TLS and handshake), in milliseconds.
    #[arg(long, env = "REDIS_CONNECT_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_connect_timeout_ms: u64,

    /// Lifetime of a cart after its last write, in seconds; 0 means carts never expire.
    #[arg(long, env = "CART_TTL_SECONDS", default_value_t = 2_592_000)]
    pub cart_ttl_seconds: u64,

    /// Most distinct products one cart may hold.
    #[arg(long, env = "CART_MAX_ITEMS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cart_max_items: u32,

    /// Most units of one product one cart may hold (also the largest quantity one request may add).
    #[arg(long, env = "CART_MAX_QUANTITY", default_value_t = 999,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cart_max_quantity: u32,

    /// Deadline for a whole request, in milliseconds; past it the answer is 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,

    /// Time a client has to send its request headers, in milliseconds (slow-loris guard).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub http_header_read_timeout_ms: u64,

    /// Longest pause allowed between two chunks of a request body, in milliseconds.
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub http_body_timeout_ms: u64,

    /// Also write logs to this file (rotated daily), for a log-shipper sidecar.
    #[arg(long, env = "LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// How often `LOG_FILE` rotates; rotated files are named `<LOG_FILE>.<date-time>`.
    #[arg(long, env = "LOG_FILE_ROTATION", value_enum, default_value_t = LogRotation::Daily)]
    pub log_file_rotation: LogRotation,

    /// Rotated log files kept; older ones are deleted.
    #[arg(long, env = "LOG_FILE_MAX_FILES", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub log_file_max_files: u32,

    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `info,cart_service=debug`.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Serve `POST /stress` (for HPA demos); when false the route is 404.
    #[arg(long, env = "STRESS_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub stress_enabled: bool,

    /// Largest `cpu_iterations` one stress request may ask for (one iteration is about 1 ms of CPU).
    #[arg(long, env = "STRESS_MAX_CPU_ITERATIONS", default_value_t = 5_000)]
    pub stress_max_cpu_iterations: u32,

    /// Largest `memory_mb` one stress request may ask for.
    #[arg(long, env = "STRESS_MAX_MEMORY_MB", default_value_t = 128)]
    pub stress_max_memory_mb: u32,

    /// Stress requests allowed to run at once; more get 429.
    #[arg(long, env = "STRESS_MAX_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub stress_max_concurrency: u32,

    /// On SIGTERM, seconds to keep serving with `/readyz` at 503 so endpoints update.
    #[arg(long, env = "SHUTDOWN_DRAIN_DELAY_SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_drain_delay_seconds: u64,

    /// On SIGTERM, seconds in-flight requests get to finish once accepting has stopped.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_timeout_seconds: u64,

    /// Pod name (Kubernetes downward API), reported by `/healthz` and `/stress`.
    #[arg(long, env = "POD_NAME", default_value = "unknown")]
    pub pod_name: String,

    /// Node name (Kubernetes downward API), reported by `/healthz` and `/stress`.
    #[arg(long, env = "NODE_NAME", default_value = "unknown")]
    pub node_name: String,

    /// Namespace (Kubernetes downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,

    /// `service.name` of every span.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "cart-service")]
    pub otel_service_name: String,

    /// Sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_traceidratio"
    )]
    pub otel_traces_sampler: String,

    /// The ratio for the traceidratio samplers, 0.0 to 1.0.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 0.1)]
    pub otel_traces_sampler_arg: f64,
}

/// How often the log file rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogRotation {
    Minutely,
    Hourly,
    Daily,
    Never,
}

/// A configuration value that parsed but cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl Config {
    /// Checks what clap's per-field parsers cannot: URLs, filters and combinations. The
    /// `OTEL_*` values are checked where telemetry is set up ([`crate::telemetry::init`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::store::connection_info(self).map_err(|e| ConfigError {
            variable: "REDIS_URL",
            reason: e.to_string(),
        })?;
        tracing_subscriber::EnvFilter::try_new(&self.rust_log).map_err(|e| ConfigError {
            variable: "RUST_LOG",
            reason: e.to_string(),
        })?;
        if let Some(path) = &self.log_file
            && (path.file_name().is_none() || path.as_os_str().is_empty())
        {
            return Err(ConfigError {
                variable: "LOG_FILE",
                reason: format!("{} does not name a file", path.display()),
            });
        }
        if self.stress_max_cpu_iterations == 0 && self.stress_enabled {
            return Err(ConfigError {
                variable: "STRESS_MAX_CPU_ITERATIONS",
                reason: "must be at least 1 while STRESS_ENABLED is true".into(),
            });
        }
        Ok(())
    }

    #[must_use]
    pub fn redis_response_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_response_timeout_ms)
    }

    #[must_use]
    pub fn redis_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_connect_timeout_ms)
    }

    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// A configuration for tests and `cargo xtask dev`: defaults, with the given Redis and
    /// an ephemeral port on loopback.
    #[must_use]
    pub fn for_local(redis_url: &str) -> Self {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        redis_url.clone_into(&mut config.redis_url);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Cli::parse_from(["cart-service"]).config;
        config.validate().unwrap();
        assert_eq!(config.cart_max_items, 200);
        assert_eq!(config.cart_max_quantity, 999);
        assert_eq!(config.cart_ttl_seconds, 30 * 24 * 3600);
    }

    #[test]
    fn bad_redis_url_names_the_variable() {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.redis_url = "http://nope".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with("invalid REDIS_URL:"), "{error}");
    }

    #[test]
    fn bad_log_filter_names_the_variable() {
        let mut config = Cli::parse_from(["cart-service"]).config;
        config.rust_log = "info,=[".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with("invalid RUST_LOG:"), "{error}");
    }

    #[test]
    fn out_of_range_value_is_rejected_by_the_parser() {
        let error = Cli::try_parse_from(["cart-service", "--cart-max-items", "0"]).unwrap_err();
        assert!(error.to_string().contains("CART_MAX_ITEMS"), "{error}");
    }

    /// The README's configuration table has one row per variable, in the order of
    /// `--help`, with its flag and default as clap has them.
    #[test]
    fn the_readme_table_lists_every_variable_with_its_flag_and_default() {
        use clap::CommandFactory as _;

        let readme = include_str!("../../README.md");
        let rows: Vec<Vec<&str>> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| variable | flag | default |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.split(" | ").collect())
            .collect();
        // The rows of variables the OpenTelemetry SDK (or the exporter's TLS set-up) reads
        // have no flag, and must not name one of ours.
        let (rows, unflagged): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|row| row[1].starts_with("`--"));
        assert!(
            unflagged.iter().all(|row| row[0].starts_with("| `OTEL_")),
            "{unflagged:?}"
        );
        let command = Cli::command();
        let expected: Vec<(String, String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let env = arg.get_env()?.to_str()?.to_owned();
                let flag = format!("`--{}`", arg.get_long()?);
                let default = match arg.get_default_values() {
                    [] => "unset".to_owned(),
                    [value] if value.is_empty() => "empty".to_owned(),
                    [value] => format!("`{}`", value.to_str()?),
                    _ => return None,
                };
                Some((format!("| `{env}`"), flag, default))
            })
            .collect();

        let found: Vec<(String, String, String)> = rows
            .iter()
            .map(|row| {
                // A default may carry a note after the value: `2592000` (30 days).
                let default = row[2].split(" (").next().unwrap_or_default();
                (row[0].to_owned(), row[1].to_owned(), default.to_owned())
            })
            .collect();
        for row in &unflagged {
            assert!(
                !expected.iter().any(|(variable, _, _)| variable == row[0]),
                "{} is a flag too",
                row[0]
            );
        }
        assert_eq!(found, expected);
    }
}
