//! A task's plan held as data: the programs it runs, the ones it runs only when a probe
//! says they are needed (that is what makes `kind-up` and `kind-down` idempotent), and
//! the steps done in-process with kube-rs. `--dry-run` prints a plan, tests assert it,
//! and `execute` runs it in order, stopping at the first failure.

use std::fmt;

use anyhow::Context;
use xshell::Shell;

#[cfg(feature = "cluster")]
use crate::cluster::KubeStep;
use crate::command::Invocation;

/// One step of a plan. The conditional steps and `Say` serve the cluster tasks (the
/// `cluster` feature); they are tested in every build.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run a program; its failure fails the task.
    Run(Invocation),
    /// Run `then` unless a line of `probe`'s stdout equals `line`.
    Unless {
        probe: Invocation,
        line: String,
        then: Invocation,
    },
    /// Run `then` only if a line of `probe`'s stdout equals `line`.
    If {
        probe: Invocation,
        line: String,
        then: Invocation,
    },
    /// Work done with kube-rs, no external program.
    #[cfg(feature = "cluster")]
    Kube(KubeStep),
    /// Tell the user something once the steps before it succeeded.
    Say(String),
}

/// An ordered list of steps under a title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub title: String,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            steps: Vec::new(),
        }
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn run(self, invocation: Invocation) -> Self {
        self.step(Step::Run(invocation))
    }

    pub fn extend(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.steps.extend(steps);
        self
    }

    /// Runs every step in order; the first failure stops the plan.
    pub fn execute(&self, sh: &Shell) -> anyhow::Result<()> {
        for step in &self.steps {
            match step {
                Step::Run(invocation) => run(sh, invocation)?,
                Step::Unless { probe, line, then } => {
                    if !probe_lists(sh, probe, line)? {
                        run(sh, then)?;
                    }
                }
                Step::If { probe, line, then } => {
                    if probe_lists(sh, probe, line)? {
                        run(sh, then)?;
                    }
                }
                #[cfg(feature = "cluster")]
                Step::Kube(kube) => kube.execute()?,
                Step::Say(text) => println!("{text}"),
            }
        }
        Ok(())
    }
}

/// The `--dry-run` text: numbered steps, each a command a reviewer could paste.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} would run, in order, stopping at the first failure:",
            self.title
        )?;
        for (index, step) in self.steps.iter().enumerate() {
            let n = index + 1;
            match step {
                Step::Run(invocation) => write!(f, "\n  {n}. {invocation}")?,
                Step::Unless { probe, line, then } => {
                    write!(f, "\n  {n}. unless `{probe}` lists {line}:\n       {then}")?;
                }
                Step::If { probe, line, then } => {
                    write!(f, "\n  {n}. if `{probe}` lists {line}:\n       {then}")?;
                }
                #[cfg(feature = "cluster")]
                Step::Kube(kube) => write!(f, "\n  {n}. (kube-rs) {kube}")?,
                Step::Say(text) if !text.contains('\n') => write!(f, "\n  {n}. print: {text}")?,
                // Every line: a plan that stopped at the first would end in mid-sentence.
                Step::Say(text) => {
                    write!(f, "\n  {n}. print:")?;
                    for line in text.lines() {
                        write!(f, "\n       {line}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn run(sh: &Shell, invocation: &Invocation) -> anyhow::Result<()> {
    println!("==> {invocation}");
    invocation
        .to_cmd(sh)
        .quiet()
        .run()
        .with_context(|| format!("{} failed", invocation.program))
}

fn probe_lists(sh: &Shell, probe: &Invocation, line: &str) -> anyhow::Result<bool> {
    let output = probe
        .to_cmd(sh)
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("`{probe}` failed"))?;
    Ok(output.lines().any(|listed| listed.trim() == line))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn dry_run_text_numbers_steps_and_shows_conditions() {
        let plan = Plan::new("cargo xtask example")
            .run(Invocation::new("docker").args(["build", "."]))
            .step(Step::Unless {
                probe: Invocation::new("kind").args(["get", "clusters"]),
                line: "cart".to_owned(),
                then: Invocation::new("kind").args(["create", "cluster", "--name", "cart"]),
            })
            .step(Step::Say("reach it with\ncurl".to_owned()));

        let text = plan.to_string();

        insta::assert_snapshot!(text);
    }

    #[test]
    fn unless_skips_the_command_when_the_probe_lists_the_line() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let plan = Plan::new("t").step(Step::Unless {
            probe: Invocation::new("printf").args(["other\\ncart\\n"]),
            line: "cart".to_owned(),
            then: Invocation::new("touch").args([marker.display().to_string()]),
        });

        plan.execute(&sh).unwrap();

        assert!(
            !marker.exists(),
            "the command ran although the probe listed cart"
        );
    }

    #[test]
    fn if_runs_the_command_only_when_the_probe_lists_the_line() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (listed, absent) = (dir.path().join("listed"), dir.path().join("absent"));
        let step = |line: &str, marker: &std::path::Path| Step::If {
            probe: Invocation::new("printf").args(["cart\\n"]),
            line: line.to_owned(),
            then: Invocation::new("touch").args([marker.display().to_string()]),
        };
        let plan = Plan::new("t")
            .step(step("cart", &listed))
            .step(step("other", &absent));

        plan.execute(&sh).unwrap();

        assert!(listed.exists() && !absent.exists());
    }

    #[test]
    fn a_failing_step_stops_the_plan_and_names_the_program() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let plan = Plan::new("t")
            .run(Invocation::new("false"))
            .run(Invocation::new("touch").args([marker.display().to_string()]));

        let error = plan.execute(&sh).unwrap_err().to_string();

        assert_eq!(error, "false failed");
        assert!(!marker.exists());
    }
}
