//! The `redis-server` process behind a [`RedisServer`](super::RedisServer): started through
//! a tiny shell wrapper that kills it when this test process's end of a pipe closes, so no
//! server outlives the test run, however it ends; and the wait until it answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How long a fresh `redis-server` may take to answer PING.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`, started through a tiny shell wrapper that kills it when this
/// process's end of a pipe closes, so no server outlives the test run, however it ends.
#[derive(Debug)]
pub(super) struct RedisProcess {
    pub(super) pid: Pid,
    pub(super) port: u16,
    tls: bool,
    wrapper: Child,
    lifeline: Option<ChildStdin>,
}

impl RedisProcess {
    /// Starts the server on `port` (its TLS port when `tls`, with no plain port) and waits
    /// until it answers; the port back if the server exits first (it could not bind it).
    pub(super) fn spawn(port: u16, dir: &Path, extra: &[String], tls: bool) -> Result<Self, u16> {
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

    pub(super) fn kill(mut self) {
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
