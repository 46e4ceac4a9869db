//! One bench run, in order: Redis up and pre-filled, the service started a few times to
//! time readiness, warm-up, then every scenario at every concurrency with wrk and its
//! redis-benchmark equivalent right after it (`get-auth` on a service of its own,
//! [`own_services`]), then the same at the budget's concurrency for the `--against`
//! revision's binary; then, when chosen, the cluster scenarios on services of their own
//! against a Redis Cluster started for them; then the observability runs. Every process
//! is owned, so an error anywhere stops them all.

use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::Shell;

use super::budget::BUDGET_CONNECTIONS;
use super::jwt::Issuer;
use super::loadgen::{self, HttpResult};
use super::processes::{Owned, free_port, redis_pipeline, wait_for_200};
use super::report::{Machine, Point, Report, Startup};
use super::scenarios::{self, Scenario};
use super::{Backend, Binary, Settings, observe, own_services, procfs};

/// How many times the service is started to time readiness.
pub const READY_STARTS: usize = 5;
/// Seconds of load per scenario before measuring.
const WARM_UP_SECONDS: u64 = 1;
/// How long a start may take before the run gives up on it.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The service under test and where to reach it.
#[derive(Debug)]
pub struct Running {
    pub process: Owned,
    pub port: u16,
}

/// Runs everything and gathers the report.
pub fn run(
    sh: &Shell,
    settings: &Settings,
    load_before: [f64; 3],
    started: Instant,
) -> anyhow::Result<Report> {
    let started_utc = super::now_utc();
    let dir = tempfile::Builder::new()
        .prefix("cart-service-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    // An authenticated scenario's script is written as its service starts, with fresh tokens.
    for scenario in Scenario::ALL.into_iter().filter(|s| !s.authenticated()) {
        std::fs::write(script(dir.path(), scenario), scenario.wrk_script(&[]))?;
    }
    let issuer = Issuer::generate()?;
    issuer.write_public_key(dir.path())?;
    let redis_port = free_port()?;
    let mut redis = Owned::spawn(
        sh,
        "redis-server",
        &super::redis(redis_port, dir.path()),
        Stdio::null(),
    )?;
    wait_for_redis(&mut redis, redis_port)?;
    redis_pipeline(redis_port, &scenarios::prefill_commands()).context("pre-filling redis")?;

    println!("==> starting cart-service {READY_STARTS} times to time readiness");
    let (service, startup) = start_timed(sh, redis_port)?;
    println!(
        "    ready in {:?} ms; idle RSS {} MiB",
        startup.ready_ms,
        super::report::mib(startup.idle_rss_kib)
    );
    let mut points = on_shared_service(
        sh,
        settings,
        service,
        redis_port,
        dir.path(),
        &settings.connections,
    )?;
    points.extend(own_services::authenticated(
        sh,
        settings,
        &Binary::current(),
        redis_port,
        dir.path(),
        &issuer,
        &settings.connections,
    )?);
    if let Some(other) = settings.other()
        && settings.connections.contains(&BUDGET_CONNECTIONS)
    {
        println!(
            "==> the {} binary at {BUDGET_CONNECTIONS} connections",
            other.label
        );
        let port = free_port()?;
        let invocation = super::service(&other.path, port, Backend::Standalone(redis_port), None);
        let (service, _) = start(sh, &invocation, port, Stdio::null())?;
        let mut theirs = on_shared_service(
            sh,
            settings,
            service,
            redis_port,
            dir.path(),
            &[BUDGET_CONNECTIONS],
        )?;
        theirs.extend(own_services::authenticated(
            sh,
            settings,
            &other,
            redis_port,
            dir.path(),
            &issuer,
            &[BUDGET_CONNECTIONS],
        )?);
        points.extend(labelled(theirs, &other));
    }
    if settings.scenarios.iter().any(|s| s.cluster()) {
        points.extend(own_services::cluster(sh, settings, dir.path())?);
    }

    let observability = observe::run(sh, settings, redis_port, dir.path())?;
    redis.stop()?;
    Ok(Report {
        started: started_utc,
        machine: Machine {
            cores: thread::available_parallelism().map_or(0, usize::from),
            load_before,
            load_after: procfs::loadavg(),
        },
        duration_s: settings.duration,
        startup,
        points,
        observability,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// Pairs (service, then redis-benchmark) measured at the budget's concurrency: the point
/// kept is the pair with the median ratio, so one pair disturbed by the shared machine
/// does not decide a verdict. Both tools move by 10 to 20 % between runs here.
pub const BUDGET_REPEATS: usize = 3;

/// The pair with the median ratio (the run with the median req/s, for a scenario without
/// a redis-benchmark equivalent), carrying every pair's ratio and the highest peak RSS of
/// them all (the memory budget must see every pair); any pair with errors is kept instead,
/// so errors are never hidden by a repeat.
pub fn median_pair(pairs: Vec<Point>) -> Point {
    let peak_rss_kib = pairs
        .iter()
        .map(|p| p.peak_rss_kib)
        .max()
        .unwrap_or_default();
    let ratios: Vec<f64> = pairs.iter().filter_map(|p| p.ratio).collect();
    // A scenario without a redis-benchmark equivalent has no ratio: its req/s decides.
    let by = |p: &Point| p.ratio.unwrap_or(p.service.rps);
    let mut kept = median_or_failed(pairs, Point::failed, |a, b| by(a).total_cmp(&by(b)));
    if ratios.len() > 1 && !kept.failed() {
        kept.repeat_ratios = ratios;
    }
    kept.peak_rss_kib = peak_rss_kib;
    kept
}

/// The repeat to report: the first that `failed`, so a repeat never hides errors, else the
/// median in `order`.
pub fn median_or_failed<T>(
    mut repeats: Vec<T>,
    failed: impl Fn(&T) -> bool,
    order: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> T {
    if let Some(index) = repeats.iter().position(failed) {
        return repeats.swap_remove(index);
    }
    repeats.sort_by(order);
    repeats.swap_remove(repeats.len() / 2)
}

/// The scenario's wrk script in the run's directory.
pub fn script(dir: &Path, scenario: Scenario) -> std::path::PathBuf {
    dir.join(format!("{}.lua", scenario.name()))
}

pub fn url(port: u16, scenario: Scenario) -> String {
    format!("http://127.0.0.1:{port}{}", scenario.path())
}

/// The `--against` revision's `points`, labelled with its binary.
pub fn labelled(points: Vec<Point>, binary: &Binary) -> impl Iterator<Item = Point> {
    points.into_iter().map(|point| Point {
        binary: binary.label.clone(),
        ..point
    })
}

/// Waits until the redis-server `redis` answers PING on `port`.
pub fn wait_for_redis(redis: &mut Owned, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    while redis_pipeline(port, &[vec!["PING".to_owned()]]).is_err() {
        redis.ensure_running()?;
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING on 127.0.0.1:{port}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The chosen scenarios that need no variables of their own, on `service` (a baseline
/// one), warmed up first; stops it.
fn on_shared_service(
    sh: &Shell,
    settings: &Settings,
    mut service: Running,
    redis_port: u16,
    dir: &Path,
    connections: &[u32],
) -> anyhow::Result<Vec<Point>> {
    let scenarios: Vec<Scenario> = settings
        .scenarios
        .iter()
        .copied()
        .filter(|s| !s.own_service())
        .collect();
    warm_up(sh, &service, &scenarios, dir)?;
    let points = measure_points(
        sh,
        settings,
        &mut service,
        redis_port,
        dir,
        &scenarios,
        connections,
    )?;
    service.process.stop()?;
    Ok(points)
}

/// Each of `scenarios` for [`WARM_UP_SECONDS`], so the first point does not pay for cold
/// caches.
pub fn warm_up(
    sh: &Shell,
    service: &Running,
    scenarios: &[Scenario],
    dir: &Path,
) -> anyhow::Result<()> {
    for &scenario in scenarios {
        let url = url(service.port, scenario);
        run_wrk(sh, &script(dir, scenario), &url, 64, WARM_UP_SECONDS)?;
    }
    Ok(())
}

/// Each of `scenarios` at each of `connections`; at the budget's, the median of
/// [`BUDGET_REPEATS`] pairs.
pub fn measure_points(
    sh: &Shell,
    settings: &Settings,
    service: &mut Running,
    redis_port: u16,
    dir: &Path,
    scenarios: &[Scenario],
    connections: &[u32],
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &scenario in scenarios {
        for &connections in connections {
            // A cluster scenario without an equivalent repeats too: its figure is read
            // beside the repeated ones of the scenarios it varies.
            let repeated = scenario.redis_equivalent().is_some() || scenario.cluster();
            let repeats = if connections == BUDGET_CONNECTIONS && repeated {
                BUDGET_REPEATS
            } else {
                1
            };
            let mut pairs = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                pairs.push(measure_point(
                    sh,
                    settings,
                    service,
                    redis_port,
                    dir,
                    scenario,
                    connections,
                )?);
            }
            points.push(median_pair(pairs));
        }
    }
    Ok(points)
}

/// Starts the baseline service `READY_STARTS` times, timing spawn → `/readyz` 200; keeps
/// the last one running and reads its idle RSS.
fn start_timed(sh: &Shell, redis_port: u16) -> anyhow::Result<(Running, Startup)> {
    let mut ready_ms = Vec::with_capacity(READY_STARTS);
    let mut last = None;
    for _ in 0..READY_STARTS {
        if let Some(previous) = last.take() {
            let Running { process, .. } = previous;
            process.stop()?;
        }
        let port = free_port()?;
        let (running, ready) = start(
            sh,
            &super::service(
                &Binary::current().path,
                port,
                Backend::Standalone(redis_port),
                None,
            ),
            port,
            Stdio::null(),
        )?;
        ready_ms.push(ready.as_secs_f64() * 1e3);
        last = Some(running);
    }
    let running = last.context("no start")?;
    thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = procfs::rss_kib(running.process.pid())?;
    Ok((
        running,
        Startup {
            ready_ms,
            idle_rss_kib,
        },
    ))
}

/// Spawns the service and waits for `/readyz` 200; returns it and the time that took.
pub fn start(
    sh: &Shell,
    invocation: &crate::command::Invocation,
    port: u16,
    stdout: Stdio,
) -> anyhow::Result<(Running, Duration)> {
    let spawned = Instant::now();
    let mut process = Owned::spawn(sh, "cart-service", invocation, stdout)?;
    let ready = wait_for_200(&mut process, port, "/readyz", spawned, START_LIMIT)?;
    Ok((Running { process, port }, ready))
}

fn measure_point(
    sh: &Shell,
    settings: &Settings,
    service: &mut Running,
    redis_port: u16,
    dir: &Path,
    scenario: Scenario,
    connections: u32,
) -> anyhow::Result<Point> {
    let url = url(service.port, scenario);
    let (result, usage) = procfs::measure(service.process.pid(), || {
        run_wrk(
            sh,
            &script(dir, scenario),
            &url,
            connections,
            settings.duration,
        )
    })?;
    service.process.ensure_running()?;
    let result = result?;
    let redis = match scenario.redis_equivalent() {
        Some(load) => {
            let invocation =
                loadgen::redis_benchmark(redis_port, connections, settings.redis_requests(), &load);
            let output = invocation.to_cmd(sh).quiet().ignore_status().output()?;
            let text =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            let result =
                loadgen::parse_redis_benchmark(&text).with_context(|| invocation.to_string())?;
            Some(loadgen::RedisResult {
                cluster: load.cluster,
                ..result
            })
        }
        None => None,
    };
    let ratio = redis.as_ref().map(|r| result.rps / r.rps);
    println!(
        "==> {:<16} @ {connections:>3}: {:>7.0} req/s  p99 {:>6.2} ms  errors {}  RSS {} MiB{}",
        scenario.name(),
        result.rps,
        result.p99_ms,
        result.errors.total(),
        super::report::mib(usage.peak_rss_kib),
        redis.as_ref().map_or(String::new(), |r| format!(
            "  | redis-benchmark {:.0} req/s, ratio {:.2}",
            r.rps,
            ratio.unwrap_or_default()
        )),
    );
    Ok(Point {
        scenario: scenario.name().to_owned(),
        binary: super::report::CURRENT.to_owned(),
        connections,
        cpu_s_per_10k: per_10k(usage.cpu_seconds, result.requests),
        peak_rss_kib: usage.peak_rss_kib,
        service: result,
        redis,
        ratio,
        repeat_ratios: Vec::new(),
    })
}

/// Runs wrk and parses its JSON line.
pub fn run_wrk(
    sh: &Shell,
    script: &Path,
    url: &str,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<HttpResult> {
    let invocation = loadgen::wrk(script, url, connections, seconds);
    let output = invocation.to_cmd(sh).quiet().ignore_status().output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    loadgen::parse_wrk(&stdout).with_context(|| {
        format!(
            "{invocation} (stderr: {})",
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// CPU seconds per 10 000 requests.
pub fn per_10k(cpu_seconds: f64, requests: u64) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
    let requests = requests as f64;
    cpu_seconds / requests * 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixture;

    fn pair(rps: f64) -> Point {
        fixture::point("add", 64, rps, Some(("HINCRBY", 100_000.0)))
    }

    #[test]
    fn the_median_pair_is_kept_with_every_ratio() {
        let mut hungry = pair(50_000.0);
        hungry.peak_rss_kib = 70 * 1024;
        let kept = median_pair(vec![pair(70_000.0), hungry, pair(60_000.0)]);

        assert!((kept.service.rps - 60_000.0).abs() < 1e-9);
        assert_eq!(
            kept.peak_rss_kib,
            70 * 1024,
            "the highest peak of all pairs"
        );
        assert_eq!(kept.repeat_ratios, [0.7, 0.5, 0.6]);
        let md = {
            let mut report = fixture::report();
            report.points = vec![kept];
            report.markdown(None)
        };
        assert!(md.contains("| 0.60 (median of 0.70, 0.50, 0.60) |"), "{md}");
    }

    #[test]
    fn a_pair_with_errors_is_never_hidden_by_a_repeat() {
        let mut failed = pair(80_000.0);
        failed.service.errors.status = 3;

        let kept = median_pair(vec![pair(60_000.0), failed, pair(61_000.0)]);

        assert!(kept.failed());
    }

    #[test]
    fn without_an_equivalent_the_run_with_the_median_rate_is_kept() {
        let runs = [31_000.0, 24_000.0, 27_000.0]
            .map(|rps| fixture::point("add-cluster-wait", 64, rps, None))
            .to_vec();

        let kept = median_pair(runs);

        assert!((kept.service.rps - 27_000.0).abs() < 1e-9);
        assert!(kept.ratio.is_none() && kept.repeat_ratios.is_empty());
    }

    #[test]
    fn a_single_pair_is_kept_as_it_is() {
        let kept = median_pair(vec![pair(60_000.0)]);
        assert!(kept.repeat_ratios.is_empty());
    }
}
