//! A command line held as data: program, arguments and the environment it adds. Tasks
//! build their plans from these, so `--dry-run` prints exactly what would run and unit
//! tests assert it. Running one goes through xshell, so every argument stays one argv
//! entry and no shell ever parses it; the printed form is quoted for a POSIX shell, so it
//! can be pasted into one.

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

    /// The xshell command that runs this, in the shell's directory and environment.
    pub fn to_cmd<'a>(&self, sh: &'a Shell) -> Cmd<'a> {
        sh.cmd(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
    }
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
    fn to_cmd_passes_each_argument_as_one_argv_entry() {
        let sh = Shell::new().unwrap();
        let invocation = Invocation::new("cargo").args(["fmt", "--all", "--", "--check"]);

        let cmd = invocation.to_cmd(&sh);

        assert_eq!(cmd.to_string(), "cargo fmt --all -- --check");
    }
}
