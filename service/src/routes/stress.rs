//! `POST /stress`: burns a bounded, documented amount of CPU and memory, for HPA demos.
//!
//! The work runs on tokio's blocking pool, never on the async workers, so a stress request
//! cannot delay cart requests queued behind it. Two semaphores bound it: one permit per
//! running request (`STRESS_MAX_CONCURRENCY`) and one per MiB held
//! (`STRESS_MAX_TOTAL_MEMORY_MB`), so stress requests together cannot push the process past
//! its memory limit. The work stops, freeing both, once the request's deadline passes or
//! its client goes away.

mod query;
mod work;

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::{IntoParams, ToSchema};

use crate::config::StressToken;
use crate::error::{Error, Problem, problem_response, status_problem};
use crate::state::AppState;

pub use query::{Asked, DEFAULT_CPU_ITERATIONS};
pub use work::{CancelOnDrop, Interrupted, PRIMES_BELOW, Stop, burn_cpu, churn_memory};

/// Query of `POST /stress`; any other parameter is 422.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StressParams {
    /// CPU iterations, about 1 ms of one core each: 0 to `STRESS_MAX_CPU_ITERATIONS`
    /// (default 1000, or that maximum when it is lower).
    pub cpu_iterations: Option<u32>,
    /// MiB to allocate, touch and serialise to JSON before freeing: 0 to
    /// `STRESS_MAX_MEMORY_MB` (default 0).
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
#[utoipa::path(post, path = "/stress", tag = "operations",
    params(
        StressParams,
        ("Authorization" = Option<String>, Header,
         description = "`Bearer <STRESS_TOKEN>`, required when the service has a STRESS_TOKEN"),
    ),
    responses(
        (status = 200, description = "The work done", body = StressReport),
        (status = 400, description = "A parameter is not a whole number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "STRESS_TOKEN is set and the request has no matching `Authorization: Bearer` header (with `WWW-Authenticate: Bearer`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request has a body over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A parameter is out of its range, repeated or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "STRESS_MAX_CONCURRENCY requests are already running, or the memory asked for does not fit in what STRESS_MAX_TOTAL_MEMORY_MB leaves (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The work failed unexpectedly (a bug; logged)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The work did not finish within REQUEST_TIMEOUT_MS and was stopped, or the memory could not be mapped (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stress(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<StressReport>, Response> {
    let started = Instant::now();
    let config = &state.config;
    authorize(&headers, config.stress.token.as_ref()).map_err(IntoResponse::into_response)?;
    let Query(pairs) = query.map_err(|rejection| Error::from(rejection).into_response())?;
    let asked = query::parse(&pairs, &config.stress).map_err(IntoResponse::into_response)?;
    let permits = reserve(&state, asked).map_err(IntoResponse::into_response)?;

    // Dropping this future (deadline layer, closed connection) drops `_cancel`, which
    // stops the work and so frees the permits.
    let (stop, _cancel) = Stop::new(started + config.http.request_timeout);
    let outcome = tokio::task::spawn_blocking(move || {
        let _permits = permits;
        let primes = burn_cpu(asked.cpu_iterations, &stop)?;
        churn_memory(asked.memory_mb, &stop)?;
        Ok(primes)
    })
    .await
    .map_err(|e| Error::Internal(format!("stress task failed: {e}")).into_response())?;
    let primes_found = outcome.map_err(|interrupted| unavailable(interrupted, asked))?;

    Ok(Json(StressReport {
        cpu_iterations: asked.cpu_iterations,
        primes_found,
        memory_mb: asked.memory_mb,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        pod: config.pod.name.clone(),
        node: config.pod.node.clone(),
    }))
}

/// The permits a request holds while its work runs.
#[derive(Debug)]
struct Permits {
    _running: OwnedSemaphorePermit,
    _memory: Option<OwnedSemaphorePermit>,
}

/// A running slot and `memory_mb` MiB of the budget, or 429 saying which is exhausted.
fn reserve(state: &AppState, asked: Asked) -> Result<Permits, Error> {
    let stress = &state.config.stress;
    let running = state
        .stress_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            Error::TooManyRequests(format!(
                "{} stress requests are already running (STRESS_MAX_CONCURRENCY)",
                stress.max_concurrency
            ))
        })?;
    let memory = if asked.memory_mb == 0 {
        None
    } else {
        let budget = &state.stress_memory;
        let total = usize::try_from(stress.max_total_memory_mb).unwrap_or(usize::MAX);
        let held = total.saturating_sub(budget.available_permits());
        let permit = budget
            .clone()
            .try_acquire_many_owned(asked.memory_mb)
            .map_err(|_| {
                Error::TooManyRequests(format!(
                    "memory_mb={} does not fit: running stress requests hold {held} of the {} MiB \
                     STRESS_MAX_TOTAL_MEMORY_MB allows",
                    asked.memory_mb, stress.max_total_memory_mb
                ))
            })?;
        Some(permit)
    };
    Ok(Permits {
        _running: running,
        _memory: memory,
    })
}

/// `Ok` when no token is configured or the request carries `Authorization: Bearer
/// <token>` with it.
fn authorize(headers: &HeaderMap, token: Option<&StressToken>) -> Result<(), Unauthorized> {
    let Some(token) = token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    match presented {
        Some(candidate) if bool::from(candidate.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(Unauthorized::WrongToken),
        None => Err(Unauthorized::NoToken),
    }
}

/// A request without the token `STRESS_TOKEN` asks for: 401 with `WWW-Authenticate: Bearer`
/// (RFC 6750).
#[derive(Debug, Clone, Copy)]
enum Unauthorized {
    NoToken,
    WrongToken,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let (challenge, detail) = match self {
            Self::NoToken => (
                r#"Bearer realm="cart-service""#,
                "POST /stress needs an Authorization: Bearer header with the STRESS_TOKEN",
            ),
            Self::WrongToken => (
                r#"Bearer realm="cart-service", error="invalid_token""#,
                "the bearer token does not match STRESS_TOKEN",
            ),
        };
        let problem = status_problem(StatusCode::UNAUTHORIZED, Some(detail.to_owned()));
        let mut response = problem_response(&problem);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

/// The 503 of work that could not finish, with `Retry-After`.
fn unavailable(interrupted: Interrupted, asked: Asked) -> Response {
    let detail = match interrupted {
        Interrupted::Stopped => {
            tracing::info!(
                cpu_iterations = asked.cpu_iterations,
                memory_mb = asked.memory_mb,
                "stress work stopped at the request deadline"
            );
            "the work was stopped at the request deadline (REQUEST_TIMEOUT_MS)".to_owned()
        }
        Interrupted::NoMemory => {
            tracing::warn!(
                memory_mb = asked.memory_mb,
                "the kernel refused the stress memory"
            );
            format!("{} MiB could not be mapped; retry later", asked.memory_mb)
        }
    };
    let problem = status_problem(StatusCode::SERVICE_UNAVAILABLE, Some(detail));
    let mut response = problem_response(&problem);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
