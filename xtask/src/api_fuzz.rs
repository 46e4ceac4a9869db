//! `cargo xtask api-fuzz`: schemathesis against a live cart-service, with every check and
//! all four phases (examples, coverage, fuzzing, stateful) in a time budget, so the OpenAPI
//! document stays exactly what the service does.
//!
//! The service is the debug build, against a throwaway Redis on a free port (as `dev`
//! starts it), with `/stress` on and its caps small: the fuzzer reaches every route, and
//! its largest stress request takes milliseconds. What schemathesis is told beyond its
//! defaults, and why, is in `scripts/schemathesis.toml`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Child;
use tokio::time::{Instant, sleep};
use xshell::Shell;

use crate::command::Invocation;
use crate::dev::processes::{free_port, spawn, stop, wait_until_ready};
use crate::dev::throwaway_redis;
use crate::{flags, install, system, tools};

/// How long the service gets to answer `/readyz` with 200 once started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl flags::ApiFuzz {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let (port, redis_port) = (free_port()?, free_port()?);
        if self.dry_run {
            let plan = Plan::new(port, redis_port, Path::new("<temp dir>"), self.max_time);
            println!("{plan}");
            return Ok(());
        }
        system::provide_redis_server(sh)?;
        install::ensure(sh, &[&tools::PINNED_SCHEMATHESIS], false)?;
        Invocation::new("cargo")
            .args(["build", "--locked", "--package", "cart-service"])
            .to_cmd(sh)
            .run()
            .context("cannot build cart-service")?;
        let redis_dir = tempfile::Builder::new()
            .prefix("cart-service-api-fuzz-")
            .tempdir()
            .context("cannot create a temporary directory for redis-server")?;
        let plan = Plan::new(port, redis_port, redis_dir.path(), self.max_time);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(plan.execute(sh))
    }
}

/// What `api-fuzz` runs.
#[derive(Debug)]
struct Plan {
    port: u16,
    redis_port: u16,
    redis: Invocation,
    service: Invocation,
    schemathesis: Invocation,
}

impl Plan {
    fn new(port: u16, redis_port: u16, redis_dir: &Path, max_time: u32) -> Self {
        let root = crate::workspace_root();
        let service =
            Invocation::new(&root.join("target/debug/cart-service").display().to_string())
                .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
                .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("RUST_LOG", "error")
                .env("STRESS_ENABLED", "true")
                .env("STRESS_MAX_CPU_ITERATIONS", "20")
                .env("STRESS_MAX_MEMORY_MB", "4");
        let config = root.join("scripts/schemathesis.toml");
        let schemathesis =
            Invocation::new(&tools::PINNED_SCHEMATHESIS.path().display().to_string())
                .args([
                    "--config-file",
                    &config.display().to_string(),
                    "run",
                    &format!("http://127.0.0.1:{port}/openapi.json"),
                    "--max-time",
                    &max_time.to_string(),
                ])
                .env("NO_COLOR", "1");
        Self {
            port,
            redis_port,
            redis: throwaway_redis(redis_port, redis_dir),
            service,
            schemathesis,
        }
    }

    async fn execute(&self, sh: &Shell) -> anyhow::Result<()> {
        let mut redis = spawn(sh, &self.redis)?;
        let outcome = self.with_redis(sh, &mut redis).await;
        stop(&mut redis).await.context("cannot stop redis-server")?;
        outcome
    }

    async fn with_redis(&self, sh: &Shell, redis: &mut Child) -> anyhow::Result<()> {
        wait_until_ready(self.redis_port, redis).await?;
        let mut service = spawn(sh, &self.service)?;
        let outcome = async {
            self.wait_until_service_ready(sh, &mut service).await?;
            let status = tokio::process::Command::from(std::process::Command::from(
                self.schemathesis.to_cmd(sh),
            ))
            .status()
            .await
            .context("cannot run schemathesis")?;
            if !status.success() {
                bail!("schemathesis found failures ({status}); each one above comes with a curl command that reproduces it");
            }
            Ok(())
        }
        .await;
        stop(&mut service)
            .await
            .context("cannot stop cart-service")?;
        outcome
    }

    /// Polls `/readyz` with the binary's own `healthcheck` subcommand, so the xtask needs
    /// no HTTP client of its own.
    async fn wait_until_service_ready(
        &self,
        sh: &Shell,
        service: &mut Child,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let probe = Invocation::new(&self.service.program).args([
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{}/readyz", self.port),
        ]);
        loop {
            let ready =
                tokio::process::Command::from(std::process::Command::from(probe.to_cmd(sh)))
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            if let Some(status) = service.try_wait()? {
                bail!(
                    "cart-service exited ({status}) before it was ready; its output above says why"
                );
            }
            if Instant::now() >= deadline {
                bail!("cart-service did not answer /readyz with 200 within {READY_TIMEOUT:?}");
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `--dry-run` text.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cargo xtask api-fuzz would run:")?;
        writeln!(f, "  1. cargo build --locked --package cart-service")?;
        writeln!(f, "  2. {}", self.redis)?;
        writeln!(f, "  3. {}", self.service)?;
        writeln!(
            f,
            "     and wait until /readyz on 127.0.0.1:{} answers 200",
            self.port
        )?;
        writeln!(f, "  4. {}", self.schemathesis)?;
        write!(
            f,
            "  then stop cart-service and redis-server; any failure fails the task"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_starts_redis_then_the_service_then_schemathesis_with_the_config() {
        let plan = Plan::new(8080, 6390, Path::new("/tmp/redis-fuzz"), 60);

        let root = crate::workspace_root().display().to_string();
        insta::assert_snapshot!(plan.to_string().replace(&root, "<workspace>"));
    }
}
