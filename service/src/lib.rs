//! cart-service: a shopping-cart microservice over Redis, built to run on Kubernetes.
//!
//! The binary (`main.rs`) only wires these pieces together: [`config`] reads and validates
//! the environment, [`telemetry`] sets up logging, [`startup::Application`] binds the
//! listener and runs the HTTP server ([`server`]) with the shutdown sequence, [`routes`]
//! holds the HTTP API, [`auth`] the optional bearer-token check of the cart routes, and
//! [`store`] everything that speaks Redis.

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
pub use startup::Application;
