//! One HTTP/1.1 exchange over any byte stream, with hyper's client connection: the e2e
//! checks talk to pods through kube-rs port-forward streams, so there is no socket address
//! for an HTTP client library to dial, and no local listener is needed for one request.

use anyhow::Context;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// What came back: status, headers and the body as text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// The body as JSON, or an error quoting it.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the answer is not JSON: {}", self.body))
    }

    /// A header's value as text, empty when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// Sends one request over `stream` (a JSON body when given) and reads the whole answer.
pub async fn exchange<S>(
    stream: S,
    method: Method,
    path: &str,
    json: Option<&str>,
) -> anyhow::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    let driver = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "localhost");
    if json.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(json.unwrap_or_default().to_owned())))?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("{method} {path} failed"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("cannot read the answer to {method} {path}"))?
        .to_bytes();
    driver.abort();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The trace id of a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.split('-');
    let (_, trace, _, _) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn trace_id_is_the_second_field_of_a_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        assert_eq!(trace_id(header), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-short-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(""), None);
    }

    #[tokio::test]
    async fn exchange_sends_the_json_body_and_reads_status_headers_and_body() {
        let (client, mut server) = tokio::io::duplex(4096);
        let server_task = tokio::spawn(async move {
            let mut seen = vec![0_u8; 1024];
            let read = server.read(&mut seen).await.unwrap();
            server
                .write_all(b"HTTP/1.1 201 Created\r\ntraceparent: 00-ab-cd-01\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen[..read]).into_owned()
        });

        let response = exchange(client, Method::POST, "/v1/cart/u", Some("{\"a\":1}"))
            .await
            .unwrap();

        let request = server_task.await.unwrap();
        assert!(
            request.starts_with("POST /v1/cart/u HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("content-type: application/json"),
            "{request}"
        );
        assert!(request.ends_with("{\"a\":1}"), "{request}");
        assert_eq!(response.status, 201);
        assert_eq!(response.header("traceparent"), "00-ab-cd-01");
        assert_eq!(response.json().unwrap()["ok"], true);
    }
}
