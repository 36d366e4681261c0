//! The partition, record and group admin APIs of issue 15 on one broker, as raw requests through
//! `Broker::handle`, on the simulated disk: in real time and under madsim (deterministic there).
//! CreatePartitions grows a topic (validate_only changes nothing, a decrease is refused) and the
//! growth survives a restart; DeleteRecords moves the log start (segments below it go, beyond the
//! high watermark is refused, the start survives a restart); DeleteGroups deletes only empty
//! groups and OffsetDelete keeps the offsets of topics a member subscribes to.
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::path::Path;
use std::sync::Arc;

use broker::group::state::JoinRequest;
use broker::{Broker, BrokerConfig, Outcome};
use bytes::{BufMut, Bytes, BytesMut};
use disk_model::clock::Clock;
use disk_model::sim::{DeviceProfile, PageCacheConfig, SimDisk, SimDiskConfig};
use disk_model::Storage;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use net_model::Chunk;

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PARTITIONS: i16 = 37;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn sim_disk(seed: u64) -> Arc<dyn Storage> {
    let page_cache = PageCacheConfig { capacity_bytes: 4 << 20, ..PageCacheConfig::default() };
    Arc::new(SimDisk::new(
        SimDiskConfig { device: DeviceProfile::nvme(), page_cache, seed, mounts: Vec::new() },
        Clock::runtime(),
    ))
}

async fn open(storage: Arc<dyn Storage>) -> Arc<Broker> {
    let mut c = BrokerConfig::default();
    c.apply_override("group.initial.rebalance.delay.ms=0").unwrap();
    c.apply_override("group.min.session.timeout.ms=10").unwrap();
    c.apply_override("offsets.topic.num.partitions=1").unwrap();
    Arc::new(Broker::open(c, storage, Path::new("")).await.unwrap())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One request through `Broker::handle`; the decoded response.
async fn call<Q: Encodable, R: Decodable>(b: &Broker, key: ApiKey, v: i16, body: &Q) -> R {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = v;
    h.correlation_id = 7;
    h.client_id = Some(s("partition-admin-test"));
    let mut buf = BytesMut::new();
    h.encode(&mut buf, key.request_header_version(v)).unwrap();
    body.encode(&mut buf, v).unwrap();
    let Outcome::Respond(chunks) = b.handle(buf.freeze()).await else {
        panic!("{key:?} v{v}: no response")
    };
    let mut out = BytesMut::new();
    for c in chunks {
        let Chunk::Bytes(bytes) = c else { panic!("{key:?}: a file chunk") };
        out.put_slice(&bytes);
    }
    let mut frame: Bytes = out.freeze().slice(4..);
    let rh = ResponseHeader::decode(&mut frame, key.response_header_version(v)).unwrap();
    assert_eq!(rh.correlation_id, 7);
    R::decode(&mut frame, v).unwrap()
}

async fn create_topic(b: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(s(name));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    for (k, v) in configs {
        let mut c = create_topics_request::CreatableTopicConfig::default();
        c.name = s(k);
        c.value = Some(s(v));
        t.configs.push(c);
    }
    let mut r = CreateTopicsRequest::default();
    r.topics.push(t);
    let resp: CreateTopicsResponse = call(b, ApiKey::CreateTopics, 5, &r).await;
    assert_eq!(resp.topics[0].error_code, NONE, "{:?}", resp.topics[0].error_message);
}

async fn partition_count(b: &Broker, name: &str) -> usize {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(s(name)));
    let mut r = MetadataRequest::default();
    r.topics = Some(vec![t]);
    r.allow_auto_topic_creation = false;
    let resp: MetadataResponse = call(b, ApiKey::Metadata, 12, &r).await;
    resp.topics[0].partitions.len()
}

async fn grow(b: &Broker, name: &str, count: i32, validate_only: bool) -> (i16, Option<String>) {
    let mut t = create_partitions_request::CreatePartitionsTopic::default();
    t.name = TopicName(s(name));
    t.count = count;
    let mut r = CreatePartitionsRequest::default();
    r.topics.push(t);
    r.timeout_ms = 5_000;
    r.validate_only = validate_only;
    let resp: CreatePartitionsResponse = call(b, ApiKey::CreatePartitions, 3, &r).await;
    let res = &resp.results[0];
    (res.error_code, res.error_message.as_ref().map(|m| m.to_string()))
}

async fn produce(b: &Broker, topic: &str, partition: i32, value_len: usize) -> i16 {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(Bytes::from(support::batch(1, value_len, 1_000, partition as u64)));
    let mut t = produce_request::TopicProduceData::default();
    t.name = TopicName(s(topic));
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 5_000;
    r.topic_data = vec![t];
    let resp: ProduceResponse = call(b, ApiKey::Produce, 9, &r).await;
    resp.responses[0].partition_responses[0].error_code
}

/// CreatePartitions: validate_only, growth, refusals, and the count after a restart.
async fn create_partitions_scenario(seed: u64) {
    let storage = sim_disk(seed);
    let b = open(storage.clone()).await;
    create_topic(&b, "t", 2, &[]).await;
    assert_eq!(grow(&b, "t", 5, true).await.0, NONE);
    assert_eq!(partition_count(&b, "t").await, 2, "validate_only changed the topic");
    assert_eq!(produce(&b, "t", 4, 10).await, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(grow(&b, "t", 5, false).await.0, NONE);
    assert_eq!(partition_count(&b, "t").await, 5);
    assert_eq!(produce(&b, "t", 4, 10).await, NONE, "a new partition takes writes");
    let (code, msg) = grow(&b, "t", 3, false).await;
    assert_eq!(code, INVALID_PARTITIONS);
    assert!(msg.unwrap_or_default().contains("cannot decrease"));
    assert_eq!(grow(&b, "t", 5, false).await.0, INVALID_PARTITIONS, "no increase");
    assert_eq!(grow(&b, "nope", 5, false).await.0, UNKNOWN_TOPIC_OR_PARTITION);
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(storage).await;
    assert_eq!(partition_count(&b, "t").await, 5, "the growth survives a restart");
    b.shutdown().await.unwrap();
}

#[test]
fn create_partitions_grows_a_topic() {
    support::block_on(3, create_partitions_scenario(3));
}

async fn delete_records(b: &Broker, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let mut p = delete_records_request::DeleteRecordsPartition::default();
    p.partition_index = partition;
    p.offset = offset;
    let mut t = delete_records_request::DeleteRecordsTopic::default();
    t.name = TopicName(s(topic));
    t.partitions.push(p);
    let mut r = DeleteRecordsRequest::default();
    r.topics.push(t);
    r.timeout_ms = 5_000;
    let resp: DeleteRecordsResponse = call(b, ApiKey::DeleteRecords, 2, &r).await;
    let pr = &resp.topics[0].partitions[0];
    (pr.error_code, pr.low_watermark)
}

async fn earliest(b: &Broker, topic: &str) -> i64 {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -2;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(s(topic));
    t.partitions.push(p);
    let mut r = ListOffsetsRequest::default();
    r.replica_id = BrokerId(-1);
    r.topics.push(t);
    let resp: ListOffsetsResponse = call(b, ApiKey::ListOffsets, 7, &r).await;
    let pr = &resp.topics[0].partitions[0];
    assert_eq!(pr.error_code, NONE);
    pr.offset
}

/// DeleteRecords: the log start moves, whole segments below it go, the high watermark bounds
/// it, -1 means the high watermark, and the start survives a restart.
async fn delete_records_scenario(seed: u64) {
    let storage = sim_disk(seed);
    let b = open(storage.clone()).await;
    // ~300-byte batches in 1000-byte segments: a few batches per segment.
    create_topic(&b, "r", 1, &[("segment.bytes", "1000")]).await;
    for _ in 0..10 {
        assert_eq!(produce(&b, "r", 0, 250).await, NONE);
    }
    let tp = broker::log::TopicPartition::new("r", 0);
    let segments = |b: Arc<Broker>| {
        let tp = tp.clone();
        async move { b.partition(&tp).unwrap().data().await.unwrap().log.segment_bases() }
    };
    let before = segments(b.clone()).await;
    assert!(before.len() >= 3, "segments {before:?}");
    assert_eq!(delete_records(&b, "r", 0, 11).await.0, OFFSET_OUT_OF_RANGE);
    assert_eq!(delete_records(&b, "r", 0, 6).await, (NONE, 6));
    assert_eq!(earliest(&b, "r").await, 6);
    let after = segments(b.clone()).await;
    assert!(after.len() < before.len(), "no segment deleted: {before:?} -> {after:?}");
    assert!(after[0] <= 6 && after.get(1).is_none_or(|n| *n > 6), "{after:?}");
    assert_eq!(delete_records(&b, "r", 0, 3).await, (NONE, 6), "the start never goes back");
    assert_eq!(delete_records(&b, "r", 1, 0).await.0, UNKNOWN_TOPIC_OR_PARTITION);
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(storage).await;
    assert_eq!(earliest(&b, "r").await, 6, "the log start survives a restart");
    assert_eq!(delete_records(&b, "r", 0, -1).await, (NONE, 10), "-1: up to the high watermark");
    assert_eq!(earliest(&b, "r").await, 10);
    assert_eq!(produce(&b, "r", 0, 10).await, NONE);
    b.shutdown().await.unwrap();
}

#[test]
fn delete_records_moves_the_log_start() {
    support::block_on(4, delete_records_scenario(4));
}

/// A consumer-protocol subscription (v1) of `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.put_i32(0);
    b.freeze()
}

async fn commit(b: &Broker, group: &str, topic: &str, partitions: &[i32]) {
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(s(topic));
    for p in partitions {
        let mut pr = offset_commit_request::OffsetCommitRequestPartition::default();
        pr.partition_index = *p;
        pr.committed_offset = 42;
        t.partitions.push(pr);
    }
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = -1;
    r.topics.push(t);
    let resp: OffsetCommitResponse = call(b, ApiKey::OffsetCommit, 8, &r).await;
    assert!(resp.topics[0].partitions.iter().all(|p| p.error_code == NONE), "{resp:?}");
}

/// Committed offsets of `group` in `topic` partitions 0..3 (-1: none).
async fn committed(b: &Broker, group: &str, topic: &str) -> Vec<i64> {
    let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
    t.name = TopicName(s(topic));
    t.partition_indexes = vec![0, 1, 2];
    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s(group));
    g.topics = Some(vec![t]);
    let mut r = OffsetFetchRequest::default();
    r.groups.push(g);
    let resp: OffsetFetchResponse = call(b, ApiKey::OffsetFetch, 8, &r).await;
    resp.groups[0].topics[0].partitions.iter().map(|p| p.committed_offset).collect()
}

async fn delete_groups(b: &Broker, groups: &[&str]) -> Vec<i16> {
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = groups.iter().map(|g| GroupId(s(g))).collect();
    let resp: DeleteGroupsResponse = call(b, ApiKey::DeleteGroups, 2, &r).await;
    resp.results.iter().map(|r| r.error_code).collect()
}

/// OffsetDelete of partition 0 of each of `topics`: (group error, per-topic errors).
async fn offset_delete(b: &Broker, group: &str, topics: &[&str]) -> (i16, Vec<i16>) {
    let mut r = OffsetDeleteRequest::default();
    r.group_id = GroupId(s(group));
    for t in topics {
        let mut ot = offset_delete_request::OffsetDeleteRequestTopic::default();
        ot.name = TopicName(s(t));
        let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        ot.partitions.push(p);
        r.topics.push(ot);
    }
    let resp: OffsetDeleteResponse = call(b, ApiKey::OffsetDelete, 0, &r).await;
    (resp.error_code, resp.topics.iter().map(|t| t.partitions[0].error_code).collect())
}

/// DeleteGroups and OffsetDelete against an empty group and one with a subscribed member; the
/// deletions survive a restart.
async fn group_admin_scenario(seed: u64) {
    let storage = sim_disk(seed);
    let b = open(storage.clone()).await;
    let stop = tokio::sync::watch::channel(false);
    tokio::spawn(broker::tasks::run(b.clone(), stop.1.clone()));
    create_topic(&b, "t", 3, &[]).await;
    create_topic(&b, "u", 3, &[]).await;
    commit(&b, "simple", "t", &[0, 1]).await;
    commit(&b, "simple", "u", &[0]).await;
    assert_eq!(committed(&b, "simple", "t").await, vec![42, 42, -1]);
    assert_eq!(offset_delete(&b, "simple", &["t"]).await, (NONE, vec![NONE]));
    assert_eq!(committed(&b, "simple", "t").await, vec![-1, 42, -1]);

    let join = JoinRequest {
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 60_000,
        rebalance_timeout_ms: 60_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(&["t"]))],
        require_known_member_id: false,
    };
    let joined = b.groups.join(&b, "busy", join).await;
    assert_eq!(joined.error, NONE);
    commit_as_member(&b, "busy", &joined.member_id, joined.generation).await;
    let (code, per_topic) = offset_delete(&b, "busy", &["t", "u"]).await;
    assert_eq!((code, per_topic), (NONE, vec![GROUP_SUBSCRIBED_TO_TOPIC, NONE]));
    assert_eq!(committed(&b, "busy", "t").await[0], 42, "a subscribed topic's offset stays");
    assert_eq!(
        delete_groups(&b, &["busy", "simple", "nope"]).await,
        vec![NON_EMPTY_GROUP, NONE, GROUP_ID_NOT_FOUND]
    );
    assert_eq!(committed(&b, "simple", "t").await, vec![-1, -1, -1]);
    assert_eq!(delete_groups(&b, &["simple"]).await, vec![GROUP_ID_NOT_FOUND]);
    assert_eq!(offset_delete(&b, "nope", &["t"]).await.0, GROUP_ID_NOT_FOUND);
    let _ = stop.0.send(true);
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(storage).await;
    assert_eq!(committed(&b, "simple", "u").await, vec![-1, -1, -1], "deleted for good");
    assert_eq!(committed(&b, "busy", "u").await[0], -1, "the offset deleted stays deleted");
    assert_eq!(committed(&b, "busy", "t").await[0], 42);
    b.shutdown().await.unwrap();
}

/// A member's commit of `t` and `u` partition 0 (the group is CompletingRebalance: commits
/// are refused until SyncGroup, so sync first).
async fn commit_as_member(b: &Arc<Broker>, group: &str, member: &str, generation: i32) {
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s(group));
    sync.generation_id = generation;
    sync.member_id = s(member);
    sync.protocol_type = Some(s("consumer"));
    sync.protocol_name = Some(s("range"));
    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = s(member);
    a.assignment = Bytes::from_static(b"");
    sync.assignments.push(a);
    let resp: SyncGroupResponse = call(b, ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(resp.error_code, NONE);
    for topic in ["t", "u"] {
        let mut pr = offset_commit_request::OffsetCommitRequestPartition::default();
        pr.committed_offset = 42;
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partitions.push(pr);
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(s(group));
        r.generation_id_or_member_epoch = generation;
        r.member_id = s(member);
        r.topics.push(t);
        let resp: OffsetCommitResponse = call(b, ApiKey::OffsetCommit, 8, &r).await;
        assert_eq!(resp.topics[0].partitions[0].error_code, NONE);
    }
}

#[test]
fn delete_groups_and_offsets() {
    support::block_on(5, group_admin_scenario(5));
}

/// DescribeLogDirs, ElectLeaders and CreateTopics with a manual assignment on one broker.
async fn single_node_placement_scenario(seed: u64) {
    let b = open(sim_disk(seed)).await;
    create_topic(&b, "d", 2, &[]).await;
    for _ in 0..3 {
        assert_eq!(produce(&b, "d", 1, 100).await, NONE);
    }
    // DescribeLogDirs: one dir; asked for d-1 and a partition that does not exist.
    let mut t = describe_log_dirs_request::DescribableLogDirTopic::default();
    t.topic = TopicName(s("d"));
    t.partitions = vec![1, 9];
    let mut r = DescribeLogDirsRequest::default();
    r.topics = Some(vec![t]);
    let resp: DescribeLogDirsResponse = call(&b, ApiKey::DescribeLogDirs, 4, &r).await;
    assert_eq!(resp.results.len(), 1);
    let dir = &resp.results[0];
    assert_eq!(dir.error_code, NONE);
    let parts: Vec<_> = dir.topics.iter().flat_map(|t| t.partitions.iter()).collect();
    assert_eq!(parts.len(), 1, "{dir:?}");
    assert_eq!(parts[0].partition_index, 1);
    assert!(parts[0].partition_size > 300, "3 batches of 100-byte values: {parts:?}");
    assert_eq!((parts[0].offset_lag, parts[0].is_future_key), (0, false));
    // Every partition (null topics): d-0 is there, empty.
    let mut every = DescribeLogDirsRequest::default();
    every.topics = None;
    let all: DescribeLogDirsResponse = call(&b, ApiKey::DescribeLogDirs, 1, &every).await;
    let d0 = all.results[0]
        .topics
        .iter()
        .filter(|t| t.name.0.as_str() == "d")
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .map(|p| p.partition_size);
    assert_eq!(d0, Some(0));

    // ElectLeaders: the only broker leads everything (not needed); unknown partitions say so;
    // unclean is refused.
    let mut tp = elect_leaders_request::TopicPartitions::default();
    tp.topic = TopicName(s("d"));
    tp.partitions = vec![0, 5];
    let mut r = ElectLeadersRequest::default();
    r.topic_partitions = Some(vec![tp]);
    r.timeout_ms = 5_000;
    let resp: ElectLeadersResponse = call(&b, ApiKey::ElectLeaders, 2, &r).await;
    let codes: Vec<i16> =
        resp.replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![84, UNKNOWN_TOPIC_OR_PARTITION]);
    r.election_type = 1;
    let resp: ElectLeadersResponse = call(&b, ApiKey::ElectLeaders, 2, &r).await;
    assert!(resp.replica_election_results[0].partition_result.iter().all(|p| p.error_code == 42));
    let mut all = ElectLeadersRequest::default();
    all.topic_partitions = None;
    let resp: ElectLeadersResponse = call(&b, ApiKey::ElectLeaders, 1, &all).await;
    assert!(resp.replica_election_results.is_empty(), "nothing needed an election: {resp:?}");

    // CreateTopics with a manual assignment: on this broker (id 1 by default) only.
    let node = b.config.node_id;
    let assigned = |name: &str, lists: Vec<(i32, Vec<i32>)>, n: i32, rf: i16| {
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName(s(name));
        t.num_partitions = n;
        t.replication_factor = rf;
        for (p, ids) in lists {
            let mut a = create_topics_request::CreatableReplicaAssignment::default();
            a.partition_index = p;
            a.broker_ids = ids.into_iter().map(BrokerId).collect();
            t.assignments.push(a);
        }
        let mut r = CreateTopicsRequest::default();
        r.topics.push(t);
        r
    };
    let create = |r: CreateTopicsRequest| {
        let b = b.clone();
        async move {
            let resp: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 7, &r).await;
            (resp.topics[0].error_code, resp.topics[0].num_partitions)
        }
    };
    assert_eq!(
        create(assigned("m", vec![(0, vec![node]), (1, vec![node])], -1, -1)).await,
        (NONE, 2)
    );
    assert_eq!(partition_count(&b, "m").await, 2);
    assert_eq!(create(assigned("m2", vec![(0, vec![node + 1])], -1, -1)).await.0, 39);
    assert_eq!(create(assigned("m3", vec![(0, vec![node]), (2, vec![node])], -1, -1)).await.0, 39);
    assert_eq!(create(assigned("m4", vec![(0, vec![node])], 1, -1)).await.0, 42);
    assert_eq!(create(assigned("m5", vec![(0, vec![node, node])], -1, -1)).await.0, 39);
    b.shutdown().await.unwrap();
}

#[test]
fn log_dirs_elections_and_manual_assignment() {
    support::block_on(6, single_node_placement_scenario(6));
}
