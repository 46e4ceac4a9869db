//! `redis-cli --cluster reshard` in the background, so a test can drive load while slots
//! move and then wait for the move to finish.

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

use super::topology::Probe;
use super::{SETTLE_TIMEOUT, blocking};

/// A reshard under way, started by [`RedisCluster::start_reshard`](super::RedisCluster::start_reshard);
/// killed if dropped before [`Reshard::wait`].
#[derive(Debug)]
pub struct Reshard {
    child: tokio::process::Child,
    /// redis-cli's output, in a file rather than a pipe: a pipe nobody reads until the
    /// end would stall it once full.
    output: NamedTempFile,
    probe: Probe,
    started: Instant,
}

impl Reshard {
    /// Starts `redis-cli --cluster reshard` through the node on `port`, moving `slots`
    /// slots between the masters with the ids `[from, to]`.
    pub(super) fn start(port: u16, [from, to]: [String; 2], slots: u16, probe: Probe) -> Self {
        let output = NamedTempFile::new().expect("create a file for redis-cli's output");
        let file = |output: &NamedTempFile| -> File {
            output.reopen().expect("open redis-cli's output file")
        };
        let child = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{port}")])
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(file(&output))
            .stderr(file(&output))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start redis-cli --cluster reshard: {e}"));
        Self {
            child,
            output,
            probe,
            started: Instant::now(),
        }
    }

    /// Waits until redis-cli has moved every slot and the cluster agrees on the new slot
    /// map; how long the reshard took from its start. Panics with redis-cli's output if
    /// it failed.
    pub async fn wait(mut self) -> Duration {
        let status = self
            .child
            .wait()
            .await
            .expect("wait for redis-cli --cluster reshard");
        assert!(
            status.success(),
            "redis-cli --cluster reshard failed ({status}):\n{}",
            std::fs::read_to_string(self.output.path()).unwrap_or_default()
        );
        let probe = self.probe;
        let (_, ready) = blocking(move || {
            probe.wait_ready(
                SETTLE_TIMEOUT,
                "the cluster agrees on the slots after the reshard",
            )
        })
        .await;
        ready - self.started
    }
}
