//! Produce: validate and append record batches as they came (offsets assigned in place),
//! idempotent-producer checks, acks 0/1/-1.
//!
//! On a single node `acks=-1` is satisfied by the leader's append (refused with NOT_ENOUGH_REPLICAS
//! when the partition's `min.insync.replicas` is above 1, as Kafka's one broker does). In combined mode it waits until
//! the high watermark passes the batch (every member of the ISR has it), up to the request's
//! `timeout_ms` (then REQUEST_TIMED_OUT); it is refused before the append with
//! NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`, and fails with
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below it while waiting. The batch stays
//! in the leader's log either way (Kafka's semantics: the producer retries; idempotence dedups).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::ApiKey;
use records::{BatchError, BatchHeader};
use tokio::sync::oneshot;

use crate::broker::{now_ms, Broker, Outcome};
use crate::log::{LogError, ParsedBatches, TopicPartition};
use crate::partition::PartitionData;
use crate::producer_state::Verdict;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};
use crate::topics::validate_topic_name;
use net_model::Work;

fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::RecordTooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        LogError::InvalidBatch { source: BatchError::TooLarge { .. }, .. } => {
            error_code::MESSAGE_TOO_LARGE
        }
        LogError::InvalidBatch { source: BatchError::UnsupportedMagic { .. }, .. } => {
            error_code::UNSUPPORTED_FOR_MESSAGE_FORMAT
        }
        LogError::InvalidBatch { source: BatchError::BadRecordCount { .. }, .. } => {
            error_code::INVALID_RECORD
        }
        LogError::KeylessRecord { .. } => error_code::INVALID_RECORD,
        LogError::InvalidRecords { .. } => error_code::CORRUPT_MESSAGE,
        LogError::InvalidBatch { .. } | LogError::EmptyAppend => error_code::CORRUPT_MESSAGE,
        LogError::Io(_) | LogError::Offline { .. } | LogError::Corrupt { .. } => {
            error_code::KAFKA_STORAGE_ERROR
        }
        LogError::NonContiguousAppend { .. } | LogError::OffsetOutOfRange { .. } => {
            error_code::UNKNOWN_SERVER_ERROR
        }
    }
}

/// The record set as a writable buffer (the log assigns offsets in place): the request's own
/// bytes when nothing else refers to them (the usual single-partition produce), else a copy.
fn writable(records: Bytes) -> BytesMut {
    records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

fn ack_error_code(e: cluster::isr::ProduceError) -> i16 {
    use cluster::isr::ProduceError as P;
    match e {
        P::NotEnoughReplicas => error_code::NOT_ENOUGH_REPLICAS,
        P::NotEnoughReplicasAfterAppend => error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        P::NotLeaderOrFollower => error_code::NOT_LEADER_OR_FOLLOWER,
        P::TooManyPendingAcks => error_code::REQUEST_TIMED_OUT,
    }
}

/// An `acks=all` produce waiting for the ISR: (topic index, partition index, completion).
type AckWait = (usize, usize, oneshot::Receiver<Result<(), cluster::isr::ProduceError>>);

struct PartResult {
    index: i32,
    error: i16,
    base_offset: i64,
    log_start_offset: i64,
    message: Option<String>,
}

impl PartResult {
    fn err(index: i32, error: i16, message: impl Into<String>) -> Self {
        Self { index, error, base_offset: -1, log_start_offset: -1, message: Some(message.into()) }
    }
}

impl Broker {
    pub(crate) async fn produce(&self, req: Request) -> Result<Outcome, RequestError> {
        let r: ProduceRequest = decode_body(&req)?;
        let (api_version, correlation_id) = (req.api_version, req.correlation_id);
        // The record sets are now the only references to the frame's bytes (see `writable`).
        drop(req);
        let acks = r.acks;
        let mut results: Vec<(String, Vec<PartResult>)> = Vec::new();
        // acks=all in combined mode: (topic index, partition index, completion) to wait for.
        let mut waits = Vec::new();
        let mut appended_any = false;
        for topic in r.topic_data {
            let name = topic.name.0.as_str().to_string();
            drop(topic.name);
            let ti = results.len();
            let out = self
                .produce_topic(&name, topic.partition_data, acks, ti, &mut waits, &mut appended_any)
                .await;
            results.push((name, out));
        }
        if appended_any {
            self.appended.notify_waiters();
        }
        if !waits.is_empty() {
            let timeout = std::time::Duration::from_millis(r.timeout_ms.clamp(0, 300_000) as u64);
            let deadline = tokio::time::Instant::now() + timeout;
            for (ti, pi, rx) in waits {
                let outcome = tokio::time::timeout(
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                    rx,
                )
                .await;
                let (topic, parts) = &mut results[ti];
                let part = &mut parts[pi];
                let failure = match outcome {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some((ack_error_code(e), e.to_string())),
                    Ok(Err(_)) => Some((
                        error_code::NOT_LEADER_OR_FOLLOWER,
                        "leadership ended while waiting for the ISR".to_string(),
                    )),
                    Err(_) => Some((
                        error_code::REQUEST_TIMED_OUT,
                        format!("the ISR did not acknowledge within {} ms", timeout.as_millis()),
                    )),
                };
                if let Some((code, msg)) = failure {
                    self.metrics.produce_failed(topic);
                    tracing::debug!(topic = %topic, partition = part.index, code, %msg, "acks=all produce failed after the append");
                    part.error = code;
                    part.message = Some(msg);
                    part.base_offset = -1;
                }
            }
            // The request's task parked until the ISR acknowledged: its thread is woken.
            self.spend(net_model::Work::Wakeup, 0).await;
        }
        if acks == 0 {
            // Kafka closes the connection when an acks=0 produce fails: the producer's only
            // signal to refresh metadata and stop sending into the void.
            if let Some((t, p)) = results
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t, p)))
                .find(|(_, p)| p.error != error_code::NONE)
            {
                return Ok(Outcome::Close(format!(
                    "acks=0 produce to {t}-{} failed with error {}",
                    p.index, p.error
                )));
            }
            return Ok(Outcome::NoResponse);
        }
        let mut resp = ProduceResponse::default();
        for (name, parts) in results {
            let mut t = TopicProduceResponse::default();
            t.name = kafka_protocol::messages::TopicName(super::sb(&name));
            for p in parts {
                let mut pr = PartitionProduceResponse::default();
                pr.index = p.index;
                pr.error_code = p.error;
                pr.base_offset = p.base_offset;
                pr.log_append_time_ms = -1;
                pr.log_start_offset = p.log_start_offset;
                if p.error != error_code::NONE {
                    pr.error_message = p.message.as_deref().map(super::sb);
                }
                t.partition_responses.push(pr);
            }
            resp.responses.push(t);
        }
        let frame = protocol::encode_response(ApiKey::Produce, api_version, correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "Produce", version: api_version, why })?;
        Ok(Outcome::frame(frame))
    }

    /// One topic of a produce: topic-level checks (acks, name, existence or auto-creation under
    /// the registry lock), then each partition under its own lock. `ti`: the topic's index in
    /// the response, for `acks=all` waits.
    async fn produce_topic(
        &self,
        name: &str,
        parts: Vec<PartitionProduceData>,
        acks: i16,
        ti: usize,
        waits: &mut Vec<AckWait>,
        appended_any: &mut bool,
    ) -> Vec<PartResult> {
        let fail_all = |code: i16, msg: String| -> Vec<PartResult> {
            parts.iter().map(|p| PartResult::err(p.index, code, msg.clone())).collect()
        };
        if !(acks == 0 || acks == 1 || acks == -1) {
            return fail_all(error_code::INVALID_REQUIRED_ACKS, format!("acks={acks}"));
        }
        if let Err(why) = validate_topic_name(name) {
            return fail_all(error_code::INVALID_TOPIC_EXCEPTION, why);
        }
        if name == crate::group::OFFSETS_TOPIC {
            // Only the group coordinator writes the offsets topic (Kafka: internal topic).
            return fail_all(
                error_code::INVALID_TOPIC_EXCEPTION,
                "cannot append to internal topic __consumer_offsets".into(),
            );
        }
        let known = self.registry.lock().await.topics.get(name).map(|m| m.partitions);
        let partitions = {
            match known {
                Some(n) => n,
                // Combined mode: topics come from the controller (Metadata creates them).
                None if self.config.auto_create_topics && self.controller_link().is_none() => {
                    let n = self.config.num_partitions;
                    match self.ensure_topic(name, n, Default::default()).await {
                        Ok(m) => m.partitions,
                        Err((code, msg)) => return fail_all(code, msg),
                    }
                }
                None => {
                    return fail_all(
                        error_code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic {name}"),
                    )
                }
            }
        };
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            if p.index < 0 || p.index >= partitions {
                out.push(PartResult::err(
                    p.index,
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    "no such partition",
                ));
                continue;
            }
            let tp = TopicPartition::new(name, p.index);
            let (res, counted) =
                self.produce_partition(&tp, p.records, acks, (ti, out.len()), waits).await;
            if !counted {
                out.push(res);
                continue;
            }
            if res.error == error_code::NONE {
                *appended_any = true;
            } else {
                self.metrics.produce_failed(name);
                tracing::debug!(partition = %tp, error = res.error, msg = ?res.message, "produce refused");
            }
            out.push(res);
        }
        out
    }

    /// One partition of a produce, under the partition's data lock (so its role is stable from
    /// the leadership check to the `acks=all` registration). The flag says whether the result
    /// counts as an append attempt (metrics, waking fetches) or is a refusal before it.
    async fn produce_partition(
        &self,
        tp: &TopicPartition,
        records: Option<Bytes>,
        acks: i16,
        at: (usize, usize),
        waits: &mut Vec<AckWait>,
    ) -> (PartResult, bool) {
        let index = tp.partition;
        let combined = self.controller_link().is_some();
        let part = self.partition(tp);
        let mut data = match &part {
            Some(part) => part.data().await,
            None => None,
        };
        let refused = |code: i16, msg: &str| (PartResult::err(index, code, msg), false);
        if let Some(code) = self.not_leader_error_tp(tp) {
            return refused(code, "this broker is not the partition's leader");
        }
        let Some(records) = records else {
            return refused(error_code::CORRUPT_MESSAGE, "null record set");
        };
        if combined && acks == -1 {
            if let Err(e) = self.replicas.check_produce(tp) {
                return (PartResult::err(index, ack_error_code(e), e.to_string()), true);
            }
        }
        let Some(d) = data.as_deref_mut() else {
            return (
                PartResult::err(index, error_code::UNKNOWN_TOPIC_OR_PARTITION, "no log"),
                true,
            );
        };
        // One node: its ISR is itself, so acks=all below `min.insync.replicas` > 1 is refused
        // before the append, as Kafka's `Partition.appendRecordsToLeader` does on one broker.
        let min_insync = d.log.config().min_insync_replicas;
        if !combined && acks == -1 && min_insync > 1 {
            let why = format!(
                "the ISR (this node alone) is smaller than min.insync.replicas {min_insync}"
            );
            return (PartResult::err(index, error_code::NOT_ENOUGH_REPLICAS, why), true);
        }
        let (res, last_offset) = self.append_partition(d, tp, records).await;
        if res.error == error_code::NONE && combined {
            let leo = d.log.log_end_offset();
            self.replicas.on_leader_append(tp, leo);
            if acks == -1 {
                match self.replicas.await_ack(tp, last_offset.min(leo - 1)) {
                    Ok(rx) => waits.push((at.0, at.1, rx)),
                    Err(e) => return refused(ack_error_code(e), &e.to_string()),
                }
            }
        }
        (res, true)
    }

    /// The CPU of a produce's validation: per record, and decompressing what came compressed.
    async fn charge_validation(&self, work: ValidationWork) {
        self.spend(Work::Records, work.records).await;
        for (codec, bytes, records) in work.decompressed {
            self.spend(Work::Decompress(codec), bytes).await;
            self.spend(Work::DecompressRecords(codec), records).await;
        }
    }

    /// Appends one partition's records; returns the result and the last offset appended (-1 when
    /// nothing was, e.g. a duplicate).
    async fn append_partition(
        &self,
        data: &mut PartitionData,
        tp: &TopicPartition,
        records: Bytes,
    ) -> (PartResult, i64) {
        let index = tp.partition;
        // Headers parsed once (cheap, bounded): for the producer-sequence check here, then handed
        // to the log, which validates each batch fully without parsing them again.
        let parsed = ParsedBatches::parse(&records);
        let work = match validate_records(&records, &parsed, data.log.config()) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(partition = %tp, error = %e, "produce refused by record validation");
                return (PartResult::err(index, e.kafka_code(), e.to_string()), -1);
            }
        };
        self.charge_validation(work).await;
        // `compression.type` other than `producer`: batches in another codec are recompressed.
        let codec = data.log.config().compression_type;
        let (records, parsed) = match crate::log::recompress::to_topic_codec(&records, codec) {
            Ok(None) => (records, parsed),
            Ok(Some(rewritten)) => {
                let rewritten = Bytes::from(rewritten);
                let parsed = ParsedBatches::parse(&rewritten);
                (rewritten, parsed)
            }
            Err(why) => {
                tracing::debug!(partition = %tp, %why, "produce refused: cannot recompress");
                return (PartResult::err(index, error_code::CORRUPT_MESSAGE, why), -1);
            }
        };
        let headers: Vec<BatchHeader> = parsed.headers().copied().collect();
        // The museum switch `loglab.unsafe.producer.dedup.disable`: no sequence checks (before
        // KIP-98), so a retried batch is appended again.
        let verdict = if self.config.safeguards.producer_dedup_disabled {
            Verdict::Append
        } else {
            data.producers.check(tp, &headers)
        };
        match verdict {
            Verdict::Append => {}
            Verdict::Duplicate { base_offset } => {
                let lso = data.log.log_start_offset();
                // A retried duplicate: acknowledged when the original batch is (its last offset).
                let last = headers
                    .last()
                    .map_or(base_offset, |h| base_offset + i64::from(h.last_offset_delta));
                return (
                    PartResult {
                        index,
                        error: error_code::NONE,
                        base_offset,
                        log_start_offset: lso,
                        message: None,
                    },
                    last,
                );
            }
            Verdict::Reject(code) => {
                if let Some(h) = headers.first() {
                    tracing::debug!(partition = %tp, code, state = %data.producers.describe(tp, h), "producer sequence check failed");
                }
                return (PartResult::err(index, code, "producer sequence check failed"), -1);
            }
        }
        // Combined mode: batches carry the controller's leader epoch (what followers will truncate
        // by, KIP-101); a single node leads at epoch 0.
        let leader_epoch = self.leader_epoch_tp(tp);
        let log = &mut data.log;
        let len = records.len() as u64;
        let mut buf = writable(records);
        match log.append_parsed_as_leader(&mut buf, parsed, leader_epoch, now_ms()).await {
            Ok((info, assigned)) => {
                self.metrics.produced(&tp.topic, len, info.record_count.max(0) as u64);
                data.producers.record(tp, &assigned);
                (
                    PartResult {
                        index,
                        error: error_code::NONE,
                        base_offset: info.base_offset,
                        log_start_offset: info.log_start_offset,
                        message: None,
                    },
                    info.last_offset,
                )
            }
            Err(e) => (PartResult::err(index, log_error_code(&e), e.to_string()), -1),
        }
    }

    /// Produce v0-2 (pre-v2 message sets, not stored): advertised for librdkafka's sake, answered
    /// with UNSUPPORTED_VERSION per partition, hand-encoded since kafka-protocol starts at v3.
    pub(crate) fn produce_legacy(&self, req: &Request) -> Outcome {
        // v0-2 requests are v3 without the transactional id: prepend a null one and decode as v3.
        let mut body = BytesMut::with_capacity(req.body.len() + 2);
        body.put_i16(-1);
        body.put_slice(&req.body);
        let fake = Request {
            api_key: req.api_key,
            api_version: 3,
            correlation_id: req.correlation_id,
            header: None,
            body: body.freeze(),
        };
        let r: ProduceRequest = match decode_body(&fake) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Close(format!("malformed Produce v{}: {e}", req.api_version))
            }
        };
        if r.acks == 0 {
            return Outcome::NoResponse;
        }
        let mut buf = protocol::response_header(ApiKey::Produce, 0, req.correlation_id);
        let mut w = protocol::Wire { buf: &mut buf, flexible: false };
        w.array_len(r.topic_data.len());
        for t in &r.topic_data {
            w.string(t.name.0.as_str());
            w.array_len(t.partition_data.len());
            for p in &t.partition_data {
                w.i32(p.index);
                w.i16(error_code::UNSUPPORTED_VERSION);
                w.i64(-1);
                if req.api_version >= 2 {
                    w.i64(-1);
                }
            }
        }
        if req.api_version >= 1 {
            w.i32(0);
        }
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Outcome::frame(buf.freeze())
    }
}

/// Decompressed records of one batch, at most, as a multiple of the topic's `max.message.bytes`
/// (a producer's batch is bounded by `batch.size` before compression, well under this for any
/// real codec ratio; a decompression bomb is not).
const UNCOMPRESSED_PER_MESSAGE_BYTES: usize = 32;
/// And never more than this, whatever `max.message.bytes` says.
const UNCOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// Kafka's LogValidator on every whole batch before the append (`records::validate`): records
/// decoded within a bound, counts, offsets, lengths, keys on compacted topics. Batches larger
/// than `max.message.bytes` and torn ones are left to the log, which answers them as before.
fn validate_records(
    records: &Bytes,
    parsed: &ParsedBatches,
    config: &crate::log::LogConfig,
) -> Result<ValidationWork, records::ValidateError> {
    let max = config.max_message_bytes as usize;
    let limits = records::ValidateLimits {
        max_uncompressed_bytes: max
            .saturating_mul(UNCOMPRESSED_PER_MESSAGE_BYTES)
            .min(UNCOMPRESSED_BYTES_MAX),
        require_keys: config.cleanup_policy.compact(),
    };
    let mut work = ValidationWork::default();
    for (pos, h) in parsed.batches() {
        let end = pos + h.size();
        if h.size() > max || end > records.len() {
            continue;
        }
        // The log checks every batch's CRC before the append; not computed twice.
        let batch = records.slice(pos..end);
        let v = records::validate_produced_records(&batch, limits)?;
        work.records += u64::from(v.records);
        let codec = match h.compression() {
            Ok(records::Compression::Gzip) => Some(net_model::Codec::Gzip),
            Ok(records::Compression::Snappy) => Some(net_model::Codec::Snappy),
            Ok(records::Compression::Lz4) => Some(net_model::Codec::Lz4),
            Ok(records::Compression::Zstd) => Some(net_model::Codec::Zstd),
            Ok(records::Compression::None) | Err(_) => None,
        };
        if let Some(codec) = codec {
            work.decompressed.push((codec, v.uncompressed_bytes as u64, u64::from(v.records)));
        }
    }
    Ok(work)
}

/// What [`validate_records`] did, for the CPU model: records checked, and the bytes and records
/// each compressed batch decompressed into.
#[derive(Debug, Default)]
struct ValidationWork {
    records: u64,
    decompressed: Vec<(net_model::Codec, u64, u64)>,
}
