//! Figures and time series computed after a run from its history and disk samples (so the
//! workload records facts, not aggregates): throughput (Kafka's MessagesInPerSec, BytesInPerSec,
//! BytesOutPerSec), produce latency percentiles, page-cache dirty bytes and hit ratio, disk
//! utilization (share of time with an IO in service, like iostat's %util).

use serde::Serialize;
use serde_json::{json, Value};

use crate::history::{History, PollKind, Send, SendOutcome, ID_SEQ_MASK};

/// One sample of the disk's gauges and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskSample {
    pub t_ns: u64,
    pub dirty_bytes: u64,
    pub cached_bytes: u64,
    pub writeback_bytes: u64,
    pub hit_pages: u64,
    pub miss_pages: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    Some(sorted[rank_index(sorted.len(), p)?])
}

/// The index of the nearest-rank `p` percentile among `n` sorted values.
fn rank_index(n: usize, p: f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(rank.clamp(1, n) - 1)
}

/// Nearest-rank percentiles of unsorted values, as [`percentile`] of the sorted values gives
/// them, by selection (linear time, not a sort of millions of latencies): `ps` ascending.
/// Leaves `v` partly reordered.
pub fn percentiles_of(v: &mut [u64], ps: &[f64]) -> Vec<Option<u64>> {
    let mut out = vec![None; ps.len()];
    let mut end = v.len();
    for (i, &p) in ps.iter().enumerate().rev() {
        let Some(k) = rank_index(v.len(), p) else { break };
        assert!(k <= end, "percentiles must be asked for in ascending order");
        // Everything before `end` is at most the value at `end` (the previous selection).
        let (_, x, _) = v[..end.max(k + 1)].select_nth_unstable(k);
        out[i] = Some(*x);
        end = k;
    }
    out
}

fn ms(ns: Option<u64>) -> Value {
    ns.map(|n| json!(n as f64 / 1e6)).unwrap_or(Value::Null)
}

pub struct Figures {
    pub summary_throughput: Value,
    pub summary_latency: Value,
    pub summary_page_cache: Value,
    pub charts: Vec<reports::Chart>,
}

/// Merges IO service intervals and returns busy nanoseconds inside each bucket.
pub fn busy_per_bucket(mut intervals: Vec<(u64, u64)>, bucket_ns: u64, buckets: usize) -> Vec<u64> {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in intervals {
        if e <= s {
            continue;
        }
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut busy = vec![0u64; buckets];
    for (mut s, e) in merged {
        while s < e {
            let b = (s / bucket_ns) as usize;
            if b >= buckets {
                break;
            }
            let end = e.min((b as u64 + 1) * bucket_ns);
            busy[b] += end - s;
            s = end;
        }
    }
    busy
}

/// Busy nanoseconds of merged IO service intervals inside `from..to`.
pub fn busy_within(mut intervals: Vec<(u64, u64)>, from: u64, to: u64) -> u64 {
    intervals.sort_unstable();
    let (mut busy, mut covered_to) = (0u64, from);
    for (s, e) in intervals {
        let (s, e) = (s.max(covered_to), e.min(to));
        if e > s {
            busy += e - s;
            covered_to = e;
        }
    }
    busy
}

/// A counter sampled at times `samples[i].0`, read at `t` by linear interpolation between the
/// samples around it; every counter is 0 when the run starts (time 0), and after the last
/// sample it stays at the last value.
fn counter_at(samples: &[(u64, f64)], t: u64) -> f64 {
    let Some(k) = samples.iter().position(|(ts, _)| *ts >= t) else {
        return samples.last().map_or(0.0, |s| s.1);
    };
    if samples[k].0 == t {
        return samples[k].1;
    }
    let ((t0, v0), (t1, v1)) =
        if k == 0 { ((0, 0.0), samples[0]) } else { (samples[k - 1], samples[k]) };
    v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64
}

/// Share of `from..to` a counter of busy nanoseconds grew by, over `capacity` (cores, or 1).
fn share(samples: &[(u64, f64)], from: u64, to: u64, capacity: f64) -> f64 {
    if to <= from || samples.is_empty() || capacity <= 0.0 {
        return 0.0;
    }
    (counter_at(samples, to) - counter_at(samples, from)) / ((to - from) as f64 * capacity)
}

/// Per sample: (time, host → (egress busy ns, ingress busy ns)).
pub type NicSamples = Vec<(u64, std::collections::BTreeMap<String, (u64, u64)>)>;
/// Per sample: (time, host → busy ns summed over its cores).
pub type CpuSamples = Vec<(u64, std::collections::BTreeMap<String, u64>)>;

/// What a run's resources did inside the measurement window.
pub struct UtilizationInput<'a> {
    pub window_ns: (u64, u64),
    /// Per sample: (time, host → (egress busy ns, ingress busy ns)).
    pub nic: &'a NicSamples,
    /// Per sample: (time, host → CPU busy ns summed over its cores).
    pub cpu: &'a CpuSamples,
    pub cores: u32,
    /// Each broker's disk: IO service intervals.
    pub disks: Vec<(String, Vec<(u64, u64)>)>,
}

/// `summary.json`'s `utilization`: each resource of each host, busy share inside the window
/// (`cpu:HOST` over its cores, `nic_out:HOST` / `nic_in:HOST` serializing, `disk:BROKER` and with
/// JBOD `disk:BROKER/i` (its disk `i`) with an IO in service, as iostat's %util).
pub fn utilization(u: &UtilizationInput) -> Value {
    let (from, to) = u.window_ns;
    let mut res = serde_json::Map::new();
    let hosts: std::collections::BTreeSet<&String> =
        u.nic.iter().flat_map(|(_, m)| m.keys()).collect();
    for h in hosts {
        let series = |pick: fn(&(u64, u64)) -> u64| -> Vec<(u64, f64)> {
            u.nic.iter().filter_map(|(t, m)| m.get(h).map(|v| (*t, pick(v) as f64))).collect()
        };
        res.insert(format!("nic_out:{h}"), json!(share(&series(|v| v.0), from, to, 1.0)));
        res.insert(format!("nic_in:{h}"), json!(share(&series(|v| v.1), from, to, 1.0)));
    }
    let cpu_hosts: std::collections::BTreeSet<&String> =
        u.cpu.iter().flat_map(|(_, m)| m.keys()).collect();
    for h in cpu_hosts {
        let series: Vec<(u64, f64)> =
            u.cpu.iter().filter_map(|(t, m)| m.get(h).map(|v| (*t, *v as f64))).collect();
        res.insert(format!("cpu:{h}"), json!(share(&series, from, to, f64::from(u.cores))));
    }
    for (name, io) in &u.disks {
        let busy = busy_within(io.clone(), from, to);
        let span = to.saturating_sub(from).max(1) as f64;
        res.insert(format!("disk:{name}"), json!(busy as f64 / span));
    }
    json!({
        "window_s": [from as f64 / 1e9, to as f64 / 1e9],
        "resources": res,
        "what": "busy share of each resource inside the throughput window: cpu:HOST busy core-time / (cores x window), nic_out:HOST and nic_in:HOST time serializing / window, disk:BROKER (disk:BROKER/i: its disk i, JBOD) time with an IO in service / window (iostat's %util)",
    })
}

/// What the workload was asked to do, and when throughput is measured.
pub struct Workload {
    /// Record payload bytes, per producer index.
    pub record_bytes: Vec<usize>,
    /// Offered records/s summed over producers; `None` when any producer is closed-loop
    /// (`"rate": "max"`: it offers as much as it can send).
    pub offered_records_per_s: Option<f64>,
    pub offered_bytes_per_s: Option<f64>,
    /// Record payload bytes of each prefill entry (their ids carry producer index
    /// `PREFILL_INDEX_BASE + k`).
    pub prefill_record_bytes: Vec<usize>,
    /// `measure.from`; `None` = from the first acknowledgement (or poll, without producers).
    pub measure_from_ns: Option<u64>,
    /// `measure.warmup`: the default window starts this long after its first acknowledgement.
    pub measure_warmup_ns: u64,
    /// When producers stopped sending new records (the window's end).
    pub producers_stop_ns: u64,
}

/// The measurement window: from `measure.from` (or the first acknowledgement — the first
/// record that reached the log — or, without producers, the first poll — plus `measure.warmup`)
/// to when producers stopped (without producers: the last poll that returned records).
fn window(h: &History, w: &Workload) -> Option<(u64, u64)> {
    let first_ack = h.sends.first_completion_ns();
    let polls = || {
        h.polls
            .iter()
            .filter(|p| matches!(&p.kind, PollKind::Records(rs) if !rs.is_empty()))
            .map(|p| p.at_ns)
    };
    let (from, to) = if h.sends.is_empty() {
        (polls().min()?, polls().max()?)
    } else {
        (first_ack?, w.producers_stop_ns)
    };
    let from = w.measure_from_ns.unwrap_or(from.saturating_add(w.measure_warmup_ns));
    (to > from).then_some((from, to))
}

/// Latencies summarized as they are recorded, in a fixed amount of memory however many a run
/// has (a histogram of ~40,000 buckets, not 8 bytes a record): count, sum and maximum exact;
/// the percentiles the middle of their bucket (HdrHistogram at [`LATENCY_DIGITS`] significant
/// digits, so within 0.05 % of the nearest-rank value).
pub struct Latencies {
    hist: hdrhistogram::Histogram<u64>,
    sum: u128,
    max: u64,
}

/// Significant digits the latency percentiles keep.
pub const LATENCY_DIGITS: u8 = 3;

impl Latencies {
    pub fn new() -> Self {
        let hist = hdrhistogram::Histogram::new(LATENCY_DIGITS).expect("a valid precision");
        Latencies { hist, sum: 0, max: 0 }
    }

    pub fn record(&mut self, ns: u64) {
        // The histogram grows its range as values come (`saturating_record` would not: it
        // clamps to the range it has).
        if self.hist.record(ns).is_err() {
            self.hist.saturating_record(ns);
        }
        self.sum += u128::from(ns);
        self.max = self.max.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Adds `other`'s latencies: the same histogram (and count, sum and maximum) as recording
    /// them here one by one.
    fn merge(&mut self, other: &Latencies) {
        self.hist.add(&other.hist).expect("auto-resizing histograms of one precision add");
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// The nearest-rank `p`th percentile (0 < p < 100), to [`LATENCY_DIGITS`] digits; `None`
    /// without latencies.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        (self.count() > 0).then(|| self.hist.median_equivalent(self.hist.value_at_percentile(p)))
    }

    fn summary(&self, what: &str) -> Value {
        let n = self.count();
        json!({
            "what": what,
            "count": n,
            "p50": ms(self.percentile(50.0)),
            "p95": ms(self.percentile(95.0)),
            "p99": ms(self.percentile(99.0)),
            "p999": ms(self.percentile(99.9)),
            "max": ms((n > 0).then_some(self.max)),
            "mean": if n == 0 { Value::Null } else { json!(self.sum as f64 / n as f64 / 1e6) },
            "resolution": format!("percentiles to {LATENCY_DIGITS} significant digits (HdrHistogram); count, max and mean exact"),
        })
    }
}

/// One plot bucket's produce latencies, each marked with whether its record was created inside
/// the measuring window: kept exactly while few (a slow run's buckets cost what their records
/// do), in two [`Latencies`] histograms (outside, inside) once past [`BUCKET_EXACT_MAX`] (a fast
/// run's cost a fixed amount each, not 8 bytes a record). The summary's produce latency counts
/// the records created inside the window: the buckets' marked latencies added together
/// ([`BucketLatencies::add_inside_to`]), so each latency is recorded once (recorded twice, in the
/// bucket and in the summary, it was a hundredth of a bench run's instructions).
enum BucketLatencies {
    /// Each latency shifted left by one, its low bit set if its record was created inside.
    Exact(Vec<u64>),
    Summarized(Box<[Latencies; 2]>),
}

/// Latencies a plot bucket keeps exactly (32 KiB).
const BUCKET_EXACT_MAX: usize = 4096;

impl BucketLatencies {
    /// Records latency `ns` of a record created inside the measuring window or not.
    fn record(&mut self, ns: u64, inside: bool) {
        assert!(ns < 1 << 63, "a latency of 292 years");
        let marked = (ns << 1) | u64::from(inside);
        match self {
            BucketLatencies::Exact(v) if v.len() < BUCKET_EXACT_MAX => v.push(marked),
            BucketLatencies::Exact(v) => {
                let mut l = Box::new([Latencies::new(), Latencies::new()]);
                v.iter().chain([&marked]).for_each(|&x| l[(x & 1) as usize].record(x >> 1));
                *self = BucketLatencies::Summarized(l);
            }
            BucketLatencies::Summarized(l) => l[usize::from(inside)].record(ns),
        }
    }

    /// Adds the latencies of records created inside the window to `to`.
    fn add_inside_to(&self, to: &mut Latencies) {
        match self {
            BucketLatencies::Exact(v) => {
                v.iter().filter(|&&x| x & 1 == 1).for_each(|&x| to.record(x >> 1));
            }
            BucketLatencies::Summarized(l) => to.merge(&l[1]),
        }
    }

    /// p50, p99 and max of all its latencies (`None` without latencies).
    fn p50_p99_max(self) -> Vec<Option<u64>> {
        match self {
            BucketLatencies::Exact(mut v) => {
                v.iter_mut().for_each(|x| *x >>= 1);
                percentiles_of(&mut v, &[50.0, 99.0, 100.0])
            }
            BucketLatencies::Summarized(l) => {
                // The inside ones take the outside ones in: once the window has begun the
                // outside histogram is empty, and adding an empty one costs nothing.
                let [outside, mut all] = *l;
                all.merge(&outside);
                vec![all.percentile(50.0), all.percentile(99.0), Some(all.max)]
            }
        }
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends by outcome (acked, unconfirmed, failed, pending) and records polled, over the run.
fn outcome_counts(h: &History) -> (u64, u64, u64, u64, u64) {
    let o = h.sends.outcomes();
    let (n_acked, n_failed, n_unconfirmed, n_pending) =
        (o.acked, o.failed, o.unconfirmed, o.pending);
    let n_consumed: u64 = h
        .polls
        .iter()
        .map(|p| if let PollKind::Records(rs) = &p.kind { rs.len() as u64 } else { 0 })
        .sum();
    (n_acked, n_unconfirmed, n_failed, n_pending, n_consumed)
}

/// Record ids are `(producer << 40) | sequence`: a multiply spreads them well enough for a hash
/// map, at a fraction of SipHash's cost (these maps hold one entry per record of the run; only
/// lookups are made, never an iteration, so the order of entries reaches nothing).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;
type IdSet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<IdHasher>>;

/// Record id → when it was created, and whether a consumer polled it yet. Ids are
/// `(producer << 40) | sequence` with sequences dense from 0, so each producer gets an array
/// indexed by sequence: a creation time as an `i32` offset from its block's first (4 bytes and
/// 2 bits per send, where a hash map cost ~35 bytes and most of the metrics' CPU). Ids that do
/// not fit a producer's dense span, or created more than ±2.1 s from their block's first (a
/// producer slower than ~500 records a second), go to a hash map (a bound on memory whatever ids
/// a history holds). A later send of an id overwrites an earlier one.
#[derive(Default)]
struct CreatedIndex {
    dense: std::collections::BTreeMap<u64, DenseIds>,
    sparse: IdMap<(u64, bool)>,
    /// The producer of the last id looked up, with its array taken out of `dense` (ids come in
    /// long runs of one producer: a map lookup per record was a tenth of the pass).
    last: Option<(u64, DenseIds)>,
}

struct DenseIds {
    /// Per block of [`CREATED_BLOCK`] sequences: the creation time the offsets count from (the
    /// first one inserted), or `u64::MAX` before any.
    base_ns: Vec<u64>,
    offset_ns: Vec<i32>,
    /// Two bits per sequence: present (in the array), seen.
    bits: Vec<u64>,
}

/// Sequences per base time of a [`DenseIds`].
const CREATED_BLOCK: usize = 1024;

impl DenseIds {
    fn new(len: usize) -> Self {
        DenseIds {
            base_ns: vec![u64::MAX; len.div_ceil(CREATED_BLOCK)],
            offset_ns: vec![0; len],
            bits: vec![0; len.div_ceil(32)],
        }
    }

    /// Stores `created_ns` for sequence `i`; `false` (and `i` not present) when it is too far
    /// from its block's base.
    fn set(&mut self, i: usize, created_ns: u64) -> bool {
        let base = &mut self.base_ns[i / CREATED_BLOCK];
        if *base == u64::MAX {
            *base = created_ns;
        }
        let fits = i32::try_from(i128::from(created_ns) - i128::from(*base)).ok();
        let present = 1 << ((i % 32) * 2);
        match fits {
            Some(d) => {
                self.offset_ns[i] = d;
                self.bits[i / 32] |= present;
            }
            None => self.bits[i / 32] &= !present,
        }
        fits.is_some()
    }

    fn created_ns(&self, i: usize) -> u64 {
        self.base_ns[i / CREATED_BLOCK].wrapping_add_signed(i64::from(self.offset_ns[i]))
    }
}

impl CreatedIndex {
    /// Spans beyond `2 × sends + DENSE_SLACK` sequences go to the hash map.
    const DENSE_SLACK: u64 = 4096;

    /// An empty index with a dense array for each producer whose sends' ids span at most
    /// twice their number (plus slack); fill it with [`CreatedIndex::insert`].
    fn sized_for(h: &History) -> Self {
        let mut ix = CreatedIndex::default();
        for (producer, span) in h.sends.producer_spans() {
            if span.seq_end <= span.sends.saturating_mul(2).saturating_add(Self::DENSE_SLACK) {
                ix.dense.insert(u64::from(producer), DenseIds::new(span.seq_end as usize));
            }
        }
        ix
    }

    #[cfg(test)]
    fn has_array(&self, producer: u64) -> bool {
        self.dense.contains_key(&producer)
            || self.last.as_ref().is_some_and(|(p, _)| *p == producer)
    }

    #[cfg(test)]
    fn new(h: &History) -> Self {
        let mut ix = Self::sized_for(h);
        for s in h.sends.iter() {
            ix.insert(s.value, s.created_ns());
        }
        ix
    }

    /// The dense array and index of `id`, if its producer has one and it lies in the span.
    fn slot(&mut self, id: u64) -> Option<(&mut DenseIds, usize)> {
        let producer = id >> 40;
        if self.last.as_ref().is_none_or(|(p, _)| *p != producer) {
            let taken = self.dense.remove(&producer).map(|d| (producer, d));
            if let Some((p, d)) = std::mem::replace(&mut self.last, taken) {
                self.dense.insert(p, d);
            }
        }
        let (_, d) = self.last.as_mut()?;
        let i = (id & ID_SEQ_MASK) as usize;
        (i < d.offset_ns.len()).then_some((d, i))
    }

    fn insert(&mut self, id: u64, created_ns: u64) {
        let stored = self.slot(id).is_some_and(|(d, i)| d.set(i, created_ns));
        if stored {
            // A later send of the id overwrites an earlier one kept in the map.
            self.sparse.remove(&id);
        } else {
            self.sparse.insert(id, (created_ns, false));
        }
    }

    /// When `id` was created (`None`: no send has it), and whether this was its first sighting
    /// (marking it seen).
    fn see(&mut self, id: u64) -> Option<(u64, bool)> {
        match self.slot(id) {
            Some((d, i)) => {
                let (word, bit) = (i / 32, (i % 32) * 2);
                if d.bits[word] & (1 << bit) == 0 {
                    return self.sparse_see(id);
                }
                let first = d.bits[word] & (2 << bit) == 0;
                d.bits[word] |= 2 << bit;
                Some((d.created_ns(i), first))
            }
            None => self.sparse_see(id),
        }
    }

    fn sparse_see(&mut self, id: u64) -> Option<(u64, bool)> {
        let e = self.sparse.get_mut(&id)?;
        let first = !e.1;
        e.1 = true;
        Some((e.0, first))
    }
}

/// Throughput offered and achieved, and end-to-end latency, over the window: one pass over the
/// sends and one over the polls. `per_send` sees every send on the way, with whether it was
/// created inside the window (the figures' per-bucket series and the produce latencies, which
/// the caller keeps by plot bucket, share the pass).
fn throughput_and_latency(
    h: &History,
    w: &Workload,
    mut per_send: impl FnMut(&Send, bool),
) -> (Value, Value) {
    let win = window(h, w);
    let inside = |t: u64| win.is_some_and(|(a, b)| t >= a && t <= b);
    let bytes_of =
        |producer: u32| w.record_bytes.get(producer as usize).copied().unwrap_or(0) as u64;
    // acks=0: a send counts as produced when its value reached the log (the oracle's read).
    let in_log: IdSet = if h.sends.outcomes().unconfirmed > 0 {
        h.final_logs.values().flatten().flat_map(|l| l.records.iter().map(|r| r.1)).collect()
    } else {
        Default::default()
    };
    let (mut produced, mut produced_bytes, mut acks0_in_log) = (0u64, 0u64, 0u64);
    // One pass over the sends: the produce figures, and each record's creation time indexed
    // for the end-to-end latencies below.
    let mut created = CreatedIndex::sized_for(h);
    for s in h.sends.iter() {
        per_send(&s, inside(s.created_ns()));
        created.insert(s.value, s.created_ns());
        let at = match s.outcome() {
            SendOutcome::Acked { at_ns, .. } => at_ns,
            SendOutcome::Unconfirmed { at_ns } if in_log.contains(&s.value) => {
                acks0_in_log += 1;
                at_ns
            }
            _ => continue,
        };
        if inside(at) {
            produced += 1;
            produced_bytes += bytes_of(s.producer());
        }
    }
    let (mut consumed, mut consumed_bytes) = (0u64, 0u64);
    let mut e2e = Latencies::new();
    for p in &h.polls {
        let PollKind::Records(rs) = &p.kind else { continue };
        for value in rs.values() {
            let c = created.see(value);
            if inside(p.at_ns) {
                consumed += 1;
                let producer = (value >> 40) as u32;
                consumed_bytes += match producer.checked_sub(crate::history::PREFILL_INDEX_BASE) {
                    Some(k) => w.prefill_record_bytes.get(k as usize).copied().unwrap_or(0) as u64,
                    None => bytes_of(producer),
                };
            }
            // End to end: created → first consumed by anyone, for records created in the window.
            if let Some((t0, first)) = c {
                if inside(t0) && first {
                    e2e.record(p.at_ns.saturating_sub(t0));
                }
            }
        }
    }
    let secs = win.map_or(0.0, |(a, b)| (b - a) as f64 / 1e9);
    let rate = |n: u64| if secs > 0.0 { json!(n as f64 / secs) } else { Value::Null };
    let (n_acked, n_unconfirmed, n_failed, n_pending, n_consumed) = outcome_counts(h);
    let throughput = json!({
        "offered": {
            "produce_records_per_s": w.offered_records_per_s,
            "produce_bytes_per_s": w.offered_bytes_per_s,
            "note": match (w.offered_records_per_s.is_some(), w.record_bytes.is_empty()) {
                (_, true) => "no producers",
                (false, false) => "closed-loop producers (rate: max) offer what they can send",
                (true, false) => "the scenario's rate, summed over producers",
            },
        },
        "achieved": {
            "produce_records_per_s": rate(produced),
            "produce_bytes_per_s": rate(produced_bytes),
            "consume_records_per_s": rate(consumed),
            "consume_bytes_per_s": rate(consumed_bytes),
        },
        "window_s": win.map(|(a, b)| json!([a as f64 / 1e9, b as f64 / 1e9])),
        "window": "from measure.from, or the first acknowledgement (without producers: the first poll), to when producers stopped (without producers: the last poll with records); records acknowledged (acks=0: that reached the log) and polled inside it",
        "MessagesInPerSec": rate(produced),
        "BytesInPerSec": rate(produced_bytes),
        "MessagesOutPerSec": rate(consumed),
        "BytesOutPerSec": rate(consumed_bytes),
        "note": "record payload bytes; batch and protocol overhead not counted",
        "sends": h.sends.len(),
        "acked": n_acked,
        "unconfirmed_acks0": n_unconfirmed,
        "acks0_in_log": acks0_in_log,
        "failed": n_failed,
        "pending_at_end": n_pending,
        "consumed": n_consumed,
    });
    (
        throughput,
        e2e.summary(
            "record created → first polled by a consumer; records created inside the window",
        ),
    )
}

/// A line's points: (seconds, value).
type Points = Vec<(f64, f64)>;

/// Page cache per sample: dirty MiB, the interval's read hit ratio, and the peak dirty bytes.
fn page_cache_series(samples: &[DiskSample]) -> (Points, Points, u64) {
    let mut dirty = Vec::new();
    let mut hit = Vec::new();
    let mut prev = DiskSample::default();
    let mut peak_dirty = 0u64;
    for s in samples {
        let x = s.t_ns as f64 / 1e9;
        dirty.push((x, s.dirty_bytes as f64 / (1 << 20) as f64));
        peak_dirty = peak_dirty.max(s.dirty_bytes);
        let (dh, dm) = (
            s.hit_pages.saturating_sub(prev.hit_pages),
            s.miss_pages.saturating_sub(prev.miss_pages),
        );
        if dh + dm > 0 {
            hit.push((x, dh as f64 / (dh + dm) as f64));
        }
        prev = *s;
    }
    (dirty, hit, peak_dirty)
}

pub fn figures(
    h: &History,
    samples: &[DiskSample],
    io: Vec<(u64, u64)>,
    w: &Workload,
    end_ns: u64,
) -> Figures {
    let bucket_ns: u64 = if end_ns > 20_000_000_000 { 1_000_000_000 } else { 100_000_000 };
    let buckets = (end_ns / bucket_ns + 1) as usize;
    let t = |b: usize| (b as f64 + 0.5) * bucket_ns as f64 / 1e9;
    let per_s = 1e9 / bucket_ns as f64;

    let mut acked = vec![0u64; buckets];
    let mut lat_by_bucket: Vec<BucketLatencies> =
        (0..buckets).map(|_| BucketLatencies::Exact(Vec::new())).collect();
    // The summary's produce latency: a send acknowledged past the last bucket (none in a run
    // that ends after its acknowledgements) goes in directly, the buckets' after the pass.
    let mut produce_lat = Latencies::new();
    // The sends' series come from the summary's pass over the sends.
    let (summary_throughput, e2e) = throughput_and_latency(h, w, |s, created_inside| {
        if let SendOutcome::Acked { at_ns, .. } | SendOutcome::Unconfirmed { at_ns } = s.outcome() {
            let b = (at_ns / bucket_ns) as usize;
            let acked_send = matches!(s.outcome(), SendOutcome::Acked { .. });
            let latency = at_ns.saturating_sub(s.created_ns());
            if b < buckets {
                acked[b] += 1;
                if acked_send {
                    lat_by_bucket[b].record(latency, created_inside);
                }
            } else if acked_send && created_inside {
                produce_lat.record(latency);
            }
        }
    });
    lat_by_bucket.iter().for_each(|b| b.add_inside_to(&mut produce_lat));
    let summary_latency = json!({
        "produce_ms": produce_lat.summary("record created (producer send) → acknowledged, including linger and batching; records created inside the window"),
        "end_to_end_ms": e2e,
    });
    let mut consumed = vec![0u64; buckets];
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            let b = (p.at_ns / bucket_ns) as usize;
            if b < buckets {
                consumed[b] += rs.len() as u64;
            }
        }
    }
    // Consumed bucket by bucket, so the latencies are freed before the summary's arrays are
    // built (a shadowed binding would keep them to the end of the function).
    let lat_by_bucket: Vec<Vec<Option<u64>>> =
        lat_by_bucket.into_iter().map(BucketLatencies::p50_p99_max).collect();

    let (dirty, hit, peak_dirty) = page_cache_series(samples);
    let last = samples.last().copied().unwrap_or_default();
    let total = last.hit_pages + last.miss_pages;
    let busy = busy_per_bucket(io, bucket_ns, buckets);
    let busy_total: u64 = busy.iter().sum();
    let summary_page_cache = json!({
        "hit_ratio": if total == 0 { Value::Null } else { json!(last.hit_pages as f64 / total as f64) },
        "hit_pages": last.hit_pages,
        "miss_pages": last.miss_pages,
        "peak_dirty_bytes": peak_dirty,
        "disk_utilization_mean": if end_ns == 0 { 0.0 } else { busy_total as f64 / end_ns as f64 },
    });

    let pts = |v: &[u64], scale: f64| {
        v.iter().enumerate().map(|(b, &x)| (t(b), x as f64 * scale)).collect::<Vec<_>>()
    };
    // A bucket without acknowledgements is a gap (NaN breaks the line), not a line across it.
    let pct = |i: usize| {
        lat_by_bucket
            .iter()
            .enumerate()
            .map(|(b, v)| (t(b), v[i].map_or(f64::NAN, |x| x as f64 / 1e6)))
            .collect::<Vec<_>>()
    };
    let line = |name: &str, points| reports::Line { name: name.to_string(), points };
    let charts = vec![
        reports::Chart {
            file: "throughput.svg".into(),
            title: "Throughput (MessagesInPerSec acked, MessagesOutPerSec consumed)".into(),
            y_label: "records/s".into(),
            lines: vec![line("acked", pts(&acked, per_s)), line("consumed", pts(&consumed, per_s))],
        },
        reports::Chart {
            file: "produce_latency.svg".into(),
            title: "Produce latency (send → ack) by ack time".into(),
            y_label: "ms".into(),
            lines: vec![line("p50", pct(0)), line("p99", pct(1)), line("max", pct(2))],
        },
        reports::Chart {
            file: "page_cache_dirty.svg".into(),
            title: "Page cache: dirty bytes (incl. under writeback)".into(),
            y_label: "MiB".into(),
            lines: vec![line("dirty", dirty)],
        },
        reports::Chart {
            file: "page_cache_hit_ratio.svg".into(),
            title: "Page cache: read hit ratio per sample".into(),
            y_label: "hits / (hits + misses)".into(),
            lines: vec![line("hit ratio", hit)],
        },
        reports::Chart {
            file: "disk_utilization.svg".into(),
            title: "Disk utilization (share of time with an IO in service)".into(),
            y_label: "utilization".into(),
            lines: vec![line("disk", pts(&busy, 1.0 / bucket_ns as f64))],
        },
    ];
    Figures { summary_throughput, summary_latency, summary_page_cache, charts }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Selection answers as sorting did, on sizes from 0 up, with and without repeats, and
    /// with equal ranks (few values, close percentiles).
    #[test]
    fn percentiles_by_selection_match_the_sorted_ones() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let ps = [0.0, 50.0, 95.0, 99.0, 99.9, 100.0];
        for n in (0..40).chain([999, 1000, 1001, 10_000]) {
            for spread in [3u64, 1 << 40] {
                let mut v: Vec<u64> = (0..n).map(|_| r.gen_range(0..spread)).collect();
                let mut sorted = v.clone();
                sorted.sort_unstable();
                let want: Vec<_> = ps.iter().map(|&p| percentile(&sorted, p)).collect();
                assert_eq!(percentiles_of(&mut v, &ps), want, "n={n} spread={spread}");
            }
        }
    }

    /// The summary kept in a histogram answers as the exact one within its resolution: every
    /// percentile within 0.05 % of the nearest-rank value (the middle of a bucket 0.1 % wide),
    /// count, max and mean exact; over latencies from nanoseconds to hours (the histogram grows
    /// its range as they come).
    #[test]
    fn latencies_answer_as_the_exact_percentiles_within_their_resolution() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (n, top) in [(1usize, 10u64), (1000, 5_000_000), (100_000, 1 << 44)] {
            let mut v: Vec<u64> = (0..n).map(|_| r.gen_range(1..top)).collect();
            let mut l = Latencies::new();
            v.iter().for_each(|&x| l.record(x));
            let ps = [50.0, 95.0, 99.0, 99.9];
            let exact = percentiles_of(&mut v, &ps);
            for (p, want) in ps.iter().zip(exact) {
                let (got, want) = (l.percentile(*p).unwrap() as f64, want.unwrap() as f64);
                let err = (got - want).abs() / want;
                assert!(err <= 0.0005 + 1.0 / want, "p{p} of {n}: {got} vs {want}");
            }
            let s = l.summary("test");
            let sum: u64 = v.iter().sum();
            assert_eq!(s["count"], n as u64);
            assert_eq!(s["max"], json!(*v.iter().max().unwrap() as f64 / 1e6));
            assert_eq!(s["mean"], json!(sum as f64 / n as f64 / 1e6));
        }
        let empty = Latencies::new().summary("none");
        assert_eq!(
            (&empty["count"], &empty["p50"], &empty["mean"]),
            (&json!(0), &Value::Null, &Value::Null)
        );
    }

    /// A plot bucket answers exactly while it holds few latencies and within the histogram's
    /// resolution past [`BUCKET_EXACT_MAX`], keeping every latency recorded (none lost in the
    /// hand-over) and the exact maximum.
    #[test]
    fn a_plot_bucket_summarizes_past_its_exact_limit() {
        for n in [0usize, 10, BUCKET_EXACT_MAX, BUCKET_EXACT_MAX + 1, 50_000] {
            // The largest first: lost in a hand-over, the maximum and p99 would show it.
            let mut v: Vec<u64> = (0..n as u64).rev().map(|x| 1_000 + x * 37).collect();
            let mut b = BucketLatencies::Exact(Vec::new());
            // Every third created inside the window.
            v.iter().enumerate().for_each(|(i, &x)| b.record(x, i % 3 == 0));
            assert_eq!(matches!(b, BucketLatencies::Summarized(_)), n > BUCKET_EXACT_MAX);
            if let BucketLatencies::Summarized(l) = &b {
                assert_eq!(l[0].count() + l[1].count(), n as u64);
                assert_eq!(l[1].count(), n.div_ceil(3) as u64);
            }
            let got = b.p50_p99_max();
            let want = percentiles_of(&mut v, &[50.0, 99.0, 100.0]);
            assert_eq!(got[2], want[2], "max of {n}");
            for (g, w) in got.iter().zip(&want).take(2) {
                let (g, w) = (g.map(|x| x as f64), w.map(|x| x as f64));
                assert!(
                    g == w || (g.unwrap() - w.unwrap()).abs() / w.unwrap() <= 0.0005,
                    "{g:?} vs {w:?} of {n}"
                );
            }
        }
    }

    /// The summary's produce latency, added together from the plot buckets' marked latencies
    /// (exact buckets and summarized ones, several of each), answers exactly as one histogram
    /// that recorded the records created inside the window directly: same count, sum, maximum
    /// and percentiles; the outside ones stay out of it.
    #[test]
    fn inside_latencies_added_from_buckets_equal_one_histogram() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut buckets: Vec<BucketLatencies> =
            (0..6).map(|_| BucketLatencies::Exact(Vec::new())).collect();
        let mut direct = Latencies::new();
        for (k, b) in buckets.iter_mut().enumerate() {
            // Buckets 0, 2, 4 stay exact; 1, 3, 5 pass the limit.
            let n = if k % 2 == 0 { 100 * k + 7 } else { BUCKET_EXACT_MAX + 500 * k };
            for _ in 0..n {
                let (ns, inside) = (r.gen_range(1..1u64 << (20 + 4 * k)), r.gen_bool(0.7));
                b.record(ns, inside);
                if inside {
                    direct.record(ns);
                }
            }
        }
        assert!(matches!(buckets[1], BucketLatencies::Summarized(_)));
        assert!(matches!(buckets[4], BucketLatencies::Exact(_)));
        let mut added = Latencies::new();
        buckets.iter().for_each(|b| b.add_inside_to(&mut added));
        assert!(direct.count() > 10_000, "{}", direct.count());
        assert_eq!((added.count(), added.sum, added.max), (direct.count(), direct.sum, direct.max));
        for p in [1.0, 50.0, 95.0, 99.0, 99.9] {
            assert_eq!(added.percentile(p), direct.percentile(p), "p{p}");
        }
        assert_eq!(added.summary("x"), direct.summary("x"));
    }

    #[test]
    fn percentiles_and_busy_time() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
        // Overlaps count once; an interval spanning buckets is split.
        assert_eq!(busy_per_bucket(vec![(0, 5), (3, 8), (15, 25)], 10, 3), vec![8, 5, 5]);
        assert_eq!(busy_within(vec![(15, 25), (0, 5), (3, 8)], 4, 20), 4 + 5);
        // Counters interpolate between samples, from 0 at time 0 before the first one.
        let s = [(100, 50.0), (200, 150.0)];
        assert_eq!(counter_at(&s, 50), 25.0);
        assert_eq!(counter_at(&s, 150), 100.0);
        assert_eq!(counter_at(&s, 300), 150.0);
        assert_eq!(share(&s, 100, 200, 2.0), 0.5);
        assert_eq!(share(&s, 20, 40, 1.0), 0.5);
    }

    fn send(value: u64, created_ns: u64) -> crate::history::Send {
        crate::history::Send::new(None, value, created_ns, SendOutcome::Pending)
    }

    /// The compact index answers as the hash map it replaced: dense producers, a producer whose
    /// sequences are too sparse for an array, an id sent twice (the later wins), unknown ids
    /// and ids past a dense span, and "first sighting" exactly once per id.
    #[test]
    fn created_index_answers_as_a_hash_map() {
        let mut h = History::default();
        for seq in 0..100u64 {
            h.sends.push(send(seq, 1000 + seq));
            h.sends.push(send((3 << 40) | seq, 5000 + seq));
        }
        h.sends.push(send((7 << 40) | 1_000_000, 42)); // sparse producer
        h.sends.push(send(5, 77)); // an id sent twice: the later creation time counts
                                   // A slow producer: creation times more than ±2.1 s from their block's first (kept in
                                   // the map), before it, and an id whose later send no longer fits its block.
        h.sends.push(send(4 << 40, 10_000_000_000));
        h.sends.push(send((4 << 40) | 1, 13_000_000_000));
        h.sends.push(send((4 << 40) | 2, 8_000_000_000));
        h.sends.push(send((4 << 40) | 3, 10_000_000_001));
        h.sends.push(send((4 << 40) | 3, 1));
        h.sends.push(send((4 << 40) | 1025, 99_000_000_000)); // the next block has its own base
        let mut reference: std::collections::HashMap<u64, (u64, bool)> = Default::default();
        for s in h.sends.iter() {
            reference.insert(s.value, (s.created_ns(), false));
        }
        let mut ix = CreatedIndex::new(&h);
        assert!(ix.has_array(0) && ix.has_array(3) && ix.has_array(4));
        assert!(!ix.has_array(7) && ix.sparse.contains_key(&((7 << 40) | 1_000_000)));
        let in_map: Vec<u64> =
            (0..1026).filter(|s| ix.sparse.contains_key(&((4 << 40) | s))).collect();
        assert_eq!(in_map, [1, 3], "3 s past the block's first, and 10 s before it");
        let probes = [0, 5, 99, 100, 4096, 3 << 40, (3 << 40) | 99, (7 << 40) | 1_000_000, 9 << 40]
            .into_iter()
            .chain([4 << 40, (4 << 40) | 1, (4 << 40) | 2, (4 << 40) | 3, (4 << 40) | 1025]);
        for round in 0..2 {
            for id in probes.clone().chain(probes.clone()) {
                let want = reference.get_mut(&id).map(|e| {
                    let first = !e.1;
                    e.1 = true;
                    (e.0, first)
                });
                assert_eq!(ix.see(id), want, "id {id:#x} round {round}");
            }
        }
        assert_eq!(ix.see(5), Some((77, false)));
    }
}
