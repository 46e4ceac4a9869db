//! The Redis Cluster the `*-cluster` scenarios run against: six `redis-server` processes on
//! loopback, joined by `redis-cli --cluster create` into three masters with a replica each,
//! each on a free port with its cluster bus on another (`--cluster-port`: the default, the
//! port + 10000, may be taken or past 65535), in a directory of its own for its
//! `nodes.conf`, with no persistence. The run waits until every node says
//! `cluster_state:ok` and every master's replica is online, since `add-cluster-wait`'s
//! writes wait for it. Its data goes in through the cluster: first the hashes
//! redis-benchmark's HGETALL reads, by redis-benchmark itself, since only it knows which
//! slots' tags it spells for `{tag}`; then the carts, as a pipeline to one node whose
//! `MOVED` answers send each command on to the master holding its key. Each node is an
//! [`Owned`] process, killed however the run ends.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::Shell;

use super::loadgen;
use super::processes::{Owned, free_ports, redis_replies, redis_text};
use super::scenarios;
use super::session::wait_for_redis;
use crate::command::Invocation;

/// Nodes of the cluster: three masters and a replica of each.
pub const NODES: usize = 6;
/// Masters among them.
const MASTERS: usize = 3;
/// A Redis Cluster's hash slots.
const SLOTS: u64 = 16_384;
/// The ports the `--dry-run` text shows (a run takes free ones): the nodes' from 7001,
/// their buses' from 17001.
pub const PLAN_PORTS: [u16; NODES] = [7001, 7002, 7003, 7004, 7005, 7006];
const PLAN_BUS_OFFSET: u16 = 10_000;
/// How long the new cluster may take to agree on its slots and sync its replicas.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// The redis-benchmark HSETs of the first run of the tagged fill; each run after it sends
/// twice as many as the one before, until one adds no hash.
const FIRST_FILL_REQUESTS: u64 = 1024;
/// Where the doubling gives up: 64 HSETs a slot.
const LAST_FILL_REQUESTS: u64 = 64 * SLOTS;
/// The tagged fill's connections, as many as the budget's.
const TAGGED_FILL_CONNECTIONS: u32 = 64;

/// A running, ready Redis Cluster.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Owned>,
    ports: Vec<u16>,
}

impl Cluster {
    /// Starts the nodes in `dir`, joins them and waits until the cluster is ready.
    pub fn start(sh: &Shell, dir: &Path) -> anyhow::Result<Self> {
        let ports = free_ports(2 * NODES)?;
        let (ports, buses) = ports.split_at(NODES);
        let mut nodes = Vec::with_capacity(NODES);
        for (&port, &bus) in ports.iter().zip(buses) {
            let dir = node_dir(dir, port);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut node = Owned::spawn(sh, "redis-server", &node(port, bus, &dir), Stdio::null())?;
            wait_for_redis(&mut node, port)?;
            nodes.push(node);
        }
        let create = create(ports);
        let output = create.to_cmd(sh).quiet().ignore_status().output()?;
        if !output.status.success() {
            bail!(
                "`{create}` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut cluster = Self {
            nodes,
            ports: ports.to_vec(),
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// The nodes' client ports, every one a seed for the service.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Fills the cluster: the hashes the cluster's HGETALL reads, then the carts. Returns
    /// the number of the first cart each master holds: a service that reads those speaks
    /// to the whole cluster.
    pub fn fill(&self, sh: &Shell) -> anyhow::Result<Vec<u32>> {
        let hashes = self.fill_tagged(sh)?;
        let landed = route(self.ports[0], &scenarios::cart_commands(), redis_replies)
            .context("pre-filling the carts through the redis cluster")?;
        let sample = first_on_each(&landed);
        if sample.len() != MASTERS {
            bail!(
                "the pre-filled carts landed on {} nodes, not on the {MASTERS} masters",
                sample.len()
            );
        }
        println!(
            "    filled {hashes} hashes for redis-benchmark's HGETALL and {} carts, on {MASTERS} \
             masters",
            landed.len()
        );
        Ok(sample)
    }

    /// Stops every node.
    pub fn stop(self) -> anyhow::Result<()> {
        for node in self.nodes {
            node.stop()?;
        }
        Ok(())
    }

    /// Polls every node until each is ready in its role and there are [`MASTERS`] masters.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let roles: Vec<Option<Role>> = self.ports.iter().map(|&port| role_of(port)).collect();
            let masters = roles.iter().filter(|&&r| r == Some(Role::Master)).count();
            if roles.iter().all(Option::is_some) && masters == MASTERS {
                return Ok(());
            }
            for node in &mut self.nodes {
                node.ensure_running()?;
            }
            if Instant::now() > deadline {
                bail!(
                    "the redis cluster on ports {:?} was not ready within {READY_LIMIT:?} \
                     (every node in cluster_state:ok, each of {MASTERS} masters with its replica \
                     online): {roles:?}",
                    self.ports
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the tagged fill, each run with twice the HSETs of the one before, until every
    /// master holds a hash and a run adds none: then every hash the cluster's HGETALL can
    /// reach exists. (Redis 7.0's redis-benchmark spells the tag of one slot of each master,
    /// so that is 3 hashes; later ones a random slot's each request, up to 16 384.) The
    /// hashes are counted on the masters, where nothing else has written yet; returns how
    /// many there are.
    fn fill_tagged(&self, sh: &Shell) -> anyhow::Result<u64> {
        let mut before = 0;
        let mut requests = FIRST_FILL_REQUESTS;
        loop {
            let invocation = tagged_fill(self.ports[0], requests);
            let output = invocation.to_cmd(sh).quiet().ignore_status().output()?;
            let text =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            loadgen::parse_redis_benchmark(&text).with_context(|| invocation.to_string())?;
            let mut on_masters = Vec::with_capacity(MASTERS);
            for &port in &self.ports {
                if role_of(port) == Some(Role::Master) {
                    on_masters.push(redis_text(port, &["DBSIZE"])?.parse::<u64>()?);
                }
            }
            let hashes = on_masters.iter().sum();
            if hashes == before && on_masters.iter().all(|&n| n > 0) {
                return Ok(hashes);
            }
            if requests >= LAST_FILL_REQUESTS {
                bail!(
                    "`{invocation}` still adds hashes ({before} before it, {hashes} after, by \
                     master {on_masters:?})"
                );
            }
            before = hashes;
            requests *= 2;
        }
    }
}

/// The `--dry-run` lines of the cluster's start and fill, on [`PLAN_PORTS`].
pub fn describe(dir: &Path) -> String {
    let mut text = format!(
        "     the cluster scenarios against a Redis Cluster started for them, {NODES} nodes \
         (a run takes free ports):\n"
    );
    for port in PLAN_PORTS {
        let bus = port + PLAN_BUS_OFFSET;
        let _ = writeln!(text, "     {}", node(port, bus, &node_dir(dir, port)));
    }
    let _ = writeln!(
        text,
        "     {}\n     \
         until every node says cluster_state:ok and each master's replica is online; then\n     \
         {}\n     \
         doubling -n until every master holds a hash and a run adds none (DBSIZE), then the\n     \
         pre-filled carts' HSETs sent to {} and on to the master each MOVED answer names",
        create(&PLAN_PORTS),
        tagged_fill(PLAN_PORTS[0], FIRST_FILL_REQUESTS),
        PLAN_PORTS[0],
    );
    text
}

/// A cluster node: the run's throwaway redis-server in cluster mode, its bus on `bus`, its
/// `nodes.conf` in `dir`. A replica syncs at once (by default a master waits 5 s for more
/// replicas to share one transfer).
fn node(port: u16, bus: u16, dir: &Path) -> Invocation {
    super::redis(port, dir)
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .args(["--cluster-port".to_owned(), bus.to_string()])
}

/// `redis-cli --cluster create` of the nodes on `ports`: three masters, a replica each.
fn create(ports: &[u16]) -> Invocation {
    Invocation::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
        .args(["--cluster-replicas", "1", "--cluster-yes"])
}

/// redis-benchmark sending `requests` HSETs of the tagged fill to the cluster of the node
/// on `port`.
fn tagged_fill(port: u16, requests: u64) -> Invocation {
    loadgen::redis_benchmark(
        port,
        TAGGED_FILL_CONNECTIONS,
        requests,
        &scenarios::tagged_fill(),
    )
}

fn node_dir(dir: &Path, port: u16) -> PathBuf {
    dir.join("cluster").join(port.to_string())
}

/// What a ready node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Master,
    Replica,
}

/// The role of the node on `port` if it is ready in it; `None` while it is not, or does
/// not answer.
fn role_of(port: u16) -> Option<Role> {
    let cluster = redis_text(port, &["CLUSTER", "INFO"]).ok()?;
    let replication = redis_text(port, &["INFO", "replication"]).ok()?;
    ready_role(&cluster, &replication)
}

/// A node's role, from its `CLUSTER INFO` and `INFO replication`, once it sees the cluster
/// `ok` and, a master, has its replica online or, a replica, its link to its master up.
fn ready_role(cluster_info: &str, replication: &str) -> Option<Role> {
    if field(cluster_info, "cluster_state") != Some("ok") {
        return None;
    }
    match field(replication, "role")? {
        "master" => (field(replication, "connected_slaves") == Some("1")
            && field(replication, "slave0").is_some_and(|s| s.contains("state=online")))
        .then_some(Role::Master),
        "slave" => {
            (field(replication, "master_link_status") == Some("up")).then_some(Role::Replica)
        }
        _ => None,
    }
}

/// The value of `name` in an `INFO`-style text of `name:value` lines.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Sends each of `commands` to the master that holds its key, with `send` (one pipeline to
/// a node, its one-line replies back): all to the node on `first`, then each one a node
/// answered `MOVED <slot> <host>:<port>` to, to that port. Returns the port each landed on.
fn route(
    first: u16,
    commands: &[Vec<String>],
    mut send: impl FnMut(u16, &[Vec<String>]) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Vec<u16>> {
    let mut landed = vec![0; commands.len()];
    let mut pending = BTreeMap::from([(first, (0..commands.len()).collect::<Vec<usize>>())]);
    // A MOVED names the slot's master; a second one would mean that slots moved meanwhile.
    for _ in 0..2 {
        let mut moved: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (port, indices) in pending {
            let batch: Vec<Vec<String>> = indices.iter().map(|&i| commands[i].clone()).collect();
            for (i, reply) in indices.into_iter().zip(send(port, &batch)?) {
                if let Some(to) = moved_to(&reply) {
                    moved.entry(to).or_default().push(i);
                } else if reply.starts_with(['+', ':']) {
                    landed[i] = port;
                } else {
                    bail!(
                        "redis on 127.0.0.1:{port} answered {reply:?} to {} {}",
                        commands[i][0],
                        commands[i][1]
                    );
                }
            }
        }
        if moved.is_empty() {
            return Ok(landed);
        }
        pending = moved;
    }
    bail!("the redis cluster redirected a command twice: its slots moved while it was filled")
}

/// The port a `-MOVED <slot> <host>:<port>` reply sends the command to.
fn moved_to(reply: &str) -> Option<u16> {
    let address = reply.strip_prefix("-MOVED ")?.split_whitespace().nth(1)?;
    address.rsplit_once(':')?.1.parse().ok()
}

/// The index of the first command that landed on each port, in the order of the commands.
fn first_on_each(landed: &[u16]) -> Vec<u32> {
    let mut seen = Vec::new();
    let mut first = Vec::new();
    for (index, port) in (0..).zip(landed) {
        if !seen.contains(port) {
            seen.push(*port);
            first.push(index);
        }
    }
    first
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    const CLUSTER_OK: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n";

    #[test]
    fn a_node_is_ready_once_it_sees_the_cluster_ok_and_its_replication_up() {
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                      slave0:ip=127.0.0.1,port=7004,state=online,offset=14,lag=0\r\n";
        let syncing = "role:master\r\nconnected_slaves:1\r\n\
                       slave0:ip=127.0.0.1,port=7004,state=wait_bgsave,offset=0,lag=0\r\n";
        let replica = "role:slave\r\nmaster_link_status:up\r\nconnected_slaves:0\r\n";

        assert_eq!(ready_role(CLUSTER_OK, master), Some(Role::Master));
        assert_eq!(ready_role(CLUSTER_OK, replica), Some(Role::Replica));
        assert_eq!(ready_role(CLUSTER_OK, syncing), None, "replica not online");
        assert_eq!(
            ready_role(CLUSTER_OK, "role:master\r\nconnected_slaves:0\r\n"),
            None,
            "no replica yet"
        );
        assert_eq!(
            ready_role(CLUSTER_OK, "role:slave\r\nmaster_link_status:down\r\n"),
            None
        );
        assert_eq!(ready_role("cluster_state:fail\r\n", master), None);
    }

    #[test]
    fn moved_replies_name_the_port_the_command_goes_on_to() {
        assert_eq!(moved_to("-MOVED 3999 127.0.0.1:7002"), Some(7002));
        assert_eq!(moved_to(":20"), None);
        assert_eq!(moved_to("-ERR wrong number of arguments"), None);
    }

    /// A cluster of three masters on ports 1, 2 and 3, each holding the keys that end in
    /// its digit, as the pipelines of [`route`] see them: it counts what each receives.
    fn three_masters(
        received: &mut BTreeMap<u16, usize>,
    ) -> impl FnMut(u16, &[Vec<String>]) -> anyhow::Result<Vec<String>> {
        move |port, batch| {
            *received.entry(port).or_default() += batch.len();
            Ok(batch
                .iter()
                .map(|command| {
                    let owner: u16 = command[1][command[1].len() - 1..].parse().unwrap();
                    if owner == port {
                        ":20".to_owned()
                    } else {
                        format!("-MOVED 1 127.0.0.1:{owner}")
                    }
                })
                .collect())
        }
    }

    #[test]
    fn each_command_goes_on_to_the_master_a_moved_names_and_lands_there() {
        let commands: Vec<Vec<String>> = ["k1", "k2", "k3", "k12", "k11"]
            .map(|key| {
                vec![
                    "HSET".to_owned(),
                    key.to_owned(),
                    "f".to_owned(),
                    "1".to_owned(),
                ]
            })
            .to_vec();
        let mut received = BTreeMap::new();

        let landed = route(1, &commands, three_masters(&mut received)).unwrap();

        assert_eq!(landed, [1, 2, 3, 2, 1]);
        assert_eq!(received, BTreeMap::from([(1, 5), (2, 2), (3, 1)]));
        assert_eq!(
            first_on_each(&landed),
            [0, 1, 2],
            "the first key of each master"
        );
    }

    #[test]
    fn an_error_reply_or_a_second_redirection_fails_the_fill() {
        let command = vec![vec!["HSET".to_owned(), "k1".to_owned()]];

        let refused = route(1, &command, |_, _| Ok(vec!["-OOM no memory".to_owned()]));
        let moving = route(1, &command, |port, _| {
            Ok(vec![format!("-MOVED 1 127.0.0.1:{}", port + 1)])
        });

        let refused = refused.unwrap_err().to_string();
        assert!(
            refused.contains("\"-OOM no memory\" to HSET k1"),
            "{refused}"
        );
        assert!(moving.unwrap_err().to_string().contains("slots moved"));
    }

    #[test]
    fn nodes_run_in_cluster_mode_with_a_bus_port_and_directory_of_their_own() {
        let dir = Path::new("/tmp/run");

        let node = node(7001, 17001, &node_dir(dir, 7001)).to_string();
        let create = create(&PLAN_PORTS).to_string();

        assert!(
            node.starts_with(
                "redis-server --bind 127.0.0.1 --port 7001 --save '' --appendonly no \
                              --dir /tmp/run/cluster/7001 "
            ),
            "the throwaway redis-server: {node}"
        );
        assert!(
            node.ends_with(
                "--cluster-enabled yes --cluster-config-file nodes.conf \
                 --repl-diskless-sync-delay 0 --cluster-port 17001"
            ),
            "{node}"
        );
        assert_eq!(
            create,
            "redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
             127.0.0.1:7004 127.0.0.1:7005 127.0.0.1:7006 --cluster-replicas 1 --cluster-yes"
        );
    }

    #[test]
    fn the_tagged_fill_is_redis_benchmark_writing_the_hashes_its_hgetall_reads() {
        let fill = tagged_fill(7001, FIRST_FILL_REQUESTS).to_string();

        assert!(
            fill.starts_with(
                "redis-benchmark --cluster --threads 1 -h 127.0.0.1 -p 7001 -c 64 -n 1024 -P 1 \
                 --csv HSET 'rb:filled:{tag}' p-00 1 p-01 2"
            ),
            "{fill}"
        );
    }
}
