//! The broker on loopback, real TCP: raw bytes for bad input, kafka-protocol-encoded requests for
//! produce / fetch / list-offsets round trips. Real mode only.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::Duration;

use broker::BrokerConfig;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use records::{BatchBuilder, BatchHeader, Compression};

mod support;
use support::client::{Client, TIMEOUT};
use support::kafka::{batch, fetch_req, produce_req, produced, records_of, topic_name};
use support::server::{start, start_in};

async fn produce(c: &mut Client, v: i16, topic: &str, records: Bytes) -> (i16, i64) {
    let r: ProduceResponse = c.call(ApiKey::Produce, v, &produce_req(topic, 0, records, -1)).await;
    produced(&r)
}

async fn metadata(c: &mut Client, v: i16, topic: &str) -> MetadataResponse {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(topic_name(topic));
    let mut r = MetadataRequest::default();
    r.topics = Some(vec![t]);
    r.allow_auto_topic_creation = true;
    c.call(ApiKey::Metadata, v, &r).await
}

#[tokio::test]
async fn produce_fetch_list_offsets_round_trip() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let av: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(av.error_code, 0);
    assert!(av.api_keys.iter().any(|k| k.api_key == 0 && k.min_version == 0));
    let md = metadata(&mut c, 12, "rt").await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.brokers[0].port.to_string(), srv.addr.rsplit_once(':').unwrap().1);
    let id = md.topics[0].topic_id;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut expected = Vec::new();
    for (i, codec) in codecs.iter().enumerate() {
        let ts = 1_000_000 + 1000 * i as i64;
        let b = batch(10, ts, *codec, None);
        let (err, base) = produce(&mut c, [3, 7, 9, 10, 8][i], "rt", b).await;
        assert_eq!((err, base), (0, 10 * i as i64));
        for j in 0..10 {
            expected.push((10 * i as i64 + j, Bytes::from(format!("value-{ts}-{j}"))));
        }
    }
    for v in [4, 7, 11, 12, 13, 16] {
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &fetch_req(v, "rt", id, 0, 100)).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 50), "fetch v{v}");
        assert_eq!(records_of(p), expected, "fetch v{v}");
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &fetch_req(v, "rt", id, 25, 100)).await;
        let got = records_of(&r.responses[0].partitions[0]);
        assert_eq!(got.first().map(|r| r.0), Some(20), "whole batches from the one holding 25");
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &fetch_req(v, "rt", id, 51, 100)).await;
        assert_eq!(r.responses[0].partitions[0].error_code, 1, "OFFSET_OUT_OF_RANGE");
    }
    for v in 1..=7 {
        let mut lo = ListOffsetsRequest::default();
        lo.replica_id = BrokerId(-1);
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = topic_name("rt");
        for ts in [-2i64, -1, 1_002_005, 1_003_000, 9_999_999] {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = 0;
            p.timestamp = ts;
            t.partitions.push(p);
        }
        lo.topics = vec![t];
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &lo).await;
        let offs: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offs, vec![0, 50, 25, 30, -1], "list offsets v{v}");
    }
    // OffsetForLeaderEpoch: a single node writes at epoch 0, which ends at the log end; an epoch
    // before any the log has is UNDEFINED (-1, -1); an unknown partition is an error.
    for v in 2..=4 {
        let mut req = offset_for_leader_epoch_request::OffsetForLeaderEpochRequest::default();
        req.replica_id = BrokerId(-1);
        let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
        t.topic = topic_name("rt");
        for (partition, epoch) in [(0, 0), (0, 5), (0, -1), (7, 0)] {
            let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            p.partition = partition;
            p.leader_epoch = epoch;
            p.current_leader_epoch = -1;
            t.partitions.push(p);
        }
        req.topics = vec![t];
        let r: offset_for_leader_epoch_response::OffsetForLeaderEpochResponse =
            c.call(ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let got: Vec<(i16, i32, i64)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(
            got,
            vec![(0, 0, 50), (0, 0, 50), (0, -1, -1), (3, -1, -1)],
            "OffsetForLeaderEpoch v{v}"
        );
    }
    // A debugging read (replica id -2) reads up to the log end; its LSO field is the log end.
    let mut dbg = fetch_req(12, "rt", id, 0, 0);
    dbg.replica_id = BrokerId(-2);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &dbg).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark, p.last_stable_offset), (0, 50, 50));
    assert_eq!(records_of(p), expected);
    // A follower fetch (replica id >= 0) at a single node: there are no followers.
    let mut follower = fetch_req(12, "rt", id, 0, 0);
    follower.replica_id = BrokerId(1);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &follower).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    srv.stop().await;
}

#[tokio::test]
async fn long_poll_waits_and_wakes() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let id = metadata(&mut c, 12, "lp").await.topics[0].topic_id;
    let t0 = std::time::Instant::now();
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req(11, "lp", id, 0, 300)).await;
    assert!(t0.elapsed() >= Duration::from_millis(250), "waited max_wait_ms");
    assert!(records_of(&r.responses[0].partitions[0]).is_empty());
    let t0 = std::time::Instant::now();
    let corr = c.send(ApiKey::Fetch, 11, &fetch_req(11, "lp", id, 0, 10_000)).await;
    let mut p = Client::connect(&srv.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(produce(&mut p, 7, "lp", batch(3, 5, Compression::None, None)).await, (0, 0));
    let r: FetchResponse = c.recv(ApiKey::Fetch, 11, corr).await;
    assert_eq!(records_of(&r.responses[0].partitions[0]).len(), 3);
    assert!(t0.elapsed() < Duration::from_secs(5), "woken by the append");
    srv.stop().await;
}

#[tokio::test]
async fn idempotent_producer_sequences() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    let ip: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req).await;
    assert_eq!(ip.error_code, 0);
    let (pid, epoch) = (ip.producer_id.0, ip.producer_epoch);
    let b0 = batch(5, 1, Compression::None, Some((pid, epoch, 0)));
    assert_eq!(produce(&mut c, 7, "idem", b0.clone()).await, (0, 0));
    assert_eq!(
        produce(&mut c, 7, "idem", batch(5, 2, Compression::None, Some((pid, epoch, 5)))).await,
        (0, 5)
    );
    assert_eq!(
        produce(&mut c, 7, "idem", b0).await,
        (0, 0),
        "an exact retry gets its original offset"
    );
    assert_eq!(
        produce(&mut c, 7, "idem", batch(1, 3, Compression::None, Some((pid, epoch, 42)))).await.0,
        45
    );
    assert_eq!(
        produce(&mut c, 7, "idem", batch(1, 3, Compression::None, Some((pid, epoch, 10)))).await,
        (0, 10)
    );
    // After a restart the state is rebuilt from the log: retries are still recognised.
    let dir = srv.stop().await;
    let srv = start_in(BrokerConfig::default(), dir).await;
    let mut c = Client::connect(&srv.addr).await;
    assert_eq!(
        produce(&mut c, 7, "idem", batch(1, 3, Compression::None, Some((pid, epoch, 10)))).await,
        (0, 10)
    );
    assert_eq!(
        produce(&mut c, 7, "idem", batch(1, 3, Compression::None, Some((pid, epoch, 13)))).await.0,
        45
    );
    assert_eq!(
        produce(&mut c, 7, "idem", batch(1, 3, Compression::None, Some((pid, epoch, 11)))).await,
        (0, 11)
    );
    let ip: InitProducerIdResponse =
        c.call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default()).await;
    assert!(ip.producer_id.0 > pid, "producer ids are not reused after a restart");
    srv.stop().await;
}

/// A produce frame with a request header and the given body (raw).
fn raw_frame(key: i16, v: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let len = 2 + 2 + 4 + 2 + body.len();
    f.extend_from_slice(&(len as i32).to_be_bytes());
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&v.to_be_bytes());
    f.extend_from_slice(&corr.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn bad_input() {
    let mut cfg = BrokerConfig::default();
    cfg.socket_request_max_bytes = 1 << 20;
    cfg.log.max_message_bytes = 2000;
    let srv = start(cfg).await;

    // Oversize frame: refused from its length alone (nothing else is sent).
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&((1 << 20) + 1i32).to_be_bytes()).await;
    assert!(c.closed().await, "oversize frame closes the connection");
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&i32::MAX.to_be_bytes()).await;
    assert!(c.closed().await);
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&(-5i32).to_be_bytes()).await;
    assert!(c.closed().await, "negative length");

    // Garbage, unknown API, unknown header.
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&[0, 0, 0, 3, 0xde, 0xad, 0xbe]).await;
    assert!(c.closed().await, "frame too short for a header");
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&raw_frame(999, 0, 1, b"")).await;
    assert!(c.closed().await, "unknown API key");
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&raw_frame(3, 9, 1, &[0xff; 40])).await;
    assert!(c.closed().await, "garbage body");
    // Allocation bomb: Metadata v1 claiming 2^31-1 topics.
    let mut c = Client::connect(&srv.addr).await;
    c.send_raw(&raw_frame(3, 1, 1, &[0x7f, 0xff, 0xff, 0xff])).await;
    assert!(c.closed().await, "array count beyond the frame");
    // Garbage in many shapes, for every API: never a panic, the broker keeps serving.
    let mut seed: u64 = 0x1234_5678;
    for key in [0i16, 1, 2, 3, 10, 18, 19, 20, 22] {
        for v in 0..18i16 {
            for _ in 0..4 {
                let mut body = Vec::new();
                for _ in 0..(seed % 64) {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    body.push((seed >> 33) as u8);
                }
                let mut c = Client::connect(&srv.addr).await;
                c.send_raw(&raw_frame(key, v, 7, &body)).await;
                let _ = c.recv_frame().await;
            }
        }
    }

    // Unsupported versions.
    let mut c = Client::connect(&srv.addr).await;
    let corr = c.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    let _: ApiVersionsResponse = c.recv(ApiKey::ApiVersions, 3, corr).await;
    c.send_raw(&raw_frame(18, 77, 5, b"")).await;
    let mut f = c.recv_frame().await.expect("KIP-511: a v0 answer");
    assert_eq!(f.get_i32(), 5);
    let r = ApiVersionsResponse::decode(&mut f, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(r.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 3));
    // Produce v2 (pre-v2 message sets): UNSUPPORTED_VERSION per partition.
    let mut body = Vec::new();
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes()); // empty message set
    c.send_raw(&raw_frame(0, 2, 6, &body)).await;
    let mut f = c.recv_frame().await.unwrap();
    assert_eq!(f.get_i32(), 6);
    assert_eq!((f.get_i32(), f.get_i16()), (1, 1));
    f.advance(1);
    assert_eq!((f.get_i32(), f.get_i32(), f.get_i16()), (1, 0, 35));
    // A version of a known API we do not serve: closed.
    let mut c = Client::connect(&srv.addr).await;
    c.send(ApiKey::Metadata, 13, &MetadataRequest::default()).await;
    assert!(c.closed().await);

    // Record-level errors.
    let mut c = Client::connect(&srv.addr).await;
    let mut bad = BytesMut::from(&batch(3, 1, Compression::None, None)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        produce(&mut c, 7, "errs", bad.freeze()).await.0,
        2,
        "CRC mismatch → CORRUPT_MESSAGE"
    );
    let big = {
        let mut b = BatchBuilder::new(BytesMut::new(), Compression::None, 1 << 20);
        b.append(1, None, Some(&[7u8; 3000]), &[]).unwrap();
        b.finish().unwrap().freeze()
    };
    assert_eq!(produce(&mut c, 7, "errs", big).await.0, 10, "MESSAGE_TOO_LARGE");
    assert_eq!(produce(&mut c, 7, "bad name!", batch(1, 1, Compression::None, None)).await.0, 17);
    assert_eq!(
        produce(&mut c, 7, "errs", Bytes::from_static(&[1, 2, 3])).await.0,
        2,
        "truncated batch"
    );
    let md = metadata(&mut c, 9, "bad/name").await;
    assert_eq!(md.topics[0].error_code, 17);
    assert_eq!(
        produce(&mut c, 7, "errs", batch(2, 1, Compression::None, None)).await,
        (0, 0),
        "still serving"
    );
    srv.stop().await;

    let mut cfg = BrokerConfig::default();
    cfg.auto_create_topics = false;
    let srv = start(cfg).await;
    let mut c = Client::connect(&srv.addr).await;
    assert_eq!(produce(&mut c, 7, "nope", batch(1, 1, Compression::None, None)).await.0, 3);
    assert_eq!(metadata(&mut c, 12, "nope").await.topics[0].error_code, 3);
    srv.stop().await;
}

#[tokio::test]
async fn topics_persist_across_restart_and_copy_path() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let mut ct = CreateTopicsRequest::default();
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = topic_name("three");
    t.num_partitions = 3;
    t.replication_factor = 1;
    let mut cfg = create_topics_request::CreatableTopicConfig::default();
    cfg.name = StrBytes::from_static_str("segment.bytes");
    cfg.value = Some(StrBytes::from_static_str("1000"));
    t.configs = vec![cfg];
    ct.topics = vec![t];
    ct.timeout_ms = 1000;
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &ct).await;
    assert_eq!(r.topics[0].error_code, 0);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 2, &ct).await;
    assert_eq!(r.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    for i in 0..20 {
        assert_eq!(
            produce(&mut c, 7, "three", batch(5, i, Compression::Lz4, None)).await,
            (0, 5 * i)
        );
    }
    let dir = srv.stop().await;
    let mut cfg = BrokerConfig::default();
    cfg.fetch_zero_copy = false;
    let srv = start_in(cfg, dir).await;
    let mut c = Client::connect(&srv.addr).await;
    let md = metadata(&mut c, 1, "three").await;
    assert_eq!(md.topics[0].partitions.len(), 3);
    let mut next = 0;
    let mut seen = 0;
    while next < 100 {
        let r: FetchResponse =
            c.call(ApiKey::Fetch, 11, &fetch_req(11, "three", uuid::Uuid::nil(), next, 100)).await;
        let recs = records_of(&r.responses[0].partitions[0]);
        assert!(!recs.is_empty());
        for (o, _) in &recs {
            assert_eq!(*o, seen);
            seen += 1;
        }
        next = recs.last().unwrap().0 + 1;
    }
    let mut dt = DeleteTopicsRequest::default();
    dt.topic_names = vec![topic_name("three")];
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 5, &dt).await;
    assert_eq!(r.responses[0].error_code, 0);
    let mut cfg2 = MetadataRequest::default();
    cfg2.topics = None;
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &cfg2).await;
    assert!(md.topics.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn retention_runs_periodically_and_acks0_errors_close() {
    let mut cfg = BrokerConfig::default();
    cfg.log.segment_bytes = 2000;
    cfg.log.retention_bytes = 4000;
    cfg.retention_check_interval_ms = 50;
    cfg.flush_scheduler_interval_ms = 10;
    let srv = start(cfg).await;
    let mut c = Client::connect(&srv.addr).await;
    for i in 0..40 {
        assert_eq!(produce(&mut c, 7, "ret", batch(5, i, Compression::None, None)).await.0, 0);
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut lo = ListOffsetsRequest::default();
        lo.replica_id = BrokerId(-1);
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = topic_name("ret");
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.timestamp = -2;
        t.partitions = vec![p];
        lo.topics = vec![t];
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 5, &lo).await;
        if r.topics[0].partitions[0].offset > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention never deleted a segment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // acks=0 to a topic that cannot exist: no response, the connection is closed.
    c.send(
        ApiKey::Produce,
        7,
        &produce_req("bad name", 0, batch(1, 1, Compression::None, None), 0),
    )
    .await;
    assert!(c.closed().await);
    srv.stop().await;
}

/// The CPU seam: every request charges its overhead, a produce charges one copy and one CRC pass
/// over its bytes, and only the copy path charges record data on fetch (two copies per byte).
#[tokio::test]
async fn cost_hook_charges_requests_copies_and_crc() {
    use net_model::{CostHook, Work};
    #[derive(Debug, Default)]
    struct Counting(std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>);
    #[async_trait::async_trait]
    impl CostHook for Counting {
        async fn spend(&self, work: Work, bytes: u64) {
            let mut m = self.0.lock().unwrap();
            let e = m.entry(format!("{work:?}")).or_default();
            e.0 += 1;
            e.1 += bytes;
        }
    }
    for zero_copy in [true, false] {
        let mut cfg = BrokerConfig::default();
        cfg.fetch_zero_copy = zero_copy;
        let srv = start(cfg).await;
        let hook = Arc::new(Counting::default());
        srv.broker.set_cost_hook(hook.clone());
        let mut c = Client::connect(&srv.addr).await;
        let records = batch(50, 0, Compression::None, None);
        let record_len = records.len() as u64;
        assert_eq!(produce(&mut c, 7, "cost", records).await.0, 0);
        let produced = hook.0.lock().unwrap().clone();
        assert!(produced["Crc32c"].1 >= record_len, "CRC charged over the records: {produced:?}");
        assert!(produced["Memcpy"].1 >= record_len);
        let r: FetchResponse =
            c.call(ApiKey::Fetch, 11, &fetch_req(11, "cost", uuid::Uuid::nil(), 0, 100)).await;
        assert_eq!(records_of(&r.responses[0].partitions[0]).len(), 50);
        let after = hook.0.lock().unwrap().clone();
        assert!(after["Request"].0 > produced["Request"].0, "the fetch paid a request overhead");
        let fetch_copy = after["Memcpy"].1 - produced["Memcpy"].1;
        if zero_copy {
            assert_eq!(fetch_copy, 0, "sendfile copies nothing through user space");
        } else {
            assert_eq!(fetch_copy, 2 * record_len, "the copy path reads and writes every byte");
        }
        srv.stop().await;
    }
}

/// Each pass of the Fetch long poll charges `FetchPass` once: one for a fetch answered at once,
/// two for one parked at the log end and woken by an append (the pass on arrival finds nothing,
/// the pass after the wake-up finds the records). Goes red if the charge is dropped (0 and 0) or
/// made once per request (1 and 1); likewise `Wakeup`, charged once when the parked poll is
/// woken and never for a fetch answered at once.
#[tokio::test]
async fn fetch_pass_is_charged_per_long_poll_pass() {
    use net_model::{CostHook, Work};
    #[derive(Debug, Default)]
    struct Passes(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64);
    #[async_trait::async_trait]
    impl CostHook for Passes {
        async fn spend(&self, work: Work, _bytes: u64) {
            if work == Work::FetchPass {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            if work == Work::Wakeup {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
    let srv = start(BrokerConfig::default()).await;
    let hook = Arc::new(Passes::default());
    srv.broker.set_cost_hook(hook.clone());
    let passes = || hook.0.load(std::sync::atomic::Ordering::SeqCst);
    let mut c = Client::connect(&srv.addr).await;
    assert_eq!(produce(&mut c, 7, "passes", batch(3, 0, Compression::None, None)).await.0, 0);
    assert_eq!(passes(), 0, "a produce makes no fetch pass");
    let r: FetchResponse =
        c.call(ApiKey::Fetch, 11, &fetch_req(11, "passes", uuid::Uuid::nil(), 0, 10_000)).await;
    assert_eq!(records_of(&r.responses[0].partitions[0]).len(), 3);
    assert_eq!(passes(), 1, "data at once: one pass");
    let wakeups = || hook.1.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(wakeups(), 0, "data at once: never parked, never woken");
    let corr =
        c.send(ApiKey::Fetch, 11, &fetch_req(11, "passes", uuid::Uuid::nil(), 3, 10_000)).await;
    let mut p = Client::connect(&srv.addr).await;
    // The poll is parked once its first pass ran (nothing at offset 3 yet).
    for _ in 0..2_000 {
        if passes() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(passes(), 2, "the parked poll's first pass");
    assert_eq!(produce(&mut p, 7, "passes", batch(2, 3, Compression::None, None)).await.0, 0);
    let r: FetchResponse = c.recv(ApiKey::Fetch, 11, corr).await;
    assert_eq!(records_of(&r.responses[0].partitions[0]).len(), 2);
    assert_eq!(passes(), 3, "parked and woken by the append: two passes");
    assert_eq!(wakeups(), 1, "the parked poll's thread woken once (Work::Wakeup)");
    srv.stop().await;
}

/// Rewrites a built batch: its record count and lastOffsetDelta, or its records section, then
/// its length and CRC (so only record-level validation can tell).
fn patched(
    b: &Bytes,
    count: Option<i32>,
    last_delta: Option<i32>,
    section: Option<&[u8]>,
) -> Bytes {
    let mut v = b.to_vec();
    if let Some(s) = section {
        v.truncate(records::BATCH_HEADER_LEN);
        v.extend_from_slice(s);
        let len = (v.len() - records::LENGTH_FIELD_END) as i32;
        v[8..12].copy_from_slice(&len.to_be_bytes());
    }
    if let Some(c) = count {
        v[57..61].copy_from_slice(&c.to_be_bytes());
    }
    if let Some(d) = last_delta {
        v[23..27].copy_from_slice(&d.to_be_bytes());
    }
    BatchHeader::update_crc(&mut v);
    assert!(BatchHeader::validate(&v, usize::MAX).is_ok(), "the header check alone passes it");
    Bytes::from(v)
}

/// Issue 17's bad batches, as raw Produce requests: each is refused with INVALID_RECORD (87) or
/// CORRUPT_MESSAGE (2), and nothing of any is stored (the next good batch lands at offset 0).
#[tokio::test]
async fn bad_record_batches_are_refused_and_not_stored() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let _ = metadata(&mut c, 12, "v").await;
    let gzip3 = batch(3, 1_000, Compression::Gzip, None);
    let plain3 = batch(3, 1_000, Compression::None, None);
    let junk: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut long = BytesMut::new();
    records::varint::put_varint(&mut long, 1000);
    long.put_slice(&[0u8; 10]);
    let mut bomb = Vec::new();
    records::compression::compress(Compression::Zstd, &vec![0u8; 64 << 20], &mut bomb).unwrap();
    let zstd1 = batch(1, 1_000, Compression::Zstd, None);
    let cases = [
        ("gzip holding 3 records, header says 1", patched(&gzip3, Some(1), Some(0), None)),
        ("3 records, lastOffsetDelta 100", patched(&plain3, None, Some(100), None)),
        ("200 random bytes as gzip", patched(&gzip3, Some(1), Some(0), Some(&junk))),
        ("record length 1000 with 10 bytes left", patched(&plain3, Some(1), Some(0), Some(&long))),
        ("zstd inflating to 64 MiB", patched(&zstd1, None, None, Some(&bomb))),
    ];
    for (what, b) in cases {
        let (code, _) = produce(&mut c, 9, "v", b).await;
        assert!(code == 87 || code == 2, "{what}: error code {code}");
    }
    let (code, base) = produce(&mut c, 9, "v", batch(2, 5_000, Compression::None, None)).await;
    assert_eq!((code, base), (0, 0), "nothing of the bad batches was stored");
    srv.stop().await;
}

fn rule(json: &str) -> broker::faults::RuleSpec {
    serde_json::from_str(json).unwrap()
}

/// Request-level fault rules on the real broker (issue 19): an error instead of handling (the
/// write did not happen), an error after handling (it did: the classic duplicate-maker), a
/// delay, a disconnect; each rule counts what it fired.
#[tokio::test]
async fn fault_rules_answer_errors_delay_and_disconnect() {
    let srv = start(BrokerConfig::default()).await;
    let mut c = Client::connect(&srv.addr).await;
    let _ = metadata(&mut c, 12, "f").await;
    assert!(!srv.broker.faults.is_active(), "no rule: the free path");
    let f = &srv.broker.faults;
    f.install(rule(r#"{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}"#), 0)
        .unwrap();
    for _ in 0..3 {
        let (code, _) = produce(&mut c, 9, "f", batch(2, 1_000, Compression::None, None)).await;
        assert_eq!(code, 6, "NOT_LEADER_OR_FOLLOWER");
    }
    let (code, base) = produce(&mut c, 9, "f", batch(2, 1_000, Compression::None, None)).await;
    assert_eq!((code, base), (0, 0), "the fourth goes through; the three refused were not written");
    assert_eq!((f.rules()[0].matched, f.rules()[0].fired), (4, 3));

    assert_eq!(f.clear(), 1);
    f.install(rule(r#"{"api": "Produce", "error": "REQUEST_TIMED_OUT", "after_handling": true, "once": true}"#), 0).unwrap();
    let (code, _) = produce(&mut c, 9, "f", batch(2, 2_000, Compression::None, None)).await;
    assert_eq!(code, 7, "told REQUEST_TIMED_OUT");
    let (code, base) = produce(&mut c, 9, "f", batch(2, 3_000, Compression::None, None)).await;
    assert_eq!(
        (code, base),
        (0, 4),
        "the write told to have timed out is in the log (offsets 2, 3)"
    );

    f.clear();
    f.install(rule(r#"{"api": "Metadata", "delay_ms": 300}"#), 0).unwrap();
    let t0 = std::time::Instant::now();
    let _ = metadata(&mut c, 12, "f").await;
    assert!(t0.elapsed() >= Duration::from_millis(300), "answered after the delay");

    f.clear();
    f.install(rule(r#"{"api": "Produce", "disconnect": "before"}"#), 0).unwrap();
    let corr = c
        .send(
            ApiKey::Produce,
            9,
            &produce_req("f", 0, batch(1, 4_000, Compression::None, None), -1),
        )
        .await;
    let _ = corr;
    assert!(c.closed().await, "the connection is closed without an answer");
    let e = f.install(rule(r#"{"api": "Produce", "error": "NOT_AN_ERROR"}"#), 0).unwrap_err();
    assert!(e.to_string().starts_with("`error`"), "{e}");
    assert!(f
        .install_plan(r#"[{"api": "Fetch", "delay_ms": 1}, {"api": "Nope", "delay_ms": 1}]"#, 0)
        .unwrap_err()
        .starts_with("rule 1: `api`"));
    assert_eq!(f.rules().len(), 1, "a bad plan installs nothing");
    srv.stop().await;
}
