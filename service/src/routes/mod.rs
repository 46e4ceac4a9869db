//! The HTTP API: [`router`] is the one place routes and layers are assembled, so tests can
//! drive the exact service `main` runs.
//!
//! Layers, outermost first: the SERVER span (W3C context extracted from the request,
//! [`crate::telemetry::http`]) and the `traceparent` response header; every error response
//! becomes problem+json ([`problemify`]);
//! metrics and the access log; a panic becomes a 500; the request deadline; the body-size
//! limit; the body read timeout.

pub mod auth;
pub mod cart;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod stress;

use std::any::Any;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError, TimeoutLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::MAX_ID_LEN;
use crate::error::{Error, PROBLEM_JSON, status_problem};
use crate::state::AppState;
use crate::telemetry;

/// Largest request body accepted; larger ones get 413 without being read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The complete service: every route with every layer.
pub fn router(state: &AppState) -> Router {
    let (routes, spec) = api(state).split_for_parts();
    with_layers(routes, &spec, state)
}

/// The routes and their OpenAPI description, without layers. With `AUTH_MODE=jwt` the
/// cart routes, and only they, need a bearer token, and the document says so.
pub fn api(state: &AppState) -> OpenApiRouter<AppState> {
    let mut cart = OpenApiRouter::new()
        .routes(routes!(cart::add_item, cart::get_cart, cart::clear_cart))
        .routes(routes!(cart::set_item, cart::remove_item));
    if state.auth.is_some() {
        cart = cart.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
        openapi::require_bearer(cart.get_openapi_mut());
    }
    let mut api = OpenApiRouter::with_openapi(openapi::base())
        .merge(cart)
        .routes(routes!(health::healthz))
        .routes(routes!(health::livez))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json));
    if state.config.stress.enabled {
        api = api.routes(routes!(stress::stress));
    }
    api
}

/// Wraps `routes` in the service's layers and state, serving `spec` at `/openapi.json`.
/// Tests use it to add routes of their own (a handler that panics) under the same layers.
pub fn with_layers(
    routes: Router<AppState>,
    spec: &utoipa::openapi::OpenApi,
    state: &AppState,
) -> Router {
    // Install the recorder before the first request records anything.
    crate::metrics::handle();
    routes
        .fallback(|| async { Error::NotFound })
        .layer(RequestBodyTimeoutLayer::new(state.config.http.body_timeout))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.http.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(metrics::observe))
        .layer(axum::Extension(openapi::Spec::new(spec, &state.config)))
        .layer(axum::middleware::map_response(problemify))
        .layer(axum::middleware::map_response(
            telemetry::http::inject_trace_headers,
        ))
        .layer(telemetry::http::server_span_layer(is_traced))
        .with_state(state.clone())
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "expected a body with content type application/json".into(),
            ),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(
                json_error(&e)
                    .map_or_else(|| "the body is not valid JSON".to_owned(), syntax_detail),
            ),
            JsonRejection::JsonDataError(e) => Self::BadRequest(json_error(&e).map_or_else(
                || "the body is not the JSON object this route takes".to_owned(),
                data_detail,
            )),
            JsonRejection::BytesRejection(e)
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE
                    || caused_by::<LengthLimitError>(&e) =>
            {
                payload_too_large()
            }
            JsonRejection::BytesRejection(e) if caused_by::<TimeoutError>(&e) => {
                Self::RequestTimeout
            }
            _ => Self::BadRequest("the request body could not be read".to_owned()),
        }
    }
}

/// The JSON error behind a rejection, with the path of the field it is about (axum's
/// `Json` deserialises through `serde_path_to_error`).
type JsonError = serde_path_to_error::Error<serde_json::Error>;

fn json_error<'a>(rejection: &'a (dyn std::error::Error + 'static)) -> Option<&'a JsonError> {
    std::iter::successors(Some(rejection), |e| e.source()).find_map(|e| e.downcast_ref())
}

/// Where the JSON breaks, in words a client can act on (serde's own wording names Rust
/// types and parser states).
fn syntax_detail(error: &JsonError) -> String {
    let inner = error.inner();
    match inner.classify() {
        serde_json::error::Category::Eof => "the body ends before its JSON is complete".to_owned(),
        _ => format!(
            "the body is not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        ),
    }
}

/// Which field of a well-formed JSON body is wrong and what it must be.
fn data_detail(error: &JsonError) -> String {
    let message = error.inner().to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return format!("{field}: is required");
    }
    let field = error.path().to_string();
    match field.as_str() {
        "product_id" => format!("product_id: must be a string of 1 to {MAX_ID_LEN} bytes of [A-Za-z0-9._:@-]"),
        "quantity" => "quantity: must be a whole number".to_owned(),
        // The body itself, or an element of it when it is an array: serde reads a struct
        // from an array too, so `[1]` fails at `[0]`.
        root if root == "." || root.starts_with('[') => "the body must be a JSON object with the fields this route documents (see /openapi.json)".to_owned(),
        other => format!("{other}: has the wrong type (see /openapi.json)"),
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(format!("invalid query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(format!("invalid path: {}", rejection.body_text()))
    }
}

/// Probes and metrics are scraped every few seconds: tracing them would bury the traces
/// that matter.
fn is_traced(path: &str) -> bool {
    !matches!(path, "/livez" | "/readyz" | "/healthz" | "/metrics")
}

/// The 413 of a body over [`MAX_BODY_BYTES`], whichever layer noticed it.
fn payload_too_large() -> Error {
    Error::PayloadTooLarge {
        max: MAX_BODY_BYTES,
    }
}

/// Turns any error response that is not already JSON (axum's 404/405, tower-http's 413 and
/// timeouts) into problem+json, keeping its status and headers such as `Allow`.
async fn problemify(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => Some(Error::NotFound.to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            Some("method not allowed for this path; see the Allow header".to_owned())
        }
        StatusCode::PAYLOAD_TOO_LARGE => Some(payload_too_large().to_string()),
        StatusCode::REQUEST_TIMEOUT => Some(Error::RequestTimeout.to_string()),
        StatusCode::SERVICE_UNAVAILABLE => {
            Some("the request did not finish before its deadline".to_owned())
        }
        _ => None,
    };
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&status_problem(status, detail)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        parts
            .headers
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    Response::from_parts(parts, Body::from(body))
}

/// Whether `error` or any of its sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with(PROBLEM_JSON))
}

#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom requires
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Error::Internal(format!("handler panicked: {message}")).into_response()
}
