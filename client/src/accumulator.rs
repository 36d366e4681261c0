//! The producer's record accumulator, after Kafka's `RecordAccumulator`: per-partition queues of
//! batches that fill up to `batch.size`, become ready when full, when `linger.ms` has passed, when
//! the buffer pool has waiters, or while flushing/closing, and are drained per broker node for a
//! Produce request of at most `max.request.size`.
//!
//! This is pure logic: time is passed in (`now_ms`), memory comes from a [`BufferPool`] without
//! waiting ([`RecordAccumulator::try_append`] reports [`TryAppend::NeedsBuffer`] and the caller
//! allocates, possibly waiting, then calls [`RecordAccumulator::append_with_buffer`]; the async
//! [`append`] does both).
//!
//! The seam to the network: the sender calls [`RecordAccumulator::ready`] to learn which partitions
//! have sendable batches, groups them by leader node, calls [`RecordAccumulator::drain`] per node,
//! sends each [`ProducerBatch`]'s [`bytes`](ProducerBatch::bytes), and on the response calls
//! [`RecordAccumulator::complete`] (buffers go back to the pool, the per-record `T`s come back to
//! be resolved) or [`RecordAccumulator::reenqueue`] to retry. `T` is whatever the producer attaches
//! to a record — a oneshot sender for its future, or a test id.
//!
//! Idempotence: when enabled, batches are drained only once a producer id is known, and each gets
//! the producer id/epoch and the partition's next sequence number at drain time (in drain order,
//! which is append order per partition); sequences wrap at `i32::MAX` as Kafka's do. When a
//! broker has lost the producer's state (an unclean election, a leader that lost its log tail),
//! the partition's oldest unacknowledged batch is refused as out of order and can never succeed:
//! the producer then calls [`RecordAccumulator::reset_producer_id`], waits for its in-flight
//! requests, takes a new producer id, and [`RecordAccumulator::set_producer_id_and_epoch`]
//! re-stamps every queued batch from sequence 0 (Kafka's client bumps the epoch, KIP-360;
//! librdkafka takes a new id, as here).
//!
//! That inference holds only while a batch being retried is among the last five the broker
//! appended for the producer (the broker's deduplication window, `max.in.flight` ≤ 5): so an
//! idempotent partition has batches in flight to one node at a time. After a leader change its
//! batches still in flight to the old leader come back (answered, or timed out) before anything
//! is drained for the new one (librdkafka's "leader change" drain). Otherwise newer batches
//! written at the new leader while older ones, already replicated there, are still out push those
//! out of the window: their retries are refused as out of order and would be re-stamped and
//! written twice (cluster-nemesis seed 5785, `scenarios/cluster-idempotent-no-duplicates.json`).
//!
//! For the same reason at most [`UNACKED_BATCHES_MAX`] batches of a partition are stamped from
//! its oldest unacknowledged one on (that one included): a new batch waits while a batch being
//! retried has four newer ones, acknowledged or not, after it.
//! Without this, a batch that was written but answered with an error (a timeout after handling)
//! can be retried while newer batches keep being appended; once five newer ones are in the log its
//! retry is refused as out of order, and it is retried until `delivery.timeout.ms` although it is
//! in the log (`scenarios/nemesis-request-faults.json` seed 51). Java's producer has that gap; the
//! bound closes it and costs nothing without retries (one batch per partition per request and
//! at most five requests in flight keep a partition below it anyway).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use records::{
    batch_size_upper_bound, BatchBuilder, BatchHeader, BuildError, Compression, Header,
    BATCH_HEADER_LEN, NO_PRODUCER_ID, NO_SEQUENCE,
};
use thiserror::Error;

use crate::buffer_pool::{BufferPool, PoolError};
use crate::config::ProducerConfig;

/// One definition of a partition for the workspace: `kafka-types`'.
pub use kafka_types::TopicPartition;

/// Batches of one partition stamped from its oldest unacknowledged one on, at most: the
/// broker's deduplication window (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, ours
/// `broker::producer_state::BATCHES_KEPT`). See the module docs.
pub const UNACKED_BATCHES_MAX: usize = 5;

/// Thunks a new batch reserves room for, at most (see `append_with_buffer`): a batch of
/// smaller records grows its vector past this as records arrive.
const THUNKS_RESERVED_MAX: usize = 1024;

/// The accumulator's share of the producer config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccumulatorConfig {
    pub batch_size: usize,
    pub linger_ms: u64,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    pub max_request_size: usize,
    pub buffer_memory: usize,
    pub retry_backoff_ms: u64,
    pub delivery_timeout_ms: u64,
    pub idempotence: bool,
}

impl From<&ProducerConfig> for AccumulatorConfig {
    fn from(c: &ProducerConfig) -> Self {
        Self {
            batch_size: c.batch_size,
            linger_ms: c.linger_ms,
            compression: c.compression_type,
            compression_level: c.compression_level,
            max_request_size: c.max_request_size,
            buffer_memory: c.buffer_memory,
            retry_backoff_ms: c.retry_backoff_ms,
            delivery_timeout_ms: c.delivery_timeout_ms,
            idempotence: c.enable_idempotence,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    #[error("record of {size} bytes (as a batch) exceeds max.request.size {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("record of {size} bytes (as a batch) exceeds buffer.memory {limit}")]
    RecordLargerThanMemory { size: usize, limit: usize },
    #[error("the producer is closed")]
    Closed,
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub batch_id: u64,
    /// Its index in the batch: offset = the batch's assigned base offset + this.
    pub offset_delta: i32,
    /// The batch reached `batch.size` (a sender may want to wake up). The batch appended to is
    /// always its partition's last queued one.
    pub batch_is_full: bool,
    pub new_batch_created: bool,
    /// Growth of the batch's estimated size (for the sticky partitioner).
    pub appended_bytes: usize,
    /// [`append`] had to wait for buffer memory (`buffer.memory` was full): the appending thread
    /// was parked and woken by a completion.
    pub waited_for_memory: bool,
}

/// Result of [`RecordAccumulator::try_append`].
#[derive(Debug)]
pub enum TryAppend<T> {
    Appended(Appended),
    /// No open batch has room: allocate `size` bytes from the pool and call
    /// [`RecordAccumulator::append_with_buffer`] with the record and its `thunk` again.
    NeedsBuffer {
        size: usize,
        thunk: T,
    },
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

#[derive(Debug)]
enum BatchState {
    Open(BatchBuilder<BytesMut>),
    /// The finished bytes, frozen: a Produce request holds them without a copy, and the buffer
    /// returns to the pool once no request does (see `take_buffer`).
    Closed(Bytes),
    /// Only while finishing (the builder is consumed).
    Finishing,
}

/// A batch on its way to one partition. Drained batches are closed: their bytes are final,
/// including producer id/epoch/sequence and CRC; the broker assigns the base offset.
#[derive(Debug)]
pub struct ProducerBatch<T> {
    pub tp: TopicPartition,
    pub id: u64,
    pub created_ms: u64,
    /// Send attempts so far (0 until the first [`reenqueue`](RecordAccumulator::reenqueue)).
    pub attempts: u32,
    pub last_attempt_ms: u64,
    /// One per record, in offset order.
    pub thunks: Vec<T>,
    state: BatchState,
    alloc_size: usize,
    record_count: u32,
    /// Records' size before compression, known once closed (the CPU model charges it).
    uncompressed_bytes: usize,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl<T> ProducerBatch<T> {
    /// The finished batch bytes (empty while still open, which a drained batch never is).
    pub fn bytes(&self) -> &[u8] {
        match &self.state {
            BatchState::Closed(b) => b,
            _ => &[],
        }
    }

    /// The finished batch bytes as a shared view (no copy; empty while still open).
    pub fn shared_bytes(&self) -> Bytes {
        match &self.state {
            BatchState::Closed(b) => b.clone(),
            _ => Bytes::new(),
        }
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, BatchState::Closed(_))
    }

    /// The records' size before compression (0 while open).
    pub fn uncompressed_bytes(&self) -> usize {
        self.uncompressed_bytes
    }

    /// Size on the wire (closed) or estimated (open).
    pub fn estimated_size(&self) -> usize {
        match &self.state {
            BatchState::Open(b) => b.estimated_size(),
            BatchState::Closed(b) => b.len(),
            BatchState::Finishing => 0,
        }
    }

    fn is_full(&self) -> bool {
        match &self.state {
            BatchState::Open(b) => b.is_full(),
            _ => true,
        }
    }

    fn has_sequence(&self) -> bool {
        self.base_sequence != NO_SEQUENCE
    }

    /// Closes an open batch with the given producer state. On error the batch stays unusable
    /// (its state is `Finishing`) and the caller fails it.
    fn close(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Result<(), BuildError> {
        if let BatchState::Open(mut builder) =
            std::mem::replace(&mut self.state, BatchState::Finishing)
        {
            builder.set_producer_state(producer_id, producer_epoch, base_sequence);
            self.uncompressed_bytes = builder.uncompressed_records_size();
            let buf = builder.finish()?;
            self.producer_id = producer_id;
            self.producer_epoch = producer_epoch;
            self.base_sequence = base_sequence;
            self.state = BatchState::Closed(buf.freeze());
        }
        Ok(())
    }

    /// The batch's buffer, to return to the pool. A closed batch's bytes come back only when
    /// no request still holds them (then an empty buffer stands in: the pool counts its size as
    /// free memory instead of keeping the buffer).
    fn take_buffer(&mut self) -> Option<BytesMut> {
        match std::mem::replace(&mut self.state, BatchState::Finishing) {
            BatchState::Open(b) => Some(b.abandon()),
            BatchState::Closed(b) => Some(b.try_into_mut().unwrap_or_default()),
            BatchState::Finishing => None,
        }
    }
}

/// Which partitions have sendable batches now, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCheck {
    pub ready: Vec<TopicPartition>,
    /// Milliseconds until the next batch becomes sendable by lingering or backing off
    /// (`u64::MAX` when nothing is waiting).
    pub next_ready_check_delay_ms: u64,
}

/// A batch that could not be sent (expired, failed to build, aborted): its records' thunks and why.
#[derive(Debug)]
pub struct FailedBatch<T> {
    pub tp: TopicPartition,
    pub id: u64,
    pub thunks: Vec<T>,
    pub reason: FailReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    DeliveryTimeout,
    Build(BuildError),
    Aborted,
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: wraps to 0 after `i32::MAX`.
pub fn increment_sequence(sequence: i32, increment: u32) -> i32 {
    ((sequence as i64 + increment as i64) % (i32::MAX as i64 + 1)) as i32
}

#[derive(Debug)]
pub struct RecordAccumulator<T> {
    config: AccumulatorConfig,
    pool: Arc<BufferPool>,
    queues: BTreeMap<TopicPartition, VecDeque<ProducerBatch<T>>>,
    next_batch_id: u64,
    /// Drained, not yet completed.
    in_flight: BTreeSet<u64>,
    /// Idempotence: the node a partition's in-flight batches went to, and how many there are.
    in_flight_to: BTreeMap<TopicPartition, (i32, usize)>,
    /// Partitions with a batch in flight when ordering needs one at a time.
    muted: BTreeSet<TopicPartition>,
    drain_index: BTreeMap<i32, usize>,
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: BTreeMap<TopicPartition, i32>,
    /// Idempotence: ids of the batches that have a sequence and are not yet complete, per
    /// partition (ids grow in append order, so the first is the oldest unacknowledged).
    unacked: BTreeMap<TopicPartition, BTreeSet<u64>>,
    /// Per partition, the ids of the batches stamped since its oldest unacknowledged one, in
    /// sequence order (ids grow in append order): what the broker appended after that batch.
    stamped: BTreeMap<TopicPartition, VecDeque<u64>>,
    /// Idempotence: the last sequence the broker acknowledged per partition, under the current
    /// producer id (cleared with it).
    last_acked_sequence: BTreeMap<TopicPartition, i32>,
    flushes_in_progress: u32,
    closed: bool,
    failed: Vec<FailedBatch<T>>,
}

impl<T> RecordAccumulator<T> {
    pub fn new(config: AccumulatorConfig, pool: Arc<BufferPool>) -> Self {
        Self {
            config,
            pool,
            queues: BTreeMap::new(),
            next_batch_id: 0,
            in_flight: BTreeSet::new(),
            in_flight_to: BTreeMap::new(),
            muted: BTreeSet::new(),
            drain_index: BTreeMap::new(),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            next_sequence: BTreeMap::new(),
            last_acked_sequence: BTreeMap::new(),
            unacked: BTreeMap::new(),
            stamped: BTreeMap::new(),
            flushes_in_progress: 0,
            closed: false,
            failed: Vec::new(),
        }
    }

    pub fn config(&self) -> &AccumulatorConfig {
        &self.config
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// Validates a record's size like Kafka's `ensureValidRecordSize`; returns the buffer size a
    /// new batch for it needs.
    pub fn buffer_size_for(&self, record: &RecordRef<'_>) -> Result<usize, AppendError> {
        let size = batch_size_upper_bound(
            record.key.map(<[u8]>::len),
            record.value.map(<[u8]>::len),
            record.headers,
        );
        if size > self.config.max_request_size {
            return Err(AppendError::RecordTooLarge { size, limit: self.config.max_request_size });
        }
        if size > self.config.buffer_memory {
            return Err(AppendError::RecordLargerThanMemory {
                size,
                limit: self.config.buffer_memory,
            });
        }
        Ok(size.max(self.config.batch_size))
    }

    #[inline(always)]
    fn append_to_last(
        &mut self,
        tp: &TopicPartition,
        record: &RecordRef<'_>,
        thunk: T,
    ) -> Result<Result<Appended, T>, AppendError> {
        let Some(last) = self.queues.get_mut(tp).and_then(|q| q.back_mut()) else {
            return Ok(Err(thunk));
        };
        let BatchState::Open(builder) = &mut last.state else {
            return Ok(Err(thunk));
        };
        let before = builder.estimated_size();
        let Some(offset_delta) =
            builder.try_append(record.timestamp, record.key, record.value, record.headers)?
        else {
            return Ok(Err(thunk));
        };
        let appended_bytes = builder.estimated_size() - before;
        let batch_is_full = builder.is_full();
        last.record_count += 1;
        last.thunks.push(thunk);
        Ok(Ok(Appended {
            batch_id: last.id,
            offset_delta,
            batch_is_full,
            new_batch_created: false,
            appended_bytes,
            waited_for_memory: false,
        }))
    }

    /// Appends to the partition's open batch if it has room; otherwise asks for a buffer.
    #[inline(always)]
    pub fn try_append(
        &mut self,
        tp: &TopicPartition,
        record: RecordRef<'_>,
        thunk: T,
    ) -> Result<TryAppend<T>, AppendError> {
        if self.closed {
            return Err(AppendError::Closed);
        }
        let size = self.buffer_size_for(&record)?;
        match self.append_to_last(tp, &record, thunk)? {
            Ok(a) => Ok(TryAppend::Appended(a)),
            Err(thunk) => Ok(TryAppend::NeedsBuffer { size, thunk }),
        }
    }

    /// Appends with a freshly allocated buffer of `alloc_size` bytes (from
    /// [`TryAppend::NeedsBuffer`]). If an open batch gained room meanwhile, the record goes there
    /// and the buffer returns to the pool.
    pub fn append_with_buffer(
        &mut self,
        tp: &TopicPartition,
        record: RecordRef<'_>,
        thunk: T,
        buffer: BytesMut,
        alloc_size: usize,
        now_ms: u64,
    ) -> Result<Appended, AppendError> {
        if self.closed {
            self.pool.deallocate(buffer, alloc_size);
            return Err(AppendError::Closed);
        }
        let thunk = match self.append_to_last(tp, &record, thunk) {
            Ok(Ok(a)) => {
                self.pool.deallocate(buffer, alloc_size);
                return Ok(a);
            }
            Ok(Err(thunk)) => thunk,
            Err(e) => {
                self.pool.deallocate(buffer, alloc_size);
                return Err(e);
            }
        };
        let mut builder =
            BatchBuilder::new(buffer, self.config.compression, self.config.batch_size);
        builder.set_compression_level(self.config.compression_level);
        let offset_delta =
            match builder.append(record.timestamp, record.key, record.value, record.headers) {
                Ok(d) => d,
                Err(e) => {
                    self.pool.deallocate(builder.abandon(), alloc_size);
                    return Err(e.into());
                }
            };
        let appended_bytes = builder.estimated_size();
        let batch_is_full = builder.is_full();
        // Room for as many thunks as records of this one's size fill the batch (growing the
        // vector one doubling at a time copied it about ten times per 64 KiB batch of 100-byte
        // records), at most THUNKS_RESERVED_MAX.
        let record_bytes = (appended_bytes - BATCH_HEADER_LEN).max(1);
        let expected = builder.write_limit().saturating_sub(BATCH_HEADER_LEN) / record_bytes;
        let mut thunks = Vec::with_capacity(expected.clamp(1, THUNKS_RESERVED_MAX));
        thunks.push(thunk);
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        self.queues.entry(tp.clone()).or_default().push_back(ProducerBatch {
            tp: tp.clone(),
            id,
            created_ms: now_ms,
            attempts: 0,
            last_attempt_ms: now_ms,
            thunks,
            state: BatchState::Open(builder),
            alloc_size,
            record_count: 1,
            uncompressed_bytes: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
        });
        Ok(Appended {
            batch_id: id,
            offset_delta,
            batch_is_full,
            new_batch_created: true,
            appended_bytes,
            waited_for_memory: false,
        })
    }

    /// Sets the producer id and epoch (after InitProducerId). A new id or epoch restarts every
    /// partition's sequence at 0.
    /// Queued batches that already carry a sequence (retries) are re-stamped with the new
    /// producer state, in queue order, so they travel again as sequences 0, 1, ...
    pub fn set_producer_id_and_epoch(&mut self, producer_id: i64, producer_epoch: i16) {
        let changed = (producer_id, producer_epoch) != (self.producer_id, self.producer_epoch);
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        if !changed {
            return;
        }
        self.next_sequence.clear();
        self.last_acked_sequence.clear();
        if !self.config.idempotence || producer_id == NO_PRODUCER_ID {
            return;
        }
        // Batches in flight keep the old producer state: the producer takes a new id only once
        // none are (see `run_sender`).
        for (tp, q) in self.queues.iter_mut() {
            for batch in q.iter_mut().filter(|b| b.has_sequence()) {
                let seq = self.next_sequence.get(tp).copied().unwrap_or(0);
                if let BatchState::Closed(bytes) = &mut batch.state {
                    // A request may still hold the old bytes: those are copied, not changed.
                    let mut owned = std::mem::take(bytes)
                        .try_into_mut()
                        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                    BatchHeader::set_producer_state(&mut owned, producer_id, producer_epoch, seq);
                    *bytes = owned.freeze();
                }
                batch.producer_id = producer_id;
                batch.producer_epoch = producer_epoch;
                batch.base_sequence = seq;
                self.next_sequence.insert(tp.clone(), increment_sequence(seq, batch.record_count));
            }
        }
    }

    /// The current producer id (`NO_PRODUCER_ID` before InitProducerId and while resetting).
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// Forgets the producer id: nothing is drained until the sender sets a new one (after its
    /// in-flight requests have come back). See the module docs.
    pub fn reset_producer_id(&mut self) {
        self.producer_id = NO_PRODUCER_ID;
        self.producer_epoch = -1;
    }

    /// Whether `batch` is its partition's oldest batch not yet acknowledged: if the broker
    /// refuses it as out of order, no earlier batch is on its way to fill the gap.
    pub fn is_oldest_unacked(&self, batch: &ProducerBatch<T>) -> bool {
        self.unacked.get(&batch.tp).and_then(|ids| ids.first()).is_some_and(|&id| id == batch.id)
    }

    /// Notes the broker's acknowledgement of `batch` (call before [`Self::complete`] on success).
    pub fn acknowledged(&mut self, batch: &ProducerBatch<T>) {
        if batch.has_sequence() && batch.producer_id == self.producer_id {
            let last =
                increment_sequence(batch.base_sequence(), batch.record_count().saturating_sub(1));
            let e = self.last_acked_sequence.entry(batch.tp.clone()).or_insert(last);
            *e = (*e).max(last);
        }
    }

    /// Whether `batch` starts right after the partition's last acknowledged sequence (at 0 when
    /// none was acknowledged under this producer id). Only such a batch refused as out of order
    /// shows the broker lost this producer's state; anything else is a reordering (Java's
    /// `TransactionManager` asks the same before it bumps the epoch).
    pub fn is_next_sequence(&self, batch: &ProducerBatch<T>) -> bool {
        let expected =
            self.last_acked_sequence.get(&batch.tp).map_or(0, |&s| increment_sequence(s, 1));
        batch.base_sequence() == expected
    }

    /// The sequence the partition's next drained batch gets.
    pub fn next_sequence(&self, tp: &TopicPartition) -> i32 {
        self.next_sequence.get(tp).copied().unwrap_or(0)
    }

    /// Idempotence without a producer id yet (or while taking a new one).
    pub fn waiting_for_producer_id(&self) -> bool {
        self.config.idempotence && self.producer_id == NO_PRODUCER_ID
    }

    /// Partitions whose first batch is sendable now; see the module docs.
    pub fn ready(&self, now_ms: u64) -> ReadyCheck {
        let mut ready = Vec::new();
        let mut next = u64::MAX;
        if self.waiting_for_producer_id() {
            return ReadyCheck { ready, next_ready_check_delay_ms: next };
        }
        let exhausted = self.pool.queued() > 0;
        for (tp, q) in &self.queues {
            let Some(first) = q.front() else { continue };
            if self.muted.contains(tp) || self.window_full(tp, first) {
                continue;
            }
            let backing_off =
                first.attempts > 0 && first.last_attempt_ms + self.config.retry_backoff_ms > now_ms;
            let since = if first.attempts > 0 { first.last_attempt_ms } else { first.created_ms };
            let waited = now_ms.saturating_sub(since);
            let time_to_wait =
                if backing_off { self.config.retry_backoff_ms } else { self.config.linger_ms };
            let full = q.len() > 1 || first.is_full();
            let expired = waited >= time_to_wait;
            let sendable =
                full || expired || exhausted || self.closed || self.flushes_in_progress > 0;
            if sendable && !backing_off {
                ready.push(tp.clone());
            } else {
                next = next.min(time_to_wait.saturating_sub(waited));
            }
        }
        ReadyCheck { ready, next_ready_check_delay_ms: next }
    }

    /// Drains at most one batch per partition among `partitions` (those led by `node`), closing
    /// them, until adding the next would exceed `max_request_size` (the first always goes). Starts
    /// where the last drain for this node stopped, so no partition starves. Batches are in flight
    /// until [`complete`](Self::complete) or [`reenqueue`](Self::reenqueue). With idempotence, a
    /// partition with batches in flight to another node (its old leader) is skipped until they are
    /// back; see the module docs.
    pub fn drain(
        &mut self,
        node: i32,
        partitions: &[TopicPartition],
        max_request_size: usize,
        now_ms: u64,
    ) -> Vec<ProducerBatch<T>> {
        let mut out: Vec<ProducerBatch<T>> = Vec::new();
        if partitions.is_empty() || self.waiting_for_producer_id() {
            return out;
        }
        let mut size = 0usize;
        let start = self.drain_index.get(&node).copied().unwrap_or(0) % partitions.len();
        let mut index = start;
        loop {
            let tp = &partitions[index];
            let elsewhere = self.in_flight_to.get(tp).is_some_and(|&(to, _)| to != node);
            let window_full = self
                .queues
                .get(tp)
                .and_then(|q| q.front())
                .is_some_and(|f| self.window_full(tp, f));
            if !self.muted.contains(tp) && !elsewhere && !window_full {
                if let Some(q) = self.queues.get_mut(tp) {
                    if let Some(first) = q.front() {
                        let backing_off = first.attempts > 0
                            && first.last_attempt_ms + self.config.retry_backoff_ms > now_ms;
                        if !backing_off {
                            if !out.is_empty() && size + first.estimated_size() > max_request_size {
                                break;
                            }
                            if let Some(batch) = q.pop_front() {
                                if let Some(batch) = self.close_for_send(batch) {
                                    size += batch.estimated_size();
                                    self.in_flight.insert(batch.id);
                                    if self.config.idempotence {
                                        self.in_flight_to
                                            .entry(tp.clone())
                                            .or_insert((node, 0))
                                            .1 += 1;
                                    }
                                    out.push(batch);
                                }
                            }
                        }
                    }
                }
            }
            index = (index + 1) % partitions.len();
            if index == start {
                break;
            }
        }
        // The next drain for this node starts where this one stopped.
        self.drain_index.insert(node, index);
        out
    }

    /// Whether `first`, the head of `tp`'s queue, must wait: it is new (a retry already has its
    /// sequence) and [`UNACKED_BATCHES_MAX`] batches were stamped since the partition's oldest
    /// unacknowledged one, itself included (the broker may have appended them all after it).
    fn window_full(&self, tp: &TopicPartition, first: &ProducerBatch<T>) -> bool {
        if !self.config.idempotence || first.is_closed() {
            return false;
        }
        let Some(&oldest) = self.unacked.get(tp).and_then(|ids| ids.first()) else {
            return false;
        };
        let since_oldest =
            self.stamped.get(tp).map_or(0, |q| q.len() - q.partition_point(|&id| id < oldest));
        since_oldest >= UNACKED_BATCHES_MAX
    }

    /// Closes a batch leaving the queue: assigns producer state and sequence (idempotence).
    fn close_for_send(&mut self, mut batch: ProducerBatch<T>) -> Option<ProducerBatch<T>> {
        if batch.is_closed() {
            return Some(batch);
        }
        let (pid, epoch, seq) = if self.config.idempotence {
            (self.producer_id, self.producer_epoch, self.next_sequence(&batch.tp))
        } else {
            (NO_PRODUCER_ID, -1, NO_SEQUENCE)
        };
        match batch.close(pid, epoch, seq) {
            Ok(()) => {
                if self.config.idempotence {
                    self.next_sequence
                        .insert(batch.tp.clone(), increment_sequence(seq, batch.record_count));
                    self.unacked.entry(batch.tp.clone()).or_default().insert(batch.id);
                    self.stamped.entry(batch.tp.clone()).or_default().push_back(batch.id);
                }
                Some(batch)
            }
            Err(e) => {
                let thunks = std::mem::take(&mut batch.thunks);
                let (tp, id) = (batch.tp.clone(), batch.id);
                self.release(batch);
                self.failed.push(FailedBatch { tp, id, thunks, reason: FailReason::Build(e) });
                None
            }
        }
    }

    /// A drained batch is no longer in flight.
    fn landed(&mut self, batch: &ProducerBatch<T>) {
        if !self.in_flight.remove(&batch.id) {
            return;
        }
        if let Some((_, n)) = self.in_flight_to.get_mut(&batch.tp) {
            *n -= 1;
            if *n == 0 {
                self.in_flight_to.remove(&batch.tp);
            }
        }
    }

    fn release(&mut self, mut batch: ProducerBatch<T>) {
        self.landed(&batch);
        if let Some(ids) = self.unacked.get_mut(&batch.tp) {
            ids.remove(&batch.id);
            if ids.is_empty() {
                self.unacked.remove(&batch.tp);
            }
        }
        let oldest = self.unacked.get(&batch.tp).and_then(|ids| ids.first()).copied();
        if let Some(q) = self.stamped.get_mut(&batch.tp) {
            while q.front().is_some_and(|&id| oldest.is_none_or(|o| id < o)) {
                q.pop_front();
            }
            if q.is_empty() {
                self.stamped.remove(&batch.tp);
            }
        }
        if let Some(buf) = batch.take_buffer() {
            self.pool.deallocate(buf, batch.alloc_size);
        }
    }

    /// A drained batch is done (acknowledged or failed for good): its buffer returns to the pool
    /// and its records' thunks come back.
    pub fn complete(&mut self, mut batch: ProducerBatch<T>) -> Vec<T> {
        let thunks = std::mem::take(&mut batch.thunks);
        self.release(batch);
        thunks
    }

    /// Puts a drained batch back for a retry, ahead of newer batches; with sequence numbers, in
    /// sequence order among the other retried batches.
    pub fn reenqueue(&mut self, mut batch: ProducerBatch<T>, now_ms: u64) {
        self.landed(&batch);
        batch.attempts += 1;
        batch.last_attempt_ms = now_ms;
        let q = self.queues.entry(batch.tp.clone()).or_default();
        let at = if batch.has_sequence() {
            q.iter()
                .position(|b| !b.has_sequence() || b.base_sequence > batch.base_sequence)
                .unwrap_or(q.len())
        } else {
            0
        };
        q.insert(at, batch);
    }

    /// With `max.in.flight.requests.per.connection=1` (ordering without idempotence) the sender
    /// mutes a partition while it has a batch in flight.
    pub fn mute(&mut self, tp: &TopicPartition) {
        self.muted.insert(tp.clone());
    }

    pub fn unmute(&mut self, tp: &TopicPartition) {
        self.muted.remove(tp);
    }

    /// Removes queued (not in-flight) batches older than `delivery.timeout.ms`, oldest first per
    /// partition, returning their thunks; their buffers go back to the pool.
    pub fn expire(&mut self, now_ms: u64) -> Vec<FailedBatch<T>> {
        let timeout = self.config.delivery_timeout_ms;
        let mut expired = Vec::new();
        let mut gone = Vec::new();
        for q in self.queues.values_mut() {
            while q.front().is_some_and(|b| now_ms.saturating_sub(b.created_ms) >= timeout) {
                if let Some(b) = q.pop_front() {
                    gone.push(b);
                }
            }
        }
        for mut b in gone {
            let thunks = std::mem::take(&mut b.thunks);
            expired.push(FailedBatch {
                tp: b.tp.clone(),
                id: b.id,
                thunks,
                reason: FailReason::DeliveryTimeout,
            });
            self.release(b);
        }
        expired
    }

    /// Batches that failed to close (a codec error), to be failed by the producer.
    pub fn take_failed(&mut self) -> Vec<FailedBatch<T>> {
        std::mem::take(&mut self.failed)
    }

    /// Drops every queued batch (forced close), returning their thunks.
    pub fn abort_all(&mut self) -> Vec<FailedBatch<T>> {
        let queues = std::mem::take(&mut self.queues);
        let mut out = Vec::new();
        for (_, q) in queues {
            for mut b in q {
                let thunks = std::mem::take(&mut b.thunks);
                out.push(FailedBatch {
                    tp: b.tp.clone(),
                    id: b.id,
                    thunks,
                    reason: FailReason::Aborted,
                });
                self.release(b);
            }
        }
        out
    }

    /// `flush()`: every batch is ready until [`end_flush`](Self::end_flush).
    pub fn begin_flush(&mut self) {
        self.flushes_in_progress += 1;
    }

    pub fn end_flush(&mut self) {
        self.flushes_in_progress = self.flushes_in_progress.saturating_sub(1);
    }

    pub fn flush_in_progress(&self) -> bool {
        self.flushes_in_progress > 0
    }

    /// Refuses new records; every queued batch becomes ready.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Batches queued, not yet drained.
    pub fn has_undrained(&self) -> bool {
        self.queues.values().any(|q| !q.is_empty())
    }

    /// Batches drained and not completed.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Anything not yet completed (what `flush()` waits for).
    pub fn has_incomplete(&self) -> bool {
        self.has_undrained() || !self.in_flight.is_empty()
    }

    /// The partitions with a batch queued, in order.
    pub fn queued_partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.queues.iter().filter(|(_, q)| !q.is_empty()).map(|(tp, _)| tp)
    }

    /// Queued batches for a partition.
    pub fn queued_batches(&self, tp: &TopicPartition) -> usize {
        self.queues.get(tp).map_or(0, VecDeque::len)
    }
}

/// Appends a record, waiting up to `max_block` for buffer memory (`max.block.ms`): the lock is not
/// held while waiting. [`append_now`], then [`NeedsMemory::wait`] and [`Waited::append`] if it
/// lacked memory.
pub async fn append<T>(
    acc: &Mutex<RecordAccumulator<T>>,
    tp: &TopicPartition,
    record: RecordRef<'_>,
    thunk: T,
    max_block: Duration,
    now_ms: impl Fn() -> u64,
) -> Result<Appended, AppendError> {
    match append_now(acc, tp, record, thunk, &now_ms)? {
        Ok(done) => Ok(done),
        Err(need) => need.wait(max_block).await?.append(acc, tp, record, now_ms()),
    }
}

/// A new batch's buffer the pool could not give at once ([`append_now`]).
pub struct NeedsMemory<T> {
    size: usize,
    thunk: T,
    pool: Arc<BufferPool>,
}

impl<T> NeedsMemory<T> {
    /// The record's thunk, waiting with it.
    pub fn thunk(&self) -> &T {
        &self.thunk
    }
}

/// The part of [`append`] that needs no waiting: appends to an open batch with room, or to a new
/// one if the pool has its memory now; else hands back what a wait for that memory needs.
pub fn append_now<T>(
    acc: &Mutex<RecordAccumulator<T>>,
    tp: &TopicPartition,
    record: RecordRef<'_>,
    thunk: T,
    now_ms: impl Fn() -> u64,
) -> Result<Result<Appended, NeedsMemory<T>>, AppendError> {
    acc.lock().unwrap_or_else(|e| e.into_inner()).append_now(tp, record, thunk, now_ms)
}

impl<T> RecordAccumulator<T> {
    /// [`append_now`] on an accumulator already locked: the caller holds one lock for the
    /// whole append (the pool's `try_allocate` never waits; the pool is locked inside the
    /// accumulator's lock, as `deallocate` is).
    #[inline(always)]
    pub fn append_now(
        &mut self,
        tp: &TopicPartition,
        record: RecordRef<'_>,
        thunk: T,
        now_ms: impl Fn() -> u64,
    ) -> Result<Result<Appended, NeedsMemory<T>>, AppendError> {
        let (size, thunk) = match self.try_append(tp, record, thunk)? {
            TryAppend::Appended(done) => return Ok(Ok(done)),
            TryAppend::NeedsBuffer { size, thunk } => (size, thunk),
        };
        let Some(buffer) = self.pool.try_allocate(size)? else {
            return Ok(Err(NeedsMemory { size, thunk, pool: self.pool.clone() }));
        };
        Ok(Ok(self.append_with_buffer(tp, record, thunk, buffer, size, now_ms())?))
    }
}

impl<T> NeedsMemory<T> {
    /// Waits up to `max_block` for the memory; the append follows with [`Waited::append`], to
    /// the partition asked for first or to another (a producer whose sticky partition switched
    /// during the wait appends there: Kafka's `partitionChanged` retry).
    pub async fn wait(self, max_block: Duration) -> Result<Waited<T>, AppendError> {
        let NeedsMemory { size, thunk, pool } = self;
        let buffer = pool.wait_allocate(size, max_block).await?;
        Ok(Waited { size, thunk, buffer })
    }
}

/// A record and the new batch's buffer its wait for memory brought ([`NeedsMemory::wait`]).
pub struct Waited<T> {
    size: usize,
    thunk: T,
    buffer: BytesMut,
}

impl<T> Waited<T> {
    /// Appends to `tp`: to its open batch if that has room now (the buffer goes back to the
    /// pool), else to a new batch in the buffer.
    pub fn append(
        self,
        acc: &Mutex<RecordAccumulator<T>>,
        tp: &TopicPartition,
        record: RecordRef<'_>,
        now_ms: u64,
    ) -> Result<Appended, AppendError> {
        self.append_to(&mut acc.lock().unwrap_or_else(|e| e.into_inner()), tp, record, now_ms)
    }

    /// [`Waited::append`] to an accumulator already locked.
    pub fn append_to(
        self,
        acc: &mut RecordAccumulator<T>,
        tp: &TopicPartition,
        record: RecordRef<'_>,
        now_ms: u64,
    ) -> Result<Appended, AppendError> {
        let Waited { size, thunk, buffer } = self;
        let mut done = acc.append_with_buffer(tp, record, thunk, buffer, size, now_ms)?;
        done.waited_for_memory = true;
        Ok(done)
    }
}
