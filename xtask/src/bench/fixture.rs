//! A plausible [`Report`] for the unit tests of the budget, the Markdown and the chart:
//! `add`, `get` and `health` at 16 and 64 connections, inside every budget line; and the
//! same with `--against`, the other revision's binary outside every line.

use super::loadgen::{Errors, HttpResult, RedisResult};
use super::report::{CURRENT, Machine, Observability, ObservedRun, Point, Report, Startup};

fn http(rps: f64, p99_ms: f64) -> HttpResult {
    HttpResult {
        requests: 100_000,
        seconds: 5.0,
        rps,
        p50_ms: p99_ms / 3.0,
        p99_ms,
        p999_ms: p99_ms * 2.0,
        max_ms: p99_ms * 4.0,
        errors: Errors::default(),
    }
}

pub fn point(scenario: &str, connections: u32, rps: f64, redis: Option<(&str, f64)>) -> Point {
    Point {
        scenario: scenario.to_owned(),
        binary: CURRENT.to_owned(),
        connections,
        service: http(rps, 2.0),
        peak_rss_kib: 30 * 1024,
        cpu_s_per_10k: 0.5,
        redis: redis.map(|(command, redis_rps)| RedisResult {
            command: command.to_owned(),
            cluster: false,
            rps: redis_rps,
            p50_ms: 0.3,
            p99_ms: 0.9,
        }),
        ratio: redis.map(|(_, redis_rps)| rps / redis_rps),
        repeat_ratios: Vec::new(),
    }
}

fn observed(name: &str, sampler: &str, fraction: f64, cpu_limit: Option<f64>) -> ObservedRun {
    ObservedRun {
        name: name.to_owned(),
        binary: CURRENT.to_owned(),
        sampler: sampler.to_owned(),
        cpu_limit,
        connections: 64,
        service: http(30_000.0 * fraction, 3.0),
        peak_rss_kib: 40 * 1024,
        // The baseline the cheapest, the default sampling in between.
        cpu_s_per_10k: match name {
            "baseline" => 0.5,
            "default" => 0.55,
            _ => 0.7,
        },
        collector_cpu_s_per_10k: 0.3,
        workers_waited_s_per_10k: 0.04,
        fraction_of_baseline: Some(fraction),
        round_fractions: Vec::new(),
        stdout_bytes: 4096,
        log_file_bytes: 4096,
        traces_arrived: true,
    }
}

pub fn report() -> Report {
    let hincrby = "HINCRBY rb:cart:{__rand_int__} p-__rand_int__ 1";
    let hgetall = "HGETALL rb:filled:__rand_int__";
    Report {
        started: "2026-11-02T10:00:00Z".to_owned(),
        machine: Machine {
            cores: 2,
            load_before: [0.5, 0.6, 0.7],
            load_after: [1.9, 1.0, 0.8],
        },
        duration_s: 5,
        startup: Startup {
            ready_ms: vec![12.0, 15.5],
            idle_rss_kib: 9 * 1024,
        },
        points: vec![
            point("add", 16, 25_000.0, Some((hincrby, 40_000.0))),
            point("add", 64, 30_000.0, Some((hincrby, 45_000.0))),
            point("get", 16, 24_000.0, Some((hgetall, 35_000.0))),
            point("get", 64, 28_000.0, Some((hgetall, 40_000.0))),
            point("health", 16, 62_000.0, Some(("PING", 80_000.0))),
            point("health", 64, 70_000.0, Some(("PING", 90_000.0))),
        ],
        observability: Observability {
            not_run: None,
            limit_not_run: None,
            runs: vec![
                observed("baseline", "always_off", 1.0, None),
                observed("full", "always_on", 0.8, None),
                observed("default", "parentbased_traceidratio 0.1", 0.95, None),
                observed("baseline", "always_off", 1.0, Some(0.5)),
                observed("full", "always_on", 0.75, Some(0.5)),
                observed("default", "parentbased_traceidratio 0.1", 0.92, Some(0.5)),
            ],
        },
        elapsed_s: 120.0,
    }
}

/// Cluster points to add to [`report`]: `add-cluster`, `get-cluster` and
/// `add-cluster-wait` at 64 connections, each costlier than the point it varies, and
/// `add-cluster` at 256, where [`report`] has no `add`.
pub fn cluster_points() -> Vec<Point> {
    let cluster = |scenario, connections, rps, cpu_s_per_10k, redis: Option<(&str, f64)>| {
        let mut point = point(scenario, connections, rps, redis);
        point.cpu_s_per_10k = cpu_s_per_10k;
        if let Some(redis) = &mut point.redis {
            redis.cluster = true;
        }
        point
    };
    let hincrby = "HINCRBY rb:cart:{tag}:__rand_int__ p-__rand_int__ 1";
    vec![
        cluster("add-cluster", 64, 24_000.0, 0.6, Some((hincrby, 40_000.0))),
        cluster("add-cluster", 256, 25_000.0, 0.6, Some((hincrby, 41_000.0))),
        cluster(
            "get-cluster",
            64,
            21_000.0,
            0.5,
            Some(("HGETALL rb:filled:{tag}", 35_000.0)),
        ),
        cluster("add-cluster-wait", 64, 12_000.0, 0.8, None),
    ]
}

/// The label of the other revision in [`report_against`].
pub const OTHER: &str = "aeac87b";

/// [`report`] with `--against`: the other revision's points at 64 connections and its
/// observability runs, each outside the budget (half the throughput, a failed request,
/// twice the memory limit), so a test can tell that the budget judges only the current.
pub fn report_against() -> Report {
    let mut report = report();
    let failing = |rps: f64| HttpResult {
        errors: Errors {
            status: 1,
            ..Errors::default()
        },
        ..http(rps, 3.0)
    };
    let points: Vec<Point> = report
        .points
        .iter()
        .filter(|p| p.connections == 64)
        .map(|p| Point {
            binary: OTHER.to_owned(),
            service: failing(p.service.rps / 2.0),
            peak_rss_kib: 128 * 1024,
            ratio: p.ratio.map(|r| r / 2.0),
            ..p.clone()
        })
        .collect();
    let runs: Vec<ObservedRun> = report
        .observability
        .runs
        .iter()
        .map(|r| ObservedRun {
            binary: OTHER.to_owned(),
            service: failing(r.service.rps / 2.0),
            peak_rss_kib: 128 * 1024,
            cpu_s_per_10k: r.cpu_s_per_10k * 2.0,
            fraction_of_baseline: r
                .fraction_of_baseline
                .map(|f| if r.name == "baseline" { f } else { f - 0.3 }),
            ..r.clone()
        })
        .collect();
    report.points.extend(points);
    report.observability.runs.extend(runs);
    report
}
