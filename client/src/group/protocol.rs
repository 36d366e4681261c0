//! Kafka's consumer embedded protocol: the bytes a member puts in JoinGroup's protocol metadata
//! (`ConsumerProtocolSubscription`) and the leader puts in SyncGroup's assignments
//! (`ConsumerProtocolAssignment`), versions 0-3, so a Loglab member can share a group with Java or
//! librdkafka members. Also the user data of the sticky assignors (`StickyAssignorUserData` v0/v1
//! for eager "sticky", a bare generation for "cooperative-sticky").
//!
//! Written by hand rather than with `kafka-protocol`'s generated decoders because these bytes come
//! from other members through the broker, and those decoders pre-allocate arrays by their declared
//! count: every count and length here is checked against the bytes that remain before allocating.
//!
//! Layout (big-endian, non-flexible): `version: i16`, then
//! - subscription: `topics: [string]`, `user_data: nullable bytes`, v1+ `owned: [topic, [i32]]`,
//!   v2+ `generation_id: i32`, v3+ `rack_id: nullable string`;
//! - assignment: `assigned: [topic, [i32]]`, `user_data: nullable bytes`.
//!
//! A version above 3 is read as version 3 and the rest ignored, as Kafka does (newer versions only
//! append fields).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::accumulator::TopicPartition;

/// Highest subscription/assignment version this client writes and fully reads.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("truncated: needed {needed} more bytes at byte {at}")]
    Truncated { at: usize, needed: usize },
    #[error("negative version {0}")]
    BadVersion(i16),
    #[error("invalid {what} length {len} at byte {at}")]
    BadLength { what: &'static str, len: i64, at: usize },
    #[error("string at byte {at} is not UTF-8")]
    BadUtf8 { at: usize },
}

/// What a member sends in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// v1+: partitions the member owns now (cooperative protocols).
    pub owned_partitions: Vec<TopicPartition>,
    /// v2+: the generation in which `owned_partitions` were assigned; -1 when unknown.
    pub generation_id: i32,
    /// v3+.
    pub rack_id: Option<String>,
}

/// What the leader hands each member in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub partitions: Vec<TopicPartition>,
    pub user_data: Option<Bytes>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let rest = self.buf.len() - self.pos;
        if n > rest {
            return Err(ProtocolError::Truncated { at: self.pos, needed: n - rest });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An array count, bounded by the bytes left (each element is at least `min_elem` bytes).
    fn count(&mut self, what: &'static str, min_elem: usize) -> Result<usize, ProtocolError> {
        let at = self.pos;
        let n = self.i32()?;
        if n < 0 || (n as usize).saturating_mul(min_elem) > self.remaining() {
            return Err(ProtocolError::BadLength { what, len: n as i64, at });
        }
        Ok(n as usize)
    }

    fn nullable_string(&mut self) -> Result<Option<String>, ProtocolError> {
        let at = self.pos;
        let n = self.i16()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(ProtocolError::BadLength { what: "string", len: n as i64, at });
        }
        let b = self.take(n as usize)?;
        std::str::from_utf8(b)
            .map(|s| Some(s.to_string()))
            .map_err(|_| ProtocolError::BadUtf8 { at })
    }

    fn string(&mut self) -> Result<String, ProtocolError> {
        let at = self.pos;
        self.nullable_string()?.ok_or(ProtocolError::BadLength { what: "string", len: -1, at })
    }

    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let at = self.pos;
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(ProtocolError::BadLength { what: "bytes", len: n as i64, at });
        }
        Ok(Some(Bytes::copy_from_slice(self.take(n as usize)?)))
    }

    /// `[topic: string, partitions: [i32]]`, flattened.
    fn topic_partitions(&mut self) -> Result<Vec<TopicPartition>, ProtocolError> {
        let topics = self.count("topic array", 6)?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let topic = self.string()?;
            let n = self.count("partition array", 4)?;
            out.reserve(n);
            for _ in 0..n {
                out.push(TopicPartition::new(topic.clone(), self.i32()?));
            }
        }
        Ok(out)
    }
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Topic names are ≤ 249 bytes and member/rack ids are short; a longer string is a caller bug.
    assert!(s.len() <= i16::MAX as usize, "string of {} bytes", s.len());
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_nullable_bytes(buf: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            assert!(b.len() <= i32::MAX as usize);
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
        None => buf.put_i32(-1),
    }
}

/// Groups partitions by topic (sorted), as the wire format wants.
fn put_topic_partitions(buf: &mut BytesMut, tps: &[TopicPartition]) {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    buf.put_i32(by_topic.len() as i32);
    for (topic, mut ps) in by_topic {
        ps.sort_unstable();
        put_string(buf, topic);
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
}

impl Subscription {
    pub fn new(topics: Vec<String>) -> Self {
        Self { topics, generation_id: -1, ..Self::default() }
    }

    /// Encodes at `version` (0..=3); fields the version lacks are dropped.
    pub fn encode(&self, version: i16) -> Bytes {
        assert!((0..=CONSUMER_PROTOCOL_VERSION).contains(&version));
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        buf.put_i32(self.topics.len() as i32);
        for t in &self.topics {
            put_string(&mut buf, t);
        }
        put_nullable_bytes(&mut buf, self.user_data.as_ref());
        if version >= 1 {
            put_topic_partitions(&mut buf, &self.owned_partitions);
        }
        if version >= 2 {
            buf.put_i32(self.generation_id);
        }
        if version >= 3 {
            put_nullable_string(&mut buf, self.rack_id.as_deref());
        }
        buf.freeze()
    }

    /// Decodes any version; returns the version read too.
    pub fn decode(bytes: &[u8]) -> Result<(i16, Self), ProtocolError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.i16()?;
        if version < 0 {
            return Err(ProtocolError::BadVersion(version));
        }
        let n = r.count("topic array", 2)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            topics.push(r.string()?);
        }
        let user_data = r.nullable_bytes()?;
        let owned_partitions = if version >= 1 { r.topic_partitions()? } else { Vec::new() };
        let generation_id = if version >= 2 { r.i32()? } else { -1 };
        let rack_id = if version >= 3 { r.nullable_string()? } else { None };
        Ok((version, Self { topics, user_data, owned_partitions, generation_id, rack_id }))
    }
}

impl Assignment {
    pub fn encode(&self, version: i16) -> Bytes {
        assert!((0..=CONSUMER_PROTOCOL_VERSION).contains(&version));
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        put_topic_partitions(&mut buf, &self.partitions);
        put_nullable_bytes(&mut buf, self.user_data.as_ref());
        buf.freeze()
    }

    /// An empty byte string is an empty assignment (Kafka's leader sends one to a member it gave
    /// nothing, and the broker sends one to members that missed the SyncGroup of the leader).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.i16()?;
        if version < 0 {
            return Err(ProtocolError::BadVersion(version));
        }
        let partitions = r.topic_partitions()?;
        let user_data = r.nullable_bytes()?;
        Ok(Self { partitions, user_data })
    }
}

/// `StickyAssignorUserData`: the eager sticky assignor's memory of what a member owned (eager
/// members revoke everything before joining, so owned partitions travel in user data). v1 adds
/// the generation; there is no version prefix (Kafka reads v1 and falls back to v0).
pub fn encode_sticky_user_data(owned: &[TopicPartition], generation: Option<i32>) -> Bytes {
    let mut buf = BytesMut::new();
    put_topic_partitions(&mut buf, owned);
    if let Some(g) = generation {
        buf.put_i32(g);
    }
    buf.freeze()
}

/// Reads `StickyAssignorUserData` v1, else v0 (generation `None`).
pub fn decode_sticky_user_data(
    bytes: &[u8],
) -> Result<(Vec<TopicPartition>, Option<i32>), ProtocolError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let owned = r.topic_partitions()?;
    let generation = if r.remaining() >= 4 { Some(r.i32()?) } else { None };
    Ok((owned, generation))
}

/// The cooperative-sticky assignor's user data: the member's generation as a bare i32.
pub fn encode_cooperative_user_data(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

pub fn decode_cooperative_user_data(bytes: &[u8]) -> Option<i32> {
    let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn sub() -> Subscription {
        Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"ud")),
            owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("a", 0)],
            generation_id: 7,
            rack_id: Some("r1".into()),
        }
    }

    #[test]
    fn subscription_matches_kafka_protocol_crate() {
        for v in 0..=3 {
            let bytes = sub().encode(v);
            let mut body = bytes.slice(2..);
            let theirs = ConsumerProtocolSubscription::decode(&mut body, v).unwrap();
            assert_eq!(theirs.topics.len(), 2);
            assert_eq!(theirs.user_data.as_deref(), Some(&b"ud"[..]));
            if v >= 1 {
                assert_eq!(theirs.owned_partitions[0].partitions, vec![0, 1]);
            }
            if v >= 2 {
                assert_eq!(theirs.generation_id, 7);
            }
            // And ours reads what theirs writes.
            let mut out = BytesMut::new();
            out.put_i16(v);
            theirs.encode(&mut out, v).unwrap();
            let (rv, back) = Subscription::decode(&out).unwrap();
            assert_eq!(rv, v);
            assert_eq!(back.topics, vec!["a", "b"]);
        }
    }

    #[test]
    fn assignment_matches_kafka_protocol_crate() {
        let a = Assignment {
            partitions: vec![TopicPartition::new("t", 2), TopicPartition::new("s", 0)],
            user_data: None,
        };
        let bytes = a.encode(3);
        let mut body = bytes.slice(2..);
        let theirs = ConsumerProtocolAssignment::decode(&mut body, 3).unwrap();
        assert_eq!(theirs.assigned_partitions.len(), 2);
        assert_eq!(theirs.assigned_partitions[0].topic.0, StrBytes::from_static_str("s"));
        let back = Assignment::decode(&bytes).unwrap();
        assert_eq!(back.partitions, vec![TopicPartition::new("s", 0), TopicPartition::new("t", 2)]);
    }

    #[test]
    fn newer_versions_read_as_three() {
        let mut b = BytesMut::from(&sub().encode(3)[..]);
        b[0..2].copy_from_slice(&9i16.to_be_bytes());
        b.put_slice(b"future fields");
        let (v, s) = Subscription::decode(&b).unwrap();
        assert_eq!((v, s.generation_id, s.rack_id.as_deref()), (9, 7, Some("r1")));
    }

    #[test]
    fn hostile_counts_are_refused_before_allocating() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(i32::MAX);
        assert!(matches!(Subscription::decode(&b), Err(ProtocolError::BadLength { .. })));
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(1);
        put_string(&mut b, "t");
        b.put_i32(1 << 30);
        assert!(Assignment::decode(&b).is_err());
        assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default());
    }

    #[test]
    fn sticky_user_data_round_trips() {
        let owned = vec![TopicPartition::new("a", 0), TopicPartition::new("b", 3)];
        let b = encode_sticky_user_data(&owned, Some(4));
        assert_eq!(decode_sticky_user_data(&b).unwrap(), (owned.clone(), Some(4)));
        let b = encode_sticky_user_data(&owned, None);
        assert_eq!(decode_sticky_user_data(&b).unwrap(), (owned, None));
        assert_eq!(decode_cooperative_user_data(&encode_cooperative_user_data(-1)), Some(-1));
    }
}
