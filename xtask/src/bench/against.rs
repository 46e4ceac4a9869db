//! `--against REV`: the service as another git revision builds it, measured beside the
//! current one in the same run, so a change's before and after land in one report and
//! share its machine, its Redis and its Jaeger. The revision is checked out as a detached
//! worktree under [`AGAINST_DIR`] and built with a target directory every revision
//! shares, so the dependencies compile once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::Shell;

use crate::command::Invocation;

/// Where the other revisions' worktrees and binaries live, relative to the workspace root.
const AGAINST_DIR: &str = "target/bench/against";

/// A git revision, resolved to its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// As the command line named it.
    pub name: String,
    /// The full commit id it names.
    pub commit: String,
}

impl Revision {
    /// The commit `name` names in the repository of `sh`'s directory, or an error naming it.
    pub fn resolve(sh: &Shell, name: &str) -> anyhow::Result<Self> {
        let invocation = rev_parse(name);
        let commit = invocation
            .to_cmd(sh)
            .quiet()
            .ignore_stderr()
            .read()
            .with_context(|| {
                format!(
                    "--against {name}: no commit of that name in this repository (`{invocation}`)"
                )
            })?;
        Ok(Self {
            name: name.to_owned(),
            commit,
        })
    }

    /// The label of its runs in the reports: the commit's first seven hex digits, as git
    /// abbreviates it.
    pub fn short(&self) -> &str {
        self.commit.get(..7).unwrap_or(&self.commit)
    }

    /// The binary its runs start. It is copied out of the shared target directory, which
    /// the next revision's build overwrites.
    pub fn binary(&self) -> PathBuf {
        self.dir().join("cart-service")
    }

    /// Checks the revision out unless an earlier run did, builds it and copies its binary
    /// to [`Self::binary`], printing each step.
    pub fn prepare(&self, sh: &Shell) -> anyhow::Result<()> {
        println!("==> {}: {}", rev_parse(&self.name), self.commit);
        let source = self.source();
        if sh.current_dir().join(source.join("Cargo.toml")).exists() {
            println!("==> reusing the worktree {}", source.display());
        } else {
            let checkout = self.checkout();
            println!("==> {checkout}");
            checkout
                .to_cmd(sh)
                .run()
                .with_context(|| format!("cannot check {} out", self.name))?;
        }
        let build = self.build();
        println!("==> {build}");
        build
            .to_cmd(sh)
            .run()
            .with_context(|| format!("the release build of {} failed", self.name))?;
        let (from, to) = (built(), self.binary());
        println!("==> copy {} to {}", from.display(), to.display());
        std::fs::copy(sh.current_dir().join(&from), sh.current_dir().join(&to))
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        Ok(())
    }

    /// The `--dry-run` lines of [`Self::prepare`], indented to sit under a numbered step.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "     then --against {}: {} (it names {})\n",
            self.name,
            rev_parse(&self.name),
            self.commit
        );
        let _ = writeln!(
            text,
            "     {}\n       (unless {} holds a checkout from an earlier run)",
            self.checkout(),
            self.source().display()
        );
        let _ = writeln!(text, "     {}", self.build());
        let _ = writeln!(
            text,
            "     copy {} to {}",
            built().display(),
            self.binary().display()
        );
        text
    }

    fn dir(&self) -> PathBuf {
        Path::new(AGAINST_DIR).join(self.short())
    }

    fn source(&self) -> PathBuf {
        self.dir().join("src")
    }

    /// A detached worktree at the commit. `--force` replaces a worktree git still lists
    /// there after `cargo clean` removed it, which git would otherwise refuse.
    fn checkout(&self) -> Invocation {
        Invocation::new("git").args([
            "worktree".to_owned(),
            "add".to_owned(),
            "--force".to_owned(),
            "--detach".to_owned(),
            self.source().display().to_string(),
            self.commit.clone(),
        ])
    }

    /// The current binary's build, of the worktree's manifest and into the shared
    /// target directory.
    fn build(&self) -> Invocation {
        super::build()
            .args([
                "--manifest-path".to_owned(),
                self.source().join("Cargo.toml").display().to_string(),
            ])
            .env("CARGO_TARGET_DIR", target_dir().display().to_string())
    }
}

/// The target directory every revision builds into.
fn target_dir() -> PathBuf {
    Path::new(AGAINST_DIR).join("target")
}

/// Where the build leaves the binary, until the next revision's build replaces it.
fn built() -> PathBuf {
    target_dir().join("release/cart-service")
}

fn rev_parse(name: &str) -> Invocation {
    Invocation::new("git").args([
        "rev-parse".to_owned(),
        "--verify".to_owned(),
        format!("{name}^{{commit}}"),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    fn revision() -> Revision {
        Revision {
            name: "HEAD~3".to_owned(),
            commit: "aeac87b0c0ffee0123456789abcdef0123456789".to_owned(),
        }
    }

    #[test]
    fn a_revision_builds_in_its_own_worktree_into_the_shared_target_directory() {
        let revision = revision();

        let text = revision.describe();

        assert_eq!(revision.short(), "aeac87b");
        assert!(
            text.contains("git rev-parse --verify 'HEAD~3^{commit}'"),
            "{text}"
        );
        assert!(
            text.contains(
                "git worktree add --force --detach target/bench/against/aeac87b/src \
                 aeac87b0c0ffee0123456789abcdef0123456789"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "CARGO_TARGET_DIR=target/bench/against/target cargo build --release --locked \
                 -p cart-service --manifest-path target/bench/against/aeac87b/src/Cargo.toml"
            ),
            "{text}"
        );
        assert_eq!(
            revision.binary(),
            Path::new("target/bench/against/aeac87b/cart-service")
        );
    }

    #[test]
    fn a_name_that_is_no_commit_is_an_error_naming_it() {
        let sh = Shell::new().unwrap();

        let error = Revision::resolve(&sh, "no-such-rev-xyz").unwrap_err();

        assert!(
            format!("{error:#}").starts_with("--against no-such-rev-xyz: no commit of that name"),
            "{error:#}"
        );
    }
}
