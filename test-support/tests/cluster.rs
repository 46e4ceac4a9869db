//! The Redis Cluster harness against real `redis-server` processes: that it forms the
//! cluster it promises, that its answers (which master serves a key, the slot map, how
//! long a failover took) match what the nodes themselves say, and that killing,
//! restarting and resharding do what the tests of cluster mode rely on. Where the harness
//! reports something, a test checks it against a node directly rather than through the
//! harness again. Run with `--nocapture` to see the measured times.

// Tests and their helpers fail loudly by design: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cart_test_support::cluster::{RedisCluster, SLOTS, shared_cluster};
use cart_test_support::redis::{DirectConnection, redis_client};
use redis::AsyncCommands as _;

#[tokio::test]
async fn a_new_cluster_has_three_masters_each_with_one_replica_and_serves_every_slot() {
    let started = Instant::now();

    let cluster = RedisCluster::start();

    eprintln!(
        "the cluster formed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let map = cluster.slot_map();
    assert_eq!(map.covered(), SLOTS);
    let masters = map.masters();
    assert_eq!(masters.len(), 3, "{map:?}");
    let mut nodes: Vec<usize> = masters.clone();
    for &master in &masters {
        assert_eq!(map.replicas_of(master).len(), 1, "node {master}: {map:?}");
        nodes.extend(map.replicas_of(master));
    }
    nodes.sort_unstable();
    assert_eq!(nodes, (0..RedisCluster::NODES).collect::<Vec<_>>());
    assert_eq!(cluster.url().split(',').count(), RedisCluster::NODES);
    for node in 0..RedisCluster::NODES {
        let info = cluster_info(&cluster.node_url(node)).await;
        for line in [
            "cluster_state:ok",
            "cluster_slots_assigned:16384",
            "cluster_known_nodes:6",
            "cluster_size:3",
        ] {
            assert!(info.contains(line), "node {node} lacks {line}:\n{info}");
        }
    }
}

#[tokio::test]
async fn a_key_written_through_the_cluster_lands_on_the_master_master_of_names() {
    let cluster = shared_cluster();
    let mut client = redis_client(&cluster.url()).await;
    let masters = cluster.slot_map().masters();
    let keys: Vec<String> = (0..20).map(|i| format!("harness:{i}")).collect();
    let mut seen = BTreeSet::new();

    for key in &keys {
        let () = client.set(key, key).await.unwrap();

        let master = cluster.master_of(key);
        seen.insert(master);
        let mut direct = redis_client(&cluster.node_url(master)).await;
        let stored: Option<String> = direct.get(key).await.unwrap();
        assert_eq!(stored.as_deref(), Some(key.as_str()), "on node {master}");
        let other = *masters.iter().find(|&&m| m != master).unwrap();
        let mut elsewhere = redis_client(&cluster.node_url(other)).await;
        let moved = elsewhere.get::<_, Option<String>>(key).await.unwrap_err();
        let port = cluster
            .node_url(master)
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(moved.code(), Some("MOVED"), "{moved}");
        assert!(moved.to_string().contains(&port), "{moved} names {port}");
    }

    assert_eq!(seen.len(), 3, "the keys reached every master");
}

#[tokio::test]
async fn killing_a_master_promotes_its_replica_within_seconds_and_keeps_acknowledged_writes() {
    let mut cluster = RedisCluster::start();
    let mut client = cluster.client().await;
    let map = cluster.slot_map();
    let victim = map.masters()[0];
    let replica = map.replicas_of(victim)[0];
    let keys = names(
        keys_in(
            &cluster,
            "failover",
            |s| map.master_of_slot(s) == victim,
            20,
        )
        .await,
    );
    for key in &keys {
        let () = client.set(key, key).await.unwrap();
    }
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(acknowledged, 1, "every master's replica has the writes");

    cluster.kill(victim);
    let took = cluster.wait_for_failover(victim).await;

    eprintln!(
        "node {victim}'s replica {replica} took over {:.2} s after the kill (node timeout {:?})",
        took.as_secs_f64(),
        cluster.node_timeout()
    );
    assert!(took < Duration::from_secs(10), "the failover took {took:?}");
    assert_eq!(cluster.master_of(&keys[0]), replica);
    assert_eq!(role(&cluster.node_url(replica)).await, "master");
    let mut promoted = redis_client(&cluster.node_url(replica)).await;
    for key in &keys {
        let direct: Option<String> = promoted.get(key).await.unwrap();
        let routed: Option<String> = client.get(key).await.unwrap();
        assert_eq!(
            direct.as_deref(),
            Some(key.as_str()),
            "{key} on the new master"
        );
        assert_eq!(routed, direct, "{key} through the cluster client");
    }
}

#[tokio::test]
async fn a_restarted_master_rejoins_as_a_replica_of_its_successor_with_the_data() {
    let mut cluster = RedisCluster::start();
    let map = cluster.slot_map();
    let victim = map.masters()[1];
    let successor = map.replicas_of(victim)[0];
    let key =
        names(keys_in(&cluster, "rejoin", |s| map.master_of_slot(s) == victim, 1).await).remove(0);
    let mut client = cluster.client().await;
    let () = client.set(&key, "kept").await.unwrap();
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query_async(&mut client)
        .await
        .unwrap();
    cluster.kill(victim);
    cluster.wait_for_failover(victim).await;

    cluster.restart(victim);
    let took = cluster.wait_until_ok().await;

    eprintln!("node {victim} rejoined in {:.2} s", took.as_secs_f64());
    let after = cluster.slot_map();
    assert_eq!(after.replicas_of(successor), [victim], "{after:?}");
    assert_eq!(after.slots_of(victim), Vec::<u16>::new());
    let url = cluster.node_url(victim);
    assert_eq!(role(&url).await, "slave");
    let mut rejoined = redis_client(&url).await;
    let () = redis::cmd("READONLY")
        .query_async(&mut rejoined)
        .await
        .unwrap();
    let copy: Option<String> = rejoined.get(&key).await.unwrap();
    assert_eq!(copy.as_deref(), Some("kept"), "synced from its successor");
}

#[tokio::test]
async fn resharding_moves_the_slots_while_keys_in_them_stay_readable() {
    let cluster = RedisCluster::start();
    let before = cluster.slot_map();
    let (from, to) = (before.masters()[0], before.masters()[1]);
    // 100 keys in the first 200 slots of `from` (redis-cli moves a master's lowest slots
    // first), and 100 anywhere on it.
    let first: Vec<u16> = before.slots_of(from).into_iter().take(200).collect();
    let mut keyed = keys_in(&cluster, "reshard", |s| first.contains(&s), 100).await;
    keyed.extend(
        keys_in(
            &cluster,
            "reshard-more",
            |s| before.master_of_slot(s) == from,
            100,
        )
        .await,
    );
    let keys: Vec<String> = keyed.iter().map(|(key, _)| key.clone()).collect();
    let mut client = cluster.client().await;
    for key in &keys {
        let () = client.set(key, key).await.unwrap();
    }
    let reading = Arc::new(AtomicBool::new(true));
    let reader = tokio::spawn(read_until_stopped(
        client.clone(),
        keys.clone(),
        reading.clone(),
    ));

    let reshard = cluster.start_reshard(from, to, 100).await;
    let took = reshard.wait().await;
    reading.store(false, Ordering::SeqCst);
    let (reads, failures) = reader.await.unwrap();

    eprintln!(
        "100 slots moved in {:.2} s, {reads} reads meanwhile",
        took.as_secs_f64()
    );
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "every read during the reshard"
    );
    let after = cluster.slot_map();
    let moved: Vec<u16> = before
        .slots_of(from)
        .into_iter()
        .filter(|&slot| after.master_of_slot(slot) == to)
        .collect();
    assert_eq!(moved.len(), 100);
    assert_eq!(
        after.slots_of(from).len(),
        before.slots_of(from).len() - 100
    );
    assert_eq!(after.slots_of(to).len(), before.slots_of(to).len() + 100);
    let moved_keys: Vec<&String> = keyed
        .iter()
        .filter(|(_, slot)| moved.contains(slot))
        .map(|(key, _)| key)
        .collect();
    assert!(!moved_keys.is_empty(), "some keys were in the moved slots");
    let mut target = redis_client(&cluster.node_url(to)).await;
    for key in moved_keys {
        let there: Option<String> = target.get(key).await.unwrap();
        let routed: Option<String> = client.get(key).await.unwrap();
        assert_eq!(
            there.as_deref(),
            Some(key.as_str()),
            "{key} moved to node {to}"
        );
        assert_eq!(routed, there, "{key} through the cluster client");
    }

    // The blocking form, moving them back.
    cluster.reshard(to, from, 100).await;

    assert_eq!(
        cluster.slot_map().slots_of(from).len(),
        before.slots_of(from).len()
    );
}

/// The first `count` keys `<prefix>:<n>` whose slots `wanted` accepts, with their slots.
async fn keys_in(
    cluster: &RedisCluster,
    prefix: &str,
    wanted: impl Fn(u16) -> bool,
    count: usize,
) -> Vec<(String, u16)> {
    let mut found = Vec::new();
    for batch in 0.. {
        let keys: Vec<String> = (batch * 10_000..(batch + 1) * 10_000)
            .map(|n| format!("{prefix}:{n}"))
            .collect();
        let slots = slots_of(cluster, &keys).await;
        found.extend(
            keys.into_iter()
                .zip(slots)
                .filter(|&(_, slot)| wanted(slot)),
        );
        if found.len() >= count {
            break;
        }
    }
    found.truncate(count);
    found
}

/// The slots of `keys` (CLUSTER KEYSLOT, asked of node 0 in one round trip).
async fn slots_of(cluster: &RedisCluster, keys: &[String]) -> Vec<u16> {
    let mut pipeline = redis::pipe();
    for key in keys {
        pipeline.cmd("CLUSTER").arg("KEYSLOT").arg(key);
    }
    let mut direct = redis_client(&cluster.node_url(0)).await;
    pipeline.query_async(&mut direct).await.unwrap()
}

/// Reads every key again and again until told to stop; how many reads, and what failed.
fn names(keyed: Vec<(String, u16)>) -> Vec<String> {
    keyed.into_iter().map(|(key, _)| key).collect()
}

async fn read_until_stopped(
    mut client: redis::cluster_async::ClusterConnection<cart_service::store::CoalescedNode>,
    keys: Vec<String>,
    reading: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let (mut reads, mut failures) = (0, Vec::new());
    while reading.load(Ordering::SeqCst) {
        for key in &keys {
            match client.get::<_, Option<String>>(key).await {
                Ok(Some(value)) if value == *key => {}
                other => failures.push(format!("{key}: {other:?}")),
            }
            reads += 1;
        }
    }
    (reads, failures)
}

async fn cluster_info(url: &str) -> String {
    let mut direct: DirectConnection = redis_client(url).await;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut direct)
        .await
        .unwrap()
}

/// The node's replication role, as it says itself (`master` or `slave`).
async fn role(url: &str) -> String {
    let mut direct = redis_client(url).await;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut direct)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.trim().strip_prefix("role:"))
        .unwrap_or_default()
        .to_owned()
}
