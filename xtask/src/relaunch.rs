//! The cluster tasks need kube-rs, k8s-openapi and rustls, which take longer to build than
//! the rest of the xtask together, and the bench needs a plotting crate, so each is
//! compiled only with a cargo feature of its own and `ci`, `dev` and `gen` start after a
//! short build. A build without the feature hands the task to `cargo run --package xtask
//! --features <feature>` with the same arguments: `cargo xtask <task>` stays the one entry
//! point.

use anyhow::{Context, bail};
use xshell::Shell;

use crate::command::Invocation;

/// A cargo feature of the xtask that some tasks need.
#[derive(Debug)]
pub struct Feature {
    /// The feature's name in xtask/Cargo.toml.
    pub name: &'static str,
    /// What it brings, for the message that says why the task is re-run.
    pub brings: &'static str,
}

/// kind-up, kind-down, deploy, k6, hpa-demo, e2e and compose-smoke.
#[cfg(not(feature = "cluster"))]
pub const CLUSTER: Feature = Feature {
    name: "cluster",
    brings: "kube-rs; first time: a few minutes to build",
};

/// bench.
#[cfg(not(feature = "bench"))]
pub const BENCH: Feature = Feature {
    name: "bench",
    brings: "plotters, jsonwebtoken; first time: well under a minute to build",
};

/// Set for the relaunched xtask: a build that still lacks the feature stops instead of
/// relaunching itself again.
const RELAUNCHED: &str = "XTASK_RELAUNCHED_WITH_FEATURE";

/// Runs this command line again in an xtask built with `feature` and exits with its status.
pub fn with_feature(sh: &Shell, feature: &Feature) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let task = args.first().map_or("", String::as_str);
    let name = feature.name;
    if sh.var_os(RELAUNCHED).is_some() {
        bail!(
            "`{task}` needs the {name} feature, but the relaunched xtask was built without it; \
             run `cargo run --package xtask --features {name} -- {task}`"
        );
    }
    let invocation = invocation(feature, args.iter().cloned()).env(RELAUNCHED, "1");
    // On stderr, so a relaunched `--dry-run` prints only its plan on stdout.
    eprintln!(
        "cargo xtask {task}: needs the {name} feature ({}), running it through \
         `cargo run --package xtask --features {name}`",
        feature.brings
    );
    let status = std::process::Command::from(invocation.to_cmd(sh))
        .status()
        .with_context(|| format!("cannot run `{invocation}`"))?;
    // The relaunched xtask has reported its own outcome; only its exit code is left to pass on.
    std::process::exit(status.code().unwrap_or(1));
}

/// `cargo run` of the xtask with `feature` and `args` after `--`.
fn invocation(feature: &Feature, args: impl IntoIterator<Item = String>) -> Invocation {
    Invocation::new("cargo")
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--features",
            feature.name,
            "--",
        ])
        .args(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "cluster"))]
    #[test]
    fn a_cluster_task_reruns_with_the_feature_and_the_same_arguments() {
        let args = [
            "e2e",
            "--tag",
            "cart-service:dev",
            "--build-with",
            "testbed with-net",
        ];

        let shown = invocation(&CLUSTER, args.map(String::from)).to_string();

        assert_eq!(
            shown,
            "cargo run --quiet --package xtask --features cluster -- \
             e2e --tag cart-service:dev --build-with 'testbed with-net'"
        );
    }

    #[cfg(not(feature = "bench"))]
    #[test]
    fn the_bench_reruns_with_its_feature_and_the_same_arguments() {
        let args = ["bench", "--scenario", "add,get", "--dry-run"];

        let shown = invocation(&BENCH, args.map(String::from)).to_string();

        assert_eq!(
            shown,
            "cargo run --quiet --package xtask --features bench -- \
             bench --scenario add,get --dry-run"
        );
    }
}
