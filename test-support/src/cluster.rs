//! A real Redis Cluster on loopback: six `redis-server` processes (three masters, each
//! with one replica), each on free ports of its own (client and cluster bus) in a temp dir
//! of its own, with no persistence, joined by `redis-cli --cluster create`; killed however
//! the test run ends, like every [`RedisServer`].
//!
//! Tests that kill, restart or reshard start their own with [`RedisCluster::start`];
//! `CART_TEST_REDIS=cluster` points the tests that share one Redis at [`shared_cluster`].
//! Nodes are named by their index, `0..RedisCluster::NODES`; which of them are masters is
//! `redis-cli`'s choice, so tests ask [`RedisCluster::slot_map`] or [`RedisCluster::master_of`].
//!
//! A node that is killed comes back empty (nothing is persisted): restart a killed master
//! only after its replica took over, or it returns as the master of its slots with no data.

mod reshard;
mod slots;
mod topology;

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cart_service::store::CoalescedNode;

pub use self::reshard::Reshard;
pub use self::slots::{SLOTS, SlotMap, SlotRange};
use self::topology::Probe;
use crate::port::free_port;
use crate::redis::{RedisServer, cluster_connection};

/// The `cluster-node-timeout` of [`RedisCluster::start`]: short, so a failover takes
/// seconds, long enough that a busy test machine does not fail nodes over by itself.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared cluster's node timeout: nobody kills its nodes, so it only needs to ride out
/// a loaded machine.
const SHARED_NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long forming the cluster, or settling after a restart or reshard, may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster owned by one test; its nodes are killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    killed: Vec<Option<Killed>>,
    node_timeout: Duration,
}

/// What a node served when the test killed it, to tell its failover by.
#[derive(Debug)]
struct Killed {
    at: Instant,
    slots: Vec<u16>,
    replicas: Vec<usize>,
}

impl RedisCluster {
    /// The number of nodes: three masters and three replicas.
    pub const NODES: usize = 6;

    /// Starts a cluster with [`DEFAULT_NODE_TIMEOUT`]; blocks until it is ready (a couple
    /// of seconds): every node in `cluster_state:ok`, agreeing on all 16384 slots, every
    /// replica synced.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(DEFAULT_NODE_TIMEOUT)
    }

    /// Starts a cluster whose nodes take `node_timeout` (`cluster-node-timeout`) to count a
    /// silent peer as failing; a failover takes two to three times that.
    #[must_use]
    pub fn start_with(node_timeout: Duration) -> Self {
        require_redis_cli();
        let timeout = node_timeout.as_millis().to_string();
        let nodes: Vec<RedisServer> = (0..Self::NODES)
            .map(|_| RedisServer::start_as(|| node_arguments(&timeout), false))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(
            nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.port())),
        );
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        run_redis_cli(&mut create, "redis-cli --cluster create");
        let cluster = Self {
            killed: (0..Self::NODES).map(|_| None).collect(),
            nodes,
            node_timeout,
        };
        cluster
            .probe()
            .wait_ready(SETTLE_TIMEOUT, "the new cluster becomes ready");
        cluster
    }

    /// The seed list, as the service takes it: every node's URL, comma-separated.
    #[must_use]
    pub fn url(&self) -> String {
        self.node_urls().join(",")
    }

    /// Every node's URL, by index.
    #[must_use]
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// One node's URL, for a connection to that node alone.
    #[must_use]
    pub fn node_url(&self, node: usize) -> String {
        self.nodes[node].url()
    }

    /// The `cluster-node-timeout` the nodes run with.
    #[must_use]
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// A cluster connection for arranging and inspecting data, routed by key slot.
    pub async fn client(&self) -> redis::cluster_async::ClusterConnection<CoalescedNode> {
        let urls = self.node_urls();
        cluster_connection(urls.iter().map(String::as_str)).await
    }

    /// A node's cluster id (what `CLUSTER MYID` says), killed or not.
    #[must_use]
    pub fn node_id(&self, node: usize) -> String {
        self.probe()
            .any_view()
            .id_of(self.nodes[node].port())
            .unwrap_or_else(|| panic!("the cluster does not know node {node}"))
            .to_owned()
    }

    /// Which master serves each slot, as the first running node sees it; every node sees
    /// the same once a `wait_*` has returned.
    #[must_use]
    pub fn slot_map(&self) -> SlotMap {
        let probe = self.probe();
        probe.any_view().slot_map(&probe)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`; a `{hash tag}` decides it when there is one).
    #[must_use]
    pub fn slot_of(&self, key: &str) -> u16 {
        self.probe()
            .query(|con| redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(con))
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"))
    }

    /// The master that serves `key`.
    #[must_use]
    pub fn master_of(&self, key: &str) -> usize {
        self.slot_map().master_of_slot(self.slot_of(key))
    }

    /// SIGKILLs a node, as a crash would.
    pub fn kill(&mut self, node: usize) {
        let map = self.slot_map();
        self.killed[node] = Some(Killed {
            at: Instant::now(),
            slots: map.slots_of(node),
            replicas: map.replicas_of(node),
        });
        self.nodes[node].kill();
    }

    /// Starts a killed node again on its port, in its directory: it rejoins with its
    /// `nodes.conf` (a replica now, if its replica took over while it was gone). Wait with
    /// [`RedisCluster::wait_until_ok`] for the cluster to take it back.
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart();
        self.killed[node] = None;
    }

    /// Waits until the cluster is ready again (every running node in `cluster_state:ok`,
    /// agreeing on the slots and on which nodes are alive, every replica synced); how long
    /// that took.
    pub async fn wait_until_ok(&self) -> Duration {
        let probe = self.probe();
        let started = Instant::now();
        let (_, ready) =
            blocking(move || probe.wait_ready(SETTLE_TIMEOUT, "the cluster becomes ready again"))
                .await;
        ready - started
    }

    /// Waits until a replica of `master`, which the test killed, serves all its slots and
    /// the cluster is ready again; how long that took from the kill.
    pub async fn wait_for_failover(&self, master: usize) -> Duration {
        let killed = self.killed[master].as_ref().unwrap_or_else(|| {
            panic!("node {master} runs: kill it before waiting for its failover")
        });
        assert!(
            !killed.slots.is_empty(),
            "node {master} served no slots when it was killed: no replica takes over from it"
        );
        let probe = self.probe();
        let limit = self.node_timeout * 10 + Duration::from_secs(10);
        let what = format!("a replica of node {master} takes over its slots");
        let (map, ready) = blocking(move || {
            let (view, ready) = probe.wait_ready(limit, &what);
            (view.slot_map(&probe), ready)
        })
        .await;
        let successor = map.master_of_slot(killed.slots[0]);
        assert!(
            killed.replicas.contains(&successor),
            "node {successor} took over from node {master}, which its replicas were {:?}",
            killed.replicas
        );
        assert_eq!(
            map.slots_of(successor),
            killed.slots,
            "node {successor} serves exactly the slots node {master} served"
        );
        ready - killed.at
    }

    /// Moves `slots` slots from master `from` to master `to` with `redis-cli --cluster
    /// reshard` and waits until the cluster agrees on the result; how long it took.
    pub async fn reshard(&self, from: usize, to: usize, slots: u16) -> Duration {
        self.start_reshard(from, to, slots).await.wait().await
    }

    /// Starts moving `slots` slots from master `from` to master `to` in the background,
    /// once the cluster is ready, and returns at once: the test drives load meanwhile and
    /// then waits on the [`Reshard`].
    pub async fn start_reshard(&self, from: usize, to: usize, slots: u16) -> Reshard {
        self.wait_until_ok().await;
        Reshard::start(
            self.nodes[from].port(),
            [self.node_id(from), self.node_id(to)],
            slots,
            self.probe(),
        )
    }

    fn probe(&self) -> Probe {
        Probe {
            ports: self.nodes.iter().map(RedisServer::port).collect(),
            running: self.nodes.iter().map(RedisServer::is_running).collect(),
        }
    }
}

/// The cluster this test binary shares (what `shared_redis_url` points at under
/// `CART_TEST_REDIS=cluster`): started on first use, never killed, restarted or resharded.
pub fn shared_cluster() -> &'static RedisCluster {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| RedisCluster::start_with(SHARED_NODE_TIMEOUT))
}

/// A cluster node's arguments, its bus port (`--cluster-port`) a free port of its own:
/// the default, its port + 10000, may be taken or past 65535. A master sends a replica
/// its data at once rather than after the default 5 s wait for more replicas.
fn node_arguments(node_timeout_ms: &str) -> Vec<String> {
    let bus = free_port().to_string();
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        node_timeout_ms,
        "--cluster-port",
        &bus,
        "--cluster-announce-ip",
        "127.0.0.1",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn require_redis_cli() {
    if let Err(error) = Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        panic!(
            "redis-cli could not be started ({error}): the cluster tests form their cluster with \
             `redis-cli --cluster create`; install it with `apt-get install redis-tools` (Debian's \
             redis-server package depends on it, so bash .ci/run installs both)"
        );
    }
}

/// Runs a redis-cli command to its end; panics with its output if it fails.
fn run_redis_cli(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs blocking `work` on Tokio's blocking pool, so the test's other tasks (the service
/// in-process, load) go on meanwhile; its panic, with its message, becomes the caller's.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("a blocking cluster probe did not finish: {error}"),
        },
    }
}
