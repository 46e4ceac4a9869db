//! A real `redis-server` on a free port in a temp dir, with no persistence; killed however
//! the test run ends.
//!
//! Most tests share one Redis per test binary ([`shared_redis_url`]) and isolate their
//! data with [`unique_user`] ids; tests that kill, pause or configure Redis start their own
//! with [`RedisServer::start`], or [`RedisServer::start_tls`] for one that speaks only TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::port::free_port;

/// How long a fresh `redis-server` may take to answer PING.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` owned by one test; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: Option<RedisProcess>,
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
    tls: bool,
}

/// How a server started with [`RedisServer::start_tls`] serves TLS.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// The server's certificate (`--tls-cert-file`) and key (`--tls-key-file`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA client certificates must come from (`--tls-ca-cert-file`).
    pub ca: PathBuf,
    /// Whether every client must present a certificate from `ca` (`--tls-auth-clients`).
    pub auth_clients: bool,
}

impl RedisServer {
    /// Starts a server on a free port, with no persistence, and waits until it answers.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g. `--requirepass`.
    #[must_use]
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        Self::start_as(extra, false)
    }

    /// Starts a server that takes TLS connections only (`--tls-port` on a free port,
    /// `--port 0`), as `tls` says, and waits until it listens.
    #[must_use]
    pub fn start_tls(tls: &RedisTls) -> Self {
        let mut extra = vec![];
        for (flag, path) in [
            ("--tls-cert-file", &tls.cert),
            ("--tls-key-file", &tls.key),
            ("--tls-ca-cert-file", &tls.ca),
        ] {
            extra.extend([flag.to_owned(), path.display().to_string()]);
        }
        let auth_clients = if tls.auth_clients { "yes" } else { "no" };
        extra.extend(["--tls-auth-clients".to_owned(), auth_clients.to_owned()]);
        Self::start_as(extra, true)
    }

    fn start_as(extra: Vec<String>, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        let process = RedisProcess::spawn_on_a_free_port(dir.path(), &extra, tls);
        Self {
            port: process.port,
            process: Some(process),
            dir,
            extra,
            tls,
        }
    }

    /// A URL for a port where nothing listens (yet): for tests where Redis is down.
    #[must_use]
    pub fn unused_url() -> String {
        format!("redis://127.0.0.1:{}", free_port())
    }

    /// Where this server listens, as a `REDIS_URL` (`rediss://` for a TLS server).
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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
        let process = RedisProcess::spawn(self.port, self.dir.path(), &self.extra, self.tls)
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
        (
            RedisProcess::spawn_on_a_free_port(dir.path(), &[], false),
            dir,
        )
    });
    format!("redis://127.0.0.1:{}", process.port)
}

/// A direct Redis connection for arranging and inspecting data.
pub async fn redis_client(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("valid redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}

/// A user id no other test uses, so tests sharing one Redis never see each other's carts.
pub fn unique_user() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "user-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `redis-server`, started through a tiny shell wrapper that kills it when this
/// process's end of a pipe closes, so no server outlives the test run, however it ends.
#[derive(Debug)]
struct RedisProcess {
    pid: Pid,
    port: u16,
    tls: bool,
    wrapper: Child,
    lifeline: Option<ChildStdin>,
}

impl RedisProcess {
    /// Starts the server on a free port. A free port can be taken by another test's
    /// process between being found and being bound: the server then exits at once, and
    /// it is started again on another port.
    fn spawn_on_a_free_port(dir: &Path, extra: &[String], tls: bool) -> Self {
        for _ in 0..5 {
            if let Ok(process) = Self::spawn(free_port(), dir, extra, tls) {
                return process;
            }
        }
        panic!("redis-server exited at startup five times, each on another free port");
    }

    /// Starts the server on `port` (its TLS port when `tls`, with no plain port) and waits
    /// until it answers; the port back if the server exits first (it could not bind it).
    fn spawn(port: u16, dir: &Path, extra: &[String], tls: bool) -> Result<Self, u16> {
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
        let port_arg = port.to_string();
        let ports: &[&str] = if tls {
            &["--port", "0", "--tls-port", &port_arg]
        } else {
            &["--port", &port_arg]
        };
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" >/dev/null 2>&1 & echo "$!"; read _; kill -9 "$!" 2>/dev/null"#)
            .arg("sh")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh to run redis-server");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read redis-server pid");
        let pid = Pid::from_raw(line.trim().parse().expect("redis-server pid"));
        let process = Self {
            pid,
            port,
            tls,
            lifeline: wrapper.stdin.take(),
            wrapper,
        };
        if wait_for_redis(port, pid, tls) {
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
        while answers(SocketAddr::from(([127, 0, 0, 1], self.port)), self.tls)
            && started.elapsed() < REDIS_START_TIMEOUT
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits until the server answers: false if it exited first.
fn wait_for_redis(port: u16, pid: Pid, tls: bool) -> bool {
    let started = Instant::now();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if answers(address, tls) {
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

/// Whether the server answers: PING on a plain port; on a TLS port, which would need a
/// handshake first, accepting a connection (with no data to load, redis-server serves
/// as soon as it listens).
fn answers(address: SocketAddr, tls: bool) -> bool {
    if tls {
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    } else {
        ping(address)
    }
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
