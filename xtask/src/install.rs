//! `cargo xtask tools`: install the pinned tools of `tools::PINNED` that are missing or
//! at another version, under `target/tools` — Helm with `go install` from the Go module
//! proxy, the Python tools with pip into a venv — so a fresh clone needs only Go and
//! Python 3 on the machine. Each install is printed as the command it runs.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::Shell;

use crate::command::Invocation;
use crate::flags;
use crate::tools::{PINNED, Pinned, Source};

impl flags::Tools {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let missing: Vec<&Pinned> = PINNED
            .iter()
            .copied()
            .filter(|tool| self.force || !tool.is_installed())
            .collect();
        let go = find_go(sh);
        let plan = plan(&missing, &go, &venv_dir());
        if self.dry_run {
            print!("{}", describe(&plan));
            return Ok(());
        }
        if plan.is_empty() {
            println!("tools: all pinned tools are installed under target/tools");
            return Ok(());
        }
        for (tool, invocations) in &plan {
            println!("==> installing {} {}", tool.name, tool.version);
            for invocation in invocations {
                println!("    $ {invocation}");
                invocation
                    .to_cmd(sh)
                    .run()
                    .with_context(|| format!("installing {} failed", tool.name))?;
            }
            let stamp = tool.stamp();
            if let Some(dir) = stamp.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(&stamp, tool.version)
                .with_context(|| format!("cannot write {}", stamp.display()))?;
            tool.require()?;
        }
        Ok(())
    }
}

/// For each tool to install, the commands that install it.
pub fn plan<'a>(tools: &[&'a Pinned], go: &str, venv: &Path) -> Vec<(&'a Pinned, Vec<Invocation>)> {
    let bin = crate::workspace_root().join("target/tools/bin");
    tools
        .iter()
        .map(|tool| {
            let steps = match tool.source {
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
            };
            (*tool, steps)
        })
        .collect()
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
