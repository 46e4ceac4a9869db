//! `cargo xtask dev`: cart-service on this machine, against a throwaway Redis.
//!
//! A fresh `redis-server` starts on a free loopback port, without persistence and in a
//! temporary directory, so it never touches a Redis you already run. Once it answers PING,
//! `cargo run` builds and starts the service pointed at it. Both children get process
//! groups of their own, so the terminal's Ctrl-C reaches only this task, which stops them
//! in order: the service first (SIGINT, its graceful shutdown; a second Ctrl-C kills it),
//! then Redis. The task exits with the service's status. With `--jaeger`, a local Jaeger
//! v2 runs beside them and the service exports every trace to it. A machine without
//! `redis-server` gets it first where the xtask can install it (`system.rs`).

pub(crate) mod processes;

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use anyhow::{Context, bail};
use tokio::process::Child;
use xshell::Shell;

use self::processes::{Signals, free_port, spawn, stop, supervise, wait_until_ready};
use crate::command::Invocation;
use crate::{flags, system, tools};

impl flags::Dev {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let rust_log = sh.var("RUST_LOG").ok();
        if self.dry_run {
            let plan = Plan::new(
                self.port,
                free_port()?,
                Path::new("<temp dir>"),
                rust_log.as_deref(),
            );
            let plan = if self.jaeger {
                plan.with_jaeger(&tools::PINNED_JAEGER.path())
            } else {
                plan
            };
            println!("{plan}");
            return Ok(());
        }

        system::provide_redis_server(sh)?;
        let port = self.port;
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{port} (pass another --port)"))?;
        let redis_dir = tempfile::Builder::new()
            .prefix("cart-service-dev-redis-")
            .tempdir()
            .context("cannot create a temporary directory for redis-server")?;
        let mut plan = Plan::new(
            self.port,
            free_port()?,
            redis_dir.path(),
            rust_log.as_deref(),
        );
        if self.jaeger {
            plan = plan.with_jaeger(&tools::PINNED_JAEGER.require()?);
        }
        let status = {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(plan.execute(sh))?
        };
        drop(redis_dir);
        if !status.success() {
            // Everything that needed dropping is gone: nothing is left for `exit` to skip.
            println!("cart-service exited ({status})");
            std::process::exit(exit_code(status));
        }
        Ok(())
    }
}

/// What `dev` runs: the programs, their arguments and environment, and the ports.
#[derive(Debug)]
struct Plan {
    port: u16,
    redis_port: u16,
    redis: Invocation,
    service: Invocation,
    /// A local Jaeger v2 (`--jaeger`) the service exports every trace to.
    jaeger: Option<Invocation>,
}

impl Plan {
    fn new(port: u16, redis_port: u16, redis_dir: &Path, rust_log: Option<&str>) -> Self {
        let redis = throwaway_redis(redis_port, redis_dir);
        let service = Invocation::new("cargo")
            .args(["run", "--package", "cart-service", "--"])
            .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", rust_log.unwrap_or("info"));
        Self {
            port,
            redis_port,
            redis,
            service,
            jaeger: None,
        }
    }

    /// Adds Jaeger (`scripts/jaeger.yaml`: OTLP on 4317, UI on 16686) and points the
    /// service's trace export at it, sampling every request.
    fn with_jaeger(mut self, binary: &Path) -> Self {
        let config = crate::workspace_root().join("scripts/jaeger.yaml");
        self.jaeger = Some(
            Invocation::new(&binary.display().to_string())
                .args(["--config", &config.display().to_string()]),
        );
        self.service = self
            .service
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
            .env("OTEL_TRACES_SAMPLER", "always_on");
        self
    }

    /// Runs the plan and returns the service's exit status; Redis is stopped on every path.
    async fn execute(&self, sh: &Shell) -> anyhow::Result<ExitStatus> {
        // Installed before any child starts: from here on a signal cannot end this task
        // and leave a redis-server behind in its own process group.
        let mut signals = Signals::install()?;
        let mut redis = spawn(sh, &self.redis)?;
        let mut jaeger = match &self.jaeger {
            Some(invocation) => Some(spawn(sh, invocation)?),
            None => None,
        };
        let outcome = self.serve(sh, &mut redis, &mut signals).await;
        stop(&mut redis).await.context("cannot stop redis-server")?;
        if let Some(jaeger) = &mut jaeger {
            stop(jaeger).await.context("cannot stop jaeger")?;
        }
        outcome
    }

    async fn serve(
        &self,
        sh: &Shell,
        redis: &mut Child,
        signals: &mut Signals,
    ) -> anyhow::Result<ExitStatus> {
        tokio::select! {
            ready = wait_until_ready(self.redis_port, redis) => ready?,
            () = signals.recv() => bail!("interrupted while redis-server was starting"),
        }
        println!("{}", curl_examples(self.port));
        if self.jaeger.is_some() {
            println!("Traces: http://127.0.0.1:16686 (Jaeger UI, service cart-service)");
        }
        let mut service = spawn(sh, &self.service)?;
        supervise(&mut service, redis, signals).await
    }
}

/// A `redis-server` on 127.0.0.1:`port` that keeps nothing: no snapshots, no AOF, its
/// files in `dir`.
pub(crate) fn throwaway_redis(port: u16, dir: &Path) -> Invocation {
    Invocation::new("redis-server").args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
        "--loglevel",
        "warning",
    ])
}

/// The `--dry-run` text.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cargo xtask dev would run:")?;
        writeln!(f, "  1. {}", self.redis)?;
        writeln!(
            f,
            "     and wait until it answers PING on 127.0.0.1:{}",
            self.redis_port
        )?;
        if let Some(jaeger) = &self.jaeger {
            writeln!(f, "  +  {jaeger}")?;
            writeln!(
                f,
                "     (Jaeger v2: OTLP on 127.0.0.1:4317, UI on http://127.0.0.1:16686)"
            )?;
        }
        writeln!(f, "  2. {}", self.service)?;
        write!(
            f,
            "  on Ctrl-C or when cart-service exits: stop cart-service (SIGINT), then redis-server"
        )
    }
}

/// A block of requests to try against the running service.
fn curl_examples(port: u16) -> String {
    const EXAMPLES: &str = r#"
  curl -i -X POST BASE/v1/cart/alice -H 'content-type: application/json' -d '{"product_id":"p-1","quantity":2}'
  curl -i BASE/v1/cart/alice
  curl -i -X PUT BASE/v1/cart/alice/items/p-1 -H 'content-type: application/json' -d '{"quantity":5}'
  curl -i -X DELETE BASE/v1/cart/alice/items/p-1
  curl -i -X DELETE BASE/v1/cart/alice
  curl -i BASE/healthz
  curl -i BASE/readyz
  curl -i -X POST 'BASE/stress?cpu_iterations=500'
  curl BASE/metrics
  curl BASE/openapi.json
"#;
    let base = format!("http://127.0.0.1:{port}");
    format!(
        "cart-service will listen on {base} once built. Try:{}Ctrl-C stops cart-service, then redis-server.",
        EXAMPLES.replace("BASE", &base)
    )
}

/// The status to exit with for the service's: its own code, or 128 + n for signal n, as
/// a shell reports it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::processes::answers_ping;
    use super::*;

    #[test]
    fn plan_starts_a_private_redis_then_the_service_against_it() {
        let plan = Plan::new(8080, 6390, Path::new("/tmp/redis-dev"), None);

        assert_eq!(plan.redis.program, "redis-server");
        assert_eq!(
            plan.redis.args,
            [
                "--bind",
                "127.0.0.1",
                "--port",
                "6390",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/tmp/redis-dev",
                "--loglevel",
                "warning",
            ]
        );
        assert!(plan.redis.env.is_empty());
        assert_eq!(plan.service.program, "cargo");
        assert_eq!(
            plan.service.args,
            ["run", "--package", "cart-service", "--"]
        );
        let env: Vec<(&str, &str)> = plan
            .service
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("REDIS_URL", "redis://127.0.0.1:6390"),
                ("LISTEN_ADDR", "127.0.0.1:8080"),
                ("LOG_FORMAT", "pretty"),
                ("RUST_LOG", "info"),
            ]
        );
    }

    #[test]
    fn plan_keeps_a_rust_log_already_set() {
        let plan = Plan::new(8080, 6390, Path::new("/tmp/redis-dev"), Some("debug"));

        assert!(
            plan.service
                .env
                .contains(&("RUST_LOG".to_owned(), "debug".to_owned()))
        );
    }

    #[test]
    fn dry_run_text_shows_programs_arguments_and_environment() {
        let plan = Plan::new(9000, 6390, Path::new("/tmp/redis-dev"), None);

        let text = plan.to_string();

        insta::assert_snapshot!(text);
    }

    #[test]
    fn with_jaeger_starts_it_and_exports_every_trace_to_it() {
        let plan = Plan::new(8080, 6390, Path::new("/tmp/redis-dev"), None)
            .with_jaeger(Path::new("/x/target/tools/bin/jaeger"));

        let jaeger = plan.jaeger.as_ref().unwrap();
        assert_eq!(jaeger.program, "/x/target/tools/bin/jaeger");
        assert_eq!(jaeger.args[0], "--config");
        assert!(jaeger.args[1].ends_with("scripts/jaeger.yaml"));
        for (key, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ] {
            assert!(
                plan.service
                    .env
                    .contains(&(key.to_owned(), value.to_owned())),
                "{key}"
            );
        }
        assert!(
            plan.to_string()
                .contains("/x/target/tools/bin/jaeger --config")
        );
    }

    #[test]
    fn curl_examples_target_the_chosen_port() {
        let text = curl_examples(9000);

        assert_eq!(text.matches("http://127.0.0.1:9000/").count(), 10, "{text}");
        assert!(
            text.contains(r#"-d '{"product_id":"p-1","quantity":2}'"#),
            "{text}"
        );
        assert!(
            text.contains("'http://127.0.0.1:9000/stress?cpu_iterations=500'"),
            "{text}"
        );
    }

    #[test]
    fn exit_code_is_the_services_code_or_128_plus_its_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[tokio::test]
    async fn dev_redis_answers_ping_and_is_gone_after_stop() {
        let sh = Shell::new().unwrap();
        tools::REDIS_SERVER.require(&sh).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let plan = Plan::new(8080, port, dir.path(), None);

        let mut redis = spawn(&sh, &plan.redis).unwrap();
        wait_until_ready(port, &mut redis).await.unwrap();
        stop(&mut redis).await.unwrap();

        assert!(
            redis.try_wait().unwrap().is_some(),
            "redis-server still running"
        );
        assert!(
            !answers_ping(port).await,
            "something still answers on 127.0.0.1:{port}"
        );
    }
}
