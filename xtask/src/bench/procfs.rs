//! What `/proc` says about the service under load: resident memory (`VmRSS` of
//! `/proc/<pid>/status`), CPU time (`utime` + `stime` of `/proc/<pid>/stat`), the time
//! its threads waited for a CPU (`/proc/<pid>/task/*/schedstat`) and the machine's load
//! average, plus a sampler thread that keeps the peak RSS during a run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow};

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which Linux fixes at
/// 100 for user space on every architecture it runs on.
const USER_HZ: f64 = 100.0;

/// How often the sampler reads `VmRSS`.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its closing `)`.
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // ticks of one process fit f64 exactly for years
    Some((utime + stime) as f64 / USER_HZ)
}

/// The run-queue wait of a `/proc/<pid>/task/<tid>/schedstat` line (its second field:
/// nanoseconds the thread was runnable but waited for a CPU), in seconds.
pub fn parse_schedstat_wait_seconds(schedstat: &str) -> Option<f64> {
    let nanoseconds: u64 = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // nanoseconds of waiting fit f64 for months
    Some(nanoseconds as f64 / 1e9)
}

/// The 1, 5 and 15 minute load averages of a `/proc/loadavg` text.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// The process's resident memory now, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    parse_vm_rss_kib(&status).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The process's CPU time so far (user + system, all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat).ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat"))
}

/// Names of the threads that serve requests: Tokio's workers.
pub const WORKER_THREAD: &str = "tokio-rt-worker";

/// How long the process's threads named `name` have waited for a CPU while runnable,
/// summed, in seconds: the time other threads on the same cores took from them.
pub fn run_queue_wait_seconds(pid: u32, name: &str) -> anyhow::Result<f64> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0.0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot read {tasks}"))? {
        let task = task?.path();
        // A thread that ended meanwhile has no files any more: its wait is gone too.
        let (Ok(comm), Ok(text)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("schedstat")),
        ) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        total += parse_schedstat_wait_seconds(&text)
            .ok_or_else(|| anyhow!("cannot parse {}: {text:?}", task.display()))?;
    }
    Ok(total)
}

/// The machine's load averages now (zeros where `/proc/loadavg` cannot be read).
pub fn loadavg() -> [f64; 3] {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| parse_loadavg(&text))
        .unwrap_or_default()
}

/// What the service used while `work` ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub peak_rss_kib: u64,
    pub cpu_seconds: f64,
    /// Time its Tokio workers were runnable but waited for a CPU.
    pub workers_waited_seconds: f64,
}

/// Runs `work` while a thread samples `pid`'s RSS; returns its result and the usage.
pub fn measure<T>(pid: u32, work: impl FnOnce() -> T) -> anyhow::Result<(T, Usage)> {
    let cpu_before = cpu_seconds(pid)?;
    let wait_before = run_queue_wait_seconds(pid, WORKER_THREAD)?;
    let peak = AtomicU64::new(rss_kib(pid).unwrap_or(0));
    let done = AtomicBool::new(false);
    let result = thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    });
    let usage = Usage {
        // A process that exited has no VmRSS: the caller checks it is still running.
        peak_rss_kib: peak.load(Ordering::Relaxed).max(rss_kib(pid).unwrap_or(0)),
        cpu_seconds: cpu_seconds(pid)? - cpu_before,
        workers_waited_seconds: (run_queue_wait_seconds(pid, WORKER_THREAD)? - wait_before)
            .max(0.0),
    };
    Ok((result, usage))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status =
            "Name:\tcart-service\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";

        assert_eq!(parse_vm_rss_kib(status), Some(12_345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_time_counts_fields_after_a_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "4242 (cart (svc) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";

        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn schedstat_gives_the_run_queue_wait() {
        // time on CPU (ns), time waiting on a run queue (ns), timeslices
        assert_eq!(
            parse_schedstat_wait_seconds("123456789 2500000000 4242\n"),
            Some(2.5)
        );
        assert_eq!(parse_schedstat_wait_seconds("123456789\n"), None);
        assert_eq!(parse_schedstat_wait_seconds("1 x 3\n"), None);
    }

    #[test]
    fn loadavg_gives_three_averages() {
        assert_eq!(
            parse_loadavg("0.52 1.10 2.00 1/234 5678\n"),
            Some([0.52, 1.10, 2.00])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();

        let ((), usage) = measure(pid, || thread::sleep(Duration::from_millis(30))).unwrap();

        assert!(usage.peak_rss_kib > 0);
        assert!(usage.cpu_seconds >= 0.0);
        assert!(usage.workers_waited_seconds >= 0.0);
    }

    #[test]
    fn only_the_named_threads_wait_is_summed() {
        let pid = std::process::id();
        let name = "procfs-waiter";
        let (started, stop) = (std::sync::Barrier::new(2), AtomicBool::new(false));
        thread::scope(|scope| {
            thread::Builder::new()
                .name(name.to_owned())
                .spawn_scoped(scope, || {
                    started.wait();
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(1));
                    }
                })
                .unwrap();
            started.wait();
            // Every thread waits a little each time it is woken before it runs; on an idle
            // machine 20 wake-ups can all find a free CPU at once, so watch for up to 2 s.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let waited = loop {
                thread::sleep(Duration::from_millis(20));
                let waited = run_queue_wait_seconds(pid, name).unwrap();
                if waited > 0.0 || std::time::Instant::now() > deadline {
                    break waited;
                }
            };
            stop.store(true, Ordering::Relaxed);
            assert!(waited > 0.0, "{waited}");
        });
        let none = run_queue_wait_seconds(pid, "no-such-thread").unwrap();
        assert!(none.abs() < f64::EPSILON, "{none}");
    }
}
