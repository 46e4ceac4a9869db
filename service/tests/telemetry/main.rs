//! Telemetry tests, in-process: the span tree of every cart route (captured by the SDK's
//! in-memory exporter), W3C context propagation, and the correlation of log lines with
//! spans. One global subscriber serves the whole binary; tests tell their spans apart by
//! trace id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod logs;
mod spans;
mod support;
