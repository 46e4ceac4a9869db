//! What the integration-test crates of `cart-service` (`service/tests/api`, `telemetry`,
//! `jaeger`) share, one module per concern: a real `redis-server` ([`redis`]) or Redis
//! Cluster ([`cluster`]), the service in-process ([`app`]) and as a child process
//! ([`process`]), free ports ([`port`]), waiting with a deadline instead of a fixed sleep
//! ([`poll`]), a private CA for the TLS tests ([`tls`]), and signed tokens with the JWKS
//! server that publishes their keys ([`jwt`]).
//!
//! A helper that only one test crate uses stays in that crate.

// Test support fails loudly by design: a panic, with a message naming what failed, is how
// a helper reports a broken precondition, so every public function may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod app;
pub mod cluster;
pub mod jwt;
pub mod poll;
pub mod port;
pub mod process;
pub mod redis;
pub mod tls;
