//! The performance budget of issue 6, evaluated against a [`Report`]: one verdict per
//! line, each naming its target and what was measured. A line whose measurement is
//! missing (scenario not run, Jaeger absent) is not a pass: `--check` fails on it too.

use super::report::{Report, mib};

/// Concurrency the budget is stated at.
pub const BUDGET_CONNECTIONS: u32 = 64;

/// How one budget line came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Miss,
    NotMeasured,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Miss => "MISS",
            Self::NotMeasured => "NOT MEASURED",
        }
    }

    fn of(pass: bool) -> Self {
        if pass { Self::Pass } else { Self::Miss }
    }
}

/// One line of the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub name: &'static str,
    pub target: &'static str,
    pub measured: String,
    pub outcome: Outcome,
}

impl Verdict {
    fn new(name: &'static str, target: &'static str, measured: Option<(String, bool)>) -> Self {
        let (measured, outcome) = match measured {
            Some((text, pass)) => (text, Outcome::of(pass)),
            None => ("not measured".to_owned(), Outcome::NotMeasured),
        };
        Self {
            name,
            target,
            measured,
            outcome,
        }
    }
}

/// Every budget line, in the order.
pub fn evaluate(report: &Report) -> Vec<Verdict> {
    let mut verdicts = throughput(report);
    verdicts.extend(resources(report));
    verdicts
}

/// The lines about requests: throughput, latency, observability costs.
fn throughput(report: &Report) -> Vec<Verdict> {
    let at = |scenario| report.point(scenario, BUDGET_CONNECTIONS);
    let ratio = |scenario| {
        at(scenario)
            .and_then(|p| p.ratio.map(|r| (p, r)))
            .map(|(p, r)| {
                let redis = p.redis.as_ref().map_or(0.0, |r| r.rps);
                (
                    format!("{r:.2} ({:.0} vs {redis:.0} req/s)", p.service.rps),
                    r >= 0.6,
                )
            })
    };
    let cost = |name: &str, limit: f64| {
        let run = report.observability.judged(name)?;
        let fraction = run.fraction_of_baseline?;
        let cost = 1.0 - fraction;
        let cores = run
            .cpu_limit
            .map_or("on the shared cores".to_owned(), |cores| {
                format!("at a {cores}-CPU limit")
            });
        Some((
            // One decimal: a cost just over the limit must not read as the limit itself.
            format!(
                "costs {:.1} % ({:.1} % of baseline, {cores})",
                cost * 100.0,
                fraction * 100.0
            ),
            cost <= limit,
        ))
    };
    vec![
        Verdict::new("add@64 throughput", "≥ 0.6 × HINCRBY req/s", ratio("add")),
        Verdict::new(
            "add@64 p99",
            "< 5 ms",
            at("add").map(|p| {
                (
                    format!("{:.2} ms", p.service.p99_ms),
                    p.service.p99_ms < 5.0,
                )
            }),
        ),
        Verdict::new("get@64 throughput", "≥ 0.6 × HGETALL req/s", ratio("get")),
        Verdict::new(
            "health@64 throughput",
            "≥ 60 000 req/s",
            at("health").map(|p| {
                (
                    format!("{:.0} req/s", p.service.rps),
                    p.service.rps >= 60_000.0,
                )
            }),
        ),
        Verdict::new(
            "full observability",
            "costs ≤ 30 % of add",
            cost("full", 0.30),
        ),
        Verdict::new(
            "default sampling",
            "costs ≤ 10 % of add",
            cost("default", 0.10),
        ),
    ]
}

/// The lines about the process (memory, startup) and the run's errors.
fn resources(report: &Report) -> Vec<Verdict> {
    vec![
        Verdict::new(
            "idle RSS",
            "< 20 MiB",
            Some((
                format!("{} MiB", mib(report.startup.idle_rss_kib)),
                report.startup.idle_rss_kib < 20 * 1024,
            )),
        ),
        Verdict::new(
            "RSS under load",
            "< 64 MiB",
            report
                .peak_rss_kib()
                .map(|kib| (format!("{} MiB peak", mib(kib)), kib < 64 * 1024)),
        ),
        Verdict::new(
            "ready",
            "< 100 ms",
            report
                .startup
                .worst_ready_ms()
                .map(|ms| (format!("{ms:.1} ms (worst start)"), ms < 100.0)),
        ),
        Verdict::new(
            "errors",
            "no non-2xx, no socket error",
            Some((
                if report.failed() {
                    "some requests failed".to_owned()
                } else {
                    "none".to_owned()
                },
                !report.failed(),
            )),
        ),
    ]
}

/// One line per verdict, for the terminal.
pub fn lines(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| {
            format!(
                "{:<12} {:<22} target {:<28} measured {}",
                v.outcome.word(),
                v.name,
                v.target,
                v.measured
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;
    use crate::bench::fixture;

    fn outcome(verdicts: &[Verdict], name: &str) -> Outcome {
        verdicts.iter().find(|v| v.name == name).unwrap().outcome
    }

    #[test]
    fn a_report_inside_every_target_passes_every_line() {
        let verdicts = evaluate(&fixture::report());

        assert!(
            verdicts.iter().all(|v| v.outcome == Outcome::Pass),
            "{}",
            lines(&verdicts)
        );
        assert_eq!(verdicts.len(), 10);
    }

    #[test]
    fn the_budget_judges_only_the_current_binary() {
        let report = fixture::report_against();

        let verdicts = evaluate(&report);

        assert!(
            verdicts.iter().all(|v| v.outcome == Outcome::Pass),
            "the other revision misses every line, the current one none: {}",
            lines(&verdicts)
        );
        let full = verdicts
            .iter()
            .find(|v| v.name == "full observability")
            .unwrap();
        assert!(
            full.measured.contains("75.0 % of baseline"),
            "{}",
            full.measured
        );
    }

    #[test]
    fn a_ratio_below_six_tenths_misses() {
        let mut report = fixture::report();
        report.points[1].ratio = Some(0.59); // add@64

        let verdicts = evaluate(&report);

        assert_eq!(outcome(&verdicts, "add@64 throughput"), Outcome::Miss);
        assert_eq!(outcome(&verdicts, "get@64 throughput"), Outcome::Pass);
    }

    #[test]
    fn observability_costs_are_one_minus_the_fraction_of_baseline() {
        let mut report = fixture::report();
        report.observability.runs[4].fraction_of_baseline = Some(0.69);
        report.observability.runs[5].fraction_of_baseline = Some(0.90);

        let verdicts = evaluate(&report);

        assert_eq!(outcome(&verdicts, "full observability"), Outcome::Miss);
        assert_eq!(outcome(&verdicts, "default sampling"), Outcome::Pass);
    }

    #[test]
    fn a_cost_just_over_the_limit_does_not_read_as_the_limit() {
        let mut report = fixture::report();
        report.observability.runs[5].fraction_of_baseline = Some(0.8987);

        let verdicts = evaluate(&report);

        let default = verdicts
            .iter()
            .find(|v| v.name == "default sampling")
            .unwrap();
        assert_eq!(default.outcome, Outcome::Miss);
        assert!(
            default
                .measured
                .starts_with("costs 10.1 % (89.9 % of baseline"),
            "{}",
            default.measured
        );
    }

    #[test]
    fn missing_measurements_are_not_passes() {
        let mut report = fixture::report();
        report.points.retain(|p| p.scenario != "health");
        report.observability.runs.clear();

        let verdicts = evaluate(&report);

        assert_eq!(
            outcome(&verdicts, "health@64 throughput"),
            Outcome::NotMeasured
        );
        assert_eq!(
            outcome(&verdicts, "full observability"),
            Outcome::NotMeasured
        );
    }

    #[test]
    fn memory_startup_and_errors_have_hard_limits() {
        let mut report = fixture::report();
        report.startup.idle_rss_kib = 20 * 1024;
        report.startup.ready_ms.push(100.0);
        report.points[1].peak_rss_kib = 64 * 1024;
        report.points[2].service.errors.status = 1;

        let verdicts = evaluate(&report);

        for name in ["idle RSS", "ready", "RSS under load", "errors"] {
            assert_eq!(outcome(&verdicts, name), Outcome::Miss, "{name}");
        }
    }
}
