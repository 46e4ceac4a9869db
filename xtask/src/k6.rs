//! `cargo xtask k6`: load-test the release from this machine. A kube-rs port-forward
//! listens on 127.0.0.1 (no kubectl needed) and spreads connections over the ready
//! cart-service pods; `k6 run scripts/k6-load-test.js` runs against it with `BASE_URL`
//! set. The task exits with k6's status, so failed thresholds (k6 exits 99) fail it.

use anyhow::Context;
use xshell::Shell;

use kube::Client;

use crate::cluster::{KubeStep, Release, pods};
use crate::command::Invocation;
use crate::flags;
use crate::plan::{Plan, Step};
use crate::tools;

/// The script, shipped here; k6 itself (AGPL) is built by `cargo xtask tools`, never shipped.
pub const SCRIPT: &str = "scripts/k6-load-test.js";
/// The pinned k6, relative to the workspace root where the task runs.
const K6: &str = "target/tools/bin/k6";

impl flags::K6 {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let release = self.target.release();
        let k6 = k6_run(self.local_port, self.vus, self.duration.as_deref());
        if self.dry_run {
            println!("{}", plan(&release, self.local_port, &k6));
            return Ok(());
        }
        crate::install::ensure(sh, &[&tools::PINNED_K6], false)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let code = runtime.block_on(async {
            let client = release.connect().await?;
            forwarded(
                sh,
                client,
                release,
                self.local_port,
                self.vus,
                self.duration.as_deref(),
            )
            .await
        })?;
        drop(runtime);
        if code != 0 {
            println!("k6 exited with {code} (99 means a threshold failed)");
            std::process::exit(code);
        }
        Ok(())
    }
}

/// Runs k6 against a kube-rs port-forward to the release's ready pods on `local_port`
/// (0: any free port); returns k6's exit code (99: a threshold failed).
pub async fn forwarded(
    sh: &Shell,
    client: Client,
    release: Release,
    local_port: u16,
    vus: Option<u32>,
    duration: Option<&str>,
) -> anyhow::Result<i32> {
    let targets = pods::list_targets(client.clone(), &release).await?;
    let (listener, address) = pods::bind(local_port).await?;
    println!(
        "==> port-forward http://{address} -> {} ready pod(s) of release {}",
        targets.len(),
        release.name
    );
    let forward = tokio::spawn(pods::serve(listener, client, release));
    let mut k6 = k6_run(address.port(), vus, duration);
    // Without a terminal k6 prints its progress bar as a new line every second.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        k6 = k6.args(["--quiet"]);
    }
    println!("==> {k6}");
    let status = tokio::process::Command::new(&k6.program)
        .args(&k6.args)
        .envs(k6.env.iter().map(|(k, v)| (k, v)))
        .current_dir(sh.current_dir())
        .status()
        .await
        .context("cannot run k6");
    forward.abort();
    Ok(status?.code().unwrap_or(1))
}

/// The k6 command: the script with `BASE_URL`, and `VUS`/`DURATION` when a constant load was asked for.
fn k6_run(local_port: u16, vus: Option<u32>, duration: Option<&str>) -> Invocation {
    let mut k6 = Invocation::new(K6)
        .args(["run", SCRIPT])
        .env("BASE_URL", format!("http://127.0.0.1:{local_port}"));
    if let (Some(vus), Some(duration)) = (vus, duration) {
        k6 = k6.env("VUS", vus.to_string()).env("DURATION", duration);
    }
    k6
}

fn plan(release: &Release, local_port: u16, k6: &Invocation) -> Plan {
    Plan::new("cargo xtask k6")
        .step(Step::Kube(KubeStep::PortForward {
            release: release.clone(),
            local_port,
        }))
        .run(k6.clone())
        .step(Step::Say(
            "stop the port-forward; exit with k6's status".to_owned(),
        ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Task, Xtask};

    fn dry_run_text(args: &[&str]) -> String {
        let Task::K6(k6) = Xtask::parse_from(args).task else {
            panic!("not k6");
        };
        let invocation = k6_run(k6.local_port, k6.vus, k6.duration.as_deref());
        plan(&k6.target.release(), k6.local_port, &invocation).to_string()
    }

    #[test]
    fn k6_forwards_a_local_port_then_runs_the_script_against_it() {
        let text = dry_run_text(&["cargo xtask", "k6"]);

        insta::assert_snapshot!(text);
    }

    #[test]
    fn k6_with_vus_and_duration_passes_a_constant_load_to_the_script() {
        let text = dry_run_text(&[
            "cargo xtask",
            "k6",
            "--vus",
            "20",
            "--duration",
            "2m",
            "--local-port",
            "9999",
        ]);

        assert!(
            text.contains("\n  2. BASE_URL=http://127.0.0.1:9999 VUS=20 DURATION=2m target/tools/bin/k6 run scripts/k6-load-test.js\n"),
            "{text}"
        );
    }

    #[test]
    fn k6_vus_without_duration_is_refused() {
        let result = Xtask::try_parse_from(["cargo xtask", "k6", "--vus", "20"]);

        assert!(result.is_err());
    }

    #[test]
    fn the_script_reads_every_variable_the_task_sets() {
        let script = std::fs::read_to_string(crate::workspace_root().join(SCRIPT)).unwrap();

        for variable in ["BASE_URL", "VUS", "DURATION"] {
            assert!(
                script.contains(&format!("__ENV.{variable}")),
                "{SCRIPT} ignores {variable}"
            );
        }
    }
}
