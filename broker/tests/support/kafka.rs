//! Kafka requests the way a client writes them, encoded and decoded with `kafka-protocol` (an
//! independent implementation): request frames, response frames, and the requests the tests
//! send most. Both worlds (no socket here; see [`super::client`] for one).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use records::{BatchBuilder, BatchHeader, Compression};

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// One request frame: the 4-byte size, the request header for `key` at `v`, `body` as encoded.
pub fn frame_with_body(key: ApiKey, v: i16, corr: i32, client_id: &str, body: &[u8]) -> BytesMut {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = v;
    h.correlation_id = corr;
    h.client_id = Some(sb(client_id));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    h.encode(&mut buf, key.request_header_version(v)).expect("a request header encodes");
    buf.put_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf
}

/// One request frame carrying `body`.
pub fn frame<T: Encodable>(key: ApiKey, v: i16, corr: i32, client_id: &str, body: &T) -> BytesMut {
    let mut b = BytesMut::new();
    body.encode(&mut b, v).expect("the request encodes");
    frame_with_body(key, v, corr, client_id, &b)
}

/// Decodes a response frame (without its size prefix): the header must carry `corr` and the body
/// must use every byte.
pub fn decode_response<T: Decodable>(mut frame: Bytes, key: ApiKey, v: i16, corr: i32) -> T {
    // ApiVersions answers with header v0 at every version (KIP-511).
    let hv = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(v) };
    let h = ResponseHeader::decode(&mut frame, hv).expect("a response header");
    assert_eq!(h.correlation_id, corr);
    let r = T::decode(&mut frame, v).expect("the response decodes");
    assert!(
        !frame.has_remaining(),
        "{} bytes left after the {key:?} v{v} response",
        frame.remaining()
    );
    r
}

/// A batch of `n` records (key `k<i>`, value `value-<ts>-<i>`, timestamps from `ts`), optionally
/// idempotent (producer id, epoch, base sequence).
pub fn batch(n: usize, ts: i64, codec: Compression, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = BatchBuilder::new(BytesMut::new(), codec, 1 << 20);
    if let Some((pid, epoch, seq)) = producer {
        b.set_producer_state(pid, epoch, seq);
    }
    for i in 0..n {
        let v = format!("value-{ts}-{i}");
        b.append(ts + i as i64, Some(format!("k{i}").as_bytes()), Some(v.as_bytes()), &[])
            .expect("a record fits");
    }
    b.finish().expect("a batch").freeze()
}

/// An uncompressed batch without keys: one record per value, timestamps from `ts`.
pub fn values_batch(ts: i64, values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::new(BytesMut::new(), Compression::None, 64 << 20);
    for (i, v) in values.iter().enumerate() {
        b.append(ts + i as i64, None, Some(*v), &[]).expect("a record fits");
    }
    b.finish().expect("a batch").freeze()
}

/// A Produce of `records` to one partition.
pub fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = produce_request::TopicProduceData::default();
    t.name = topic_name(topic);
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 5000;
    r.topic_data = vec![t];
    r
}

/// The first partition's (error code, base offset) in a Produce answer.
pub fn produced(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A consumer's Fetch of partition 0 from `offset`: by topic id from v13, by name before.
pub fn fetch_req(
    v: i16,
    topic: &str,
    id: uuid::Uuid,
    offset: i64,
    max_wait_ms: i32,
) -> FetchRequest {
    let mut p = fetch_request::FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = fetch_request::FetchTopic::default();
    if v >= 13 {
        t.topic_id = id;
    } else {
        t.topic = topic_name(topic);
    }
    t.partitions = vec![p];
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 50 << 20;
    r.session_epoch = -1;
    r.topics = vec![t];
    r
}

/// Every record (offset, value) in a fetched partition.
pub fn records_of(p: &fetch_response::PartitionData) -> Vec<(i64, Bytes)> {
    let data = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(size) = BatchHeader::peek_size(&data[pos..]) {
        if pos + size > data.len() {
            break;
        }
        for r in records::decode_all(data.slice(pos..pos + size), 1 << 24).expect("records") {
            out.push((r.offset, r.value.expect("a record value")));
        }
        pos += size;
    }
    out
}

/// A CreateTopics of `topics` (name, partitions), replication factor 1.
pub fn create_topics_req(topics: &[(&str, i32)]) -> CreateTopicsRequest {
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 60_000;
    req.topics = topics
        .iter()
        .map(|(name, n)| {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = topic_name(name);
            t.num_partitions = *n;
            t.replication_factor = 1;
            t
        })
        .collect();
    req
}

/// Each topic's (error code, message) in a CreateTopics answer.
pub fn created(r: &CreateTopicsResponse) -> Vec<(i16, String)> {
    r.topics
        .iter()
        .map(|t| {
            (t.error_code, t.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
        })
        .collect()
}
