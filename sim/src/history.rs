//! What a run recorded, as plain data: every send and its outcome, every poll, every consumer
//! reset, and the final read of each partition. Checkers are pure functions of this.
//!
//! Compact by design (the history grows with every record of a run): a send or poll names its
//! partition by a [`PartitionId`], a `u32` index into [`History::partitions`], never by a
//! string. A settled send is encoded against its producer's previous one ([`Sends`]: ~5 bytes
//! for a record of a batch; an open one is a 32-byte [`Send`]), and polled or finally read
//! records keep their offsets as a first offset and their values as runs that rise by one
//! ([`SeenRecords`]: 16 bytes a batch of one producer's records). Maps keyed by partition hold
//! one entry per partition, keyed by the shared [`TopicPartition`].

use crate::checkers::LivenessCause;
pub use crate::seen::SeenRecords;
pub use crate::sends::Sends;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

pub use kafka_types::{Topic, TopicPartition};

/// Record ids are `(producer index << 40) | sequence`; prefill entry `k` writes as producer
/// index `PREFILL_INDEX_BASE + k` (never a workload producer's index).
pub const PREFILL_INDEX_BASE: u32 = 1 << 23;

/// A record id is its producer's index above [`ID_SEQ_MASK`]'s bits and its sequence number
/// within them (`(producer << 40) | seq`, see [`Send::producer`]).
pub const ID_SEQ_MASK: u64 = (1 << 40) - 1;

/// Partitions one history can name (ids are `u32`; a run has at most a few hundred thousand).
pub const PARTITIONS_MAX: usize = 1 << 24;

/// A partition of one run, as an index into its [`Partitions`]: ids are handed out in order of
/// first use, from 1 (so `Option<PartitionId>` is 4 bytes too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(NonZeroU32);

impl PartitionId {
    /// 1 for the first partition named, 2 for the second, ...: a dense index for per-partition
    /// arrays (0 is free for "no partition").
    pub fn slot(self) -> usize {
        self.0.get() as usize
    }

    /// The id a slot names (what [`PartitionId::slot`] gave).
    pub(crate) fn from_nonzero(id: NonZeroU32) -> Self {
        PartitionId(id)
    }
}

/// The partitions a history names, interned: id → [`TopicPartition`] and back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partitions {
    names: Vec<TopicPartition>,
    ids: BTreeMap<Topic, BTreeMap<i32, PartitionId>>,
}

impl Partitions {
    /// The id of `topic`-`partition`, handed out on first use.
    pub fn intern(&mut self, topic: &str, partition: i32) -> PartitionId {
        if let Some(id) = self.find(topic, partition) {
            return id;
        }
        assert!(self.names.len() < PARTITIONS_MAX, "more than {PARTITIONS_MAX} partitions");
        let tp = TopicPartition::new(topic, partition);
        let id = PartitionId(NonZeroU32::MIN.saturating_add(self.names.len() as u32));
        self.ids.entry(tp.topic.clone()).or_default().insert(partition, id);
        self.names.push(tp);
        id
    }

    pub fn intern_tp(&mut self, tp: &TopicPartition) -> PartitionId {
        self.intern(&tp.topic, tp.partition)
    }

    /// The id of a partition already named, without allocating.
    pub fn find(&self, topic: &str, partition: i32) -> Option<PartitionId> {
        self.ids.get(topic)?.get(&partition).copied()
    }

    pub fn find_tp(&self, tp: &TopicPartition) -> Option<PartitionId> {
        self.find(&tp.topic, tp.partition)
    }

    pub fn name(&self, id: PartitionId) -> &TopicPartition {
        &self.names[id.slot() - 1]
    }

    /// `topic-partition`, or "" for no partition (a send refused before it had one).
    pub fn display(&self, id: Option<PartitionId>) -> String {
        id.map(|id| self.name(id).to_string()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every id, in id order.
    pub fn ids(&self) -> impl Iterator<Item = PartitionId> + '_ {
        (1..=self.names.len() as u32).map(|i| PartitionId(NonZeroU32::MIN.saturating_add(i - 1)))
    }
}

/// How a send ended, or that it has not: what [`Send::outcome`] reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// acks=1/all: the broker answered with this offset.
    Acked { offset: i64, at_ns: u64 },
    /// acks=0: handed to the broker with no answer expected (never a promise).
    Unconfirmed { at_ns: u64 },
    /// Gave up (retries exhausted, delivery timeout): the write may or may not be in the log.
    /// The error, in words, is in [`History::send_errors`] under the send's value (every send
    /// would otherwise carry room for it).
    Failed { at_ns: u64 },
    /// Still in flight when the run ended.
    Pending,
}

impl SendOutcome {
    /// Its kind ([`PENDING`], [`ACKED`], [`UNCONFIRMED`], [`FAILED`]), time and acknowledged
    /// offset (0 where the kind has none): what a [`Send`] packs.
    pub(crate) fn parts(self) -> (u8, u64, i64) {
        match self {
            SendOutcome::Acked { offset, at_ns } => (ACKED, at_ns, offset),
            SendOutcome::Unconfirmed { at_ns } => (UNCONFIRMED, at_ns, 0),
            SendOutcome::Failed { at_ns } => (FAILED, at_ns, 0),
            SendOutcome::Pending => (PENDING, 0, 0),
        }
    }

    /// The outcome [`SendOutcome::parts`] gave (the fields its kind has no use for ignored).
    pub(crate) fn from_parts(tag: u8, at_ns: u64, offset: i64) -> Self {
        match tag {
            ACKED => SendOutcome::Acked { offset, at_ns },
            UNCONFIRMED => SendOutcome::Unconfirmed { at_ns },
            FAILED => SendOutcome::Failed { at_ns },
            _ => SendOutcome::Pending,
        }
    }
}

/// Simulated times a [`Send`] can hold: below 2^48 ns (78 hours; a run lasts at most
/// `duration_s` ≤ 86,400 s plus its settling).
pub const SEND_TIME_NS_LIMIT: u64 = 1 << TIME_BITS;
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = SEND_TIME_NS_LIMIT - 1;
/// Bits of a partition id in `created` (the rest go above the outcome tag in `at`).
const TP_LOW_BITS: u32 = 64 - TIME_BITS;
const TAG_SHIFT: u32 = TIME_BITS;
const TP_HIGH_SHIFT: u32 = TIME_BITS + 2;
const _: () = assert!(PARTITIONS_MAX as u64 <= 1 << (TP_LOW_BITS + 64 - TP_HIGH_SHIFT));
// An outcome's kind, as a `Send` packs it (2 bits) and `Sends` encodes it.
pub(crate) const PENDING: u8 = 0;
pub(crate) const ACKED: u8 = 1;
pub(crate) const UNCONFIRMED: u8 = 2;
pub(crate) const FAILED: u8 = 3;

/// One record a producer sent, packed into 32 bytes while it is open ([`Sends`] encodes it
/// smaller once it settled; a run holds one per record: 6M in a bench run). `value` is unique
/// across the run and names its producer (`value >> 40`).
///
/// Layout: `created` holds `created_ns` (48 bits) and the partition id's low 16 bits; `at`
/// holds the outcome's time (48 bits), its kind (2 bits) and the partition id's high 14 bits;
/// `offset` the acknowledged offset (any `i64`: a broker's answer is not trusted to be sane).
#[derive(Clone, PartialEq, Eq)]
pub struct Send {
    pub value: u64,
    created: u64,
    at: u64,
    offset: i64,
}

impl Send {
    /// A send of record `value` created at `created_ns`, to `tp` once the producer chose one.
    pub fn new(tp: Option<PartitionId>, value: u64, created_ns: u64, outcome: SendOutcome) -> Send {
        assert!(created_ns < SEND_TIME_NS_LIMIT, "created at {created_ns} ns: past the limit");
        let mut s = Send { value, created: created_ns, at: 0, offset: 0 };
        s.set_tp(tp);
        s.set_outcome(outcome);
        s
    }

    /// The producer's index, as record ids carry it.
    pub fn producer(&self) -> u32 {
        (self.value >> 40) as u32
    }

    pub fn created_ns(&self) -> u64 {
        self.created & TIME_MASK
    }

    /// `None` until the producer chose a partition (a send refused before that keeps none).
    pub fn tp(&self) -> Option<PartitionId> {
        let low = self.created >> TIME_BITS;
        let high = self.at >> TP_HIGH_SHIFT;
        let id = u32::try_from(low | (high << TP_LOW_BITS)).ok()?;
        NonZeroU32::new(id).map(PartitionId)
    }

    pub fn set_tp(&mut self, tp: Option<PartitionId>) {
        let id = u64::from(tp.map_or(0, |t| t.0.get()));
        self.created = (self.created & TIME_MASK) | (id << TIME_BITS);
        let keep = self.at & ((1 << TP_HIGH_SHIFT) - 1);
        self.at = keep | ((id >> TP_LOW_BITS) << TP_HIGH_SHIFT);
    }

    pub fn outcome(&self) -> SendOutcome {
        let tag = ((self.at >> TAG_SHIFT) & 3) as u8;
        SendOutcome::from_parts(tag, self.at & TIME_MASK, self.offset)
    }

    pub fn set_outcome(&mut self, outcome: SendOutcome) {
        let (tag, at_ns, offset) = outcome.parts();
        assert!(at_ns < SEND_TIME_NS_LIMIT, "outcome at {at_ns} ns: past the limit");
        let tp_high = self.at & !((1 << TP_HIGH_SHIFT) - 1);
        self.at = tp_high | (u64::from(tag) << TAG_SHIFT) | at_ns;
        self.offset = offset;
    }
}

impl std::fmt::Debug for Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Send")
            .field("producer", &self.producer())
            .field("tp", &self.tp())
            .field("value", &self.value)
            .field("created_ns", &self.created_ns())
            .field("outcome", &self.outcome())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollKind {
    /// Records returned, in the order the consumer saw them: (offset, value).
    Records(SeenRecords),
    /// The consumer's position was reset (`auto.offset.reset` after OffsetOutOfRange, or an
    /// explicit seek): monotonicity restarts here.
    Reset { from: i64, to: i64, reason: &'static str },
}

impl PollKind {
    /// The records of one poll, kept without the growth slack of the vector they were collected
    /// in: a run keeps every poll (millions of records).
    pub fn records(mut recs: SeenRecords) -> Self {
        recs.shrink_to_fit();
        PollKind::Records(recs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub consumer: u32,
    pub tp: PartitionId,
    pub at_ns: u64,
    pub kind: PollKind,
}

impl Poll {
    /// The records the poll returned; `None` for an offset reset.
    pub fn records(&self) -> Option<&SeenRecords> {
        match &self.kind {
            PollKind::Records(rs) => Some(rs),
            PollKind::Reset { .. } => None,
        }
    }
}

/// The end state read by the oracle after the run healed: each partition's records in offset
/// order, with its log end offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalLog {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub records: SeenRecords,
}

impl FinalLog {
    /// Whether offsets strictly rise along `records`, as the oracle reads them.
    pub fn offsets_rise(&self) -> bool {
        self.records.contiguous() || {
            let mut prev = None;
            self.records.iter().all(|(o, _)| prev.replace(o).is_none_or(|p| p < o))
        }
    }

    /// The value of the record at `offset`, if the log holds one there: O(1) when the offsets
    /// are contiguous, a binary search when they only rise (what the oracle reads).
    pub fn value_at(&self, offset: i64) -> Option<u64> {
        self.value_near(offset, &mut 0)
    }

    /// [`FinalLog::value_at`] for lookups that walk forward: `hint` carries where the previous
    /// one ended (see [`SeenRecords::get_near`]).
    pub fn value_near(&self, offset: i64, hint: &mut usize) -> Option<u64> {
        let i = self.records.partition_point(offset);
        (self.records.offset_at(i)? == offset).then(|| self.records.get_near(i, hint))?.map(|r| r.1)
    }
}

/// A group member's assignment as it saw it, after a rebalance notice: the generation and member
/// id it held then and every partition it owned (empty after a revocation or loss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub member: u32,
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub tps: Vec<TopicPartition>,
    pub at_ns: u64,
}

/// An OffsetCommit a group member sent: what it carried and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub member: u32,
    pub group: String,
    pub member_id: String,
    /// The generation the member held when it sent the commit.
    pub generation: i32,
    /// Next offset to read, per partition.
    pub offsets: Vec<(TopicPartition, i64)>,
    pub sent_ns: u64,
    pub at_ns: u64,
    /// `None` = accepted; otherwise the error the member got.
    pub error: Option<String>,
}

/// One reason a run could not make progress: its kind (what `liveness` reports it as) and what
/// happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub cause: LivenessCause,
    pub what: String,
}

impl Stuck {
    pub fn new(cause: LivenessCause, what: impl Into<String>) -> Self {
        Stuck { cause, what: what.into() }
    }

    /// Anything the run recorded as stuck that has no kind of its own.
    pub fn other(what: impl Into<String>) -> Self {
        Stuck::new(LivenessCause::Stuck, what)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The partitions sends and polls name.
    pub partitions: Partitions,
    /// Every send, by the slot its push returned (compact: see [`Sends`]).
    pub sends: Sends,
    /// Why each failed send failed, by its value (few: kept beside the sends, not in them).
    pub send_errors: BTreeMap<u64, String>,
    pub polls: Vec<Poll>,
    /// `None` for a partition the oracle could not read (a liveness failure).
    pub final_logs: BTreeMap<TopicPartition, Option<FinalLog>>,
    /// Each consumer's position per partition at the end.
    pub final_positions: BTreeMap<(u32, TopicPartition), i64>,
    /// When the last fault healed (ns); progress must resume after it.
    pub last_heal_ns: Option<u64>,
    /// Why the run could not make progress, if it knows (e.g. the broker failed to start), each
    /// with its kind.
    pub stuck: Vec<Stuck>,
    /// Consumer-group runs: each member's assignments and commits, in the order they happened.
    pub assignments: Vec<Assignment>,
    pub commits: Vec<Commit>,
    /// Group members: consumer index → group id. Their polls are checked per group across
    /// rebalances, and their progress per group (`group_positions`), not per member.
    pub group_members: BTreeMap<u32, String>,
    /// Per group and partition: the furthest position any member reached.
    pub group_positions: BTreeMap<(String, TopicPartition), i64>,
    /// Per group: the partitions it subscribes to (all must be owned again after the heal).
    pub group_partitions: BTreeMap<String, Vec<TopicPartition>>,
    /// Cluster runs: each replica's log read back after the run healed (debugging Fetch,
    /// replica id -2), per partition and broker; `None` = could not be read.
    pub replica_logs: BTreeMap<TopicPartition, BTreeMap<u32, Option<ReplicaLog>>>,
    /// Cluster runs: the final partition state (leader, ISR) the oracle read against.
    pub final_partition: BTreeMap<TopicPartition, (i32, i32, Vec<i32>)>,
    /// Cluster runs: periodic HW samples of every broker that leads a partition.
    pub hw_samples: Vec<HwSample>,
    /// Per error name, summed over producers: partition batches a Produce attempt failed with,
    /// retried or not (`client::Producer::error_counts`).
    pub producer_errors: BTreeMap<String, u64>,
}

/// One replica's log as that replica serves it to a debugging reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLog {
    /// Where the replica's log begins (above 0 once retention or DeleteRecords removed a prefix).
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// (base offset, last offset, hash of the batch's bytes), in log order.
    pub batches: Vec<(i64, i64, u64)>,
}

/// A leader's HW at one instant: (broker, its incarnation, leader epoch) identify the
/// leadership the sample belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwSample {
    pub at_ns: u64,
    pub broker: u32,
    pub incarnation: u64,
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub hw: i64,
}

impl History {
    pub fn acked(&self) -> impl Iterator<Item = (Send, i64, u64)> + '_ {
        self.sends.iter().filter_map(|s| match s.outcome() {
            SendOutcome::Acked { offset, at_ns } => Some((s, offset, at_ns)),
            _ => None,
        })
    }
}

/// Per-partition views of one history for the checkers, indexed by *slot*: slot 0 is "no
/// partition" (a send refused before it had one), slot `id.slot()` a partition the sends and
/// polls name, and the slots after those the final logs of partitions nothing else named.
pub struct Slots<'a> {
    h: &'a History,
    /// Slot → its final log: `None` = no entry, `Some(None)` = unreadable.
    finals: Vec<Option<Option<&'a FinalLog>>>,
    /// Slots after the interned ones: their names, in slot order.
    extra: Vec<&'a TopicPartition>,
    /// `h.final_logs` in its order (topic, then partition), with slots.
    in_order: Vec<(usize, &'a TopicPartition, Option<&'a FinalLog>)>,
    /// Slot → its rank when slots are sorted by name (slot 0 first, as "" sorts first).
    rank: Vec<usize>,
}

impl<'a> Slots<'a> {
    pub fn new(h: &'a History) -> Self {
        let mut finals = vec![None; h.partitions.len() + 1];
        let mut extra = Vec::new();
        let mut in_order = Vec::with_capacity(h.final_logs.len());
        for (tp, log) in &h.final_logs {
            let slot = match h.partitions.find_tp(tp) {
                Some(id) => id.slot(),
                None => {
                    finals.push(None);
                    extra.push(tp);
                    finals.len() - 1
                }
            };
            finals[slot] = Some(log.as_ref());
            in_order.push((slot, tp, log.as_ref()));
        }
        let mut slots = Slots { h, finals, extra, in_order, rank: Vec::new() };
        let mut by_name: Vec<usize> = (1..slots.len()).collect();
        by_name.sort_by(|a, b| slots.name(*a).cmp(slots.name(*b)));
        slots.rank = vec![0; slots.len()];
        for (r, s) in by_name.into_iter().enumerate() {
            slots.rank[s] = r + 1;
        }
        slots
    }

    pub fn len(&self) -> usize {
        self.finals.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn of(id: Option<PartitionId>) -> usize {
        id.map_or(0, PartitionId::slot)
    }

    /// The slot of a partition, if anything names it.
    pub fn of_tp(&self, tp: &TopicPartition) -> Option<usize> {
        if let Some(id) = self.h.partitions.find_tp(tp) {
            return Some(id.slot());
        }
        let i = self.extra.iter().position(|e| *e == tp)?;
        Some(self.h.partitions.len() + 1 + i)
    }

    fn name(&self, slot: usize) -> &TopicPartition {
        match slot.checked_sub(self.h.partitions.len() + 1) {
            Some(i) => self.extra[i],
            None => &self.h.partitions.names[slot - 1],
        }
    }

    /// `topic-partition`, or "" for slot 0.
    pub fn display(&self, slot: usize) -> String {
        if slot == 0 {
            return String::new();
        }
        self.name(slot).to_string()
    }

    /// Sorts like the partitions' names (topic, then partition number).
    pub fn rank(&self, slot: usize) -> usize {
        self.rank[slot]
    }

    /// The slot's final log: `None` = none was read for it, `Some(None)` = unreadable.
    pub fn final_log(&self, slot: usize) -> Option<Option<&'a FinalLog>> {
        self.finals.get(slot).copied().flatten()
    }

    /// The final logs in `History::final_logs` order, with their slots.
    pub fn finals(&self) -> &[(usize, &'a TopicPartition, Option<&'a FinalLog>)] {
        &self.in_order
    }
}

/// One partition's map offset → value: an array over the offsets' span when they are dense
/// (as a log's are), a hash map when not (a bound on memory whatever offsets a broker returns).
/// Each offset also carries a flag.
///
/// The array is kept in blocks of [`OFFSET_BLOCK`] offsets, each as one number while its values
/// rise with its offsets (a batch of one producer's records: most blocks) and as every value
/// once one does not: ~1.5 bytes an offset on a bench run's logs instead of 8.
pub struct OffsetTable {
    base: i64,
    len: usize,
    blocks: Vec<Block>,
    /// Two bits per dense offset: seen, flagged.
    bits: Vec<u64>,
    sparse: std::collections::HashMap<i64, (u64, bool)>,
    distinct: u64,
}

/// Offsets a [`Block`] covers: two words of an [`OffsetTable`]'s bits.
pub const OFFSET_BLOCK: usize = 64;

/// Widens offset bounds `(lowest, highest, count)` by `n` observations in `lo..=hi`: what sizes
/// an [`OffsetTable`] (the sends keep them for acknowledgements, the check adds polls and
/// final logs).
pub fn widen_bounds(b: &mut (i64, i64, u64), lo: i64, hi: i64, n: u64) {
    *b = (b.0.min(lo), b.1.max(hi), b.2 + n);
}

/// The values of one block's seen offsets.
#[derive(Clone)]
enum Block {
    /// Offset `k` of the block holds `at0 + k` (wrapping).
    Rising {
        at0: u64,
    },
    Values(Box<[u64; OFFSET_BLOCK]>),
}

impl Block {
    fn value(&self, k: usize) -> u64 {
        match self {
            Block::Rising { at0 } => at0.wrapping_add(k as u64),
            Block::Values(v) => v[k],
        }
    }
}

impl OffsetTable {
    /// Spans beyond `2 × observations + DENSE_SLACK` offsets go to the hash map.
    const DENSE_SLACK: u64 = 4096;

    /// A table for `count` observations of offsets in `min..=max`.
    pub fn new(min: i64, max: i64, count: u64) -> Self {
        let span = (i128::from(max) - i128::from(min) + 1).max(0);
        let dense = span <= i128::from(count.saturating_mul(2).saturating_add(Self::DENSE_SLACK));
        let len = if dense { span as usize } else { 0 };
        OffsetTable {
            base: min,
            len,
            blocks: vec![Block::Rising { at0: 0 }; len.div_ceil(OFFSET_BLOCK)],
            bits: vec![0; len.div_ceil(32)],
            sparse: std::collections::HashMap::new(),
            distinct: 0,
        }
    }

    fn index(&self, offset: i64) -> Option<usize> {
        usize::try_from(offset.checked_sub(self.base)?).ok().filter(|&i| i < self.len)
    }

    fn seen(&self, i: usize) -> bool {
        self.bits[i / 32] & (1 << ((i % 32) * 2)) != 0
    }

    /// Blocks kept value by value (for the figures and tests).
    pub fn blocks_by_value(&self) -> usize {
        self.blocks.iter().filter(|b| matches!(b, Block::Values(_))).count()
    }

    /// Records `value` at dense index `i` (not seen yet).
    fn set(&mut self, i: usize, value: u64) {
        let (b, k) = (i / OFFSET_BLOCK, i % OFFSET_BLOCK);
        // A block's offsets are two words of `bits` (32 offsets a word): any seen bit set?
        const SEEN: u64 = 0x5555_5555_5555_5555;
        let word = |w: usize| self.bits.get(w).copied().unwrap_or(0) & SEEN;
        let any_seen = word(2 * b) | word(2 * b + 1) != 0;
        match &mut self.blocks[b] {
            Block::Rising { at0 } if !any_seen => *at0 = value.wrapping_sub(k as u64),
            Block::Rising { at0 } if at0.wrapping_add(k as u64) == value => {}
            Block::Rising { at0 } => {
                let mut v = Box::new([0u64; OFFSET_BLOCK]);
                for (j, x) in v.iter_mut().enumerate() {
                    *x = at0.wrapping_add(j as u64);
                }
                v[k] = value;
                self.blocks[b] = Block::Values(v);
            }
            Block::Values(v) => v[k] = value,
        }
    }

    /// Records `value` at `offset` unless the offset has a value; returns the value it holds.
    pub fn first(&mut self, offset: i64, value: u64) -> u64 {
        match self.index(offset) {
            Some(i) => {
                if !self.seen(i) {
                    self.set(i, value);
                    self.bits[i / 32] |= 1 << ((i % 32) * 2);
                    self.distinct += 1;
                }
                self.blocks[i / OFFSET_BLOCK].value(i % OFFSET_BLOCK)
            }
            None => {
                let e = self.sparse.entry(offset).or_insert_with(|| {
                    self.distinct += 1;
                    (value, false)
                });
                e.0
            }
        }
    }

    /// Flags an offset already recorded.
    pub fn flag(&mut self, offset: i64) {
        match self.index(offset) {
            Some(i) => self.bits[i / 32] |= 2 << ((i % 32) * 2),
            None => {
                if let Some(e) = self.sparse.get_mut(&offset) {
                    e.1 = true;
                }
            }
        }
    }

    pub fn flagged(&self, offset: i64) -> bool {
        match self.index(offset) {
            Some(i) => self.bits[i / 32] & (2 << ((i % 32) * 2)) != 0,
            None => self.sparse.get(&offset).is_some_and(|e| e.1),
        }
    }

    /// Records `value` at `offset` as [`first`](Self::first) does, and flags the offset if it
    /// held another value; returns whether that flagged it now (not before).
    pub fn observe(&mut self, offset: i64, value: u64) -> bool {
        let conflict = self.first(offset, value) != value && !self.flagged(offset);
        if conflict {
            self.flag(offset);
        }
        conflict
    }

    /// [`observe`](Self::observe) for `n` pairs whose offsets and values both rise by one from
    /// `(offset, value)` (a batch, as a poll or a final log holds it); returns how many offsets
    /// it flagged. A block the span finds unseen, or rising as the span does, takes the span's
    /// part whole (a few word operations, not one call a record); any other pair goes singly.
    pub fn observe_span(&mut self, offset: i64, value: u64, n: usize) -> u64 {
        let last = i64::try_from(n).ok().and_then(|n| offset.checked_add(n - 1));
        let (Some(i0), Some(_)) = (self.index(offset), last.and_then(|l| self.index(l))) else {
            return self.observe_singly(offset, value, n);
        };
        let mut flagged = 0;
        let mut i = i0;
        while i < i0 + n {
            let (b, ka) = (i / OFFSET_BLOCK, i % OFFSET_BLOCK);
            let kb = OFFSET_BLOCK.min(ka + (i0 + n - i));
            let v = value.wrapping_add((i - i0) as u64);
            if !self.take_whole(b, ka, kb, v) {
                flagged += self.observe_singly(offset + (i - i0) as i64, v, kb - ka);
            }
            i += kb - ka;
        }
        flagged
    }

    fn observe_singly(&mut self, offset: i64, value: u64, n: usize) -> u64 {
        let pairs = (0..n).map(|d| (offset.wrapping_add(d as i64), value.wrapping_add(d as u64)));
        pairs.map(|(o, v)| u64::from(self.observe(o, v))).sum()
    }

    /// Offsets `ka..kb` of block `b` observed holding `v`, `v + 1`, …: taken whole, without a
    /// conflict, when the block has no offset seen, or rises as the span does; `false` (nothing
    /// changed) otherwise.
    fn take_whole(&mut self, b: usize, ka: usize, kb: usize, v: u64) -> bool {
        const SEEN: u128 = 0x5555_5555_5555_5555_5555_5555_5555_5555;
        let word = |w: usize| self.bits.get(w).copied().unwrap_or(0);
        let bits = u128::from(word(2 * b)) | (u128::from(word(2 * b + 1)) << 64);
        let width = 2 * (kb - ka) as u32;
        let range = (u128::MAX >> (128 - width)) << (2 * ka);
        let seen_in_range = (bits & SEEN & range).count_ones() as usize;
        match &mut self.blocks[b] {
            _ if bits & SEEN == 0 => {
                self.blocks[b] = Block::Rising { at0: v.wrapping_sub(ka as u64) }
            }
            Block::Rising { at0 } if at0.wrapping_add(ka as u64) == v => {}
            _ => return false,
        }
        let set = bits | (SEEN & range);
        self.bits[2 * b] = set as u64;
        if let Some(w) = self.bits.get_mut(2 * b + 1) {
            *w = (set >> 64) as u64;
        }
        self.distinct += (kb - ka - seen_in_range) as u64;
        true
    }

    /// Distinct offsets recorded.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }
}

/// A final log's distinct offsets in order: the records themselves when their offsets rise
/// (as the oracle reads them), else a sorted copy.
pub enum Offsets<'a> {
    Records(&'a SeenRecords),
    Sorted(Vec<i64>),
}

impl<'a> Offsets<'a> {
    /// `None` (an unreadable log) holds no offsets.
    pub fn of(log: Option<&'a FinalLog>) -> Self {
        match log {
            None => Offsets::Sorted(Vec::new()),
            Some(l) if l.offsets_rise() => Offsets::Records(&l.records),
            Some(l) => {
                let mut v: Vec<i64> = l.records.iter().map(|r| r.0).collect();
                v.sort_unstable();
                v.dedup();
                Offsets::Sorted(v)
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Offsets::Records(r) => r.len(),
            Offsets::Sorted(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> i64 {
        match self {
            Offsets::Records(r) => r.offset_at(i).expect("i < len"),
            Offsets::Sorted(v) => v[i],
        }
    }

    /// How many offsets are below `offset`: O(1) when the offsets are contiguous.
    pub fn below(&self, offset: i64) -> usize {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        let first = self.get(0);
        if self.get(n - 1).checked_sub(first) == Some(n as i64 - 1) {
            let i = (i128::from(offset) - i128::from(first)).clamp(0, n as i128);
            return i as usize;
        }
        match self {
            Offsets::Records(r) => r.partition_point(offset),
            Offsets::Sorted(v) => v.partition_point(|&x| x < offset),
        }
    }

    /// The position of `offset` among the offsets, if present.
    pub fn position(&self, offset: i64) -> Option<usize> {
        let i = self.below(offset);
        (i < self.len() && self.get(i) == offset).then_some(i)
    }

    /// Offsets in `from..to`.
    pub fn count_in(&self, from: i64, to: i64) -> usize {
        self.below(to).saturating_sub(self.below(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The table answers as a map offset → first value: batches whose values rise with their
        /// offsets (kept as one number a block) and values that do not, offsets seen again,
        /// flags; spans too wide for the array go to the map.
        #[test]
        fn offset_table_answers_as_a_map(
            start in prop_oneof![Just(0i64), 1_000i64..2_000, Just(i64::MAX - 500)],
            runs in proptest::collection::vec((0i64..300, 1usize..150, any::<u64>(), 0u8..8), 1..30),
            wide in any::<bool>(),
        ) {
            let mut obs: Vec<(i64, u64)> = Vec::new();
            let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
            // Every third run is seen again from a third of the way in, as a poll and the
            // final log see what was acknowledged: offsets partly seen, with the same values.
            let again = runs.iter().step_by(3).map(|&(at, len, v0, kind)| (at + (len / 3) as i64, len - len / 3, v0.wrapping_add((len / 3) as u64), kind.max(1)));
            let runs: Vec<_> = runs.iter().copied().chain(again.collect::<Vec<_>>()).collect();
            for (at, len, v0, kind) in runs {
                let from = obs.len();
                for k in 0..len {
                    let v = match kind {
                        0 => v0 ^ (k as u64 * 0x9e37),  // values that do not rise
                        _ => v0.wrapping_add(k as u64),  // a batch
                    };
                    obs.push((start.saturating_add(at + k as i64), v));
                }
                spans.push(from..obs.len());
            }
            let (lo, hi) = obs.iter().fold((i64::MAX, i64::MIN), |(a, b), o| (a.min(o.0), b.max(o.0)));
            let hi = if wide { hi.saturating_add(1 << 40) } else { hi };
            // Observed pair by pair and span by span (where a run rises in both), the table
            // flags the same offsets and holds the same values.
            let (mut singly, mut by_span) = (OffsetTable::new(lo, hi, obs.len() as u64), OffsetTable::new(lo, hi, obs.len() as u64));
            let mut flags = (0u64, 0u64);
            for r in spans {
                let run = &obs[r];
                flags.0 += run.iter().map(|&(o, v)| u64::from(singly.observe(o, v))).sum::<u64>();
                let rises = run.windows(2).all(|w| w[0].0.checked_add(1) == Some(w[1].0) && w[0].1.wrapping_add(1) == w[1].1);
                flags.1 += if rises {
                    by_span.observe_span(run[0].0, run[0].1, run.len())
                } else {
                    run.iter().map(|&(o, v)| u64::from(by_span.observe(o, v))).sum()
                };
            }
            prop_assert_eq!(flags.0, flags.1);
            prop_assert_eq!(singly.distinct(), by_span.distinct());
            for &(o, _) in &obs {
                prop_assert_eq!((singly.first(o, 0), singly.flagged(o)), (by_span.first(o, 0), by_span.flagged(o)));
            }
            let mut t = OffsetTable::new(lo, hi, obs.len() as u64);
            let mut model: std::collections::HashMap<i64, u64> = Default::default();
            for (i, &(o, v)) in obs.iter().enumerate() {
                let want = *model.entry(o).or_insert(v);
                prop_assert_eq!(t.first(o, v), want);
                if i % 7 == 0 {
                    t.flag(o);
                }
            }
            prop_assert_eq!(t.distinct(), model.len() as u64);
            for (i, &(o, _)) in obs.iter().enumerate() {
                prop_assert_eq!(t.first(o, 0), model[&o]);
                prop_assert!(i % 7 != 0 || t.flagged(o));
            }
        }
    }

    /// A bench-like log: batches of 500 records whose values rise by one, each batch's values
    /// 3,000 past the last one's. Most blocks stay one number.
    #[test]
    fn rising_batches_cost_one_number_a_block() {
        let mut t = OffsetTable::new(0, 99_999, 100_000);
        for o in 0..100_000i64 {
            let v = (o / 500) as u64 * 3_000 + (o % 500) as u64;
            assert_eq!(t.first(o, v), v);
        }
        let blocks = 100_000usize.div_ceil(OFFSET_BLOCK);
        assert!(t.blocks_by_value() * 7 < blocks, "{} of {blocks} blocks", t.blocks_by_value());
        assert_eq!(t.first(12_345, 0), 24 * 3_000 + 345);
    }

    /// Every field reads back what was stored, whatever order they were set in, at the edges
    /// of every packed range (partition ids across the 16-bit split, times up to the limit,
    /// any offset).
    #[test]
    fn send_packs_into_32_bytes_and_reads_back() {
        assert_eq!(std::mem::size_of::<Send>(), 32);
        let ids = [1u32, 2, 0xffff, 0x1_0000, 0x1_2345, PARTITIONS_MAX as u32];
        let tps = ids.map(|i| NonZeroU32::new(i).map(PartitionId));
        let t_max = SEND_TIME_NS_LIMIT - 1;
        let outcomes = [
            SendOutcome::Pending,
            SendOutcome::Acked { offset: i64::MIN, at_ns: t_max },
            SendOutcome::Acked { offset: i64::MAX, at_ns: 0 },
            SendOutcome::Acked { offset: -1, at_ns: 12_345 },
            SendOutcome::Unconfirmed { at_ns: t_max },
            SendOutcome::Failed { at_ns: 7 },
        ];
        let value = (0x7f_ffff << 40) | 0xff_ffff_ffff;
        for tp in tps.into_iter().chain([None]) {
            for outcome in outcomes {
                for created_ns in [0, 1, t_max] {
                    let s = Send::new(tp, value, created_ns, outcome);
                    let got = (s.tp(), s.value, s.created_ns(), s.outcome(), s.producer());
                    assert_eq!(got, (tp, value, created_ns, outcome, 0x7f_ffff));
                    // Set later, in either order, over other values.
                    let mut l = Send::new(tps[5], value, created_ns, outcomes[1]);
                    l.set_outcome(outcome);
                    l.set_tp(tp);
                    assert_eq!((l.tp(), l.created_ns(), l.outcome()), (tp, created_ns, outcome));
                    l.set_tp(tps[3]);
                    l.set_outcome(outcomes[4]);
                    let got = (l.tp(), l.created_ns(), l.outcome());
                    assert_eq!(got, (tps[3], created_ns, outcomes[4]));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "past the limit")]
    fn send_refuses_a_time_past_the_limit() {
        Send::new(None, 1, 0, SendOutcome::Unconfirmed { at_ns: SEND_TIME_NS_LIMIT });
    }
}
