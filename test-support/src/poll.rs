//! Waiting on the system under test with a deadline: [`eventually`] for something that
//! must happen, [`never()`] for something that must not.
//!
//! A fixed sleep before a single look is either too short on a loaded machine (the look
//! comes before the event) or needlessly long on an idle one, and a look for something
//! that must not happen passes whenever it comes too early. Polling answers as soon as the
//! answer is known and fails with a message that names what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is evaluated.
const INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` every 20 ms until it holds; returns how long that took, or panics
/// with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not true within {limit:?}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Polls `condition`, the thing that must not happen, every 20 ms for `limit` (and once
/// more at its end), and panics with `what` as soon as it holds.
pub async fn never<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        let looked_at = started.elapsed();
        assert!(
            !condition().await,
            "{what}: happened {looked_at:?} into a watch of {limit:?}"
        );
        if looked_at >= limit {
            return;
        }
        tokio::time::sleep(INTERVAL.min(limit.saturating_sub(looked_at))).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);

        eventually(Duration::from_secs(5), "the third call", || async {
            calls.fetch_add(1, Ordering::Relaxed) == 2
        })
        .await;

        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn never_watches_for_the_whole_limit_when_nothing_happens() {
        let started = Instant::now();
        let calls = AtomicU32::new(0);

        never(Duration::from_millis(100), "nothing", || async {
            calls.fetch_add(1, Ordering::Relaxed);
            false
        })
        .await;

        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            calls.load(Ordering::Relaxed) >= 3,
            "it looked more than once"
        );
    }

    #[tokio::test]
    async fn never_fails_as_soon_as_the_condition_holds() {
        let started = Instant::now();
        let calls = AtomicU32::new(0);

        let watched = tokio::spawn(async move {
            never(Duration::from_secs(10), "the second call", || async {
                calls.fetch_add(1, Ordering::Relaxed) == 1
            })
            .await;
        })
        .await;

        let panic = watched.expect_err("never panicked").into_panic();
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.starts_with("the second call: happened"),
            "{message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "it failed at once"
        );
    }
}
