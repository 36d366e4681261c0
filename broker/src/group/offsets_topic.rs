//! Records of `__consumer_offsets`, in Kafka's own formats, so the topic is readable by Kafka
//! tools and the log cleaner compacts it by key:
//!
//! - offset commit: key v1 `{i16 1, group, topic, i32 partition}` (v0 same layout), value v3
//!   `{i16 3, i64 offset, i32 leader_epoch, string metadata, i64 commit_timestamp}` (v0-v2 read);
//! - group metadata: key v2 `{i16 2, group}`, value v3 `{i16 3, protocol_type, i32 generation,
//!   nullable protocol, nullable leader, i64 state_timestamp, [member_id, nullable instance_id,
//!   client_id, client_host, i32 rebalance_timeout, i32 session_timeout, bytes subscription,
//!   bytes assignment]}` (v0-v2 read);
//! - a null value (tombstone) deletes the offset / the group's metadata.
//!
//! Decoding never trusts a length or count beyond the bytes present.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::state::{CommittedOffset, GroupSnapshot, MemberSnapshot};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{0} truncated")]
    Truncated(&'static str),
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Kafka's partitioning of groups over the offsets topic: `Utils.abs(groupId.hashCode()) % n`,
/// with Java's `String.hashCode` over UTF-16 code units.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    // Utils.abs maps i32::MIN to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

fn put_str(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    b.put_i16(s.len() as i16);
    b.put_slice(s);
}

fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(o: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(o.offset);
    b.put_i32(o.leader_epoch);
    put_str(&mut b, &o.metadata);
    b.put_i64(o.commit_timestamp_ms);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(g: &GroupSnapshot) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_nstr(&mut b, g.protocol.as_deref());
    put_nstr(&mut b, g.leader.as_deref());
    b.put_i64(g.state_timestamp_ms);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_nstr(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// A bounds-checked reader.
struct Cur<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.b.len() < n {
            return Err(FormatError::Truncated(self.what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn i16(&mut self) -> Result<i16, FormatError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| FormatError::Truncated(self.what))?,
        ))
    }
    fn i32(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| FormatError::Truncated(self.what))?,
        ))
    }
    fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| FormatError::Truncated(self.what))?,
        ))
    }
    fn nstr(&mut self) -> Result<Option<String>, FormatError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let raw = self.take(n as usize)?;
        Ok(Some(String::from_utf8(raw.to_vec()).map_err(|_| FormatError::Invalid("utf-8 string"))?))
    }
    fn str(&mut self) -> Result<String, FormatError> {
        self.nstr()?.ok_or(FormatError::Invalid("null string"))
    }
    fn bytes(&mut self) -> Result<Bytes, FormatError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(n as usize)?))
    }
}

/// A decoded key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

pub fn decode_key(b: &[u8]) -> Result<Key, FormatError> {
    let mut c = Cur { b, what: "key" };
    match c.i16()? {
        0 | 1 => Ok(Key::Offset { group: c.str()?, topic: c.str()?, partition: c.i32()? }),
        2 => Ok(Key::Group { group: c.str()? }),
        v => Err(FormatError::UnknownVersion { what: "key", version: v }),
    }
}

pub fn decode_offset_value(b: &[u8]) -> Result<CommittedOffset, FormatError> {
    let mut c = Cur { b, what: "offset value" };
    let v = c.i16()?;
    let offset = c.i64()?;
    let leader_epoch = if v >= 3 { c.i32()? } else { -1 };
    let metadata = c.str()?;
    let commit_timestamp_ms = match v {
        0..=3 => c.i64()?,
        _ => return Err(FormatError::UnknownVersion { what: "offset value", version: v }),
    };
    Ok(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms })
}

pub fn decode_group_value(group: &str, b: &[u8]) -> Result<GroupSnapshot, FormatError> {
    let mut c = Cur { b, what: "group value" };
    let v = c.i16()?;
    if !(0..=3).contains(&v) {
        return Err(FormatError::UnknownVersion { what: "group value", version: v });
    }
    let protocol_type = c.str()?;
    let generation = c.i32()?;
    let protocol = c.nstr()?;
    let leader = c.nstr()?;
    let state_timestamp_ms = if v >= 2 { c.i64()? } else { -1 };
    let n = c.i32()?;
    if n < 0 {
        return Err(FormatError::Invalid("member count"));
    }
    let mut members = Vec::new();
    for _ in 0..n {
        // Each member takes at least 24 bytes: a count beyond that is a lie caught here rather
        // than by an allocation.
        if c.b.len() < 24 {
            return Err(FormatError::Truncated("group value members"));
        }
        let member_id = c.str()?;
        let instance_id = if v >= 3 { c.nstr()? } else { None };
        let client_id = c.str()?;
        let client_host = c.str()?;
        let rebalance_timeout_ms = if v >= 1 { c.i32()? } else { -1 };
        let session_timeout_ms = c.i32()?;
        let rebalance_timeout_ms =
            if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
        let subscription = c.bytes()?;
        let assignment = c.bytes()?;
        members.push(MemberSnapshot {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupSnapshot {
        group_id: group.to_string(),
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// What one offsets partition holds after replaying its log: per group, the last metadata and
/// the committed offsets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub groups: BTreeMap<String, LoadedGroup>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadedGroup {
    pub metadata: Option<GroupSnapshot>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Loaded {
    /// Applies one record (later records win, tombstones delete).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), FormatError> {
        match decode_key(key)? {
            Key::Offset { group, topic, partition } => {
                let g = self.groups.entry(group).or_default();
                match value {
                    Some(v) => {
                        g.offsets.insert((topic, partition), decode_offset_value(v)?);
                    }
                    None => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
            Key::Group { group } => match value {
                Some(v) => {
                    let snap = decode_group_value(&group, v)?;
                    self.groups.entry(group).or_default().metadata = Some(snap);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.metadata = None;
                    }
                }
            },
        }
        self.groups.retain(|_, g| g.metadata.is_some() || !g.offsets.is_empty());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hashcode_partitioning() {
        // Java: "".hashCode() = 0, "a" = 97, "group" = 98629247, "test-group" = 627841412, "polygenelubricants" = i32::MIN.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98629247 % 50);
        assert_eq!(partition_for("test-group", 50), 627841412 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }

    #[test]
    fn records_round_trip_and_tombstones() {
        let o = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp_ms: 7,
        };
        let snap = GroupSnapshot {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberSnapshot {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 1000,
                session_timeout_ms: 500,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let mut l = Loaded::default();
        l.apply(&offset_key("g", "t", 1), Some(&offset_value(&o))).unwrap();
        l.apply(&group_key("g"), Some(&group_value(&snap))).unwrap();
        assert_eq!(l.groups["g"].offsets[&("t".to_string(), 1)], o);
        assert_eq!(l.groups["g"].metadata.as_ref(), Some(&snap));
        l.apply(&offset_key("g", "t", 1), None).unwrap();
        l.apply(&group_key("g"), None).unwrap();
        assert!(l.groups.is_empty());
        // Lies and truncations are errors, never panics or huge allocations.
        let mut bad = BytesMut::new();
        bad.put_i16(3);
        put_str(&mut bad, "consumer");
        bad.put_i32(1);
        bad.put_i16(-1);
        bad.put_i16(-1);
        bad.put_i64(0);
        bad.put_i32(i32::MAX);
        assert!(decode_group_value("g", &bad).is_err());
        assert!(decode_key(&[0, 9]).is_err());
        let v = offset_value(&o);
        for cut in 0..v.len() {
            assert!(decode_offset_value(&v[..cut]).is_err());
        }
    }
}
