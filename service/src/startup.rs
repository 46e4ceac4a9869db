//! `Application`: binds the listener, serves HTTP, and runs the shutdown sequence.
//!
//! The server ([`crate::server`]) is hyper-util's connection builder rather than
//! `axum::serve`, because the service needs what `axum::serve` does not expose: a
//! header-read timeout against slow clients, an idle timeout and a cap on connections, and a
//! graceful shutdown that closes idle keep-alive connections at once while in-flight
//! requests finish within a deadline.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::routes;
use crate::server::Server;
use crate::state::AppState;
use crate::store::{Limits, RedisConnection, Replication, Store};

/// A bound, not yet running service.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Binds `LISTEN_ADDR` (port 0 picks a free port) and starts connecting to Redis in the
    /// background: it never waits for Redis (nor for the JWKS with `AUTH_MODE=jwt`).
    pub async fn build(config: Config) -> std::io::Result<Self> {
        let auth = Authenticator::from_config(&config.auth)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let redis = RedisConnection::start(&config).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid REDIS_URL: {e}"),
            )
        })?;
        let store = Store::new(redis, Limits::from_config(&config))
            .with_replication(Replication::from_config(&config));
        let listener = TcpListener::bind(config.http.listen_addr).await?;
        let state = AppState::new(store, config, auth);
        Ok(Self::with_router(listener, routes::router(&state), state))
    }

    /// Serves `router` (tests add routes to the real one) on `listener` with `state`.
    #[must_use]
    pub fn with_router(listener: TcpListener, router: Router, state: AppState) -> Self {
        Self {
            listener,
            router,
            state,
        }
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then: `/readyz` turns 503; waits the drain delay
    /// while still serving; stops accepting; gives in-flight requests the shutdown timeout
    /// (idle keep-alive connections close at once). The caller flushes telemetry, then
    /// closes Redis with [`Stopped::close`].
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> Stopped {
        let Self {
            listener,
            router,
            state,
        } = self;
        let config = &state.config;
        let server = Server::new(router, &config.http);

        let drain_delay = config.shutdown.drain_delay;
        let draining = state.clone();
        let stop_accepting = async move {
            shutdown.await;
            tracing::info!(
                drain_delay_s = drain_delay.as_secs(),
                "shutdown: readiness off, draining"
            );
            draining.begin_shutdown();
            tokio::time::sleep(drain_delay).await;
        };

        tracing::info!(address = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "listening");
        server.accept_until(listener, stop_accepting).await;

        let timeout = config.shutdown.timeout;
        tracing::info!(
            timeout_s = timeout.as_secs(),
            "shutdown: stopped accepting, finishing in-flight requests"
        );
        if !server.shutdown(timeout).await {
            tracing::warn!(
                "shutdown: in-flight requests did not finish within SHUTDOWN_TIMEOUT_SECONDS; abandoning them"
            );
        }
        Stopped { state }
    }
}

/// A service that no longer serves HTTP; its Redis connection is still open.
#[derive(Debug)]
#[must_use = "close() ends the Redis connection"]
pub struct Stopped {
    state: AppState,
}

impl Stopped {
    /// Closes Redis: the last step of shutdown.
    pub fn close(self) {
        self.state.store.connection().close();
        tracing::info!("shutdown complete");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
