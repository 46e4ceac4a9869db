//! The real `cart-service` binary as a child process, for the tests that need a process:
//! signals, the command line, log files and trace export. Killed on drop.
//!
//! Only a test crate of the service package knows where Cargo put the binary, so each
//! start takes its path, which [`cart_service_bin!`](crate::cart_service_bin) gives.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::port::free_port;
use crate::redis::{is_cluster_url, shared_redis_url};

/// The path of the `cart-service` binary Cargo built for the calling test crate
/// (`CARGO_BIN_EXE_cart-service`, which Cargo sets only while compiling a test of the
/// service package, hence a macro expanded there).
#[macro_export]
macro_rules! cart_service_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_cart-service"))
    };
}

/// `cart-service` running as a child process; killed on drop.
#[derive(Debug)]
pub struct Service {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    log: tempfile::NamedTempFile,
    /// The read end of a stdout pipe nobody reads, kept open so writes block, not fail.
    _stalled_stdout: Option<std::io::PipeReader>,
}

impl Service {
    /// Starts `binary` ([`cart_service_bin!`](crate::cart_service_bin)) on a free port
    /// against the shared Redis (or the `REDIS_URL` of `overrides`; `REDIS_MODE=cluster`
    /// when that is a seed list), with `overrides` on top of a clean environment, and waits
    /// until `/readyz` is 200. A free port can be taken by another test's process between
    /// being found and being bound: the service then exits with "Address already in use",
    /// and it is started again on another port.
    pub async fn start(binary: &Path, overrides: &[(&str, &str)]) -> Self {
        Self::start_as(binary, overrides, false).await
    }

    /// Like [`Service::start`], with stdout a pipe nobody reads, as when a log collector
    /// stalls: once the pipe's buffer is full, every write to stdout blocks. Only stderr
    /// reaches [`Service::log`].
    pub async fn start_with_stalled_stdout(binary: &Path, overrides: &[(&str, &str)]) -> Self {
        Self::start_as(binary, overrides, true).await
    }

    /// The process id, for reading `/proc/<pid>`.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's URL for `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends SIGTERM; returns when. Not `#[must_use]`: most callers only need the signal.
    #[allow(clippy::must_use_candidate)]
    pub fn terminate(&self) -> Instant {
        let pid = i32::try_from(self.child.id()).expect("pid fits in i32");
        nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
        Instant::now()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }

    /// Waits for the process to exit; returns its status and when it was seen to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Instant) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return (status, Instant::now());
            }
            assert!(
                started.elapsed() < limit,
                "cart-service still running after {limit:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process wrote, for failure messages.
    #[must_use]
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        format!("\n--- cart-service output ---\n{text}")
    }

    async fn start_as(binary: &Path, overrides: &[(&str, &str)], stalled_stdout: bool) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut service = Self::spawn(binary, overrides, stalled_stdout);
            match service.ready_or_exited().await {
                Ok(()) => return service,
                Err(log) if attempts < 5 && log.contains("Address already in use") => {}
                Err(log) => panic!("cart-service exited during startup: {log}"),
            }
        }
    }

    fn spawn(binary: &Path, overrides: &[(&str, &str)], stalled_stdout: bool) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("create a log file");
        let (stdout, stalled_stdout): (Stdio, _) = if stalled_stdout {
            let (reader, writer) = std::io::pipe().expect("create a pipe");
            (writer.into(), Some(reader))
        } else {
            (log.reopen().expect("open the log file").into(), None)
        };
        let stderr = log.reopen().expect("open the log file");
        // The shared Redis unless the test names its own; a list of URLs is a cluster's
        // seed nodes (the shared Redis under CART_TEST_REDIS=cluster).
        let redis_url = overrides
            .iter()
            .find(|(name, _)| *name == "REDIS_URL")
            .map_or_else(shared_redis_url, |(_, url)| (*url).to_owned());
        let cluster = is_cluster_url(&redis_url).then_some(("REDIS_MODE", "cluster"));
        let child = Command::new(binary)
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", &redis_url)
            .envs(cluster)
            .env("LOG_FORMAT", "json")
            .envs(overrides.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        Self {
            child,
            port,
            log,
            _stalled_stdout: stalled_stdout,
        }
    }

    /// Waits until `/readyz` is 200; the process's output if it exits first.
    async fn ready_or_exited(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = client.get(self.url("/readyz")).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if !self.is_running() {
                return Err(self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "cart-service not ready within 10 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
