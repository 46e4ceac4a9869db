//! The processes a bench run owns (redis-servers, cart-service, Jaeger) and the few bytes
//! it speaks to them without a client library: a RESP pipeline to pre-fill Redis, one
//! command whose reply is read whole (`INFO`, `CLUSTER INFO`, `DBSIZE`), and a one-shot
//! HTTP/1.1 GET to poll `/readyz`, read carts and ask Jaeger what it received.

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
/// requests, a `REDIS_MODE=cluster` would stop it).
const SERVICE_VARS: [&str; 20] = [
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
    "REDIS_MODE",
    "REDIS_WAIT_REPLICAS",
    "REDIS_WAIT_TIMEOUT_MS",
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
    Ok(free_ports(1)?[0])
}

/// `count` free loopback ports, all different: each is held until all are found.
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()
        .context("cannot find a free loopback port")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
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
    for (reply, command) in redis_replies(port, commands)?.iter().zip(commands) {
        if !reply.starts_with(['+', ':']) {
            bail!("redis answered {reply:?} to {}", command[0]);
        }
    }
    Ok(())
}

/// Sends `commands` to Redis on `port` as one pipeline and returns their replies, errors
/// (`-MOVED ...`) included, each without its line end: every command sent this way
/// answers with a one-line reply.
pub fn redis_replies(port: u16, commands: &[Vec<String>]) -> anyhow::Result<Vec<String>> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("cannot connect to redis on 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request: Vec<u8> = commands.iter().flat_map(|c| resp(c)).collect();
    let mut reader = BufReader::new(stream.try_clone()?);
    // Write from a thread: a large pipeline would otherwise fill both socket buffers.
    let writer = thread::spawn(move || stream.write_all(&request));
    let mut replies = Vec::with_capacity(commands.len());
    for _ in commands {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        replies.push(line.trim_end().to_owned());
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("pipeline writer panicked"))??;
    Ok(replies)
}

/// One command to Redis on `port` and its reply as text: a bulk string's contents (what
/// `INFO` and `CLUSTER INFO` answer) or a one-line reply's (`DBSIZE`'s number); an error
/// reply is an error.
pub fn redis_text(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let command: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("cannot connect to redis on 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&resp(&command))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("$", length)) => {
            let length: usize = length
                .parse()
                .with_context(|| format!("redis answered {line:?} to {}", args.join(" ")))?;
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body)?;
            body.truncate(length);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        Some(("+" | ":", value)) => Ok(value.to_owned()),
        _ => bail!(
            "redis on 127.0.0.1:{port} answered {line:?} to {}",
            args.join(" ")
        ),
    }
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
        assert!(redis_text(port, &["PING"]).is_err());
    }

    #[test]
    fn free_ports_are_all_different() {
        let mut ports = free_ports(12).unwrap();

        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 12);
    }
}
