//! `AppState`: what every handler shares. Cheap to clone (one `Arc`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::store::Store;

/// Shared state of the running service: one `Arc`, because axum clones the state for
/// every request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub config: Config,
    /// Checks the cart routes' bearer tokens; none when `AUTH_MODE` is `none`.
    pub auth: Option<Authenticator>,
    /// Bounds concurrent `/stress` requests; a request that finds no permit gets 429.
    pub stress_permits: Arc<Semaphore>,
    /// The memory running `/stress` requests may hold together, one permit a MiB
    /// (`STRESS_MAX_TOTAL_MEMORY_MB`); a request that does not fit gets 429.
    pub stress_memory: Arc<Semaphore>,
    shutting_down: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    #[must_use]
    pub fn new(store: Store, config: Config, auth: Option<Authenticator>) -> Self {
        let permits = usize::try_from(config.stress.max_concurrency).unwrap_or(1);
        let memory_mb = usize::try_from(config.stress.max_total_memory_mb).unwrap_or(0);
        Self(Arc::new(Inner {
            store,
            config,
            auth,
            stress_permits: Arc::new(Semaphore::new(permits)),
            stress_memory: Arc::new(Semaphore::new(memory_mb)),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The first step of shutdown: from now on `/readyz` answers 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
