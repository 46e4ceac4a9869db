//! `cargo xtask`: the project's automation, written in Rust so it runs wherever Cargo
//! does. This file only parses the command line and hands it to the task's module; every
//! task is `flags::<Task>::run(self, &Shell)`, run from the workspace root.

// A command-line tool talks to its user on stdout: the workspace's `print_stdout` lint
// guards the service, where output belongs in the logs.
#![allow(clippy::print_stdout)]

mod api_fuzz;
#[cfg(feature = "bench")]
mod bench;
mod chart;
mod ci;
#[cfg(feature = "cluster")]
mod cluster;
mod codegen;
mod command;
#[cfg(test)]
mod compose;
#[cfg(feature = "cluster")]
mod compose_smoke;
#[cfg(feature = "cluster")]
mod deploy;
mod dev;
mod docker;
#[cfg(feature = "cluster")]
mod e2e;
mod flags;
#[cfg(feature = "cluster")]
mod hpa_demo;
mod image;
mod install;
#[cfg(feature = "cluster")]
mod k6;
#[cfg(feature = "cluster")]
mod kind;
mod plan;
#[cfg(not(all(feature = "cluster", feature = "bench")))]
mod relaunch;
mod system;
mod tools;
mod values;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use xshell::Shell;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    // One line, causes included, and no backtrace: these errors are for the user to act on.
    if let Err(error) = run(flags) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run(flags: flags::Xtask) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(workspace_root());
    match flags.task {
        flags::Task::Dev(task) => task.run(&sh),
        flags::Task::Ci(task) => task.run(&sh),
        flags::Task::Image(task) => task.run(&sh),
        flags::Task::Gen(task) => task.run(&sh),
        flags::Task::Tools(task) => task.run(&sh),
        flags::Task::Chart(task) => task.run(&sh),
        flags::Task::ApiFuzz(task) => task.run(&sh),
        #[cfg(feature = "bench")]
        flags::Task::Bench(task) => task.run(&sh),
        #[cfg(not(feature = "bench"))]
        flags::Task::Bench(_) => relaunch::with_feature(&sh, &relaunch::BENCH),
        #[cfg(feature = "cluster")]
        flags::Task::KindUp(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::KindDown(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::Deploy(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::K6(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::HpaDemo(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::E2e(task) => task.run(&sh),
        #[cfg(feature = "cluster")]
        flags::Task::ComposeSmoke(task) => task.run(&sh),
        #[cfg(not(feature = "cluster"))]
        _ => relaunch::with_feature(&sh, &relaunch::CLUSTER),
    }
}

/// The workspace root, so tasks behave the same from any directory of the checkout.
fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}
