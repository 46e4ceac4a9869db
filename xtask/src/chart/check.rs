//! `cargo xtask chart lint|validate|checkov`: the chart checks CI runs, each over every
//! `ci/*-values.yaml` set. `lint` is `helm lint --strict`; `validate` renders each set
//! and validates every document strictly (unknown fields and missing required ones both
//! fail) against Kubernetes 1.29 and the newest version kubernetes-validate ships, then
//! checks the rendered SLO rules with promtool and runs their unit tests (`rules.rs`);
//! `checkov` runs checkov's Kubernetes checks over the same renders and fails on any
//! failed check (skips are annotations on the resources, each with its reason).

use std::fmt;
use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use xshell::Shell;

use super::rules::{self, RULES_FILE, RULES_SET};
use super::{CHART, KUBE_VERSION, ci_values_files, set_name, template};
use crate::command::Invocation;
use crate::flags::{self, ChartCheck};
use crate::tools::{
    PINNED, PINNED_CHECKOV, PINNED_HELM, PINNED_KUBERNETES_VALIDATE, PINNED_PROMTOOL, Pinned,
};

impl flags::Chart {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let steps = plan(self.check)?;
        if self.dry_run {
            for step in &steps {
                println!("{step}");
            }
            return Ok(());
        }
        for step in &steps {
            println!("$ {step}");
            step.run(sh)?;
        }
        Ok(())
    }
}

/// One step of a chart check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run a program; a non-zero exit fails the check.
    Run(Invocation),
    /// Run a program and write its stdout to a file.
    Render { invocation: Invocation, to: PathBuf },
    /// Write the `PrometheusRule`'s `spec` in the render `from` as a plain rules file.
    ExtractRules { from: PathBuf, to: PathBuf },
    /// Copy a file into a directory.
    Copy { from: PathBuf, to_dir: PathBuf },
}

/// Where the renders of the ci value sets go.
pub fn render_dir() -> PathBuf {
    crate::workspace_root().join("target/chart/rendered")
}

/// The steps of one check.
pub fn plan(check: ChartCheck) -> anyhow::Result<Vec<Step>> {
    let sets = ci_values_files()?;
    let helm = PINNED_HELM.path();
    let renders = || {
        sets.iter().map(|file| Step::Render {
            invocation: template(&helm, "cart", "cart", std::slice::from_ref(file), &[]),
            to: render_dir().join(format!("{}.yaml", set_name(file))),
        })
    };
    let rendered_files = || {
        sets.iter().map(|file| {
            render_dir()
                .join(format!("{}.yaml", set_name(file)))
                .display()
                .to_string()
        })
    };
    let steps = match check {
        ChartCheck::Lint => sets
            .iter()
            .map(|file| {
                Step::Run(Invocation::new(&helm.display().to_string()).args([
                    "lint".to_owned(),
                    "--strict".to_owned(),
                    "--quiet".to_owned(),
                    CHART.to_owned(),
                    "--kube-version".to_owned(),
                    KUBE_VERSION.to_owned(),
                    "--values".to_owned(),
                    file.display().to_string(),
                ]))
            })
            .collect(),
        ChartCheck::Validate => {
            let validate = PINNED_KUBERNETES_VALIDATE.path().display().to_string();
            let generated = crate::workspace_root().join("k8s/cart-service.yaml");
            let files: Vec<String> = rendered_files()
                .chain([generated.display().to_string()])
                .collect();
            let oldest = Invocation::new(&validate)
                .args(["--strict", "--quiet", "--kubernetes-version", KUBE_VERSION])
                .args(files.clone());
            // Without --kubernetes-version, kubernetes-validate uses the newest schemas it ships.
            let newest = Invocation::new(&validate)
                .args(["--strict", "--quiet"])
                .args(files);
            renders()
                .chain([Step::Run(oldest), Step::Run(newest)])
                .chain(rule_checks())
                .collect()
        }
        ChartCheck::Checkov => {
            let checkov = Invocation::new(&PINNED_CHECKOV.path().display().to_string()).args([
                "--directory".to_owned(),
                render_dir().display().to_string(),
                "--framework".to_owned(),
                "kubernetes".to_owned(),
                "--compact".to_owned(),
                "--quiet".to_owned(),
                // No network here, and none needed: the checks ship with checkov.
                "--skip-download".to_owned(),
            ]);
            renders().chain([Step::Run(checkov)]).collect()
        }
    };
    Ok(steps)
}

/// `promtool check rules` on the rules the monitoring set renders, then `promtool test
/// rules` with the chart's unit tests copied beside them.
fn rule_checks() -> [Step; 4] {
    let promtool = PINNED_PROMTOOL.path().display().to_string();
    let rules_file = rules::rules_dir().join(RULES_FILE);
    let unit_tests = rules::unit_tests();
    let copied_tests = rules::rules_dir().join(unit_tests.file_name().unwrap_or_default());
    [
        Step::ExtractRules {
            from: render_dir().join(format!("{RULES_SET}.yaml")),
            to: rules_file.clone(),
        },
        Step::Run(Invocation::new(&promtool).args([
            "check".to_owned(),
            "rules".to_owned(),
            rules_file.display().to_string(),
        ])),
        Step::Copy {
            from: unit_tests,
            to_dir: rules::rules_dir(),
        },
        Step::Run(Invocation::new(&promtool).args([
            "test".to_owned(),
            "rules".to_owned(),
            copied_tests.display().to_string(),
        ])),
    ]
}

/// The pinned tool a step runs, if any, so a missing one fails naming `cargo xtask tools`
/// rather than as a bare "No such file or directory".
fn pinned_tool(step: &Step) -> Option<&'static Pinned> {
    let program = match step {
        Step::Run(invocation) | Step::Render { invocation, .. } => &invocation.program,
        Step::ExtractRules { .. } | Step::Copy { .. } => return None,
    };
    PINNED
        .iter()
        .copied()
        .find(|tool| tool.path().display().to_string() == *program)
}

impl Step {
    fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        if let Some(tool) = pinned_tool(self) {
            tool.require()?;
        }
        match self {
            Step::Run(invocation) => {
                invocation.to_cmd(sh).quiet().run()?;
            }
            Step::Render { invocation, to } => {
                let yaml = invocation.to_cmd(sh).quiet().read()?;
                if let Some(dir) = to.parent() {
                    fs::create_dir_all(dir)?;
                }
                fs::write(to, yaml + "\n")
                    .with_context(|| format!("cannot write {}", to.display()))?;
            }
            Step::ExtractRules { from, to } => rules::extract(from, to)?,
            Step::Copy { from, to_dir } => {
                let name = from.file_name().unwrap_or_default();
                fs::create_dir_all(to_dir)
                    .with_context(|| format!("cannot create {}", to_dir.display()))?;
                fs::copy(crate::workspace_root().join(from), to_dir.join(name))
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run(invocation) => write!(f, "{invocation}"),
            Step::Render { invocation, to } => write!(f, "{invocation} > {}", to.display()),
            Step::ExtractRules { from, to } => write!(
                f,
                "(the PrometheusRule's spec in {}) > {}",
                from.display(),
                to.display()
            ),
            Step::Copy { from, to_dir } => {
                write!(f, "cp {} {}/", from.display(), to_dir.display())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn lint_is_strict_and_covers_every_ci_values_file() {
        let steps = plan(ChartCheck::Lint).unwrap();

        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), ci_values_files().unwrap().len());
        for name in [
            "default",
            "external-redis",
            "collector-off",
            "hpa-off",
            "persistence-off",
            "kind",
        ] {
            assert!(
                shown.iter().any(|s| s.contains("lint --strict")
                    && s.ends_with(&format!("ci/{name}-values.yaml"))),
                "no strict lint of {name}: {shown:#?}"
            );
        }
    }

    #[test]
    fn validate_checks_every_render_against_the_oldest_and_the_newest_kubernetes() {
        let steps = plan(ChartCheck::Validate).unwrap();

        let runs: Vec<String> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Run(invocation) if invocation.program.ends_with("kubernetes-validate") => {
                    Some(invocation.to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(runs.len(), 2, "{runs:#?}");
        assert!(
            runs[0].contains("--strict --quiet --kubernetes-version 1.29.0"),
            "{}",
            runs[0]
        );
        assert!(!runs[1].contains("--kubernetes-version"), "{}", runs[1]);
        assert!(
            runs.iter()
                .all(|run| run.contains("kind.yaml") && run.contains("k8s/cart-service.yaml"))
        );
    }

    #[test]
    fn validate_checks_the_rendered_rules_then_runs_their_unit_tests_with_promtool() {
        let steps = plan(ChartCheck::Validate).unwrap();

        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        let position = |needle: &str| {
            shown
                .iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("no step with {needle}: {shown:#?}"))
        };
        let render = position("ci/monitoring-values.yaml");
        let extract = position("the PrometheusRule's spec in");
        let check = position("promtool check rules");
        let copy = position("cp charts/cart-service/tests/slo-rules.test.yaml");
        let test = position("promtool test rules");
        assert!(
            render < extract && extract < check && copy < test,
            "{shown:#?}"
        );
        assert!(
            shown[check].ends_with("target/chart/rules/cart-service-slo.yaml"),
            "{}",
            shown[check]
        );
        assert!(
            shown[test].ends_with("target/chart/rules/slo-rules.test.yaml"),
            "{}",
            shown[test]
        );
    }

    #[test]
    fn a_step_running_a_pinned_tool_requires_it_first() {
        let steps = plan(ChartCheck::Validate).unwrap();

        let tools: Vec<&str> = steps
            .iter()
            .filter_map(|step| pinned_tool(step).map(|tool| tool.name))
            .collect();

        assert!(tools.contains(&"helm"), "{tools:?}");
        assert!(tools.contains(&"kubernetes-validate"), "{tools:?}");
        assert_eq!(
            tools.iter().filter(|t| **t == "promtool").count(),
            2,
            "{tools:?}"
        );
    }

    #[test]
    fn a_missing_pinned_tool_fails_naming_cargo_xtask_tools() {
        static MISSING: Pinned = Pinned {
            name: "promtool-that-is-not-installed",
            version: "v0.316.0",
            source: crate::tools::Source::GoModule("example.invalid/promtool"),
        };

        let error = MISSING.require().unwrap_err().to_string();

        assert!(
            error.starts_with("promtool-that-is-not-installed v0.316.0 not installed"),
            "{error}"
        );
        assert!(error.contains("run `cargo xtask tools`"), "{error}");
    }

    #[test]
    fn checkov_scans_the_renders_offline() {
        let steps = plan(ChartCheck::Checkov).unwrap();

        let last = steps.last().unwrap().to_string();
        assert!(last.contains("--framework kubernetes"), "{last}");
        assert!(last.contains("--skip-download"), "{last}");
    }
}
