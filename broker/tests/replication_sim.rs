//! Replication between three combined-mode brokers under madsim, on the simulated network and
//! disks, driven through the Kafka wire protocol (`cargo sim-test -p broker --test
//! replication_sim -- --nocapture` prints the measured times):
//! - `acks=all` writes survive the leader's crash and power loss; a new leader is elected from the
//!   ISR; the old leader restarts from its disk, truncates by epoch, catches up, rejoins the ISR,
//!   and every replica's log is byte-identical (read with Kafka's debugging replica id -2);
//! - with `min.insync.replicas=3` and one replica down, `acks=all` is refused with
//!   NOT_ENOUGH_REPLICAS once the ISR shrinks, while `acks=1` is still accepted; the high
//!   watermark stands still until the ISR is whole again (KIP-966), and consumers never read past
//!   it;
//! - a follower's fetch carrying a leader epoch newer than the leader's is fenced
//!   (UNKNOWN_LEADER_EPOCH, KIP-320) unless the museum switch `loglab.unsafe.zombie.fencing.disable`
//!   is on.
#![cfg(madsim)]
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use broker::config::BrokerConfig;
use broker::node::NodeHandle;
use broker::replica::wire::KafkaConn;
use bytes::Bytes;
use disk_model::SimDisk;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
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
use support::sim_cluster::{self, disk};
use tokio::time::Instant;

const TOPIC: &str = "orders";

fn config(id: i32, min_insync: usize) -> BrokerConfig {
    let mut c = sim_cluster::config(id);
    c.set("min.insync.replicas", &min_insync.to_string()).expect("a valid value");
    c
}

type Node = NodeHandle;

async fn start(net: &SimNet, disk: &SimDisk, id: i32, min_insync: usize) -> Node {
    sim_cluster::start(net, disk, config(id, min_insync), 42 + id as u64).await
}

/// Three brokers on `disks` (ids 0-2, `min.insync.replicas` = `min_insync`), the test topic
/// created, once its partition has a leader with a full ISR: the nodes and (leader, leader
/// epoch).
async fn three_brokers(
    net: &SimNet,
    disks: &[SimDisk],
    min_insync: usize,
) -> (BTreeMap<i32, Node>, (i32, i32)) {
    let mut nodes: BTreeMap<i32, Node> = BTreeMap::new();
    for id in 0..3 {
        nodes.insert(id, start(net, &disks[id as usize], id, min_insync).await);
    }
    create_topic(net).await;
    let ((leader, epoch, _), _) =
        wait_for("a leader with a full ISR", Duration::from_secs(10), async || {
            partition_state(net, 0).await.filter(|(l, _, isr)| *l >= 0 && isr.len() == 3)
        })
        .await;
    (nodes, (leader, epoch))
}

/// Crash: tasks stop, the host drops off the network, unsynced writes are lost.
fn crash(net: &SimNet, disk: &SimDisk, node: Node, id: i32) {
    node.halt();
    net.crash(&format!("b{id}"));
    disk.power_loss();
}

async fn conn(net: &SimNet, id: i32) -> Option<KafkaConn> {
    KafkaConn::connect(
        net.host("client").as_ref(),
        &format!("b{id}:9092"),
        "test",
        Duration::from_secs(2),
    )
    .await
    .ok()
}

async fn call<Q: kafka_protocol::protocol::Encodable, R: kafka_protocol::protocol::Decodable>(
    net: &SimNet,
    id: i32,
    key: ApiKey,
    v: i16,
    req: &Q,
) -> Option<R> {
    let mut c = conn(net, id).await?;
    c.call(key, v, req, 64 << 20, Duration::from_secs(10)).await.ok()
}

/// (leader, leader epoch, ISR) of partition 0 as broker `id` reports it.
async fn partition_state(net: &SimNet, id: i32) -> Option<(i32, i32, Vec<i32>)> {
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb(TOPIC)));
    req.topics = Some(vec![t]);
    let resp: MetadataResponse = call(net, id, ApiKey::Metadata, 12, &req).await?;
    let p = resp.topics.first()?.partitions.first()?.clone();
    Some((p.leader_id.0, p.leader_epoch, p.isr_nodes.iter().map(|b| b.0).collect()))
}

async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> (T, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, t0.elapsed());
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Produces one batch of `n` records with values `v{i}` to broker `id`; the error code.
async fn produce(net: &SimNet, id: i32, acks: i16, first: usize, n: usize) -> i16 {
    let batch = support::batch(n, 16, 1_700_000_000_000 + first as i64, first as u64);
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

/// Reads partition 0 of broker `id` as `replica_id` (-1 consumer, -2 any replica): the batches
/// (base offset, bytes), the HW and the LSO field.
async fn read_all(net: &SimNet, id: i32, replica_id: i32) -> Option<(Vec<(i64, Bytes)>, i64, i64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut fp = FetchPartition::default();
        fp.partition = 0;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = 1 << 20;
        fp.current_leader_epoch = -1;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(sb(TOPIC));
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(replica_id);
        req.max_wait_ms = 0;
        req.max_bytes = 1 << 20;
        req.topics = vec![ft];
        let resp: FetchResponse = call(net, id, ApiKey::Fetch, 12, &req).await?;
        let p = &resp.responses[0].partitions[0];
        if p.error_code != 0 {
            return None;
        }
        let records = p.records.clone().unwrap_or_default();
        let mut pos = 0;
        let mut got = false;
        while pos + 12 <= records.len() {
            let base = i64::from_be_bytes(records[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if pos + 12 + len > records.len() {
                break;
            }
            let batch = records.slice(pos..pos + 12 + len);
            let last_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap()) as i64;
            offset = base + last_delta + 1;
            out.push((base, batch));
            pos += 12 + len;
            got = true;
        }
        if !got {
            return Some((out, p.high_watermark, p.last_stable_offset));
        }
    }
}

async fn create_topic(net: &SimNet) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(TOPIC));
    t.num_partitions = 1;
    t.replication_factor = 3;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5_000;
    let (code, _) = wait_for("CreateTopics", Duration::from_secs(10), async || {
        let r: CreateTopicsResponse = call(net, 0, ApiKey::CreateTopics, 5, &req).await?;
        let code = r.topics[0].error_code;
        (code == 0 || code == 36).then_some(code)
    })
    .await;
    assert!(code == 0 || code == 36);
}

#[test]
fn acks_all_survives_leader_crash_and_replicas_agree() {
    let first = story(7);
    println!("{first}");
    assert_eq!(story(7), first, "same seed, same story");
}

fn story(seed: u64) -> String {
    support::block_on(seed, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(seed * 10 + i)).collect();
        let (mut nodes, (leader, epoch)) = three_brokers(&net, &disks, 2).await;

        // 20 acks=all batches, 5 records each.
        let mut acked = 0;
        for i in 0..20 {
            assert_eq!(produce(&net, leader, -1, i * 5, 5).await, 0, "acks=all batch {i}");
            acked += 5;
        }
        // Consumers see exactly what is committed.
        let (batches, hw, _) = read_all(&net, leader, -1).await.expect("consumer read");
        assert_eq!((batches.len(), hw), (20, acked as i64));

        // The leader crashes and loses its page cache.
        let old = nodes.remove(&leader).expect("running");
        crash(&net, &disks[leader as usize], old, leader);
        let other = (0..3).find(|i| *i != leader).unwrap();
        let ((new_leader, new_epoch, isr), took) =
            wait_for("a new leader", Duration::from_secs(10), async || {
                partition_state(&net, other)
                    .await
                    .filter(|(l, e, _)| *l >= 0 && *l != leader && *e > epoch)
            })
            .await;
        println!("leader {leader} crashed; {new_leader} leads at epoch {new_epoch} after {} ms (simulated), ISR {isr:?}", took.as_millis());
        assert!(!isr.contains(&leader));

        // Every acknowledged record is on the new leader; writes continue there.
        let (batches, hw, _) = read_all(&net, new_leader, -1).await.expect("read new leader");
        assert!(
            hw >= acked as i64 && batches.len() >= 20,
            "acked writes lost: hw {hw}, {} batches",
            batches.len()
        );
        let (_, write_took) =
            wait_for("acks=all at the new leader", Duration::from_secs(10), async || {
                (produce(&net, new_leader, -1, 100, 5).await == 0).then_some(())
            })
            .await;
        for i in 21..30 {
            assert_eq!(produce(&net, new_leader, -1, i * 5, 5).await, 0);
        }

        // The old leader restarts from its disk, catches up and rejoins the ISR.
        net.restart(&format!("b{leader}"));
        nodes.insert(leader, start(&net, &disks[leader as usize], leader, 2).await);
        let (_, rejoin) =
            wait_for("the old leader back in the ISR", Duration::from_secs(20), async || {
                partition_state(&net, new_leader).await.filter(|(_, _, isr)| isr.len() == 3)
            })
            .await;
        println!("old leader rejoined the ISR {} ms after its restart", rejoin.as_millis());
        let (reference, leader_hw, leader_leo) =
            read_all(&net, new_leader, -2).await.expect("debug read");
        assert_eq!(leader_hw, leader_leo, "quiet partition: HW at the log end");
        for id in 0..3 {
            let (replica, _, leo) =
                wait_for("replica caught up", Duration::from_secs(10), async || {
                    read_all(&net, id, -2).await.filter(|(_, _, leo)| *leo == leader_leo)
                })
                .await
                .0;
            assert_eq!(leo, leader_leo);
            assert_eq!(replica.len(), reference.len(), "replica {id} batch count");
            for (a, b) in replica.iter().zip(&reference) {
                assert_eq!(a, b, "replica {id} differs from the leader at offset {}", b.0);
            }
        }
        for n in nodes.values() {
            n.halt();
        }
        format!("leader {leader} -> {new_leader} in {took:?}, first write after {write_took:?}, rejoin {rejoin:?}, log end {leader_leo}")
    })
}

#[test]
fn min_insync_refuses_acks_all_when_the_isr_shrinks() {
    support::block_on(3, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(30 + i)).collect();
        // min.insync.replicas = 3: losing one replica is enough (losing two would also lose the
        // controller quorum, which shares these nodes, and no ISR change could commit).
        let (mut nodes, (leader, _)) = three_brokers(&net, &disks, 3).await;
        assert_eq!(produce(&net, leader, -1, 0, 5).await, 0);
        let victim = (0..3).find(|i| *i != leader).unwrap();
        let n = nodes.remove(&victim).unwrap();
        crash(&net, &disks[victim as usize], n, victim);
        let survivor = (0..3).find(|i| *i != leader && *i != victim).unwrap();
        wait_for("the ISR without the crashed follower", Duration::from_secs(10), async || {
            partition_state(&net, leader)
                .await
                .filter(|(_, _, isr)| isr.len() == 2 && !isr.contains(&victim))
        })
        .await;
        assert_eq!(
            produce(&net, leader, -1, 5, 5).await,
            19,
            "acks=all needs min.insync.replicas=3: NOT_ENOUGH_REPLICAS"
        );
        assert_eq!(produce(&net, leader, 1, 10, 5).await, 0, "acks=1 is still accepted");
        // Below min.insync.replicas the HW stands still (KIP-966: the replica that left is an
        // eligible leader and must hold everything committed): consumers do not see the acks=1
        // batch, although the survivor has it.
        wait_for("survivor has the acks=1 batch", Duration::from_secs(5), async || {
            read_all(&net, survivor, -2).await.filter(|(_, _, leo)| *leo == 10)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (batches, hw, _) = read_all(&net, leader, -1).await.unwrap();
        assert_eq!(
            (batches.len(), hw),
            (1, 5),
            "HW advanced with the ISR below min.insync.replicas"
        );
        // The crashed follower restarts, catches up and rejoins: the HW moves on.
        net.restart(&format!("b{victim}"));
        nodes.insert(victim, start(&net, &disks[victim as usize], victim, 3).await);
        let (batches, _, _) =
            wait_for("HW past the acks=1 batch", Duration::from_secs(10), async || {
                read_all(&net, leader, -1).await.filter(|(_, hw, _)| *hw == 10)
            })
            .await
            .0;
        assert_eq!(batches.len(), 2);
        assert_eq!(produce(&net, leader, -1, 15, 5).await, 0, "acks=all works again");
        for n in nodes.values() {
            n.halt();
        }
    })
}

/// The error a leader answers to a follower's Fetch that carries a leader epoch one newer than its
/// own (as from a follower of a leadership this leader has not yet learned of: it is a zombie),
/// on a fresh three-broker cluster with `loglab.unsafe.zombie.fencing.disable` = `zombie_unsafe`.
fn answer_to_a_fetch_of_a_newer_epoch(seed: u64, zombie_unsafe: bool) -> i16 {
    support::block_on(seed, async move {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(seed * 10 + i)).collect();
        let mut nodes = Vec::new();
        for id in 0..3 {
            let mut c = config(id, 1);
            c.set("loglab.unsafe.zombie.fencing.disable", &zombie_unsafe.to_string())
                .expect("a museum switch");
            nodes.push(sim_cluster::start(&net, &disks[id as usize], c, 42 + id as u64).await);
        }
        create_topic(&net).await;
        let ((leader, epoch, isr), _) =
            wait_for("a leader with a full ISR", Duration::from_secs(10), async || {
                partition_state(&net, 0).await.filter(|(l, _, isr)| *l >= 0 && isr.len() == 3)
            })
            .await;
        let follower = isr.iter().copied().find(|r| *r != leader).expect("a follower");
        let mut fp = FetchPartition::default();
        fp.partition = 0;
        fp.fetch_offset = 0;
        fp.partition_max_bytes = 1 << 20;
        fp.current_leader_epoch = epoch + 1;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(sb(TOPIC));
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(follower);
        req.max_wait_ms = 0;
        req.max_bytes = 1 << 20;
        req.topics = vec![ft];
        let resp: FetchResponse =
            call(&net, leader, ApiKey::Fetch, 12, &req).await.expect("a Fetch answer");
        for n in nodes {
            n.halt();
        }
        resp.responses[0].partitions[0].error_code
    })
}

/// The error of each partition of one Fetch to broker `to` from `replica_id`, asking for
/// (partition, current_leader_epoch) pairs of the test topic.
async fn fetch_errors(net: &SimNet, to: i32, replica_id: i32, asks: &[(i32, i32)]) -> Vec<i16> {
    let mut ft = FetchTopic::default();
    ft.topic = TopicName(sb(TOPIC));
    ft.partitions = asks
        .iter()
        .map(|&(partition, epoch)| {
            let mut fp = FetchPartition::default();
            fp.partition = partition;
            fp.partition_max_bytes = 1 << 20;
            fp.current_leader_epoch = epoch;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(replica_id);
    req.max_wait_ms = 0;
    req.max_bytes = 1 << 20;
    req.topics = vec![ft];
    let resp: FetchResponse = call(net, to, ApiKey::Fetch, 12, &req).await.expect("a Fetch answer");
    resp.responses[0].partitions.iter().map(|p| p.error_code).collect()
}

/// A Fetch's per-partition refusals, each partition of one request judged on its own (the
/// leader looks each partition up once per pass for all of them): the current epoch and an
/// unchecked one (-1) are served, an older epoch is FENCED_LEADER_EPOCH and a newer one
/// UNKNOWN_LEADER_EPOCH (KIP-320), a partition the topic does not have is
/// UNKNOWN_TOPIC_OR_PARTITION; the same partition asked of a follower is NOT_LEADER_OR_FOLLOWER,
/// for a consumer as for a replica.
#[test]
fn a_fetch_judges_each_partition_by_leadership_and_epoch() {
    support::block_on(6, async move {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(|i| disk(60 + i)).collect();
        let (mut nodes, (first, first_epoch)) = three_brokers(&net, &disks, 1).await;
        // A second leadership, so that the leader has an older epoch to fence.
        let old = nodes.remove(&first).expect("running");
        crash(&net, &disks[first as usize], old, first);
        let other = (0..3).find(|i| *i != first).unwrap();
        let ((leader, epoch, isr), _) =
            wait_for("a new leader and a follower", Duration::from_secs(10), async || {
                partition_state(&net, other).await.filter(|(l, e, isr)| {
                    *l >= 0 && *l != first && *e > first_epoch && isr.len() == 2
                })
            })
            .await;
        let follower = isr.iter().copied().find(|r| *r != leader).expect("a follower");
        let asks = [(0, epoch), (0, -1), (0, epoch - 1), (0, epoch + 1), (7, epoch)];
        assert_eq!(
            fetch_errors(&net, leader, follower, &asks).await,
            [0, 0, 74, 75, 3],
            "none, none, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(fetch_errors(&net, leader, -1, &asks[..2]).await, [0, 0], "a consumer");
        for replica_id in [leader, -1] {
            assert_eq!(
                fetch_errors(&net, follower, replica_id, &[(0, epoch), (0, -1)]).await,
                [6, 6],
                "NOT_LEADER_OR_FOLLOWER from a follower"
            );
        }
        for n in nodes.values() {
            n.halt();
        }
    })
}

/// KIP-320: a follower's fetch with a leader epoch newer than the leader's own is fenced
/// (UNKNOWN_LEADER_EPOCH: the leader is behind, possibly a zombie); the museum switch
/// `loglab.unsafe.zombie.fencing.disable` turns that off and the leader serves it.
#[test]
fn a_fetch_of_a_newer_epoch_is_fenced_unless_the_zombie_switch_is_on() {
    assert_eq!(answer_to_a_fetch_of_a_newer_epoch(5, false), 75, "UNKNOWN_LEADER_EPOCH");
    assert_eq!(answer_to_a_fetch_of_a_newer_epoch(5, true), 0, "served as if current");
}
