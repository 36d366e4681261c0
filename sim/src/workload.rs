//! Workloads: producers and consumers as tasks on a client node, talking to the broker through
//! [`BrokerApi`]. They record facts (every send and its outcome, every poll, every reset) into
//! the shared [`History`] and one trace line per request outcome.
//!
//! Producer model (the shape of Kafka's accumulator): records arrive at `rate` with seeded
//! jitter (gaps uniform in [mean/2, 3·mean/2], integer arithmetic so the stream is portable);
//! a batch opens at its first record and closes when the next record would not fit in
//! `batch.size` or `linger.ms` after it opened; the sticky partitioner moves to the next
//! partition when a batch closes; at most `max.in.flight.requests.per.connection` batches are in
//! flight — beyond that the producer blocks (as `send()` does once `buffer.memory` is full) and
//! the backlog fills the next batches. A failed request is retried after `retry.backoff.ms`
//! while `retries` and `delivery.timeout.ms` allow. acks=0 counts as sent once handed over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::log::TopicPartition;
use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use records::BatchBuilder;
use tokio::sync::Semaphore;

use crate::api::{ApiError, BrokerApi};
use crate::history::{History, Poll, PollKind, Send, SendOutcome};
use crate::scenario::{Acks, ConsumerSpec, OffsetReset, ProducerSpec};
use crate::trace::Tracer;

pub const PRODUCER_RNG_SALT: u64 = 0x7072_6f64_7563_6572; // "producer"

/// Decompression bound for consumers (well above any batch a scenario can make).
const DECODE_LIMIT: usize = 256 << 20;

pub type SharedHistory = Arc<Mutex<History>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record's value: its unique id (8 bytes, big-endian) then filler up to `record.bytes`.
pub fn encode_value(id: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(8));
    v.extend_from_slice(&id.to_be_bytes());
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x & 0x3f) as u8 + b'0');
    }
    v
}

pub fn decode_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// Run-wide control shared by the supervisor and the workload tasks.
#[derive(Debug, Default)]
pub struct Control {
    pub stop_consumers: AtomicBool,
    pub producers_running: AtomicU32,
    /// Consumer positions, (consumer, tp) → next offset.
    pub positions: Mutex<BTreeMap<(u32, TopicPartition), i64>>,
    /// Consumer groups: (group, tp) → the furthest committed offset of any member.
    pub group_positions: Mutex<BTreeMap<(String, TopicPartition), i64>>,
}

pub struct Producer {
    pub index: u32,
    pub spec: ProducerSpec,
    pub partitions: Vec<TopicPartition>,
    pub api: Arc<dyn BrokerApi>,
    pub history: SharedHistory,
    pub tracer: Tracer,
    pub control: Arc<Control>,
    pub stop_at_ns: u64,
    pub seed: u64,
}

impl Producer {
    pub async fn run(self) {
        let me = Arc::new(self);
        let mut rng = ChaCha8Rng::seed_from_u64(
            me.seed ^ PRODUCER_RNG_SALT ^ u64::from(me.index).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mean = (1_000_000_000 / me.spec.rate_per_s).max(2);
        let mut gap = move || rng.gen_range(mean / 2..=mean + mean / 2);
        let linger = me.spec.linger_ms * 1_000_000;
        let max_in_flight = me.spec.max_in_flight;
        let sem = Arc::new(Semaphore::new(max_in_flight as usize));
        let mut part =
            (me.seed.wrapping_add(u64::from(me.index)) % me.partitions.len() as u64) as usize;
        let mut seq: u64 = 0;
        let mut next = gap();
        while next < me.stop_at_ns {
            let now = me.tracer.now_ns();
            if next > now {
                me.tracer.sleep_until_ns(next).await;
            }
            let now = me.tracer.now_ns();
            let deadline = (next + linger).max(now);
            let mut builder =
                BatchBuilder::new(BytesMut::new(), me.spec.compression, me.spec.batch_size);
            let mut recs: Vec<(u64, u64)> = Vec::new();
            let mut close_at = deadline;
            loop {
                let a = next;
                if a >= me.stop_at_ns || (a > deadline && !recs.is_empty()) {
                    break;
                }
                let id = (u64::from(me.index) << 40) | seq;
                let value = encode_value(id, me.spec.record_bytes);
                if !builder.has_room_for(None, Some(&value), &[]) {
                    close_at = a.max(now);
                    break;
                }
                let ts = 1_700_000_000_000 + (a / 1_000_000) as i64;
                if builder.append(ts, None, Some(&value), &[]).is_err() {
                    break;
                }
                recs.push((id, a));
                seq += 1;
                next = a + gap();
                if builder.is_full() {
                    close_at = a.max(now);
                    break;
                }
            }
            if recs.is_empty() {
                break;
            }
            let close_at = close_at.max(recs.last().map(|r| r.1).unwrap_or(0));
            me.tracer.sleep_until_ns(close_at).await;
            let batch = match builder.finish() {
                Ok(b) => b.freeze(),
                Err(e) => {
                    me.tracer.event("batch-build-failed", &format!("p{} {e}", me.index));
                    break;
                }
            };
            let Ok(permit) = sem.clone().acquire_owned().await else { break };
            let tp = me.partitions[part].clone();
            part = (part + 1) % me.partitions.len();
            let first = {
                let mut h = lock(&me.history);
                let first = h.sends.len();
                for &(value, created_ns) in &recs {
                    h.sends.push(Send {
                        producer: me.index,
                        tp: tp.to_string(),
                        value,
                        created_ns,
                        outcome: SendOutcome::Pending,
                    });
                }
                first
            };
            let me2 = me.clone();
            tokio::spawn(async move {
                me2.send(tp, batch, first, &recs).await;
                drop(permit);
            });
        }
        let _ = sem.acquire_many(max_in_flight).await;
        me.control.producers_running.fetch_sub(1, Ordering::SeqCst);
        me.tracer.event("producer-done", &format!("p{} sent={seq}", me.index));
    }

    async fn send(
        &self,
        tp: TopicPartition,
        batch: bytes::Bytes,
        first: usize,
        recs: &[(u64, u64)],
    ) {
        let wait = self.spec.acks != Acks::Zero;
        let timeout = Duration::from_millis(self.spec.request_timeout_ms);
        let give_up_at =
            recs.first().map(|r| r.1).unwrap_or(0) + self.spec.delivery_timeout_ms * 1_000_000;
        let mut attempt = 0u32;
        let n = recs.len();
        let outcome = loop {
            match self.api.produce(&tp, batch.clone(), wait, timeout).await {
                Ok(Some(resp)) => {
                    let at_ns = self.tracer.now_ns();
                    self.tracer.event(
                        "ack",
                        &format!(
                            "p{} {tp} base={} n={n} attempt={attempt}",
                            self.index, resp.base_offset
                        ),
                    );
                    break Ok((Some(resp.base_offset), at_ns));
                }
                Ok(None) => {
                    let at_ns = self.tracer.now_ns();
                    self.tracer.event("sent-acks0", &format!("p{} {tp} n={n}", self.index));
                    break Ok((None, at_ns));
                }
                Err(e) => {
                    let now = self.tracer.now_ns();
                    let backoff = self.spec.retry_backoff_ms * 1_000_000;
                    if attempt < self.spec.retries
                        && now + backoff < give_up_at
                        && e != ApiError::UnknownTopicOrPartition
                    {
                        attempt += 1;
                        self.tracer.event(
                            "retry",
                            &format!(
                                "p{} {tp} n={n} attempt={attempt} error={}",
                                self.index,
                                e.code()
                            ),
                        );
                        self.tracer.sleep_until_ns(now + backoff).await;
                        continue;
                    }
                    self.tracer.event(
                        "send-failed",
                        &format!(
                            "p{} {tp} n={n} attempts={} error={}",
                            self.index,
                            attempt + 1,
                            e.code()
                        ),
                    );
                    break Err((now, e));
                }
            }
        };
        let mut h = lock(&self.history);
        for i in 0..n {
            h.sends[first + i].outcome = match &outcome {
                Ok((Some(base), at_ns)) => {
                    SendOutcome::Acked { offset: base + i as i64, at_ns: *at_ns }
                }
                Ok((None, at_ns)) => SendOutcome::Unconfirmed { at_ns: *at_ns },
                Err((at_ns, e)) => SendOutcome::Failed { at_ns: *at_ns, error: e.to_string() },
            };
        }
    }
}

pub struct Consumer {
    pub index: u32,
    pub spec: ConsumerSpec,
    pub partitions: Vec<TopicPartition>,
    pub api: Arc<dyn BrokerApi>,
    pub history: SharedHistory,
    pub tracer: Tracer,
    pub control: Arc<Control>,
}

impl Consumer {
    fn set_position(&self, tp: &TopicPartition, pos: i64) {
        lock(&self.control.positions).insert((self.index, tp.clone()), pos);
        lock(&self.history).final_positions.insert((self.index, tp.to_string()), pos);
    }

    pub async fn run(self) {
        let timeout = Duration::from_millis(self.spec.request_timeout_ms);
        let backoff = Duration::from_millis(self.spec.retry_backoff_ms.max(1));
        let stopped = || self.control.stop_consumers.load(Ordering::SeqCst);
        // No committed offsets (no group protocol yet): start per auto.offset.reset.
        let mut pos: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for tp in &self.partitions {
            loop {
                if stopped() {
                    return;
                }
                match self.api.list_offsets(tp, timeout).await {
                    Ok((start, end)) => {
                        let p = if self.spec.auto_offset_reset == OffsetReset::Earliest {
                            start
                        } else {
                            end
                        };
                        pos.insert(tp.clone(), p);
                        self.set_position(tp, p);
                        break;
                    }
                    Err(_) => tokio::time::sleep(backoff).await,
                }
            }
        }
        let single = self.partitions.len() == 1;
        let max_wait = Duration::from_millis(self.spec.fetch_max_wait_ms);
        while !stopped() {
            let mut got_any = false;
            for tp in &self.partitions {
                let p = pos[tp];
                let wait = if single { max_wait } else { Duration::ZERO };
                match self
                    .api
                    .fetch(tp, p, self.spec.max_partition_fetch_bytes, wait, timeout)
                    .await
                {
                    Ok(resp) => {
                        let mut recs = Vec::new();
                        for b in resp.batches {
                            let iter = match records::decode_batch(b, DECODE_LIMIT) {
                                Ok(it) => it,
                                Err(e) => {
                                    self.decode_failed(tp, p, &e.to_string());
                                    break;
                                }
                            };
                            for r in iter {
                                match r {
                                    Ok(r) if r.offset >= p => {
                                        match r.value.as_deref().and_then(decode_value) {
                                            Some(v) => recs.push((r.offset, v)),
                                            None => self.decode_failed(
                                                tp,
                                                r.offset,
                                                "value without an id",
                                            ),
                                        }
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        self.decode_failed(tp, p, &e.to_string());
                                        break;
                                    }
                                }
                            }
                        }
                        if let (Some(first), Some(last)) =
                            (recs.first().copied(), recs.last().copied())
                        {
                            got_any = true;
                            self.tracer.event(
                                "poll",
                                &format!(
                                    "c{} {tp} {}..={} n={}",
                                    self.index,
                                    first.0,
                                    last.0,
                                    recs.len()
                                ),
                            );
                            let at_ns = self.tracer.now_ns();
                            lock(&self.history).polls.push(Poll {
                                consumer: self.index,
                                tp: tp.to_string(),
                                at_ns,
                                kind: PollKind::Records(recs),
                            });
                            pos.insert(tp.clone(), last.0 + 1);
                            self.set_position(tp, last.0 + 1);
                        }
                    }
                    Err(ApiError::OffsetOutOfRange { log_start_offset, log_end_offset }) => {
                        let to = if self.spec.auto_offset_reset == OffsetReset::Earliest {
                            log_start_offset
                        } else {
                            log_end_offset
                        };
                        self.tracer
                            .event("reset", &format!("c{} {tp} from={p} to={to}", self.index));
                        let at_ns = self.tracer.now_ns();
                        lock(&self.history).polls.push(Poll {
                            consumer: self.index,
                            tp: tp.to_string(),
                            at_ns,
                            kind: PollKind::Reset { from: p, to, reason: format!("offset out of range [{log_start_offset}, {log_end_offset}]: auto.offset.reset") },
                        });
                        pos.insert(tp.clone(), to);
                        self.set_position(tp, to);
                        got_any = true;
                    }
                    Err(_) => tokio::time::sleep(backoff).await,
                }
            }
            if !single && !got_any {
                tokio::time::sleep(max_wait.max(Duration::from_millis(1))).await;
            }
        }
    }

    fn decode_failed(&self, tp: &TopicPartition, offset: i64, why: &str) {
        self.tracer.event("decode-failed", &format!("c{} {tp}@{offset} {why}", self.index));
        lock(&self.history)
            .stuck
            .push(format!("consumer {} could not decode {tp}@{offset}: {why}", self.index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = encode_value(42, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(decode_value(&v), Some(42));
        assert_eq!(decode_value(&v[..7]), None);
    }
}
