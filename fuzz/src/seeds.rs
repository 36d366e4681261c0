//! Request frames for every API and version the broker serves, built with kafka-protocol (an
//! independent implementation): the `request` target's seed corpus and its response decoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use records::{BatchBuilder, Compression};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// One frame, length prefix included: header for `key` at `version`, then `body`.
pub fn frame(key: ApiKey, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = corr;
    h.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    h.encode(&mut buf, key.request_header_version(version)).expect("a request header encodes");
    buf.put_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn encoded<T: Encodable>(key: ApiKey, version: i16, corr: i32, body: &T) -> Option<Vec<u8>> {
    let mut b = BytesMut::new();
    body.encode(&mut b, version).ok()?;
    Some(frame(key, version, corr, &b))
}

/// Expands `$body!(ApiKey::X, XRequest, XResponse)` for every API the broker serves.
macro_rules! for_each_api {
    ($body:ident) => {{
        $body!(Produce, ProduceRequest, ProduceResponse);
        $body!(Fetch, FetchRequest, FetchResponse);
        $body!(ListOffsets, ListOffsetsRequest, ListOffsetsResponse);
        $body!(Metadata, MetadataRequest, MetadataResponse);
        $body!(ApiVersions, ApiVersionsRequest, ApiVersionsResponse);
        $body!(CreateTopics, CreateTopicsRequest, CreateTopicsResponse);
        $body!(DeleteTopics, DeleteTopicsRequest, DeleteTopicsResponse);
        $body!(InitProducerId, InitProducerIdRequest, InitProducerIdResponse);
        $body!(FindCoordinator, FindCoordinatorRequest, FindCoordinatorResponse);
        $body!(JoinGroup, JoinGroupRequest, JoinGroupResponse);
        $body!(SyncGroup, SyncGroupRequest, SyncGroupResponse);
        $body!(Heartbeat, HeartbeatRequest, HeartbeatResponse);
        $body!(LeaveGroup, LeaveGroupRequest, LeaveGroupResponse);
        $body!(OffsetCommit, OffsetCommitRequest, OffsetCommitResponse);
        $body!(OffsetFetch, OffsetFetchRequest, OffsetFetchResponse);
        $body!(ListGroups, ListGroupsRequest, ListGroupsResponse);
        $body!(DescribeGroups, DescribeGroupsRequest, DescribeGroupsResponse);
        $body!(OffsetForLeaderEpoch, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse);
        $body!(DescribeConfigs, DescribeConfigsRequest, DescribeConfigsResponse);
        $body!(AlterConfigs, AlterConfigsRequest, AlterConfigsResponse);
        $body!(
            IncrementalAlterConfigs,
            IncrementalAlterConfigsRequest,
            IncrementalAlterConfigsResponse
        );
        $body!(CreatePartitions, CreatePartitionsRequest, CreatePartitionsResponse);
        $body!(DeleteRecords, DeleteRecordsRequest, DeleteRecordsResponse);
        $body!(DeleteGroups, DeleteGroupsRequest, DeleteGroupsResponse);
        $body!(OffsetDelete, OffsetDeleteRequest, OffsetDeleteResponse);
        $body!(DescribeLogDirs, DescribeLogDirsRequest, DescribeLogDirsResponse);
        $body!(ElectLeaders, ElectLeadersRequest, ElectLeadersResponse);
    }};
}

/// Decodes an answer (after its length prefix) as kafka-protocol reads it, when kafka-protocol
/// knows that version: the header must carry `corr` and the body must use every byte.
pub fn decode_response(api: ApiKey, version: i16, corr: i32, mut answer: Bytes) {
    // ApiVersions answers with header v0 at every version (KIP-511).
    let hv = if api == ApiKey::ApiVersions { 0 } else { api.response_header_version(version) };
    let header = ResponseHeader::decode(&mut answer, hv).expect("a response header decodes");
    assert_eq!(header.correlation_id, corr, "the answer carries another correlation id");
    // KIP-511: an ApiVersions request we cannot serve (its version, or a header that does not
    // parse) is answered in v0 with UNSUPPORTED_VERSION, whatever version it asked for.
    let version =
        if api == ApiKey::ApiVersions && answer.starts_with(&UNSUPPORTED_VERSION.to_be_bytes()) {
            0
        } else {
            version
        };
    macro_rules! decode {
        ($key:ident, $req:ty, $resp:ty) => {
            if api == ApiKey::$key {
                if version < <$resp>::VERSIONS.min || version > <$resp>::VERSIONS.max {
                    return;
                }
                if let Err(e) = <$resp>::decode(&mut answer, version) {
                    panic!("{api:?} v{version}: the answer does not decode: {e}");
                }
                assert!(
                    answer.is_empty(),
                    "{api:?} v{version}: {} bytes after the answer",
                    answer.len()
                );
                return;
            }
        };
    }
    for_each_api!(decode);
}

/// A default (empty) request of every API at every version both we and kafka-protocol know.
pub fn default_requests() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    macro_rules! defaults {
        ($key:ident, $req:ty, $resp:ty) => {
            if let Some((lo, hi)) = broker::protocol::supported_range(ApiKey::$key) {
                for v in lo.max(<$req>::VERSIONS.min)..=hi.min(<$req>::VERSIONS.max) {
                    if let Some(f) = encoded(ApiKey::$key, v, 7, &<$req>::default()) {
                        out.push((format!("{}-v{v}", stringify!($key)), f));
                    }
                }
            }
        };
    }
    for_each_api!(defaults);
    out
}

fn name(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// A batch of `n` keyed records in `codec`.
pub fn batch(n: usize, codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(BytesMut::new(), codec, 1 << 20);
    for i in 0..n {
        let v = format!("value-{i}");
        b.append(
            1_700_000_000_000 + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(v.as_bytes()),
            &[],
        )
        .expect("a record fits");
    }
    b.finish().expect("a batch").freeze()
}

/// A stream that creates topic `t`, produces to it, fetches it back and asks for metadata: a
/// seed that reaches the produce and fetch handlers with real data.
pub fn produce_fetch_stream(codec: Compression) -> Vec<u8> {
    let mut topic = create_topics_request::CreatableTopic::default();
    topic.name = TopicName(name("t"));
    topic.num_partitions = 2;
    topic.replication_factor = 1;
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![topic];
    create.timeout_ms = 1000;
    let mut p = produce_request::PartitionProduceData::default();
    p.records = Some(batch(5, codec));
    let mut t = produce_request::TopicProduceData::default();
    t.name = TopicName(name("t"));
    t.partition_data = vec![p];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 1000;
    produce.topic_data = vec![t];
    let mut fp = fetch_request::FetchPartition::default();
    fp.partition_max_bytes = 1 << 20;
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = TopicName(name("t"));
    ft.partitions = vec![fp];
    let mut fetch = FetchRequest::default();
    fetch.max_bytes = 1 << 20;
    fetch.max_wait_ms = 100;
    fetch.topics = vec![ft];
    fetch.replica_id = BrokerId(-1);
    let mut stream = Vec::new();
    for f in [
        encoded(ApiKey::CreateTopics, 5, 1, &create),
        encoded(ApiKey::Produce, 9, 2, &produce),
        encoded(ApiKey::Fetch, 12, 3, &fetch),
        encoded(ApiKey::Metadata, 12, 4, &MetadataRequest::default()),
    ] {
        stream.extend(f.expect("a seed request encodes"));
    }
    stream
}

/// A segment file of `batches` batches at consecutive offsets (the `recovery` target's seeds).
pub fn segment(batches: usize, codec: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    let mut base = 0i64;
    for i in 0..batches {
        let b = batch(1 + i % 4, codec);
        let mut b = b.to_vec();
        b[0..8].copy_from_slice(&base.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        base += (1 + i % 4) as i64;
        out.extend(b);
    }
    out
}

/// The seed corpus of `target` (`request`, `batch` or `recovery`) as (file name, bytes).
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut out = Vec::new();
    match target {
        "request" => {
            out = default_requests();
            for c in codecs {
                out.push((format!("produce-fetch-{c:?}"), produce_fetch_stream(c)));
            }
        }
        "batch" => {
            for c in codecs {
                let mut b = vec![1u8];
                b.extend_from_slice(&batch(7, c));
                out.push((format!("batch-{c:?}"), b));
            }
        }
        "recovery" => {
            for c in codecs {
                let seg = segment(6, c);
                out.push((format!("segment-torn-{c:?}"), seg[..seg.len() - 9].to_vec()));
                out.push((format!("segment-{c:?}"), seg));
            }
        }
        _ => panic!("no fuzz target {target}"),
    }
    out
}

/// Called once before fuzzing starts (libFuzzer's initialize hook, before it reads the corpus):
/// when `LOGLAB_FUZZ_SEED_DIR` is set, writes `target`'s seeds there (`scripts/fuzz.sh` sets it).
pub fn write_seeds_if_asked(target: &str) {
    let Some(dir) = std::env::var_os("LOGLAB_FUZZ_SEED_DIR") else { return };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).expect("the seed dir");
    for (name, bytes) in corpus(target) {
        std::fs::write(dir.join(name), bytes).expect("a seed file");
    }
}
