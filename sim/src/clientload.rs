//! The workloads, built on the `client` crate: each simulated producer is a
//! [`client::Producer`] (accumulator, buffer pool, sticky partitioner, linger, compression,
//! retries, idempotence) and each consumer a [`client::Consumer`] (pipelined fetches), on the
//! client host's view of the simulated network and charging the client host's CPU. What they do
//! is recorded into the run's [`History`](crate::history::History) for the checkers.
//!
//! Producer: records arrive at `rate` with seeded jitter
//! (gaps uniform in [mean/2, 3·mean/2]); each is created at its arrival time (`created_ns`, which
//! latency counts from) and handed to `Producer::send_with_callback` at the driver's next wake,
//! at most one arrival quantum later ([`arrival_quantum_ns`]: min(100 µs, linger.ms / 10)), so
//! the driver wakes once per quantum rather than once per record. `send` blocks as Kafka's
//! `send()` does when `buffer.memory` is full; the callback records the outcome. At
//! `duration_s` the producer flushes and closes.
//!
//! Consumer: `auto.offset.reset=none` on the client, with the scenario's reset policy applied
//! here, so a reset after OffsetOutOfRange is visible to the poll checkers (a real application
//! with a reset policy cannot tell either; recording it is what makes a jump explainable).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::log::TopicPartition;
use bytes::{Bytes, BytesMut};
use client::{ConsumerConfig, ConsumerError, ProducerConfig, ProducerRecord};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checkers::LivenessCause;
use crate::history::{History, Poll, PollKind, SeenRecords, Send, SendOutcome, Stuck};
use crate::scenario::{Acks, ConsumerSpec, OffsetReset, ProducerSpec};
use crate::trace::Tracer;
use crate::workload::{
    decode_value, encode_value_into, lock, Control, SharedHistory, PRODUCER_RNG_SALT,
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

/// The longest arrival quantum: 100 µs.
pub const ARRIVAL_QUANTUM_NS_MAX: u64 = 100_000;

/// How far apart an open-loop producer's wakes are at least: min(100 µs, linger.ms / 10), so 0
/// (a wake per record, at its arrival time) with `linger.ms = 0`. Small against linger.ms and
/// against the latencies measured (a record waits at most this long, half of it on average,
/// before it is handed over; its latency still counts from its own arrival time).
pub fn arrival_quantum_ns(linger_ms: u64) -> u64 {
    (linger_ms.saturating_mul(1_000_000) / 10).min(ARRIVAL_QUANTUM_NS_MAX)
}

/// When the driver wakes to hand over the record due at `next_ns` (before `stop_ns`): the first
/// multiple of `quantum_ns` at or after it, so one timer wake hands over every record due within
/// a quantum instead of one wake per record (at 100k records/s that wake was a fifth of a
/// bench run's CPU). A wake never falls at or after `stop_ns`, so every record due before the
/// stop time is handed over, as with a wake per record.
pub fn arrival_wake_ns(next_ns: u64, quantum_ns: u64, stop_ns: u64) -> u64 {
    assert!(next_ns < stop_ns, "no wake for an arrival at or after the stop time");
    if quantum_ns <= 1 {
        return next_ns;
    }
    next_ns.div_ceil(quantum_ns).saturating_mul(quantum_ns).min(stop_ns - 1)
}

/// Bytes of one slab of record values ([`ValueSlab`]).
const VALUE_SLAB_BYTES: usize = 64 << 10;

/// Record values carved out of shared slabs: one allocation per 64 KiB of values instead of one
/// per record. A slab is freed once every value cut from it is dropped (the client copies a
/// value into its batch and drops it when `send` returns).
#[derive(Default)]
struct ValueSlab(BytesMut);

/// What one producer's sends keep between records: the buffer its values are written into (the
/// producer copies a value into its batch, or into a record of its own if the send must wait),
/// and the history's id of each partition it was handed (interning names one per record cost a
/// map lookup by topic name).
#[derive(Default)]
struct SendLocal {
    value: Vec<u8>,
    ids: Vec<Option<crate::history::PartitionId>>,
}

impl SendLocal {
    /// The history's id of the producer's `partition` of `topic`, interned on first sight.
    fn id(
        &mut self,
        h: &mut crate::history::History,
        topic: &str,
        partition: i32,
    ) -> crate::history::PartitionId {
        let Ok(i) = usize::try_from(partition) else {
            return h.partitions.intern(topic, partition);
        };
        if i >= self.ids.len() {
            self.ids.resize(i + 1, None);
        }
        *self.ids[i].get_or_insert_with(|| h.partitions.intern(topic, partition))
    }
}

impl ValueSlab {
    /// Record `id`'s value of `len` bytes (at least 8: the id), as [`crate::workload::encode_value`].
    fn value(&mut self, id: u64, len: usize) -> Bytes {
        let n = len.max(8);
        if self.0.capacity() < n {
            self.0 = BytesMut::with_capacity(VALUE_SLAB_BYTES.max(n));
        }
        self.0.resize(n, 0);
        encode_value_into(id, &mut self.0);
        self.0.split().freeze()
    }
}

/// One poll's records as runs per partition, in order of first appearance (a poll hands out one
/// run per partition; a second would join the first), each record's offset and value id read in
/// place; `undecodable` hears each record whose value holds no id (it is left out).
pub(crate) fn seen_runs(
    parts: &[client::PartitionRecords],
    mut undecodable: impl FnMut(&client::PartitionRecords, i64),
) -> Vec<(&client::PartitionRecords, SeenRecords)> {
    let mut runs: Vec<(&client::PartitionRecords, SeenRecords)> = Vec::new();
    for p in parts {
        // A fetch's records share their topic's name (one allocation), and `Topic`'s equality
        // compares no bytes for clones.
        let same = |(f, _): &(&client::PartitionRecords, _)| {
            f.partition == p.partition && f.topic == p.topic
        };
        let i = runs.iter().rposition(same).unwrap_or_else(|| {
            runs.push((p, SeenRecords::new()));
            runs.len() - 1
        });
        for r in p.iter() {
            match r.value.and_then(decode_value) {
                Some(id) => runs[i].1.push(r.offset, id),
                None => undecodable(p, r.offset),
            }
        }
    }
    runs
}

/// Runs `fut` and says whether it ever suspended. Virtual time moves only while a task is
/// suspended (madsim advances the clock between polls, never within one), so a clock reading
/// taken before a future that did not suspend is still the time after it.
/// Takes the future pinned where the caller made it: a send's future is large (the producer's
/// whole send path), and moving it in by value copied all of it once per record (3 % of a
/// bench run's CPU in `memmove`).
async fn run_noting_suspension<F: std::future::Future>(
    mut fut: std::pin::Pin<&mut F>,
) -> (F::Output, bool) {
    let mut suspended = false;
    let out = std::future::poll_fn(|cx| {
        let p = fut.as_mut().poll(cx);
        suspended |= p.is_pending();
        p
    })
    .await;
    (out, suspended)
}

/// A send [`ClientProducer::start_send`] left to finish.
struct LeftSend {
    left: client::SendLeft,
    id: u64,
    slot: usize,
}

/// Where [`ClientProducer::start_due`] stopped.
enum Due {
    /// Every record due was handed over.
    AllSent,
    /// The stop time passed.
    Stopped,
    /// A record left this to finish (the sequence and arrival already moved past it).
    Left(LeftSend),
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

/// One producer's [`client::Listener`]: it hears the producer's sends complete, a batch at a
/// time, and notes them in the history.
struct AckContext {
    who: String,
    /// The producer's topic, shared by every record it sends (no name allocated per record).
    topic: crate::history::Topic,
    acks0: bool,
    history: SharedHistory,
    tracer: Tracer,
    /// Consecutive acknowledged offsets of one partition, traced as one `ack` line when they
    /// break (a line per record would cost more than the record at 100k records/s).
    line: std::sync::Mutex<Option<AckLine>>,
}

/// The `ack` trace line being gathered: offsets `first..=last` of `partition`.
#[derive(Clone, Copy)]
struct AckLine {
    partition: i32,
    first: i64,
    last: i64,
}

impl AckContext {
    fn flush_line(&self, line: &mut Option<AckLine>) {
        if let Some(r) = line.take() {
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

    /// Notes that the `n` sends from `slot` were acknowledged at `at_ns`, at `md`'s partition
    /// and offsets from `md.offset` on, and extends the `ack` trace line over them (or starts
    /// one).
    fn complete_run(
        &self,
        h: &mut crate::history::History,
        line: &mut Option<AckLine>,
        slot: usize,
        n: usize,
        md: client::RecordMetadata,
        at_ns: u64,
    ) {
        let (sends, partitions) = (&mut h.sends, &mut h.partitions);
        let tp = || partitions.intern(&self.topic, md.partition);
        let updated = sends.ack_run(slot, n, md.offset, at_ns, tp);
        // The run's history was taken for the checkers: a late callback changes nothing.
        if updated == 0 {
            return;
        }
        let last = md.offset + updated as i64 - 1;
        match line.as_mut() {
            Some(r) if r.partition == md.partition && md.offset == r.last + 1 => r.last = last,
            _ => {
                self.flush_line(line);
                *line = Some(AckLine { partition: md.partition, first: md.offset, last });
            }
        }
    }

    /// Notes how send `slot` completed at `at_ns` (`h` and `line` held by the caller): an
    /// acknowledgement as a run of one, a send without one (acks=0) or a failure here.
    fn complete(
        &self,
        h: &mut crate::history::History,
        line: &mut Option<AckLine>,
        slot: usize,
        r: &Result<client::RecordMetadata, &client::ProduceError>,
        at_ns: u64,
    ) {
        let outcome = match r {
            Ok(md) if self.acks0 || md.offset < 0 => SendOutcome::Unconfirmed { at_ns },
            Ok(md) => return self.complete_run(h, line, slot, 1, *md, at_ns),
            Err(_) => SendOutcome::Failed { at_ns },
        };
        let (sends, partitions) = (&mut h.sends, &mut h.partitions);
        let mut id = 0;
        let updated = sends.update(slot, |send| {
            if let (Ok(md), None) = (r, send.tp()) {
                send.set_tp(Some(partitions.intern(&self.topic, md.partition)));
            }
            send.set_outcome(outcome);
            id = send.value;
        });
        // The run's history was taken for the checkers: a late callback changes nothing.
        if !updated {
            return;
        }
        if let Err(e) = r {
            h.send_errors.insert(id, e.to_string());
            self.flush_line(line);
            self.tracer.event("send-failed", &format!("{} id={id} {e}", self.who));
        }
    }
}

/// A batch's records at once: one clock read and one lock of the history for all of them.
/// A send's token is its slot in the history.
impl client::Listener for AckContext {
    fn completed(&self, done: client::Completed<'_>) {
        let at_ns = self.tracer.now_ns();
        let mut h = lock(&self.history);
        let mut line = lock(&self.line);
        let mut records = done.iter().peekable();
        while let Some((slot, r)) = records.next() {
            let slot = usize::try_from(slot).expect("a token is a history slot");
            // The records acknowledged after it at the next offsets, sent to the next slots (a
            // batch's records, most of the time) are noted as one run.
            let md = match &r {
                Ok(md) if !self.acks0 && md.offset >= 0 => *md,
                _ => {
                    self.complete(&mut h, &mut line, slot, &r, at_ns);
                    continue;
                }
            };
            let mut n = 1usize;
            while let Some((next, Ok(m))) = records.peek() {
                let follows = *next == slot as u64 + n as u64
                    && m.partition == md.partition
                    && Some(m.offset) == md.offset.checked_add(n as i64);
                if !follows {
                    break;
                }
                n += 1;
                records.next();
            }
            self.complete_run(&mut h, &mut line, slot, n, md, at_ns);
        }
    }
}

impl ClientProducer {
    /// Hands one record to `producer`: as much as needs no waiting now ([`Self::start_send`]),
    /// the rest awaited ([`Self::finish_send`]). True if it suspended.
    async fn send_one(
        &self,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        seq: u64,
        created_ns: u64,
        local: &mut SendLocal,
    ) -> bool {
        let left = {
            let mut h = lock(&self.history);
            self.start_send(&mut h, producer, ctx, who, seq, created_ns, local)
        };
        let Some(left) = left else {
            return false;
        };
        let finish = std::pin::pin!(self.finish_send(producer, who, left, local));
        run_noting_suspension(finish).await.1
    }

    /// Creates record `seq` at `created_ns`, records its send in `h`, and hands it to the
    /// producer as far as that needs no waiting ([`client::Producer::send_now`]): most records
    /// end here, with no future made for them. What is left, for [`Self::finish_send`] at once.
    #[allow(clippy::too_many_arguments)]
    fn start_send(
        &self,
        h: &mut History,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        seq: u64,
        created_ns: u64,
        local: &mut SendLocal,
    ) -> Option<LeftSend> {
        let id = (u64::from(self.index) << 40) | seq;
        // Borrowed, not a `Bytes` and a topic reference a record (atomic reference counts).
        local.value.resize(self.spec.record_bytes.max(8), 0);
        encode_value_into(id, &mut local.value);
        let record = client::ProducerRecordRef {
            topic: &ctx.topic,
            partition: None,
            key: None,
            value: Some(&local.value),
            headers: &[],
            timestamp: Some(self.tracer.wall_ms_at(created_ns)),
        };
        // The send's slot is its token. It is pushed once the producer has chosen its partition
        // (a send done at once is pushed whole, with no update after). The caller holds the
        // history across the send: `send_now_token` never tells the listener (which locks the
        // history) before it returns; completions come from the producer's tasks.
        let slot = h.sends.len();
        let sent = producer.send_now_token_ref(record, slot as u64);
        let tp = match &sent {
            Ok(client::SendNow::Done(partition)) => Some(local.id(h, &self.spec.topic, *partition)),
            _ => None,
        };
        let pushed = h.sends.push(Send::new(tp, id, created_ns, SendOutcome::Pending));
        assert_eq!(pushed, slot, "a send is pushed at the slot its token names");
        match sent {
            Ok(client::SendNow::Done(_)) => None,
            Ok(client::SendNow::Left(left)) => Some(LeftSend { left, id, slot }),
            Err(e) => {
                self.refused(h, e, who, id, slot);
                None
            }
        }
    }

    /// Hands over, under one lock of the history, every record due by `now` (each created at
    /// its arrival time `next`, the next arrival a `gap` later), until one leaves something to
    /// await: the records of an arrival wake lock the history once, not once each.
    #[allow(clippy::too_many_arguments)]
    fn start_due(
        &self,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        (seq, next): (&mut u64, &mut u64),
        now: u64,
        gap: &mut impl FnMut() -> u64,
        local: &mut SendLocal,
    ) -> Due {
        let stop_ns = self.stop_at_ns;
        // The stop time passed with a record still due: none of them is sent.
        if *next < stop_ns && stop_ns <= now {
            return Due::Stopped;
        }
        let mut h = lock(&self.history);
        while *next <= now && *next < stop_ns {
            let left = self.start_send(&mut h, producer, ctx, who, *seq, *next, local);
            *seq += 1;
            *next += gap();
            if let Some(left) = left {
                return Due::Left(left);
            }
        }
        Due::AllSent
    }

    /// Finishes what [`Self::start_send`] left (a wait for metadata or buffer memory, or the
    /// CPU charge of a batch opened or filled).
    async fn finish_send(
        &self,
        producer: &client::Producer,
        who: &str,
        send: LeftSend,
        local: &mut SendLocal,
    ) {
        let r = producer.finish_send(send.left).await;
        self.sent(r, who, send.id, send.slot, local);
    }

    /// Notes how handing record `id` (send `slot`) over ended: its partition, or a refusal.
    fn sent(
        &self,
        r: Result<i32, client::ProduceError>,
        who: &str,
        id: u64,
        slot: usize,
        local: &mut SendLocal,
    ) {
        match r {
            Ok(partition) => {
                let mut h = lock(&self.history);
                let tp = local.id(&mut h, &self.spec.topic, partition);
                h.sends.update(slot, |send| send.set_tp(send.tp().or(Some(tp))));
            }
            Err(e) => self.refused(&mut lock(&self.history), e, who, id, slot),
        }
    }

    /// Notes that record `id` (send `slot`) was refused before it was buffered (metadata or
    /// buffer wait timed out): never sent, so not a promise either way.
    fn refused(&self, h: &mut History, e: client::ProduceError, who: &str, id: u64, slot: usize) {
        let at_ns = self.tracer.now_ns();
        self.tracer.event("send-refused", &format!("{who} id={id} {e}"));
        if h.sends.get(slot).is_some_and(|s| s.outcome() == SendOutcome::Pending) {
            h.sends.update(slot, |send| send.set_outcome(SendOutcome::Failed { at_ns }));
            h.send_errors.insert(id, e.to_string());
        }
    }

    /// Hands records to `producer` until the stop time; returns how many it handed over.
    ///
    /// Open loop: seeded arrivals at `rate`, each record created at its own arrival time, handed
    /// over at the first wake at or after it (see [`arrival_wake_ns`]). Closed loop (`rate:
    /// max`): the next record is created as soon as `send` returns (it blocks while
    /// `buffer.memory` is full). A producer held back by a full buffer stops at the stop time
    /// too: what it could not send by then was offered but never sent (achieved < offered).
    async fn arrivals(
        &self,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        rng: &mut ChaCha8Rng,
    ) -> u64 {
        let stop_ns = self.stop_at_ns;
        let mut seq: u64 = 0;
        let local = &mut SendLocal::default();
        if self.spec.max_rate {
            while self.tracer.now_ns() < stop_ns {
                self.send_one(producer, ctx, who, seq, self.tracer.now_ns(), local).await;
                seq += 1;
                if seq.is_multiple_of(64) {
                    // A closed loop that never waits would starve the client's own tasks.
                    tokio::task::yield_now().await;
                }
            }
            return seq;
        }
        if let Some(tick_ns) = self.spec.pacing_ns {
            return self.paced(producer, ctx, who, tick_ns, local).await;
        }
        let mean = (1_000_000_000 / self.spec.rate_per_s.max(1)).max(2);
        let mut gap = || rng.gen_range(mean / 2..=mean + mean / 2);
        let quantum_ns = arrival_quantum_ns(self.spec.linger_ms);
        // Arrivals count from when the producer starts (after topic creation and any prefill),
        // so start-up is not a burst of records that were due before the producer existed.
        let mut next = self.tracer.now_ns() + gap();
        while next < stop_ns {
            self.tracer.sleep_until_ns(arrival_wake_ns(next, quantum_ns, stop_ns)).await;
            // Every record due by now, each with its own arrival time. The clock is read again
            // only after a send that suspended (a full buffer): otherwise no time passed.
            let mut now = self.tracer.now_ns();
            loop {
                // `send_one` unrolled: a future only for a send that has something left.
                let left = match self.start_due(
                    producer,
                    ctx,
                    who,
                    (&mut seq, &mut next),
                    now,
                    &mut gap,
                    local,
                ) {
                    Due::AllSent => break,
                    Due::Stopped => return seq,
                    Due::Left(left) => left,
                };
                let finish = std::pin::pin!(self.finish_send(producer, who, left, local));
                if run_noting_suspension(finish).await.1 {
                    now = self.tracer.now_ns();
                }
            }
        }
        seq
    }

    /// `pacing`: as a sleeping load generator sends (perf's loop, Kafka's throttler). Record
    /// `i` is due `i / rate` after the start; at each tick every record due before the next
    /// tick is handed over at once, each created (so timed) when it is handed over, as perf
    /// times a record from its `send`. No randomness: the bursts are the generator's.
    async fn paced(
        &self,
        producer: &client::Producer,
        ctx: &Arc<AckContext>,
        who: &str,
        tick_ns: u64,
        local: &mut SendLocal,
    ) -> u64 {
        assert!(tick_ns > 0 && self.spec.rate_per_s > 0, "pacing needs a tick and a rate");
        let (stop_ns, rate) = (self.stop_at_ns, u128::from(self.spec.rate_per_s));
        let start_ns = self.tracer.now_ns();
        let due = |i: u64| start_ns + (u128::from(i) * 1_000_000_000 / rate) as u64;
        let (mut seq, mut tick_at) = (0u64, start_ns);
        while tick_at < stop_ns {
            self.tracer.sleep_until_ns(tick_at).await;
            let horizon = tick_at.saturating_add(tick_ns).min(stop_ns);
            while due(seq) < horizon && self.tracer.now_ns() < stop_ns {
                let now = self.tracer.now_ns();
                self.send_one(producer, ctx, who, seq, now, local).await;
                seq += 1;
            }
            tick_at = tick_at.saturating_add(tick_ns).max(self.tracer.now_ns());
        }
        seq
    }

    pub async fn run(self) {
        let who = format!("p{}", self.index);
        let cfg = match producer_config(&self.spec, &who, &self.side.bootstrap) {
            Ok(c) => c,
            Err(e) => {
                self.tracer.event("producer-config-failed", &format!("{who} {e}"));
                lock(&self.history).stuck.push(Stuck::other(format!("producer {who}: {e}")));
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
            topic: self.spec.topic.as_str().into(),
            acks0: self.spec.acks == Acks::Zero,
            history: self.history.clone(),
            tracer: self.tracer.clone(),
            line: std::sync::Mutex::new(None),
        });
        let listening = producer.listen(ctx.clone()).is_ok();
        assert!(listening, "a new producer has no listener yet");
        let mut rng = ChaCha8Rng::seed_from_u64(salted);
        let seq = self.arrivals(&producer, &ctx, &who, &mut rng).await;
        producer.close().await;
        ctx.flush_line(&mut lock(&ctx.line));
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
    let slab = &mut ValueSlab::default();
    for seq in 0..spec.records {
        let value = slab.value((index << 40) | seq, spec.record_bytes);
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
    /// them; the consumer's position moves past each run. Reads the records in place (no
    /// reference count a record).
    fn record_poll(&self, parts: &[client::PartitionRecords], who: &str) {
        let runs = seen_runs(parts, |p, offset| {
            let tp = format!("{}-{}", p.topic, p.partition);
            self.tracer.event("decode-failed", &format!("{who} {tp}@{offset} value without an id"));
            lock(&self.history).stuck.push(Stuck::new(
                LivenessCause::Undecodable,
                format!(
                    "consumer {} could not decode {tp}@{offset}: value without an id",
                    self.index
                ),
            ));
        });
        let at_ns = self.tracer.now_ns();
        for (r, recs) in runs {
            let tp = TopicPartition::new(&*r.topic, r.partition);
            let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
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
                kind: PollKind::records(recs),
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
            match consumer.poll_partitions(poll_timeout).await {
                Ok(parts) => self.record_poll(&parts, &who),
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
                    lock(&self.history).stuck.push(Stuck::new(
                        LivenessCause::Undecodable,
                        format!(
                            "consumer {} could not decode {topic}-{partition}@{offset}: {reason}",
                            self.index
                        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition `partition`'s records at offsets `base..`, with these values, as a fetch
    /// brings them.
    fn fetched(partition: i32, base: i64, values: &[Vec<u8>]) -> client::PartitionRecords {
        let mut b =
            records::BatchBuilder::new(BytesMut::new(), records::Compression::None, usize::MAX);
        for v in values {
            b.append(0, None, Some(v), &[]).expect("appends");
        }
        let mut batch = b.finish().expect("a batch");
        records::BatchHeader::set_base_offset(&mut batch, base);
        let topic = crate::history::Topic::from("t");
        let decoded = client::fetched::decode(&topic, partition, batch.freeze(), base, false);
        assert!(decoded.corrupt.is_none());
        decoded.records
    }

    /// A poll's runs: one per partition in order of first appearance (a second part of a
    /// partition joins its first), each record's offset and value id read in place, and a
    /// record whose value holds no id told to `undecodable` and left out.
    #[test]
    fn a_polls_runs_hold_each_partitions_ids_and_tell_the_undecodable() {
        let id = |i: u64| crate::workload::encode_value((3 << 40) | i, 20);
        let parts = [
            fetched(1, 10, &[id(1), b"short".to_vec(), id(2)]),
            fetched(0, 0, &[id(7)]),
            fetched(1, 13, &[id(3)]),
        ];
        let mut told = Vec::new();
        let runs = seen_runs(&parts, |p, offset| told.push((p.partition, offset)));
        assert_eq!(told, [(1, 11)], "the short value, at its offset");
        let runs: Vec<(i32, Vec<(i64, u64)>)> =
            runs.iter().map(|(p, seen)| (p.partition, seen.iter().collect())).collect();
        let v = |i: u64| (3 << 40) | i;
        assert_eq!(
            runs,
            [(1, vec![(10, v(1)), (12, v(2)), (13, v(3))]), (0, vec![(0, v(7))])],
            "partition 1 first, its second part joined"
        );
    }

    #[test]
    fn quantum_is_a_tenth_of_linger_up_to_100_us() {
        assert_eq!(arrival_quantum_ns(0), 0);
        assert_eq!(arrival_quantum_ns(1), ARRIVAL_QUANTUM_NS_MAX);
        assert_eq!(arrival_quantum_ns(5), ARRIVAL_QUANTUM_NS_MAX);
        assert_eq!(arrival_quantum_ns(u64::MAX), ARRIVAL_QUANTUM_NS_MAX);
        // linger.ms is whole milliseconds: a tenth of 1 ms is already the cap.
        assert_eq!(ARRIVAL_QUANTUM_NS_MAX, 1_000_000 / 10);
    }

    #[test]
    fn wake_is_the_next_quantum_boundary_before_the_stop() {
        let q = 100_000;
        assert_eq!(arrival_wake_ns(100_000, q, 10_000_000), 100_000);
        assert_eq!(arrival_wake_ns(100_001, q, 10_000_000), 200_000);
        assert_eq!(arrival_wake_ns(1, q, 10_000_000), 100_000);
        // Never at or past the stop: the last records are handed over before it.
        assert_eq!(arrival_wake_ns(9_950_000, q, 9_960_000), 9_959_999);
        // No quantum: a wake per record, at its arrival time.
        assert_eq!(arrival_wake_ns(123_457, 0, 10_000_000), 123_457);
    }

    /// At 100k records/s (gaps 5..15 µs) with a 100 µs quantum, one wake hands over about ten
    /// records, and no record waits longer than the quantum.
    #[test]
    fn one_wake_per_quantum_at_100k_records_per_s() {
        let (q, stop) = (arrival_quantum_ns(5), 1_000_000_000);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut next, mut wakes, mut records, mut last_wake) = (0u64, 0u64, 0u64, 0u64);
        while next < stop {
            let wake = arrival_wake_ns(next, q, stop);
            assert!(wake >= next && wake - next < q, "record at {next} handed over at {wake}");
            assert!(wake > last_wake || wakes == 0, "wakes must move forward");
            (last_wake, wakes) = (wake, wakes + 1);
            while next <= wake && next < stop {
                records += 1;
                next += rng.gen_range(5_000..=15_000u64);
            }
        }
        assert!(records > 99_000 && records < 101_000, "{records} records");
        // A wake per quantum, and one just before the stop for the last records.
        assert!(wakes <= stop / q + 1, "{wakes} wakes for {records} records");
    }
}
