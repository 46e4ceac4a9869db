//! `cargo xtask compose-smoke`: the laptop stack for real. `docker compose up --wait` of the
//! unmodified docker-compose.yml with every image already present (no pulls, no build by
//! compose), then through a throwaway curl container on the stack's network: a cart round
//! trip, the request's line in the log shipper's output and its trace in Jaeger. The stack
//! and its volumes go at the end, whatever happened.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use xshell::Shell;

use crate::docker::{require_compose, require_docker_engine};
use crate::e2e::http::trace_id;
use crate::e2e::report::Report;
use crate::flags;
use crate::image::Build;

/// The image docker-compose.yml runs as cart-service.
pub const IMAGE: &str = "cart-service:dev";
/// The curl image the checks run in (the chart's test image too).
const CURL: &str = crate::e2e::LOAD_IMAGE;

impl flags::ComposeSmoke {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        if self.dry_run {
            print!("{}", self.describe());
            return Ok(());
        }
        require_docker_engine(sh)?;
        require_compose(sh)?;
        let mut report = Report::new("cargo xtask compose-smoke");
        let started = Instant::now();
        let built = self.image(sh);
        if report.record("image", started, built) {
            let started = Instant::now();
            let up = self.up(sh);
            if report.record("up", started, up) {
                let started = Instant::now();
                let checked = self.checks(sh);
                report.record("checks", started, checked);
            }
        }
        let started = Instant::now();
        let down = self.compose(sh, &["down", "--volumes", "--timeout", "20"]);
        report.record(
            "down",
            started,
            down.map(|()| "stack and volumes removed".to_owned()),
        );
        println!("{report}");
        let failed = report.failed();
        if !failed.is_empty() {
            bail!("compose-smoke failed: {}", failed.join(", "));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let project = &self.project;
        format!(
            "cargo xtask compose-smoke would:\n\
             \x20 1. build {IMAGE} from the Dockerfile{}\n\
             \x20 2. docker compose -p {project} up --detach --wait --pull never --no-build\n\
             \x20 3. check cart-service runs as 65532 on a read-only root filesystem\n\
             \x20 4. from a {CURL} container on network {project}_default: POST, GET and DELETE a cart\n\
             \x20 5. find the POST's trace_id in `docker compose logs log-shipper` and its trace in Jaeger\n\
             \x20 6. docker compose -p {project} down --volumes (always)\n",
            if self.build { "" } else { " unless it exists" }
        )
    }

    fn image(&self, sh: &Shell) -> anyhow::Result<String> {
        let present = sh
            .cmd("docker")
            .args(["image", "inspect", IMAGE])
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok();
        if present && !self.build {
            return Ok(format!("{IMAGE} already built"));
        }
        let build = Build::for_head(sh, Some(IMAGE.to_owned()))?;
        crate::e2e::build_image(sh, self.build_with.as_deref(), &build)?;
        Ok(format!("{IMAGE} built"))
    }

    fn up(&self, sh: &Shell) -> anyhow::Result<String> {
        self.compose(
            sh,
            &[
                "up",
                "--detach",
                "--wait",
                "--wait-timeout",
                "180",
                "--pull",
                "never",
                "--no-build",
            ],
        )?;
        let id = sh
            .cmd("docker")
            .args([
                "compose",
                "-p",
                &self.project,
                "ps",
                "--quiet",
                "cart-service",
            ])
            .quiet()
            .read()?;
        let facts = sh
            .cmd("docker")
            .args([
                "inspect",
                "--format",
                "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
                id.trim(),
            ])
            .quiet()
            .read()?;
        ensure!(
            facts.trim() == "65532:65532 true",
            "cart-service should run as 65532:65532 on a read-only root filesystem; docker inspect says {facts:?}"
        );
        Ok("every service healthy or running; cart-service as 65532, read-only".to_owned())
    }

    fn checks(&self, sh: &Shell) -> anyhow::Result<String> {
        let cart = "http://cart-service:8080/v1/cart/compose-smoke";
        let added = self.curl(
            sh,
            &[
                "-sS",
                "-i",
                "-X",
                "POST",
                cart,
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"product_id":"p-1","quantity":2}"#,
            ],
        )?;
        ensure!(added.starts_with("HTTP/1.1 200"), "POST answered:\n{added}");
        let trace = added
            .lines()
            .find_map(|line| line.strip_prefix("traceparent: "))
            .map(str::trim)
            .with_context(|| format!("the POST's answer has no traceparent:\n{added}"))?;
        ensure!(
            trace.ends_with("-01"),
            "the POST's trace was not sampled (traceparent {trace}): set OTEL_TRACES_SAMPLER in docker-compose.yml"
        );
        let trace = trace_id(trace)
            .with_context(|| format!("not a W3C traceparent: {trace}"))?
            .to_owned();
        let read = self.curl(sh, &["-sS", "-f", cart])?;
        ensure!(
            read.contains(r#""total_quantity":2"#),
            "GET answered {read}"
        );
        let cleared = self.curl(
            sh,
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "DELETE",
                cart,
            ],
        )?;
        ensure!(cleared.trim() == "204", "DELETE answered {cleared}");

        let line = poll(Duration::from_mins(1), || {
            let logs = sh
                .cmd("docker")
                .args([
                    "compose",
                    "-p",
                    &self.project,
                    "logs",
                    "--no-log-prefix",
                    "log-shipper",
                ])
                .quiet()
                .read()?;
            Ok(logs.lines().find(|l| l.contains(&trace)).map(str::to_owned))
        })
        .with_context(|| format!("trace {trace} not in the log-shipper's output"))?;
        let spans = poll(Duration::from_mins(1), || {
            let found = self.curl(
                sh,
                &["-sS", &format!("http://jaeger:16686/api/traces/{trace}")],
            )?;
            let trace: serde_json::Value = serde_json::from_str(&found).unwrap_or_default();
            let count = trace["data"][0]["spans"].as_array().map_or(0, Vec::len);
            Ok((count >= 3).then_some(count))
        })
        .with_context(|| format!("trace {trace} not in Jaeger"))?;
        let shipped: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        Ok(format!(
            "round trip ok; log-shipper shipped {:?}; Jaeger holds {spans} spans of trace {trace}",
            shipped["message"].as_str().unwrap_or(&line)
        ))
    }

    /// curl from a throwaway container on the stack's network, which works wherever the
    /// engine runs (published ports may live in another network namespace).
    fn curl(&self, sh: &Shell, args: &[&str]) -> anyhow::Result<String> {
        let network = format!("{}_default", self.project);
        sh.cmd("docker")
            .args(["run", "--rm", "--network", &network, CURL])
            .args(args)
            .quiet()
            .ignore_stderr()
            .read()
            .with_context(|| format!("curl {} failed", args.join(" ")))
    }

    fn compose(&self, sh: &Shell, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = sh
            .cmd("docker")
            .args(["compose", "-p", &self.project])
            .args(args);
        println!("==> {cmd}");
        cmd = cmd.quiet();
        cmd.run()
            .with_context(|| format!("docker compose {} failed", args[0]))
    }
}

/// Calls `probe` every two seconds until it finds something or `limit` passes.
fn poll<T>(
    limit: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("nothing after {}s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn the_smoke_runs_the_image_docker_compose_yml_names() {
        let compose: serde_norway::Value = serde_norway::from_str(
            &std::fs::read_to_string(crate::workspace_root().join("docker-compose.yml")).unwrap(),
        )
        .unwrap();

        assert_eq!(
            compose["services"]["cart-service"]["image"].as_str(),
            Some(IMAGE)
        );
        assert_eq!(
            compose["services"]["cart-service"]["read_only"].as_bool(),
            Some(true)
        );
        assert_eq!(
            compose["services"]["cart-service"]["environment"]["OTEL_TRACES_SAMPLER"].as_str(),
            Some("parentbased_always_on"),
            "a laptop's Jaeger should show every request"
        );
    }

    #[test]
    fn poll_returns_the_first_finding_and_gives_up_at_the_limit() {
        let mut calls = 0;
        let found = poll(Duration::from_secs(5), || {
            calls += 1;
            Ok((calls == 1).then_some(7))
        });
        let nothing = poll(Duration::ZERO, || Ok(None::<u8>));

        assert_eq!(found.unwrap(), 7);
        assert_eq!(nothing.unwrap_err().to_string(), "nothing after 0s");
    }
}
