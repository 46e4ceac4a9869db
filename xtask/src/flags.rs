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
