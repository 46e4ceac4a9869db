//! The service on a real Redis Cluster (six `redis-server` processes on loopback, three
//! masters with a replica each): failover under load with and without
//! `REDIS_WAIT_REPLICAS`, resharding under load, and the connection supervisor's promises
//! (startup never waits, fast 503s, recovery by itself) in cluster mode. The API contract
//! itself runs on a cluster in the `test-cluster` ci step (`CART_TEST_REDIS=cluster`).
//!
//! Each test owns its cluster, because it kills, restarts or reshards nodes. Run with
//! `--nocapture` to see the measured seconds of 503s and writes lost.

// Tests and their harness fail loudly by design: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failover;
mod load;
mod reshard;
mod supervisor;
