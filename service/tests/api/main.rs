//! Integration tests: the real service against a real `redis-server`, both started by
//! `cart_test_support`. One test binary, one module per area.

// Tests and their harness fail loudly by design: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod cart;
mod cli;
mod concurrency;
mod connections;
mod errors;
mod faults;
mod idempotency;
mod logging;
mod memory;
mod monitoring;
mod openapi;
mod operations;
mod replication;
mod shutdown;
mod stress;
mod tls;
