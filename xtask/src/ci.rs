//! `cargo xtask ci`: everything CI checks, in the order a developer wants to hear about
//! it: formatting, lints, then the tests. Every step runs even after one fails, so a
//! single run reports every problem; a summary names each step's outcome and the task
//! fails if any step did. A step's pinned tools are installed just before it runs, so a
//! failure in the first steps reports before any tool is built. `.ci/run` calls this
//! after installing what the tests need.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::Shell;

use crate::command::Invocation;
use crate::tools::{self, Pinned, Tool};
use crate::{flags, install};

impl flags::Ci {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let steps = plan();
        if self.dry_run {
            print!("{}", describe(&steps));
            return Ok(());
        }

        let mut outcomes = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            println!(
                "==> [{}/{}] {}: {}",
                index + 1,
                steps.len(),
                step.name,
                step.invocation
            );
            let started = Instant::now();
            let result = step.run(sh);
            if let Err(error) = &result {
                println!("==> {} failed: {error:#}", step.name);
            }
            outcomes.push(Outcome {
                name: step.name,
                result,
                elapsed: started.elapsed(),
            });
        }

        println!("{}", summary(&outcomes));
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|outcome| outcome.result.is_err())
            .map(|o| o.name)
            .collect();
        if !failed.is_empty() {
            bail!("ci failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

/// One check: a command, the tool it needs from the machine, and the pinned tools it
/// needs, which are installed (once, under `target/tools`) just before it runs.
#[derive(Debug)]
pub struct Step {
    pub name: &'static str,
    pub invocation: Invocation,
    pub needs: Option<&'static Tool>,
    pub pinned: &'static [&'static Pinned],
}

/// The steps, in the order they run.
pub fn plan() -> Vec<Step> {
    let mut steps = vec![
        step("fmt", cargo(&["fmt", "--all", "--", "--check"])),
        step(
            "clippy",
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // The cluster tasks and the bench are compiled only with the xtask's features.
        step(
            "clippy-features",
            cargo(&[
                "clippy",
                "-p",
                "xtask",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // The Dockerfile, compose and k6 checks take seconds: before the tests.
        Step {
            pinned: const { &[&tools::PINNED_HADOLINT] },
            ..step(
                "hadolint",
                pinned(&tools::PINNED_HADOLINT).args(["Dockerfile"]),
            )
        },
        Step {
            pinned: const { &[&tools::PINNED_CHECK_JSONSCHEMA] },
            // The schema ships inside check-jsonschema, so the check needs nothing beside the checkout.
            ..step(
                "compose",
                pinned(&tools::PINNED_CHECK_JSONSCHEMA).args([
                    "--builtin-schema",
                    "vendor.compose-spec",
                    "docker-compose.yml",
                ]),
            )
        },
        // scripts/package.json makes the script an ES module, so node parses it strictly.
        Step {
            needs: Some(&tools::NODE),
            ..step(
                "k6-syntax",
                Invocation::new("node").args(["--check", "scripts/k6-load-test.js"]),
            )
        },
    ];
    steps.extend(tests());
    steps.extend([
        // The chart over every ci/*-values.yaml set (the typed assertions run with the tests).
        Step {
            pinned: const { &[&tools::PINNED_HELM] },
            ..step("helm-lint", cargo(&["xtask", "chart", "lint"]))
        },
        Step {
            pinned: const {
                &[
                    &tools::PINNED_HELM,
                    &tools::PINNED_KUBERNETES_VALIDATE,
                    &tools::PINNED_PROMTOOL,
                ]
            },
            ..step("k8s-validate", cargo(&["xtask", "chart", "validate"]))
        },
        Step {
            pinned: const { &[&tools::PINNED_HELM, &tools::PINNED_CHECKOV] },
            ..step("checkov", cargo(&["xtask", "chart", "checkov"]))
        },
        // The Dockerfile's build command, so an image build cannot fail where CI passed.
        step(
            "release",
            cargo(&["build", "--release", "--locked", "-p", "cart-service"]),
        ),
    ]);
    steps
}

/// `ci --help`'s summary: the steps, named from [`plan`], so help and runner agree.
pub fn about() -> String {
    let names: Vec<&str> = plan().iter().map(|step| step.name).collect();
    format!(
        "Run what CI runs, every step even after a failure: {}",
        names.join(", ")
    )
}

/// A pinned tool's program, relative to the workspace root where steps run.
fn pinned(tool: &Pinned) -> Invocation {
    let path = tool.path();
    let relative = path.strip_prefix(crate::workspace_root()).unwrap_or(&path);
    Invocation::new(&relative.display().to_string())
}

/// The tests, from the whole workspace's to the xtask's with its features.
fn tests() -> [Step; 4] {
    [
        // The service's integration tests start their own redis-server and Jaeger on free
        // ports; the xtask's tests render the chart with helm.
        Step {
            needs: Some(&tools::REDIS_SERVER),
            pinned: const { &[&tools::PINNED_HELM, &tools::PINNED_JAEGER] },
            ..step("test", cargo(&["test", "--workspace", "--locked"]))
        },
        // The API suite again, against a Redis Cluster of six redis-server processes that
        // the harness joins with redis-cli (which comes with redis-server's package).
        Step {
            needs: Some(&tools::REDIS_SERVER),
            ..step(
                "test-cluster",
                cargo(&["test", "-p", "cart-service", "--test", "api", "--locked"])
                    .env("CART_TEST_REDIS", "cluster"),
            )
        },
        // The OpenAPI document held to the live service (the debug build the tests made).
        Step {
            needs: Some(&tools::REDIS_SERVER),
            pinned: const { &[&tools::PINNED_SCHEMATHESIS] },
            ..step("api-fuzz", cargo(&["xtask", "api-fuzz"]))
        },
        Step {
            pinned: const { &[&tools::PINNED_HELM] },
            ..step(
                "test-features",
                cargo(&["test", "-p", "xtask", "--all-features", "--locked"]),
            )
        },
    ]
}

fn cargo(args: &[&str]) -> Invocation {
    Invocation::new("cargo").args(args.iter().copied())
}

/// A step that needs nothing installed first, or the base (`..step(..)`) of one that does.
fn step(name: &'static str, invocation: Invocation) -> Step {
    Step {
        name,
        invocation,
        needs: None,
        pinned: &[],
    }
}

impl Step {
    fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        if let Some(tool) = self.needs {
            tool.require(sh)?;
        }
        install::ensure(sh, self.pinned, false)?;
        // Quiet: the header above already shows the command line.
        self.invocation.to_cmd(sh).quiet().run()?;
        Ok(())
    }
}

#[derive(Debug)]
struct Outcome {
    name: &'static str,
    result: anyhow::Result<()>,
    elapsed: Duration,
}

fn describe(steps: &[Step]) -> String {
    let mut text =
        String::from("cargo xtask ci would run, in order, every step even after a failure:\n");
    for (index, step) in steps.iter().enumerate() {
        let _ = write!(
            text,
            "  {:>2}. {:<14} {}",
            index + 1,
            step.name,
            step.invocation
        );
        let mut first = Vec::new();
        if let Some(tool) = step.needs {
            first.push(format!("checks that {} is on PATH", tool.name));
        }
        if !step.pinned.is_empty() {
            let names: Vec<&str> = step.pinned.iter().map(|tool| tool.name).collect();
            first.push(format!("installs {} if missing", names.join(", ")));
        }
        if !first.is_empty() {
            let _ = write!(text, "  (first {})", first.join(", "));
        }
        text.push('\n');
    }
    text
}

fn summary(outcomes: &[Outcome]) -> String {
    let mut text = String::from("==> summary");
    for outcome in outcomes {
        let verdict = if outcome.result.is_ok() {
            "ok"
        } else {
            "FAILED"
        };
        let _ = write!(
            text,
            "\n    {verdict:<6}  {:<14} {:>6.1}s",
            outcome.name,
            outcome.elapsed.as_secs_f64()
        );
        if let Err(error) = &outcome.result {
            let _ = write!(text, "  {error}");
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn dry_run_lists_every_step_with_its_command_and_tools() {
        let steps = plan();

        let text = describe(&steps);

        assert_eq!(steps[0].name, "fmt", "the cheapest check fails first");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_dockerfile_builds_with_the_release_steps_command() {
        let dockerfile =
            std::fs::read_to_string(crate::workspace_root().join("Dockerfile")).unwrap();
        let release = plan()
            .into_iter()
            .find(|step| step.name == "release")
            .unwrap();

        let command = release.invocation.to_string();

        assert!(
            dockerfile.contains(&format!("RUN {command}")),
            "the Dockerfile does not run `{command}`"
        );
    }

    #[test]
    fn no_step_reads_a_file_outside_the_checkout() {
        let outside: Vec<String> = plan()
            .iter()
            .flat_map(|step| step.invocation.args.iter())
            .filter(|arg| arg.starts_with("..") || arg.starts_with('/'))
            .cloned()
            .collect();

        assert!(
            outside.is_empty(),
            "a fresh clone has nothing beside it: {outside:?}"
        );
    }

    #[test]
    fn summary_marks_failed_steps() {
        let outcomes = [
            Outcome {
                name: "fmt",
                result: Ok(()),
                elapsed: Duration::from_millis(1500),
            },
            Outcome {
                name: "test",
                result: Err(anyhow::anyhow!("boom")),
                elapsed: Duration::from_secs(12),
            },
        ];

        let text = summary(&outcomes);

        assert_eq!(
            text,
            "==> summary\n    ok      fmt               1.5s\n    FAILED  test             12.0s  boom"
        );
    }

    #[test]
    fn a_step_whose_tool_is_missing_fails_with_the_install_hint() {
        let sh = Shell::new().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let _path = sh.push_env("PATH", empty.path());
        let step = Step {
            name: "test",
            invocation: Invocation::new("true"),
            needs: Some(&tools::REDIS_SERVER),
            pinned: &[],
        };

        let error = step.run(&sh).unwrap_err().to_string();

        assert!(
            error.starts_with("redis-server not found on PATH: install it with"),
            "{error}"
        );
    }
}
