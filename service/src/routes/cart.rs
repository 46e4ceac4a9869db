//! The cart routes: add, read, set and remove lines, clear a cart.
//!
//! Handlers validate input into domain types first, then make exactly one store call per
//! step; the store's Lua scripts do every read-then-write atomically. Each handler is an
//! INTERNAL span `cart.<operation>` under the request's SERVER span, with the Redis
//! commands as CLIENT spans beneath it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{self, Id, IdempotencyKey};
use crate::error::{Error, Problem, Result};
use crate::state::AppState;
use crate::store::{Added, Idempotency};
use crate::telemetry;

/// The request header that makes a POST safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header that marks a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Body of `POST /v1/cart/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddItemRequest {
    /// 1 to 64 bytes of `[A-Za-z0-9._:@-]`.
    #[schema(
        example = "p-1",
        pattern = "^[A-Za-z0-9._:@-]+$",
        min_length = 1,
        max_length = 64
    )]
    pub product_id: String,
    /// Units to add, 1 to `CART_MAX_QUANTITY` (the document's maximum is this instance's).
    #[schema(example = 2, minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
}

/// Body of `PUT /v1/cart/{user_id}/items/{product_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetItemRequest {
    /// The line's new quantity, 0 to `CART_MAX_QUANTITY`; 0 removes the line.
    #[schema(example = 5, minimum = 0)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
}

/// A quantity as any whole JSON number (`2`, `2.0`, `1e20`), so one out of range is the
/// domain's 422 naming the bounds rather than a type error; beyond `i64` it saturates.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    if number.as_u64().is_some() {
        return Ok(i64::MAX);
    }
    match number.as_f64() {
        // Saturating: `as` clamps to the i64 range, and only the sign matters out there.
        #[allow(clippy::cast_possible_truncation)]
        Some(value) if value.fract() == 0.0 => Ok(value as i64),
        _ => Err(serde::de::Error::custom("must be a whole number")),
    }
}

/// The path of a cart. Only documents it (handlers take `Path<String>` so a bad id is
/// the domain's 422); the pattern and lengths are `domain::Id`'s.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct CartPath {
    /// 1 to 64 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]+$", min_length = 1, max_length = 64)]
    user_id: String,
}

/// The path of one line of a cart; documentation only, as [`CartPath`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct LinePath {
    /// 1 to 64 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]+$", min_length = 1, max_length = 64)]
    user_id: String,
    /// 1 to 64 bytes of `[A-Za-z0-9._:@-]`.
    #[param(pattern = "^[A-Za-z0-9._:@-]+$", min_length = 1, max_length = 64)]
    product_id: String,
}

/// One cart line after a write.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineResponse {
    pub user_id: String,
    pub product_id: String,
    /// The line's total after the write.
    pub quantity: u32,
}

/// A line of a cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartItem {
    pub product_id: String,
    pub quantity: u32,
}

/// A whole cart, lines sorted by product id.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartResponse {
    pub user_id: String,
    pub items: Vec<CartItem>,
    pub total_quantity: u64,
}

/// Add units of a product to a cart.
///
/// The line's total and the cart's distinct-item count are capped atomically: a request
/// that would pass a cap is 422 and changes nothing. With an `Idempotency-Key`, a retry
/// with the same body replays the stored response (`Idempotent-Replayed: true`) and adds
/// nothing. Duplicates sent at once are no exception: looking the key up, the add and its
/// stored result are one atomic step, so one of them adds and the others replay it.
#[utoipa::path(post, path = "/v1/cart/{user_id}", tag = "cart",
    params(
        CartPath,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; kept 24 h",
            pattern = "^[!-~]+$", min_length = 1, max_length = 255),
    ),
    request_body = AddItemRequest,
    responses(
        (status = 200, description = "The line's new total", body = LineResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same Idempotency-Key"))),
        (status = 400, description = "Malformed JSON, a missing field or a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within HTTP_BODY_TIMEOUT_MS", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id or quantity, a cap would be passed, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable, or the request passed REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn add_item(
    State(state): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<AddItemRequest>, JsonRejection>,
) -> Result<Response> {
    async move {
        let Json(body) = body?;
        let user = Id::parse("user_id", user_id?.0)?;
        let product = Id::parse("product_id", body.product_id)?;
        let max_quantity = state.store.limits().max_quantity;
        let quantity = domain::quantity(body.quantity, false, max_quantity)?;
        let key = headers
            .get(IDEMPOTENCY_KEY)
            .map(|v| IdempotencyKey::parse(v.as_bytes()))
            .transpose()?;

        let fingerprint = key
            .as_ref()
            .map(|_| domain::add_fingerprint(&product, quantity));
        let idempotency = key
            .as_ref()
            .zip(fingerprint.as_deref())
            .map(|(key, fingerprint)| Idempotency { key, fingerprint });

        match state
            .store
            .add_item(&user, &product, quantity, idempotency)
            .await?
        {
            Added::Total(total) => Ok(Json(line(&user, &product, total)).into_response()),
            Added::Replay { status, quantity } => {
                Ok(replay(status, line(&user, &product, quantity)))
            }
            Added::KeyReused => Err(Error::invalid(
                "Idempotency-Key",
                "was already used with a different request body",
            )),
            Added::QuantityCap { current } => Err(Error::invalid(
                "quantity",
                format!(
                    "the line holds {current}; adding {quantity} would pass the limit of {max_quantity}"
                ),
            )),
            Added::ItemCap => Err(item_cap(&state)),
        }
    }
    .instrument(telemetry::sampled_child(|| tracing::info_span!("cart.add_item")))
    .await
}

/// Read a cart; an unknown cart is empty.
#[utoipa::path(get, path = "/v1/cart/{user_id}", tag = "cart",
    params(CartPath),
    responses(
        (status = 200, description = "The cart, lines sorted by product id", body = CartResponse),
        (status = 400, description = "A path segment is not UTF-8 once percent-decoded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid user id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable, or the request passed REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn get_cart(
    State(state): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    async move {
        let user = Id::parse("user_id", user_id?.0)?;
        let lines = state.store.get_cart(&user).await?;
        let total_quantity = lines.iter().map(|(_, q)| u64::from(*q)).sum();
        let items = lines
            .into_iter()
            .map(|(product_id, quantity)| CartItem {
                product_id,
                quantity,
            })
            .collect();
        let cart = CartResponse {
            user_id: user.into_string(),
            items,
            total_quantity,
        };
        Ok(Json(cart).into_response())
    }
    .instrument(telemetry::sampled_child(|| {
        tracing::info_span!("cart.get_cart")
    }))
    .await
}

/// Delete a whole cart (idempotent).
#[utoipa::path(delete, path = "/v1/cart/{user_id}", tag = "cart",
    params(CartPath),
    responses(
        (status = 204, description = "The cart is gone"),
        (status = 400, description = "A path segment is not UTF-8 once percent-decoded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid user id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable, or the request passed REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn clear_cart(
    State(state): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    async move {
        let user = Id::parse("user_id", user_id?.0)?;
        state.store.clear(&user).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .instrument(telemetry::sampled_child(|| {
        tracing::info_span!("cart.clear_cart")
    }))
    .await
}

/// Set a line to an exact quantity; 0 removes it.
#[utoipa::path(put, path = "/v1/cart/{user_id}/items/{product_id}", tag = "cart",
    params(LinePath),
    request_body = SetItemRequest,
    responses(
        (status = 200, description = "The line as set", body = LineResponse),
        (status = 400, description = "Malformed JSON, a missing field or a wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within HTTP_BODY_TIMEOUT_MS", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id or quantity, or the item cap would be passed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable, or the request passed REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn set_item(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<SetItemRequest>, JsonRejection>,
) -> Result<Json<LineResponse>> {
    async move {
        let Json(body) = body?;
        let (user, product) = parse_ids(ids?.0)?;
        let quantity = domain::quantity(body.quantity, true, state.store.limits().max_quantity)?;
        match state.store.set_item(&user, &product, quantity).await? {
            Some(quantity) => Ok(Json(line(&user, &product, quantity))),
            None => Err(item_cap(&state)),
        }
    }
    .instrument(telemetry::sampled_child(|| {
        tracing::info_span!("cart.set_item")
    }))
    .await
}

/// Remove a line (idempotent).
#[utoipa::path(delete, path = "/v1/cart/{user_id}/items/{product_id}", tag = "cart",
    params(LinePath),
    responses(
        (status = 204, description = "The line is gone"),
        (status = 400, description = "A path segment is not UTF-8 once percent-decoded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis unavailable, or the request passed REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn remove_item(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode> {
    async move {
        let (user, product) = parse_ids(ids?.0)?;
        state.store.set_item(&user, &product, 0).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .instrument(telemetry::sampled_child(|| {
        tracing::info_span!("cart.remove_item")
    }))
    .await
}

fn parse_ids((user_id, product_id): (String, String)) -> Result<(Id, Id)> {
    Ok((
        Id::parse("user_id", user_id)?,
        Id::parse("product_id", product_id)?,
    ))
}

fn line(user: &Id, product: &Id, quantity: u32) -> LineResponse {
    LineResponse {
        user_id: user.as_str().to_owned(),
        product_id: product.as_str().to_owned(),
        quantity,
    }
}

fn replay(status: u16, body: LineResponse) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn item_cap(state: &AppState) -> Error {
    let max = state.store.limits().max_items;
    Error::invalid(
        "product_id",
        format!("the cart already holds the limit of {max} distinct products"),
    )
}
