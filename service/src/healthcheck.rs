//! `cart-service healthcheck`: the container health check for distroless images, which
//! have no curl or shell. It sends `GET /livez` over plain HTTP/1.1 and succeeds on 200.

use std::time::Duration;

use axum::http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The default URL: `/livez` on loopback at the port the service listens on.
#[must_use]
pub fn default_url(listen: std::net::SocketAddr) -> String {
    format!("http://127.0.0.1:{}/livez", listen.port())
}

/// Probes `url`; `Ok` only for a 200 answer within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, get(url))
        .await
        .map_err(|_| format!("no answer from {url} within {} ms", timeout.as_millis()))?
}

async fn get(url: &str) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid url {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("invalid url {url}: only http:// is supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("invalid url {url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake with {url} failed: {e}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header("host", uri.authority().map_or(host, |a| a.as_str()))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid url {url}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request to {url} failed: {e}"))?;
    if response.status() == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("{url} answered {}", response.status()))
    }
}
