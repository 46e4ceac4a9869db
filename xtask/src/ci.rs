//! `cargo xtask ci`: everything CI checks, in the order a developer wants to hear about
//! it: formatting, lints, then the tests. Every step runs even after one fails, so a
//! single run reports every problem; a summary names each step's outcome and the task
//! fails if any step did. `.ci/run` calls this after installing what the tests need.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use xshell::Shell;

use crate::command::Invocation;
use crate::flags;
use crate::tools::{self, Pinned, Tool};

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

/// One check: a command and the tool it needs beyond Cargo, if any.
#[derive(Debug)]
pub struct Step {
    pub name: &'static str,
    pub invocation: Invocation,
    pub needs: Option<&'static Tool>,
}

/// The steps, in the order they run.
pub fn plan() -> Vec<Step> {
    let cargo = |args: &[&str]| Invocation::new("cargo").args(args.iter().copied());
    vec![
        // First, so every later step (and the tests) finds the pinned tools installed.
        Step {
            name: "tools",
            invocation: cargo(&["xtask", "tools"]),
            needs: None,
        },
        Step {
            name: "fmt",
            invocation: cargo(&["fmt", "--all", "--", "--check"]),
            needs: None,
        },
        Step {
            name: "clippy",
            invocation: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
            needs: None,
        },
        // The Dockerfile, compose and k6 checks take seconds: before the tests.
        Step {
            name: "hadolint",
            invocation: pinned(&tools::PINNED_HADOLINT).args(["Dockerfile"]),
            needs: None,
        },
        Step {
            name: "compose",
            // The schema ships inside check-jsonschema, so the check needs nothing beside the checkout.
            invocation: pinned(&tools::PINNED_CHECK_JSONSCHEMA).args([
                "--builtin-schema",
                "vendor.compose-spec",
                "docker-compose.yml",
            ]),
            needs: None,
        },
        // scripts/package.json makes the script an ES module, so node parses it strictly.
        Step {
            name: "k6-syntax",
            invocation: Invocation::new("node").args(["--check", "scripts/k6-load-test.js"]),
            needs: Some(&tools::NODE),
        },
        // The service's integration tests start their own redis-server on a free port.
        Step {
            name: "test",
            invocation: cargo(&["test", "--workspace", "--locked"]),
            needs: Some(&tools::REDIS_SERVER),
        },
        // The chart over every ci/*-values.yaml set (the typed assertions run with the tests).
        Step {
            name: "helm-lint",
            invocation: cargo(&["xtask", "chart", "lint"]),
            needs: None,
        },
        Step {
            name: "k8s-validate",
            invocation: cargo(&["xtask", "chart", "validate"]),
            needs: None,
        },
        Step {
            name: "checkov",
            invocation: cargo(&["xtask", "chart", "checkov"]),
            needs: None,
        },
        // The Dockerfile's build command, so an image build cannot fail where CI passed.
        Step {
            name: "release",
            invocation: cargo(&["build", "--release", "--locked", "-p", "cart-service"]),
            needs: None,
        },
    ]
}

/// A pinned tool's program, relative to the workspace root where steps run.
fn pinned(tool: &Pinned) -> Invocation {
    let path = tool.path();
    let relative = path.strip_prefix(crate::workspace_root()).unwrap_or(&path);
    Invocation::new(&relative.display().to_string())
}

impl Step {
    fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        if let Some(tool) = self.needs {
            tool.require(sh)?;
        }
        let program = &self.invocation.program;
        if let Some(tool) = tools::PINNED
            .iter()
            .find(|tool| pinned(tool).program == *program)
        {
            tool.require()?;
        }
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
            "  {}. {:<7} {}",
            index + 1,
            step.name,
            step.invocation
        );
        if let Some(tool) = step.needs {
            let _ = write!(text, "  (first checks that {} is on PATH)", tool.name);
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
            "\n    {verdict:<6}  {:<7} {:>6.1}s",
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
    fn plan_is_fmt_then_clippy_then_tests_that_need_redis() {
        let steps = plan();

        let shown: Vec<(&str, String, Option<&str>)> = steps
            .iter()
            .map(|step| {
                (
                    step.name,
                    step.invocation.to_string(),
                    step.needs.map(|tool| tool.name),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("tools", "cargo xtask tools".to_owned(), None),
                ("fmt", "cargo fmt --all -- --check".to_owned(), None),
                (
                    "clippy",
                    "cargo clippy --workspace --all-targets --locked -- -D warnings".to_owned(),
                    None
                ),
                (
                    "hadolint",
                    "target/tools/venv/bin/hadolint Dockerfile".to_owned(),
                    None
                ),
                (
                    "compose",
                    "target/tools/venv/bin/check-jsonschema --builtin-schema \
                     vendor.compose-spec docker-compose.yml"
                        .to_owned(),
                    None
                ),
                (
                    "k6-syntax",
                    "node --check scripts/k6-load-test.js".to_owned(),
                    Some("node")
                ),
                (
                    "test",
                    "cargo test --workspace --locked".to_owned(),
                    Some("redis-server")
                ),
                ("helm-lint", "cargo xtask chart lint".to_owned(), None),
                (
                    "k8s-validate",
                    "cargo xtask chart validate".to_owned(),
                    None
                ),
                ("checkov", "cargo xtask chart checkov".to_owned(), None),
                (
                    "release",
                    "cargo build --release --locked -p cart-service".to_owned(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn dry_run_lists_every_step_with_its_command() {
        let text = describe(&plan());

        assert_eq!(
            text,
            "cargo xtask ci would run, in order, every step even after a failure:\n\
             \x20 1. tools   cargo xtask tools\n\
             \x20 2. fmt     cargo fmt --all -- --check\n\
             \x20 3. clippy  cargo clippy --workspace --all-targets --locked -- -D warnings\n\
             \x20 4. hadolint target/tools/venv/bin/hadolint Dockerfile\n\
             \x20 5. compose target/tools/venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml\n\
             \x20 6. k6-syntax node --check scripts/k6-load-test.js  (first checks that node is on PATH)\n\
             \x20 7. test    cargo test --workspace --locked  (first checks that redis-server is on PATH)\n\
             \x20 8. helm-lint cargo xtask chart lint\n\
             \x20 9. k8s-validate cargo xtask chart validate\n\
             \x20 10. checkov cargo xtask chart checkov\n\
             \x20 11. release cargo build --release --locked -p cart-service\n"
        );
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
            "==> summary\n    ok      fmt        1.5s\n    FAILED  test      12.0s  boom"
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
        };

        let error = step.run(&sh).unwrap_err().to_string();

        assert!(
            error.starts_with("redis-server not found on PATH: install it with"),
            "{error}"
        );
    }
}
