//! Preferred leaders come back (issue 15), three combined-mode brokers under madsim: a topic with
//! 6 partitions and RF 3 starts with each partition led by its preferred replica (the first of
//! its assignment); broker 1 stops, its leaderships move, it restarts and rejoins every ISR.
//! With `auto.leader.rebalance.enable=true` the active controller elects it again for its
//! preferred partitions within `leader.imbalance.check.interval.seconds`; with `false` it stays
//! without leaderships. `cargo sim-test -p broker --test rebalance_sim`.
#![cfg(madsim)]
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::node::{self, NodeHandle, NodeOptions};
use broker::replica::wire::KafkaConn;
use disk_model::clock::Clock;
use disk_model::{DeviceProfile, SimDisk, SimDiskConfig, Storage};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use tokio::time::Instant;

const TOPIC: &str = "balanced";
const QUORUM: &str = "0@b0:9093,1@b1:9093,2@b2:9093";
const PARTITIONS: i32 = 6;

fn config(id: i32, rebalance: bool) -> BrokerConfig {
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
    c.auto_leader_rebalance_enable = rebalance;
    c.leader_imbalance_check_interval_seconds = 2;
    c
}

async fn start(net: &SimNet, disk: &SimDisk, id: i32, rebalance: bool) -> NodeHandle {
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let host = format!("b{id}");
    let mut opts = NodeOptions::new(
        config(id, rebalance),
        storage,
        net.host(&host),
        &format!("{host}:9092"),
        21 + id as u64,
    );
    opts.advertised = Some((host, 9092));
    node::start(opts).await.expect("the node starts")
}

fn disk(seed: u64) -> SimDisk {
    SimDisk::new(
        SimDiskConfig::new(DeviceProfile::nvme(), seed),
        Clock::Runtime { epoch: Instant::now() },
    )
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn call<Q: kafka_protocol::protocol::Encodable, R: kafka_protocol::protocol::Decodable>(
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

async fn wait_for<T>(what: &str, within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (preferred replica, leader, ISR size) per partition, as broker `id` describes the topic.
async fn partitions(net: &SimNet, id: i32) -> Option<Vec<(i32, i32, usize)>> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb(TOPIC)));
    req.topics = Some(vec![t]);
    let resp: MetadataResponse = call(net, id, ApiKey::Metadata, 12, &req).await?;
    let t = resp.topics.first().filter(|t| t.error_code == 0)?;
    let mut out = vec![(-1, -1, 0); t.partitions.len()];
    for p in &t.partitions {
        let preferred = p.replica_nodes.first()?.0;
        out[p.partition_index as usize] = (preferred, p.leader_id.0, p.isr_nodes.len());
    }
    (out.len() == PARTITIONS as usize).then_some(out)
}

async fn create(net: &SimNet) -> i16 {
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(TOPIC));
    t.num_partitions = PARTITIONS;
    t.replication_factor = 3;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5_000;
    wait_for("CreateTopics", Duration::from_secs(10), async || {
        let r: CreateTopicsResponse = call(net, 0, ApiKey::CreateTopics, 5, &req).await?;
        let code = r.topics[0].error_code;
        (code != 7 && code != 38).then_some(code)
    })
    .await
}

/// Broker 1 restarts; returns the partitions' (preferred, leader) some check intervals after it
/// is back in every ISR.
fn restart_story(rebalance: bool) -> Vec<(i32, i32)> {
    support::block_on(21, async move {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(90 + i)).collect();
        let mut nodes: BTreeMap<i32, NodeHandle> = BTreeMap::new();
        for id in 0..3 {
            nodes.insert(id, start(&net, &disks[id as usize], id, rebalance).await);
        }
        assert_eq!(create(&net).await, 0);
        let first = wait_for("every partition in sync", Duration::from_secs(10), async || {
            partitions(&net, 0).await.filter(|ps| ps.iter().all(|p| p.1 >= 0 && p.2 == 3))
        })
        .await;
        assert!(first.iter().all(|(pref, leader, _)| pref == leader), "{first:?}");
        assert!(first.iter().any(|p| p.0 == 1), "broker 1 prefers some partition: {first:?}");
        nodes.remove(&1).unwrap().halt();
        net.crash("b1");
        wait_for("leaderships moved off broker 1", Duration::from_secs(10), async || {
            partitions(&net, 0).await.filter(|ps| ps.iter().all(|p| p.1 >= 0 && p.1 != 1))
        })
        .await;
        net.restart("b1");
        nodes.insert(1, start(&net, &disks[1], 1, rebalance).await);
        wait_for("broker 1 back in every ISR", Duration::from_secs(20), async || {
            partitions(&net, 0).await.filter(|ps| ps.iter().all(|p| p.2 == 3))
        })
        .await;
        // Two check intervals and then some.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let last = partitions(&net, 2).await.expect("metadata");
        for n in nodes.values() {
            n.halt();
        }
        last.into_iter().map(|(pref, leader, _)| (pref, leader)).collect()
    })
}

#[test]
fn a_restarted_broker_gets_its_preferred_leaderships_back() {
    let after = restart_story(true);
    assert!(after.iter().all(|(pref, leader)| pref == leader), "{after:?}");
}

#[test]
fn without_auto_rebalance_it_leads_nothing() {
    let after = restart_story(false);
    assert!(after.iter().all(|(_, leader)| *leader != 1), "{after:?}");
    assert!(after.iter().any(|(pref, leader)| pref != leader), "{after:?}");
}
