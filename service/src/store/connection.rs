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
//! What a connection is and how it is opened (TLS, write coalescing) is [`super::client`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::{ConnectionAddr, RedisResult};
use tokio::sync::Notify;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::StoreError;
use super::client::{Connection, Target, open, target};
use crate::config::Config;

/// First reconnect delay; it doubles each failed attempt up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Timeouts in a row after which the connection is presumed dead and replaced.
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 3;
/// While disconnected, requests may pull the next attempt forward, but no closer than this
/// to the previous one, so a burst of traffic cannot turn into a reconnect storm.
const NUDGE_SPACING: Duration = Duration::from_millis(250);

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

/// One connection and the state its supervisor keeps.
#[derive(Debug, Default)]
struct Slot {
    current: ArcSwapOption<Connection>,
    wake: Notify,
    consecutive_timeouts: AtomicU32,
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
