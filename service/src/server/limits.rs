//! The limits on a request's head (its URI and header fields), which the service answers
//! itself with a `414` or `431` problem+json before routing.
//!
//! hyper enforces limits of its own while it parses, and answers past them with an empty
//! body. So hyper is given room well beyond ours ([`HYPER_MAX_HEAD_BYTES`],
//! [`HYPER_MAX_HEADER_FIELDS`]) and a client that passes our limits, but not hyper's, learns
//! from the body what was wrong; only a head past hyper's own limits still gets its empty
//! answer (the README lists those).

use axum::http::{Request, StatusCode};
use axum::response::Response;

use crate::error::{problem_response, status_problem};

/// Longest request URI accepted (authority, path and query), in bytes; longer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most header fields one request may carry; more is 431.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Most bytes of header names and values one request may carry; more is 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// hyper's bound on a request head's bytes (HTTP/1.1 read buffer, HTTP/2 header list):
/// past it hyper answers an empty 431 without reading more, so one connection holds at most
/// this much of a hostile head in memory.
pub(super) const HYPER_MAX_HEAD_BYTES: usize = 128 * 1024;

/// hyper's bound on an HTTP/1.1 request's header fields; past it hyper answers an empty 431.
/// Above hyper's default of 100, its parser takes the array from the heap (16 KiB a request).
pub(super) const HYPER_MAX_HEADER_FIELDS: usize = 256;

/// The problem response for a request whose head is over a limit; `None` when it is within.
pub fn check<B>(request: &Request<B>) -> Option<Response> {
    let uri = request.uri();
    let uri_bytes = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(reject(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request URI is {uri_bytes} bytes long; at most {MAX_URI_BYTES} are accepted"
            ),
        ));
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Some(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request has {} header fields; at most {MAX_HEADER_FIELDS} are accepted",
                headers.len()
            ),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's header names and values are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        ));
    }
    None
}

/// Debug, not warn: these requests never reach the access log, and a client sending them
/// in a loop must not fill the log.
fn reject(status: StatusCode, detail: String) -> Response {
    tracing::debug!(
        status = status.as_u16(),
        detail,
        "request head over a limit"
    );
    problem_response(&status_problem(status, Some(detail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, String)]) -> Request<()> {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_head_at_every_limit_passes() {
        let uri = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
        let fields: Vec<(&str, String)> = (0..MAX_HEADER_FIELDS)
            .map(|_| ("x-a", "b".into()))
            .collect();
        let big = vec![("x", "v".repeat(MAX_HEADER_BYTES - 1))];

        assert!(check(&request(&uri, &[])).is_none());
        assert!(check(&request("/", &fields)).is_none());
        assert!(check(&request("/", &big)).is_none());
    }

    #[test]
    fn one_byte_or_field_over_a_limit_is_rejected_with_its_status() {
        let uri = format!("/{}", "a".repeat(MAX_URI_BYTES));
        let fields: Vec<(&str, String)> = (0..=MAX_HEADER_FIELDS)
            .map(|_| ("x-a", "b".into()))
            .collect();
        let big = vec![("x", "v".repeat(MAX_HEADER_BYTES))];

        let status = |r: Option<Response>| r.map(|r| r.status());
        assert_eq!(
            status(check(&request(&uri, &[]))),
            Some(StatusCode::URI_TOO_LONG)
        );
        let too_large = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(status(check(&request("/", &fields))), too_large);
        assert_eq!(status(check(&request("/", &big))), too_large);
    }
}
