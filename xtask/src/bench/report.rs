//! A bench run's results as data (serialised to the JSON report as they are) and their
//! Markdown rendering: the per-point table, startup and memory, the observability costs,
//! the machine's load around the run and, with `--check`, the budget's verdicts. The
//! cluster scenarios' rows sit in the same table, and a section of their own reads each
//! beside the one-Redis scenario it varies. With `--against`, points and runs of the other
//! revision's binary sit beside the current one's, labelled, and only the current one's
//! are judged.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::budget::Verdict;
use super::loadgen::{HttpResult, RedisResult};
use super::scenarios::Scenario;

/// The label of the working tree's binary; another revision's carries its short commit id.
pub const CURRENT: &str = "current";

/// The binary of a point or run in a report from before `--against`: the only one, current.
fn current() -> String {
    CURRENT.to_owned()
}

/// Everything one `cargo xtask bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// UTC start of the run, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    pub machine: Machine,
    pub duration_s: u64,
    pub startup: Startup,
    pub points: Vec<Point>,
    pub observability: Observability,
    /// Wall-clock seconds of the whole run, the release build included.
    pub elapsed_s: f64,
}

/// The machine and how busy it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
}

/// Startup and idle memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Startup {
    /// Spawn to the first `/readyz` 200 with Redis up, one per start.
    pub ready_ms: Vec<f64>,
    /// Resident memory once ready, before any load.
    pub idle_rss_kib: u64,
}

impl Startup {
    pub fn worst_ready_ms(&self) -> Option<f64> {
        self.ready_ms.iter().copied().reduce(f64::max)
    }
}

/// One scenario at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub scenario: String,
    /// Which binary served it: [`CURRENT`] or the `--against` revision's label.
    #[serde(default = "current")]
    pub binary: String,
    pub connections: u32,
    pub service: HttpResult,
    pub peak_rss_kib: u64,
    pub cpu_s_per_10k: f64,
    pub redis: Option<RedisResult>,
    /// Service requests/s over redis-benchmark's.
    pub ratio: Option<f64>,
    /// Every pair's ratio when the point was measured more than once (this point is the
    /// median pair); empty otherwise.
    pub repeat_ratios: Vec<f64>,
}

/// The ratio, and the pairs it is the median of when there were several.
fn ratio_cell(point: &Point) -> String {
    match point.ratio {
        None => "—".to_owned(),
        Some(ratio) if point.repeat_ratios.len() > 1 => {
            let all: Vec<String> = point
                .repeat_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect();
            format!("{ratio:.2} (median of {})", all.join(", "))
        }
        Some(ratio) => format!("{ratio:.2}"),
    }
}

impl Point {
    pub fn failed(&self) -> bool {
        self.service.errors.total() > 0
    }

    /// The service's CPU per request, in microseconds.
    pub fn cpu_us(&self) -> f64 {
        self.cpu_s_per_10k * 100.0
    }
}

/// The `add` runs with tracing and logging on, against the baseline `add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observability {
    /// Why the runs did not happen, when they did not.
    pub not_run: Option<String>,
    /// Why the runs under a CPU limit did not happen, when the others did but they did not.
    pub limit_not_run: Option<String>,
    pub runs: Vec<ObservedRun>,
}

impl Observability {
    /// The run the budget judges for `name`: the one under the CPU limit when there is
    /// one, else the one on the shared cores.
    pub fn judged(&self, name: &str) -> Option<&ObservedRun> {
        let named = || {
            self.runs
                .iter()
                .filter(move |run| run.name == name && run.binary == CURRENT)
        };
        named()
            .find(|run| run.cpu_limit.is_some())
            .or_else(|| named().next())
    }
}

/// One observability setting's `add` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservedRun {
    pub name: String,
    /// Which binary ran: [`CURRENT`] or the `--against` revision's label.
    #[serde(default = "current")]
    pub binary: String,
    pub sampler: String,
    /// CPUs the service's cgroup allowed (a pod's limit); `None` on the shared cores.
    pub cpu_limit: Option<f64>,
    pub connections: u32,
    pub service: HttpResult,
    pub peak_rss_kib: u64,
    pub cpu_s_per_10k: f64,
    /// The local Jaeger's CPU over the same requests: it shares the cores being measured.
    pub collector_cpu_s_per_10k: f64,
    /// Time the service's Tokio workers were runnable but waited for a CPU (taken by
    /// Jaeger, Redis, wrk or the service's log writer), per 10 000 requests.
    pub workers_waited_s_per_10k: f64,
    /// Throughput over the baseline `add` at the same concurrency.
    pub fraction_of_baseline: Option<f64>,
    /// Every round's fraction when there were several (this run is the median one).
    pub round_fractions: Vec<f64>,
    /// Bytes the access log wrote to stdout and to `LOG_FILE`.
    pub stdout_bytes: u64,
    pub log_file_bytes: u64,
    /// Whether Jaeger listed the service after the run (its spans arrived).
    pub traces_arrived: bool,
}

impl ObservedRun {
    /// Every round's fraction in percent, or "—" for a single round.
    pub fn fractions_word(&self) -> String {
        if self.round_fractions.len() < 2 {
            return "—".to_owned();
        }
        let all: Vec<String> = self
            .round_fractions
            .iter()
            .map(|f| format!("{:.0}", f * 100.0))
            .collect();
        all.join(", ")
    }

    /// "yes" or "no" for the traces column; "—" for the baseline, which exports nothing.
    pub fn traces_word(&self) -> &'static str {
        match (self.name.as_str(), self.traces_arrived) {
            ("baseline", _) => "—",
            (_, true) => "yes",
            (_, false) => "no",
        }
    }
}

impl Report {
    /// Whether any request to the current binary failed: a non-2xx answer or a socket
    /// error anywhere. The other revision's errors show in its rows and fail nothing.
    pub fn failed(&self) -> bool {
        self.current_points().any(Point::failed)
            || self
                .current_runs()
                .any(|run| run.service.errors.total() > 0)
    }

    /// The current binary's point for `scenario` at `connections`, if it was measured.
    pub fn point(&self, scenario: &str, connections: u32) -> Option<&Point> {
        self.current_points()
            .find(|p| p.scenario == scenario && p.connections == connections)
    }

    /// The current binary's highest peak RSS.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let points = self.current_points().map(|p| p.peak_rss_kib);
        let runs = self.current_runs().map(|r| r.peak_rss_kib);
        points.chain(runs).max()
    }

    /// The current binary's points, the ones the budget and the chart use.
    pub fn current_points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(|p| p.binary == CURRENT)
    }

    fn current_runs(&self) -> impl Iterator<Item = &ObservedRun> {
        self.observability
            .runs
            .iter()
            .filter(|r| r.binary == CURRENT)
    }

    /// The `--against` revision's label, when the report measured one.
    fn against(&self) -> Option<&str> {
        let points = self.points.iter().map(|p| p.binary.as_str());
        let runs = self.observability.runs.iter().map(|r| r.binary.as_str());
        points.chain(runs).find(|&binary| binary != CURRENT)
    }

    /// A point's scenario or a run's setting, with its binary when there were two.
    fn labelled(&self, name: &str, binary: &str) -> String {
        match self.against() {
            Some(_) => format!("{name} ({binary})"),
            None => name.to_owned(),
        }
    }

    /// The Markdown report; `verdicts` are appended when the budget was checked.
    pub fn markdown(&self, verdicts: Option<&[Verdict]>) -> String {
        let mut md = String::new();
        let run = if self.failed() { "FAIL" } else { "PASS" };
        let _ = writeln!(
            md,
            "# cargo xtask bench, {}\n\n{} cores; load average {} before, {} after (the run's own load \
             included); {} s per point; \
             run took {:.0} s. Requests: **{run}** (any non-2xx or socket error fails the run).\n",
            self.started,
            self.machine.cores,
            load(self.machine.load_before),
            load(self.machine.load_after),
            self.duration_s,
            self.elapsed_s,
        );
        md.push_str(
            "| scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB \
             | CPU s / 10k req | redis-benchmark | its req/s | its p99 ms | ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
        );
        for p in &self.points {
            let s = &p.service;
            let (command, rps, p99) = p.redis.as_ref().map_or_else(
                || ("—".to_owned(), "—".to_owned(), "—".to_owned()),
                |r| {
                    (
                        if r.cluster {
                            format!("--cluster {}", r.command)
                        } else {
                            r.command.clone()
                        },
                        format!("{:.0}", r.rps),
                        format!("{:.2}", r.p99_ms),
                    )
                },
            );
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} | `{command}` | {rps} | {p99} | {} |",
                self.labelled(&p.scenario, &p.binary),
                p.connections,
                s.rps,
                s.p50_ms,
                s.p99_ms,
                s.p999_ms,
                s.errors.total(),
                mib(p.peak_rss_kib),
                p.cpu_s_per_10k,
                ratio_cell(p),
            );
        }
        md.push_str(&self.cluster_markdown());
        let _ = writeln!(
            md,
            "\nStartup: ready (spawn → `/readyz` 200, Redis up) in {} ms; idle RSS {} MiB.",
            self.startup
                .ready_ms
                .iter()
                .map(|ms| format!("{ms:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            mib(self.startup.idle_rss_kib),
        );
        md.push_str(&self.observability_markdown());
        if let Some(verdicts) = verdicts {
            md.push_str("\n| budget | target | measured | verdict |\n|---|---|---|---|\n");
            for verdict in verdicts {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    verdict.name,
                    verdict.target,
                    verdict.measured,
                    verdict.outcome.word()
                );
            }
        }
        md
    }

    /// The current binary's cluster points beside the points of the scenarios they vary
    /// at the same concurrency, and how they ran; empty without cluster points.
    fn cluster_markdown(&self) -> String {
        let cluster: Vec<(&Point, Scenario)> = self
            .current_points()
            .filter_map(|p| Some((p, Scenario::named(&p.scenario).filter(|s| s.cluster())?)))
            .collect();
        if cluster.is_empty() {
            return String::new();
        }
        let mut md = String::from(CLUSTER_NOTE);
        let rows: Vec<String> = cluster
            .iter()
            .flat_map(|&(point, scenario)| {
                scenario
                    .beside()
                    .iter()
                    .filter_map(|other| self.point(other.name(), point.connections))
                    .map(move |other| beside_row(point, other))
            })
            .collect();
        if !rows.is_empty() {
            md.push_str(
                "\n| scenario | conns | req/s | CPU µs / req | p99 ms | beside | req/s | CPU µs / req \
                 | p99 ms |\n|---|---:|---:|---:|---:|---|---:|---:|---:|\n",
            );
            md.push_str(&rows.concat());
        }
        md
    }

    fn observability_markdown(&self) -> String {
        let mut md = String::from("\n### Observability cost (`add`)\n\n");
        if let Some(reason) = &self.observability.not_run {
            let _ = writeln!(md, "Not run: {reason}");
            return md;
        }
        md.push_str(
            "| setting | CPU limit | sampler | conns | req/s | of baseline | p99 ms | errors \
             | peak RSS MiB | CPU s / 10k req | workers waited for a CPU s / 10k req \
             | Jaeger CPU s / 10k req | stdout KiB | LOG_FILE KiB | traces in Jaeger |\n\
             |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for run in &self.observability.runs {
            let _ = writeln!(
                md,
                "| {} | {} | `{}` | {} | {:.0} | {} | {:.2} | {} | {} | {:.2} | {:.3} | {:.2} | {} | {} | {} |",
                self.labelled(&run.name, &run.binary),
                run.cpu_limit
                    .map_or("—".to_owned(), |cores| format!("{cores}")),
                run.sampler,
                run.connections,
                run.service.rps,
                run.fraction_of_baseline.map_or("—".to_owned(), |f| {
                    if run.round_fractions.len() > 1 {
                        format!("{:.0} % (median of {} %)", f * 100.0, run.fractions_word())
                    } else {
                        format!("{:.0} %", f * 100.0)
                    }
                }),
                run.service.p99_ms,
                run.service.errors.total(),
                mib(run.peak_rss_kib),
                run.cpu_s_per_10k,
                run.workers_waited_s_per_10k,
                run.collector_cpu_s_per_10k,
                run.stdout_bytes / 1024,
                run.log_file_bytes / 1024,
                run.traces_word(),
            );
        }
        md.push_str(&self.comparison());
        md.push_str(&self.limit_note());
        md
    }

    /// Each setting of the current binary beside the same setting of the `--against`
    /// revision, on the shared cores and under the CPU limit; empty without one.
    fn comparison(&self) -> String {
        let Some(other) = self.against() else {
            return String::new();
        };
        let mut md = format!("\nCurrent against {other}, the current figure first.");
        for limited in [false, true] {
            let pairs: Vec<String> = self
                .current_runs()
                .filter(|ours| ours.cpu_limit.is_some() == limited)
                .filter_map(|ours| {
                    let theirs = self.observability.runs.iter().find(|r| {
                        r.binary == other && r.name == ours.name && r.cpu_limit.is_some() == limited
                    })?;
                    Some(beside(ours, theirs))
                })
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let place = match self.current_runs().find_map(|run| run.cpu_limit) {
                Some(cores) if limited => format!("At the {cores}-CPU limit"),
                _ => "On the shared cores".to_owned(),
            };
            let _ = write!(md, " {place}: {}.", pairs.join("; "));
        }
        md.push_str(" The budget and the run's PASS or FAIL judge the current binary only.\n");
        md
    }

    /// What the CPU-limit column means, and which rows the budget judges.
    fn limit_note(&self) -> String {
        let limit = self.observability.runs.iter().find_map(|run| run.cpu_limit);
        match (limit, &self.observability.limit_not_run) {
            (Some(cores), _) => format!(
                "\nRows with a CPU limit ran the service in a cgroup of its own limited to {cores} \
                 CPU, as a pod at its limit: its own CPU sets the pace, and the budget judges these \
                 rows. Rows without one ran it on the shared cores, where Jaeger, Redis and wrk \
                 take CPU from it as well.\n"
            ),
            (None, Some(reason)) => format!(
                "\nNo runs under a CPU limit ({reason}): the budget judges the shared-core rows, \
                 where Jaeger, Redis and wrk take CPU from the service as well.\n"
            ),
            (None, None) => String::new(),
        }
    }
}

/// What ran the cluster scenarios, and how their figures read.
const CLUSTER_NOTE: &str = "\n### Redis Cluster beside one Redis\n\n\
The `-cluster` scenarios ran on services of their own with `REDIS_MODE=cluster` and every \
node's URL in `REDIS_URL`, against a Redis Cluster of 6 redis-servers on loopback (3 \
masters, a replica each) that shares these cores with the service, wrk and the one Redis: \
read the ratios, not the rates. `add-cluster-wait` also had `REDIS_WAIT_REPLICAS=1`, so \
each write waited for its replica (`WAIT 1 250` pipelined after it). Their redis-benchmark \
ran with `--cluster`, on one thread as the others: the same command, its `{tag}` the hash \
tag of a slot of the client's master, so its load spreads over the masters as the carts' \
does (its HGETALL reads 20-field hashes it wrote under those tags). `add-cluster-wait` has no \
such equivalent, since redis-benchmark sends one command a request and a write that waits \
for its replica takes two: it is read beside `add-cluster`. Below, each cluster point \
beside the point it varies, at the same connections: its figures, then how they compare \
(req/s as a multiple, CPU and p99 as a difference).\n";

/// A cluster point's row beside `other`'s.
fn beside_row(point: &Point, other: &Point) -> String {
    format!(
        "| {} | {} | {:.0} | {:.1} | {:.2} | `{}` | ×{:.2} | {:+.1} | {:+.2} |\n",
        point.scenario,
        point.connections,
        point.service.rps,
        point.cpu_us(),
        point.service.p99_ms,
        other.scenario,
        point.service.rps / other.service.rps,
        point.cpu_us() - other.cpu_us(),
        point.service.p99_ms - other.service.p99_ms,
    )
}

/// One setting's share of its baseline (not the baseline's, always 100 %) and CPU per
/// request, ours and then theirs.
fn beside(ours: &ObservedRun, theirs: &ObservedRun) -> String {
    let cpu = format!(
        "{:.2} vs {:.2} CPU s / 10k req",
        ours.cpu_s_per_10k, theirs.cpu_s_per_10k
    );
    match (ours.fraction_of_baseline, theirs.fraction_of_baseline) {
        (Some(a), Some(b)) if ours.name != "baseline" => format!(
            "{} {:.0} % vs {:.0} % of baseline, {cpu}",
            ours.name,
            a * 100.0,
            b * 100.0
        ),
        _ => format!("{} {cpu}", ours.name),
    }
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // memory sizes are far below 2^52 KiB
    let mib = kib as f64 / 1024.0;
    format!("{mib:.1}")
}

fn load(load: [f64; 3]) -> String {
    format!("{:.2} / {:.2} / {:.2}", load[0], load[1], load[2])
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC).
pub fn utc_timestamp(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(i64::MAX);
    let rest = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::budget;
    use crate::bench::fixture;

    #[test]
    fn markdown_has_a_row_per_point_with_the_ratio() {
        let md = fixture::report().markdown(None);

        assert!(md.contains("Requests: **PASS**"), "{md}");
        assert!(
            md.contains(
                "| add | 64 | 30000 | 0.67 | 2.00 | 4.00 | 0 | 30.0 | 0.50 \
                 | `HINCRBY rb:cart:{__rand_int__} p-__rand_int__ 1` | 45000 | 0.90 | 0.67 |"
            ),
            "{md}"
        );
        assert!(md.contains(
            "ready (spawn → `/readyz` 200, Redis up) in 12.0, 15.5 ms; idle RSS 9.0 MiB"
        ));
        assert!(
            md.contains("| full | — | `always_on` | 64 | 24000 | 80 % |"),
            "{md}"
        );
        assert!(
            md.contains("| full | 0.5 | `always_on` | 64 | 22500 | 75 % |"),
            "{md}"
        );
        assert!(
            md.contains("| 40.0 | 0.70 | 0.040 | 0.30 | 4 | 4 | yes |"),
            "the service's CPU, its wait for a CPU, then Jaeger's CPU: {md}"
        );
        assert!(
            md.contains("limited to 0.5 CPU, as a pod at its limit"),
            "{md}"
        );
        assert!(!md.contains("| budget |"));
    }

    #[test]
    fn an_error_anywhere_fails_the_run_and_verdicts_are_appended() {
        let mut report = fixture::report();
        report.observability.runs[1].service.errors.read = 1;
        let verdicts = budget::evaluate(&report);

        let md = report.markdown(Some(&verdicts));

        assert!(report.failed());
        assert!(md.contains("Requests: **FAIL**"), "{md}");
        assert!(
            md.contains("| errors | no non-2xx, no socket error | some requests failed | MISS |"),
            "{md}"
        );
    }

    #[test]
    fn skipped_observability_says_why() {
        let mut report = fixture::report();
        report.observability = Observability {
            not_run: Some("jaeger missing".to_owned()),
            limit_not_run: None,
            runs: Vec::new(),
        };

        assert!(report.markdown(None).contains("Not run: jaeger missing"));
    }

    #[test]
    fn runs_without_a_cpu_limit_say_why_and_are_judged() {
        let mut report = fixture::report();
        report
            .observability
            .runs
            .retain(|run| run.cpu_limit.is_none());
        report.observability.limit_not_run = Some("no cgroup CPU controller".to_owned());

        let md = report.markdown(None);

        assert!(
            md.contains("No runs under a CPU limit (no cgroup CPU controller)"),
            "{md}"
        );
        let judged = report.observability.judged("full").unwrap();
        assert_eq!(judged.cpu_limit, None);
    }

    #[test]
    fn the_budget_judges_the_runs_under_the_cpu_limit() {
        let report = fixture::report();

        let judged = report.observability.judged("full").unwrap();

        assert_eq!(judged.cpu_limit, Some(0.5));
        assert_eq!(judged.fraction_of_baseline, Some(0.75));
    }

    #[test]
    fn with_another_revision_rows_are_labelled_and_each_setting_compared() {
        let report = fixture::report_against();

        let md = report.markdown(None);

        assert!(
            md.contains("| add (current) | 64 | 30000 |")
                && md.contains("| add (aeac87b) | 64 | 15000 |"),
            "{md}"
        );
        assert!(
            md.contains("| full (current) | 0.5 | `always_on` | 64 | 22500 | 75 % |"),
            "{md}"
        );
        assert!(
            md.contains("| full (aeac87b) | 0.5 | `always_on` | 64 | 11250 | 45 % |"),
            "{md}"
        );
        assert!(
            md.contains(
                "Current against aeac87b, the current figure first. On the shared cores: \
                 baseline 0.50 vs 1.00 CPU s / 10k req; \
                 full 80 % vs 50 % of baseline, 0.70 vs 1.40 CPU s / 10k req; \
                 default 95 % vs 65 % of baseline, 0.55 vs 1.10 CPU s / 10k req. \
                 At the 0.5-CPU limit: baseline 0.50 vs 1.00 CPU s / 10k req; \
                 full 75 % vs 45 % of baseline"
            ),
            "{md}"
        );
        assert!(
            md.contains("Requests: **PASS**"),
            "the other revision's errors fail nothing: {md}"
        );
    }

    #[test]
    fn a_json_report_from_before_against_parses_as_the_current_binarys() {
        let mut json = serde_json::to_value(fixture::report()).unwrap();
        let unlabel = |item: &mut serde_json::Value| {
            item.as_object_mut().unwrap().remove("binary").unwrap();
        };
        json["points"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(unlabel);
        json["observability"]["runs"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(unlabel);

        let report: Report = serde_json::from_value(json).unwrap();

        assert!(report.points.iter().all(|p| p.binary == CURRENT));
        assert!(
            report
                .observability
                .runs
                .iter()
                .all(|r| r.binary == CURRENT)
        );
        assert!(!report.markdown(None).contains("(current)"));
    }

    #[test]
    fn cluster_points_are_read_beside_the_points_they_vary() {
        let mut report = fixture::report();
        report.points.extend(fixture::cluster_points());

        let md = report.markdown(None);

        assert!(
            md.contains(
                "| add-cluster | 64 | 24000 | 0.67 | 2.00 | 4.00 | 0 | 30.0 | 0.60 \
                 | `--cluster HINCRBY rb:cart:{tag}:__rand_int__ p-__rand_int__ 1` | 40000 | 0.90 | 0.60 |"
            ),
            "its row in the table, its redis-benchmark marked: {md}"
        );
        assert!(
            md.contains("| add-cluster-wait | 64 | 12000 |") && md.contains("| `—` | — | — | —"),
            "no equivalent: {md}"
        );
        assert!(md.contains("### Redis Cluster beside one Redis"), "{md}");
        for row in [
            "| add-cluster | 64 | 24000 | 60.0 | 2.00 | `add` | ×0.80 | +10.0 | +0.00 |",
            "| get-cluster | 64 | 21000 | 50.0 | 2.00 | `get` | ×0.75 | +0.0 | +0.00 |",
            "| add-cluster-wait | 64 | 12000 | 80.0 | 2.00 | `add-cluster` | ×0.50 | +20.0 | +0.00 |",
            "| add-cluster-wait | 64 | 12000 | 80.0 | 2.00 | `add` | ×0.40 | +30.0 | +0.00 |",
        ] {
            assert!(md.contains(row), "{row} in {md}");
        }
        assert_eq!(
            md.matches("| add-cluster | 256 |").count(),
            1,
            "in the table only: `add` was not measured at 256 connections: {md}"
        );
    }

    #[test]
    fn without_cluster_points_there_is_no_cluster_section() {
        let md = fixture::report().markdown(None);

        assert!(!md.contains("Redis Cluster"), "{md}");
    }

    #[test]
    fn peak_rss_covers_the_observability_runs() {
        let report = fixture::report();

        assert_eq!(report.peak_rss_kib(), Some(40 * 1024));
        assert_eq!(mib(1536), "1.5");
    }
}
