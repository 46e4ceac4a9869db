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
