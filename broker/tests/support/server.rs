//! A broker node on loopback TCP for the wire-level tests (real world only), started the way
//! `broker serve` starts one: [`broker::node::start`].

use std::sync::Arc;

use broker::node::{self, NodeHandle, NodeOptions};
use broker::{Broker, BrokerConfig};
use disk_model::{OsStorage, Storage};
use net_model::tcp::TcpNetwork;
use net_model::Network;

pub struct Server {
    /// `127.0.0.1:port`, where clients connect (also what Metadata advertises).
    pub addr: String,
    pub broker: Arc<Broker>,
    /// Where `GET /metrics` is served, when the node was given a metrics listener.
    pub metrics_addr: Option<String>,
    node: NodeHandle,
    dir: tempfile::TempDir,
}

/// A node on a fresh data directory.
pub async fn start(config: BrokerConfig) -> Server {
    start_in(config, tempfile::tempdir().expect("a temp dir")).await
}

/// A node on `dir` (e.g. the one a stopped node left).
pub async fn start_in(config: BrokerConfig, dir: tempfile::TempDir) -> Server {
    start_with(config, dir, |_| {}).await
}

/// A node on `dir` with options changed by `tweak` (e.g. a metrics listener).
pub async fn start_with(
    config: BrokerConfig,
    dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut NodeOptions),
) -> Server {
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(dir.path()).expect("data dir"));
    let net: Arc<dyn Network> = Arc::new(TcpNetwork::new(config.fetch_zero_copy));
    let mut opts = NodeOptions::new(config, storage, net, "127.0.0.1:0", 0);
    tweak(&mut opts);
    let node = node::start(opts).await.expect("the node starts");
    let (addr, broker) = (node.bound.clone(), node.broker.clone());
    Server { addr, broker, metrics_addr: node.metrics_addr.clone(), node, dir }
}

impl Server {
    /// Clean shutdown; returns the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.node.shutdown().await.expect("clean shutdown");
        self.dir
    }
}
