//! The workloads, built on the `client` crate: each simulated producer is a
//! [`client::Producer`] (accumulator, buffer pool, sticky partitioner, linger, compression,
//! retries, idempotence) and each consumer a [`client::Consumer`] (pipelined fetches), on the
//! client host's view of the simulated network and charging the client host's CPU. What they do
//! is recorded into the run's [`History`](crate::history::History) for the checkers.
//!
//! Producer: records arrive at `rate` with seeded jitter
//! (gaps uniform in [mean/2, 3·mean/2]); each is handed to `Producer::send_with_callback` at its
//! arrival time, which blocks as Kafka's `send()` does when `buffer.memory` is full; the callback
//! records the outcome. At `duration_s` the producer flushes and closes.
//!
//! Consumer: `auto.offset.reset=none` on the client, with the scenario's reset policy applied
//! here, so a reset after OffsetOutOfRange is visible to the poll checkers (a real application
//! with a reset policy cannot tell either; recording it is what makes a jump explainable).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::log::TopicPartition;
use bytes::Bytes;
use client::{ConsumerConfig, ConsumerError, ProducerConfig, ProducerRecord};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Poll, PollKind, Send, SendOutcome};
use crate::scenario::{Acks, ConsumerSpec, OffsetReset, ProducerSpec};
use crate::trace::Tracer;
use crate::workload::{
    decode_value, encode_value, lock, Control, SharedHistory, PRODUCER_RNG_SALT,
};

/// The client host's network view and CPU.
#[derive(Clone)]
pub struct ClientSide {
    pub net: Arc<dyn net_model::Network>,
    pub cpu: Arc<dyn net_model::CostHook>,
    /// `host:port` of the bootstrap broker(s).
    pub bootstrap: Vec<String>,
}

/// Kafka producer settings from a scenario's producer entry.
pub fn producer_config(
    spec: &ProducerSpec,
    client_id: &str,
    bootstrap: &[String],
) -> Result<ProducerConfig, client::ConfigError> {
    let acks = match spec.acks {
        Acks::Zero => "0",
        Acks::One => "1",
        Acks::All => "all",
    };
    let pairs: Vec<(&str, String)> = vec![
        ("bootstrap.servers", bootstrap.join(",")),
        ("client.id", client_id.to_string()),
        ("acks", acks.to_string()),
        ("linger.ms", spec.linger_ms.to_string()),
        ("batch.size", spec.batch_size.to_string()),
        ("compression.type", spec.compression.name().to_string()),
        ("retries", spec.retries.to_string()),
        ("retry.backoff.ms", spec.retry_backoff_ms.to_string()),
        ("request.timeout.ms", spec.request_timeout_ms.to_string()),
        (
            "delivery.timeout.ms",
            spec.delivery_timeout_ms.max(spec.linger_ms + spec.request_timeout_ms).to_string(),
        ),
        ("max.in.flight.requests.per.connection", spec.max_in_flight.to_string()),
        ("enable.idempotence", spec.idempotence.to_string()),
    ];
    ProducerConfig::from_pairs(pairs)
}

pub struct ClientProducer {
    pub index: u32,
    pub spec: ProducerSpec,
    pub side: ClientSide,
    pub history: SharedHistory,
    pub tracer: Tracer,
    pub control: Arc<Control>,
    pub stop_at_ns: u64,
    pub seed: u64,
}

/// What every delivery callback of one producer shares (one `Arc`, so a callback costs one box).
struct AckContext {
    who: String,
    topic: String,
    acks0: bool,
    history: SharedHistory,
    tracer: Tracer,
    /// Consecutive acknowledged offsets of one partition, traced as one `ack` line when the run
    /// breaks (a line per record would cost more than the record at 100k records/s).
    run: std::sync::Mutex<Option<AckRun>>,
}

#[derive(Clone, Copy)]
struct AckRun {
    partition: i32,
    first: i64,
    last: i64,
}

impl AckContext {
    fn flush_run(&self, run: &mut Option<AckRun>) {
        if let Some(r) = run.take() {
            self.tracer.event(
                "ack",
                &format!(
                    "{} {}-{} {}..={} n={}",
                    self.who,
                    self.topic,
                    r.partition,
                    r.first,
                    r.last,
                    r.last - r.first + 1
                ),
            );
        }
    }

    fn complete(
        &self,
        slot: usize,
        id: u64,
        r: Result<client::RecordMetadata, client::ProduceError>,
    ) {
        let at_ns = self.tracer.now_ns();
        let mut h = lock(&self.history);
        let tp = match (&r, h.sends.get(slot).and_then(|s| s.tp)) {
            (Ok(md), None) => Some(h.partitions.intern(&self.topic, md.partition)),
            (_, known) => known,
        };
        // The run's history was taken for the checkers: a late callback changes nothing.
        let Some(send) = h.sends.get_mut(slot) else { return };
        send.tp = tp;
        match r {
            Ok(md) => {
                if self.acks0 || md.offset < 0 {
                    send.outcome = SendOutcome::Unconfirmed { at_ns };
                    return;
                }
                send.outcome = SendOutcome::Acked { offset: md.offset, at_ns };
                drop(h);
                let mut run = lock(&self.run);
                match run.as_mut() {
                    Some(r) if r.partition == md.partition && md.offset == r.last + 1 => {
                        r.last = md.offset
                    }
                    _ => {
                        self.flush_run(&mut run);
                        *run = Some(AckRun {
                            partition: md.partition,
                            first: md.offset,
                            last: md.offset,
                        });
                    }
                }
            }
            Err(e) => {
                send.outcome = SendOutcome::Failed { at_ns, error: e.to_string().into() };
                drop(h);
                self.flush_run(&mut lock(&self.run));
                self.tracer.event("send-failed", &format!("{} id={id} {e}", self.who));
            }
        }
    }
}

impl ClientProducer {
    /// Creates record `seq` (created at `created_ns`), records it as pending and hands it to
    /// the producer; the callback records its outcome.
    async fn send_one(
        &self,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        seq: u64,
        created_ns: u64,
    ) {
        let id = (u64::from(self.index) << 40) | seq;
        let value = Bytes::from(encode_value(id, self.spec.record_bytes));
        let record = ProducerRecord::new(self.spec.topic.clone(), value)
            .with_timestamp(1_700_000_000_000 + (created_ns / 1_000_000) as i64);
        let slot = {
            let mut h = lock(&self.history);
            h.sends.push(Send {
                producer: self.index,
                tp: None,
                value: id,
                created_ns,
                outcome: SendOutcome::Pending,
            });
            h.sends.len() - 1
        };
        let ctx2 = ctx.clone();
        let callback = Box::new(move |r: Result<client::RecordMetadata, client::ProduceError>| {
            ctx2.complete(slot, id, r)
        });
        match producer.send_with_callback(record, callback).await {
            Ok(partition) => {
                let mut h = lock(&self.history);
                let tp = h.partitions.intern(&self.spec.topic, partition);
                if let Some(send) = h.sends.get_mut(slot) {
                    send.tp = send.tp.or(Some(tp));
                }
            }
            Err(e) => {
                // Refused before it was buffered (metadata or buffer wait timed out): never
                // sent, so not a promise either way.
                let at_ns = self.tracer.now_ns();
                self.tracer.event("send-refused", &format!("{who} id={id} {e}"));
                let mut h = lock(&self.history);
                if let Some(send) =
                    h.sends.get_mut(slot).filter(|s| s.outcome == SendOutcome::Pending)
                {
                    send.outcome = SendOutcome::Failed { at_ns, error: e.to_string().into() };
                }
            }
        }
    }

    pub async fn run(self) {
        let who = format!("p{}", self.index);
        let cfg = match producer_config(&self.spec, &who, &self.side.bootstrap) {
            Ok(c) => c,
            Err(e) => {
                self.tracer.event("producer-config-failed", &format!("{who} {e}"));
                lock(&self.history).stuck.push(format!("producer {who}: {e}"));
                self.control.producers_running.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        };
        let salted = self.seed
            ^ PRODUCER_RNG_SALT
            ^ u64::from(self.index).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let producer = client::Producer::with_cost_hook(
            cfg,
            self.side.net.clone(),
            salted,
            self.side.cpu.clone(),
        );
        let ctx = Arc::new(AckContext {
            who: who.clone(),
            topic: self.spec.topic.clone(),
            acks0: self.spec.acks == Acks::Zero,
            history: self.history.clone(),
            tracer: self.tracer.clone(),
            run: std::sync::Mutex::new(None),
        });
        let mut rng = ChaCha8Rng::seed_from_u64(salted);
        // Open loop: seeded arrivals at `rate`. Closed loop (`rate: max`): the next record is
        // created as soon as `send` returns (it blocks while `buffer.memory` is full).
        let mean = (1_000_000_000 / self.spec.rate_per_s.max(1)).max(2);
        // Arrivals count from when the producer starts (after topic creation and any prefill),
        // so start-up is not a burst of records that were due before the producer existed.
        let start_ns = self.tracer.now_ns();
        let mut next = if self.spec.max_rate {
            start_ns
        } else {
            start_ns + rng.gen_range(mean / 2..=mean + mean / 2)
        };
        let mut seq: u64 = 0;
        loop {
            if self.spec.max_rate {
                next = self.tracer.now_ns();
            } else {
                self.tracer.sleep_until_ns(next).await;
            }
            // A producer held back by a full buffer stops at the stop time too: what it could
            // not send by then was offered but never sent (achieved < offered).
            if next >= self.stop_at_ns || self.tracer.now_ns() >= self.stop_at_ns {
                break;
            }
            self.send_one(&producer, &ctx, &who, seq, next).await;
            seq += 1;
            if !self.spec.max_rate {
                next += rng.gen_range(mean / 2..=mean + mean / 2);
            } else if seq.is_multiple_of(64) {
                // A closed loop that never waits would starve the client's own tasks.
                tokio::task::yield_now().await;
            }
        }
        producer.close().await;
        ctx.flush_run(&mut lock(&ctx.run));
        let mut h = lock(&self.history);
        for (name, n) in producer.error_counts() {
            *h.producer_errors.entry(name.to_string()).or_default() += n;
        }
        drop(h);
        self.control.producers_running.fetch_sub(1, Ordering::SeqCst);
        self.tracer.event(
            "producer-done",
            &format!("{who} sent={seq} retried={}", producer.record_retry_total()),
        );
    }
}

pub use crate::history::PREFILL_INDEX_BASE;

/// Writes a backlog before the workload starts: `records` records into `topic` with acks=all
/// as fast as the client allows, not recorded send by send. Returns (acknowledged, failed).
pub async fn prefill(
    spec: &crate::scenario::PrefillSpec,
    k: u32,
    side: &ClientSide,
    tracer: &Tracer,
    seed: u64,
) -> (u64, u64) {
    let who = format!("prefill{k}");
    let pairs: Vec<(&str, String)> = vec![
        ("bootstrap.servers", side.bootstrap.join(",")),
        ("client.id", who.clone()),
        ("acks", "all".into()),
        ("linger.ms", "5".into()),
        ("batch.size", "65536".into()),
    ];
    let cfg = match ProducerConfig::from_pairs(pairs) {
        Ok(c) => c,
        Err(e) => {
            tracer.event("prefill-failed", &format!("{who} {e}"));
            return (0, spec.records);
        }
    };
    let producer = client::Producer::with_cost_hook(
        cfg,
        side.net.clone(),
        seed ^ PREFILL_SALT ^ u64::from(k),
        side.cpu.clone(),
    );
    let done = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let index = u64::from(PREFILL_INDEX_BASE + k);
    for seq in 0..spec.records {
        let value = Bytes::from(encode_value((index << 40) | seq, spec.record_bytes));
        let d = done.clone();
        let cb = Box::new(move |r: Result<client::RecordMetadata, client::ProduceError>| {
            let mut d = lock(&d);
            if r.is_ok() {
                d.0 += 1
            } else {
                d.1 += 1
            }
        });
        if producer
            .send_with_callback(ProducerRecord::new(spec.topic.clone(), value), cb)
            .await
            .is_err()
        {
            lock(&done).1 += 1;
        }
        if seq % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    producer.close().await;
    let (ok, failed) = *lock(&done);
    tracer.event("prefill", &format!("{who} {} acked={ok} failed={failed}", spec.topic));
    (ok, failed)
}

const PREFILL_SALT: u64 = 0x7072_6566_696c_6c00; // "prefill"

pub struct ClientConsumer {
    pub index: u32,
    pub spec: ConsumerSpec,
    pub partitions: Vec<TopicPartition>,
    pub side: ClientSide,
    pub history: SharedHistory,
    pub tracer: Tracer,
    pub control: Arc<Control>,
}

impl ClientConsumer {
    fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap_servers: self.side.bootstrap.clone(),
            client_id: format!("c{}", self.index),
            fetch_max_wait_ms: self.spec.fetch_max_wait_ms as i32,
            max_partition_fetch_bytes: self.spec.max_partition_fetch_bytes as i32,
            auto_offset_reset: client::AutoOffsetReset::None,
            request_timeout_ms: self.spec.request_timeout_ms,
            retry_backoff_ms: self.spec.retry_backoff_ms,
            ..ConsumerConfig::default()
        }
    }

    fn set_position(&self, tp: &TopicPartition, pos: i64) {
        lock(&self.control.positions).insert((self.index, tp.clone()), pos);
        lock(&self.history).final_positions.insert((self.index, tp.clone()), pos);
    }

    fn client_tp(tp: &TopicPartition) -> client::TopicPartition {
        client::TopicPartition::new(tp.topic.clone(), tp.partition)
    }

    /// Asks for the scenario's reset policy on `tps` (resolved lazily by the consumer).
    fn request_reset(
        &self,
        consumer: &mut client::Consumer,
        tps: &[TopicPartition],
    ) -> Result<(), ConsumerError> {
        let ctps: Vec<client::TopicPartition> = tps.iter().map(Self::client_tp).collect();
        match self.spec.auto_offset_reset {
            OffsetReset::Earliest => consumer.seek_to_beginning(&ctps),
            OffsetReset::Latest => consumer.seek_to_end(&ctps),
        }
    }

    /// Applies the scenario's reset policy to `tp` and returns the new position.
    async fn reset(
        &self,
        consumer: &mut client::Consumer,
        tp: &TopicPartition,
    ) -> Result<i64, ConsumerError> {
        self.request_reset(consumer, std::slice::from_ref(tp))?;
        consumer.position(&Self::client_tp(tp)).await
    }

    /// Records one poll: one history entry per partition run, in the order the consumer saw
    /// them; the consumer's position moves past each run.
    fn record_poll(&self, records: &[client::ConsumerRecord], who: &str) {
        // Runs per partition in order of first appearance (records come grouped by partition:
        // the last run is checked first, so no per-record allocation or map lookup).
        let mut runs: Vec<(&client::ConsumerRecord, Vec<(i64, u64)>)> = Vec::new();
        for r in records {
            let Some(id) = r.value.as_deref().and_then(decode_value) else {
                let tp = format!("{}-{}", r.topic, r.partition);
                self.tracer.event(
                    "decode-failed",
                    &format!("{who} {tp}@{} value without an id", r.offset),
                );
                lock(&self.history).stuck.push(format!(
                    "consumer {} could not decode {tp}@{}: value without an id",
                    self.index, r.offset
                ));
                continue;
            };
            let same = |(f, _): &&mut (&client::ConsumerRecord, _)| {
                f.partition == r.partition && f.topic == r.topic
            };
            match runs.iter_mut().rev().find(same) {
                Some((_, recs)) => recs.push((r.offset, id)),
                None => runs.push((r, vec![(r.offset, id)])),
            }
        }
        let at_ns = self.tracer.now_ns();
        for (r, recs) in runs {
            let tp = TopicPartition::new(&*r.topic, r.partition);
            let (Some(first), Some(last)) = (recs.first().copied(), recs.last().copied()) else {
                continue;
            };
            self.tracer
                .event("poll", &format!("{who} {tp} {}..={} n={}", first.0, last.0, recs.len()));
            let mut h = lock(&self.history);
            let id = h.partitions.intern_tp(&tp);
            h.polls.push(Poll {
                consumer: self.index,
                tp: id,
                at_ns,
                kind: PollKind::Records(recs),
            });
            drop(h);
            self.set_position(&tp, last.0 + 1);
        }
    }

    pub async fn run(self) {
        let who = format!("c{}", self.index);
        let backoff = Duration::from_millis(self.spec.retry_backoff_ms.max(1));
        let stopped = || self.control.stop_consumers.load(Ordering::SeqCst);
        let mut consumer = client::Consumer::with_cost_hook(
            self.config(),
            self.side.net.clone(),
            self.side.cpu.clone(),
        );
        consumer.assign(self.partitions.iter().map(Self::client_tp));
        // No committed offsets in this workload: start per the scenario's reset policy, asked
        // for every partition at once (one ListOffsets), then read back partition by partition.
        if let Err(e) = self.request_reset(&mut consumer, &self.partitions) {
            self.tracer.event("poll-error", &format!("{who} {e}"));
        }
        for tp in &self.partitions {
            let mut first = true;
            loop {
                if stopped() {
                    consumer.close().await;
                    return;
                }
                let r = if first {
                    consumer.position(&Self::client_tp(tp)).await
                } else {
                    self.reset(&mut consumer, tp).await
                };
                first = false;
                match r {
                    Ok(p) => {
                        self.set_position(tp, p);
                        break;
                    }
                    Err(_) => tokio::time::sleep(backoff).await,
                }
            }
        }
        let poll_timeout = Duration::from_millis(self.spec.fetch_max_wait_ms.max(1));
        while !stopped() {
            match consumer.poll(poll_timeout).await {
                Ok(records) => self.record_poll(&records, &who),
                Err(ConsumerError::OffsetOutOfRange { topic, partition, offset }) => {
                    let tp = TopicPartition::new(topic, partition);
                    match self.reset(&mut consumer, &tp).await {
                        Ok(to) => {
                            self.tracer
                                .event("reset", &format!("{who} {tp} from={offset} to={to}"));
                            let at_ns = self.tracer.now_ns();
                            let reason = "offset out of range: auto.offset.reset";
                            let mut h = lock(&self.history);
                            let id = h.partitions.intern_tp(&tp);
                            h.polls.push(Poll {
                                consumer: self.index,
                                tp: id,
                                at_ns,
                                kind: PollKind::Reset { from: offset, to, reason },
                            });
                            drop(h);
                            self.set_position(&tp, to);
                        }
                        Err(_) => tokio::time::sleep(backoff).await,
                    }
                }
                Err(ConsumerError::Corrupt { topic, partition, offset, reason }) => {
                    self.tracer.event(
                        "decode-failed",
                        &format!("{who} {topic}-{partition}@{offset} {reason}"),
                    );
                    lock(&self.history).stuck.push(format!(
                        "consumer {} could not decode {topic}-{partition}@{offset}: {reason}",
                        self.index
                    ));
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    self.tracer.event("poll-error", &format!("{who} {e}"));
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        consumer.close().await;
    }
}
