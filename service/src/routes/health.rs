//! Probes: `/healthz` (seed-compatible, reports Redis), `/livez` (never touches Redis) and
//! `/readyz` (Redis answers and shutdown has not begun).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Problem, Result};
use crate::state::AppState;
use crate::store::StoreError;

/// How long `/healthz` waits for Redis to answer PING, as the seed did.
pub const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/healthz`, in both outcomes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `ok`, or why Redis is not usable: `not connected`, `timeout` or `error`.
    pub redis: &'static str,
    pub pod: String,
    pub node: String,
    pub version: &'static str,
}

/// A probe's plain answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeStatus {
    pub status: &'static str,
}

/// Seed-compatible health: 200 when Redis answers PING within 2 s, else 503 with the reason.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Redis does not answer", body = Health),
    ))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let redis = match tokio::time::timeout(HEALTH_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(StoreError::NotConnected)) => "not connected",
        Ok(Err(StoreError::Redis(e))) if e.is_timeout() => "timeout",
        Err(_) => "timeout",
        Ok(Err(_)) => "error",
    };
    let healthy = redis == "ok";
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        redis,
        pod: state.config.pod.name.clone(),
        node: state.config.pod.node.clone(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Liveness: the process serves HTTP. Never touches Redis.
#[utoipa::path(get, path = "/livez", tag = "operations",
    responses((status = 200, description = "Alive", body = ProbeStatus)))]
pub async fn livez() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "alive" })
}

/// Readiness: Redis answers PING and shutdown has not begun.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = ProbeStatus),
        (status = 503, description = "Redis unreachable or shutting down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<ProbeStatus>> {
    if state.is_shutting_down() {
        return Err(Error::Unavailable(None));
    }
    state.store.ping().await?;
    Ok(Json(ProbeStatus { status: "ready" }))
}
