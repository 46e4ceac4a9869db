//! A CPU limit for one process, the way Kubernetes sets one for a container: a CFS quota
//! on a cgroup of its own (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`).
//!
//! The observability cost is a question about one pod: how much less `add` traffic it
//! carries at its CPU limit when it traces and logs. On this shared 2-core machine an
//! unlimited service also competes with the local Jaeger, Redis and wrk for the same
//! cores, so its throughput answers a different question (what the machine does); a
//! quota makes the service's own CPU the bottleneck, as it is in a pod at its limit.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The CFS period both cgroup versions use by default, in microseconds.
const PERIOD_US: u64 = 100_000;
/// Where cgroups are mounted on Linux.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup interface the machine offers for CPU quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy with the `cpu` controller, rooted here.
    V2(PathBuf),
    /// The v1 `cpu` controller's own hierarchy, rooted here.
    V1(PathBuf),
}

impl Hierarchy {
    /// The hierarchy under `root` (`/sys/fs/cgroup`) that can set a CPU quota, or why
    /// there is none.
    pub fn find(root: &Path) -> Result<Self, String> {
        let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "cpu") {
            return Ok(Self::V2(root.to_owned()));
        }
        let v1 = root.join("cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            return Ok(Self::V1(v1));
        }
        Err(format!(
            "no cgroup CPU controller under {} (neither v2 cgroup.controllers with cpu nor v1 \
             cpu/cpu.cfs_quota_us)",
            root.display()
        ))
    }

    /// The machine's, under `/sys/fs/cgroup`.
    pub fn of_this_machine() -> Result<Self, String> {
        Self::find(Path::new(CGROUP_ROOT))
    }
}

/// A cgroup holding one process under a CPU quota; removed when dropped (after the
/// process has exited, when the kernel lets an empty cgroup go).
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    /// A new cgroup `name` limited to `cores` CPUs, with nothing in it yet.
    pub fn create(hierarchy: &Hierarchy, name: &str, cores: f64) -> anyhow::Result<Self> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )] // a few cores, a period of 100 000 us
        let quota_us = (cores * PERIOD_US as f64).round() as u64;
        let root = match hierarchy {
            Hierarchy::V2(root) | Hierarchy::V1(root) => root,
        };
        if let Hierarchy::V2(_) = hierarchy {
            // Children get the cpu controller only when the root hands it down; asking
            // again is harmless, and a refusal shows up as a missing cpu.max below.
            let _ = fs::write(root.join("cgroup.subtree_control"), "+cpu");
        }
        let dir = root.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let limit = Self { dir };
        match hierarchy {
            Hierarchy::V2(_) => limit.write("cpu.max", &format!("{quota_us} {PERIOD_US}"))?,
            Hierarchy::V1(_) => {
                limit.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
                limit.write("cpu.cfs_quota_us", &quota_us.to_string())?;
            }
        }
        Ok(limit)
    }

    /// Moves `pid`, all its threads, into the cgroup.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .with_context(|| format!("cannot write {value:?} to {}", path.display()))
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Best effort: the kernel refuses while a process is still inside.
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The hierarchy, when this process may create CPU-limited cgroups in it: makes one and
/// removes it.
pub fn probe() -> Result<Hierarchy, String> {
    let hierarchy = Hierarchy::of_this_machine()?;
    let name = format!("cart-bench-probe-{}", std::process::id());
    CpuLimit::create(&hierarchy, &name, 1.0)
        .map_err(|e| format!("cannot set a CPU limit (needs root on a cgroup host): {e:#}"))?;
    Ok(hierarchy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("cgroup-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn v2_is_preferred_when_its_cpu_controller_is_there() {
        let root = temp_root("find");
        assert!(Hierarchy::find(&root).is_err());
        fs::create_dir_all(root.join("cpu")).unwrap();
        fs::write(root.join("cpu/cpu.cfs_quota_us"), "-1").unwrap();
        assert_eq!(Hierarchy::find(&root), Ok(Hierarchy::V1(root.join("cpu"))));
        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        assert_eq!(Hierarchy::find(&root), Ok(Hierarchy::V2(root.clone())));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_half_cpu_limit_is_a_50_ms_quota_per_100_ms_period() {
        let root = temp_root("v2");
        let limit = CpuLimit::create(&Hierarchy::V2(root.clone()), "svc", 0.5).unwrap();
        limit.add(4242).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("svc/cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(root.join("svc/cgroup.procs")).unwrap(),
            "4242"
        );
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
        drop(limit);
        fs::remove_dir_all(&root).unwrap();

        let root = temp_root("v1");
        let limit = CpuLimit::create(&Hierarchy::V1(root.clone()), "svc", 0.5).unwrap();
        limit.add(4242).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("svc/cpu.cfs_quota_us")).unwrap(),
            "50000"
        );
        assert_eq!(
            fs::read_to_string(root.join("svc/cpu.cfs_period_us")).unwrap(),
            "100000"
        );
        assert_eq!(
            fs::read_to_string(root.join("svc/cgroup.procs")).unwrap(),
            "4242"
        );
    }
}
