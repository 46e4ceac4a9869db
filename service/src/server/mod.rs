//! The HTTP server under [`crate::startup::Application`]: hyper-util's connection builder
//! (HTTP/1.1 and HTTP/2, h2c by prior knowledge) with the service's limits, an accept loop
//! that holds the open connections to `HTTP_MAX_CONNECTIONS`, and a task per connection
//! ([`connection`]) that closes it once idle and answers an over-long request head itself
//! ([`limits`]).
//!
//! Past the cap a new connection is accepted and closed at once rather than left unaccepted:
//! the client learns at once instead of waiting in the kernel's backlog, a load balancer
//! moves on to another pod, and the open connections are served as before.

mod connection;
pub mod limits;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::config::HttpConfig;
use crate::telemetry::throttle::Throttle;
use connection::Slot;

/// The server's connections, from the first accept to the end of shutdown.
#[derive(Debug)]
pub struct Server {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    idle_timeout: Duration,
    slots: Arc<Semaphore>,
    /// Changed (by `shutdown`) to ask every connection to close; closed once they all have.
    shutdown: watch::Sender<()>,
    open: Gauge,
    refused: Refused,
}

impl Server {
    /// A server for `router` with the limits of `config`.
    #[must_use]
    pub fn new(router: Router, config: &HttpConfig) -> Self {
        let open = metrics::gauge!("http_server_open_connections");
        // Registered at zero, so dashboards see the series before the first refusal.
        let refused = metrics::counter!("http_server_connections_refused_total");
        refused.increment(0);
        let max = usize::try_from(config.max_connections).unwrap_or(Semaphore::MAX_PERMITS);
        Self {
            builder: builder(config),
            router,
            idle_timeout: config.idle_timeout,
            slots: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            shutdown: watch::channel(()).0,
            open,
            refused: Refused::new(refused),
        }
    }

    /// Accepts and serves connections until `stop` resolves, then closes the listener.
    pub async fn accept_until(&self, listener: TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                self.refused.refuse(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            connection::spawn(
                stream,
                &self.builder,
                self.router.clone(),
                self.idle_timeout,
                self.shutdown.subscribe(),
                Slot::new(permit, self.open.clone()),
            );
        }
    }

    /// Asks every connection to close once its requests are done (idle ones close at once)
    /// and waits up to `timeout` for them; false when some were still open then.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.shutdown.send_replace(());
        tokio::time::timeout(timeout, self.shutdown.closed())
            .await
            .is_ok()
    }
}

/// hyper's settings: the header-read timeout, room for request heads past the limits the
/// service answers itself, and the HTTP/2 stream limit and keep-alive pings.
fn builder(config: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(limits::HYPER_MAX_HEAD_BYTES)
        .max_headers(limits::HYPER_MAX_HEADER_FIELDS);
    let ping = config.http2_keep_alive_interval;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .keep_alive_interval((!ping.is_zero()).then_some(ping))
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(limits::HYPER_MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    builder
}

/// Connections refused at the cap: counted in the metric, and logged at most once per
/// interval, since a client that retries at once would otherwise write a line each time.
#[derive(Debug)]
struct Refused {
    counter: Counter,
    lines: Throttle,
}

/// How often refusals at the cap are logged.
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Refused {
    fn new(counter: Counter) -> Self {
        Self {
            counter,
            lines: Throttle::new(REFUSED_LOG_INTERVAL),
        }
    }

    /// Closes `stream` at once: FIN, or RST when its request has already arrived.
    fn refuse(&self, stream: TcpStream) {
        drop(stream);
        self.counter.increment(1);
        if let Some(not_logged) = self.lines.admit() {
            tracing::warn!(
                refused = not_logged + 1,
                interval_s = REFUSED_LOG_INTERVAL.as_secs(),
                "HTTP_MAX_CONNECTIONS connections are open; refusing new ones (one line per interval at most)"
            );
        }
    }
}
