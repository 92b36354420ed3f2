//! The shop put together. [`App::build`] is the one place that turns a
//! [`Config`] into running parts (databases, listeners, the event bus,
//! relays, recovery, the three services and the gateway); the `shop` binary
//! (`main.rs`: flags, telemetry, one-shot commands) and the in-process test
//! harness both start the shop through it.

pub mod app;
pub mod commands;
pub mod config;
pub mod databases;
pub mod healthcheck;
pub mod memory;
pub mod metrics;
pub mod telemetry;

pub use app::{Addresses, App, Part, shutdown_signal};
pub use config::{Cli, Command, Config, Service};
