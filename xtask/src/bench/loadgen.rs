//! The two load generators as data and as parsers: the wrk command line for a scenario and
//! the `WRK_JSON` line its `done()` hook prints, and the non-pipelined `redis-benchmark`
//! command line (against one Redis or, `--cluster`, a Redis Cluster) and its `--csv`
//! output. Running them is the caller's business.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::command::Invocation;

/// wrk threads: one, as redis-benchmark uses one, so both load generators have the same
/// shape. On 2 cores shared with the service and Redis a second wrk thread cost more in
/// context switches than it added (add@64: 68 000 req/s with one, 62 000 with two).
pub const WRK_THREADS: u32 = 1;

/// What wrk measured in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResult {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: Errors,
}

/// wrk's error counts: socket errors by kind, and `status` for responses of 400 and up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub status: u64,
    pub timeout: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

/// What redis-benchmark measured in one run (its CSV has no p99.9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisResult {
    pub command: String,
    /// Whether it ran against the Redis Cluster (`--cluster`); reports from before the
    /// cluster scenarios had only the one Redis.
    #[serde(default)]
    pub cluster: bool,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What redis-benchmark is to run: a command, the key space (`-r`) its `__rand_int__`
/// placeholders range over when it has any, and whether against the Redis Cluster. There,
/// `--cluster` spreads the clients over the masters and spells `{tag}` in a key as a hash
/// tag of a slot of the client's master, so each command goes to the master that
/// holds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLoad {
    pub command: Vec<String>,
    pub keys: Option<u32>,
    pub cluster: bool,
}

impl RedisLoad {
    /// `command` against the one Redis, over `keys` keys.
    pub fn standalone(command: &[&str], keys: u32) -> Self {
        Self {
            command: command.iter().map(|&word| word.to_owned()).collect(),
            keys: Some(keys),
            cluster: false,
        }
    }

    /// `command` against the Redis Cluster, its `{tag}` spelled by redis-benchmark.
    pub fn cluster(command: &[&str], keys: Option<u32>) -> Self {
        Self {
            cluster: true,
            keys,
            ..Self::standalone(command, 0)
        }
    }
}

/// `wrk` with the scenario's script, at `connections`, for `seconds`.
pub fn wrk(script: &Path, url: &str, connections: u32, seconds: u64) -> Invocation {
    Invocation::new("wrk").args([
        "--threads".to_owned(),
        WRK_THREADS.min(connections).to_string(),
        "--connections".to_owned(),
        connections.to_string(),
        "--duration".to_owned(),
        format!("{seconds}s"),
        "--timeout".to_owned(),
        "2s".to_owned(),
        "--script".to_owned(),
        script.display().to_string(),
        url.to_owned(),
    ])
}

/// `redis-benchmark` running `load` non-pipelined (`-P 1`) on one thread, `requests` times,
/// against the Redis on `port` or, for the cluster, the cluster that node belongs to. (In
/// cluster mode redis-benchmark would run a thread per master unless told otherwise.)
pub fn redis_benchmark(port: u16, connections: u32, requests: u64, load: &RedisLoad) -> Invocation {
    let cluster = if load.cluster {
        ["--cluster", "--threads", "1"].as_slice()
    } else {
        &[]
    };
    let keys = load.keys.map(|keys| ["-r".to_owned(), keys.to_string()]);
    Invocation::new("redis-benchmark")
        .args(cluster.iter().copied())
        .args([
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            connections.to_string(),
            "-n".to_owned(),
            requests.to_string(),
        ])
        .args(keys.into_iter().flatten())
        .args(["-P", "1", "--csv"])
        .args(load.command.iter().cloned())
}

#[derive(Deserialize)]
struct WrkJson {
    requests: f64,
    duration_us: f64,
    #[serde(flatten)]
    errors: Errors,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

/// The result in wrk's output: the `WRK_JSON` line the generated `done()` prints.
pub fn parse_wrk(stdout: &str) -> anyhow::Result<HttpResult> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK_JSON "))
        .ok_or_else(|| anyhow!("wrk printed no WRK_JSON line:\n{stdout}"))?;
    let raw: WrkJson = serde_json::from_str(line).context("cannot parse wrk's WRK_JSON line")?;
    if raw.duration_us <= 0.0 {
        bail!("wrk ran for no time: {line}");
    }
    let seconds = raw.duration_us / 1e6;
    Ok(HttpResult {
        requests: f64_to_u64(raw.requests),
        seconds,
        rps: raw.requests / seconds,
        p50_ms: raw.p50_us / 1e3,
        p99_ms: raw.p99_us / 1e3,
        p999_ms: raw.p999_us / 1e3,
        max_ms: raw.max_us / 1e3,
        errors: raw.errors,
    })
}

/// The result row of `redis-benchmark --csv`; an `Error` line anywhere is a failure.
pub fn parse_redis_benchmark(output: &str) -> anyhow::Result<RedisResult> {
    if let Some(error) = output.lines().find(|line| line.contains("Error")) {
        bail!("redis-benchmark reported an error: {error}");
    }
    let mut rows = output.lines().filter(|line| line.starts_with('"'));
    let header = split_csv(rows.next().ok_or_else(|| anyhow!("no CSV in:\n{output}"))?);
    let row = split_csv(
        rows.next()
            .ok_or_else(|| anyhow!("no CSV row in:\n{output}"))?,
    );
    let column = |name: &str| -> anyhow::Result<&str> {
        let index = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("no column {name} in redis-benchmark's CSV"))?;
        row.get(index)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("short redis-benchmark CSV row"))
    };
    let number = |name: &str| -> anyhow::Result<f64> {
        column(name)?
            .parse()
            .with_context(|| format!("redis-benchmark's {name} is not a number"))
    };
    Ok(RedisResult {
        command: column("test")?.to_owned(),
        cluster: false,
        rps: number("rps")?,
        p50_ms: number("p50_latency_ms")?,
        p99_ms: number("p99_latency_ms")?,
    })
}

/// Splits one line of redis-benchmark's CSV: every field is double-quoted, none holds a quote.
fn split_csv(line: &str) -> Vec<String> {
    line.split("\",\"")
        .map(|field| field.trim_matches('"').to_owned())
        .collect()
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // counts, printed with %.0f
fn f64_to_u64(value: f64) -> u64 {
    value.max(0.0).round() as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 5s test @ http://127.0.0.1:4000/\n  2 threads and 64 connections\n\
        Requests/sec:  20000.00\n\
        WRK_JSON {\"requests\":100000,\"duration_us\":5000000,\"connect\":0,\"read\":1,\"write\":0,\
        \"status\":2,\"timeout\":0,\"p50_us\":1500,\"p99_us\":4200,\"p999_us\":9000,\"max_us\":12000}\n";

    #[test]
    fn wrk_json_line_becomes_rates_and_milliseconds() {
        let result = parse_wrk(WRK_OUTPUT).unwrap();

        assert_eq!(result.requests, 100_000);
        assert!((result.rps - 20_000.0).abs() < 1e-6);
        assert!((result.p50_ms - 1.5).abs() < 1e-9);
        assert!((result.p99_ms - 4.2).abs() < 1e-9);
        assert!((result.p999_ms - 9.0).abs() < 1e-9);
        assert_eq!(result.errors.total(), 3);
        assert_eq!(result.errors.status, 2);
    }

    #[test]
    fn wrk_output_without_the_json_line_is_an_error() {
        let error = parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").unwrap_err();

        assert!(error.to_string().contains("no WRK_JSON line"), "{error}");
    }

    #[test]
    fn redis_benchmark_csv_gives_rps_and_latency() {
        let output = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
            \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
            \"HINCRBY rb:cart:{__rand_int__} p-__rand_int__ 1\",\"38461.54\",\"0.314\",\"0.032\",\
            \"0.175\",\"0.359\",\"4.887\",\"8.751\"\n";

        let result = parse_redis_benchmark(output).unwrap();

        assert_eq!(
            result.command,
            "HINCRBY rb:cart:{__rand_int__} p-__rand_int__ 1"
        );
        assert!((result.rps - 38_461.54).abs() < 1e-9);
        assert!((result.p50_ms - 0.175).abs() < 1e-9);
        assert!((result.p99_ms - 4.887).abs() < 1e-9);
    }

    #[test]
    fn redis_benchmark_error_lines_fail_the_point() {
        let output =
            "Error from server: ERR unknown command 'X'\n\"test\",\"rps\"\n\"X\",\"1.0\"\n";

        assert!(parse_redis_benchmark(output).is_err());
    }

    #[test]
    fn command_lines_are_non_pipelined_and_use_the_script() {
        let wrk = wrk(
            Path::new("target/bench/add.lua"),
            "http://127.0.0.1:1/",
            64,
            5,
        );
        let redis = redis_benchmark(
            6379,
            64,
            1000,
            &RedisLoad::standalone(&["HGETALL", "k:__rand_int__"], 10),
        );

        assert_eq!(
            wrk.to_string(),
            "wrk --threads 1 --connections 64 --duration 5s --timeout 2s \
             --script target/bench/add.lua http://127.0.0.1:1/"
        );
        assert_eq!(
            redis.to_string(),
            "redis-benchmark -h 127.0.0.1 -p 6379 -c 64 -n 1000 -r 10 -P 1 --csv HGETALL k:__rand_int__"
        );
    }

    #[test]
    fn cluster_loads_run_on_one_thread_over_every_master_with_their_tags() {
        let hgetall = RedisLoad::cluster(&["HGETALL", "rb:filled:{tag}"], None);
        let hincrby = RedisLoad::cluster(&["HINCRBY", "k:{tag}:__rand_int__", "f", "1"], Some(7));

        assert_eq!(
            redis_benchmark(7001, 64, 1000, &hgetall).to_string(),
            "redis-benchmark --cluster --threads 1 -h 127.0.0.1 -p 7001 -c 64 -n 1000 -P 1 --csv \
             HGETALL 'rb:filled:{tag}'"
        );
        assert!(
            redis_benchmark(7001, 64, 1000, &hincrby)
                .to_string()
                .contains("-n 1000 -r 7 -P 1 --csv HINCRBY"),
            "the key space only where a placeholder uses it"
        );
    }
}
