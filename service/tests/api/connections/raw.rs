//! HTTP/1.1 over a raw tokio socket: what these tests need to see a connection the way a
//! client does (when it closes, what exactly comes back), which a pooled client hides.

use std::time::{Duration, Instant};

use cart_test_support::app::TestApp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One HTTP/1.1 response as it came over the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and header fields, as sent.
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A new connection to the service.
pub async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect to the service")
}

/// An HTTP/2 connection with prior knowledge (h2c), its driver spawned: the sender, and
/// the driver's task, which ends when the server closes the connection.
pub async fn h2c(
    app: &TestApp,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(connect(app).await),
    )
    .await
    .expect("h2c handshake (prior knowledge)");
    (sender, tokio::spawn(connection))
}

/// Sends `GET path` on `stream` and reads the answer; `None` when the connection closes first.
pub async fn get(stream: &mut TcpStream, path: &str) -> Option<RawResponse> {
    exchange(
        stream,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

/// Sends `request` on `stream` and reads one response; `None` when the connection closes
/// (or resets) first.
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<RawResponse> {
    stream.write_all(request).await.ok()?;
    let mut received = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&chunk[..read]);
        if let Some(response) = parse(&received) {
            return Some(response);
        }
    }
}

/// Waits up to `limit` for the server to close `stream` (EOF or reset); when it did.
pub async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Instant> {
    let mut buffer = [0_u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A complete response (head and `Content-Length` body) at the start of `received`.
fn parse(received: &[u8]) -> Option<RawResponse> {
    let text = String::from_utf8_lossy(received);
    let head_end = text.find("\r\n\r\n")?;
    let head = text[..head_end].to_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case("content-length").then(|| {
                value
                    .trim()
                    .parse::<usize>()
                    .expect("numeric Content-Length")
            })
        })
        .unwrap_or(0);
    let body = text.get(head_end + 4..head_end + 4 + length)?.to_owned();
    let status = head.split(' ').nth(1)?.parse().expect("numeric status");
    Some(RawResponse { status, head, body })
}
