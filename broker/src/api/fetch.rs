//! Fetch v4-16 with long poll. The record data of each partition is a `FileRegion` straight from
//! the log, so the response is encoded by hand as chunks: bytes for the framing, file regions for
//! the records (sent with `sendfile(2)` by the real transport — never copied through user space).
//!
//! Three kinds of reader, by `replica_id` (in the body before v15, in `replica_state` from v15):
//! - a **consumer** (-1) reads from the leader up to the high watermark;
//! - a **follower** (its broker id) reads from the leader up to the log end; its fetch offset is
//!   its log end, which the leader records once per request (ISR and HW, `cluster::isr`);
//! - a **debugging reader** (-2, Kafka's historic `DebuggingConsumerId`) reads ANY replica, leader
//!   or follower, up to that replica's log end: the simulator's `replicas-agree` checker compares
//!   replicas this way. Its answer's `high_watermark` is that replica's HW, `last_stable_offset`
//!   that replica's log end, and (v12+) the `current_leader` tag the leader and epoch the replica
//!   knows.
//!
//! `current_leader_epoch` (v9+) is checked against the leader's epoch: older gets
//! FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (KIP-320).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use disk_model::FileRegion;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::ApiKey;
use net_model::Chunk;

use crate::broker::{Broker, Outcome};
use crate::log::{LogError, TopicPartition};
use crate::protocol::{self, decode_body, error_code, Request, RequestError, Wire};
use crate::topics::TopicMeta;
use kafka_types::Topic;

/// Longest long poll we honour (a client asking for more gets this).
const MAX_WAIT_CAP_MS: i32 = 30_000;

struct PartOut {
    index: i32,
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// (leader id, leader epoch), sent as the v12+ `current_leader` tag (debugging reads).
    current_leader: Option<(i32, i32)>,
    region: Option<FileRegion>,
}

/// Who is fetching (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Consumer,
    Follower(i32),
    Debug,
}

/// Kafka's `DebuggingConsumerId`.
pub const DEBUG_REPLICA_ID: i32 = -2;

struct TopicOut {
    name: String,
    id: [u8; 16],
    parts: Vec<PartOut>,
}

/// The error found for a partition before the fetch (none is the common case: no key is built).
fn pre_error(pre_errors: &BTreeMap<(String, i32), i16>, name: &str, partition: i32) -> Option<i16> {
    if pre_errors.is_empty() {
        return None;
    }
    pre_errors.get(&(name.to_string(), partition)).copied()
}

impl Broker {
    /// The requested topics' names and registry entries (by id from v13), in request order.
    async fn fetch_topics(
        &self,
        r: &FetchRequest,
        version: i16,
    ) -> Vec<(String, Option<TopicMeta>)> {
        let registry = self.registry.lock().await;
        r.topics
            .iter()
            .map(|t| {
                if version >= 13 {
                    let id = t.topic_id.into_bytes();
                    match registry.topics.iter().find(|(_, m)| m.uuid() == id) {
                        Some((n, m)) => (n.clone(), Some(m.clone())),
                        None => (String::new(), None),
                    }
                } else {
                    let n = t.topic.0.as_str().to_string();
                    let m = registry.topics.get(&n).cloned();
                    (n, m)
                }
            })
            .collect()
    }

    /// KIP-320's fencing of a fetch by `current_leader_epoch` (see the module docs). Under the
    /// museum switch `loglab.unsafe.zombie.fencing.disable` a follower's fetch is not fenced: a
    /// zombie leader acts on the fetches of a newer leadership's followers, a leader on those of
    /// a follower still on an older one.
    fn fetch_epoch_error(&self, reader: Reader, tp: &TopicPartition, epoch: i32) -> Option<i16> {
        if !self.fences_fetch(reader) {
            return None;
        }
        self.check_leader_epoch(tp, epoch)
    }

    /// Whether `reader`'s fetch is checked by `current_leader_epoch` (see
    /// [`Self::fetch_epoch_error`]).
    fn fences_fetch(&self, reader: Reader) -> bool {
        !(matches!(reader, Reader::Follower(_))
            && self.config.replication.unsafe_zombie_fencing_disabled)
    }

    /// One pass over the requested partitions, each read under its own partition's lock.
    async fn fetch_once(
        &self,
        r: &FetchRequest,
        version: i16,
        reader: Reader,
        pre_errors: &BTreeMap<(String, i32), i16>,
    ) -> (Vec<TopicOut>, u64, bool) {
        let topics = self.fetch_topics(r, version).await;
        let mut out = Vec::with_capacity(r.topics.len());
        let mut total: u64 = 0;
        let mut any_error = false;
        let max_bytes = if r.max_bytes <= 0 { i32::MAX as u64 } else { r.max_bytes as u64 };
        for (t, (name, meta)) in r.topics.iter().zip(topics) {
            let unknown = if version >= 13 {
                error_code::UNKNOWN_TOPIC_ID
            } else {
                error_code::UNKNOWN_TOPIC_OR_PARTITION
            };
            let mut parts = Vec::with_capacity(t.partitions.len());
            // The topic's id in the metadata image, kept while the image stays the same.
            let mut image_ids = None;
            // One shared name per topic, the partition map's own: each partition's key clones it
            // without copying and compares with the map's keys by pointer.
            let topic = self.partitions.topic_key(&name).unwrap_or_else(|| Topic::from(&name));
            for p in &t.partitions {
                let mut po = PartOut {
                    index: p.partition,
                    error: error_code::NONE,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    current_leader: None,
                    region: None,
                };
                let tp = TopicPartition::new(topic.clone(), p.partition);
                // One lookup of the partition's handle: the checks and the read below use it.
                let handle = self.partition(&tp);
                let refused = if meta.is_none() || reader == Reader::Debug {
                    None
                } else {
                    let epoch = (version >= 9 && self.fences_fetch(reader))
                        .then_some(p.current_leader_epoch);
                    self.fetch_refusal(&tp, handle.as_deref(), epoch, &mut image_ids)
                        .or_else(|| pre_error(pre_errors, &name, p.partition))
                };
                if let Some(code) = refused {
                    po.error = code;
                    any_error = true;
                    parts.push(po);
                    continue;
                }
                let part = meta
                    .as_ref()
                    .filter(|m| p.partition >= 0 && p.partition < m.partitions)
                    .and(handle);
                let data = match &part {
                    Some(part) => part.data().await,
                    None => None,
                };
                let Some(log) = data.as_ref().map(|d| &d.log) else {
                    po.error =
                        if self.is_shut_down() { error_code::KAFKA_STORAGE_ERROR } else { unknown };
                    any_error = true;
                    parts.push(po);
                    continue;
                };
                let leo = log.log_end_offset();
                let hw = self.readable_end(&tp, leo);
                po.high_watermark = hw;
                po.last_stable_offset = hw;
                po.log_start_offset = log.log_start_offset();
                let upper = match reader {
                    Reader::Consumer => hw,
                    Reader::Follower(_) => leo,
                    Reader::Debug => {
                        po.last_stable_offset = leo;
                        po.current_leader = self.replicas.current_leader(&tp);
                        leo
                    }
                };
                let remaining = max_bytes.saturating_sub(total);
                let part_max = (p.partition_max_bytes.max(0) as u64).min(remaining) as usize;
                // KIP-74: the first partition with data returns at least one whole batch.
                let min_one = total == 0;
                if part_max == 0 && !min_one {
                    parts.push(po);
                    continue;
                }
                match log.read(p.fetch_offset, upper, part_max, min_one).await {
                    Ok(info) => {
                        if let Some(region) = info.region {
                            total += region.len;
                            po.region = Some(region);
                        }
                    }
                    Err(LogError::OffsetOutOfRange { .. }) => {
                        po.error = error_code::OFFSET_OUT_OF_RANGE;
                        any_error = true;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = p.partition, error = %e, "fetch read failed");
                        po.error = error_code::KAFKA_STORAGE_ERROR;
                        any_error = true;
                    }
                }
                parts.push(po);
            }
            out.push(TopicOut {
                name,
                id: meta.as_ref().map(|m| m.uuid()).unwrap_or_else(|| t.topic_id.into_bytes()),
                parts,
            });
        }
        (out, total, any_error)
    }

    pub(crate) async fn fetch(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: FetchRequest = decode_body(req)?;
        let v = req.api_version;
        let replica_id = if v >= 15 { r.replica_state.replica_id.0 } else { r.replica_id.0 };
        let reader = match replica_id {
            id if id >= 0 => Reader::Follower(id),
            DEBUG_REPLICA_ID => Reader::Debug,
            _ => Reader::Consumer,
        };
        // A follower's fetch offsets are its log ends: the leader records them once per request
        // (repeating them at every pass of the long poll would reset its lag clock).
        let mut pre_errors = BTreeMap::new();
        if let Reader::Follower(id) = reader {
            let now = crate::broker::now_ms().max(0) as u64;
            let mut advanced = false;
            for t in &r.topics {
                let name = if v >= 13 {
                    let id = t.topic_id.into_bytes();
                    let registry = self.registry.lock().await;
                    registry
                        .topics
                        .iter()
                        .find(|(_, m)| m.uuid() == id)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default()
                } else {
                    t.topic.0.as_str().to_string()
                };
                let topic =
                    self.partitions.topic_key(&name).unwrap_or_else(|| Topic::from(name.as_str()));
                for p in &t.partitions {
                    let tp = TopicPartition::new(topic.clone(), p.partition);
                    if self.fetch_epoch_error(reader, &tp, p.current_leader_epoch).is_some() {
                        continue; // answered with the epoch error below
                    }
                    match self.replicas.on_follower_fetch(
                        &tp,
                        id,
                        p.fetch_offset,
                        p.log_start_offset,
                        now,
                    ) {
                        Ok((_, a)) => advanced |= a,
                        Err(cluster::isr::FetchError::OffsetOutOfRange { .. }) => {
                            pre_errors.insert(
                                (name.clone(), p.partition),
                                error_code::OFFSET_OUT_OF_RANGE,
                            );
                        }
                        Err(cluster::isr::FetchError::UnknownReplica(_)) => {
                            pre_errors.insert(
                                (name.clone(), p.partition),
                                error_code::NOT_LEADER_OR_FOLLOWER,
                            );
                        }
                    }
                }
            }
            if advanced {
                // The HW moved: consumers waiting for data may now read it.
                self.appended.notify_waiters();
            }
        }
        let wait = Duration::from_millis(r.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = r.min_bytes.max(0) as u64;
        let topics = loop {
            let notified = self.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (topics, total, any_error) = self.fetch_once(&r, v, reader, &pre_errors).await;
            // Each pass (the partition walk, the log's index lookup, the wake-up before it)
            // costs CPU of its own, on top of the request's fixed cost.
            self.spend(net_model::Work::FetchPass, 0).await;
            let shut_down = self.is_shut_down();
            if total >= min_bytes.max(1)
                || any_error
                || shut_down
                || tokio::time::Instant::now() >= deadline
            {
                break topics;
            }
            tokio::select! {
                biased;
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            // The parked poll's thread is woken (by an append or its deadline).
            self.spend(net_model::Work::Wakeup, 0).await;
        };
        let chunks = encode_fetch_response(v, req.correlation_id, &topics);
        let mut record_bytes = 0;
        for t in &topics {
            let bytes: u64 = t.parts.iter().filter_map(|p| p.region.as_ref()).map(|r| r.len).sum();
            let failed = t.parts.iter().filter(|p| p.error != error_code::NONE).count();
            if bytes > 0 {
                self.metrics.fetched(&t.name, bytes);
            }
            for _ in 0..failed {
                self.metrics.fetch_failed(&t.name);
            }
            record_bytes += bytes;
        }
        if !self.config.fetch_zero_copy {
            // The copy path reads record data into user space and writes it to the socket: two
            // copies per byte that sendfile(2) does not make.
            self.spend(net_model::Work::Memcpy, 2 * record_bytes).await;
        }
        Ok(Outcome::Respond(chunks))
    }
}

/// Encodes a Fetch response frame: byte chunks around the file regions; the length prefix counts
/// the regions' lengths.
fn encode_fetch_response(v: i16, correlation_id: i32, topics: &[TopicOut]) -> Vec<Chunk> {
    let flexible = v >= 12;
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut buf = protocol::response_header(ApiKey::Fetch, v, correlation_id);
    let mut total_len: u64 = 0;
    {
        let mut w = Wire { buf: &mut buf, flexible };
        w.i32(0); // throttle_time_ms
        if v >= 7 {
            w.i16(error_code::NONE);
            w.i32(0); // session_id: no fetch session (clients then keep sending full fetches)
        }
        w.array_len(topics.len());
    }
    for t in topics {
        {
            let mut w = Wire { buf: &mut buf, flexible };
            if v >= 13 {
                w.buf.extend_from_slice(&t.id);
            } else {
                w.string(&t.name);
            }
            w.array_len(t.parts.len());
        }
        for p in &t.parts {
            let mut w = Wire { buf: &mut buf, flexible };
            w.i32(p.index);
            w.i16(p.error);
            w.i64(p.high_watermark);
            w.i64(p.last_stable_offset); // no transactions: the HW (a debugging read: the log end)
            if v >= 5 {
                w.i64(p.log_start_offset);
            }
            w.array_len(0); // aborted_transactions
            if v >= 11 {
                w.i32(-1); // preferred_read_replica
            }
            match &p.region {
                Some(region) => {
                    w.bytes_len(Some(region.len));
                    let head = std::mem::replace(&mut buf, BytesMut::new());
                    total_len += head.len() as u64 + region.len;
                    chunks.push(Chunk::Bytes(head.freeze()));
                    chunks.push(Chunk::File(region.clone()));
                }
                None => w.bytes_len(Some(0)),
            }
            let mut w = Wire { buf: &mut buf, flexible };
            match p.current_leader {
                Some((leader_id, leader_epoch)) if flexible => {
                    // One tagged field: tag 1 = CurrentLeader {LeaderId, LeaderEpoch, no tags}.
                    w.uvarint(1);
                    w.uvarint(1);
                    w.uvarint(9);
                    w.i32(leader_id);
                    w.i32(leader_epoch);
                    w.uvarint(0);
                }
                _ => w.no_tags(), // partition
            }
        }
        Wire { buf: &mut buf, flexible }.no_tags(); // topic
    }
    Wire { buf: &mut buf, flexible }.no_tags(); // response
    total_len += buf.len() as u64;
    chunks.push(Chunk::Bytes(buf.freeze()));
    // Patch the frame length (first 4 bytes of the first chunk) now that every region is counted.
    let frame_len = (total_len - 4) as i32;
    if let Some(Chunk::Bytes(first)) = chunks.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[0..4].copy_from_slice(&frame_len.to_be_bytes());
        *first = Bytes::from(b);
    }
    chunks
}
