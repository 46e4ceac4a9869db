//! A command line held as data: program, arguments and the environment it adds. Tasks
//! build their plans from these, so `--dry-run` prints exactly what would run and unit
//! tests assert it. Running one goes through xshell, so every argument stays one argv
//! entry and no shell ever parses it; the printed form is quoted for a POSIX shell, so it
//! can be pasted into one.
//!
//! Every child starts without the variables `cargo run` set for the xtask itself
//! (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): they describe the xtask's package, and a
//! child `cargo` that inherits them hands them to build scripts, so ring's reruns and
//! everything above it rebuilds on each switch between `cargo xtask` and plain cargo.

use std::ffi::OsString;
use std::fmt;

use xshell::{Cmd, Shell};

/// One program to run, with its arguments and the variables it gets on top of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Invocation {
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The xshell command that runs this, in the shell's directory and environment, less
    /// the variables Cargo set for the xtask's own run.
    pub fn to_cmd<'a>(&self, sh: &'a Shell) -> Cmd<'a> {
        let inherited = std::env::vars_os().map(|(name, _)| name);
        let cleared = CARGO_SET
            .iter()
            .map(OsString::from)
            .chain(inherited.filter(|name| name.to_str().is_some_and(is_cargo_set)));
        cleared
            .fold(sh.cmd(&self.program), Cmd::env_remove)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
    }
}

/// What `cargo run` and `cargo test` set for the program they start, by name; those
/// under the prefixes of [`is_cargo_set`] are cleared as well, whatever their names.
/// `CARGO`, `CARGO_HOME`, `CARGO_TARGET_DIR` and the user's `CARGO_*` settings stay.
const CARGO_SET: [&str; 20] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
    "CARGO_PKG_NAME",
    "CARGO_PKG_VERSION",
    "CARGO_PKG_VERSION_MAJOR",
    "CARGO_PKG_VERSION_MINOR",
    "CARGO_PKG_VERSION_PATCH",
    "CARGO_PKG_VERSION_PRE",
    "CARGO_PKG_AUTHORS",
    "CARGO_PKG_DESCRIPTION",
    "CARGO_PKG_HOMEPAGE",
    "CARGO_PKG_REPOSITORY",
    "CARGO_PKG_LICENSE",
    "CARGO_PKG_RUST_VERSION",
];

/// Whether Cargo set `name` for the running package: one of [`CARGO_SET`], or under
/// `CARGO_PKG_` (README, `LICENSE_FILE` and future ones) or `CARGO_BIN_EXE_` (tests).
fn is_cargo_set(name: &str) -> bool {
    CARGO_SET.contains(&name)
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

/// `KEY=value ... program arg ...`, quoted for a POSIX shell.
impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}={} ", quote(value))?;
        }
        write!(f, "{}", quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

/// Single-quotes a word unless it is made only of characters no shell treats specially.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn display_puts_environment_first_and_quotes_what_a_shell_would_split() {
        let invocation = Invocation::new("redis-server")
            .args(["--save", "", "--dir", "/tmp/a b", "it's"])
            .env("RUST_LOG", "info,cart_service=debug");

        let shown = invocation.to_string();

        assert_eq!(
            shown,
            r"RUST_LOG=info,cart_service=debug redis-server --save '' --dir '/tmp/a b' 'it'\''s'"
        );
    }

    #[test]
    fn children_lose_the_variables_cargo_set_for_the_xtask_and_keep_the_users() {
        let sh = Shell::new().unwrap();
        for (name, value) in [
            ("CARGO_MANIFEST_DIR", "/w/xtask"),
            ("CARGO_PKG_NAME", "xtask"),
            ("CARGO_PRIMARY_PACKAGE", "1"),
            ("OUT_DIR", "/w/target/out"),
            ("CARGO_HOME", "/home/u/.cargo"),
            ("CARGO_TARGET_DIR", "/w/target"),
            ("CARGO_INCREMENTAL", "0"),
        ] {
            sh.set_var(name, value);
        }

        let seen = Invocation::new("env").to_cmd(&sh).read().unwrap();

        let names: Vec<&str> = seen
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, _)| name)
            .collect();
        for cleared in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "OUT_DIR",
        ] {
            assert!(
                !names.contains(&cleared),
                "{cleared} reached the child: {names:?}"
            );
        }
        for kept in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL"] {
            assert!(
                names.contains(&kept),
                "{kept} did not reach the child: {names:?}"
            );
        }
    }

    #[test]
    fn cargo_set_names_are_the_packages_and_never_the_users_settings() {
        let set = [
            "CARGO_PKG_README",
            "CARGO_PKG_LICENSE_FILE",
            "CARGO_BIN_EXE_xtask",
            "CARGO_CRATE_NAME",
        ];
        let user = [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_TERM_COLOR",
        ];

        let (judged_set, judged_user): (Vec<bool>, Vec<bool>) = (
            set.map(is_cargo_set).to_vec(),
            user.map(is_cargo_set).to_vec(),
        );

        assert_eq!(judged_set, [true; 4]);
        assert_eq!(judged_user, [false; 6]);
    }

    #[test]
    fn to_cmd_passes_each_argument_as_one_argv_entry() {
        let sh = Shell::new().unwrap();
        let invocation = Invocation::new("cargo").args(["fmt", "--all", "--", "--check"]);

        let cmd = invocation.to_cmd(&sh);

        assert_eq!(cmd.to_string(), "cargo fmt --all -- --check");
    }
}
