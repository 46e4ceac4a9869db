//! One accepted connection, served on a task of its own: the requests it has in progress
//! are counted, and once it has had none for `HTTP_IDLE_TIMEOUT_MS` (from its accept on, so
//! also before its first byte) it is asked to close, as it is when the server shuts down.
//!
//! A request is in progress from the moment hyper hands it to the service until its
//! response body has been sent (or dropped), so a slow handler or a long body is never cut
//! by the idle timer; the request deadline and the body timeout bound those.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics::Gauge;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::limits;

/// One of the `HTTP_MAX_CONNECTIONS` places, held by a connection until it ends.
#[derive(Debug)]
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Slot {
    pub(super) fn new(permit: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.increment(1.0);
        Self {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// Serves `stream` on a task of its own until the client closes it, it has been idle for
/// `idle_timeout`, or `shutdown` changes; `slot` is given back when it ends.
pub(super) fn spawn(
    stream: TcpStream,
    builder: &auto::Builder<TokioExecutor>,
    router: Router,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<()>,
    slot: Slot,
) {
    let activity = Arc::new(Activity::new());
    let service = ConnectionService {
        router,
        activity: Arc::clone(&activity),
    };
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    tokio::spawn(async move {
        let _slot = slot;
        tokio::pin!(connection);
        let reason = tokio::select! {
            result = connection.as_mut() => return report(result),
            () = activity.idle(idle_timeout, activity.accepted) => "idle",
            _ = shutdown.changed() => "shutdown",
        };
        tracing::debug!(reason, "closing a connection");
        // HTTP/1.1 closes at once when no request is in progress; HTTP/2 sends GOAWAY, lets
        // its streams finish and waits for the answer to a ping. A peer that never answers
        // it is dropped once the connection has been idle that long again.
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            result = connection.as_mut() => report(result),
            () = activity.idle(idle_timeout, Instant::now()) => {
                tracing::debug!("dropping a connection that did not close when asked");
            }
        }
    });
}

/// A connection's requests as the idle timer sees them. Requests update it with atomics
/// and never wake the connection's task; the timer looks at it when it fires, and sets
/// itself again for when the connection could be idle long enough.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    in_progress: AtomicUsize,
    /// When the last request ended, in nanoseconds after `accepted` (0: none yet).
    last_end: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_progress: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
        }
    }

    /// Resolves once no request has been in progress for `timeout`, counting from `from`
    /// at the earliest.
    async fn idle(&self, timeout: Duration, from: Instant) {
        let mut check = from + timeout;
        loop {
            tokio::time::sleep_until(check).await;
            if self.in_progress.load(Ordering::Acquire) > 0 {
                check = Instant::now() + timeout;
                continue;
            }
            let last_end =
                self.accepted + Duration::from_nanos(self.last_end.load(Ordering::Relaxed));
            check = last_end.max(from) + timeout;
            if check <= Instant::now() {
                return;
            }
        }
    }
}

fn report<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(error) = result {
        tracing::debug!(error = %error, "connection ended with an error");
    }
}

/// The router as one connection's hyper service: checks the request head's limits, and
/// counts the request as in progress until its response body is done.
#[derive(Debug, Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::begin(&self.activity);
        let rejected = limits::check(&request);
        let router = self.router.clone();
        Box::pin(async move {
            let response = match rejected {
                Some(response) => response,
                None => router.oneshot(request).await?,
            };
            Ok(response.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

/// One request in progress, until dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let since = activity.accepted.elapsed().as_nanos();
        activity
            .last_end
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        // Release: the timer that sees the count drop also sees the end time above.
        activity.in_progress.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request in progress until hyper has sent or dropped it.
#[derive(Debug)]
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
