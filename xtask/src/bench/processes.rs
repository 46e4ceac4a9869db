//! The processes a bench run owns (redis-server, cart-service, Jaeger) and the few bytes
//! it speaks to them without a client library: a RESP pipeline to pre-fill Redis, and a
//! one-shot HTTP/1.1 GET to poll `/readyz` and ask Jaeger what it received.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use xshell::Shell;

use crate::command::Invocation;

/// Variables the service must not inherit from the caller's shell: each run sets its own
/// (an `AUTH_MODE=jwt` left in the shell would stop the baseline service or refuse its
/// requests).
const SERVICE_VARS: [&str; 17] = [
    "TOKIO_WORKER_THREADS",
    "LOG_FILE",
    "RUST_LOG",
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "AUTH_MODE",
    "AUTH_JWKS_URL",
    "AUTH_PUBLIC_KEY_FILE",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_USER_CLAIM",
];

/// A child process that is killed when dropped, so a failed run leaves nothing behind.
#[derive(Debug)]
pub struct Owned {
    pub name: &'static str,
    child: Child,
}

impl Owned {
    /// Starts `invocation` from the shell's directory, without the caller's service
    /// variables, with stdout to `stdout`.
    pub fn spawn(
        sh: &Shell,
        name: &'static str,
        invocation: &Invocation,
        stdout: Stdio,
    ) -> anyhow::Result<Self> {
        // A relative path like `target/release/cart-service` means the workspace's.
        let program = sh.current_dir().join(&invocation.program);
        let program = if invocation.program.contains('/') {
            program.as_os_str()
        } else {
            invocation.program.as_ref()
        };
        let mut command = Command::new(program);
        command.args(&invocation.args).current_dir(sh.current_dir());
        for var in SERVICE_VARS {
            command.env_remove(var);
        }
        command
            .envs(invocation.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", invocation.program))?;
        Ok(Self { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); its output above says why", self.name);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s; reaps it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        if self.child.try_wait()?.is_none() {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port, as the kernel hands out for port 0.
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `GET path` on 127.0.0.1:`port` until it answers 200; returns the time since
/// `since`. Fails when `process` exits or `limit` passes.
pub fn wait_for_200(
    process: &mut Owned,
    port: u16,
    path: &str,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        if matches!(http_get(port, path), Ok((200, _))) {
            return Ok(since.elapsed());
        }
        process.ensure_running()?;
        if since.elapsed() > limit {
            bail!(
                "{} did not answer 200 on {path} within {limit:?}",
                process.name
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// One `GET` over a fresh connection: the status code and the body.
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    parse_response(&response)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.1 response"))
}

/// The status and body of a complete HTTP/1.1 response (bodies here are never chunked
/// in a way that matters: callers only search them).
fn parse_response(response: &str) -> Option<(u16, String)> {
    let status = response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Some((status, body.to_owned()))
}

/// The RESP encoding of one command.
pub fn resp(args: &[String]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    bytes
}

/// Sends `commands` to Redis as one pipeline and checks that no reply is an error.
/// Every command used here answers with a one-line reply (`+OK`, `:n`).
pub fn redis_pipeline(port: u16, commands: &[Vec<String>]) -> anyhow::Result<()> {
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("cannot connect to redis")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request: Vec<u8> = commands.iter().flat_map(|c| resp(c)).collect();
    let mut reader = BufReader::new(stream.try_clone()?);
    // Write from a thread: a large pipeline would otherwise fill both socket buffers.
    let writer = thread::spawn(move || stream.write_all(&request));
    let mut line = String::new();
    for command in commands {
        line.clear();
        reader.read_line(&mut line)?;
        if !line.starts_with(['+', ':']) {
            bail!("redis answered {:?} to {}", line.trim_end(), command[0]);
        }
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("pipeline writer panicked"))??;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn resp_encodes_bulk_strings_with_their_byte_length() {
        let bytes = resp(&[
            "HSET".into(),
            "cart:{g-1}".into(),
            "p-00".into(),
            "1".into(),
        ]);

        assert_eq!(
            bytes,
            b"*4\r\n$4\r\nHSET\r\n$10\r\ncart:{g-1}\r\n$4\r\np-00\r\n$1\r\n1\r\n"
        );
    }

    #[test]
    fn responses_give_status_and_body() {
        let response = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}";

        assert_eq!(parse_response(response), Some((503, "{}".to_owned())));
        assert_eq!(parse_response("SSH-2.0-x"), None);
    }

    #[test]
    fn a_closed_port_is_an_error_not_a_hang() {
        let port = free_port().unwrap();

        assert!(http_get(port, "/readyz").is_err());
    }
}
