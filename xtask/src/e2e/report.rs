//! The summary `e2e` and `compose-smoke` print at the end: every step with its outcome,
//! its time and what it measured, so a run's evidence fits on one screen.

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

/// How a step ended.
#[derive(Debug)]
pub enum Outcome {
    /// Passed, with what it found (a figure, a name).
    Passed(String),
    Failed(anyhow::Error),
    /// Not run, and why.
    Skipped(String),
}

/// One row of the summary.
#[derive(Debug)]
pub struct Row {
    pub name: &'static str,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The rows so far, under a title.
#[derive(Debug)]
pub struct Report {
    title: String,
    started: Instant,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            started: Instant::now(),
            rows: Vec::new(),
        }
    }

    /// Records a step that was not run.
    pub fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        let why = why.into();
        println!("==> {name}: skipped ({why})");
        self.rows.push(Row {
            name,
            outcome: Outcome::Skipped(why),
            elapsed: Duration::ZERO,
        });
    }

    /// Records a finished step and says so at once; true when it passed.
    pub fn record(
        &mut self,
        name: &'static str,
        started: Instant,
        result: anyhow::Result<String>,
    ) -> bool {
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(found) => {
                println!("==> {name}: ok in {:.1}s: {found}", elapsed.as_secs_f64());
                Outcome::Passed(found)
            }
            Err(error) => {
                println!(
                    "==> {name}: FAILED after {:.1}s: {error:#}",
                    elapsed.as_secs_f64()
                );
                Outcome::Failed(error)
            }
        };
        let passed = matches!(outcome, Outcome::Passed(_));
        self.rows.push(Row {
            name,
            outcome,
            elapsed,
        });
        passed
    }

    /// The names of the steps that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.rows
            .iter()
            .filter(|row| matches!(row.outcome, Outcome::Failed(_)))
            .map(|row| row.name)
            .collect()
    }

    /// Seconds since the report began.
    pub fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `==> summary` and one aligned row per step.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|row| row.name.len())
            .max()
            .unwrap_or(4);
        let mut text = format!("==> {} summary", self.title);
        for row in &self.rows {
            let (verdict, detail) = match &row.outcome {
                Outcome::Passed(found) => ("ok", found.clone()),
                Outcome::Failed(error) => ("FAILED", format!("{error:#}")),
                Outcome::Skipped(why) => ("skipped", why.clone()),
            };
            let _ = write!(
                text,
                "\n    {verdict:<7}  {:<width$}  {:>6.1}s  {detail}",
                row.name,
                row.elapsed.as_secs_f64(),
            );
        }
        let _ = write!(text, "\n    total {:.0}s", self.total().as_secs_f64());
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_aligns_every_step_with_its_outcome_time_and_finding() {
        let mut report = Report::new("cargo xtask e2e");
        let started = Instant::now();
        report.record("image", started, Ok("45.5 MB".to_owned()));
        report.record("helm-test", started, Err(anyhow::anyhow!("pod failed")));
        report.skip("k6", "--skip k6");

        let text = report.to_string();

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "==> cargo xtask e2e summary");
        assert!(lines[1].starts_with("    ok       image      "), "{text}");
        assert!(lines[1].ends_with("s  45.5 MB"), "{text}");
        assert!(lines[2].starts_with("    FAILED   helm-test  "), "{text}");
        assert!(lines[2].ends_with("s  pod failed"), "{text}");
        assert!(lines[3].starts_with("    skipped  k6         "), "{text}");
        assert_eq!(report.failed(), ["helm-test"]);
    }
}
