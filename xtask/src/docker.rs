//! The Docker engine and its plugins, checked before a task needs them: every task that
//! builds or runs containers calls these first, so a stopped engine or a missing plugin is
//! an error that says how to fix it, not a `BuildKit`, kind or compose error later.

use std::process::Output;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::tools;

/// Fails unless `docker` is on PATH and its engine answers `docker info`, saying how to
/// start it: every task that builds or runs containers checks this first, so a stopped
/// engine is not met later as a `BuildKit`, kind or compose error.
pub fn require_docker_engine(sh: &Shell) -> anyhow::Result<()> {
    tools::DOCKER.require(sh)?;
    let info = docker(sh, &["info"])?;
    if info.status.success() {
        return Ok(());
    }
    let host = docker_host(sh);
    let stderr = String::from_utf8_lossy(&info.stderr);
    let said = docker_said("docker info", &stderr);
    if stderr.to_ascii_lowercase().contains("permission denied") {
        bail!(
            "the Docker engine at {host} refuses this user: add it to the docker group \
             (`sudo usermod -aG docker $USER`, then log in again), or set DOCKER_HOST{said}"
        );
    }
    bail!(
        "the Docker engine at {host} does not answer: start Docker (`sudo systemctl start docker`, \
         or Docker Desktop), or set DOCKER_HOST{said}"
    )
}

/// Fails unless `docker build` with `DOCKER_BUILDKIT=1` can run: from Docker 23 on, the
/// CLI hands such builds to the buildx plugin, and without it fails with a `BuildKit` error
/// that does not say so; older CLIs (Debian's docker.io 20.10) build with `BuildKit` themselves.
pub fn require_buildx(sh: &Shell) -> anyhow::Result<()> {
    tools::DOCKER.require(sh)?;
    if docker(sh, &["buildx", "version"])?.status.success() {
        return Ok(());
    }
    // The CLI prints its own version even when the engine does not answer.
    let version = docker(sh, &["version", "--format", "{{.Client.Version}}"])?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let version = if version.is_empty() {
        "of an unknown version".to_owned()
    } else {
        version
    };
    let major = version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok());
    if major.is_some_and(|major| major < 23) {
        return Ok(());
    }
    bail!(
        "docker buildx is missing: DOCKER_BUILDKIT=1 needs the buildx plugin from Docker 23 on \
         (this docker is {version}): install it with `apt-get install docker-buildx` (Debian/Ubuntu), \
         `docker-buildx-plugin` from Docker's apt repository, or Docker Desktop"
    )
}

/// Fails unless `docker compose` (the v2 plugin) runs, saying how to install it.
// Used by compose-smoke (the `cluster` feature); tested in every build.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub fn require_compose(sh: &Shell) -> anyhow::Result<()> {
    tools::DOCKER.require(sh)?;
    if docker(sh, &["compose", "version"])?.status.success() {
        return Ok(());
    }
    bail!(
        "docker compose is missing: install the compose plugin (`apt-get install docker-compose-plugin` \
         or Docker Desktop); `docker compose up --build` fails with 'unknown flag' without it"
    )
}

/// `docker <args>`'s output whatever its status; an error only when docker cannot be started.
fn docker(sh: &Shell, args: &[&str]) -> anyhow::Result<Output> {
    cmd!(sh, "docker {args...}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `docker {}`", args.join(" ")))
}

/// Where the docker CLI looks for its engine: `DOCKER_HOST`, else the current docker
/// context's endpoint, else the default socket.
fn docker_host(sh: &Shell) -> String {
    if let Some(host) = sh.var("DOCKER_HOST").ok().filter(|host| !host.is_empty()) {
        return host;
    }
    docker(
        sh,
        &[
            "context",
            "inspect",
            "--format",
            "{{.Endpoints.docker.Host}}",
        ],
    )
    .ok()
    .filter(|output| output.status.success())
    .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    .filter(|host| !host.is_empty())
    .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// " (`<command>`: <the first line it wrote to stderr>)", or "" when it wrote none.
fn docker_said(command: &str, stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map_or_else(String::new, |line| format!(" (`{command}`: {line})"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A shell whose `PATH` holds only a `docker` running `script`, and no `DOCKER_HOST`.
    fn fake_docker(script: &str) -> (Shell, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker");
        std::fs::write(&docker, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sh = Shell::new().unwrap();
        sh.set_var("PATH", dir.path());
        // Empty is unset, to docker and to the checks.
        sh.set_var("DOCKER_HOST", "");
        (sh, dir)
    }

    #[test]
    fn every_docker_check_passes_when_docker_answers() {
        let (sh, _dir) = fake_docker("exit 0");

        require_docker_engine(&sh).unwrap();
        require_buildx(&sh).unwrap();
        require_compose(&sh).unwrap();
    }

    #[test]
    fn docker_engine_that_does_not_answer_is_named_with_how_to_start_it() {
        let (sh, _dir) = fake_docker(
            "[ \"$1\" = info ] && echo 'Cannot connect to the Docker daemon. Is it running?' >&2\nexit 1",
        );

        let error = require_docker_engine(&sh).unwrap_err().to_string();

        assert_eq!(
            error,
            "the Docker engine at unix:///var/run/docker.sock does not answer: start Docker \
             (`sudo systemctl start docker`, or Docker Desktop), or set DOCKER_HOST \
             (`docker info`: Cannot connect to the Docker daemon. Is it running?)"
        );
    }

    #[test]
    fn docker_engine_error_names_docker_host_or_the_context_endpoint() {
        let (sh, _dir) = fake_docker(
            "[ \"$1\" = context ] && echo unix:///home/me/.docker/desktop/docker.sock && exit 0\nexit 1",
        );

        let from_context = require_docker_engine(&sh).unwrap_err().to_string();
        sh.set_var("DOCKER_HOST", "tcp://127.0.0.1:1");
        let from_env = require_docker_engine(&sh).unwrap_err().to_string();

        assert!(
            from_context.starts_with(
                "the Docker engine at unix:///home/me/.docker/desktop/docker.sock does not answer: "
            ),
            "{from_context}"
        );
        assert!(
            from_env.starts_with("the Docker engine at tcp://127.0.0.1:1 does not answer: "),
            "{from_env}"
        );
    }

    #[test]
    fn docker_engine_refusing_the_user_says_to_join_the_docker_group() {
        let (sh, _dir) = fake_docker(
            "echo 'permission denied while trying to connect to the Docker daemon socket' >&2\nexit 1",
        );

        let error = require_docker_engine(&sh).unwrap_err().to_string();

        assert!(
            error.starts_with(
                "the Docker engine at unix:///var/run/docker.sock refuses this user: \
                 add it to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
            ),
            "{error}"
        );
    }

    #[test]
    fn missing_buildx_on_docker_23_or_later_says_how_to_install_it() {
        let (sh, _dir) = fake_docker("[ \"$1\" = version ] && echo 26.1.5 && exit 0\nexit 1");

        let error = require_buildx(&sh).unwrap_err().to_string();

        assert_eq!(
            error,
            "docker buildx is missing: DOCKER_BUILDKIT=1 needs the buildx plugin from Docker 23 on \
             (this docker is 26.1.5): install it with `apt-get install docker-buildx` (Debian/Ubuntu), \
             `docker-buildx-plugin` from Docker's apt repository, or Docker Desktop"
        );
    }

    #[test]
    fn docker_20_10_builds_with_buildkit_without_buildx() {
        let (sh, _dir) = fake_docker("[ \"$1\" = version ] && echo 20.10.24 && exit 0\nexit 1");

        require_buildx(&sh).unwrap();
    }

    #[test]
    fn missing_compose_plugin_says_how_to_install_it() {
        let (sh, _dir) = fake_docker("[ \"$1\" = compose ] && exit 1\nexit 0");

        let error = require_compose(&sh).unwrap_err().to_string();

        assert_eq!(
            error,
            "docker compose is missing: install the compose plugin (`apt-get install docker-compose-plugin` \
             or Docker Desktop); `docker compose up --build` fails with 'unknown flag' without it"
        );
    }
}
