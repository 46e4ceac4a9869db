//! The bearer-token check in front of the cart routes: a route layer that [`super::api`]
//! adds only with `AUTH_MODE=jwt`, so probes, `/metrics` and `/openapi.json` stay open and
//! a service without auth pays nothing for it.
//!
//! It runs after routing, so it reads the matched `{user_id}`, and before the handler, so
//! a refused request never reaches Redis nor has its body read.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth;
use crate::error::Error;
use crate::state::AppState;

/// Passes the request on when its bearer token grants the cart of its `{user_id}`; else
/// 401 (no token, or one that does not verify) or 403 (another user's token).
pub async fn require_token(
    State(state): State<AppState>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let Some(authenticator) = &state.auth else {
        return next.run(request).await;
    };
    // A path that does not decode has no user id, and no token can grant it.
    let user_id = params.ok().and_then(|params| {
        params
            .iter()
            .find(|(name, _)| *name == "user_id")
            .map(|(_, value)| value.to_owned())
    });
    let verdict = match auth::bearer_token(request.headers()) {
        Ok(token) => authenticator.authorize(token, user_id.as_deref()).await,
        Err(denied) => Err(denied),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            tracing::debug!(reason = %denied, "request refused");
            Error::from(denied).into_response()
        }
    }
}
