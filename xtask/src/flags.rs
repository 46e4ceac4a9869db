//! The `cargo xtask` command line, in one place: one subcommand per task, each documented
//! here, so `cargo xtask --help` is the index of what the project automates. The tasks
//! themselves live in modules named after them.

use clap::{Args, Parser, Subcommand};

/// Project automation for cart-service.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
pub enum Task {
    /// Run cart-service locally against a throwaway redis-server; Ctrl-C stops both.
    Dev(Dev),
    /// Run what CI runs: cargo fmt --check, clippy with -D warnings, then the workspace tests.
    Ci(Ci),
    /// Write the generated files: values.schema.json, the chart README's values table, k8s/.
    Gen(Gen),
    /// Install the pinned tools (helm, kubernetes-validate, checkov) under target/tools.
    Tools(Tools),
    /// Check the Helm chart over every ci/*-values.yaml set: lint, validate or checkov.
    Chart(Chart),
}

/// `cargo xtask gen`: values.schema.json and the README values table from the `Values`
/// types, and `k8s/cart-service.yaml` rendered from the chart.
#[derive(Debug, Args)]
pub struct Gen {
    /// Write nothing; fail, naming the files, if any generated file is out of date.
    #[arg(long)]
    pub check: bool,
}

/// `cargo xtask tools`: install what is missing or outdated of the pinned tools.
#[derive(Debug, Args)]
pub struct Tools {
    /// Reinstall every pinned tool, even those already at their pinned version.
    #[arg(long)]
    pub force: bool,
    /// Print the install commands, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask chart <check>`: one of the chart checks CI runs.
#[derive(Debug, Args)]
pub struct Chart {
    #[command(subcommand)]
    pub check: ChartCheck,
    /// Print the commands, and run nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
}

/// The chart checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ChartCheck {
    /// helm lint --strict with each ci values file.
    Lint,
    /// Render each ci values file and validate it strictly against Kubernetes 1.29 and the newest schemas.
    Validate,
    /// Render each ci values file and run checkov's Kubernetes checks; any failed check fails.
    Checkov,
}

/// `cargo xtask dev`: start a private redis-server on a free loopback port, then
/// `cargo run` the service against it.
#[derive(Debug, Args)]
pub struct Dev {
    /// Port the service listens on, on 127.0.0.1.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Print the programs, arguments and environment that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask ci`: formatting, lints and tests, each step reported, all steps run.
#[derive(Debug, Args)]
pub struct Ci {
    /// Print the steps that would run, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn dev_listens_on_8080_unless_told_otherwise() {
        let default = Xtask::parse_from(["cargo xtask", "dev"]);
        let chosen = Xtask::parse_from(["cargo xtask", "dev", "--port", "9000", "--dry-run"]);

        assert!(matches!(
            default.task,
            Task::Dev(Dev {
                port: 8080,
                dry_run: false
            })
        ));
        assert!(matches!(
            chosen.task,
            Task::Dev(Dev {
                port: 9000,
                dry_run: true
            })
        ));
    }

    #[test]
    fn dev_rejects_port_zero() {
        let result = Xtask::try_parse_from(["cargo xtask", "dev", "--port", "0"]);

        assert!(result.is_err());
    }
}
