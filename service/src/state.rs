//! `AppState`: what every handler shares. Cheap to clone (a few `Arc`s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::store::Store;

/// Shared state of the running service.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    /// Bounds concurrent `/stress` requests; a request that finds no permit gets 429.
    pub stress_permits: Arc<Semaphore>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    #[must_use]
    pub fn new(store: Store, config: Config) -> Self {
        let permits = usize::try_from(config.stress_max_concurrency).unwrap_or(1);
        Self {
            store,
            config: Arc::new(config),
            stress_permits: Arc::new(Semaphore::new(permits)),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
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
