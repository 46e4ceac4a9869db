//! The one `Config`, read once at startup from command-line flags and environment
//! variables (clap derive + env), each value parsed into its type, in groups by concern.
//!
//! Every field is both a flag and a variable; `cart-service --help` lists them with their
//! defaults. A bad value stops startup with a message that names the variable (each
//! field's value name is its variable), so an operator reading a crash-looping pod's log
//! knows what to fix. The configuration is plain data: it calls nothing. The Redis TLS
//! files are read while parsing, in [`tls`], so the data holds their checked contents.

mod store;
mod tls;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

pub use store::{RedisConfig, RedisMode};
pub use tls::PemFile;

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

/// Everything the service reads from its environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cart: CartConfig,
    #[command(flatten)]
    pub logging: LoggingConfig,
    #[command(flatten)]
    pub stress: StressConfig,
    #[command(flatten)]
    pub shutdown: ShutdownConfig,
    #[command(flatten)]
    pub pod: PodConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// The HTTP server.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Address the HTTP server binds to.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        value_name = "LISTEN_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub listen_addr: SocketAddr,

    /// Deadline for a whole request, in milliseconds; past it the answer is 503.
    #[arg(long = "request-timeout-ms", env = "REQUEST_TIMEOUT_MS",
          value_name = "REQUEST_TIMEOUT_MS", default_value = "10000",
          value_parser = millis(1..=600_000))]
    pub request_timeout: Duration,

    /// Time a client has to send its request headers, in milliseconds (slow-loris guard).
    #[arg(long = "http-header-read-timeout-ms", env = "HTTP_HEADER_READ_TIMEOUT_MS",
          value_name = "HTTP_HEADER_READ_TIMEOUT_MS", default_value = "5000",
          value_parser = millis(1..=600_000))]
    pub header_read_timeout: Duration,

    /// Longest pause allowed between two chunks of a request body, in milliseconds.
    #[arg(long = "http-body-timeout-ms", env = "HTTP_BODY_TIMEOUT_MS",
          value_name = "HTTP_BODY_TIMEOUT_MS", default_value = "5000",
          value_parser = millis(1..=600_000))]
    pub body_timeout: Duration,

    /// Time a connection may stay open with no request in progress, from its accept on, in
    /// milliseconds; then it is closed (HTTP/2: GOAWAY).
    #[arg(long = "http-idle-timeout-ms", env = "HTTP_IDLE_TIMEOUT_MS",
          value_name = "HTTP_IDLE_TIMEOUT_MS", default_value = "30000",
          value_parser = millis(1..=3_600_000))]
    pub idle_timeout: Duration,

    /// Most connections open at once; past it a new connection is closed as soon as it is
    /// accepted, and the open ones are served as before.
    #[arg(long = "http-max-connections", env = "HTTP_MAX_CONNECTIONS",
          value_name = "HTTP_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most requests one HTTP/2 connection may have in progress at once.
    #[arg(long = "http2-max-concurrent-streams", env = "HTTP2_MAX_CONCURRENT_STREAMS",
          value_name = "HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_concurrent_streams: u32,

    /// Interval of the HTTP/2 keep-alive pings that find dead peers, in milliseconds; 0 sends none.
    #[arg(long = "http2-keep-alive-interval-ms", env = "HTTP2_KEEP_ALIVE_INTERVAL_MS",
          value_name = "HTTP2_KEEP_ALIVE_INTERVAL_MS", default_value = "20000",
          value_parser = millis(0..=3_600_000))]
    pub http2_keep_alive_interval: Duration,

    /// Time an HTTP/2 keep-alive ping may go unanswered before the connection is closed, in milliseconds.
    #[arg(long = "http2-keep-alive-timeout-ms", env = "HTTP2_KEEP_ALIVE_TIMEOUT_MS",
          value_name = "HTTP2_KEEP_ALIVE_TIMEOUT_MS", default_value = "10000",
          value_parser = millis(1..=600_000))]
    pub http2_keep_alive_timeout: Duration,
}

/// The limits of a cart.
#[derive(Debug, Clone, clap::Args)]
pub struct CartConfig {
    /// Lifetime of a cart after its last write, in seconds; 0 means carts never expire.
    #[arg(long = "cart-ttl-seconds", env = "CART_TTL_SECONDS",
          value_name = "CART_TTL_SECONDS", default_value = "2592000",
          value_parser = seconds(0..=u64::MAX))]
    pub ttl: Duration,

    /// Most distinct products one cart may hold.
    #[arg(long = "cart-max-items", env = "CART_MAX_ITEMS", value_name = "CART_MAX_ITEMS",
          default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_items: u32,

    /// Most units of one product one cart may hold (also the largest quantity one request may add).
    #[arg(long = "cart-max-quantity", env = "CART_MAX_QUANTITY",
          value_name = "CART_MAX_QUANTITY", default_value_t = 999,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_quantity: u32,
}

/// Where logs go and which.
#[derive(Debug, Clone, clap::Args)]
pub struct LoggingConfig {
    /// Also write logs to this file (rotated as `LOG_FILE_ROTATION` says), for a log-shipper sidecar.
    #[arg(long = "log-file", env = "LOG_FILE", value_name = "LOG_FILE", value_parser = file_path)]
    pub file: Option<PathBuf>,

    /// Log format.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum,
          default_value_t = LogFormat::Json)]
    pub format: LogFormat,

    /// How often `LOG_FILE` rotates; the files are named `<LOG_FILE>.<date-time>` (`never`: `<LOG_FILE>`).
    #[arg(long = "log-file-rotation", env = "LOG_FILE_ROTATION",
          value_name = "LOG_FILE_ROTATION", value_enum, default_value_t = LogRotation::Daily)]
    pub file_rotation: LogRotation,

    /// Rotated log files kept; older ones are deleted.
    #[arg(long = "log-file-max-files", env = "LOG_FILE_MAX_FILES",
          value_name = "LOG_FILE_MAX_FILES", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub file_max_files: u32,

    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `info,cart_service=debug`. redis-rs
    /// logs errors only by default: in a cluster failover it writes a line per reconnect
    /// attempt and slot refresh (thousands a second), and the service logs the outage itself.
    #[arg(long = "log-filter", env = "RUST_LOG", value_name = "RUST_LOG",
          default_value = "info,redis=error",
          value_parser = log_filter)]
    pub filter: String,
}

/// Log line format on stdout (and in `LOG_FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, for machines and log shippers.
    Json,
    /// Coloured, multi-line, for humans at a terminal.
    Pretty,
}

/// How often the log file rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogRotation {
    Minutely,
    Hourly,
    Daily,
    Never,
}

/// `POST /stress`, the load generator for autoscaling demos.
#[derive(Debug, Clone, clap::Args)]
pub struct StressConfig {
    /// Serve `POST /stress` (for HPA demos); when false the route is 404.
    #[arg(long = "stress-enabled", env = "STRESS_ENABLED", value_name = "STRESS_ENABLED",
          default_value_t = true, action = ArgAction::Set)]
    pub enabled: bool,

    /// Largest `cpu_iterations` one stress request may ask for (one iteration is about 1 ms of CPU).
    #[arg(
        long = "stress-max-cpu-iterations",
        env = "STRESS_MAX_CPU_ITERATIONS",
        value_name = "STRESS_MAX_CPU_ITERATIONS",
        default_value_t = 5_000
    )]
    pub max_cpu_iterations: u32,

    /// Largest `memory_mb` one stress request may ask for.
    #[arg(
        long = "stress-max-memory-mb",
        env = "STRESS_MAX_MEMORY_MB",
        value_name = "STRESS_MAX_MEMORY_MB",
        default_value_t = 128
    )]
    pub max_memory_mb: u32,

    /// Stress requests allowed to run at once; more get 429.
    #[arg(long = "stress-max-concurrency", env = "STRESS_MAX_CONCURRENCY",
          value_name = "STRESS_MAX_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrency: u32,

    /// Most MiB all running stress requests may hold together; a request that does not fit
    /// gets 429. Keep it under the container's memory limit, with room for the service itself.
    #[arg(long = "stress-max-total-memory-mb", env = "STRESS_MAX_TOTAL_MEMORY_MB",
          value_name = "STRESS_MAX_TOTAL_MEMORY_MB", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_total_memory_mb: u32,

    /// When set, `POST /stress` needs `Authorization: Bearer <STRESS_TOKEN>`; others get 401.
    #[arg(long = "stress-token", env = "STRESS_TOKEN", value_name = "STRESS_TOKEN",
          hide_env_values = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new().map(StressToken))]
    pub token: Option<StressToken>,
}

/// The bearer token of `POST /stress`. Its `Debug` never shows the token, so a logged
/// configuration cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct StressToken(String);

impl StressToken {
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token's bytes, for a constant-time comparison.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for StressToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StressToken(<redacted>)")
    }
}

/// What SIGTERM does.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownConfig {
    /// On SIGTERM, seconds to keep serving with `/readyz` at 503 so endpoints update.
    #[arg(long = "shutdown-drain-delay-seconds", env = "SHUTDOWN_DRAIN_DELAY_SECONDS",
          value_name = "SHUTDOWN_DRAIN_DELAY_SECONDS", default_value = "0",
          value_parser = seconds(0..=300))]
    pub drain_delay: Duration,

    /// On SIGTERM, seconds in-flight requests get to finish once accepting has stopped.
    #[arg(long = "shutdown-timeout-seconds", env = "SHUTDOWN_TIMEOUT_SECONDS",
          value_name = "SHUTDOWN_TIMEOUT_SECONDS", default_value = "5",
          value_parser = seconds(0..=300))]
    pub timeout: Duration,
}

/// Where the service runs (Kubernetes downward API).
#[derive(Debug, Clone, clap::Args)]
pub struct PodConfig {
    /// Pod name (Kubernetes downward API), reported by `/healthz` and `/stress`.
    #[arg(
        long = "pod-name",
        env = "POD_NAME",
        value_name = "POD_NAME",
        default_value = "unknown"
    )]
    pub name: String,

    /// Node name (Kubernetes downward API), reported by `/healthz` and `/stress`.
    #[arg(
        long = "node-name",
        env = "NODE_NAME",
        value_name = "NODE_NAME",
        default_value = "unknown"
    )]
    pub node: String,

    /// Namespace (Kubernetes downward API).
    #[arg(
        long = "pod-namespace",
        env = "POD_NAMESPACE",
        value_name = "POD_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
}

/// The traces; the OpenTelemetry SDK reads the other `OTEL_*` variables itself.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// `service.name` of every span.
    #[arg(
        long = "otel-service-name",
        env = "OTEL_SERVICE_NAME",
        value_name = "OTEL_SERVICE_NAME",
        default_value = "cart-service"
    )]
    pub service_name: String,

    /// Sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    #[arg(long = "otel-traces-sampler", env = "OTEL_TRACES_SAMPLER",
          value_name = "OTEL_TRACES_SAMPLER", value_enum,
          default_value_t = SamplerName::ParentbasedTraceidratio)]
    pub sampler: SamplerName,

    /// The ratio for the traceidratio samplers, 0.0 to 1.0.
    #[arg(long = "otel-traces-sampler-arg", env = "OTEL_TRACES_SAMPLER_ARG",
          value_name = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 0.1, value_parser = ratio)]
    pub sampler_arg: f64,
}

/// The samplers `OTEL_TRACES_SAMPLER` names, as the OpenTelemetry specification spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SamplerName {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

/// Bearer-token authentication of the cart routes; off unless `AUTH_MODE=jwt`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// `none`: the cart routes are open; `jwt`: each needs a bearer JWT whose
    /// `AUTH_USER_CLAIM` equals the path's `{user_id}`.
    #[arg(long = "auth-mode", env = "AUTH_MODE", value_name = "AUTH_MODE", value_enum,
          default_value_t = AuthMode::None)]
    pub mode: AuthMode,

    /// URL (http or https) of the JSON Web Key Set the token signatures are checked against.
    #[arg(long = "auth-jwks-url", env = "AUTH_JWKS_URL", value_name = "AUTH_JWKS_URL",
          value_parser = jwks_url)]
    pub jwks_url: Option<http::Uri>,

    /// PEM file of the one public key (RSA, P-256 or Ed25519) the token signatures are
    /// checked against, instead of a JWKS.
    #[arg(long = "auth-public-key-file", env = "AUTH_PUBLIC_KEY_FILE",
          value_name = "AUTH_PUBLIC_KEY_FILE", value_parser = file_path)]
    pub public_key_file: Option<PathBuf>,

    /// The issuer (`iss`) every token must name.
    #[arg(long = "auth-issuer", env = "AUTH_ISSUER", value_name = "AUTH_ISSUER",
          value_parser = not_empty)]
    pub issuer: Option<String>,

    /// The audience (`aud`) every token must include.
    #[arg(long = "auth-audience", env = "AUTH_AUDIENCE", value_name = "AUTH_AUDIENCE",
          value_parser = not_empty)]
    pub audience: Option<String>,

    /// The claim that must equal the path's `{user_id}`.
    #[arg(long = "auth-user-claim", env = "AUTH_USER_CLAIM", value_name = "AUTH_USER_CLAIM",
          default_value = "sub", value_parser = not_empty)]
    pub user_claim: String,

    /// Clock skew allowed when checking `exp` and `nbf`, in seconds.
    #[arg(long = "auth-leeway-seconds", env = "AUTH_LEEWAY_SECONDS",
          value_name = "AUTH_LEEWAY_SECONDS", default_value = "30",
          value_parser = seconds(0..=300))]
    pub leeway: Duration,

    /// How often the JWKS is fetched again, in seconds.
    #[arg(long = "auth-jwks-refresh-seconds", env = "AUTH_JWKS_REFRESH_SECONDS",
          value_name = "AUTH_JWKS_REFRESH_SECONDS", default_value = "300",
          value_parser = seconds(1..=86_400))]
    pub jwks_refresh: Duration,

    /// Fewest seconds between two extra fetches of the JWKS for tokens with an unknown
    /// `kid`, so bad tokens cannot make the service hammer the JWKS endpoint.
    #[arg(long = "auth-jwks-min-refresh-seconds", env = "AUTH_JWKS_MIN_REFRESH_SECONDS",
          value_name = "AUTH_JWKS_MIN_REFRESH_SECONDS", default_value = "10",
          value_parser = seconds(0..=3600))]
    pub jwks_min_refresh: Duration,
}

/// Whether the cart routes need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication.
    None,
    /// A bearer JWT on every cart route.
    Jwt,
}

/// A configuration value that parsed but cannot be used with the others; the message
/// names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl Config {
    /// Checks what one value alone cannot tell.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stress.max_cpu_iterations == 0 && self.stress.enabled {
            return Err(ConfigError {
                variable: "STRESS_MAX_CPU_ITERATIONS",
                reason: "must be at least 1 while STRESS_ENABLED is true".into(),
            });
        }
        // Checked here, not by the value parser: clap's message would print the secret.
        if let Some(token) = &self.stress.token
            && !token.0.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError {
                variable: "STRESS_TOKEN",
                reason: "must be visible ASCII characters without spaces (the value is not shown)"
                    .into(),
            });
        }
        if self.stress.enabled && self.stress.max_memory_mb > self.stress.max_total_memory_mb {
            return Err(ConfigError {
                variable: "STRESS_MAX_MEMORY_MB",
                reason: format!(
                    "{} is more than STRESS_MAX_TOTAL_MEMORY_MB ({}), so no request that large \
                     could run",
                    self.stress.max_memory_mb, self.stress.max_total_memory_mb
                ),
            });
        }
        self.redis.validate()?;
        self.auth.validate()
    }

    /// A configuration for tests and `cargo xtask dev`: defaults, with the given Redis and
    /// an ephemeral port on loopback.
    ///
    /// # Panics
    /// When `redis_url` is not a Redis URL.
    #[must_use]
    pub fn for_local(redis_url: &str) -> Self {
        Cli::parse_from([
            "cart-service",
            "--listen-addr",
            "127.0.0.1:0",
            "--redis-url",
            redis_url,
        ])
        .config
    }
}

impl AuthConfig {
    /// `jwt` needs exactly one key source, an issuer and an audience; `none` refuses them,
    /// so a forgotten `AUTH_MODE` cannot leave routes open that were meant to be closed.
    fn validate(&self) -> Result<(), ConfigError> {
        let error = |variable, reason: &str| {
            Err(ConfigError {
                variable,
                reason: reason.to_owned(),
            })
        };
        if self.mode == AuthMode::None {
            let set = [
                ("AUTH_JWKS_URL", self.jwks_url.is_some()),
                ("AUTH_PUBLIC_KEY_FILE", self.public_key_file.is_some()),
                ("AUTH_ISSUER", self.issuer.is_some()),
                ("AUTH_AUDIENCE", self.audience.is_some()),
            ];
            return match set.iter().find(|(_, set)| *set) {
                Some((variable, _)) => error(
                    "AUTH_MODE",
                    &format!(
                        "is none, but {variable} is set: set AUTH_MODE=jwt or unset {variable}"
                    ),
                ),
                None => Ok(()),
            };
        }
        match (&self.jwks_url, &self.public_key_file) {
            (None, None) => {
                return error(
                    "AUTH_JWKS_URL",
                    "or AUTH_PUBLIC_KEY_FILE must be set when AUTH_MODE is jwt",
                );
            }
            (Some(_), Some(_)) => {
                return error(
                    "AUTH_PUBLIC_KEY_FILE",
                    "cannot be set together with AUTH_JWKS_URL: choose one key source",
                );
            }
            _ => {}
        }
        if self.issuer.is_none() {
            return error("AUTH_ISSUER", "must be set when AUTH_MODE is jwt");
        }
        if self.audience.is_none() {
            return error("AUTH_AUDIENCE", "must be set when AUTH_MODE is jwt");
        }
        Ok(())
    }
}

/// Milliseconds within `range`, as a duration.
pub(super) fn millis(
    range: RangeInclusive<u64>,
) -> impl clap::builder::TypedValueParser<Value = Duration> {
    clap::value_parser!(u64)
        .range(range)
        .map(Duration::from_millis)
}

/// Seconds within `range`, as a duration.
fn seconds(range: RangeInclusive<u64>) -> impl clap::builder::TypedValueParser<Value = Duration> {
    clap::value_parser!(u64)
        .range(range)
        .map(Duration::from_secs)
}

fn file_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.file_name().is_none() {
        return Err(format!("{value} does not name a file"));
    }
    Ok(path)
}

fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

fn jwks_url(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value.parse().map_err(|e| format!("{value}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!("{value} is not an http:// or https:// URL")),
    }
}

fn not_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(value.to_owned())
}

fn ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{value} is not a number from 0.0 to 1.0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Cli::parse_from(["cart-service"]).config;
        config.validate().unwrap();
        assert_eq!(config.cart.max_items, 200);
        assert_eq!(config.cart.max_quantity, 999);
        assert_eq!(config.cart.ttl, Duration::from_hours(30 * 24));
    }

    /// The parser's message for `flag value`.
    fn refused(flag: &str, value: &str) -> String {
        Cli::try_parse_from(["cart-service", flag, value])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_redis_url_names_the_variable() {
        let error = refused("--redis-url", "http://nope");
        assert!(error.contains("<REDIS_URL>"), "{error}");
    }

    #[test]
    fn bad_log_filter_names_the_variable() {
        let error = refused("--log-filter", "info,=[");
        assert!(error.contains("<RUST_LOG>"), "{error}");
    }

    #[test]
    fn unknown_samplers_and_ratios_out_of_range_name_the_variable() {
        let error = refused("--otel-traces-sampler", "sometimes");
        assert!(error.contains("<OTEL_TRACES_SAMPLER>"), "{error}");
        let error = refused("--otel-traces-sampler-arg", "1.5");
        assert!(error.contains("<OTEL_TRACES_SAMPLER_ARG>"), "{error}");
    }

    #[test]
    fn every_value_names_its_variable() {
        use clap::CommandFactory as _;

        for arg in Cli::command().get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let names = arg.get_value_names().unwrap_or_default();
            assert_eq!(names, [env], "{}", arg.get_id());
        }
    }

    #[test]
    fn stress_memory_over_the_total_and_bad_tokens_are_refused_naming_the_variable() {
        let parse = |args: &[&str]| {
            Cli::parse_from(["cart-service"].iter().chain(args))
                .config
                .validate()
                .unwrap_err()
                .to_string()
        };

        let error = parse(&["--stress-max-memory-mb", "200"]);
        assert!(
            error.starts_with("invalid STRESS_MAX_MEMORY_MB:"),
            "{error}"
        );
        let error = parse(&["--stress-token", "two words"]);
        assert!(error.starts_with("invalid STRESS_TOKEN:"), "{error}");
        assert!(!error.contains("two words"), "the token is shown: {error}");
    }

    #[test]
    fn the_stress_token_never_shows_in_debug_output() {
        let config = Cli::parse_from(["cart-service", "--stress-token", "s3cret"]).config;

        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn connection_limits_out_of_range_name_the_variable() {
        for (flag, variable) in [
            ("--http-idle-timeout-ms", "HTTP_IDLE_TIMEOUT_MS"),
            ("--http-max-connections", "HTTP_MAX_CONNECTIONS"),
            (
                "--http2-max-concurrent-streams",
                "HTTP2_MAX_CONCURRENT_STREAMS",
            ),
            (
                "--http2-keep-alive-timeout-ms",
                "HTTP2_KEEP_ALIVE_TIMEOUT_MS",
            ),
        ] {
            let error = refused(flag, "0");
            assert!(error.contains(&format!("<{variable}>")), "{error}");
        }
        let error = refused("--http2-keep-alive-interval-ms", "soon");
        assert!(error.contains("<HTTP2_KEEP_ALIVE_INTERVAL_MS>"), "{error}");
    }

    #[test]
    fn out_of_range_value_is_rejected_by_the_parser() {
        let error = Cli::try_parse_from(["cart-service", "--cart-max-items", "0"]).unwrap_err();
        assert!(error.to_string().contains("CART_MAX_ITEMS"), "{error}");
    }

    /// The configuration of `args` after the program name, validated.
    fn validated(args: &[&str]) -> Result<(), String> {
        let command_line = std::iter::once(&"cart-service").chain(args);
        Cli::parse_from(command_line)
            .config
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn jwt_mode_needs_one_key_source_an_issuer_and_an_audience() {
        let jwks = "--auth-jwks-url=https://issuer.test/jwks.json";
        let file = "--auth-public-key-file=/etc/cart/key.pem";
        let (issuer, audience) = ("--auth-issuer=https://issuer.test/", "--auth-audience=cart");
        let cases: [(&[&str], &str); 4] = [
            (&[issuer, audience], "AUTH_JWKS_URL"),
            (&[jwks, file, issuer, audience], "AUTH_PUBLIC_KEY_FILE"),
            (&[jwks, audience], "AUTH_ISSUER"),
            (&[file, issuer], "AUTH_AUDIENCE"),
        ];

        for (args, variable) in cases {
            let mut args = args.to_vec();
            args.push("--auth-mode=jwt");
            let error = validated(&args).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid {variable}:")),
                "{args:?}: {error}"
            );
        }
        validated(&["--auth-mode=jwt", jwks, issuer, audience]).unwrap();
        validated(&["--auth-mode=jwt", file, issuer, audience]).unwrap();
    }

    #[test]
    fn auth_settings_without_auth_mode_jwt_are_refused() {
        let error = validated(&["--auth-jwks-url=https://issuer.test/jwks.json"]).unwrap_err();

        assert!(error.starts_with("invalid AUTH_MODE:"), "{error}");
        assert!(error.contains("AUTH_JWKS_URL"), "{error}");
    }

    #[test]
    fn bad_auth_values_name_their_variable() {
        let cases = [
            ("--auth-mode", "oauth", "<AUTH_MODE>"),
            (
                "--auth-jwks-url",
                "ftp://issuer.test/jwks.json",
                "<AUTH_JWKS_URL>",
            ),
            ("--auth-jwks-url", "/jwks.json", "<AUTH_JWKS_URL>"),
            ("--auth-user-claim", " ", "<AUTH_USER_CLAIM>"),
            ("--auth-leeway-seconds", "301", "<AUTH_LEEWAY_SECONDS>"),
            (
                "--auth-jwks-refresh-seconds",
                "0",
                "<AUTH_JWKS_REFRESH_SECONDS>",
            ),
        ];

        for (flag, value, variable) in cases {
            let error = refused(flag, value);
            assert!(error.contains(variable), "{flag} {value}: {error}");
        }
    }

    /// The configuration table in `docs/configuration.md` has one row per variable, in
    /// the order of `--help`, with its flag and default as clap has them.
    #[test]
    fn the_configuration_doc_lists_every_variable_with_its_flag_and_default() {
        use clap::CommandFactory as _;

        let doc = include_str!("../../docs/configuration.md");
        let rows: Vec<Vec<&str>> = doc
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
