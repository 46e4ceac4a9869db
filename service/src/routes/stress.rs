//! `POST /stress`: burns a bounded, documented amount of CPU and memory, for HPA demos.
//!
//! The work runs on tokio's blocking pool, never on the async workers, so a stress request
//! cannot delay cart requests queued behind it; a semaphore bounds how many run at once.

use std::hint::black_box;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, Problem, Result};
use crate::state::AppState;

/// One CPU iteration counts the primes below this bound by trial division: about 1 ms on
/// one core of a current x86-64 server in a release build (docs/api.md, "Stress").
pub const PRIMES_BELOW: u32 = 35_000;

/// Query of `POST /stress`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StressParams {
    /// CPU iterations, about 1 ms of one core each (default 1000).
    pub cpu_iterations: Option<u32>,
    /// MiB to allocate, touch and serialise to JSON before freeing (default 0).
    pub memory_mb: Option<u32>,
}

/// What a stress request did.
#[derive(Debug, Serialize, ToSchema)]
pub struct StressReport {
    pub cpu_iterations: u32,
    /// Primes found, summed over all iterations.
    pub primes_found: u64,
    pub memory_mb: u32,
    pub duration_ms: u64,
    pub pod: String,
    pub node: String,
}

/// Burn CPU (and optionally memory) to drive the HorizontalPodAutoscaler.
#[utoipa::path(post, path = "/stress", tag = "operations", params(StressParams),
    responses(
        (status = 200, description = "The work done", body = StressReport),
        (status = 400, description = "A parameter is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter is over its limit", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "STRESS_MAX_CONCURRENCY requests are already running", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stress(
    State(state): State<AppState>,
    params: Result<Query<StressParams>, QueryRejection>,
) -> Result<Json<StressReport>> {
    let Query(params) = params?;
    let cpu_iterations = params.cpu_iterations.unwrap_or(1000);
    let memory_mb = params.memory_mb.unwrap_or(0);
    let config = &state.config;
    if cpu_iterations > config.stress.max_cpu_iterations {
        let max = config.stress.max_cpu_iterations;
        return Err(Error::invalid(
            "cpu_iterations",
            format!("must be at most {max} (STRESS_MAX_CPU_ITERATIONS)"),
        ));
    }
    if memory_mb > config.stress.max_memory_mb {
        let max = config.stress.max_memory_mb;
        return Err(Error::invalid(
            "memory_mb",
            format!("must be at most {max} (STRESS_MAX_MEMORY_MB)"),
        ));
    }
    let permit = state
        .stress_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            Error::TooManyRequests(format!(
                "{} stress requests are already running (STRESS_MAX_CONCURRENCY)",
                config.stress.max_concurrency
            ))
        })?;

    let started = Instant::now();
    let primes_found = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let primes = burn_cpu(cpu_iterations);
        churn_memory(memory_mb);
        primes
    })
    .await
    .map_err(|e| Error::Internal(format!("stress task failed: {e}")))?;

    Ok(Json(StressReport {
        cpu_iterations,
        primes_found,
        memory_mb,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        pod: config.pod.name.clone(),
        node: config.pod.node.clone(),
    }))
}

/// Runs `iterations` CPU iterations; returns the primes found over all of them.
#[must_use]
pub fn burn_cpu(iterations: u32) -> u64 {
    (0..iterations)
        .map(|_| u64::from(count_primes_below(black_box(PRIMES_BELOW))))
        .sum()
}

/// Allocates `mb` MiB, writes every byte, serialises the buffer to JSON (as the seed's
/// `json.Marshal` did) and frees both before returning. Peak use is about 3 × `mb`.
pub fn churn_memory(mb: u32) {
    if mb == 0 {
        return;
    }
    let buffer = vec![1u8; usize::try_from(mb).unwrap_or(0) * 1024 * 1024];
    let json = serde_json::to_vec(black_box(&buffer)).unwrap_or_default();
    black_box(json.len());
}

fn count_primes_below(limit: u32) -> u32 {
    let mut count = 0;
    for n in 2..limit {
        let mut divisor = 2;
        let mut prime = true;
        while divisor * divisor <= n {
            if n % divisor == 0 {
                prime = false;
                break;
            }
            divisor += 1;
        }
        count += u32::from(prime);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_primes_correctly() {
        assert_eq!(count_primes_below(10), 4);
        assert_eq!(count_primes_below(PRIMES_BELOW), 3732);
        assert_eq!(burn_cpu(3), 3 * 3732);
    }
}
