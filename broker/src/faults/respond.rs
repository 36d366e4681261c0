//! What fault rules need from a request: its facts (topics, partitions, group, client id) and an
//! error response in its API's own shape — every partition, topic or group it names answered with
//! the rule's error code, as the real handler would answer that error.
//!
//! Fetch v13+ names topics by id only: a `topic` filter does not match those requests (the facts
//! carry no name), and the error response echoes the ids.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::rules::RequestFacts;
use crate::protocol::{self, api_name, decode_body, Request, RequestError};

fn name(t: &TopicName) -> String {
    t.0.to_string()
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The facts of `req` rules match on; a body that does not decode gives the header's facts only
/// (the handler will refuse it anyway).
pub fn facts(req: &Request) -> RequestFacts {
    let mut f = RequestFacts {
        api: api_name(req.api_key),
        version: req.api_version,
        client_id: req.header.as_ref().and_then(|h| h.client_id.as_ref()).map(|c| c.to_string()),
        ..RequestFacts::default()
    };
    let _ = fill(req, &mut f);
    f
}

fn fill(req: &Request, f: &mut RequestFacts) -> Result<(), RequestError> {
    match req.api_key {
        ApiKey::Produce => {
            let r: ProduceRequest = decode_body(req)?;
            f.topics = r
                .topic_data
                .iter()
                .map(|t| (name(&t.name), t.partition_data.iter().map(|p| p.index).collect()))
                .collect();
        }
        ApiKey::Fetch => {
            let r: FetchRequest = decode_body(req)?;
            f.topics = r
                .topics
                .iter()
                .filter(|t| !t.topic.0.is_empty())
                .map(|t| (name(&t.topic), t.partitions.iter().map(|p| p.partition).collect()))
                .collect();
        }
        ApiKey::ListOffsets => {
            let r: ListOffsetsRequest = decode_body(req)?;
            f.topics = r
                .topics
                .iter()
                .map(|t| (name(&t.name), t.partitions.iter().map(|p| p.partition_index).collect()))
                .collect();
        }
        ApiKey::Metadata => {
            let r: MetadataRequest = decode_body(req)?;
            f.topics = r
                .topics
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| (name(n), Vec::new())))
                .collect();
        }
        ApiKey::OffsetCommit => {
            let r: OffsetCommitRequest = decode_body(req)?;
            f.group = Some(r.group_id.0.to_string());
            f.topics = r
                .topics
                .iter()
                .map(|t| (name(&t.name), t.partitions.iter().map(|p| p.partition_index).collect()))
                .collect();
        }
        ApiKey::OffsetFetch => {
            let r: OffsetFetchRequest = decode_body(req)?;
            if req.api_version >= 8 {
                f.group = r.groups.first().map(|g| g.group_id.0.to_string());
            } else {
                f.group = Some(r.group_id.0.to_string());
            }
        }
        ApiKey::JoinGroup => {
            f.group = Some(decode_body::<JoinGroupRequest>(req)?.group_id.0.to_string())
        }
        ApiKey::SyncGroup => {
            f.group = Some(decode_body::<SyncGroupRequest>(req)?.group_id.0.to_string())
        }
        ApiKey::Heartbeat => {
            f.group = Some(decode_body::<HeartbeatRequest>(req)?.group_id.0.to_string())
        }
        ApiKey::LeaveGroup => {
            f.group = Some(decode_body::<LeaveGroupRequest>(req)?.group_id.0.to_string())
        }
        ApiKey::FindCoordinator => {
            let r: FindCoordinatorRequest = decode_body(req)?;
            f.group = if req.api_version >= 4 {
                r.coordinator_keys.first().map(|k| k.to_string())
            } else {
                Some(r.key.to_string())
            };
        }
        ApiKey::CreateTopics => {
            let r: CreateTopicsRequest = decode_body(req)?;
            f.topics = r.topics.iter().map(|t| (name(&t.name), Vec::new())).collect();
        }
        ApiKey::DeleteTopics => {
            let r: DeleteTopicsRequest = decode_body(req)?;
            f.topics = r.topic_names.iter().map(|t| (name(t), Vec::new())).collect();
        }
        _ => {}
    }
    Ok(())
}

fn frame<T: kafka_protocol::protocol::Encodable>(
    req: &Request,
    body: &T,
) -> Result<Bytes, RequestError> {
    protocol::encode_response(req.api_key, req.api_version, req.correlation_id, body).map_err(
        |why| RequestError::BadBody { api: api_name(req.api_key), version: req.api_version, why },
    )
}

/// `req`'s response with `code` wherever the API carries an error code; `None` when the
/// request expects no response (Produce with acks=0: the client learns nothing, as from a drop).
pub fn error_response(req: &Request, code: i16) -> Result<Option<Bytes>, RequestError> {
    if req.api_key == ApiKey::Produce {
        return produce(req, code);
    }
    error_frame(req, code).map(Some)
}

fn error_frame(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    match req.api_key {
        ApiKey::Produce => produce(req, code)?.ok_or_else(|| RequestError::BadBody {
            api: "Produce",
            version: req.api_version,
            why: "acks=0 has no response".into(),
        }),
        ApiKey::Fetch => fetch(req, code),
        ApiKey::ListOffsets => list_offsets(req, code),
        ApiKey::Metadata => metadata(req, code),
        ApiKey::OffsetCommit => offset_commit(req, code),
        ApiKey::OffsetFetch => offset_fetch(req, code),
        ApiKey::FindCoordinator => find_coordinator(req, code),
        ApiKey::CreateTopics => create_topics(req, code),
        ApiKey::DeleteTopics => delete_topics(req, code),
        _ => group_and_others(req, code),
    }
}

/// `None` for acks=0 (decoded once for both).
fn produce(req: &Request, code: i16) -> Result<Option<Bytes>, RequestError> {
    let r: ProduceRequest = decode_body(req)?;
    if r.acks == 0 {
        return Ok(None);
    }
    let mut resp = ProduceResponse::default();
    for t in r.topic_data {
        let mut tr = produce_response::TopicProduceResponse::default();
        tr.name = t.name;
        for p in t.partition_data {
            let mut pr = produce_response::PartitionProduceResponse::default();
            pr.index = p.index;
            pr.error_code = code;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    frame(req, &resp).map(Some)
}

fn fetch(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: FetchRequest = decode_body(req)?;
    let mut resp = FetchResponse::default();
    resp.session_id = r.session_id;
    for t in r.topics {
        let mut tr = fetch_response::FetchableTopicResponse::default();
        tr.topic = t.topic;
        tr.topic_id = t.topic_id;
        for p in t.partitions {
            let mut pd = fetch_response::PartitionData::default();
            pd.partition_index = p.partition;
            pd.error_code = code;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    frame(req, &resp)
}

fn list_offsets(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: ListOffsetsRequest = decode_body(req)?;
    let mut resp = ListOffsetsResponse::default();
    for t in r.topics {
        let mut tr = list_offsets_response::ListOffsetsTopicResponse::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = list_offsets_response::ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code;
            pr.offset = -1;
            pr.timestamp = -1;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    frame(req, &resp)
}

fn metadata(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: MetadataRequest = decode_body(req)?;
    let mut resp = MetadataResponse::default();
    for t in r.topics.unwrap_or_default() {
        let mut tr = metadata_response::MetadataResponseTopic::default();
        tr.name = t.name;
        tr.topic_id = t.topic_id;
        tr.error_code = code;
        resp.topics.push(tr);
    }
    frame(req, &resp)
}

fn offset_commit(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: OffsetCommitRequest = decode_body(req)?;
    let mut resp = OffsetCommitResponse::default();
    for t in r.topics {
        let mut tr = offset_commit_response::OffsetCommitResponseTopic::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = offset_commit_response::OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    frame(req, &resp)
}

fn offset_fetch(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: OffsetFetchRequest = decode_body(req)?;
    let mut resp = OffsetFetchResponse::default();
    if req.api_version >= 8 {
        for g in r.groups {
            let mut gr = offset_fetch_response::OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id;
            gr.error_code = code;
            resp.groups.push(gr);
        }
    } else {
        resp.error_code = code;
    }
    frame(req, &resp)
}

fn find_coordinator(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: FindCoordinatorRequest = decode_body(req)?;
    let mut resp = FindCoordinatorResponse::default();
    if req.api_version >= 4 {
        for key in r.coordinator_keys {
            let mut c = find_coordinator_response::Coordinator::default();
            c.key = key;
            c.node_id = BrokerId(-1);
            c.port = -1;
            c.error_code = code;
            resp.coordinators.push(c);
        }
    } else {
        resp.error_code = code;
        resp.node_id = BrokerId(-1);
        resp.port = -1;
    }
    frame(req, &resp)
}

fn create_topics(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: CreateTopicsRequest = decode_body(req)?;
    let mut resp = CreateTopicsResponse::default();
    for t in r.topics {
        let mut tr = create_topics_response::CreatableTopicResult::default();
        tr.name = t.name;
        tr.error_code = code;
        tr.num_partitions = -1;
        tr.replication_factor = -1;
        resp.topics.push(tr);
    }
    frame(req, &resp)
}

fn delete_topics(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    let r: DeleteTopicsRequest = decode_body(req)?;
    let mut resp = DeleteTopicsResponse::default();
    for n in r.topic_names {
        let mut tr = delete_topics_response::DeletableTopicResult::default();
        tr.name = Some(n);
        tr.error_code = code;
        resp.responses.push(tr);
    }
    frame(req, &resp)
}

/// The APIs whose response has one top-level error code (and no list to fill).
fn group_and_others(req: &Request, code: i16) -> Result<Bytes, RequestError> {
    match req.api_key {
        ApiKey::JoinGroup => {
            let r: JoinGroupRequest = decode_body(req)?;
            let mut resp = JoinGroupResponse::default();
            resp.error_code = code;
            resp.generation_id = -1;
            resp.member_id = r.member_id;
            resp.leader = sb("");
            frame(req, &resp)
        }
        ApiKey::SyncGroup => frame(req, &SyncGroupResponse::default().with_error_code(code)),
        ApiKey::Heartbeat => frame(req, &HeartbeatResponse::default().with_error_code(code)),
        ApiKey::LeaveGroup => frame(req, &LeaveGroupResponse::default().with_error_code(code)),
        ApiKey::InitProducerId => frame(
            req,
            &InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::ListGroups => frame(req, &ListGroupsResponse::default().with_error_code(code)),
        ApiKey::ApiVersions => frame(req, &ApiVersionsResponse::default().with_error_code(code)),
        ApiKey::DescribeGroups => {
            let r: DescribeGroupsRequest = decode_body(req)?;
            let mut resp = DescribeGroupsResponse::default();
            for g in r.groups {
                let mut d = describe_groups_response::DescribedGroup::default();
                d.group_id = g;
                d.error_code = code;
                resp.groups.push(d);
            }
            frame(req, &resp)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let r: OffsetForLeaderEpochRequest = decode_body(req)?;
            let mut resp = OffsetForLeaderEpochResponse::default();
            for t in r.topics {
                let mut tr =
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
                tr.topic = t.topic;
                for p in t.partitions {
                    let mut pr = offset_for_leader_epoch_response::EpochEndOffset::default();
                    pr.partition = p.partition;
                    pr.error_code = code;
                    pr.leader_epoch = -1;
                    pr.end_offset = -1;
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            frame(req, &resp)
        }
        other => Err(RequestError::BadBody {
            api: api_name(other),
            version: req.api_version,
            why: "no error response shape for this API".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
