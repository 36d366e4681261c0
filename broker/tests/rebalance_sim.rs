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
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::node::NodeHandle;
use disk_model::SimDisk;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{ApiKey, TopicName};
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use support::kafka::sb;
use support::sim_cluster::{self, call, disk, wait_for};

const TOPIC: &str = "balanced";
const PARTITIONS: i32 = 6;

fn config(id: i32, rebalance: bool) -> BrokerConfig {
    let mut c = sim_cluster::config(id);
    c.auto_leader_rebalance_enable = rebalance;
    c.leader_imbalance_check_interval_seconds = 2;
    c
}

async fn start(net: &SimNet, disk: &SimDisk, id: i32, rebalance: bool) -> NodeHandle {
    sim_cluster::start(net, disk, config(id, rebalance), 21 + id as u64).await
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
