//! The children of `cargo xtask dev` and the signals around them: starting a program in
//! a process group of its own (so the terminal's Ctrl-C reaches only the task, which
//! decides what each child hears), waiting until Redis answers a raw `PING`, relaying
//! signals to the service, and stopping a child without leaving it behind.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep, timeout};
use xshell::Shell;

use crate::command::Invocation;

/// How long a fresh redis-server gets to answer its first PING.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// SIGINT, SIGTERM and SIGHUP, caught so that this task outlives them and cleans up.
#[derive(Debug)]
pub(crate) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// Starts a child in a process group of its own, with no stdin.
pub(crate) fn spawn(sh: &Shell, invocation: &Invocation) -> anyhow::Result<Child> {
    let mut command = Command::from(std::process::Command::from(invocation.to_cmd(sh)));
    command
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("cannot start {}", invocation.program))
}

/// Polls with a raw `PING` until Redis answers `+PONG`, it exits, or time runs out.
pub(crate) async fn wait_until_ready(port: u16, redis: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + REDIS_START_TIMEOUT;
    loop {
        if answers_ping(port).await {
            return Ok(());
        }
        if let Some(status) = redis.try_wait()? {
            bail!(
                "redis-server exited ({status}) before answering PING on 127.0.0.1:{port}; its output above says why"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "redis-server did not answer PING on 127.0.0.1:{port} within {REDIS_START_TIMEOUT:?}"
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// True when something on 127.0.0.1:`port` answers an inline `PING` with `+PONG`.
pub(crate) async fn answers_ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0; 7];
        stream.read_exact(&mut reply).await?;
        io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(
        timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}

/// Waits for the service to exit, passing signals on to its process group: the first as
/// SIGINT (graceful shutdown), any later one as SIGKILL.
pub(crate) async fn supervise(
    service: &mut Child,
    redis: &mut Child,
    signals: &mut Signals,
) -> anyhow::Result<ExitStatus> {
    let group = service
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let mut signals_seen = 0;
    let mut redis_running = true;
    loop {
        tokio::select! {
            status = service.wait() => return status.context("cannot wait for cart-service"),
            () = signals.recv() => {
                signals_seen += 1;
                let signal = if signals_seen == 1 {
                    println!("stopping cart-service (Ctrl-C again kills it)");
                    Signal::SIGINT
                } else {
                    Signal::SIGKILL
                };
                // ESRCH: the group is already gone, and `service.wait()` will say how.
                if let Some(group) = group
                    && let Err(error) = killpg(group, signal)
                    && error != Errno::ESRCH
                {
                    bail!("cannot send {signal} to cart-service: {error}");
                }
            }
            status = redis.wait(), if redis_running => {
                redis_running = false;
                let status = status.context("cannot wait for redis-server")?;
                println!("redis-server exited ({status}); cart-service keeps running without it until Ctrl-C");
            }
        }
    }
}

/// Kills a child unless it has already exited, and reaps it.
pub(crate) async fn stop(child: &mut Child) -> io::Result<()> {
    if child.try_wait()?.is_none() {
        child.kill().await?;
    }
    Ok(())
}

/// A free loopback port, as the kernel hands out for port 0.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_does_not_answer_ping() {
        let port = free_port().unwrap();

        assert!(!answers_ping(port).await);
    }

    #[tokio::test]
    async fn stop_kills_and_reaps_a_running_child() {
        let sh = Shell::new().unwrap();
        let mut child = spawn(&sh, &Invocation::new("sleep").args(["30"])).unwrap();

        stop(&mut child).await.unwrap();

        assert!(child.try_wait().unwrap().is_some(), "sleep still running");
    }
}
