//! Three combined-mode brokers under madsim for the `*_sim.rs` tests: each is broker and
//! controller (`b0`..`b2`, clients on `:9092`, the quorum on `:9093`), with timers short enough
//! that elections, fencing and ISR changes happen within simulated seconds.

use std::sync::Arc;
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::node::{self, NodeHandle, NodeOptions};
use broker::replica::wire::KafkaConn;
use disk_model::clock::Clock;
use disk_model::{DeviceProfile, SimDisk, SimDiskConfig, Storage};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use net_model::SimNet;
use tokio::time::Instant;

/// The controller quorum: every broker votes.
pub const QUORUM: &str = "0@b0:9093,1@b1:9093,2@b2:9093";

/// Broker `id`'s configuration: a voter of [`QUORUM`] with fast heartbeats, elections, fetches
/// and ISR changes.
pub fn config(id: i32) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.node_id = id;
    c.quorum.voters = Some(QUORUM.into());
    c.quorum.controller_listen = Some(format!("b{id}:9093"));
    c.quorum.broker_heartbeat_interval_ms = 100;
    c.quorum.broker_session_timeout_ms = 1_000;
    c.quorum.election_timeout_ms = 300;
    c.quorum.fetch_timeout_ms = 300;
    c.quorum.metadata_poll_ms = 50;
    c.replication.replica_lag_time_max_ms = 1_000;
    c.replication.replica_fetch_wait_max_ms = 100;
    c.replication.replica_fetch_backoff_ms = 50;
    c.replication.replica_socket_timeout_ms = 2_000;
    c
}

/// Starts broker `config.node_id` on host `b<id>` of `net`, on `disk`, advertised as `b<id>:9092`.
pub async fn start(net: &SimNet, disk: &SimDisk, config: BrokerConfig, seed: u64) -> NodeHandle {
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let host = format!("b{}", config.node_id);
    let listen = format!("{host}:9092");
    let mut opts = NodeOptions::new(config, storage, net.host(&host), &listen, seed);
    opts.advertised = Some((host, 9092));
    node::start(opts).await.expect("the node starts")
}

/// A simulated NVMe disk on the runtime's clock.
pub fn disk(seed: u64) -> SimDisk {
    SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), seed), Clock::runtime())
}

/// One request to broker `id` from host `client` on a fresh connection; `None` when it cannot be
/// sent or answered.
pub async fn call<Q: Encodable, R: Decodable>(
    net: &SimNet,
    id: i32,
    key: ApiKey,
    v: i16,
    req: &Q,
) -> Option<R> {
    let addr = format!("b{id}:9092");
    let mut c =
        KafkaConn::connect(net.host("client").as_ref(), &addr, "test", Duration::from_secs(2))
            .await
            .ok()?;
    c.call(key, v, req, 64 << 20, Duration::from_secs(10)).await.ok()
}

/// Polls `f` every 10 ms until it gives a value; fails the test naming `what` after `within`.
pub async fn wait_for<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
