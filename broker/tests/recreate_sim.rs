//! Delete and recreate with topic ids (issue 15), three combined-mode brokers under madsim:
//! a topic with 10 partitions (RF 3) takes writes, broker 2 goes down, the topic is deleted,
//! broker 2 comes back (it replays the deletion from the metadata log), the topic is created
//! again with 3 partitions. Every replica of the new topic starts empty — no old record, no old
//! offset — its directories carry the new topic id (`partition.metadata`), and the old
//! directories were renamed `…-delete` and then removed.
//! Before topic ids the brokers kept the old directories and led the new partitions at the old
//! log end offset. `cargo sim-test -p broker --test recreate_sim`.
#![cfg(madsim)]
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::log::partition_metadata;
use broker::node::NodeHandle;
use broker::replica::wire::KafkaConn;
use bytes::Bytes;
use disk_model::{OpenMode, SimDisk, Storage};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::DeleteTopicsResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use support::kafka::sb;
use support::sim_cluster::{self, call, disk, wait_for};

const TOPIC: &str = "cycle";
/// Timestamps of the first incarnation's records are below this, the second's above.
const NEW_TS: i64 = 9_000_000_000;

fn config(id: i32) -> BrokerConfig {
    let mut c = sim_cluster::config(id);
    c.file_delete_delay_ms = 2_000;
    c
}

async fn start(net: &SimNet, disk: &SimDisk, id: i32) -> NodeHandle {
    sim_cluster::start(net, disk, config(id), 11 + id as u64).await
}

/// The topic as broker `id` describes it: (topic id, leader per partition), once every
/// partition has a leader and `isr` replicas in sync.
async fn described(net: &SimNet, id: i32, isr: usize) -> Option<(uuid::Uuid, Vec<i32>)> {
    described_topic(net, TOPIC, id, isr).await
}

async fn described_topic(
    net: &SimNet,
    topic: &str,
    id: i32,
    isr: usize,
) -> Option<(uuid::Uuid, Vec<i32>)> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb(topic)));
    req.topics = Some(vec![t]);
    let resp: MetadataResponse = call(net, id, ApiKey::Metadata, 12, &req).await?;
    let t = resp.topics.first().filter(|t| t.error_code == 0)?;
    let mut leaders = vec![-1; t.partitions.len()];
    for p in &t.partitions {
        if p.leader_id.0 < 0 || p.isr_nodes.len() < isr {
            return None;
        }
        leaders[p.partition_index as usize] = p.leader_id.0;
    }
    Some((t.topic_id, leaders))
}

async fn create(net: &SimNet, partitions: i32) -> i16 {
    create_topic(net, TOPIC, partitions).await
}

async fn create_topic(net: &SimNet, topic: &str, partitions: i32) -> i16 {
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(topic));
    t.num_partitions = partitions;
    t.replication_factor = 3;
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

async fn delete(net: &SimNet, id: i32) -> Option<i16> {
    let mut req = DeleteTopicsRequest::default();
    req.topic_names = vec![TopicName(sb(TOPIC))];
    req.timeout_ms = 5_000;
    let r: DeleteTopicsResponse = call(net, id, ApiKey::DeleteTopics, 4, &req).await?;
    Some(r.responses[0].error_code)
}

/// One batch of `n` records to partition `p` at broker `id`, acks=all; the error code.
async fn produce(net: &SimNet, id: i32, p: i32, n: usize, ts: i64) -> i16 {
    produce_to(net, TOPIC, id, p, n, ts).await
}

async fn produce_to(net: &SimNet, topic: &str, id: i32, p: i32, n: usize, ts: i64) -> i16 {
    let mut pd = PartitionProduceData::default();
    pd.index = p;
    pd.records = Some(Bytes::from(support::batch(n, 16, ts, p as u64)));
    let mut t = TopicProduceData::default();
    t.name = TopicName(sb(topic));
    t.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 3_000;
    req.topic_data = vec![t];
    match call::<_, ProduceResponse>(net, id, ApiKey::Produce, 9, &req).await {
        Some(r) => r.responses[0].partition_responses[0].error_code,
        None => -100,
    }
}

/// Every record of broker `id`'s replica of partition `p` (Kafka's debugging replica id -2
/// reads any replica up to its log end): (offset, timestamp) each.
async fn replica_records(net: &SimNet, id: i32, p: i32) -> Option<Vec<(i64, i64)>> {
    let part = replica_fetch(net, TOPIC, id, p, 0).await?;
    let bytes = part.records.clone().unwrap_or_default();
    Some(support::decode_all(&bytes).into_iter().flat_map(|(_, _, o)| o).collect())
}

/// Broker `id`'s replica of `topic`-`p` read from `offset` as Kafka's debugging replica (-2).
async fn replica_fetch(
    net: &SimNet,
    topic: &str,
    id: i32,
    p: i32,
    offset: i64,
) -> Option<kafka_protocol::messages::fetch_response::PartitionData> {
    let mut fp = FetchPartition::default();
    fp.partition = p;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    fp.current_leader_epoch = -1;
    let mut ft = FetchTopic::default();
    ft.topic = TopicName(sb(topic));
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-2);
    req.max_wait_ms = 0;
    req.max_bytes = 1 << 20;
    req.topics = vec![ft];
    let resp: FetchResponse = call(net, id, ApiKey::Fetch, 12, &req).await?;
    let part = resp.responses.into_iter().next()?.partitions.into_iter().next()?;
    (part.error_code == 0).then_some(part)
}

/// Data-directory entries of `disk` whose name starts with the topic's.
async fn topic_entries(disk: &SimDisk) -> Vec<String> {
    let entries = disk.list_dir(Path::new("")).await.expect("list the data dir");
    entries.into_iter().map(|e| e.name).filter(|n| n.starts_with(TOPIC)).collect()
}

async fn dir_topic_id(disk: &SimDisk, dir: &str) -> Option<[u8; 16]> {
    let path = Path::new(dir).join(partition_metadata::PARTITION_METADATA_FILE);
    let f = disk.open(&path, OpenMode::Existing).await.ok()?;
    let bytes = f.read_at(0, f.len() as usize).await.ok()?;
    partition_metadata::decode(std::str::from_utf8(&bytes).ok()?).ok()
}

#[test]
fn delete_and_recreate_starts_the_new_topic_empty() {
    support::block_on(15, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(70 + i)).collect();
        let mut nodes: BTreeMap<i32, NodeHandle> = BTreeMap::new();
        for id in 0..3 {
            nodes.insert(id, start(&net, &disks[id as usize], id).await);
        }
        assert_eq!(create(&net, 10).await, 0);
        let (old_id, leaders) =
            wait_for("10 partitions in sync", Duration::from_secs(10), async || {
                described(&net, 0, 3).await
            })
            .await;
        assert_eq!(leaders.len(), 10);
        for (p, leader) in leaders.iter().enumerate() {
            assert_eq!(produce(&net, *leader, p as i32, 4, 1_000 + 10 * p as i64).await, 0);
        }
        assert_eq!(replica_records(&net, 2, 9).await.map(|r| r.len()), Some(4));
        assert_eq!(
            dir_topic_id(&disks[2], "cycle-9").await,
            Some(*old_id.as_bytes()),
            "partition.metadata names the topic id Metadata reports"
        );

        // Broker 2 is down while the topic is deleted; it replays the deletion when it is back.
        nodes.remove(&2).unwrap().halt();
        net.crash("b2");
        let code = wait_for("DeleteTopics", Duration::from_secs(10), async || {
            delete(&net, 1).await.filter(|c| *c != 7)
        })
        .await;
        assert_eq!(code, 0);
        let retired =
            wait_for("broker 0 retires the old directories", Duration::from_secs(5), async || {
                let e = topic_entries(&disks[0]).await;
                e.iter().all(|n| n.ends_with("-delete")).then_some(e)
            })
            .await;
        assert_eq!(retired.len(), 10, "{retired:?}");
        net.restart("b2");
        nodes.insert(2, start(&net, &disks[2], 2).await);

        assert_eq!(create(&net, 3).await, 0);
        let (new_id, leaders) =
            wait_for("3 partitions in sync", Duration::from_secs(10), async || {
                described(&net, 1, 3).await
            })
            .await;
        assert_ne!(new_id, old_id, "a new incarnation has a new topic id");
        assert_eq!(leaders.len(), 3);
        assert_eq!(
            produce(&net, leaders[0], 0, 5, NEW_TS).await,
            0,
            "acks=all: every replica has it"
        );
        for id in 0..3 {
            for p in 0..3 {
                let got = replica_records(&net, id, p).await.expect("a replica of the new topic");
                let want: Vec<i64> = if p == 0 { (0..5).collect() } else { Vec::new() };
                let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
                assert_eq!(offsets, want, "broker {id} partition {p}: {got:?}");
                assert!(got.iter().all(|(_, ts)| *ts >= NEW_TS), "broker {id} p{p}: old records");
            }
        }
        // Old directories are gone after log.segment.delete.delay.ms; the new ones carry the id.
        for (id, d) in disks.iter().enumerate() {
            let left =
                wait_for("retired directories removed", Duration::from_secs(10), async || {
                    let e = topic_entries(d).await;
                    (!e.iter().any(|n| n.ends_with("-delete"))).then_some(e)
                })
                .await;
            assert_eq!(left, vec!["cycle-0", "cycle-1", "cycle-2"], "broker {id}");
            for dir in &left {
                assert_eq!(dir_topic_id(d, dir).await, Some(*new_id.as_bytes()), "{id}: {dir}");
            }
        }
        for n in nodes.values() {
            n.halt();
        }
    })
}

/// Produce at once after delete and recreate (issue 15): the producer learns the new topic from
/// broker 0 and sends to each new leader at once, acks=all. With 3 partitions before and after,
/// each new partition has its old leader, which may not have acted on the deletion yet: it used
/// to acknowledge into the *old* partition by name (its old followers replicated it) and then
/// retire that log, losing the write. Now DeleteTopics answers, and the name is created again,
/// only once every live broker acted on the deletion; every acknowledged record must be in the
/// new topic on every replica.
#[test]
fn produce_right_after_recreate_loses_no_acknowledged_write() {
    support::block_on(17, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(90 + i)).collect();
        let mut nodes = Vec::new();
        for id in 0..3 {
            // Kafka's and the real broker's pace of heartbeats and metadata pulls, not the
            // tests' fast one: a broker may act on a deletion up to 250 ms after it committed.
            let mut c = config(id);
            c.quorum.broker_heartbeat_interval_ms = 2_000;
            c.quorum.broker_session_timeout_ms = 9_000;
            c.quorum.metadata_poll_ms = 250;
            let disk = &disks[id as usize];
            nodes.push(sim_cluster::start(&net, disk, c, 11 + id as u64).await);
        }
        for round in 0..4i64 {
            assert_eq!(create(&net, 3).await, 0, "round {round}: create");
            let (_, leaders) =
                wait_for("in sync", Duration::from_secs(10), async || described(&net, 0, 3).await)
                    .await;
            for (p, leader) in leaders.iter().enumerate() {
                assert_eq!(produce(&net, *leader, p as i32, 4, 1_000 + p as i64).await, 0);
            }
            assert_eq!(delete(&net, 0).await, Some(0), "round {round}: delete");
            assert_eq!(create(&net, 3).await, 0, "round {round}: create again");
            let (_, leaders) = wait_for("new leaders", Duration::from_secs(10), async || {
                described(&net, 0, 1).await
            })
            .await;
            // As a producer does: one batch to every leader at once.
            let sends: Vec<_> = leaders
                .iter()
                .enumerate()
                .map(|(p, leader)| {
                    let (net, leader) = (net.clone(), *leader);
                    let ts = NEW_TS + 100 * round + p as i64;
                    tokio::spawn(async move {
                        // Retried as a producer retries what was not appended: the leader has
                        // not applied the new topic yet (UNKNOWN_TOPIC_OR_PARTITION,
                        // NOT_LEADER_OR_FOLLOWER).
                        let mut codes = Vec::new();
                        for _ in 0..50 {
                            let code = produce(&net, leader, p as i32, 5, ts).await;
                            codes.push(code);
                            if code != 3 && code != 6 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        codes
                    })
                })
                .collect();
            let mut acked = Vec::new();
            for s in sends {
                let codes = s.await.expect("produce task");
                acked.push(codes.last() == Some(&0));
            }
            assert!(acked.iter().any(|a| *a), "round {round}: nothing acknowledged: {acked:?}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            for id in 0..3 {
                for (p, acked) in acked.iter().enumerate() {
                    let got = replica_records(&net, id, p as i32).await.unwrap_or_default();
                    assert!(
                        got.iter().all(|(_, ts)| *ts >= NEW_TS),
                        "round {round} broker {id} p{p}: old records {got:?}"
                    );
                    if *acked {
                        assert_eq!(
                            got.len(),
                            5,
                            "round {round} broker {id} p{p}: an acknowledged write is missing: {got:?}"
                        );
                    }
                }
            }
            assert_eq!(delete(&net, 1).await, Some(0), "round {round}: clean up");
        }
        for n in &nodes {
            n.halt();
        }
    })
}

/// DeleteRecords waits for the followers (issue 15): on an RF 3 partition, once the answer
/// arrives every ISR replica's log start offset is at least the requested offset (before, the
/// leader answered at once and the followers moved at their next fetch).
#[test]
fn delete_records_answers_once_every_isr_replica_moved() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::delete_records_response::DeleteRecordsResponse;
    const TRIM: &str = "trim";
    support::block_on(16, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(80 + i)).collect();
        let mut nodes = Vec::new();
        for id in 0..3 {
            nodes.push(start(&net, &disks[id as usize], id).await);
        }
        assert_eq!(create_topic(&net, TRIM, 1).await, 0);
        let (_, leaders) = wait_for("in sync", Duration::from_secs(10), async || {
            described_topic(&net, TRIM, 0, 3).await
        })
        .await;
        for i in 0..3 {
            assert_eq!(produce_to(&net, TRIM, leaders[0], 0, 4, 1_000 + 10 * i).await, 0);
        }
        let mut dp = DeleteRecordsPartition::default();
        dp.partition_index = 0;
        dp.offset = 8;
        let mut dt = DeleteRecordsTopic::default();
        dt.name = TopicName(sb(TRIM));
        dt.partitions = vec![dp];
        let mut req = DeleteRecordsRequest::default();
        req.topics = vec![dt];
        req.timeout_ms = 5_000;
        let addr = format!("b{}:9092", leaders[0]);
        let mut conn =
            KafkaConn::connect(net.host("client").as_ref(), &addr, "test", Duration::from_secs(2))
                .await
                .expect("connected");
        let resp: DeleteRecordsResponse = conn
            .call(ApiKey::DeleteRecords, 2, &req, 1 << 20, Duration::from_secs(10))
            .await
            .expect("answered");
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, 8));
        for id in 0..3 {
            // At the new log start: offset 8 is readable on every replica, its log start moved.
            let part = replica_fetch(&net, TRIM, id, 0, 8).await.expect("a replica");
            assert!(part.log_start_offset >= 8, "broker {id}: log start {}", part.log_start_offset);
        }
        for n in &nodes {
            n.halt();
        }
    })
}
