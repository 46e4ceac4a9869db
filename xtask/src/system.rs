//! Getting a program the machine lacks from the system's package manager, where the xtask
//! can do that without asking for anything: apt-get when it runs as root (Debian, Ubuntu,
//! CI containers), Homebrew on macOS. Elsewhere it stops with the one command to run, so
//! `cargo xtask dev` on a fresh machine either sets itself up or says exactly how.

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::command::Invocation;
use crate::tools::{self, Tool};

/// What this machine offers for installing packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// `std::env::consts::OS`: `linux`, `macos`, ...
    pub os: &'static str,
    pub root: bool,
    pub apt_get: bool,
    pub brew: bool,
}

/// How `redis-server` gets onto this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    /// Run these, in order.
    Run(Vec<Invocation>),
    /// Nothing the xtask may run: what the user should do, with the one command.
    Tell(String),
}

/// Makes sure `redis-server` is on PATH, installing it where [`redis_installer`] can.
pub fn provide_redis_server(sh: &Shell) -> anyhow::Result<()> {
    if tools::REDIS_SERVER.require(sh).is_ok() {
        return Ok(());
    }
    match redis_installer(Machine::this(sh)) {
        Installer::Tell(advice) => bail!("redis-server not found on PATH: {advice}"),
        Installer::Run(invocations) => {
            println!("redis-server not found on PATH: installing it");
            for invocation in &invocations {
                println!("==> {invocation}");
                invocation
                    .to_cmd(sh)
                    .quiet()
                    .run()
                    .with_context(|| format!("installing redis-server failed: `{invocation}`"))?;
            }
            tools::REDIS_SERVER.require(sh).map(drop)
        }
    }
}

/// The decision, apart from running anything: apt-get as root, brew on macOS, else the
/// command to run.
pub fn redis_installer(machine: Machine) -> Installer {
    let apt = |args: &[&str]| {
        Invocation::new("apt-get")
            .args(args.iter().copied())
            .env("DEBIAN_FRONTEND", "noninteractive")
    };
    match machine {
        Machine {
            os: "macos",
            brew: true,
            ..
        } => Installer::Run(vec![Invocation::new("brew").args(["install", "redis"])]),
        Machine { os: "macos", .. } => Installer::Tell(
            "install Homebrew (https://brew.sh), then run `brew install redis`".to_owned(),
        ),
        Machine {
            apt_get: true,
            root: true,
            ..
        } => Installer::Run(vec![
            apt(&["update", "-q"]),
            apt(&[
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "redis-server",
            ]),
        ]),
        Machine {
            apt_get: true,
            root: false,
            ..
        } => Installer::Tell("install it with `sudo apt-get install redis-server`".to_owned()),
        Machine { .. } => Installer::Tell(
            "install Redis 7 or newer with your package manager so that redis-server is on PATH \
             (https://redis.io/downloads/)"
                .to_owned(),
        ),
    }
}

impl Machine {
    /// This machine, as the shell sees it.
    pub fn this(sh: &Shell) -> Self {
        let on_path = |name: &'static str| Tool { name, install: "" }.require(sh).is_ok();
        let root = cmd!(sh, "id -u")
            .quiet()
            .read()
            .is_ok_and(|uid| uid.trim() == "0");
        Self {
            os: std::env::consts::OS,
            root,
            apt_get: on_path("apt-get"),
            brew: on_path("brew"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(os: &'static str, root: bool, apt_get: bool, brew: bool) -> Vec<String> {
        match redis_installer(Machine {
            os,
            root,
            apt_get,
            brew,
        }) {
            Installer::Run(invocations) => invocations.iter().map(ToString::to_string).collect(),
            Installer::Tell(command) => vec![format!("tell: {command}")],
        }
    }

    #[test]
    fn debian_as_root_installs_redis_server_with_apt_get() {
        let commands = decided("linux", true, true, false);

        assert_eq!(
            commands,
            [
                "DEBIAN_FRONTEND=noninteractive apt-get update -q",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server",
            ]
        );
    }

    #[test]
    fn debian_without_root_tells_the_sudo_command_and_runs_nothing() {
        let commands = decided("linux", false, true, false);

        assert_eq!(
            commands,
            ["tell: install it with `sudo apt-get install redis-server`"]
        );
    }

    #[test]
    fn macos_with_homebrew_installs_redis_with_brew() {
        let commands = decided("macos", false, false, true);

        assert_eq!(commands, ["brew install redis"]);
    }

    #[test]
    fn macos_without_homebrew_and_other_systems_only_tell() {
        let macos = decided("macos", false, false, false);
        let other = decided("linux", true, false, false);

        assert_eq!(
            macos,
            ["tell: install Homebrew (https://brew.sh), then run `brew install redis`"]
        );
        assert!(
            other[0].starts_with("tell: install Redis 7 or newer"),
            "{other:?}"
        );
    }
}
