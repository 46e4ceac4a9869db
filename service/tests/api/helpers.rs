//! Test support: a real `redis-server` on a free port in a temp dir, and the service
//! started in-process against it.
//!
//! Most tests share one Redis per test binary and isolate themselves with unique user ids;
//! tests that kill or pause Redis start their own with [`RedisServer::start`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cart_service::config::Config;
use cart_service::routes;
use cart_service::startup::Application;
use cart_service::state::AppState;
use cart_service::store::{Limits, RedisConnection, Store};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// How long a fresh `redis-server` may take to answer PING.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` owned by one test; killed on drop.
pub struct RedisServer {
    process: Option<RedisProcess>,
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port, with no persistence, and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g. `--requirepass`.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let process = RedisProcess::spawn_on_a_free_port(dir.path(), &extra);
        Self {
            port: process.port,
            process: Some(process),
            dir,
            extra,
        }
    }

    /// A URL for a port where nothing listens (yet): for tests where Redis is down.
    pub fn unused_url() -> String {
        format!("redis://127.0.0.1:{}", free_port())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server, as a crash would.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let process = RedisProcess::spawn(self.port, self.dir.path(), &self.extra)
            .unwrap_or_else(|port| panic!("redis-server could not bind port {port} again"));
        self.process = Some(process);
    }

    /// SIGSTOPs the server: its sockets stay open but nothing answers, like a partition.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONTs a paused server.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let process = self.process.as_ref().expect("redis-server is running");
        nix::sys::signal::kill(process.pid, signal).expect("signal redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The URL of the Redis this test binary shares.
pub fn shared_redis_url() -> String {
    static SHARED: OnceLock<(RedisProcess, TempDir)> = OnceLock::new();
    let (process, _) = SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        (RedisProcess::spawn_on_a_free_port(dir.path(), &[]), dir)
    });
    format!("redis://127.0.0.1:{}", process.port)
}

/// A running `redis-server`, started through a tiny shell wrapper that kills it when this
/// process's end of a pipe closes, so no server outlives the test run, however it ends.
struct RedisProcess {
    pid: Pid,
    port: u16,
    wrapper: Child,
    lifeline: Option<ChildStdin>,
}

impl RedisProcess {
    /// Starts the server on a free port. A free port can be taken by another test's
    /// process between being found and being bound: the server then exits at once, and
    /// it is started again on another port.
    fn spawn_on_a_free_port(dir: &std::path::Path, extra: &[String]) -> Self {
        for _ in 0..5 {
            if let Ok(process) = Self::spawn(free_port(), dir, extra) {
                return process;
            }
        }
        panic!("redis-server exited at startup five times, each on another free port");
    }

    /// Starts the server on `port` and waits until it answers; the port back if the
    /// server exits first (it could not bind it).
    fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Result<Self, u16> {
        if let Err(error) = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
        {
            panic!(
                "redis-server could not be started ({error}): the integration tests need a real \
                 redis-server on PATH; install it with `apt-get install redis-server` (bash .ci/run does this)"
            );
        }
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" >/dev/null 2>&1 & echo "$!"; read _; kill -9 "$!" 2>/dev/null"#)
            .arg("sh")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh to run redis-server");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(wrapper.stdout.take().expect("piped")),
            &mut line,
        )
        .expect("read redis-server pid");
        let pid = Pid::from_raw(line.trim().parse().expect("redis-server pid"));
        let process = Self {
            pid,
            port,
            lifeline: wrapper.stdin.take(),
            wrapper,
        };
        if wait_for_redis(port, pid) {
            Ok(process)
        } else {
            process.kill();
            Err(port)
        }
    }

    fn kill(mut self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        drop(self.lifeline.take());
        let _ = self.wrapper.wait();
        // The port is free once the server is gone; wait so a restart can bind it.
        let started = Instant::now();
        while ping(SocketAddr::from(([127, 0, 0, 1], self.port)))
            && started.elapsed() < REDIS_START_TIMEOUT
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A direct Redis connection for arranging and inspecting data.
pub async fn redis_client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}

/// A user id no other test uses.
pub fn unique_user() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "user-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The service, running in-process on a free port.
pub struct TestApp {
    pub address: String,
    pub redis_url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST reaches the service")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET reaches the service")
    }

    pub async fn add(&self, user: &str, product: &str, quantity: i64) -> reqwest::Response {
        self.post_json(
            &format!("/v1/cart/{user}"),
            &serde_json::json!({"product_id": product, "quantity": quantity}),
        )
        .await
    }

    pub async fn cart(&self, user: &str) -> serde_json::Value {
        let response = self.get(&format!("/v1/cart/{user}")).await;
        assert_eq!(response.status(), 200, "GET cart");
        response.json().await.expect("cart body is JSON")
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(5),
            "the service becomes ready",
            || async { self.get("/readyz").await.status() == 200 },
        )
        .await;
    }

    /// Runs the shutdown sequence and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }
}

/// Starts the service against the shared Redis with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&shared_redis_url(), |_| {}).await
}

/// Starts the service against `redis_url`, letting the test adjust the configuration, and
/// waits until it is ready.
pub async fn spawn_app_with(redis_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_unready(redis_url, adjust, |routes| routes).await;
    app.wait_ready().await;
    app
}

/// Starts the service without waiting for Redis, letting the test adjust the
/// configuration and add routes of its own under the real layers.
pub async fn spawn_app_unready(
    redis_url: &str,
    adjust: impl FnOnce(&mut Config),
    extra: impl FnOnce(axum::Router<AppState>) -> axum::Router<AppState>,
) -> TestApp {
    let mut config = Config::for_local(redis_url);
    adjust(&mut config);
    config.validate().expect("test configuration is valid");
    let redis = RedisConnection::start(&config).expect("valid redis url");
    let store = Store::new(redis, Limits::from_config(&config));
    let listener = tokio::net::TcpListener::bind(config.http.listen_addr)
        .await
        .expect("bind a free port");
    let state = AppState::new(store, config);
    let (routes, spec) = routes::api(&state).split_for_parts();
    let service = routes::with_layers(extra(routes), &spec, &state);
    let application = Application::with_router(listener, service, state.clone());
    let address = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .close();
    });
    TestApp {
        address,
        redis_url: redis_url.to_owned(),
        client: reqwest::Client::new(),
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Polls `condition` every 20 ms until it holds; returns how long that took, or panics
/// with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not true within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a response is an RFC 9457 problem with `status`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "content type"
    );
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "problem status member: {body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "type and title: {body}"
    );
    body
}

/// A port that was free a moment ago, and that this test process has not handed out
/// before: the kernel can give a port just released by one `free_port` to the next, and
/// two parallel tests' processes then race to bind it.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("find a free port");
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Waits until the server answers PING: false if it exited first.
fn wait_for_redis(port: u16, pid: Pid) -> bool {
    let started = Instant::now();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if ping(address) {
            return true;
        }
        if !alive(pid) {
            return false;
        }
        assert!(
            started.elapsed() < REDIS_START_TIMEOUT,
            "redis-server on port {port} did not answer PING"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` runs: it exists and is not a zombie (the wrapper shell reaps the server
/// only when it is told to stop).
fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn ping(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // A server that requires a password answers -NOAUTH: it is up all the same.
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
}
