//! What observability costs: `add` at 64 connections with the service exporting OTLP to
//! a real local Jaeger v2 and writing its access log to stdout (a file here) and to
//! `LOG_FILE`, once sampling every request and once with the default parent-based 10 %
//! ratio, each reported as a fraction of the baseline `add` throughput.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::Shell;

use super::processes::{Owned, free_port, http_get};
use super::report::{Observability, ObservedRun};
use super::scenarios::Scenario;
use super::session::{per_10k, run_wrk, script, start, url};
use super::{JAEGER_BINARY, Settings, procfs};
use crate::command::Invocation;

/// Concurrency of the observability runs: the budget's.
pub const CONNECTIONS: u32 = super::budget::BUDGET_CONNECTIONS;

/// One observability setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub sampler: &'static str,
    pub sampler_arg: &'static str,
}

pub const SETTINGS: [Setting; 2] = [
    Setting {
        name: "full",
        sampler: "always_on",
        sampler_arg: "1.0",
    },
    Setting {
        name: "default",
        sampler: "parentbased_traceidratio",
        sampler_arg: "0.1",
    },
];

impl Setting {
    /// The service's environment for this setting: info logs (the access log) to stdout
    /// and to `LOG_FILE` in `dir`, OTLP gRPC to Jaeger on `otlp_port`.
    pub fn apply(&self, invocation: Invocation, otlp_port: u16, dir: &Path) -> Invocation {
        invocation
            .env("RUST_LOG", "info")
            .env("LOG_FILE", self.log_file(dir).display().to_string())
            .env("OTEL_TRACES_SAMPLER", self.sampler)
            .env("OTEL_TRACES_SAMPLER_ARG", self.sampler_arg)
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{otlp_port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    }

    fn log_file(&self, dir: &Path) -> std::path::PathBuf {
        dir.join(format!("logs-{}", self.name))
            .join("cart-service.log")
    }
}

/// Runs both settings, or says why not.
pub fn run(
    sh: &Shell,
    settings: &Settings,
    redis_port: u16,
    dir: &Path,
    baseline_rps: Option<f64>,
) -> anyhow::Result<Observability> {
    let not_run = |reason: String| {
        println!("==> observability runs skipped: {reason}");
        Ok(Observability {
            not_run: Some(reason),
            runs: Vec::new(),
        })
    };
    if !settings.scenarios.contains(&Scenario::Add) {
        return not_run("the add scenario was not selected".to_owned());
    }
    let jaeger = crate::workspace_root().join(JAEGER_BINARY);
    if !jaeger.is_file() {
        return not_run(format!(
            "{JAEGER_BINARY} not found: build Jaeger v2 (v1.76.0) there, with `cargo xtask tools` where \
             it pins Jaeger, or by hand from a tools module as DESIGN.md says (`go mod init tools/jaeger`, \
             `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0`, \
             `go build -o target/tools/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger`), then run again"
        ));
    }
    let (jaeger, otlp_port, query_port) = start_jaeger(sh, &jaeger, dir)?;
    let mut runs = Vec::new();
    for setting in SETTINGS {
        runs.push(observed_run(
            sh,
            settings,
            &setting,
            redis_port,
            otlp_port,
            query_port,
            dir,
            baseline_rps,
        )?);
    }
    jaeger.stop()?;
    Ok(Observability {
        not_run: None,
        runs,
    })
}

#[allow(clippy::too_many_arguments)] // one call site, every argument a different fact
fn observed_run(
    sh: &Shell,
    settings: &Settings,
    setting: &Setting,
    redis_port: u16,
    otlp_port: u16,
    query_port: u16,
    dir: &Path,
    baseline_rps: Option<f64>,
) -> anyhow::Result<ObservedRun> {
    let port = free_port()?;
    let stdout_path = dir.join(format!("{}.stdout", setting.name));
    let stdout = File::create(&stdout_path)?;
    let invocation = super::service(port, redis_port, Some((setting, otlp_port, dir)));
    let (mut service, _) = start(sh, &invocation, port, Stdio::from(stdout))?;
    let add_script = script(dir, Scenario::Add);
    let add_url = url(port, Scenario::Add);
    run_wrk(sh, &add_script, &add_url, CONNECTIONS, 1)?;
    let (result, usage) = procfs::measure(service.process.pid(), || {
        run_wrk(sh, &add_script, &add_url, CONNECTIONS, settings.duration)
    })?;
    service.process.ensure_running()?;
    let result = result?;
    // Stopping flushes the batched spans and the log writer before the sizes are read.
    service.process.stop()?;
    let traces_arrived = wait_for_traces(query_port);
    let fraction = baseline_rps.filter(|&b| b > 0.0).map(|b| result.rps / b);
    println!(
        "==> add with {:<7} observability: {:>7.0} req/s ({}) p99 {:.2} ms, traces in Jaeger: {}",
        setting.name,
        result.rps,
        fraction.map_or("no baseline".to_owned(), |f| format!(
            "{:.0} % of baseline",
            f * 100.0
        )),
        result.p99_ms,
        if traces_arrived { "yes" } else { "no" },
    );
    Ok(ObservedRun {
        name: setting.name.to_owned(),
        sampler: format!("{} {}", setting.sampler, setting.sampler_arg),
        connections: CONNECTIONS,
        cpu_s_per_10k: per_10k(usage.cpu_seconds, result.requests),
        peak_rss_kib: usage.peak_rss_kib,
        service: result,
        fraction_of_baseline: fraction,
        stdout_bytes: std::fs::metadata(&stdout_path).map_or(0, |m| m.len()),
        log_file_bytes: dir_bytes(setting.log_file(dir).parent().unwrap_or(dir)),
        traces_arrived,
    })
}

/// Jaeger v2 all-in-one, in-memory, on free loopback ports (as service/tests/jaeger does);
/// returns it with its OTLP gRPC and query ports once the query API answers.
fn start_jaeger(sh: &Shell, binary: &Path, dir: &Path) -> anyhow::Result<(Owned, u16, u16)> {
    let (grpc, http, query, query_grpc) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let config = format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}}
  telemetry: {{metrics: {{level: none}}, logs: {{level: error}}}}
extensions:
  jaeger_query:
    storage: {{traces: memstore}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{query_grpc}"}}
  jaeger_storage:
    backends: {{memstore: {{memory: {{max_traces: 10000}}}}}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  jaeger_storage_exporter: {{trace_storage: memstore}}
"#
    );
    let path = dir.join("jaeger.yaml");
    std::fs::write(&path, config)?;
    let invocation = Invocation::new(&binary.display().to_string())
        .args(["--config".to_owned(), path.display().to_string()]);
    let mut jaeger = Owned::spawn(sh, "jaeger", &invocation, Stdio::null())?;
    let started = Instant::now();
    while !matches!(http_get(query, "/api/services"), Ok((200, _))) {
        jaeger.ensure_running()?;
        if started.elapsed() > Duration::from_secs(30) {
            bail!("jaeger did not answer on 127.0.0.1:{query} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((jaeger, grpc, query))
}

/// Whether Jaeger lists cart-service among its services, within a few seconds.
fn wait_for_traces(query_port: u16) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok((200, body)) = http_get(query_port, "/api/services")
            && body.contains("cart-service")
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Total size of the files in `dir` (the rotating appender names them by date).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_observability_samples_everything_and_logs_to_stdout_and_a_file() {
        let invocation =
            SETTINGS[0].apply(Invocation::new("cart-service"), 4317, Path::new("/tmp/b"));

        assert_eq!(
            invocation.to_string(),
            "RUST_LOG=info LOG_FILE=/tmp/b/logs-full/cart-service.log OTEL_TRACES_SAMPLER=always_on \
             OTEL_TRACES_SAMPLER_ARG=1.0 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \
             OTEL_EXPORTER_OTLP_PROTOCOL=grpc cart-service"
        );
    }

    #[test]
    fn default_sampling_is_parent_based_ten_percent() {
        assert_eq!(SETTINGS[1].sampler, "parentbased_traceidratio");
        assert_eq!(SETTINGS[1].sampler_arg, "0.1");
    }
}
