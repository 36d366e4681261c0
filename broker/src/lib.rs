//! The Loglab broker. Data flows request → handler → partition → log → storage; this crate never
//! knows which world it runs in: storage, transport, time and randomness come from outside.
//!
//! - [`server`] accepts connections from a `net_model::Listener`; [`connection`] serves one
//!   (framing, one request in flight); [`broker`] holds the state and dispatches to [`api`].
//! - [`protocol`]: error codes, supported versions, headers and framing.
//! - [`topics`]: the persisted topic registry; [`producer_state`]: idempotent-producer checks.
//! - [`config`]: `server.properties` by Kafka's names; [`metrics`]: Kafka-named metrics, Prometheus text.

// Real world only (its hyper dependencies are not compiled under `--cfg madsim`); hidden from
// rustdoc's doctest pass, which never receives `--cfg madsim` and so would see it in that build.
#[cfg(not(any(madsim, doctest)))]
pub mod admin;
mod api;
pub mod broker;
pub mod config;
pub mod connection;
pub mod controller;
pub mod faults;
pub mod group;
pub mod guard;
pub mod log;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod producer_state;
pub mod protocol;
pub mod replica;
pub mod safeguards;
pub mod server;
pub mod tasks;
pub mod topics;

/// Wall-clock milliseconds (virtual under the simulator).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use broker::{Broker, BrokerError, Outcome};
pub use config::BrokerConfig;
