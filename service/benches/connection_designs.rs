//! The Redis connection designs side by side, under the `add` workload without HTTP:
//! 64 tasks, each running `add_item.lua` (EVALSHA) back to back for a few seconds on a
//! one-worker Tokio runtime (a pod of the chart), against a `redis-server` this program
//! starts. For each design it prints operations per second and the CPU microseconds per
//! operation of this process and of Redis.
//!
//! ```sh
//! cargo bench -p cart-service --bench connection_designs      # needs redis-server on PATH
//! ```
//!
//! Designs: the service's own [`RedisConnection`] (one multiplexed connection with
//! coalesced writes, and four round-robin), redis-rs's `MultiplexedConnection` as it comes
//! (no coalescing), and a bb8 pool of multiplexed connections (16 and 64), one checked out
//! per operation as a classic pool does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cart_service::config::Config;
use cart_service::store::RedisConnection;
use redis::Script;

const TASKS: usize = 64;
const RUN: Duration = Duration::from_secs(3);
const SCRIPT: &str = include_str!("../src/store/scripts/add_item.lua");

fn main() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| design | ops/s | CPU us/op (this process) | CPU us/op (redis) |\n|---|---:|---:|---:|"
    );
    runtime.block_on(async {
        for connections in [1, 4] {
            let mut config = Config::for_local(&url);
            config.redis.connections = connections;
            let redis_connection = RedisConnection::start(&config).unwrap();
            while !redis_connection.is_connected() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let name = format!("RedisConnection, {connections} multiplexed, coalesced");
            measure(&name, redis.pid(), move |script, args| {
                let connection = redis_connection.clone();
                async move {
                    connection
                        .run("EVALSHA", |mut conn| async move {
                            args.invoke(&script, &mut conn).await
                        })
                        .await
                        .unwrap();
                }
            })
            .await;
        }

        let client = redis::Client::open(url.as_str()).unwrap();
        let plain = client.get_multiplexed_async_connection().await.unwrap();
        measure(
            "redis-rs MultiplexedConnection, as it comes",
            redis.pid(),
            move |script, args| {
                let mut conn = plain.clone();
                async move {
                    args.invoke(&script, &mut conn).await.unwrap();
                }
            },
        )
        .await;

        for size in [16, 64] {
            let pool = bb8::Pool::builder()
                .max_size(size)
                .min_idle(Some(size))
                .build(client.clone())
                .await
                .unwrap();
            let name = format!("bb8 pool of {size}, one connection per operation");
            measure(&name, redis.pid(), move |script, args| {
                let pool = pool.clone();
                async move {
                    let mut conn = pool.get().await.unwrap();
                    args.invoke(&script, &mut *conn).await.unwrap();
                }
            })
            .await;
        }
    });
}

/// One `add_item.lua` call's arguments: a cart among 10 000, a product among 100.
#[derive(Clone, Copy)]
struct AddArgs(u64);

impl AddArgs {
    async fn invoke(
        self,
        script: &Script,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<Vec<i64>> {
        script
            .key(format!("cart:{{bench-{}}}", self.0 % 10_000))
            .arg(format!("p-{}", self.0 % 100))
            .arg(1)
            .arg(1_000_000)
            .arg(1_000)
            .arg(3600)
            .invoke_async(conn)
            .await
    }
}

/// Runs `operation` from [`TASKS`] tasks for [`RUN`] and prints the design's row.
async fn measure<F, Fut>(name: &str, redis_pid: u32, operation: F)
where
    F: Fn(Arc<Script>, AddArgs) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let operation = Arc::new(operation);
    let script = Arc::new(Script::new(SCRIPT));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    // Warm up: load the script, fill the pool.
    for i in 0..TASKS as u64 {
        operation(Arc::clone(&script), AddArgs(i)).await;
    }
    let (self_before, redis_before) = (cpu_seconds(std::process::id()), cpu_seconds(redis_pid));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|task| {
            let (operation, script) = (Arc::clone(&operation), Arc::clone(&script));
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    operation(Arc::clone(&script), AddArgs(n)).await;
                    n += TASKS as u64;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed) as f64;
    let per_op = |before: f64, after: f64| (after - before) * 1e6 / ops;
    println!(
        "| {name} | {:.0} | {:.1} | {:.1} |",
        ops / seconds,
        per_op(self_before, cpu_seconds(std::process::id())),
        per_op(redis_before, cpu_seconds(redis_pid)),
    );
}

/// utime + stime of `pid`, in seconds (Linux, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A `redis-server` without persistence on `port`; killed on drop.
struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
