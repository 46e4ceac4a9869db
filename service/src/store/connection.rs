//! The one Redis connection: a redis-rs `MultiplexedConnection` shared by every request
//! (in cluster mode a `ClusterConnection`, one multiplexed connection to each node), kept
//! alive by a supervisor task.
//!
//! redis-rs's `ConnectionManager` was the first choice, but it makes every command issued
//! while it reconnects wait for the reconnect (with its own retry schedule), which turns
//! "Redis is down" into slow requests. This supervisor gives the fault behaviour the service
//! promises instead (docs/adr/0002-redis-connection-supervisor.md):
//! - startup never waits: the first connect runs in the background;
//! - while there is no connection, commands fail at once (a fast 503) and nudge the
//!   supervisor, so the first request after Redis is back succeeds within a second;
//! - reconnects back off as the seed did (100 ms doubling to 2 s, ±10 % jitter), forever,
//!   logging each failed attempt;
//! - a connection that drops, or that times out [`MAX_CONSECUTIVE_TIMEOUTS`] times in a
//!   row (a partition where no reset ever arrives), is replaced; TCP keepalive and
//!   `TCP_USER_TIMEOUT` catch dead peers the kernel can see.
//!
//! In cluster mode the supervisor makes the first connection (to any seed node) the same
//! way; after that redis-rs keeps the node connections: it follows MOVED and ASK, refreshes
//! the slot map after a failover or resharding, reconnects to a lost node and, having lost
//! them all, to the seeds. So a cluster connection is never retired here; a request whose
//! node is down fails within the response timeout (a 503) instead of at once.
//!
//! The socket under each connection (each node's, in cluster mode) is [`Coalescing`]:
//! commands that handlers issue in the same turn of the scheduler leave in one write, and
//! Redis answers them in one. A
//! `rediss://` connection verifies the server's certificate and name against the public
//! roots or `REDIS_CA_FILE`, and presents the client certificate when one is configured.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::{ClusterConnection, Connect};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::io::tcp::socket2;
use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::StoreError;
use super::coalesce::Coalescing;
use crate::config::{Config, RedisConfig, RedisMode};

/// First reconnect delay; it doubles each failed attempt up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Timeouts in a row after which the connection is presumed dead and replaced.
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 3;
/// While disconnected, requests may pull the next attempt forward, but no closer than this
/// to the previous one, so a burst of traffic cannot turn into a reconnect storm.
const NUDGE_SPACING: Duration = Duration::from_millis(250);

/// Attempts redis-rs makes for a cluster command whose node failed, after the first.
const CLUSTER_RETRIES: u32 = 3;

/// `redis_command_duration_seconds` by command.
static COMMAND_DURATION: LazyLock<RwLock<HashMap<&'static str, metrics::Histogram>>> =
    LazyLock::new(Default::default);

/// A handle to the shared connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    /// `server.address` of the CLIENT spans, shared by all of them.
    server_address: Box<str>,
    server_port: u16,
    connect_timeout: Duration,
    /// `REDIS_CONNECTIONS` multiplexed connections, used round-robin, each supervised.
    slots: Vec<Slot>,
    next: AtomicUsize,
    closed: AtomicBool,
}

/// What the supervisor connects to.
#[derive(Debug)]
enum Target {
    Standalone {
        info: ConnectionInfo,
        client: Client,
        config: AsyncConnectionConfig,
    },
    Cluster(ClusterClient),
}

/// A connection to Redis, as commands see it: to one server, or to a cluster, where each
/// command goes to the node that serves its key's slot.
#[derive(Clone)]
pub enum Connection {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection<CoalescedNode>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standalone(_) => "Connection::Standalone",
            Self::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Connection {
    /// Whether Redis answers: PING; in a cluster, every slot has a primary and the
    /// connection reaches each primary (redis-rs's own fan-out PING skips a primary it has
    /// no connection to, so it cannot tell).
    pub async fn ping(&mut self) -> RedisResult<()> {
        let cluster = match self {
            Self::Standalone(connection) => {
                return redis::cmd("PING").query_async(connection).await;
            }
            Self::Cluster(cluster) => cluster,
        };
        let slots = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(cluster)
            .await?;
        for (host, port) in primaries(slots)? {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            cluster.route_command(redis::cmd("PING"), routing).await?;
        }
        Ok(())
    }
}

/// The primaries of a `CLUSTER SLOTS` reply, or an error when a slot has none.
fn primaries(reply: Value) -> RedisResult<Vec<(String, u16)>> {
    let unexpected = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS answered something else than ranges of slots",
        ))
    };
    let Value::Array(ranges) = reply else {
        return Err(unexpected());
    };
    let mut covered = 0_u32;
    let mut primaries = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(unexpected());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (range.first(), range.get(1), range.get(2))
        else {
            return Err(unexpected());
        };
        let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) else {
            return Err(unexpected());
        };
        let host: String = redis::from_redis_value_ref(host).map_err(|_| unexpected())?;
        let port = u16::try_from(*port).map_err(|_| unexpected())?;
        covered += u32::try_from(end - start + 1).map_err(|_| unexpected())?;
        if !primaries.contains(&(host.clone(), port)) {
            primaries.push((host, port));
        }
    }
    if covered < 16384 {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
            "slots without a primary",
            format!("{} of 16384 slots have none", 16384 - covered),
        )));
    }
    Ok(primaries)
}

/// A cluster node's connection: a `MultiplexedConnection` over a [`Coalescing`] socket,
/// like the standalone one. Our own type only because redis-rs opens a cluster's node
/// connections through its `Connect` trait, and its own implementation writes unbuffered.
#[derive(Debug, Clone)]
pub struct CoalescedNode(MultiplexedConnection);

impl ConnectionLike for CoalescedNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl Connect for CoalescedNode {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let info = info.into_connection_info()?;
            let connection = match info.addr() {
                ConnectionAddr::Tcp(..) => open_tcp(&info, &config).await?,
                _ => {
                    Client::open(info)?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?
                }
            };
            Ok(Self(connection))
        })
    }
}

/// One connection and the state its supervisor keeps.
#[derive(Debug, Default)]
struct Slot {
    current: ArcSwapOption<Connection>,
    wake: Notify,
    consecutive_timeouts: AtomicU32,
}

/// The TCP settings every connection uses: keepalive and `TCP_USER_TIMEOUT` catch peers
/// that vanished without a reset.
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}

/// The TLS files of the configuration, when there are any.
fn certificates(redis: &RedisConfig) -> Option<TlsCertificates> {
    let client_tls = redis
        .client_cert_file
        .as_ref()
        .zip(redis.client_key_file.as_ref())
        .map(|(certificate, key)| ClientTlsConfig {
            client_cert: certificate.contents().to_vec(),
            client_key: key.contents().to_vec(),
        });
    let root_cert = redis.ca_file.as_ref().map(|ca| ca.contents().to_vec());
    (client_tls.is_some() || root_cert.is_some()).then_some(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// What to connect to, as the configuration says.
fn target(redis: &RedisConfig) -> RedisResult<Target> {
    let tcp = tcp_settings();
    match redis.mode {
        RedisMode::Standalone => {
            let info = redis.url().clone().set_tcp_settings(tcp);
            let client = match certificates(redis) {
                Some(certificates) => Client::build_with_tls(info.clone(), certificates)?,
                None => Client::open(info.clone())?,
            };
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(redis.connect_timeout))
                .set_response_timeout(Some(redis.response_timeout));
            Ok(Target::Standalone {
                info,
                client,
                config,
            })
        }
        RedisMode::Cluster => {
            // Redirections (MOVED, ASK) are followed at once; a node that fails is retried
            // a few times, shortly, within twice the response timeout all told, so a
            // request for a failed primary's slots ends in a 503 rather than waiting out the
            // failover.
            let mut builder = ClusterClientBuilder::new(redis.urls.clone())
                .connection_timeout(redis.connect_timeout)
                .response_timeout(redis.response_timeout)
                .overall_response_timeout(Some(redis.response_timeout * 2))
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .tcp_settings(tcp);
            if let Some(certificates) = certificates(redis) {
                builder = builder.certs(certificates);
            }
            builder.build().map(Target::Cluster)
        }
    }
}

impl RedisConnection {
    /// Starts the supervisor, which connects in the background; returns at once.
    pub fn start(config: &Config) -> RedisResult<Self> {
        let (server_address, server_port) = match config.redis.url().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
            _ => (String::new(), 0),
        };
        let inner = Arc::new(Inner {
            target: target(&config.redis)?,
            server_address: server_address.into(),
            server_port,
            connect_timeout: config.redis.connect_timeout + config.redis.response_timeout,
            slots: (0..config.redis.connections)
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        for index in 0..inner.slots.len() {
            tokio::spawn(supervise(Arc::clone(&inner), index));
        }
        Ok(Self { inner })
    }

    /// Whether every connection is currently established (one may still turn out dead).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.inner
            .slots
            .iter()
            .all(|slot| slot.current.load().is_some())
    }

    /// Runs one operation on the shared connection, failing at once when there is none,
    /// and retiring the connection when the failure says it is dead.
    ///
    /// Inside a sampled request it is a CLIENT span named after `command` (never after the
    /// keys), and every run records `redis_command_duration_seconds{command}`.
    pub async fn run<T, F, Fut>(&self, command: &'static str, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let slots = &self.inner.slots;
        let slot = &slots[self.inner.next.fetch_add(1, Ordering::Relaxed) % slots.len()];
        let Some(connection) = slot.current.load_full() else {
            slot.wake.notify_one();
            return Err(StoreError::NotConnected);
        };
        let span = crate::telemetry::sampled_child(|| {
            tracing::info_span!(
                "redis",
                otel.name = command,
                otel.kind = "client",
                db.system.name = "redis",
                db.operation.name = command,
                server.address = &*self.inner.server_address,
                server.port = i64::from(self.inner.server_port),
                otel.status_code = Empty,
                otel.status_message = Empty,
            )
        });
        let started = Instant::now();
        let result = operation((*connection).clone())
            .instrument(span.clone())
            .await;
        crate::metrics::cached(
            &COMMAND_DURATION,
            command,
            || metrics::histogram!("redis_command_duration_seconds", "command" => command),
        )
        .record(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                slot.consecutive_timeouts.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_message", error.to_string());
                let standalone = matches!(*connection, Connection::Standalone(_));
                if standalone && is_dead(&error, &slot.consecutive_timeouts) {
                    tracing::warn!(error = %error, "redis connection lost; reconnecting");
                    slot.current.compare_and_swap(&Some(connection), None);
                    slot.wake.notify_one();
                }
                Err(error.into())
            }
        }
    }

    /// Stops the supervisor and drops the connection (the last step of shutdown).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for slot in &self.inner.slots {
            slot.current.store(None);
            slot.wake.notify_one();
        }
    }
}

/// The reconnect delay after `failures` failed attempts: 100 ms doubling to 2 s, ±10 %.
#[must_use]
pub fn backoff(failures: u32) -> Duration {
    let base = MIN_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_BACKOFF);
    base.mul_f64(rand::random_range(0.9..=1.1))
}

fn is_dead(error: &redis::RedisError, consecutive_timeouts: &AtomicU32) -> bool {
    if error.is_timeout() {
        return consecutive_timeouts.fetch_add(1, Ordering::Relaxed) + 1
            >= MAX_CONSECUTIVE_TIMEOUTS;
    }
    error.is_connection_dropped() || error.is_connection_refusal() || error.is_unrecoverable_error()
}

async fn supervise(inner: Arc<Inner>, index: usize) {
    let slot = &inner.slots[index];
    let mut failures = 0u32;
    while !inner.closed.load(Ordering::SeqCst) {
        if slot.current.load().is_some() {
            slot.wake.notified().await;
            continue;
        }
        match connect(&inner).await {
            Ok(connection) if !inner.closed.load(Ordering::SeqCst) => {
                slot.consecutive_timeouts.store(0, Ordering::Relaxed);
                slot.current.store(Some(Arc::new(connection)));
                tracing::info!(
                    connection = index,
                    after_failures = failures,
                    "connected to redis"
                );
                failures = 0;
            }
            Ok(_) => break,
            Err(error) => {
                let delay = backoff(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(
                    connection = index,
                    attempt = failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %error,
                    "redis connection attempt failed",
                );
                let spacing = delay.min(NUDGE_SPACING);
                tokio::time::sleep(spacing).await;
                tokio::select! {
                    () = tokio::time::sleep(delay.saturating_sub(spacing)) => {}
                    () = slot.wake.notified() => {}
                }
            }
        }
    }
}

async fn connect(inner: &Inner) -> RedisResult<Connection> {
    let attempt = async {
        let mut connection = open(&inner.target).await?;
        // In a cluster PING goes to every primary: connected means every slot answers.
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok(connection)
    };
    match tokio::time::timeout(inner.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out").into())
        }
    }
}

/// Opens a connection. Plain TCP and Unix sockets get [`Coalescing`] writes; TLS goes
/// through redis-rs's own connector (rustls holds its records in a buffer of its own).
async fn open(target: &Target) -> RedisResult<Connection> {
    let (info, client, config) = match target {
        Target::Standalone {
            info,
            client,
            config,
        } => (info, client, config),
        Target::Cluster(client) => {
            // How redis-rs takes a node connection type of the caller's.
            let connection = client
                .get_async_generic_connection::<CoalescedNode>()
                .await?;
            return Ok(Connection::Cluster(connection));
        }
    };
    let connection = match info.addr() {
        ConnectionAddr::Tcp(..) => open_tcp(info, config).await?,
        ConnectionAddr::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            multiplexed(info, config, stream).await?
        }
        _ => {
            client
                .get_multiplexed_async_connection_with_config(config)
                .await?
        }
    };
    Ok(Connection::Standalone(connection))
}

/// A TCP connection to `info` with its TCP settings, over a [`Coalescing`] socket.
async fn open_tcp(
    info: &ConnectionInfo,
    config: &AsyncConnectionConfig,
) -> RedisResult<MultiplexedConnection> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        unreachable!("open_tcp is called for TCP addresses only")
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
    let settings = info.tcp_settings();
    stream.set_nodelay(settings.nodelay())?;
    let socket = socket2::SockRef::from(&stream);
    if let Some(keepalive) = settings.keepalive() {
        socket.set_tcp_keepalive(keepalive)?;
    }
    socket.set_tcp_user_timeout(settings.user_timeout())?;
    multiplexed(info, config, stream).await
}

async fn multiplexed<S>(
    info: &ConnectionInfo,
    config: &AsyncConnectionConfig,
    stream: S,
) -> RedisResult<MultiplexedConnection>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (connection, driver) = MultiplexedConnection::new_with_config(
        info.redis_settings(),
        Coalescing::new(stream),
        config.clone(),
    )
    .await?;
    // The task ends by itself once every handle to the connection is dropped.
    tokio::spawn(driver);
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_2s_with_ten_percent_jitter() {
        for (failures, nominal_ms) in [
            (0, 100.0),
            (1, 200.0),
            (2, 400.0),
            (4, 1600.0),
            (5, 2000.0),
            (40, 2000.0),
        ] {
            for _ in 0..50 {
                let ms = backoff(failures).as_secs_f64() * 1000.0;
                assert!(
                    ms >= nominal_ms * 0.9 - 1e-6 && ms <= nominal_ms * 1.1 + 1e-6,
                    "attempt {failures}: {ms} ms not within 10 % of {nominal_ms} ms"
                );
            }
        }
    }
}
