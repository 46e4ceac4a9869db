//! The crate's one error type and its HTTP face: every error leaves the service as
//! `application/problem+json` (RFC 9457).
//!
//! Internal causes (Redis errors, panics) are logged here and never written into the
//! response body, so no client ever sees a Redis reply or a Rust debug string.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Denied;
use crate::domain::Invalid;
use crate::store::StoreError;
use crate::telemetry::throttle::Throttle;

/// `pub type Result<T> = Result<T, Error>` for handlers and the layers around them.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request parsed but a value is out of bounds (422).
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// The body is not the JSON the route expects, or a field is missing (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not `application/json` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit (413).
    #[error("request body is larger than {max} bytes")]
    PayloadTooLarge { max: usize },
    /// The request body did not arrive in time (408).
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// No bearer token, or one that does not verify (401, with `WWW-Authenticate`);
    /// `invalid_token` is false when there was no token at all.
    #[error("{detail}")]
    Unauthorized { detail: String, invalid_token: bool },
    /// A valid token that does not grant this cart (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such route (404).
    #[error("no route for this path")]
    NotFound,
    /// Too many requests of this kind at once (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// Redis did not answer, or the request ran past its deadline (503).
    #[error("service temporarily unavailable")]
    Unavailable(#[source] Option<StoreError>),
    /// The token signing keys have not been fetched yet (503).
    #[error("{}", Denied::KeysUnavailable)]
    KeysUnavailable,
    /// A bug: a panic or an impossible state (500). The string is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

/// One invalid field of a request, in the `errors` extension of a 422 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// Where the bad value is: `user_id`, `product_id`, `quantity`, `Idempotency-Key`...
    pub field: String,
    pub message: String,
}

/// The RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field validation errors (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Error {
    /// A 422 for one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Validation {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError {
                field: field.to_owned(),
                message,
            }],
        }
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(self) -> Problem {
        let status = self.status();
        let (kind, title) = match &self {
            Self::Validation { .. } => ("urn:cart-service:problem:validation", "Validation failed"),
            Self::TooManyRequests(_) => ("urn:cart-service:problem:saturated", "Too many requests"),
            Self::Unavailable(_) | Self::KeysUnavailable => (
                "urn:cart-service:problem:unavailable",
                "Service unavailable",
            ),
            _ => ("about:blank", status.canonical_reason().unwrap_or("Error")),
        };
        let detail = match &self {
            Self::Internal(_) => {
                "the server hit an unexpected condition; it has been logged".to_owned()
            }
            Self::Unavailable(Some(StoreError::NotReplicated { .. })) => {
                "the change reached the cart store but no replica confirmed it in time; it may \
                 or may not be kept: retry shortly (with the same Idempotency-Key for an add)"
                    .to_owned()
            }
            Self::Unavailable(_) => {
                "the cart store did not answer in time; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation { errors, .. } => errors,
            _ => Vec::new(),
        };
        Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: Some(detail),
            errors,
        }
    }
}

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Self {
        Self::invalid(&invalid.field, invalid.message)
    }
}

impl From<Denied> for Error {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Missing => Self::Unauthorized {
                detail: denied.to_string(),
                invalid_token: false,
            },
            Denied::InvalidToken(detail) => Self::Unauthorized {
                detail,
                invalid_token: true,
            },
            Denied::WrongUser(detail) => Self::Forbidden(detail),
            Denied::KeysUnavailable => Self::KeysUnavailable,
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt(what) => Self::Internal(what),
            other => Self::Unavailable(Some(other)),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            Self::Unavailable(Some(cause)) => log_unavailable(cause),
            _ => {}
        }
        let retry = matches!(
            self,
            Self::Unavailable(_) | Self::TooManyRequests(_) | Self::KeysUnavailable
        );
        let challenge = self.bearer_challenge();
        let mut response = problem_response(&self.problem());
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// How often a Redis outage is logged: its first failed request, then one line per
/// interval with the count since the last line. During an outage every request fails, and
/// a line for each buried the log (155 000 lines in one run).
pub const UNAVAILABLE_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn log_unavailable(cause: &StoreError) {
    static THROTTLE: Throttle = Throttle::new(UNAVAILABLE_LOG_INTERVAL);
    if let Some(not_logged) = THROTTLE.admit() {
        tracing::warn!(
            cause = %cause,
            failed_requests_not_logged = not_logged,
            interval_s = UNAVAILABLE_LOG_INTERVAL.as_secs(),
            "redis unavailable; further failures within the interval are counted, not logged"
        );
    }
}

impl Error {
    /// The RFC 6750 `WWW-Authenticate` challenge of a 401 or 403: no error code when the
    /// request had no token, else `invalid_token` or `insufficient_scope` with the reason.
    fn bearer_challenge(&self) -> Option<HeaderValue> {
        let (code, detail) = match self {
            Self::Unauthorized {
                invalid_token: false,
                ..
            } => return Some(HeaderValue::from_static(r#"Bearer realm="cart-service""#)),
            Self::Unauthorized { detail, .. } => ("invalid_token", detail),
            Self::Forbidden(detail) => ("insufficient_scope", detail),
            _ => return None,
        };
        // error_description allows printable ASCII except the quote and the backslash.
        let description: String = detail
            .chars()
            .filter(|c| matches!(c, ' '..='~') && !matches!(c, '"' | '\\'))
            .collect();
        HeaderValue::from_str(&format!(
            r#"Bearer realm="cart-service", error="{code}", error_description="{description}""#
        ))
        .ok()
    }
}

/// Serialises a problem with its status and content type.
#[must_use]
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

/// A plain problem for a bare status code, for errors produced by layers and by axum itself.
#[must_use]
pub fn status_problem(status: StatusCode, detail: Option<String>) -> Problem {
    Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
    }
}
