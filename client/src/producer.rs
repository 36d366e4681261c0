//! The producer: a [`Producer`] handle appends records to the [`RecordAccumulator`] and a sender
//! task turns ready batches into Produce requests per leader, after Kafka's `KafkaProducer` and
//! `Sender`:
//!
//! - `send` waits (up to `max.block.ms`) for the topic's metadata and for buffer memory, picks the
//!   partition (explicit, murmur2 of the key, or sticky), appends, and returns a future of the
//!   record's partition and offset.
//! - The sender loop: InitProducerId first when idempotent; `ready` → the leaders of the ready
//!   partitions → one `drain` (one Produce request) per such node that has fewer than
//!   `max.in.flight.requests.per.connection` requests in flight, taking the first batch of every
//!   partition the node leads, ready or not (Kafka's `drainBatchesForOneNode`); then at once a new
//!   pass when a request went out (Kafka's `poll(0)`), else a wait for the next batch's linger or
//!   a wake-up; each Produce runs in its own task; responses `complete` batches (callbacks in
//!   offset order) or `reenqueue` them on retriable errors (`retries`, `retry.backoff.ms`, bounded
//!   by `delivery.timeout.ms`); leader errors trigger a metadata refresh. `acks=0` completes on
//!   write with offset -1, as Kafka does.
//! - `flush` makes every batch ready and waits for all to complete; `close` drains and stops.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use net_model::{Network, Work};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use records::Header;
use thiserror::Error;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use kafka_types::Topic;

use crate::accumulator::{
    AccumulatorConfig, AppendError, Appended, FailReason, FailedBatch, NeedsMemory, ProducerBatch,
    RecordAccumulator, RecordRef, TopicPartition,
};
use crate::buffer_pool::BufferPool;
use crate::cluster::Cluster;
use crate::config::{Acks, ProducerConfig};
use crate::conn::{ConnConfig, ConnError, PendingResponse, DEFAULT_MAX_RESPONSE_BYTES};
use crate::errors::{self, ErrorCode};
use crate::partitioner::Partitioner;

/// Salt mixed into the seed for the producer's partitioner stream.
const PARTITIONER_SALT: u64 = 0x7072_6f64_7563_6572; // "producer"

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Shared: a producer sending many records to one topic clones a reference, not the name.
    pub topic: Topic,
    /// `None`: chosen by the partitioner (murmur2 of the key, or sticky for null keys).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// `None`: now (CreateTime).
    pub timestamp: Option<i64>,
}

impl Default for ProducerRecord {
    fn default() -> Self {
        Self {
            topic: Topic::from(""),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

impl ProducerRecord {
    pub fn new(topic: impl Into<Topic>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }

    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// A record to send, borrowed ([`Producer::send_now_token_ref`]): what a driver that writes its
/// values into a scratch buffer hands over without making a `Bytes` (and a topic reference) a
/// record. Copied into an owned [`ProducerRecord`] only when the send must wait (for metadata
/// or buffer memory); otherwise its bytes go straight into the batch.
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecordRef<'a> {
    pub topic: &'a Topic,
    /// As [`ProducerRecord::partition`].
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
    /// As [`ProducerRecord::timestamp`].
    pub timestamp: Option<i64>,
}

impl ProducerRecordRef<'_> {
    /// The owned record (its key, value and headers copied).
    pub fn to_record(&self) -> ProducerRecord {
        ProducerRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self.headers.to_vec(),
            timestamp: self.timestamp,
        }
    }
}

impl ProducerRecord {
    /// The record, borrowed.
    pub fn as_ref(&self) -> ProducerRecordRef<'_> {
        ProducerRecordRef {
            topic: &self.topic,
            partition: self.partition,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
            timestamp: self.timestamp,
        }
    }
}

/// A record [`Producer::send_now_with`] takes: owned, or borrowed and copied only if it must
/// wait.
trait Sendable {
    fn view(&self) -> ProducerRecordRef<'_>;
    fn into_owned(self) -> ProducerRecord;
}

impl Sendable for ProducerRecord {
    fn view(&self) -> ProducerRecordRef<'_> {
        self.as_ref()
    }
    fn into_owned(self) -> ProducerRecord {
        self
    }
}

impl Sendable for ProducerRecordRef<'_> {
    fn view(&self) -> ProducerRecordRef<'_> {
        *self
    }
    fn into_owned(self) -> ProducerRecord {
        self.to_record()
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with `acks=0`.
    pub offset: i64,
    /// The record's CreateTime, or the broker's LogAppendTime.
    pub timestamp: i64,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProduceError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("{topic}-{partition}: {name} (error code {code})")]
    Broker { topic: String, partition: i32, code: i16, name: &'static str },
    #[error("topic `{topic}` not present in metadata after max.block.ms ({max_block_ms} ms)")]
    MetadataTimeout { topic: String, max_block_ms: u64 },
    #[error(
        "partition {partition} of topic `{topic}` with {partitions} partitions does not exist"
    )]
    UnknownPartition { topic: String, partition: i32, partitions: usize },
    #[error("{topic}-{partition}: expired after delivery.timeout.ms ({delivery_timeout_ms} ms)")]
    DeliveryTimeout { topic: String, partition: i32, delivery_timeout_ms: u64 },
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("batch for {topic}-{partition} failed to build: {reason}")]
    Build { topic: String, partition: i32, reason: String },
    #[error("the producer is closed")]
    Closed,
    #[error("a send with a token needs a listener (Producer::listen)")]
    NoListener,
}

type Callback = Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send>;

/// Hears the completions of the records sent with a token ([`Producer::send_now_token`]):
/// Kafka's per-record callback without a closure made per record (a record-rate load generator
/// sends millions). A batch's records are heard together, in offset order, each with the token
/// its send gave; a node's batches in the order their requests were written (so one partition's
/// records in send order).
pub trait Listener: Send + Sync {
    fn completed(&self, done: Completed<'_>);
}

/// Records sent with a token that completed together, in offset order: a batch's, or the part
/// of it between records sent with a callback. Read in place from the batch's own list: no
/// record's result is built until [`Completed::iter`] yields it.
#[derive(Clone, Copy)]
pub struct Completed<'a> {
    thunks: &'a [Thunk],
    /// The first record's place in its batch (its offset's distance from the base offset).
    first: usize,
    result: Result<(i32, i64, i64), &'a ProduceError>,
}

impl<'a> Completed<'a> {
    pub fn len(&self) -> usize {
        self.thunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.thunks.is_empty()
    }

    /// Each record's token and how it ended, in offset order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Result<RecordMetadata, &'a ProduceError>)> {
        let Completed { thunks, first, result } = *self;
        thunks.iter().enumerate().map(move |(i, t)| {
            let OnDone::Token(token) = t.done else {
                unreachable!("a completed run holds records sent with a token only")
            };
            (token, record_result(result, first + i, t.timestamp))
        })
    }
}

/// How the record at `index` of a batch that settled with `result` ended (`timestamp`: its own,
/// used unless the log's append time replaced it).
fn record_result(
    result: Result<(i32, i64, i64), &ProduceError>,
    index: usize,
    timestamp: i64,
) -> Result<RecordMetadata, &ProduceError> {
    result.map(|(partition, base_offset, log_append_time)| RecordMetadata {
        partition,
        offset: if base_offset >= 0 { base_offset + index as i64 } else { -1 },
        timestamp: if log_append_time >= 0 { log_append_time } else { timestamp },
    })
}

/// What runs when a record completes.
enum OnDone {
    Callback(Callback),
    /// The producer's [`Listener`] hears this token.
    Token(u64),
}

/// What the accumulator holds per record.
pub struct Thunk {
    done: OnDone,
    timestamp: i64,
}

/// How [`Producer::send_now`] left a send.
#[must_use = "a send left to finish is finished by Producer::finish_send"]
pub enum SendNow {
    /// Appended, nothing left: the record's partition.
    Done(i32),
    /// Left for [`Producer::finish_send`].
    Left(SendLeft),
}

/// A send that needs waiting or an awaited charge to finish ([`Producer::finish_send`]).
pub struct SendLeft(Left);

/// What a [`SendLeft`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SendWait {
    /// Nothing: the record is appended, and the CPU charge of the batch it opened or filled is
    /// left (which may yield).
    Nothing,
    /// The topic's partitions (a metadata refresh), then the append.
    Metadata,
    /// Buffer memory for the new batch the record needs.
    Memory,
}

impl SendLeft {
    pub fn wait(&self) -> SendWait {
        match &self.0 {
            Left::Tail(_) => SendWait::Nothing,
            Left::Metadata { .. } => SendWait::Metadata,
            Left::Memory(_) => SendWait::Memory,
        }
    }
}

enum Left {
    /// Appended; the wake-up and CPU charges are left.
    Tail(Tail),
    /// The topic's partitions are not known yet: the whole send waits.
    Metadata { record: ProducerRecord, done: OnDone },
    /// The partition is chosen, and the pool has no memory for the new batch it needs.
    Memory(Box<Memory>),
}

struct Memory {
    record: ProducerRecord,
    partition: i32,
    need: NeedsMemory<Thunk>,
}

/// What follows an append ([`Producer::tail`]).
#[derive(Debug, Clone, Copy)]
struct Tail {
    partition: i32,
    /// It waited for buffer memory.
    woken: bool,
    /// It opened or filled a batch.
    new_or_full: bool,
    full: bool,
}

/// The accumulator's view of `record`, stamped `timestamp`.
fn record_ref<'a>(record: &ProducerRecordRef<'a>, timestamp: i64) -> RecordRef<'a> {
    RecordRef { timestamp, key: record.key, value: record.value, headers: record.headers }
}

impl std::fmt::Debug for Thunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thunk").field("timestamp", &self.timestamp).finish()
    }
}

/// Resolves to the record's [`RecordMetadata`] once acknowledged (or its error).
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(ProduceError::Closed)))
    }
}

struct Shared {
    cfg: ProducerConfig,
    cluster: Arc<Cluster>,
    /// The accumulator and what a send changes with it: one lock a send.
    acc: Mutex<Appending>,
    /// Wakes the sender (notify_one keeps a permit: no lost wake-ups).
    wake: Notify,
    /// Signalled after every completion (flush waits on it).
    progress: Notify,
    start: Instant,
    /// Produce requests in flight per node.
    inflight: Mutex<BTreeMap<i32, usize>>,
    topics: Mutex<BTreeSet<String>>,
    need_metadata: AtomicBool,
    closing: AtomicBool,
    /// Batches taken out of the accumulator whose callbacks have not run yet (flush waits).
    finishing: AtomicUsize,
    /// Kafka's `record-retry-total`: records in batches sent again after a retriable error.
    record_retries: AtomicU64,
    /// Per error name: partition batches a Produce attempt failed with (see [`Producer::error_counts`]).
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Hears the records sent with a token ([`Producer::listen`]).
    listener: OnceLock<Arc<dyn Listener>>,
    /// Per node, the Produce requests written and not yet settled, settled in the order they were
    /// written ([`settle_in_order`]).
    settle_order: Mutex<BTreeMap<i32, SettleOrder>>,
}

/// One node's Produce requests in write order: a response that comes (or is polled) before an
/// earlier request's waits for it, as Kafka's producer handles one connection's responses in
/// order (so one partition's callbacks run in send order).
#[derive(Default)]
struct SettleOrder {
    next_ticket: u64,
    next_to_settle: u64,
    parked: BTreeMap<u64, (Vec<ProducerBatch<Thunk>>, ProduceOutcome)>,
}

/// A Produce request's answer: each partition's acknowledgement, or why there is none.
type ProduceOutcome = Result<PartitionAcks, ConnError>;

/// What a send changes, under one lock: the accumulator, the sticky partitioner (Kafka's
/// `RecordAccumulator` keeps its built-in partitioner's per-topic state too, KIP-794), the
/// appends not yet paid for, and the last topic's partition count. A record's send locks it
/// once: an uncontended lock is two atomic read-modify-writes (~6 ns each on the 2-core
/// machine), and the send path's five locks and two atomic counters (with the simulator's
/// second lock of its history) were ~9 % of a record-rate simulation's CPU. Dereferences to
/// the accumulator.
struct Appending {
    acc: RecordAccumulator<Thunk>,
    partitioner: Partitioner<ChaCha8Rng>,
    /// Records (and their key and value bytes) appended since the appending thread last paid
    /// for its work ([`Shared::pay_for_appends`]).
    unpaid_append_records: u64,
    unpaid_append_bytes: u64,
    /// The partition count of the topic last sent to, as of a metadata generation.
    known: Option<KnownPartitions>,
    /// The partition last appended to: a send to it makes no new [`TopicPartition`] (a topic
    /// name's clone and drop, two atomic reference-count changes).
    last_tp: Option<TopicPartition>,
}

/// `last` if it is `topic`'s `partition`, else made so.
fn last_tp<'a>(
    last: &'a mut Option<TopicPartition>,
    topic: &Topic,
    partition: i32,
) -> &'a TopicPartition {
    let same = matches!(last, Some(tp) if tp.partition == partition && tp.topic == *topic);
    if !same {
        *last = Some(TopicPartition::new(topic.clone(), partition));
    }
    last.as_ref().expect("set above")
}

/// [`Shared::known_partitions`]'s answer for `topic` while the metadata is at `generation`.
struct KnownPartitions {
    generation: u64,
    topic: Topic,
    count: Option<usize>,
}

impl std::ops::Deref for Appending {
    type Target = RecordAccumulator<Thunk>;
    fn deref(&self) -> &Self::Target {
        &self.acc
    }
}

impl std::ops::DerefMut for Appending {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.acc
    }
}

impl Appending {
    /// [`Shared::known_partitions`], asked of the metadata only when it or the topic changed
    /// since the last send.
    fn known_partitions(&mut self, sh: &Shared, topic: &Topic) -> Option<usize> {
        // Read before the metadata: an update in between leaves an older generation with the
        // newer answer, asked again at the next send.
        let generation = sh.cluster.metadata_generation();
        if let Some(k) = &self.known {
            if k.generation == generation && k.topic == *topic {
                return k.count;
            }
        }
        let count = sh.known_partitions(topic);
        self.known = Some(KnownPartitions { generation, topic: topic.clone(), count });
        count
    }

    /// The record's own partition if it is one of `count`, else the partitioner's choice (the
    /// key's hash, or the sticky partition; a new sticky one among the partitions with a leader,
    /// which are listed only then: once per `batch.size` bytes, not per record).
    fn choose_partition(
        &mut self,
        sh: &Shared,
        record: &ProducerRecordRef<'_>,
        count: usize,
    ) -> Result<i32, ProduceError> {
        let key = record.key;
        match record.partition {
            Some(p) if p < 0 || p as usize >= count => Err(ProduceError::UnknownPartition {
                topic: record.topic.to_string(),
                partition: p,
                partitions: count,
            }),
            Some(p) => Ok(p),
            None => {
                let (topic, partitioner) = (record.topic, &mut self.partitioner);
                partitioner.without_draw(topic, key, count as u32).or_else(|| {
                    let available = sh.available_partitions(topic);
                    partitioner.partition(topic, key, count as u32, &available)
                })
            }
            .map(|p| p as i32)
            .ok_or_else(|| ProduceError::UnknownPartition {
                topic: record.topic.to_string(),
                partition: -1,
                partitions: 0,
            }),
        }
    }

    /// The bookkeeping after an append (the sticky partitioner's count, the unpaid append
    /// costs); what is left to await, if anything.
    fn note_append(
        &mut self,
        record: &ProducerRecordRef<'_>,
        partition: i32,
        appended: &Appended,
    ) -> Option<Tail> {
        if record.partition.is_none() {
            // The batch appended to is its queue's last: Kafka's `allBatchesFull(dq)`.
            self.partitioner.on_append(
                record.topic,
                record.key,
                partition as u32,
                appended.appended_bytes,
                appended.batch_is_full,
            );
        }
        let record_bytes = record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len);
        self.unpaid_append_records += 1;
        self.unpaid_append_bytes += record_bytes as u64;
        let tail = Tail {
            partition,
            woken: appended.waited_for_memory,
            new_or_full: appended.batch_is_full || appended.new_batch_created,
            full: appended.batch_is_full,
        };
        (tail.woken || tail.new_or_full).then_some(tail)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wall-clock milliseconds since the epoch (virtual under madsim).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    /// Charges the appending thread's CPU (`Work::ClientAppendRecords`, `ClientAppendBytes`)
    /// for the records appended since the last charge: once a batch, when one fills or a new
    /// one opens, so the simulator's cost stays per batch, not per record.
    async fn pay_for_appends(&self) {
        let (records, bytes) = {
            let mut a = lock(&self.acc);
            (
                std::mem::take(&mut a.unpaid_append_records),
                std::mem::take(&mut a.unpaid_append_bytes),
            )
        };
        let cost = &self.cluster.config().cost;
        cost.spend(Work::ClientAppendRecords, records).await;
        cost.spend(Work::ClientAppendBytes, bytes).await;
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The partition count of `topic`; `None` while the topic is unknown or has no partitions.
    fn known_partitions(&self, topic: &str) -> Option<usize> {
        self.cluster.with_metadata(|m| {
            m.topic(topic).filter(|t| !t.partitions.is_empty()).map(|t| t.partitions.len())
        })
    }

    /// `topic`'s partitions that have a leader (what a new sticky partition is drawn from).
    fn available_partitions(&self, topic: &str) -> Vec<u32> {
        self.cluster.with_metadata(|m| {
            m.topic(topic).map_or_else(Vec::new, |t| {
                t.partitions.iter().filter(|p| p.leader >= 0).map(|p| p.partition as u32).collect()
            })
        })
    }

    /// Runs the callbacks of a batch's records, in offset order; the listener hears each run of
    /// records sent with a token at once, read in place from `thunks`.
    fn finish(&self, mut thunks: Vec<Thunk>, result: Settled) {
        let result = result.as_ref().map(|&settled| settled);
        let mut run = 0;
        for i in 0..thunks.len() {
            if matches!(thunks[i].done, OnDone::Token(_)) {
                continue;
            }
            self.tell(Completed { thunks: &thunks[run..i], first: run, result });
            run = i + 1;
            // Taken out (no run reads this record again: the next starts after it).
            let done = std::mem::replace(&mut thunks[i].done, OnDone::Token(u64::MAX));
            if let OnDone::Callback(cb) = done {
                cb(record_result(result, i, thunks[i].timestamp).map_err(Clone::clone));
            }
        }
        self.tell(Completed { thunks: &thunks[run..], first: run, result });
    }

    /// The listener hears `done`, if it holds anything.
    fn tell(&self, done: Completed<'_>) {
        if done.is_empty() {
            return;
        }
        let listener = self.listener.get().expect("a send with a token has a listener");
        listener.completed(done);
    }

    fn fail_batches(&self, failed: Vec<FailedBatch<Thunk>>) {
        for f in failed {
            let err = match f.reason {
                FailReason::DeliveryTimeout => ProduceError::DeliveryTimeout {
                    topic: f.tp.topic.to_string(),
                    partition: f.tp.partition,
                    delivery_timeout_ms: self.cfg.delivery_timeout_ms,
                },
                FailReason::Build(e) => ProduceError::Build {
                    topic: f.tp.topic.to_string(),
                    partition: f.tp.partition,
                    reason: e.to_string(),
                },
                FailReason::Aborted => ProduceError::Closed,
            };
            self.finish(f.thunks, Err(err));
        }
    }
}

/// A Kafka producer. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct Producer {
    shared: Arc<Shared>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish()
    }
}

impl Producer {
    /// Starts a producer over `net`. `seed` drives the sticky partitioner (pass the run's seed; any
    /// value on real IO).
    pub fn new(cfg: ProducerConfig, net: Arc<dyn Network>, seed: u64) -> Self {
        Self::with_cost_hook(cfg, net, seed, Arc::new(net_model::RealCpu))
    }

    /// Like [`new`](Self::new), charging the client's CPU work (per request, compression and
    /// CRC32C per byte) to `cost`: the client host's core pool in the simulator.
    pub fn with_cost_hook(
        cfg: ProducerConfig,
        net: Arc<dyn Network>,
        seed: u64,
        cost: Arc<dyn net_model::CostHook>,
    ) -> Self {
        let conn_cfg = ConnConfig {
            client_id: if cfg.client_id.is_empty() {
                "loglab-producer".into()
            } else {
                cfg.client_id.clone()
            },
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            max_in_flight: cfg.max_in_flight_requests_per_connection as usize,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: Duration::from_millis(cfg.request_timeout_ms.min(10_000)),
            cost,
        };
        let cluster = Arc::new(Cluster::new(net, cfg.bootstrap_servers.clone(), conn_cfg));
        Self::with_cluster(cfg, cluster, seed)
    }

    /// Starts a producer sharing an existing [`Cluster`].
    pub fn with_cluster(cfg: ProducerConfig, cluster: Arc<Cluster>, seed: u64) -> Self {
        let pool = Arc::new(BufferPool::new(cfg.buffer_memory, cfg.batch_size));
        let acc = RecordAccumulator::new(AccumulatorConfig::from(&cfg), pool);
        let partitioner = Partitioner::new(
            ChaCha8Rng::seed_from_u64(seed ^ PARTITIONER_SALT),
            cfg.batch_size,
            cfg.partitioner_ignore_keys,
        );
        let appending = Appending {
            acc,
            partitioner,
            unpaid_append_records: 0,
            unpaid_append_bytes: 0,
            known: None,
            last_tp: None,
        };
        let shared = Arc::new(Shared {
            cfg,
            cluster,
            acc: Mutex::new(appending),
            wake: Notify::new(),
            progress: Notify::new(),
            start: Instant::now(),
            inflight: Mutex::new(BTreeMap::new()),
            topics: Mutex::new(BTreeSet::new()),
            need_metadata: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            finishing: AtomicUsize::new(0),
            record_retries: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            listener: OnceLock::new(),
            settle_order: Mutex::new(BTreeMap::new()),
        });
        let handle = tokio::spawn(run_sender(Arc::clone(&shared)));
        Self { shared, sender: Mutex::new(Some(handle)) }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.cfg
    }

    /// Kafka's `record-retry-total`: records re-sent after retriable errors so far.
    pub fn record_retry_total(&self) -> u64 {
        self.shared.record_retries.load(Ordering::Relaxed)
    }

    /// Per error name, how many partition batches a Produce attempt answered with it so far,
    /// retried or not: the broker's codes by Kafka name (`NOT_ENOUGH_REPLICAS`,
    /// `NOT_LEADER_OR_FOLLOWER`, ...) and, for attempts that got no answer, librdkafka's local
    /// names (`_TRANSPORT`: the connection failed or closed, `_TIMED_OUT`: no response within
    /// `request.timeout.ms`). A batch given up after `delivery.timeout.ms` is not an attempt's
    /// answer and is not counted here (its callback gets the error).
    pub fn error_counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.shared.errors).clone()
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.shared.cluster
    }

    /// Sends a record; the returned future resolves when it is acknowledged. The call itself waits
    /// (up to `max.block.ms`) for metadata and buffer memory.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let (tx, rx) = oneshot::channel();
        self.send_with_callback(
            record,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .await?;
        Ok(DeliveryFuture { rx })
    }

    /// Like [`send`](Self::send), with a callback run by the producer when the record completes.
    /// Returns the partition the record was appended to.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send>,
    ) -> Result<i32, ProduceError> {
        match self.send_now(record, callback)? {
            SendNow::Done(partition) => Ok(partition),
            SendNow::Left(left) => self.finish_send(left).await,
        }
    }

    /// Makes `listener` hear the records sent with a token ([`send_now_token`](Self::send_now_token)).
    /// A producer has one listener: a second call is refused, returning the listener given.
    pub fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), Arc<dyn Listener>> {
        self.shared.listener.set(listener)
    }

    /// [`send_now`](Self::send_now), with the producer's [`Listener`] hearing `token` when the
    /// record completes instead of a callback made for it. Refused (`NoListener`) unless
    /// [`listen`](Self::listen) was called. The listener never hears anything from within this
    /// call (only the producer's tasks tell it), so a caller may hold what its listener locks.
    pub fn send_now_token(
        &self,
        record: ProducerRecord,
        token: u64,
    ) -> Result<SendNow, ProduceError> {
        self.send_now_tokened(record, token)
    }

    /// [`send_now_token`](Self::send_now_token) with the record borrowed: its bytes are copied
    /// into the batch, or into an owned record if the send must wait.
    pub fn send_now_token_ref(
        &self,
        record: ProducerRecordRef<'_>,
        token: u64,
    ) -> Result<SendNow, ProduceError> {
        self.send_now_tokened(record, token)
    }

    /// The part of [`send_with_callback`](Self::send_with_callback) that needs no waiting, as
    /// Kafka's `send` is a plain call unless metadata or buffer memory is missing: appends the
    /// record if its topic's partitions are known and its batch has room (or the pool has free
    /// memory for a new one). What is left — the metadata or memory wait, or the appends' CPU
    /// charge when a batch was opened or filled — is [`finish_send`](Self::finish_send)'s, to
    /// be awaited at once: together the two do what `send_with_callback` does, in its order.
    /// A record-rate driver calls this directly and skips a future per record.
    pub fn send_now(
        &self,
        record: ProducerRecord,
        callback: Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send>,
    ) -> Result<SendNow, ProduceError> {
        self.send_now_with(record, OnDone::Callback(callback))
    }

    /// A send whose completion the listener hears by `token`.
    fn send_now_tokened<R: Sendable>(
        &self,
        record: R,
        token: u64,
    ) -> Result<SendNow, ProduceError> {
        if self.shared.listener.get().is_none() {
            return Err(ProduceError::NoListener);
        }
        self.send_now_with(record, OnDone::Token(token))
    }

    /// [`send_now`](Self::send_now) with what runs when the record completes.
    fn send_now_with<R: Sendable>(&self, record: R, done: OnDone) -> Result<SendNow, ProduceError> {
        let sh = &self.shared;
        if sh.closing.load(Ordering::SeqCst) {
            return Err(ProduceError::Closed);
        }
        let mut guard = lock(&sh.acc);
        let a = &mut *guard;
        let Some(count) = a.known_partitions(sh, record.view().topic) else {
            drop(guard);
            let record = record.into_owned();
            return Ok(SendNow::Left(SendLeft(Left::Metadata { record, done })));
        };
        let view = record.view();
        let partition = a.choose_partition(sh, &view, count)?;
        let timestamp = view.timestamp.unwrap_or_else(wall_clock_ms);
        let tp = last_tp(&mut a.last_tp, view.topic, partition);
        let thunk = Thunk { done, timestamp };
        let rec = record_ref(&view, timestamp);
        let appended = match a.acc.append_now(tp, rec, thunk, || sh.now_ms())? {
            Ok(appended) => appended,
            Err(need) => {
                drop(guard);
                let memory = Memory { record: record.into_owned(), partition, need };
                return Ok(SendNow::Left(SendLeft(Left::Memory(Box::new(memory)))));
            }
        };
        Ok(match a.note_append(&view, partition, &appended) {
            None => SendNow::Done(partition),
            Some(tail) => SendNow::Left(SendLeft(Left::Tail(tail))),
        })
    }

    /// Finishes a send [`send_now`](Self::send_now) left: returns the record's partition.
    pub async fn finish_send(&self, left: SendLeft) -> Result<i32, ProduceError> {
        match left.0 {
            Left::Tail(tail) => {
                self.tail(tail).await;
                Ok(tail.partition)
            }
            Left::Metadata { record, done } => self.send_waiting(record, done).await,
            Left::Memory(m) => {
                let Memory { record, partition, need } = *m;
                let max_block = Duration::from_millis(self.shared.cfg.max_block_ms);
                let (partition, appended) =
                    self.append_after_memory(&record, partition, need, max_block).await?;
                let tail =
                    lock(&self.shared.acc).note_append(&record.as_ref(), partition, &appended);
                if let Some(tail) = tail {
                    self.tail(tail).await;
                }
                Ok(partition)
            }
        }
    }

    /// The whole send when the topic's metadata was missing: waits for it (up to
    /// `max.block.ms`), then appends with what is left of that time for buffer memory.
    async fn send_waiting(
        &self,
        record: ProducerRecord,
        done: OnDone,
    ) -> Result<i32, ProduceError> {
        let sh = &self.shared;
        let max_block = Duration::from_millis(sh.cfg.max_block_ms);
        let until = Instant::now() + max_block;
        let partition = loop {
            if let Some(count) = sh.known_partitions(&record.topic) {
                break lock(&sh.acc).choose_partition(sh, &record.as_ref(), count)?;
            }
            self.wait_on_metadata(&record.topic, until).await?;
        };
        let timestamp = record.timestamp.unwrap_or_else(wall_clock_ms);
        let tp = TopicPartition::new(record.topic.clone(), partition);
        let rec = record_ref(&record.as_ref(), timestamp);
        let thunk = Thunk { done, timestamp };
        let now = lock(&sh.acc).acc.append_now(&tp, rec, thunk, || sh.now_ms())?;
        let (partition, appended) = match now {
            Ok(appended) => (partition, appended),
            Err(need) => {
                let remaining = until.saturating_duration_since(Instant::now());
                self.append_after_memory(&record, partition, need, remaining).await?
            }
        };
        let tail = lock(&sh.acc).note_append(&record.as_ref(), partition, &appended);
        if let Some(tail) = tail {
            self.tail(tail).await;
        }
        Ok(partition)
    }

    /// Waits up to `max_block` for the memory a new batch of `partition` lacked, then appends:
    /// the record's partition and the append. A sticky record whose partition the partitioner
    /// left during the wait (other records' appends decided a switch) goes to the partition it
    /// would be given now, as Kafka's `RecordAccumulator.append` retries when
    /// `partitionChanged` after its allocation.
    async fn append_after_memory(
        &self,
        record: &ProducerRecord,
        partition: i32,
        need: NeedsMemory<Thunk>,
        max_block: Duration,
    ) -> Result<(i32, Appended), ProduceError> {
        let sh = &self.shared;
        let rec = record_ref(&record.as_ref(), need.thunk().timestamp);
        let waited = need.wait(max_block).await?;
        let partition = self.partition_after_wait(record, partition)?;
        let tp = TopicPartition::new(record.topic.clone(), partition);
        let now_ms = sh.now_ms();
        Ok((partition, waited.append_to(&mut lock(&sh.acc), &tp, rec, now_ms)?))
    }

    /// `record`'s partition after a wait for memory: the one chosen before unless the sticky
    /// partitioner has moved on from it. A record with a partition of its own or a key's keeps
    /// it (in Kafka only the built-in partitioner's records carry partition info to compare).
    fn partition_after_wait(
        &self,
        record: &ProducerRecord,
        partition: i32,
    ) -> Result<i32, ProduceError> {
        let sh = &self.shared;
        let keyed = record.key.is_some() && !sh.cfg.partitioner_ignore_keys;
        if record.partition.is_some() || keyed {
            return Ok(partition);
        }
        let Some(count) = sh.known_partitions(&record.topic) else { return Ok(partition) };
        let mut a = lock(&sh.acc);
        let now = a.partitioner.without_draw(&record.topic, record.key.as_deref(), count as u32);
        if now == Some(partition as u32) {
            return Ok(partition);
        }
        a.choose_partition(sh, &record.as_ref(), count)
    }

    /// What follows an append that waited for memory, or opened or filled a batch.
    async fn tail(&self, tail: Tail) {
        let sh = &self.shared;
        if tail.woken {
            // The appending thread was parked on `buffer.memory` and woken by a completion.
            sh.cluster.config().cost.spend(Work::Wakeup, 0).await;
        }
        if tail.new_or_full {
            sh.wake.notify_one();
            sh.pay_for_appends().await;
        }
        if tail.full {
            // Cooperative: on a single-threaded runtime (and in the simulator) a tight send loop
            // would otherwise keep the sender task from running until memory runs out.
            tokio::task::yield_now().await;
        }
    }

    /// Refreshes metadata until `topic` shows up with partitions ([`Shared::known_partitions`]
    /// is the rule), or `deadline`.
    async fn wait_on_metadata(&self, topic: &str, deadline: Instant) -> Result<(), ProduceError> {
        let sh = &self.shared;
        let known = || sh.known_partitions(topic).map(|_| ());
        if let Some(r) = known() {
            return Ok(r);
        }
        lock(&sh.topics).insert(topic.to_string());
        loop {
            let topics = [topic.to_string()];
            let left = deadline.saturating_duration_since(Instant::now());
            let _ =
                tokio::time::timeout(left, sh.cluster.refresh_metadata(Some(&topics), true)).await;
            if let Some(r) = known() {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(ProduceError::MetadataTimeout {
                    topic: topic.to_string(),
                    max_block_ms: sh.cfg.max_block_ms,
                });
            }
            let backoff = Duration::from_millis(sh.cfg.retry_backoff_ms.max(1));
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Sends everything buffered now and waits until every record sent before (and during) the
    /// call has completed.
    pub async fn flush(&self) {
        let sh = &self.shared;
        lock(&sh.acc).begin_flush();
        sh.wake.notify_one();
        // The appending thread's work for the records of the batch still open.
        sh.pay_for_appends().await;
        loop {
            let notified = sh.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = lock(&sh.acc).has_incomplete() || sh.finishing.load(Ordering::SeqCst) > 0;
            if !busy {
                break;
            }
            notified.await;
        }
        lock(&sh.acc).end_flush();
    }

    /// Refuses new records, sends what is buffered, waits for the sender to finish, closes the
    /// connections.
    pub async fn close(&self) {
        self.shutdown(None).await
    }

    /// Like [`close`](Self::close), but after `timeout` the records still buffered fail with
    /// [`ProduceError::Closed`].
    pub async fn close_timeout(&self, timeout: Duration) {
        self.shutdown(Some(timeout)).await
    }

    async fn shutdown(&self, timeout: Option<Duration>) {
        let sh = &self.shared;
        sh.closing.store(true, Ordering::SeqCst);
        lock(&sh.acc).close();
        sh.wake.notify_one();
        let handle = lock(&self.sender).take();
        if let Some(mut handle) = handle {
            let done = match timeout {
                None => {
                    let _ = (&mut handle).await;
                    true
                }
                Some(t) => tokio::time::timeout(t, &mut handle).await.is_ok(),
            };
            if !done {
                handle.abort();
                let aborted = lock(&sh.acc).abort_all();
                sh.fail_batches(aborted);
            }
        }
        sh.cluster.close().await;
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        lock(&self.shared.acc).close();
        self.shared.wake.notify_one();
    }
}

async fn init_producer_id(sh: &Shared) -> Result<(i64, i16), ProduceError> {
    let conn = sh.cluster.any_conn().await?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = conn.request(&req).await?;
    if resp.error_code != ErrorCode::NONE {
        return Err(ProduceError::Broker {
            topic: String::new(),
            partition: -1,
            code: resp.error_code,
            name: errors::error_name(resp.error_code),
        });
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
}

async fn run_sender(sh: Arc<Shared>) {
    let backoff = Duration::from_millis(sh.cfg.retry_backoff_ms.max(1));
    let max_in_flight = sh.cfg.max_in_flight_requests_per_connection.max(1) as usize;
    let mut has_pid = !sh.cfg.enable_idempotence;
    loop {
        let closing = sh.closing.load(Ordering::SeqCst);
        if sh.cfg.enable_idempotence && lock(&sh.acc).waiting_for_producer_id() {
            // At start, or after a broker lost this producer's state (see `finish_produce`).
            has_pid = false;
        }
        if !has_pid {
            if !lock(&sh.acc).has_incomplete() && closing {
                break;
            }
            if lock(&sh.acc).in_flight_count() > 0 {
                // A new producer id restarts the sequences: wait until every request sent
                // under the old one has come back (each is bounded by request.timeout.ms).
                tokio::select! {
                    biased;
                    _ = sh.wake.notified() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
            match init_producer_id(&sh).await {
                Ok((id, epoch)) => {
                    lock(&sh.acc).set_producer_id_and_epoch(id, epoch);
                    has_pid = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "InitProducerId failed; retrying");
                    let now = sh.now_ms();
                    let expired = {
                        let mut acc = lock(&sh.acc);
                        sh.finishing.fetch_add(1, Ordering::SeqCst);
                        acc.expire(now)
                    };
                    sh.fail_batches(expired);
                    sh.finishing.fetch_sub(1, Ordering::SeqCst);
                    sh.progress.notify_waiters();
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        if sh.need_metadata.swap(false, Ordering::SeqCst) {
            let topics: Vec<String> = lock(&sh.topics).iter().cloned().collect();
            if let Err(e) = sh.cluster.refresh_metadata(Some(&topics), false).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        let now = sh.now_ms();
        // The partitions with batches queued are listed only when some node is ready (most
        // passes, woken by a new batch, find none).
        let (check, queued) = {
            let acc = lock(&sh.acc);
            let check = acc.ready(now);
            let queued: Vec<TopicPartition> = if check.ready.is_empty() {
                Vec::new()
            } else {
                acc.queued_partitions().cloned().collect()
            };
            (check, queued)
        };
        let mut by_node: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut unsendable = false;
        sh.cluster.with_metadata(|m| {
            let leader = |tp: &TopicPartition| {
                m.topic(&tp.topic)
                    .and_then(|t| t.leader(tp.partition))
                    .filter(|l| m.brokers.contains_key(l))
            };
            for tp in &check.ready {
                match leader(tp) {
                    Some(l) => {
                        by_node.entry(l).or_default();
                    }
                    None => {
                        unsendable = true;
                        lock(&sh.topics).insert(tp.topic.to_string());
                    }
                }
            }
            // A ready node takes the first batch of every partition it leads, ready or not
            // (Kafka's `drainBatchesForOneNode` walks `partitionsForNode`).
            for tp in queued {
                if let Some(tps) = leader(&tp).and_then(|l| by_node.get_mut(&l)) {
                    tps.push(tp);
                }
            }
        });
        if unsendable {
            sh.need_metadata.store(true, Ordering::SeqCst);
        }
        // One request per ready node per pass, as Kafka's `Sender` drains each node once per
        // `sendProducerData`; a partition's next batch waits for the next pass's ready check.
        // (Draining a node again until nothing was left also took batches opened by records
        // appended during this pass's awaits, age 0 and not ready: with a record handed over
        // at a time, three times the Produce requests of Kafka's client, ~2-record batches.)
        let mut sent_any = false;
        for (node, tps) in by_node {
            if lock(&sh.inflight).get(&node).copied().unwrap_or(0) >= max_in_flight {
                continue;
            }
            sent_any |= send_to_node(&sh, node, &tps, now, max_in_flight).await;
        }
        let (expired, failed) = {
            let mut acc = lock(&sh.acc);
            sh.finishing.fetch_add(1, Ordering::SeqCst);
            (acc.expire(now), acc.take_failed())
        };
        let any = !expired.is_empty() || !failed.is_empty();
        sh.fail_batches(expired);
        sh.fail_batches(failed);
        sh.finishing.fetch_sub(1, Ordering::SeqCst);
        if any {
            sh.progress.notify_waiters();
        }
        let idle = lock(&sh.inflight).values().all(|&n| n == 0);
        if closing && idle && !lock(&sh.acc).has_incomplete() {
            break;
        }
        if sent_any {
            // Kafka's `poll(0)` when nodes were ready: check again at once (a partition with a
            // second batch queued is ready now; nothing sent means nothing changed).
            continue;
        }
        let mut wait_ms = check.next_ready_check_delay_ms.min(1_000);
        if unsendable {
            wait_ms = wait_ms.min(backoff.as_millis() as u64);
        }
        tokio::select! {
            biased;
            _ = sh.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
    }
    sh.progress.notify_waiters();
}

/// Drains `node`'s partitions `tps` into one Produce request (at most one batch each, up to
/// `max.request.size`), pays the client's CPU for its batches and writes it; its response is
/// awaited in a task of its own. Whether a request went out (`false`: nothing to drain, or no
/// connection, in which case its batches are back in their queues).
async fn send_to_node(
    sh: &Arc<Shared>,
    node: i32,
    tps: &[TopicPartition],
    now: u64,
    max_in_flight: usize,
) -> bool {
    let batches = {
        let mut acc = lock(&sh.acc);
        let b = acc.drain(node, tps, sh.cfg.max_request_size, now);
        for batch in &b {
            // A partition's first batch of a producer epoch (sequence 0) travels alone: a
            // broker that knows nothing of this producer takes the first sequence it sees as
            // the start, so a later batch overtaking it (on a fresh connection, or once the
            // leader is ready) would leave it out of order for good.
            if max_in_flight == 1 || (sh.cfg.enable_idempotence && batch.base_sequence() == 0) {
                acc.mute(&batch.tp);
            }
        }
        b
    };
    if batches.is_empty() {
        return false;
    }
    *lock(&sh.inflight).entry(node).or_insert(0) += 1;
    // Client CPU per batch: encoding its records, compression of the records, CRC32C of the
    // batch.
    let cost = sh.cluster.config().cost.clone();
    let work: Vec<_> = batches
        .iter()
        .map(|b| {
            (
                crate::conn::first_batch_codec(b.bytes()),
                b.uncompressed_bytes() as u64,
                b.bytes().len() as u64,
                u64::from(b.record_count()),
            )
        })
        .collect();
    for (codec, uncompressed, len, records) in work {
        cost.spend(net_model::Work::ClientRecords, records).await;
        if let Some(codec) = codec {
            cost.spend(net_model::Work::Compress(codec), uncompressed).await;
            cost.spend(net_model::Work::CompressRecords(codec), records).await;
        }
        cost.spend(net_model::Work::Crc32c, len).await;
    }
    // Written here, in drain order (idempotent sequences must reach the broker in order); the
    // response is awaited in its own task.
    let (req, keys) = build_produce(sh, &batches);
    let started = start_produce(sh, node, req, &keys).await;
    if matches!(started, Started::Done(Err(_))) {
        // Not written (no connection): settle it here, so its batches are back in the queue,
        // in sequence order, before anything behind them is drained. A later batch must never
        // reach a broker first: one that knows nothing of this producer would take its
        // sequence as the start (Kafka's client drains a node only once its connection is
        // ready, to the same end).
        finish_produce(Arc::clone(sh), node, batches, started, None).await;
        return false;
    }
    // Only a request on the wire takes its turn (one not written settles at once).
    let ticket = matches!(started, Started::Pending(_)).then(|| {
        let mut order = lock(&sh.settle_order);
        let o = order.entry(node).or_default();
        o.next_ticket += 1;
        o.next_ticket - 1
    });
    tokio::spawn(finish_produce(Arc::clone(sh), node, batches, started, ticket));
    true
}

/// (topic, partition) → (error code, base offset, log append time).
type PartitionAcks = BTreeMap<(String, i32), (i16, i64, i64)>;
/// A batch's outcome: (partition, base offset, log append time) or its error.
type Settled = Result<(i32, i64, i64), ProduceError>;

/// A Produce request on its way: its response handle, or already settled (acks=0, errors).
enum Started {
    Pending(PendingResponse<ProduceRequest>),
    Done(Result<PartitionAcks, ConnError>),
}

/// The Produce request for `batches`, and their (topic, partition)s.
fn build_produce(
    sh: &Shared,
    batches: &[ProducerBatch<Thunk>],
) -> (ProduceRequest, Vec<(String, i32)>) {
    let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for b in batches {
        topics.entry(b.tp.topic.as_str()).or_default().push(
            PartitionProduceData::default()
                .with_index(b.tp.partition)
                .with_records(Some(b.shared_bytes())),
        );
    }
    let req = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(sh.cfg.acks.wire())
        .with_timeout_ms(sh.cfg.request_timeout_ms.min(i32::MAX as u64) as i32)
        .with_topic_data(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_data(parts)
                })
                .collect(),
        );
    let keys: Vec<(String, i32)> =
        batches.iter().map(|b| (b.tp.topic.to_string(), b.tp.partition)).collect();
    (req, keys)
}

/// Writes one Produce request to `node`.
async fn start_produce(
    sh: &Shared,
    node: i32,
    req: ProduceRequest,
    keys: &[(String, i32)],
) -> Started {
    let conn = match sh.cluster.node_conn(node).await {
        Ok(c) => c,
        Err(e) => return Started::Done(Err(e)),
    };
    if sh.cfg.acks == Acks::None {
        let r = conn
            .send_only(&req)
            .await
            .map(|()| keys.iter().map(|k| (k.clone(), (0, -1, -1))).collect());
        return Started::Done(r);
    }
    match conn.start(&req).await {
        Ok(p) => Started::Pending(p),
        Err(e) => Started::Done(Err(e)),
    }
}

/// The name [`Producer::error_counts`] counts a failed attempt under.
fn attempt_error_name(e: &ProduceError) -> &'static str {
    match e {
        ProduceError::Broker { name, .. } => name,
        ProduceError::Conn(ConnError::Timeout { .. }) => "_TIMED_OUT",
        ProduceError::Conn(ConnError::Connect { .. } | ConnError::Closed { .. }) => "_TRANSPORT",
        ProduceError::Conn(ConnError::UnsupportedVersion { .. }) => "_UNSUPPORTED_FEATURE",
        ProduceError::Conn(ConnError::ApiVersions { code_name, .. }) => code_name,
        ProduceError::Conn(ConnError::Encode { .. } | ConnError::Decode { .. }) => "_BAD_MSG",
        _ => "_FAIL",
    }
}

/// Waits for a Produce response and settles every batch: at once, or with `ticket` (its place
/// in `node`'s write order) after every request written before it.
async fn finish_produce(
    sh: Arc<Shared>,
    node: i32,
    batches: Vec<ProducerBatch<Thunk>>,
    started: Started,
    ticket: Option<u64>,
) {
    let outcome: ProduceOutcome = match started {
        Started::Done(r) => r,
        Started::Pending(p) => p.wait().await.map(|resp| {
            let mut m = BTreeMap::new();
            for t in resp.responses {
                for p in t.partition_responses {
                    m.insert(
                        (t.name.to_string(), p.index),
                        (p.error_code, p.base_offset, p.log_append_time_ms),
                    );
                }
            }
            m
        }),
    };
    match ticket {
        None => settle(&sh, node, batches, outcome),
        Some(ticket) => settle_in_order(&sh, node, ticket, batches, outcome),
    }
}

/// Settles request `ticket` of `node` if every earlier one is settled, then any parked after it
/// that are next; otherwise parks it for the earlier request's task to settle.
fn settle_in_order(
    sh: &Shared,
    node: i32,
    ticket: u64,
    batches: Vec<ProducerBatch<Thunk>>,
    outcome: ProduceOutcome,
) {
    {
        let mut order = lock(&sh.settle_order);
        let o = order.entry(node).or_default();
        assert!(ticket >= o.next_to_settle, "request {ticket} of node {node} settled twice");
        if ticket != o.next_to_settle {
            o.parked.insert(ticket, (batches, outcome));
            return;
        }
    }
    settle(sh, node, batches, outcome);
    loop {
        let next = {
            let mut order = lock(&sh.settle_order);
            let o = order.get_mut(&node).expect("a node with a settled request");
            o.next_to_settle += 1;
            o.parked.remove(&o.next_to_settle)
        };
        let Some((batches, outcome)) = next else { break };
        settle(sh, node, batches, outcome);
    }
}

/// Settles every batch of a Produce request by its `outcome`: completed, failed, or queued again.
fn settle(sh: &Shared, node: i32, batches: Vec<ProducerBatch<Thunk>>, outcome: ProduceOutcome) {
    let now = sh.now_ms();
    let mut done: Vec<(Vec<Thunk>, Settled)> = Vec::new();
    {
        let mut acc = lock(&sh.acc);
        let producer_id = acc.producer_id();
        // Counted before the batches leave the accumulator, so flush never sees a gap.
        sh.finishing.fetch_add(1, Ordering::SeqCst);
        for mut batch in batches {
            let tp = batch.tp.clone();
            let result: Result<(i64, i64), ProduceError> = match &outcome {
                Err(e) => Err(ProduceError::Conn(e.clone())),
                Ok(m) => match m.get(&(tp.topic.to_string(), tp.partition)) {
                    None => Err(ProduceError::Broker {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        code: -1,
                        name: "MISSING_FROM_RESPONSE",
                    }),
                    Some(&(code, base, lat))
                        if code == ErrorCode::NONE
                            || code == ErrorCode::DUPLICATE_SEQUENCE_NUMBER =>
                    {
                        Ok((base, lat))
                    }
                    Some(&(code, _, _)) => Err(ProduceError::Broker {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        code,
                        name: errors::error_name(code),
                    }),
                },
            };
            if sh.cfg.max_in_flight_requests_per_connection <= 1
                || (sh.cfg.enable_idempotence && batch.base_sequence() == 0)
            {
                acc.unmute(&tp);
            }
            match result {
                Ok((base, lat)) => {
                    acc.acknowledged(&batch);
                    let thunks = acc.complete(batch);
                    done.push((thunks, Ok((tp.partition, base, lat))));
                }
                Err(e) => {
                    *lock(&sh.errors).entry(attempt_error_name(&e)).or_default() += 1;
                    let retriable = match &e {
                        ProduceError::Conn(c) => c.is_retriable(),
                        // With idempotence, a batch behind a failed one sees its sequence out of
                        // order; it succeeds once the earlier batch is retried first.
                        ProduceError::Broker { code, .. } => {
                            errors::is_retriable(*code)
                                || (sh.cfg.enable_idempotence
                                    && (*code == ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                                        || *code == ErrorCode::UNKNOWN_PRODUCER_ID))
                        }
                        _ => false,
                    };
                    if matches!(&e, ProduceError::Conn(_))
                        || matches!(&e, ProduceError::Broker { code, .. } if errors::needs_metadata_refresh(*code))
                    {
                        sh.need_metadata.store(true, Ordering::SeqCst);
                    }
                    // The partition's oldest unacknowledged batch refused as out of order (or
                    // its producer unknown): nothing earlier will fill the gap, the broker has
                    // lost this producer's state (an unclean election, a leader that lost its
                    // tail). Take a new producer id and re-stamp the queued batches; records
                    // acknowledged before may be gone, which the checkers are there to see.
                    // Only when it starts right after the last acknowledged sequence: a batch
                    // behind a later acknowledged one may already be in the log, and re-stamping
                    // it would write it twice.
                    if let ProduceError::Broker { code, .. } = &e {
                        let gap = *code == ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                            || *code == ErrorCode::UNKNOWN_PRODUCER_ID;
                        if sh.cfg.enable_idempotence
                            && gap
                            && batch.producer_id() == producer_id
                            && acc.is_oldest_unacked(&batch)
                            && acc.is_next_sequence(&batch)
                        {
                            tracing::warn!(
                                topic = %tp.topic,
                                partition = tp.partition,
                                producer_id,
                                base_sequence = batch.base_sequence(),
                                error = %e,
                                "broker lost this producer's sequence state; taking a new producer id"
                            );
                            acc.reset_producer_id();
                        }
                    }
                    let within_deadline =
                        now.saturating_sub(batch.created_ms) < sh.cfg.delivery_timeout_ms;
                    if retriable && batch.attempts < sh.cfg.retries && within_deadline {
                        tracing::debug!(error = %e, attempt = batch.attempts + 1, "retrying batch");
                        sh.record_retries
                            .fetch_add(u64::from(batch.record_count()), Ordering::Relaxed);
                        acc.reenqueue(batch, now);
                    } else {
                        let e = if retriable && !within_deadline {
                            ProduceError::DeliveryTimeout {
                                topic: tp.topic.to_string(),
                                partition: tp.partition,
                                delivery_timeout_ms: sh.cfg.delivery_timeout_ms,
                            }
                        } else {
                            e
                        };
                        batch.attempts += 1;
                        let thunks = acc.complete(batch);
                        done.push((thunks, Err(e)));
                    }
                }
            }
        }
    }
    for (thunks, r) in done {
        sh.finish(thunks, r);
    }
    sh.finishing.fetch_sub(1, Ordering::SeqCst);
    if let Some(n) = lock(&sh.inflight).get_mut(&node) {
        *n = n.saturating_sub(1);
    }
    sh.wake.notify_one();
    sh.progress.notify_waiters();
}
