//! `cargo xtask bench`: how much traffic one cart-service process carries on this
//! machine, measured beside what Redis alone does in the same run, so the figure that
//! matters is a ratio that survives a noisy, shared 2-core machine.
//!
//! It builds the release binary, starts its own `redis-server` (free port, no
//! persistence) and the service (logs at warn, no log file, tracing off), times startup,
//! warms up, then drives each scenario with wrk at each concurrency level and runs
//! `redis-benchmark` with the equivalent command at the same concurrency. Last, `add`
//! runs again with full observability and with the default sampling, exporting to a
//! local Jaeger, on the shared cores and under a pod's CPU limit ([`cgroup`]). Reports go
//! to `--out` as Markdown, JSON and an SVG chart; `--check` judges them against the
//! budget of issue 6. `get-auth` runs on a service of its own with `AUTH_MODE=jwt`, its
//! tokens signed by [`jwt`] with a key made for the run; the `*-cluster` scenarios each
//! on one with `REDIS_MODE=cluster`, against a local Redis Cluster ([`cluster`]) started
//! for them after the others. Files: [`session`], [`own_services`] and [`observe`] run
//! things, [`describe`] says what they would run, [`loadgen`] and [`procfs`] parse what
//! the tools and `/proc` say, [`report`], [`svg`] (and [`bars`]) and [`budget`] turn
//! results into documents and verdicts. All of it, plotters for the chart and the
//! signing crates, builds only with the xtask's `bench` feature, which `cargo xtask bench`
//! re-runs itself with.

mod against;
mod bars;
mod budget;
mod cgroup;
mod cluster;
mod describe;
#[cfg(test)]
mod fixture;
mod jwt;
mod loadgen;
mod observe;
mod own_services;
mod processes;
mod procfs;
mod report;
mod scenarios;
mod session;
mod svg;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::Shell;

use self::scenarios::Scenario;
use crate::command::Invocation;
use crate::{flags, tools};

/// Where the release build puts the service, relative to the workspace root.
const SERVICE_BINARY: &str = "target/release/cart-service";
/// How loaded the machine may be before the figures are called noisy.
const QUIET_LOAD: f64 = 1.5;

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let started = Instant::now();
        let against = self
            .against
            .as_deref()
            .map(|name| against::Revision::resolve(sh, name))
            .transpose()?;
        let settings = Settings::new(&self, against);
        if self.dry_run {
            print!("{}", settings.describe());
            return Ok(());
        }
        for tool in [&tools::WRK, &tools::REDIS_SERVER, &tools::REDIS_BENCHMARK] {
            tool.require(sh)?;
        }
        if settings.scenarios.iter().any(|s| s.cluster()) {
            tools::REDIS_CLI.require(sh)?;
        }
        let load = procfs::loadavg();
        if load[0] > QUIET_LOAD {
            println!(
                "warning: load average {:.2} > {QUIET_LOAD}: something else is busy on this machine, \
                 so the figures will be noisy (`uptime` to watch it)",
                load[0]
            );
        }
        let build = build();
        println!("==> {build}");
        build.to_cmd(sh).run().context("release build failed")?;
        if let Some(revision) = &settings.against {
            revision.prepare(sh)?;
        }

        let report = session::run(sh, &settings, load, started)?;
        let verdicts = self.check.then(|| budget::evaluate(&report));
        let markdown = report.markdown(verdicts.as_deref());
        let written = write_reports(&self.out, &report, &markdown)?;
        println!("\n{markdown}");
        println!("reports: {}", written.join(", "));
        if let Some(verdicts) = &verdicts {
            println!("\n{}", budget::lines(verdicts));
        }
        if report.failed() {
            bail!(
                "FAIL: some requests got a non-2xx answer or a socket error (see the errors column)"
            );
        }
        if let Some(verdicts) = verdicts {
            let missed: Vec<&str> = verdicts
                .iter()
                .filter(|v| v.outcome != budget::Outcome::Pass)
                .map(|v| v.name)
                .collect();
            if !missed.is_empty() {
                bail!("budget missed: {}", missed.join(", "));
            }
        }
        Ok(())
    }
}

/// What a run measures and the programs it runs, fixed before anything starts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub duration: u64,
    pub connections: Vec<u32>,
    pub scenarios: Vec<Scenario>,
    pub out: PathBuf,
    /// The revision `--against` named, resolved; its binary runs beside the current one.
    pub against: Option<against::Revision>,
}

/// A service binary under test and the label its runs carry in the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub label: String,
    pub path: PathBuf,
}

impl Binary {
    pub fn current() -> Self {
        Self {
            label: report::CURRENT.to_owned(),
            path: PathBuf::from(SERVICE_BINARY),
        }
    }
}

impl Settings {
    fn new(flags: &flags::Bench, against: Option<against::Revision>) -> Self {
        let mut connections = flags.connections.clone();
        connections.sort_unstable();
        connections.dedup();
        let mut scenarios = flags.scenario.clone();
        scenarios.sort_unstable();
        scenarios.dedup();
        Self {
            duration: flags.duration,
            connections,
            scenarios,
            out: flags.out.clone(),
            against,
        }
    }

    /// The binaries measured: the current one, then the `--against` revision's.
    pub fn binaries(&self) -> Vec<Binary> {
        std::iter::once(Binary::current())
            .chain(self.other())
            .collect()
    }

    /// The `--against` revision's binary.
    pub fn other(&self) -> Option<Binary> {
        self.against.as_ref().map(|revision| Binary {
            label: revision.short().to_owned(),
            path: revision.binary(),
        })
    }

    /// redis-benchmark requests per point: about as long as a wrk point at ~40k req/s.
    pub fn redis_requests(&self) -> u64 {
        40_000 * self.duration
    }
}

/// The release build the Dockerfile and CI make too.
fn build() -> Invocation {
    Invocation::new("cargo").args(["build", "--release", "--locked", "-p", "cart-service"])
}

/// A throwaway redis-server: loopback only, no RDB, no AOF.
fn redis(port: u16, dir: &Path) -> Invocation {
    Invocation::new("redis-server").args([
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--save".to_owned(),
        String::new(),
        "--appendonly".to_owned(),
        "no".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--loglevel".to_owned(),
        "warning".to_owned(),
    ])
}

/// Tokio worker threads, as in a pod of the chart: its CPU limit is one core, and tokio
/// sizes its pool from the cgroup quota, so a deployed pod runs one worker. The bench
/// measures that pod. (Two workers on these 2 cores, shared with Redis and wrk, flip
/// between about 14 and 30 us of CPU per `add` as they wake and steal from each other.)
const POD_WORKER_THREADS: &str = "1";

/// The Redis a service is started against: the run's one redis-server, or the nodes of
/// the Redis Cluster, every one of them a seed.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    Standalone(u16),
    Cluster(&'a [u16]),
}

/// The one Redis of the `--dry-run` text.
const STANDALONE: Backend<'static> = Backend::Standalone(6379);

impl Backend<'_> {
    /// The service's `REDIS_MODE` (only for the cluster: standalone is the default) and
    /// `REDIS_URL`, a comma-separated seed list for the cluster.
    fn env(self) -> Vec<(&'static str, String)> {
        let url = |port: &u16| format!("redis://127.0.0.1:{port}");
        match self {
            Self::Standalone(port) => vec![("REDIS_URL", url(&port))],
            Self::Cluster(ports) => vec![
                ("REDIS_MODE", "cluster".to_owned()),
                (
                    "REDIS_URL",
                    ports.iter().map(url).collect::<Vec<_>>().join(","),
                ),
            ],
        }
    }
}

/// The service `binary` against `redis`: the baseline (warn, no log file, tracing off) or,
/// with an observability setting, the OTLP port and the directory its `LOG_FILE` goes to.
fn service(
    binary: &Path,
    port: u16,
    redis: Backend<'_>,
    observed: Option<(&observe::Setting, u16, &Path)>,
) -> Invocation {
    let invocation = redis.env().into_iter().fold(
        Invocation::new(&binary.display().to_string())
            .env("TOKIO_WORKER_THREADS", POD_WORKER_THREADS)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        |invocation, (key, value)| invocation.env(key, value),
    );
    let invocation = invocation.env("LOG_FORMAT", "json");
    match observed {
        None => invocation
            .env("RUST_LOG", "warn")
            .env("OTEL_TRACES_SAMPLER", "always_off"),
        Some((setting, otlp_port, dir)) => setting.apply(invocation, otlp_port, dir),
    }
}

/// The service `scenario` runs on: the baseline [`service`] with the scenario's variables.
fn scenario_service(
    binary: &Path,
    port: u16,
    redis: Backend<'_>,
    scenario: Scenario,
    dir: &Path,
) -> Invocation {
    scenario.service_env(dir).into_iter().fold(
        service(binary, port, redis, None),
        |invocation, (key, value)| invocation.env(key, value),
    )
}

/// Writes `<stamp>.md`, `.json` and `.svg` under `out`; returns their paths.
fn write_reports(
    out: &Path,
    report: &report::Report,
    markdown: &str,
) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stamp = report.started.replace(':', "");
    let files = [
        (format!("{stamp}.md"), markdown.to_owned()),
        (
            format!("{stamp}.json"),
            serde_json::to_string_pretty(report)? + "\n",
        ),
        (format!("{stamp}.svg"), svg::chart(report)?),
    ];
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// The current UTC time as the report names it.
fn now_utc() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    report::utc_timestamp(seconds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut command_line = vec!["cargo xtask", "bench"];
        command_line.extend_from_slice(args);
        match flags::Xtask::parse_from(command_line).task {
            flags::Task::Bench(bench) => Settings::new(&bench, None),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_every_scenario_at_16_64_256_for_5_seconds() {
        let settings = settings(&[]);

        assert_eq!(settings.duration, 5);
        assert_eq!(settings.connections, [16, 64, 256]);
        assert_eq!(settings.scenarios, Scenario::ALL);
        assert_eq!(settings.out, Path::new("target/bench"));
    }

    #[test]
    fn lists_are_comma_separated_sorted_and_deduplicated() {
        let settings = settings(&["--connections", "64,16,64", "--scenario", "health,add"]);

        assert_eq!(settings.connections, [16, 64]);
        assert_eq!(settings.scenarios, [Scenario::Add, Scenario::Health]);
    }

    #[test]
    fn dry_run_shows_the_baseline_environment_and_both_load_generators() {
        let text = without_workspace_root(
            &settings(&["--scenario", "add", "--connections", "64"]).describe(),
        );

        assert!(
            text.contains("TOKIO_WORKER_THREADS=1 LISTEN_ADDR="),
            "one worker, as in a pod of the chart: {text}"
        );
        assert!(
            !text.contains("get.lua"),
            "only the chosen scenario: {text}"
        );
        assert!(
            !text.contains("against"),
            "no --against text without the flag: {text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn dry_run_of_get_auth_starts_a_service_of_its_own_with_jwt_auth() {
        let text = without_workspace_root(
            &settings(&["--scenario", "get,get-auth", "--connections", "64"]).describe(),
        );

        assert_eq!(
            text.matches("AUTH_MODE=jwt AUTH_PUBLIC_KEY_FILE='<temp dir>/jwt-public-key.pem'")
                .count(),
            1,
            "only get-auth's service checks tokens: {text}"
        );
        assert!(
            text.find("get.lua").unwrap() < text.find("AUTH_MODE=jwt").unwrap(),
            "get on the shared service first: {text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn dry_run_of_the_cluster_scenarios_starts_a_cluster_and_a_service_of_its_own_for_each() {
        let text = without_workspace_root(
            &settings(&[
                "--scenario",
                "add,get,add-cluster,get-cluster,add-cluster-wait",
                "--connections",
                "64",
            ])
            .describe(),
        );

        let seeds = "REDIS_MODE=cluster REDIS_URL=redis://127.0.0.1:7001,redis://127.0.0.1:7002,\
                     redis://127.0.0.1:7003,redis://127.0.0.1:7004,redis://127.0.0.1:7005,\
                     redis://127.0.0.1:7006 LOG_FORMAT=json";
        assert_eq!(text.matches(seeds).count(), 3, "{text}");
        assert_eq!(
            text.matches("REDIS_WAIT_REPLICAS=1").count(),
            1,
            "only add-cluster-wait waits: {text}"
        );
        assert_eq!(text.matches("--cluster-enabled yes").count(), 6, "{text}");
        let order = [
            "get.lua",
            "redis-cli --cluster create",
            "add-cluster.lua",
            "  6. ",
        ];
        let found: Vec<usize> = order.iter().map(|s| text.find(s).unwrap()).collect();
        assert!(
            found.is_sorted(),
            "one Redis's scenarios, then the cluster, then observability: {text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn dry_run_against_a_revision_builds_it_in_a_worktree_and_runs_it_beside_the_current() {
        let mut settings = settings(&["--scenario", "add", "--connections", "64"]);
        settings.against = Some(against::Revision {
            name: "HEAD~3".to_owned(),
            commit: "aeac87b0c0ffee0123456789abcdef0123456789".to_owned(),
        });

        let text = without_workspace_root(&settings.describe());

        insta::assert_snapshot!(text);
    }

    #[test]
    fn utc_timestamps_are_civil_dates() {
        assert_eq!(report::utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(report::utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(report::utc_timestamp(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    /// The text with the checkout's absolute path (where the pinned Jaeger lives) named,
    /// so the snapshot holds in any clone.
    fn without_workspace_root(text: &str) -> String {
        text.replace(
            &crate::workspace_root().display().to_string(),
            "[WORKSPACE]",
        )
    }
}
