use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::protocol::parse_request;

/// A request frame (without the length prefix, as connections hand it to `parse_request`).
fn request<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Request {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("app")));
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    parse_request(buf.freeze()).unwrap()
}

/// Decodes a response frame (length prefix and header included).
fn response<T: Decodable>(key: ApiKey, version: i16, frame: Bytes) -> T {
    let mut b = frame.slice(4..);
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 42);
    T::decode(&mut b, version).unwrap()
}

fn tn(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

#[test]
fn produce_facts_and_every_partition_answered() {
    let mut r = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000);
    for (t, ps) in [("a", vec![0, 1]), ("b", vec![2])] {
        let mut td = produce_request::TopicProduceData::default().with_name(tn(t));
        for p in ps {
            td.partition_data.push(produce_request::PartitionProduceData::default().with_index(p));
        }
        r.topic_data.push(td);
    }
    let req = request(ApiKey::Produce, 9, &r);
    let f = facts(&req);
    assert_eq!(f.api, "Produce");
    assert_eq!(f.client_id.as_deref(), Some("app"));
    assert_eq!(f.topics, vec![("a".to_string(), vec![0, 1]), ("b".to_string(), vec![2])]);
    let resp: ProduceResponse = response(ApiKey::Produce, 9, error_frame(&req, 6).unwrap());
    let codes: Vec<(String, i32, i16)> = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses.iter().map(move |p| (t.name.0.to_string(), p.index, p.error_code))
        })
        .collect();
    assert_eq!(codes, [("a".into(), 0, 6), ("a".into(), 1, 6), ("b".into(), 2, 6)]);
}

#[test]
fn fetch_and_list_offsets_answer_each_partition() {
    let mut r = FetchRequest::default().with_max_wait_ms(100);
    let mut t = fetch_request::FetchTopic::default().with_topic(tn("a"));
    t.partitions.push(fetch_request::FetchPartition::default().with_partition(3));
    r.topics.push(t);
    let req = request(ApiKey::Fetch, 12, &r);
    assert_eq!(facts(&req).topics, vec![("a".to_string(), vec![3])]);
    let resp: FetchResponse = response(ApiKey::Fetch, 12, error_frame(&req, 6).unwrap());
    assert_eq!(resp.responses[0].partitions[0].error_code, 6);
    assert_eq!(resp.responses[0].partitions[0].partition_index, 3);

    let mut r = ListOffsetsRequest::default();
    let mut t = list_offsets_request::ListOffsetsTopic::default().with_name(tn("a"));
    t.partitions
        .push(list_offsets_request::ListOffsetsPartition::default().with_partition_index(1));
    r.topics.push(t);
    let req = request(ApiKey::ListOffsets, 7, &r);
    let resp: ListOffsetsResponse =
        response(ApiKey::ListOffsets, 7, error_frame(&req, 15).unwrap());
    assert_eq!(resp.topics[0].partitions[0].error_code, 15);
}

#[test]
fn group_requests_carry_their_group_and_one_error() {
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g1")))
        .with_member_id(StrBytes::from_static_str("m-1"))
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    let req = request(ApiKey::JoinGroup, 7, &join);
    assert_eq!(facts(&req).group.as_deref(), Some("g1"));
    let resp: JoinGroupResponse = response(ApiKey::JoinGroup, 7, error_frame(&req, 14).unwrap());
    assert_eq!((resp.error_code, resp.generation_id), (14, -1));
    assert_eq!(resp.member_id.as_str(), "m-1");

    let hb = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g1")));
    let req = request(ApiKey::Heartbeat, 4, &hb);
    let resp: HeartbeatResponse = response(ApiKey::Heartbeat, 4, error_frame(&req, 27).unwrap());
    assert_eq!(resp.error_code, 27);

    let fc = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_static_str("g1")]);
    let req = request(ApiKey::FindCoordinator, 4, &fc);
    assert_eq!(facts(&req).group.as_deref(), Some("g1"));
    let resp: FindCoordinatorResponse =
        response(ApiKey::FindCoordinator, 4, error_frame(&req, 15).unwrap());
    assert_eq!(resp.coordinators[0].error_code, 15);

    let mut of = OffsetFetchRequest::default();
    of.groups.push(
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g1"))),
    );
    let req = request(ApiKey::OffsetFetch, 8, &of);
    assert_eq!(facts(&req).group.as_deref(), Some("g1"));
    let resp: OffsetFetchResponse =
        response(ApiKey::OffsetFetch, 8, error_frame(&req, 14).unwrap());
    assert_eq!(resp.groups[0].error_code, 14);
}

#[test]
fn metadata_answers_each_named_topic() {
    let mut r = MetadataRequest::default();
    r.topics =
        Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(tn("a")))]);
    let req = request(ApiKey::Metadata, 12, &r);
    assert_eq!(facts(&req).topics, vec![("a".to_string(), vec![])]);
    let resp: MetadataResponse = response(ApiKey::Metadata, 12, error_frame(&req, 3).unwrap());
    assert_eq!(resp.topics[0].error_code, 3);
}
