//! A real `redis-server` on a free port in a temp dir, with no persistence; killed however
//! the test run ends.
//!
//! Most tests share one Redis per test binary ([`shared_redis_url`]) and isolate their
//! data with [`unique_user`] ids; tests that kill, pause or configure Redis start their own
//! with [`RedisServer::start`], or [`RedisServer::start_tls`] for one that speaks only TLS.
//! `CART_TEST_REDIS=cluster` makes the shared Redis a shared
//! [`RedisCluster`](crate::cluster::RedisCluster) instead, so the same tests run against a
//! cluster; [`redis_client`] connects to either.

mod client;
mod process;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::Signal;
use tempfile::TempDir;

pub(crate) use self::client::cluster_connection;
pub use self::client::{DirectConnection, is_cluster_url, redis_client};
use self::process::RedisProcess;
use crate::port::free_port;

/// The variable that chooses what [`shared_redis_url`] points at: unset or `standalone`
/// for one `redis-server`, `cluster` for a [`RedisCluster`](crate::cluster::RedisCluster).
pub const SHARED_REDIS_VAR: &str = "CART_TEST_REDIS";

/// What the test binary's shared Redis is, as [`SHARED_REDIS_VAR`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRedis {
    Standalone,
    Cluster,
}

impl SharedRedis {
    /// Reads [`SHARED_REDIS_VAR`]; panics naming it when it holds anything else than
    /// `standalone` or `cluster`.
    #[must_use]
    pub fn from_env() -> Self {
        Self::parse(std::env::var_os(SHARED_REDIS_VAR).as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse(value: Option<&OsStr>) -> Result<Self, String> {
        match value.map(OsStr::to_str) {
            None | Some(Some("standalone")) => Ok(Self::Standalone),
            Some(Some("cluster")) => Ok(Self::Cluster),
            Some(other) => Err(format!(
                "{SHARED_REDIS_VAR}={:?} is not a redis the tests know: use `standalone` (the \
                 default when unset) or `cluster`",
                other.unwrap_or("<not UTF-8>")
            )),
        }
    }
}

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
        Self::start_as(|| extra.clone(), false)
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
        Self::start_as(|| extra.clone(), true)
    }

    /// Starts a server on a free port with the arguments `extra` makes, asked again for
    /// each attempt so arguments that name ports of their own (a cluster node's bus port)
    /// can change with it. A free port can be taken by another test's process between
    /// being found and being bound: the server then exits at once, and it is started again
    /// on another port. A restart reuses the port, the directory and the arguments.
    pub(crate) fn start_as(mut extra: impl FnMut() -> Vec<String>, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        for _ in 0..5 {
            let extra = extra();
            if let Ok(process) = RedisProcess::spawn(free_port(), dir.path(), &extra, tls) {
                return Self {
                    port: process.port,
                    process: Some(process),
                    dir,
                    extra,
                    tls,
                };
            }
        }
        panic!("redis-server exited at startup five times, each on another free port");
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

    /// The port it listens on, on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs: started and not killed since.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.process.is_some()
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

/// The URL of the Redis this test binary shares: a standalone server's, or under
/// `CART_TEST_REDIS=cluster` the shared cluster's seed list ([`SharedRedis::from_env`]).
pub fn shared_redis_url() -> String {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    match SharedRedis::from_env() {
        SharedRedis::Standalone => SHARED.get_or_init(RedisServer::start).url(),
        SharedRedis::Cluster => crate::cluster::shared_cluster().url(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_redis_is_standalone_unless_the_variable_says_cluster() {
        let values = [None, Some("standalone"), Some("cluster")];

        let parsed: Vec<SharedRedis> = values
            .iter()
            .map(|v| SharedRedis::parse(v.map(OsStr::new)).unwrap())
            .collect();

        assert_eq!(
            parsed,
            [
                SharedRedis::Standalone,
                SharedRedis::Standalone,
                SharedRedis::Cluster
            ]
        );
    }

    #[test]
    fn any_other_value_is_an_error_naming_the_variable() {
        let error = SharedRedis::parse(Some(OsStr::new("sentinel"))).unwrap_err();

        assert!(
            error.starts_with("CART_TEST_REDIS=\"sentinel\" is not"),
            "{error}"
        );
    }
}
