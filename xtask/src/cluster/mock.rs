//! A kube `Client` over a canned API server, for tests: each request is answered from a
//! table of path prefixes to JSON bodies, and its URI is recorded so tests can assert what
//! was asked. This is tower-test's mock in a dozen lines of `tower::service_fn`, without
//! the extra crate.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::client::Body;
use serde::Serialize;
use serde_json::json;

use super::Release;

/// Every URI the client asked for, in order.
pub type Requests = Arc<Mutex<Vec<String>>>;

/// A client answering GETs whose path starts with a prefix from `routes`; watches get an
/// empty stream (tests finish on the list's state) and anything else 404.
pub fn client(routes: Vec<(&'static str, serde_json::Value)>) -> (Client, Requests) {
    let requests: Requests = Arc::default();
    let seen = Arc::clone(&requests);
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let uri = request.uri().to_string();
        seen.lock().map(|mut log| log.push(uri.clone())).ok();
        let path = request.uri().path().to_owned();
        let answer = routes
            .iter()
            .find(|(prefix, _)| path == *prefix)
            .map(|(_, body)| body.clone());
        async move {
            let watch = uri.contains("watch=true");
            let response = match answer {
                Some(_) if watch => http::Response::new(Body::from(Vec::new())),
                Some(body) => http::Response::new(Body::from(body.to_string().into_bytes())),
                None => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("{path} not found"), "reason": "NotFound", "code": 404});
                    let mut response =
                        http::Response::new(Body::from(status.to_string().into_bytes()));
                    *response.status_mut() = http::StatusCode::NOT_FOUND;
                    response
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    (Client::new(service, "cart"), requests)
}

/// A list body holding `items`.
pub fn list<K: Serialize>(items: &[K]) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Release `cart` in namespace `cart`, current context.
pub fn release() -> Release {
    Release {
        name: "cart".to_owned(),
        namespace: "cart".to_owned(),
        context: None,
    }
}
