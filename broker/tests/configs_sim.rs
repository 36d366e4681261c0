//! Topic configs through the controller, three combined-mode brokers under madsim (issue 15):
//! CreateTopics with `min.insync.replicas=3` on an RF 3 topic; one follower down → `acks=all`
//! is refused with NOT_ENOUGH_REPLICAS; IncrementalAlterConfigs sets it to 2 → `acks=all` is
//! accepted again; every broker describes the value as TOPIC_CONFIG, also after all three
//! restart (the config records are replayed from the metadata log).
//! `cargo sim-test -p broker --test configs_sim`.
#![cfg(madsim)]
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use broker::node::NodeHandle;
use bytes::Bytes;
use disk_model::SimDisk;
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResponse;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::incremental_alter_configs_response::IncrementalAlterConfigsResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{ApiKey, TopicName};
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use support::kafka::sb;
use support::sim_cluster::{self, call, disk, wait_for};

const TOPIC: &str = "hardened";
const NOT_ENOUGH_REPLICAS: i16 = 19;
const TOPIC_CONFIG: i8 = 1;

async fn start(net: &SimNet, disk: &SimDisk, id: i32) -> NodeHandle {
    sim_cluster::start(net, disk, sim_cluster::config(id), 7 + id as u64).await
}

/// (leader, ISR) of partition 0 as broker `id` reports it.
async fn partition_state(net: &SimNet, id: i32) -> Option<(i32, Vec<i32>)> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb(TOPIC)));
    req.topics = Some(vec![t]);
    let resp: MetadataResponse = call(net, id, ApiKey::Metadata, 12, &req).await?;
    let p = resp.topics.first()?.partitions.first()?.clone();
    Some((p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()))
}

/// One batch of 5 records to broker `id`; the error code (-100: no answer).
async fn produce(net: &SimNet, id: i32, acks: i16, first: usize) -> i16 {
    let batch = support::batch(5, 16, 1_700_000_000_000 + first as i64, first as u64);
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(Bytes::from(batch));
    let mut t = TopicProduceData::default();
    t.name = TopicName(sb(TOPIC));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 3_000;
    req.topic_data = vec![t];
    match call::<_, ProduceResponse>(net, id, ApiKey::Produce, 9, &req).await {
        Some(r) => r.responses[0].partition_responses[0].error_code,
        None => -100,
    }
}

async fn create_topic(net: &SimNet, min_insync: &str) -> i16 {
    let mut c = CreatableTopicConfig::default();
    c.name = sb("min.insync.replicas");
    c.value = Some(sb(min_insync));
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(TOPIC));
    t.num_partitions = 1;
    t.replication_factor = 3;
    t.configs = vec![c];
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5_000;
    wait_for("CreateTopics", Duration::from_secs(10), async || {
        let r: CreateTopicsResponse = call(net, 0, ApiKey::CreateTopics, 5, &req).await?;
        let code = r.topics[0].error_code;
        // Retried: REQUEST_TIMED_OUT, INVALID_REPLICATION_FACTOR (brokers still registering).
        (code != 7 && code != 38).then_some(code)
    })
    .await
}

async fn set_min_insync(net: &SimNet, id: i32, value: &str) -> Option<i16> {
    set_config(net, id, 2, TOPIC, "min.insync.replicas", Some(value)).await
}

/// `min.insync.replicas` of the topic as broker `id` describes it: (value, source).
async fn describe_min_insync(net: &SimNet, id: i32) -> Option<(String, i8)> {
    describe_topic(net, id, "min.insync.replicas").await
}

#[test]
fn topic_min_insync_replicas_through_the_controller() {
    support::block_on(5, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(50 + i)).collect();
        let mut nodes: BTreeMap<i32, NodeHandle> = BTreeMap::new();
        for id in 0..3 {
            nodes.insert(id, start(&net, &disks[id as usize], id).await);
        }
        assert_eq!(create_topic(&net, "0").await, 40, "min.insync.replicas=0: INVALID_CONFIG");
        assert_eq!(create_topic(&net, "3").await, 0, "a topic config at CreateTopics");
        let (leader, _) =
            wait_for("a leader with a full ISR", Duration::from_secs(10), async || {
                partition_state(&net, 0).await.filter(|(l, isr)| *l >= 0 && isr.len() == 3)
            })
            .await;
        assert_eq!(produce(&net, leader, -1, 0).await, 0);
        // One follower down: the ISR shrinks to 2, below the topic's 3 (the static default is 1).
        let victim = (0..3).find(|i| *i != leader).unwrap();
        nodes.remove(&victim).unwrap().halt();
        net.crash(&format!("b{victim}"));
        wait_for("the ISR without the stopped follower", Duration::from_secs(10), async || {
            partition_state(&net, leader).await.filter(|(_, isr)| isr.len() == 2)
        })
        .await;
        assert_eq!(produce(&net, leader, -1, 5).await, NOT_ENOUGH_REPLICAS);
        // Altered through a broker that is not the leader: the leader follows the image.
        let other = (0..3).find(|i| *i != leader && *i != victim).unwrap();
        assert_eq!(set_min_insync(&net, other, "2").await, Some(0));
        wait_for(
            "acks=all accepted with min.insync.replicas=2",
            Duration::from_secs(5),
            async || (produce(&net, leader, -1, 10).await == 0).then_some(()),
        )
        .await;
        for id in [leader, other] {
            let d = describe_min_insync(&net, id).await;
            assert_eq!(d, Some(("2".to_string(), TOPIC_CONFIG)), "broker {id}");
        }
        // Every broker stops and starts again from its disk: the config is replayed.
        for (id, n) in std::mem::take(&mut nodes) {
            n.halt();
            net.crash(&format!("b{id}"));
        }
        for id in 0..3 {
            net.restart(&format!("b{id}"));
            nodes.insert(id, start(&net, &disks[id as usize], id).await);
        }
        for id in 0..3 {
            let d = wait_for("the config after a restart", Duration::from_secs(10), async || {
                describe_min_insync(&net, id).await
            })
            .await;
            assert_eq!(d, ("2".to_string(), TOPIC_CONFIG), "broker {id} after the restart");
        }
        for n in nodes.values() {
            n.halt();
        }
    })
}

/// IncrementalAlterConfigs of one key of resource (`resource_type`, `name`) through broker `id`:
/// set (`Some`) or deleted; the error code.
async fn set_config(
    net: &SimNet,
    id: i32,
    resource_type: i8,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Option<i16> {
    let mut c = AlterableConfig::default();
    c.name = sb(key);
    c.config_operation = if value.is_some() { 0 } else { 1 }; // SET, DELETE
    c.value = value.map(sb);
    let mut r = AlterConfigsResource::default();
    r.resource_type = resource_type;
    r.resource_name = sb(name);
    r.configs = vec![c];
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    let resp: IncrementalAlterConfigsResponse =
        call(net, id, ApiKey::IncrementalAlterConfigs, 1, &req).await?;
    Some(resp.responses[0].error_code)
}

/// A broker resource's config (`name`: `""`, the cluster-wide default, or an id).
async fn set_broker_config(
    net: &SimNet,
    id: i32,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Option<i16> {
    set_config(net, id, 4, name, key, value).await
}

/// Topic config `key` as broker `id` describes it: (value, source).
async fn describe_topic(net: &SimNet, id: i32, key: &str) -> Option<(String, i8)> {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = 2;
    r.resource_name = sb(TOPIC);
    r.configuration_keys = Some(vec![sb(key)]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    let resp: DescribeConfigsResponse = call(net, id, ApiKey::DescribeConfigs, 4, &req).await?;
    let c = resp.results.first()?.configs.first()?.clone();
    Some((c.value?.to_string(), c.config_source))
}

/// The cluster-wide dynamic default (broker resource `""`, which no client in tests/clients can
/// name): set through one broker, it goes through the controller and every broker applies it to
/// topics without their own override; the leader refuses a batch above it; deleting it restores
/// the static value. A broker key that is not dynamic is refused (INVALID_REQUEST).
#[test]
fn cluster_wide_dynamic_broker_config() {
    const MESSAGE_TOO_LARGE: i16 = 10;
    const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    support::block_on(6, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(60 + i)).collect();
        let mut nodes = Vec::new();
        for id in 0..3 {
            nodes.push(start(&net, &disks[id as usize], id).await);
        }
        assert_eq!(create_topic(&net, "1").await, 0);
        let (leader, _) = wait_for("a leader", Duration::from_secs(10), async || {
            partition_state(&net, 0).await.filter(|(l, isr)| *l >= 0 && isr.len() == 3)
        })
        .await;
        assert_eq!(produce(&net, leader, 1, 0).await, 0);
        let other = (leader + 1) % 3;
        assert_eq!(set_broker_config(&net, other, "", "num.partitions", Some("3")).await, Some(42));
        assert_eq!(
            set_broker_config(&net, other, "", "message.max.bytes", Some("50")).await,
            Some(0)
        );
        for id in 0..3 {
            let got =
                wait_for("the dynamic default everywhere", Duration::from_secs(5), async || {
                    describe_topic(&net, id, "max.message.bytes").await.filter(|(v, _)| v == "50")
                })
                .await;
            assert_eq!(got.1, DYNAMIC_DEFAULT_BROKER_CONFIG, "broker {id}");
        }
        assert_eq!(produce(&net, leader, 1, 5).await, MESSAGE_TOO_LARGE);
        assert_eq!(set_broker_config(&net, leader, "", "message.max.bytes", None).await, Some(0));
        wait_for("the static value again", Duration::from_secs(5), async || {
            (produce(&net, leader, 1, 10).await == 0).then_some(())
        })
        .await;
        for n in &nodes {
            n.halt();
        }
    })
}
