//! What the nodes of a [`RedisCluster`](super::RedisCluster) say about the cluster, read
//! with plain commands, and the one standard a cluster is held to before a test goes on:
//! every running node reports `cluster_state:ok`, all of them agree on the nodes, their
//! roles and the slots, no slot is half-way through a migration, the nodes the cluster
//! counts as alive are exactly those that run, and every replica has synced with its master.
//!
//! The probes are blocking (the cluster must be ready before `RedisCluster::start` returns,
//! which runs in no particular runtime); the async waits run them on Tokio's blocking pool.

use std::time::{Duration, Instant};

use super::slots::{SLOTS, SlotMap, SlotRange};

/// How often a wait looks at the cluster again.
const INTERVAL: Duration = Duration::from_millis(50);

/// The nodes of a cluster, by port, and whether each runs: what a probe asks and what it
/// expects. Cheap to clone into a blocking task.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) ports: Vec<u16>,
    pub(super) running: Vec<bool>,
}

impl Probe {
    /// Polls [`Probe::ready`] until it holds; the agreed view and when it held, or a panic
    /// naming `what` and the last reason it did not hold after `limit`.
    pub(super) fn wait_ready(&self, limit: Duration, what: &str) -> (View, Instant) {
        let started = Instant::now();
        loop {
            match self.ready() {
                Ok(view) => return (view, Instant::now()),
                Err(why) => assert!(
                    started.elapsed() < limit,
                    "{what}: not within {limit:?}: {why}"
                ),
            }
            std::thread::sleep(INTERVAL);
        }
    }

    /// The cluster as every running node sees it, once it is ready; why not otherwise.
    pub(super) fn ready(&self) -> Result<View, String> {
        let mut agreed: Option<(usize, View)> = None;
        for node in (0..self.ports.len()).filter(|&node| self.running[node]) {
            let port = self.ports[node];
            let (info, nodes, replication): (String, String, String) = redis::pipe()
                .cmd("CLUSTER")
                .arg("INFO")
                .cmd("CLUSTER")
                .arg("NODES")
                .cmd("INFO")
                .arg("replication")
                .query(&mut connect(port)?)
                .map_err(|e| format!("node {node} (port {port}) does not answer: {e}"))?;
            if !has_line(&info, "cluster_state:ok") {
                return Err(format!(
                    "node {node} (port {port}) is not in cluster_state:ok"
                ));
            }
            if has_line(&replication, "role:slave")
                && !has_line(&replication, "master_link_status:up")
            {
                return Err(format!(
                    "replica node {node} (port {port}) has not synced with its master"
                ));
            }
            let view = View::parse(&nodes)?;
            match &agreed {
                Some((first, seen)) if seen.entries != view.entries => {
                    return Err(format!(
                        "nodes {first} and {node} do not agree on the cluster"
                    ));
                }
                Some(_) => {}
                None => agreed = Some((node, view)),
            }
        }
        let (_, view) = agreed.ok_or("no node of the cluster runs")?;
        self.settled(&view)?;
        Ok(view)
    }

    /// The view of the first running node that answers; panics if none does.
    pub(super) fn any_view(&self) -> View {
        self.query(|con| redis::cmd("CLUSTER").arg("NODES").query::<String>(con))
            .and_then(|nodes| View::parse(&nodes))
            .unwrap_or_else(|e| panic!("read the cluster's nodes: {e}"))
    }

    /// Runs `query` on the first running node that answers.
    pub(super) fn query<T>(
        &self,
        query: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut last = String::from("no node of the cluster runs");
        for node in (0..self.ports.len()).filter(|&node| self.running[node]) {
            match connect(self.ports[node])
                .and_then(|mut con| query(&mut con).map_err(|e| e.to_string()))
            {
                Ok(answer) => return Ok(answer),
                Err(error) => last = format!("node {node}: {error}"),
            }
        }
        Err(last)
    }

    /// The index of the node on `port`.
    pub(super) fn index(&self, port: u16) -> Result<usize, String> {
        self.ports.iter().position(|&p| p == port).ok_or_else(|| {
            format!("the cluster names a node on port {port}, which is none of its own")
        })
    }

    /// Whether `view` has settled: nothing moving or joining, alive exactly what runs,
    /// every slot served by a master that is alive.
    fn settled(&self, view: &View) -> Result<(), String> {
        let mut served = vec![false; SLOTS];
        for entry in &view.entries {
            let node = self.index(entry.port)?;
            if entry.unsettled {
                return Err(format!(
                    "node {node} is joining, or one of its slots is migrating"
                ));
            }
            if entry.failed == self.running[node] {
                let state = if entry.failed { "failed" } else { "alive" };
                return Err(format!("the cluster still counts node {node} as {state}"));
            }
            if !entry.failed {
                for slot in entry.slots.iter().flat_map(|&(start, end)| start..=end) {
                    served[usize::from(slot)] = true;
                }
            }
        }
        match served.iter().filter(|&&s| !s).count() {
            0 => Ok(()),
            missing => Err(format!("{missing} slots have no master")),
        }
    }
}

/// One node's answer to CLUSTER NODES: every node it knows, by port.
#[derive(Debug, Clone)]
pub(super) struct View {
    entries: Vec<Entry>,
}

/// A node as CLUSTER NODES describes it, with only what every node should agree on
/// (not `myself`, a suspicion `fail?`, ping times or link states).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    port: u16,
    /// Its master's id, when it is a replica.
    master: Option<String>,
    failed: bool,
    /// In a handshake, without an address, or with a slot migrating or importing.
    unsettled: bool,
    /// Inclusive ranges.
    slots: Vec<(u16, u16)>,
}

impl View {
    fn parse(text: &str) -> Result<Self, String> {
        let mut entries = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(Entry::parse)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|entry| entry.port);
        Ok(Self { entries })
    }

    /// The id of the node on `port`.
    pub(super) fn id_of(&self, port: u16) -> Option<&str> {
        self.entries
            .iter()
            .find(|entry| entry.port == port)
            .map(|entry| entry.id.as_str())
    }

    /// The slot map, nodes named by their index in `probe`.
    pub(super) fn slot_map(&self, probe: &Probe) -> SlotMap {
        let index = |port| probe.index(port).unwrap_or_else(|e| panic!("{e}"));
        let mut ranges = Vec::new();
        for master in self.entries.iter().filter(|entry| !entry.failed) {
            let replicas: Vec<usize> = self
                .entries
                .iter()
                .filter(|entry| !entry.failed && entry.master.as_ref() == Some(&master.id))
                .map(|entry| index(entry.port))
                .collect();
            ranges.extend(master.slots.iter().map(|&(start, end)| SlotRange {
                start,
                end,
                master: index(master.port),
                replicas: replicas.clone(),
            }));
        }
        ranges.sort_by_key(|range| range.start);
        SlotMap { ranges }
    }
}

impl Entry {
    /// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("a CLUSTER NODES line redis-server would not write: {line}");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, address, flags, master, ..] = fields[..] else {
            return Err(bad());
        };
        let port = address
            .split('@')
            .next()
            .and_then(|host_port| host_port.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(bad)?;
        let flags: Vec<&str> = flags.split(',').collect();
        let mut slots = Vec::new();
        let mut unsettled = flags.contains(&"handshake") || flags.contains(&"noaddr");
        for slot in fields.iter().skip(8) {
            if slot.starts_with('[') {
                unsettled = true;
                continue;
            }
            let (start, end) = slot.split_once('-').unwrap_or((slot, slot));
            slots.push((
                start.parse().map_err(|_| bad())?,
                end.parse().map_err(|_| bad())?,
            ));
        }
        Ok(Self {
            id: id.to_owned(),
            port,
            master: (master != "-").then(|| master.to_owned()),
            failed: flags.contains(&"fail"),
            unsettled,
            slots,
        })
    }
}

/// A blocking connection to the node on `port` that gives up rather than hang on one
/// that does not answer.
fn connect(port: u16) -> Result<redis::Connection, String> {
    let timeout = Some(Duration::from_secs(2));
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|con| {
            con.set_read_timeout(timeout)?;
            con.set_write_timeout(timeout)?;
            Ok(con)
        })
        .map_err(|e| format!("connect to port {port}: {e}"))
}

fn has_line(text: &str, wanted: &str) -> bool {
    text.lines().any(|line| line.trim() == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
8cb8 127.0.0.1:31001@32001 myself,master - 0 1796566414000 1 connected 100-5460
040e 127.0.0.1:31006@32006 slave a449 0 1796566414535 2 connected
9d8b 127.0.0.1:31004@32004 master - 0 1796566414132 7 connected 10923-16383
a449 127.0.0.1:31002@32002 master - 0 1796566414333 2 connected 0-99 5461-10922
b2bc 127.0.0.1:31005@32005 slave 8cb8 0 1796566414233 1 connected
5ffc 127.0.0.1:31003@32003 master,fail - 1796566412518 1796566412000 3 disconnected
";

    fn probe() -> Probe {
        Probe {
            ports: (31001..=31006).collect(),
            running: vec![true, true, false, true, true, true],
        }
    }

    #[test]
    fn the_slot_map_names_masters_and_live_replicas_by_index() {
        let view = View::parse(NODES).unwrap();

        let map = view.slot_map(&probe());

        assert_eq!(map.covered(), SLOTS);
        assert_eq!(map.masters(), [0, 1, 3]);
        assert_eq!(map.master_of_slot(50), 1);
        assert_eq!(map.replicas_of(1), [5]);
        assert_eq!(map.replicas_of(3), Vec::<usize>::new());
        assert_eq!(map.slots_of(1).len(), 100 + 5462);
    }

    #[test]
    fn a_view_that_counts_a_killed_node_alive_has_not_settled() {
        let view = View::parse(NODES).unwrap();
        let mut killed_replica = probe();
        killed_replica.running[4] = false;

        let settled = probe().settled(&view);
        let unsettled = killed_replica.settled(&view);

        assert_eq!(settled, Ok(()));
        assert_eq!(
            unsettled,
            Err("the cluster still counts node 4 as alive".to_owned())
        );
    }

    #[test]
    fn a_migrating_slot_has_not_settled() {
        let migrating = NODES.replace("100-5460", "100-5460 [100->-a449]");
        let view = View::parse(&migrating).unwrap();

        let settled = probe().settled(&view);

        assert_eq!(
            settled,
            Err("node 0 is joining, or one of its slots is migrating".to_owned())
        );
    }
}
