//! Every send of a run, compact: a run keeps one per record (6M in a bench run), so a send that
//! has settled is encoded into a byte stream — a header byte and two or three short varints for
//! a record of a batch, instead of a 32-byte [`Send`] — and only sends still open are kept whole.
//!
//! Slots are handed out in push order and never move. A send stays in the open `window` until it
//! and every send pushed before it have settled (an outcome other than pending, and a partition
//! unless it failed); then it is encoded. Each send is encoded against the previous send of its
//! producer (the next value, the same partition, the next acknowledged offset: what one batch's
//! records share), the producers' states restarting every [`CHUNK`] sends so that any slot can
//! be decoded from its chunk's start. A change to an encoded send (rare: the run's end judging
//! a late acknowledgement pending) is kept beside the stream, in `patched`.
//!
//! The acknowledged sends are also kept as they settle as [`AckRun`]s (a batch's records: one
//! run), for the checks that read acknowledgements alone: they read a run per batch instead of
//! decoding every send. Runs are kept while they stay few (at most one per [`RUN_SENDS_MIN`]
//! sends, plus [`RUNS_FREE`]): with smaller batches they would cost more than the stream, so they
//! are dropped and read from the stream instead.

use crate::history::{widen_bounds, PartitionId, Send, SendOutcome, ACKED, ID_SEQ_MASK, PENDING};
use records::varint::{get_varlong, get_varulong, put_varlong, put_varulong};
use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;

/// Sends per chunk, the unit of random access into the stream.
const CHUNK: usize = 4096;
/// Producer indices whose spans [`Sends`] keeps in an array (a workload's are numbered from 0;
/// prefill producers' start at [`PREFILL_INDEX_BASE`](crate::history::PREFILL_INDEX_BASE), far
/// above).
const SPAN_INDEX_MAX: u32 = 4096;
const _: () = assert!(SPAN_INDEX_MAX <= crate::history::PREFILL_INDEX_BASE);
/// Producers a chunk keeps state for (in order of first appearance); a send of any other
/// producer is encoded against nothing (whole).
const PRODUCERS_MAX: usize = 64;

// The header byte of an encoded send.
const TAG_MASK: u8 = 0b11;
/// The value is the next of the previous send's producer.
const NEXT_OF_PREVIOUS: u8 = 1 << 2;
/// The value is the next of the producer at table index k (a varint after the header).
const NEXT_OF_K: u8 = 1 << 3;
/// The partition is the one the producer's previous send named.
const SAME_TP: u8 = 1 << 4;
/// The acknowledged offset is the producer's previous acknowledged offset + 1.
const NEXT_OFFSET: u8 = 1 << 5;

/// The header of an acknowledged record in its producer's batch (see [`Decoder::next_batched`]).
const BATCHED: u8 = ACKED | NEXT_OF_PREVIOUS | SAME_TP | NEXT_OFFSET;

/// Sends per kept [`AckRun`], at the fewest, before the runs are dropped (a run is 32 bytes, an
/// encoded send a few).
const RUN_SENDS_MIN: usize = 8;
/// Runs kept whatever the sends (a small run's runs are never dropped).
const RUNS_FREE: usize = 4096;

/// Acknowledged sends that follow one another in slot order (sends of other outcomes between
/// them aside): `n` records of the partition in `slot` ([`PartitionId::slot`], 0 for none), all
/// acknowledged at `at_ns`, at offsets and with values that both rise by one from `offset` and
/// `value`. A batch's records make one run; runs are not always the longest they could be (the
/// kept runs and the open window's are not joined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRun {
    pub slot: u32,
    pub n: u32,
    pub offset: i64,
    pub value: u64,
    pub at_ns: u64,
}

impl AckRun {
    fn new(slot: u32, offset: i64, value: u64, at_ns: u64) -> Self {
        AckRun { slot, n: 1, offset, value, at_ns }
    }

    /// Takes the next acknowledged send in if it continues the run; `false` if it does not.
    fn extend(&mut self, slot: u32, offset: i64, value: u64, at_ns: u64) -> bool {
        let continues = self.slot == slot
            && self.at_ns == at_ns
            && self.n < u32::MAX
            && self.offset.checked_add(i64::from(self.n)) == Some(offset)
            && self.value.checked_add(u64::from(self.n)) == Some(value);
        self.n += u32::from(continues);
        continues
    }

    /// The run's (offset, value) pairs, in order.
    pub fn records(&self) -> impl Iterator<Item = (i64, u64)> {
        let AckRun { offset, value, .. } = *self;
        (0..self.n).map(move |k| (offset + i64::from(k), value + u64::from(k)))
    }
}

/// The partition slot a send's runs name (0: none).
fn slot_of(s: &Send) -> u32 {
    s.tp().map_or(0, |t| t.slot() as u32)
}

/// The acknowledged sends of `sends`, in their order, as runs.
struct RunsOf<I> {
    sends: I,
    run: Option<AckRun>,
}

impl<I: Iterator<Item = Send>> Iterator for RunsOf<I> {
    type Item = AckRun;

    fn next(&mut self) -> Option<AckRun> {
        for s in self.sends.by_ref() {
            let SendOutcome::Acked { offset, at_ns } = s.outcome() else { continue };
            let slot = slot_of(&s);
            if self.run.as_mut().is_some_and(|r| r.extend(slot, offset, s.value, at_ns)) {
                continue;
            }
            if let Some(done) = self.run.replace(AckRun::new(slot, offset, s.value, at_ns)) {
                return Some(done);
            }
        }
        self.run.take()
    }
}

/// The sends of a run by slot: `push` hands out slots, `update` changes one, `iter` reads all.
#[derive(Clone, Default)]
pub struct Sends {
    /// The encoded bytes of each full chunk, each allocated to its size (one growing vector
    /// would keep up to its size again as slack, and copy itself as it grows).
    chunks: Vec<Box<[u8]>>,
    /// The chunk being encoded.
    open: Vec<u8>,
    /// Bytes in `chunks` and `open`.
    bytes: usize,
    /// Sends encoded (slots `0..encoded`); the window holds the slots after them.
    encoded: usize,
    codec: Codec,
    window: VecDeque<Send>,
    patched: BTreeMap<usize, Send>,
    /// Sends by outcome, kept as they change: what the checks and figures count without a pass.
    counts: Outcomes,
    /// Each producer's sends and the end of its sequence span, kept as sends are pushed: the
    /// figures size their per-producer arrays without a pass. By index below
    /// [`SPAN_INDEX_MAX`] (a workload's producers: an array index a send, where a map search
    /// was half a push), in `spans_beyond` above it (prefill producers).
    spans: Vec<Span>,
    spans_beyond: BTreeMap<u32, Span>,
    /// By partition slot (0: none), the lowest and highest offset acknowledged to the sends
    /// encoded so far, and how many: kept as sends settle, so a check can size per-partition
    /// tables without a pass.
    acked_bounds: Vec<(i64, i64, u64)>,
    /// The earliest completion ([`completed_at`]) among the sends encoded so far: kept as
    /// sends settle, so the run's measuring window needs no pass.
    encoded_first_completion_ns: Option<u64>,
    /// The acknowledged sends encoded so far, as runs (see the module docs), until
    /// `runs_dropped`.
    runs: Vec<AckRun>,
    runs_dropped: bool,
}

/// One producer's pushed sends: how many, and one past the highest sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub sends: u64,
    pub seq_end: u64,
}

/// How many sends hold each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub pending: u64,
    pub acked: u64,
    pub unconfirmed: u64,
    pub failed: u64,
}

impl Outcomes {
    fn of(&mut self, s: &Send) -> &mut u64 {
        match s.outcome() {
            SendOutcome::Pending => &mut self.pending,
            SendOutcome::Acked { .. } => &mut self.acked,
            SendOutcome::Unconfirmed { .. } => &mut self.unconfirmed,
            SendOutcome::Failed { .. } => &mut self.failed,
        }
    }
}

impl Sends {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `s`; returns its slot.
    pub fn push(&mut self, s: Send) -> usize {
        *self.counts.of(&s) += 1;
        self.spanned(s.value);
        self.window.push_back(s);
        self.settle();
        self.len() - 1
    }

    pub fn len(&self) -> usize {
        self.encoded + self.window.len()
    }

    /// Counts record `value` in its producer's span.
    fn spanned(&mut self, value: u64) {
        let producer = (value >> 40) as u32;
        let span = if producer < SPAN_INDEX_MAX {
            let k = producer as usize;
            if k >= self.spans.len() {
                self.spans.resize(k + 1, Span::default());
            }
            &mut self.spans[k]
        } else {
            self.spans_beyond.entry(producer).or_default()
        };
        span.sends += 1;
        span.seq_end = span.seq_end.max((value & ID_SEQ_MASK) + 1);
    }

    /// By partition slot (0: a send without one; `(i64::MAX, i64::MIN, 0)` for none), the
    /// lowest and highest offset acknowledged and how many acknowledgements: every send
    /// acknowledged now is inside, and so is one acknowledged when it settled and changed
    /// after (the bounds can be wider than today's sends, never narrower). No pass over the
    /// encoded sends.
    pub fn acked_offset_bounds(&self) -> Vec<(i64, i64, u64)> {
        let mut bounds = self.acked_bounds.clone();
        for s in self.window.iter().chain(self.patched.values()) {
            if let SendOutcome::Acked { offset, .. } = s.outcome() {
                widen(&mut bounds, s, offset);
            }
        }
        bounds
    }

    /// Every producer's span of sequence numbers, by producer: `seq_end` is one past the
    /// highest sequence number (`value & (2⁴⁰ − 1)`) any of its sends holds.
    pub fn producer_spans(&self) -> Vec<(u32, Span)> {
        let listed = self.spans.iter().enumerate().filter(|(_, s)| s.sends > 0);
        let listed = listed.map(|(p, &s)| (p as u32, s));
        listed.chain(self.spans_beyond.iter().map(|(&p, &s)| (p, s))).collect()
    }

    /// The earliest time a send completed (acknowledged, or with acks=0 written without a
    /// reply), `None` if none did. No pass over the encoded sends unless one was changed after
    /// it settled (rare: then the earliest may have been that one, so every send is read).
    pub fn first_completion_ns(&self) -> Option<u64> {
        if !self.patched.is_empty() {
            return self.iter().filter_map(|s| completed_at(&s)).min();
        }
        let open = self.window.iter().filter_map(completed_at);
        open.chain(self.encoded_first_completion_ns).min()
    }

    /// How many sends hold each outcome now.
    pub fn outcomes(&self) -> Outcomes {
        self.counts
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the encoded sends take (their stream), for the figures: not counting the window.
    pub fn encoded_bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes of chunk `c` (full or open).
    fn chunk(&self, c: usize) -> &[u8] {
        self.chunks.get(c).map_or(&self.open, |b| b)
    }

    pub fn encoded(&self) -> usize {
        self.encoded
    }

    pub fn get(&self, slot: usize) -> Option<Send> {
        if let Some(i) = slot.checked_sub(self.encoded) {
            return self.window.get(i).cloned();
        }
        if let Some(s) = self.patched.get(&slot) {
            return Some(s.clone());
        }
        let chunk = slot / CHUNK;
        let mut d = Decoder { stream: self.chunk(chunk), pos: 0, codec: Codec::default() };
        for _ in chunk * CHUNK..slot {
            d.next();
        }
        Some(d.next())
    }

    /// Applies `f` to the send in `slot`; `false` if there is none.
    pub fn update(&mut self, slot: usize, f: impl FnOnce(&mut Send)) -> bool {
        match slot.checked_sub(self.encoded) {
            Some(i) => {
                let Some(s) = self.window.get_mut(i) else { return false };
                *self.counts.of(s) -= 1;
                let value = s.value;
                f(s);
                assert_eq!(s.value, value, "an update changes a send's outcome or partition");
                *self.counts.of(s) += 1;
                self.settle();
            }
            None => {
                let Some(mut s) = self.get(slot) else { return false };
                let before = s.clone();
                f(&mut s);
                assert_eq!(
                    s.value, before.value,
                    "an update changes a send's outcome or partition"
                );
                if s != before {
                    *self.counts.of(&before) -= 1;
                    *self.counts.of(&s) += 1;
                    self.patched.insert(slot, s);
                }
            }
        }
        true
    }

    /// Acknowledges the `n` sends from slot `first` at offsets `offset`, `offset + 1`, … at
    /// `at_ns` — a batch's records, one update: what `update` does to each in turn (a send
    /// without a partition gets `tp()`'s), with the window settled once at the end (an update
    /// changes only its own send, and a send is encoded as it stands when it settles, so the
    /// stream is the same). Returns how many of the slots there were (they are a prefix).
    pub fn ack_run(
        &mut self,
        first: usize,
        n: usize,
        offset: i64,
        at_ns: u64,
        mut tp: impl FnMut() -> PartitionId,
    ) -> usize {
        let n = n.min(self.len().saturating_sub(first));
        // What acknowledging the run's `k`th send does to it.
        let mut ack = |s: &mut Send, k: usize| {
            if s.tp().is_none() {
                s.set_tp(Some(tp()));
            }
            let offset = offset.checked_add(k as i64).expect("a run's offsets fit an i64");
            s.set_outcome(SendOutcome::Acked { offset, at_ns });
        };
        let Some(start) = first.checked_sub(self.encoded) else {
            // Encoded already (rare): each changed one by one.
            for k in 0..n {
                self.update(first + k, |s| ack(s, k));
            }
            return n;
        };
        for (k, s) in self.window.range_mut(start..start + n).enumerate() {
            *self.counts.of(s) -= 1;
            ack(s, k);
            *self.counts.of(s) += 1;
        }
        self.settle();
        n
    }

    /// The acknowledged sends in slot order, as runs: each run's records are what
    /// [`Sends::iter`] yields acknowledged, in the same order. The runs kept as sends settled
    /// and then the open window's; decoded from the stream instead when the kept runs were
    /// dropped or an encoded send changed after it settled.
    pub fn acked_runs(&self) -> impl Iterator<Item = AckRun> + '_ {
        let kept = !self.runs_dropped && self.patched.is_empty();
        let window = RunsOf { sends: self.window.iter().cloned(), run: None };
        let stored = kept.then(|| self.runs.iter().copied().chain(window));
        let decoded = (!kept).then(|| RunsOf { sends: self.iter(), run: None });
        stored.into_iter().flatten().chain(decoded.into_iter().flatten())
    }

    /// Keeps the encoded acknowledged send `s` in the runs, or drops the runs for good once
    /// they are too many.
    fn keep_run(&mut self, s: &Send, offset: i64, at_ns: u64) {
        if self.runs_dropped {
            return;
        }
        let slot = slot_of(s);
        if self.runs.last_mut().is_some_and(|r| r.extend(slot, offset, s.value, at_ns)) {
            return;
        }
        if self.runs.len() >= self.encoded / RUN_SENDS_MIN + RUNS_FREE {
            self.runs = Vec::new();
            self.runs_dropped = true;
            return;
        }
        self.runs.push(AckRun::new(slot, offset, s.value, at_ns));
    }

    /// Every send, in slot order.
    pub fn iter(&self) -> Iter<'_> {
        let d = Decoder { stream: &[], pos: 0, codec: Codec::default() };
        Iter { sends: self, d, slot: 0 }
    }

    /// Encodes the window's settled prefix.
    fn settle(&mut self) {
        while self.window.front().is_some_and(settled) {
            let s = self.window.pop_front().expect("a front");
            if self.encoded.is_multiple_of(CHUNK) {
                self.codec.clear();
                if self.encoded > 0 {
                    let full = std::mem::replace(&mut self.open, Vec::with_capacity(CHUNK * 6));
                    self.chunks.push(full.into_boxed_slice());
                }
            }
            if let SendOutcome::Acked { offset, at_ns } = s.outcome() {
                widen(&mut self.acked_bounds, &s, offset);
                self.keep_run(&s, offset, at_ns);
            }
            if let Some(t) = completed_at(&s) {
                let first = self.encoded_first_completion_ns.map_or(t, |f| f.min(t));
                self.encoded_first_completion_ns = Some(first);
            }
            let before = self.open.len();
            self.codec.encode(&s, &mut self.open);
            self.bytes += self.open.len() - before;
            self.encoded += 1;
        }
    }
}

/// Widens `bounds` (by partition slot) to hold `s`'s acknowledged `offset`.
fn widen(bounds: &mut Vec<(i64, i64, u64)>, s: &Send, offset: i64) {
    let slot = s.tp().map_or(0, PartitionId::slot);
    if slot >= bounds.len() {
        bounds.resize(slot + 1, (i64::MAX, i64::MIN, 0));
    }
    widen_bounds(&mut bounds[slot], offset, offset, 1);
}

/// When `s` completed: acknowledged, or written without a reply (acks=0).
fn completed_at(s: &Send) -> Option<u64> {
    match s.outcome() {
        SendOutcome::Acked { at_ns, .. } | SendOutcome::Unconfirmed { at_ns } => Some(at_ns),
        SendOutcome::Pending | SendOutcome::Failed { .. } => None,
    }
}

/// Whether nothing will change `s` in a run: an outcome, and a partition unless it failed.
fn settled(s: &Send) -> bool {
    match s.outcome() {
        SendOutcome::Pending => false,
        SendOutcome::Failed { .. } => true,
        _ => s.tp().is_some(),
    }
}

/// The sends in slot order: decoded from the stream, then the window's.
pub struct Iter<'a> {
    sends: &'a Sends,
    d: Decoder<'a>,
    slot: usize,
}

impl Iterator for Iter<'_> {
    type Item = Send;

    #[inline]
    fn next(&mut self) -> Option<Send> {
        let slot = self.slot;
        let Some(i) = slot.checked_sub(self.sends.encoded) else {
            self.slot += 1;
            if slot.is_multiple_of(CHUNK) {
                self.d = Decoder {
                    stream: self.sends.chunk(slot / CHUNK),
                    pos: 0,
                    codec: Codec::default(),
                };
            }
            let s = self.d.next();
            if self.sends.patched.is_empty() {
                return Some(s);
            }
            return Some(self.sends.patched.get(&slot).cloned().unwrap_or(s));
        };
        let s = self.sends.window.get(i)?.clone();
        self.slot += 1;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.sends.len() - self.slot;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl From<Vec<Send>> for Sends {
    fn from(v: Vec<Send>) -> Self {
        v.into_iter().collect()
    }
}

impl FromIterator<Send> for Sends {
    fn from_iter<I: IntoIterator<Item = Send>>(iter: I) -> Self {
        let mut s = Sends::new();
        for send in iter {
            s.push(send);
        }
        s
    }
}

impl PartialEq for Sends {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Sends {}

impl std::fmt::Debug for Sends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What the previous send of one producer left, within a chunk.
#[derive(Clone, Copy, Default)]
struct Last {
    producer: u32,
    value: u64,
    created_ns: u64,
    at_ns: u64,
    tp: u32,
    offset: i64,
}

/// The state encoder and decoder share: one rule for both sides.
#[derive(Clone, Default)]
struct Codec {
    producers: Vec<Last>,
    previous: Option<usize>,
}

impl Codec {
    /// Forgets every producer (a chunk starts), keeping the table's room.
    fn clear(&mut self) {
        self.producers.clear();
        self.previous = None;
    }

    /// The table index of `producer`, if it has one (its earlier sends left state).
    fn find(&self, producer: u32) -> Option<usize> {
        self.producers.iter().position(|p| p.producer == producer)
    }

    /// The table index of `producer`, added on first sight while there is room.
    fn index(&mut self, producer: u32) -> Option<usize> {
        self.find(producer).or_else(|| {
            (self.producers.len() < PRODUCERS_MAX).then(|| {
                self.producers.push(Last { producer, ..Last::default() });
                self.producers.len() - 1
            })
        })
    }

    fn last(&self, k: Option<usize>) -> Last {
        k.map_or_else(Last::default, |k| self.producers[k])
    }

    fn remember(&mut self, k: Option<usize>, last: Last) {
        if let Some(k) = k {
            self.producers[k] = last;
        }
        self.previous = k;
    }

    fn encode(&mut self, s: &Send, out: &mut Vec<u8>) {
        let (tag, at_ns, offset) = s.outcome().parts();
        if tag == ACKED && self.encode_batched(s, at_ns, offset, out) {
            return;
        }
        let offset = (tag == ACKED).then_some(offset);
        let known = self.find(s.producer());
        let next = known.is_some_and(|k| self.producers[k].value.checked_add(1) == Some(s.value));
        let k = self.index(s.producer());
        let last = self.last(k);
        let tp = s.tp().map_or(0, |t| t.slot() as u32);
        let mut header = tag;
        header |= match (next, k == self.previous) {
            (true, true) => NEXT_OF_PREVIOUS,
            (true, false) => NEXT_OF_K,
            (false, _) => 0,
        };
        header |= if tp == last.tp { SAME_TP } else { 0 };
        let next_offset = offset.is_some_and(|o| last.offset.checked_add(1) == Some(o));
        header |= if next_offset { NEXT_OFFSET } else { 0 };
        out.push(header);
        match header & (NEXT_OF_PREVIOUS | NEXT_OF_K) {
            NEXT_OF_PREVIOUS => {}
            NEXT_OF_K => put_varulong(out, k.expect("a table entry") as u64),
            _ => put_varulong(out, s.value),
        }
        let created_ns = s.created_ns();
        put_varlong(out, created_ns.wrapping_sub(last.created_ns) as i64);
        if tp != last.tp {
            put_varulong(out, u64::from(tp));
        }
        if tag != PENDING {
            put_varlong(out, at_ns.wrapping_sub(last.at_ns) as i64);
        }
        if let Some(o) = offset.filter(|_| !next_offset) {
            put_varlong(out, o.wrapping_sub(last.offset));
        }
        let offset = offset.unwrap_or(last.offset);
        let at_ns = if tag == PENDING { last.at_ns } else { at_ns };
        let producer = s.producer();
        self.remember(k, Last { producer, value: s.value, created_ns, at_ns, tp, offset });
    }

    /// The common send in a [`BATCHED`] header and two varints, if it is one: the next record
    /// of the previous send's producer, to the same partition, acknowledged at the next offset.
    /// The bytes [`Codec::encode`]'s general path writes for it (the property test reads them
    /// back), without its table search.
    #[inline]
    fn encode_batched(&mut self, s: &Send, at_ns: u64, offset: i64, out: &mut Vec<u8>) -> bool {
        let Some(k) = self.previous else { return false };
        let last = &mut self.producers[k];
        let tp = s.tp().map_or(0, |t| t.slot() as u32);
        let batched = last.producer == s.producer()
            && last.value.checked_add(1) == Some(s.value)
            && last.tp == tp
            && last.offset.checked_add(1) == Some(offset);
        if !batched {
            return false;
        }
        let created_ns = s.created_ns();
        out.push(BATCHED);
        put_varlong(out, created_ns.wrapping_sub(last.created_ns) as i64);
        put_varlong(out, at_ns.wrapping_sub(last.at_ns) as i64);
        *last = Last { producer: last.producer, value: s.value, created_ns, at_ns, tp, offset };
        true
    }
}

struct Decoder<'a> {
    stream: &'a [u8],
    pos: usize,
    codec: Codec,
}

impl Decoder<'_> {
    /// The stream holds whole varints (the encoder wrote them): a short one is a broken
    /// invariant, not input.
    #[inline]
    fn varint(&mut self) -> u64 {
        get_varulong(self.stream, &mut self.pos).expect("the sends' own stream")
    }

    #[inline]
    fn delta(&mut self) -> i64 {
        get_varlong(self.stream, &mut self.pos).expect("the sends' own stream")
    }

    /// The next send (the stream holds it: callers count the sends encoded).
    #[inline]
    fn next(&mut self) -> Send {
        let header = self.stream[self.pos];
        self.pos += 1;
        if header == BATCHED {
            return self.next_batched();
        }
        self.next_other(header)
    }

    /// The common send, a record of the batch its producer's previous send was in: two varints
    /// (its creation and acknowledgement times).
    #[inline]
    fn next_batched(&mut self) -> Send {
        let created = self.delta() as u64;
        let at = self.delta() as u64;
        let k = self.codec.previous.expect("a previous producer");
        let p = &mut self.codec.producers[k];
        p.value += 1;
        p.created_ns = p.created_ns.wrapping_add(created);
        p.at_ns = p.at_ns.wrapping_add(at);
        p.offset += 1;
        let outcome = SendOutcome::Acked { offset: p.offset, at_ns: p.at_ns };
        let id = NonZeroU32::new(p.tp).map(PartitionId::from_nonzero);
        Send::new(id, p.value, p.created_ns, outcome)
    }

    fn next_other(&mut self, header: u8) -> Send {
        let (k, value) = match header & (NEXT_OF_PREVIOUS | NEXT_OF_K) {
            NEXT_OF_PREVIOUS => {
                let k = self.codec.previous.expect("a previous producer");
                (Some(k), self.codec.producers[k].value + 1)
            }
            NEXT_OF_K => {
                let k = self.varint() as usize;
                (Some(k), self.codec.producers[k].value + 1)
            }
            _ => {
                let value = self.varint();
                (self.codec.index((value >> 40) as u32), value)
            }
        };
        let last = self.codec.last(k);
        let created_ns = last.created_ns.wrapping_add(self.delta() as u64);
        let tp = if header & SAME_TP != 0 { last.tp } else { self.varint() as u32 };
        let tag = header & TAG_MASK;
        let at_ns = match tag {
            PENDING => last.at_ns,
            _ => last.at_ns.wrapping_add(self.delta() as u64),
        };
        let offset = match (tag, header & NEXT_OFFSET != 0) {
            (ACKED, true) => last.offset + 1,
            (ACKED, false) => last.offset.wrapping_add(self.delta()),
            _ => last.offset,
        };
        let outcome = SendOutcome::from_parts(tag, at_ns, offset);
        let producer = (value >> 40) as u32;
        self.codec.remember(k, Last { producer, value, created_ns, at_ns, tp, offset });
        let id = NonZeroU32::new(tp).map(PartitionId::from_nonzero);
        Send::new(id, value, created_ns, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::SEND_TIME_NS_LIMIT;
    use proptest::prelude::*;

    fn id(n: u32) -> Option<PartitionId> {
        NonZeroU32::new(n).map(PartitionId::from_nonzero)
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A send of producer p (of 80: more than a chunk keeps state for), its next value or a
        /// jump, created `dt` after the previous one.
        Push { p: u32, jump: u64, dt: u64, tp: u32, settle: Option<(u8, i64, u64)> },
        /// Settles (or changes) the send `back` slots from the end.
        Update { back: usize, tp: u32, settle: (u8, i64, u64) },
        /// The next record of the last push's batch: its producer's next value, to the same
        /// partition, acknowledged at the offset after the last push's (0 if it had none), at
        /// `at` ns or, without one, when the last push was.
        Next { dt: u64, at: Option<u64> },
        /// Acknowledges the `n` sends from `back` slots before the end (those there are) at
        /// `offset` on, at `at` ns, as one run ([`Sends::ack_run`]); a send without a
        /// partition gets `tp`.
        AckRun { back: usize, n: usize, tp: u32, offset: i64, at: u64 },
    }

    fn outcome((tag, offset, at_ns): (u8, i64, u64)) -> SendOutcome {
        match tag % 4 {
            0 => SendOutcome::Pending,
            1 => SendOutcome::Acked { offset, at_ns },
            2 => SendOutcome::Unconfirmed { at_ns },
            _ => SendOutcome::Failed { at_ns },
        }
    }

    fn settle_strategy() -> impl Strategy<Value = (u8, i64, u64)> {
        let offset =
            prop_oneof![4 => 0i64..50, 1 => Just(i64::MIN), 1 => Just(i64::MAX), 1 => any::<i64>()];
        let at = prop_oneof![4 => 0u64..5_000_000, 1 => Just(SEND_TIME_NS_LIMIT - 1)];
        (0u8..4, offset, at)
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let push = (
            prop_oneof![8 => 0u32..3, 1 => 0u32..80, 1 => Just(1u32 << 23)],
            prop_oneof![8 => Just(1u64), 1 => 0u64..3, 1 => any::<u64>()],
            prop_oneof![4 => 0u64..20_000, 1 => Just(0u64)],
            prop_oneof![6 => 1u32..4, 1 => Just(0u32), 1 => Just(1 << 24)],
            proptest::option::weighted(0.6, settle_strategy()),
        )
            .prop_map(|(p, jump, dt, tp, settle)| Op::Push { p, jump, dt, tp, settle });
        let update = (0usize..40, 0u32..4, settle_strategy())
            .prop_map(|(back, tp, settle)| Op::Update { back, tp, settle });
        let next = (0u64..20_000, proptest::option::weighted(0.3, 0u64..5_000_000))
            .prop_map(|(dt, at)| Op::Next { dt, at });
        let offset = prop_oneof![4 => 0i64..50, 1 => Just(i64::MAX - 40), 1 => Just(i64::MIN)];
        let ack_run = (0usize..60, 0usize..30, 1u32..4, offset, 0u64..5_000_000)
            .prop_map(|(back, n, tp, offset, at)| Op::AckRun { back, n, tp, offset, at });
        prop_oneof![3 => push, 2 => update, 3 => next, 1 => ack_run]
    }

    /// Applies `ops` to a plain vector (the model) and to `Sends`.
    fn apply(ops: &[Op]) -> (Vec<Send>, Sends) {
        let (mut model, mut sends) = (Vec::<Send>::new(), Sends::new());
        let (mut next, mut created) = (BTreeMap::<u32, u64>::new(), 0u64);
        let mut last: Option<Send> = None;
        for op in ops {
            match op {
                Op::Push { p, jump, dt, tp, settle } => {
                    let seq = next.entry(*p).or_default();
                    *seq = seq.wrapping_add(*jump) & ((1 << 40) - 1);
                    created = (created + dt).min(SEND_TIME_NS_LIMIT - 1);
                    let o = settle.map_or(SendOutcome::Pending, outcome);
                    let s = Send::new(id(*tp), (u64::from(*p) << 40) | *seq, created, o);
                    assert_eq!(sends.push(s.clone()), model.len());
                    model.push(s.clone());
                    last = Some(s);
                }
                Op::Next { dt, at } => {
                    let Some(prev) = last.take() else { continue };
                    let seq = next.entry(prev.producer()).or_default();
                    *seq = seq.wrapping_add(1) & ((1 << 40) - 1);
                    created = (created + dt).min(SEND_TIME_NS_LIMIT - 1);
                    let (offset, prev_at) = match prev.outcome() {
                        SendOutcome::Acked { offset, at_ns } => (offset.wrapping_add(1), at_ns),
                        o => (0, o.parts().1),
                    };
                    let o = SendOutcome::Acked { offset, at_ns: at.unwrap_or(prev_at) };
                    let value = (u64::from(prev.producer()) << 40) | *seq;
                    let s = Send::new(prev.tp(), value, created, o);
                    assert_eq!(sends.push(s.clone()), model.len());
                    model.push(s.clone());
                    last = Some(s);
                }
                Op::Update { back, tp, settle } => {
                    let Some(slot) = model.len().checked_sub(back + 1) else { continue };
                    let f = |s: &mut Send| {
                        s.set_tp(id(*tp).or(s.tp()));
                        s.set_outcome(outcome(*settle));
                    };
                    f(&mut model[slot]);
                    assert!(sends.update(slot, f));
                }
                Op::AckRun { back, n, tp, offset, at } => {
                    let Some(first) = model.len().checked_sub(back + 1) else { continue };
                    let there = (*n).min(model.len() - first);
                    for (k, s) in model[first..first + there].iter_mut().enumerate() {
                        s.set_tp(s.tp().or(id(*tp)));
                        s.set_outcome(SendOutcome::Acked { offset: offset + k as i64, at_ns: *at });
                    }
                    let tp_of = || id(*tp).expect("a partition");
                    assert_eq!(sends.ack_run(first, *n, *offset, *at, tp_of), there);
                }
            }
        }
        (model, sends)
    }

    /// The acknowledged sends as (slot, offset, value, at), in slot order.
    fn acked_of(sends: &[Send]) -> Vec<(u32, i64, u64, u64)> {
        let acked = |s: &Send| match s.outcome() {
            SendOutcome::Acked { offset, at_ns } => Some((slot_of(s), offset, s.value, at_ns)),
            _ => None,
        };
        sends.iter().filter_map(acked).collect()
    }

    /// [`Sends::acked_runs`] record by record, as [`acked_of`] lists them.
    fn expand_runs(sends: &Sends) -> Vec<(u32, i64, u64, u64)> {
        let each = |r: AckRun| r.records().map(move |(o, v)| (r.slot, o, v, r.at_ns));
        sends.acked_runs().flat_map(each).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Whatever is pushed and changed, in whatever order sends settle, `iter` and `get` read
        /// back the model's sends: across chunk boundaries, with more producers than a chunk
        /// keeps state for, with values, offsets and times at their limits.
        #[test]
        fn reads_back_what_a_vector_holds(ops in proptest::collection::vec(op_strategy(), 0..9_000)) {
            let (model, mut sends) = apply(&ops);
            prop_assert_eq!(sends.len(), model.len());
            let mut counts = Outcomes::default();
            model.iter().for_each(|s| *counts.of(s) += 1);
            prop_assert_eq!(sends.outcomes(), counts);
            prop_assert!(sends.iter().eq(model.iter().cloned()));
            for slot in (0..model.len()).step_by(97).chain(model.len().checked_sub(1)) {
                prop_assert_eq!(sends.get(slot), Some(model[slot].clone()));
            }
            prop_assert_eq!(sends.get(model.len()), None);
            let mut spans = BTreeMap::<u32, Span>::new();
            for s in &model {
                let span = spans.entry(s.producer()).or_default();
                span.sends += 1;
                span.seq_end = span.seq_end.max((s.value & ID_SEQ_MASK) + 1);
            }
            prop_assert_eq!(sends.producer_spans(), spans.into_iter().collect::<Vec<_>>());
            // Bounds hold every acknowledged offset by partition, and count at least every ack
            // (an encoded send changed after it settled counts again).
            let bounds = sends.acked_offset_bounds();
            let mut acks = vec![0u64; bounds.len()];
            for s in &model {
                if let SendOutcome::Acked { offset, .. } = s.outcome() {
                    let slot = s.tp().map_or(0, PartitionId::slot);
                    prop_assert!(bounds[slot].0 <= offset && offset <= bounds[slot].1);
                    acks[slot] += 1;
                }
            }
            prop_assert!(bounds.iter().zip(&acks).all(|(b, &n)| b.2 >= n));
            let first = |v: &[Send]| v.iter().filter_map(completed_at).min();
            prop_assert_eq!(sends.first_completion_ns(), first(&model));
            prop_assert_eq!(expand_runs(&sends), acked_of(&model));
            prop_assert!(!sends.update(model.len(), |_| unreachable!()));
            // An encoded send changed after the fact reads back changed, the rest as they were.
            if sends.encoded() > 0 {
                let slot = sends.encoded() / 2;
                let mut want = model.clone();
                want[slot].set_outcome(SendOutcome::Pending);
                sends.update(slot, |s| s.set_outcome(SendOutcome::Pending));
                prop_assert!(sends.iter().eq(want.iter().cloned()));
                let mut counts = Outcomes::default();
                want.iter().for_each(|s| *counts.of(s) += 1);
                prop_assert_eq!(sends.outcomes(), counts);
                prop_assert_eq!(sends.get(slot), Some(want[slot].clone()));
                prop_assert_eq!(sends.first_completion_ns(), first(&want));
                prop_assert_eq!(expand_runs(&sends), acked_of(&want));
            }
        }
    }

    /// A bench-like run: one producer, 100-record batches to three partitions in turn, records
    /// 10 µs apart, each batch acknowledged at once ~2 ms after its last record's creation. Its
    /// sends cost under 6 bytes each once settled (a `Send` is 32), and only the unsettled stay
    /// whole.
    #[test]
    fn a_batch_of_sends_costs_a_few_bytes_a_record() {
        let mut sends = Sends::new();
        let mut offsets = [0i64; 3];
        for i in 0..100_000u64 {
            let p = (i / 100 % 3) as usize;
            let created = i * 10_000;
            let at_ns = (i / 100 * 100 + 99) * 10_000 + 2_000_000;
            let o = SendOutcome::Acked { offset: offsets[p], at_ns };
            offsets[p] += 1;
            sends.push(Send::new(id(p as u32 + 1), (5 << 40) | i, created, o));
        }
        sends.push(Send::new(None, (5 << 40) | 100_000, 1_000_000_000, SendOutcome::Pending));
        sends.push(Send::new(id(1), (5 << 40) | 100_001, 1_000_010_000, SendOutcome::Pending));
        assert_eq!((sends.len(), sends.encoded()), (100_002, 100_000));
        // The first batch's acknowledgement, kept as it settled (the open sends are pending).
        assert_eq!(sends.first_completion_ns(), Some(99 * 10_000 + 2_000_000));
        let bytes = sends.encoded_bytes() as f64 / 100_000.0;
        assert!(bytes < 6.0, "{bytes} bytes a send");
        let acked = sends.iter().filter(|s| matches!(s.outcome(), SendOutcome::Acked { .. }));
        assert_eq!(acked.count(), 100_000);
        assert_eq!(
            sends.get(54_321).map(|s| s.outcome()),
            Some(SendOutcome::Acked { offset: 18_121, at_ns: 543_990_000 + 2_000_000 })
        );
        // A batch is a run: 1,000 of them, read without decoding a send.
        assert!(!sends.runs_dropped);
        let runs: Vec<AckRun> = sends.acked_runs().collect();
        assert_eq!(runs.len(), 1_000);
        assert!(runs.iter().all(|r| r.n == 100));
        assert_eq!((runs[544].slot, runs[544].offset), (2, 18_100)); // batch 544: partition 2, its 182nd
        let model: Vec<Send> = sends.iter().collect();
        assert_eq!(expand_runs(&sends), acked_of(&model));
    }

    /// Runs of one record (each acknowledged at its own instant) are kept up to a bound, then
    /// dropped for good; the runs are then decoded from the stream, the same runs.
    #[test]
    fn runs_of_single_records_are_dropped_and_decoded() {
        let mut sends = Sends::new();
        let kept_at_most = (0..20_000u64)
            .map(|i| {
                let o = SendOutcome::Acked { offset: i as i64, at_ns: i };
                sends.push(Send::new(id(1), (3 << 40) | i, i, o));
                sends.runs.len()
            })
            .max();
        assert!(sends.runs_dropped);
        assert!(sends.runs.is_empty() && sends.runs.capacity() == 0);
        // Dropped when the runs reached one per 8 sends plus 4,096: at the 4,682nd send.
        assert_eq!(kept_at_most, Some(4_681));
        let runs: Vec<AckRun> = sends.acked_runs().collect();
        assert_eq!(runs.len(), 20_000);
        let model: Vec<Send> = sends.iter().collect();
        assert_eq!(expand_runs(&sends), acked_of(&model));
    }
}
