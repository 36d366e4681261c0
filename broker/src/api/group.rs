//! The classic group APIs: JoinGroup v0-7, SyncGroup v0-5, Heartbeat v0-4, LeaveGroup v0-5,
//! OffsetCommit v0-8 (v0-1 parsed by hand: kafka-protocol starts at v2), OffsetFetch v1-8,
//! ListGroups v0-4, DescribeGroups v0-5. The semantics live in `group::state` and
//! `group::coordinator`; this file decodes, calls, encodes.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::Encodable;

use crate::broker::{Broker, Outcome};
use crate::group::coordinator::OffsetToCommit;
use crate::group::state::{CommittedOffset, JoinRequest, Leaver};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

/// Client host reported for members: the request path does not carry the peer address.
const CLIENT_HOST: &str = "/unknown";

fn encode<T: Encodable>(
    req: &Request,
    key: ApiKey,
    version: i16,
    resp: &T,
) -> Result<Outcome, RequestError> {
    let frame =
        protocol::encode_response(key, version, req.correlation_id, resp).map_err(|why| {
            RequestError::BadBody { api: protocol::api_name(key), version: req.api_version, why }
        })?;
    Ok(Outcome::frame(frame))
}

fn client_id(req: &Request) -> String {
    let id =
        req.header.as_ref().and_then(|h| h.client_id.as_ref()).map(|c| c.as_str()).unwrap_or("");
    let mut end = id.len().min(256);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_string()
}

impl Broker {
    pub(crate) async fn join_group(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: JoinGroupRequest = decode_body(req)?;
        let v = req.api_version;
        let jr = JoinRequest {
            member_id: r.member_id.to_string(),
            instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client_id(req),
            client_host: CLIENT_HOST.to_string(),
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: if v >= 1 {
                r.rebalance_timeout_ms
            } else {
                r.session_timeout_ms
            },
            protocol_type: r.protocol_type.to_string(),
            protocols: r
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: v >= 4,
        };
        let out = self.groups.join(self, r.group_id.0.as_str(), jr).await;
        let mut resp = JoinGroupResponse::default();
        resp.error_code = out.error;
        resp.generation_id = out.generation;
        if v >= 7 {
            resp.protocol_type = out.protocol_type.as_deref().map(sb);
            resp.protocol_name = out.protocol.as_deref().map(sb);
        } else {
            resp.protocol_name = Some(sb(out.protocol.as_deref().unwrap_or("")));
        }
        resp.leader = sb(&out.leader);
        resp.member_id = sb(&out.member_id);
        resp.members = out
            .members
            .iter()
            .map(|m| {
                let mut jm = JoinGroupResponseMember::default();
                jm.member_id = sb(&m.member_id);
                if v >= 5 {
                    jm.group_instance_id = m.instance_id.as_deref().map(sb);
                }
                jm.metadata = m.metadata.clone();
                jm
            })
            .collect();
        encode(req, ApiKey::JoinGroup, v, &resp)
    }

    pub(crate) async fn sync_group(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: SyncGroupRequest = decode_body(req)?;
        let v = req.api_version;
        let assignments: Vec<(String, Bytes)> =
            r.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
        let out = self
            .groups
            .sync(
                self,
                r.group_id.0.as_str(),
                r.generation_id,
                r.member_id.as_str(),
                r.group_instance_id.as_deref(),
                r.protocol_type.as_deref(),
                r.protocol_name.as_deref(),
                assignments,
            )
            .await;
        let mut resp = SyncGroupResponse::default();
        resp.error_code = out.error;
        if v >= 5 {
            resp.protocol_type = out.protocol_type.as_deref().map(sb);
            resp.protocol_name = out.protocol.as_deref().map(sb);
        }
        resp.assignment = out.assignment;
        encode(req, ApiKey::SyncGroup, v, &resp)
    }

    pub(crate) async fn heartbeat(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: HeartbeatRequest = decode_body(req)?;
        let mut resp = HeartbeatResponse::default();
        resp.error_code = self
            .groups
            .heartbeat(
                r.group_id.0.as_str(),
                r.generation_id,
                r.member_id.as_str(),
                r.group_instance_id.as_deref(),
            )
            .await;
        encode(req, ApiKey::Heartbeat, req.api_version, &resp)
    }

    pub(crate) async fn leave_group(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: LeaveGroupRequest = decode_body(req)?;
        let v = req.api_version;
        let leavers: Vec<Leaver> = if v >= 3 {
            r.members
                .iter()
                .map(|m| Leaver {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                })
                .collect()
        } else {
            vec![Leaver { member_id: r.member_id.to_string(), instance_id: None }]
        };
        let mut resp = LeaveGroupResponse::default();
        match self.groups.leave(self, r.group_id.0.as_str(), &leavers).await {
            Err(code) => resp.error_code = code,
            Ok(codes) if v >= 3 => {
                resp.members = leavers
                    .iter()
                    .zip(codes)
                    .map(|(l, code)| {
                        let mut m = MemberResponse::default();
                        m.member_id = sb(&l.member_id);
                        m.group_instance_id = l.instance_id.as_deref().map(sb);
                        m.error_code = code;
                        m
                    })
                    .collect();
            }
            Ok(codes) => resp.error_code = codes.first().copied().unwrap_or(error_code::NONE),
        }
        encode(req, ApiKey::LeaveGroup, v, &resp)
    }

    pub(crate) async fn offset_commit(&self, req: &Request) -> Result<Outcome, RequestError> {
        let v = req.api_version;
        let (group, generation, member, instance, topics) = if v >= 2 {
            let r: OffsetCommitRequest = decode_body(req)?;
            let topics: TopicOffsets = r
                .topics
                .iter()
                .map(|t| {
                    let ps = t
                        .partitions
                        .iter()
                        .map(|p| {
                            (
                                p.partition_index,
                                p.committed_offset,
                                if v >= 6 { p.committed_leader_epoch } else { -1 },
                                p.committed_metadata.as_ref().map(|m| m.to_string()),
                            )
                        })
                        .collect();
                    (t.name.0.to_string(), ps)
                })
                .collect();
            (
                r.group_id.0.to_string(),
                r.generation_id_or_member_epoch,
                r.member_id.to_string(),
                if v >= 7 { r.group_instance_id.as_ref().map(|s| s.to_string()) } else { None },
                topics,
            )
        } else {
            parse_offset_commit_v0_v1(&req.body, v).map_err(|why| RequestError::BadBody {
                api: "OffsetCommit",
                version: v,
                why,
            })?
        };
        let flat: Vec<OffsetToCommit> = topics
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter().map(move |(p, o, e, m)| OffsetToCommit {
                    topic: t.clone(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: *e,
                    metadata: m.clone(),
                })
            })
            .collect();
        // As Kafka: offsets only for partitions that exist (this also bounds what a client can
        // make the coordinator remember).
        let exists: Vec<bool> = {
            let registry = self.registry.lock().await;
            flat.iter()
                .map(|o| {
                    registry
                        .topics
                        .get(&o.topic)
                        .is_some_and(|m| (0..m.partitions).contains(&o.partition))
                })
                .collect()
        };
        let known: Vec<OffsetToCommit> =
            flat.iter().zip(&exists).filter(|(_, e)| **e).map(|(o, _)| o.clone()).collect();
        let known_codes = match self
            .groups
            .commit(self, &group, generation, &member, instance.as_deref(), &known)
            .await
        {
            Ok(c) => c,
            Err(code) => vec![code; known.len()],
        };
        let mut known_codes = known_codes.into_iter();
        let codes: Vec<i16> = exists
            .iter()
            .map(|e| {
                if *e {
                    known_codes.next().unwrap_or(error_code::UNKNOWN_SERVER_ERROR)
                } else {
                    error_code::UNKNOWN_TOPIC_OR_PARTITION
                }
            })
            .collect();
        let mut codes = codes.into_iter();
        let mut resp = OffsetCommitResponse::default();
        for (t, ps) in &topics {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = TopicName(sb(t));
            for (p, ..) in ps {
                let mut rp = OffsetCommitResponsePartition::default();
                rp.partition_index = *p;
                rp.error_code = codes.next().unwrap_or(error_code::UNKNOWN_SERVER_ERROR);
                rt.partitions.push(rp);
            }
            resp.topics.push(rt);
        }
        // v0-1 responses are laid out exactly as v2's (no throttle time before v3).
        encode(req, ApiKey::OffsetCommit, v.max(2), &resp)
    }

    pub(crate) async fn offset_fetch(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: OffsetFetchRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = OffsetFetchResponse::default();
        if v >= 8 {
            for g in &r.groups {
                let topics: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
                    ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
                });
                let mut rg = OffsetFetchResponseGroup::default();
                rg.group_id = g.group_id.clone();
                match self.groups.fetch_offsets(g.group_id.0.as_str(), topics.as_deref()).await {
                    Err(code) => rg.error_code = code,
                    Ok(found) => {
                        for (t, ps) in found {
                            let mut rt = OffsetFetchResponseTopics::default();
                            rt.name = TopicName(sb(&t));
                            for (p, c) in ps {
                                let mut rp = OffsetFetchResponsePartitions::default();
                                rp.partition_index = p;
                                (rp.committed_offset, rp.committed_leader_epoch, rp.metadata) =
                                    offset_fields(c.as_ref());
                                rt.partitions.push(rp);
                            }
                            rg.topics.push(rt);
                        }
                    }
                }
                resp.groups.push(rg);
            }
            return encode(req, ApiKey::OffsetFetch, v, &resp);
        }
        let topics: Option<Vec<(String, Vec<i32>)>> = r.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
        });
        match self.groups.fetch_offsets(r.group_id.0.as_str(), topics.as_deref()).await {
            Err(code) => {
                if v >= 2 {
                    resp.error_code = code;
                } else {
                    // v1 has no group-level error: every asked partition carries it.
                    for (t, ps) in topics.unwrap_or_default() {
                        let mut rt = OffsetFetchResponseTopic::default();
                        rt.name = TopicName(sb(&t));
                        for p in ps {
                            let mut rp = OffsetFetchResponsePartition::default();
                            rp.partition_index = p;
                            rp.committed_offset = -1;
                            rp.metadata = Some(sb(""));
                            rp.error_code = code;
                            rt.partitions.push(rp);
                        }
                        resp.topics.push(rt);
                    }
                }
            }
            Ok(found) => {
                for (t, ps) in found {
                    let mut rt = OffsetFetchResponseTopic::default();
                    rt.name = TopicName(sb(&t));
                    for (p, c) in ps {
                        let mut rp = OffsetFetchResponsePartition::default();
                        rp.partition_index = p;
                        let (o, e, m) = offset_fields(c.as_ref());
                        rp.committed_offset = o;
                        if v >= 5 {
                            rp.committed_leader_epoch = e;
                        }
                        rp.metadata = m;
                        rt.partitions.push(rp);
                    }
                    resp.topics.push(rt);
                }
            }
        }
        encode(req, ApiKey::OffsetFetch, v, &resp)
    }

    pub(crate) async fn list_groups(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: ListGroupsRequest = decode_body(req)?;
        let v = req.api_version;
        let states: Vec<String> = r.states_filter.iter().map(|s| s.to_lowercase()).collect();
        let mut resp = ListGroupsResponse::default();
        let groups = self.groups.list().await.unwrap_or_else(|code| {
            resp.error_code = code;
            vec![]
        });
        for (id, ptype, state) in groups {
            if v >= 4 && !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            let mut g = ListedGroup::default();
            g.group_id = GroupId(sb(&id));
            g.protocol_type = sb(&ptype);
            if v >= 4 {
                g.group_state = sb(state);
            }
            resp.groups.push(g);
        }
        encode(req, ApiKey::ListGroups, v, &resp)
    }

    pub(crate) async fn describe_groups(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DescribeGroupsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = DescribeGroupsResponse::default();
        for id in &r.groups {
            let mut g = DescribedGroup::default();
            g.group_id = id.clone();
            if v >= 3 {
                // Authorized operations are not computed (no ACLs).
                g.authorized_operations = i32::MIN;
            }
            match self.groups.describe(id.0.as_str()).await {
                Err(code) => g.error_code = code,
                Ok(d) => {
                    g.group_state = sb(d.state);
                    g.protocol_type = sb(&d.protocol_type);
                    g.protocol_data = sb(&d.protocol);
                    for (mid, inst, cid, host, meta, asg) in d.members {
                        let mut m = DescribedGroupMember::default();
                        m.member_id = sb(&mid);
                        if v >= 4 {
                            m.group_instance_id = inst.as_deref().map(sb);
                        }
                        m.client_id = sb(&cid);
                        m.client_host = sb(&host);
                        m.member_metadata = meta;
                        m.member_assignment = asg;
                        g.members.push(m);
                    }
                }
            }
            resp.groups.push(g);
        }
        encode(req, ApiKey::DescribeGroups, v, &resp)
    }
}

/// (offset, leader epoch, metadata) of a committed offset, Kafka's "none" values otherwise.
fn offset_fields(
    c: Option<&CommittedOffset>,
) -> (i64, i32, Option<kafka_protocol::protocol::StrBytes>) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, Some(sb(&c.metadata))),
        None => (-1, -1, Some(sb(""))),
    }
}

/// Per topic: (partition, offset, leader epoch, metadata) to commit.
type TopicOffsets = Vec<(String, Vec<(i32, i64, i32, Option<String>)>)>;
type Parsed = (String, i32, String, Option<String>, TopicOffsets);

/// OffsetCommit v0 `{group, [topic, [partition, offset, metadata]]}` and v1 `{group, generation,
/// member, [topic, [partition, offset, timestamp, metadata]]}`. Counts are checked against the
/// bytes left before each element; nothing is pre-allocated from a count.
fn parse_offset_commit_v0_v1(body: &[u8], v: i16) -> Result<Parsed, String> {
    struct Cur<'a>(&'a [u8]);
    impl<'a> Cur<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err("truncated".into());
            }
            let (h, t) = self.0.split_at(n);
            self.0 = t;
            Ok(h)
        }
        fn i16(&mut self) -> Result<i16, String> {
            let b = self.take(2)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Result<i32, String> {
            let b = self.take(4)?;
            Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn i64(&mut self) -> Result<i64, String> {
            let b = self.take(8)?;
            Ok(i64::from_be_bytes(b.try_into().map_err(|_| "truncated")?))
        }
        fn nstr(&mut self) -> Result<Option<String>, String> {
            let n = self.i16()?;
            if n < 0 {
                return Ok(None);
            }
            let b = self.take(n as usize)?;
            String::from_utf8(b.to_vec()).map(Some).map_err(|_| "string is not utf-8".into())
        }
        fn str(&mut self) -> Result<String, String> {
            self.nstr()?.ok_or_else(|| "null string".into())
        }
        fn count(&mut self, min_elem: usize) -> Result<usize, String> {
            let n = self.i32()?;
            if n < 0 || (n as usize).saturating_mul(min_elem) > self.0.len() {
                return Err(format!("array of {n} elements in {} bytes", self.0.len()));
            }
            Ok(n as usize)
        }
    }
    let mut c = Cur(body);
    let group = c.str()?;
    let (generation, member) = if v >= 1 { (c.i32()?, c.str()?) } else { (-1, String::new()) };
    let mut topics = Vec::new();
    for _ in 0..c.count(6)? {
        let name = c.str()?;
        let mut parts = Vec::new();
        for _ in 0..c.count(14)? {
            let p = c.i32()?;
            let o = c.i64()?;
            if v >= 1 {
                c.i64()?; // commit timestamp: the broker's clock is used instead
            }
            parts.push((p, o, -1, c.nstr()?));
        }
        topics.push((name, parts));
    }
    if !c.0.is_empty() {
        return Err(format!("{} bytes after the request", c.0.len()));
    }
    Ok((group, generation, member, None, topics))
}
