//! Checkers, after Jepsen's Kafka workload, as pure functions of a recorded [`History`].
//!
//! Layering (after iggy's simulator): the history is the per-step record; a shadow model of the
//! expected state is built from it (what was acknowledged at which offset, what each consumer
//! saw); the final oracle is the log read back after the run healed. Each checker compares two of
//! these and names the offsets involved when it fails. Checkers draw no random numbers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::history::{
    widen_bounds, History, OffsetTable, Offsets, Poll, PollKind, ReplicaLog, SendOutcome, Slots,
    TopicPartition,
};
use crate::seen::SeenRecords;

/// Every checker, by its name in scenario files and `summary.json`.
pub const CHECKS: &[&str] = &[
    "lost-write",
    "inconsistent-offsets",
    "duplicate",
    "nonmonotonic-poll",
    "poll-skip",
    "liveness",
    "group-exclusive",
    "committed-offset-monotonic",
    "generation-fencing",
    "replicas-agree",
    "hw-monotonic",
];

/// Checks about the replicas of a cluster: on by default only when `cluster.brokers` > 1.
pub const CLUSTER_CHECKS: &[&str] = &["replicas-agree", "hw-monotonic"];

/// Examples listed in a violation's detail (the count is always complete).
const EXAMPLES_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Held,
    Violated,
    /// Held, but over nothing: the check examined no record, poll, sample or commit. It never
    /// matches an expectation, so a check that looked at nothing fails the verdict.
    Vacuous,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Held => "held",
            Outcome::Violated => "violated",
            Outcome::Vacuous => "vacuous",
        }
    }
}

/// Whether a failed expectation is a safety or a liveness failure (they exit differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Safety,
    Liveness,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub outcome: Outcome,
    pub detail: String,
    /// How many things the check looked at (acknowledged records, polled records, HW samples,
    /// replica batches compared, commits, ...; each checker's doc says what it counts).
    pub examined: u64,
    /// What a violation is about, by kind (only `liveness` names any: [`LivenessCause`]);
    /// `summary.json` writes them as the check's `causes`.
    pub causes: Vec<&'static str>,
}

impl CheckResult {
    /// Held over `examined` things; over none it is [`Outcome::Vacuous`].
    fn held(examined: u64, detail: impl Into<String>) -> Self {
        let outcome = if examined == 0 { Outcome::Vacuous } else { Outcome::Held };
        CheckResult { outcome, detail: detail.into(), examined, causes: Vec::new() }
    }
    fn violated(examined: u64, detail: impl Into<String>) -> Self {
        CheckResult {
            outcome: Outcome::Violated,
            detail: detail.into(),
            examined,
            causes: Vec::new(),
        }
    }
}

/// Why `liveness` failed, one kind per problem it lists. Two failures with different kinds of
/// cause are different failures (`shrink` keeps a candidate only if the kinds stay the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LivenessCause {
    /// The run did not settle within `settle_timeout_s`.
    NotSettled,
    /// Acknowledgements came after the read-back, past the log end it saw.
    LateAcks,
    /// A consumer or member read a value without the workload's id.
    Undecodable,
    /// Anything else the run recorded as stuck (a host or client that failed to start, ...).
    Stuck,
    /// A partition's final log could not be read.
    UnreadableLog,
    /// No send was made after the last heal.
    NoSendAfterHeal,
    /// None of the sends made after the last heal succeeded.
    NoSuccessAfterHeal,
    /// Sends still unanswered at the end.
    Unanswered,
    /// A consumer ended behind the log end.
    ConsumerBehind,
    /// A group never completed a rebalance.
    GroupNeverRebalanced,
    /// Partitions owned by no member of a group's last generation.
    GroupOrphans,
    /// A group's committed progress ended behind the log end.
    GroupBehind,
}

impl LivenessCause {
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessCause::NotSettled => "not-settled",
            LivenessCause::LateAcks => "late-acks",
            LivenessCause::Undecodable => "undecodable",
            LivenessCause::Stuck => "stuck",
            LivenessCause::UnreadableLog => "unreadable-log",
            LivenessCause::NoSendAfterHeal => "no-send-after-heal",
            LivenessCause::NoSuccessAfterHeal => "no-success-after-heal",
            LivenessCause::Unanswered => "unanswered",
            LivenessCause::ConsumerBehind => "consumer-behind",
            LivenessCause::GroupNeverRebalanced => "group-never-rebalanced",
            LivenessCause::GroupOrphans => "group-orphans",
            LivenessCause::GroupBehind => "group-behind",
        }
    }
}

pub fn kind_of(check: &str) -> CheckKind {
    if check == "liveness" {
        CheckKind::Liveness
    } else {
        CheckKind::Safety
    }
}

/// Runs the named checker (one of [`CHECKS`]).
pub fn run(check: &str, h: &History) -> Option<CheckResult> {
    Some(match check {
        "lost-write" => lost_write(h),
        "inconsistent-offsets" => inconsistent_offsets(h),
        "duplicate" => duplicate(h),
        "nonmonotonic-poll" => nonmonotonic_poll(h),
        "poll-skip" => poll_skip(h),
        "liveness" => liveness(h),
        "group-exclusive" => group_exclusive(h),
        "committed-offset-monotonic" => committed_offset_monotonic(h),
        "generation-fencing" => generation_fencing(h),
        "replicas-agree" => replicas_agree(h),
        "hw-monotonic" => hw_monotonic(h),
        _ => return None,
    })
}

/// replicas-agree: once the run healed and settled, every replica's committed prefix is
/// byte-identical to the leader's, batch by batch. The committed prefix is below the leader's
/// HW; a replica in the final ISR must hold all of it, a replica out of the ISR is compared up to
/// its own HW (what it has confirmed), since it may still be catching up.
///
/// Examined: follower batches compared with the leader's.
fn replicas_agree(h: &History) -> CheckResult {
    if h.replica_logs.is_empty() {
        return CheckResult::held(
            0,
            "no replica logs were read (a single broker has one replica per partition)",
        );
    }
    let mut bad = Vec::new();
    let mut compared = 0usize;
    let mut batches = 0u64;
    for (tp, replicas) in &h.replica_logs {
        let Some((leader, _, isr)) = h.final_partition.get(tp) else {
            bad.push(format!("{tp}: no final leader known"));
            continue;
        };
        let Some(Some(lead)) = replicas.get(&(*leader as u32)) else {
            bad.push(format!("{tp}: the leader broker-{leader} could not be read"));
            continue;
        };
        let hw = lead.high_watermark;
        // The batches holding offsets in [from, upto).
        let prefix = |l: &ReplicaLog, from: i64, upto: i64| -> Vec<(i64, i64, u64)> {
            l.batches.iter().filter(|b| b.0 < upto && b.1 >= from).copied().collect()
        };
        for (&b, r) in replicas {
            if b as i32 == *leader {
                continue;
            }
            let in_isr = isr.contains(&(b as i32));
            let Some(r) = r else {
                if in_isr {
                    bad.push(format!("{tp}: broker-{b} (in the ISR) could not be read"));
                }
                continue;
            };
            let upto = if in_isr { hw } else { hw.min(r.high_watermark) };
            if in_isr && r.log_end_offset < hw {
                bad.push(format!("{tp}: broker-{b} is in the ISR but its log ends at {} below the leader's HW {hw}", r.log_end_offset));
            }
            // Each replica applies retention on its own: compare where both still hold the log.
            let from = lead.log_start_offset.max(r.log_start_offset);
            let got = prefix(r, from, upto);
            let want_b = prefix(lead, from, upto);
            compared += 1;
            batches += want_b.len().max(got.len()) as u64;
            if let Some(i) = (0..want_b.len().max(got.len())).find(|&i| want_b.get(i) != got.get(i))
            {
                let fmt = |x: Option<&(i64, i64, u64)>| {
                    x.map(|(a, z, hsh)| format!("[{a}..={z}] #{hsh:016x}"))
                        .unwrap_or_else(|| "nothing".into())
                };
                bad.push(format!(
                    "{tp}: broker-{b} differs from the leader broker-{leader} below offset {upto} at batch {i}: leader has {}, broker-{b} has {}",
                    fmt(want_b.get(i)),
                    fmt(got.get(i))
                ));
            }
        }
    }
    if bad.is_empty() {
        CheckResult::held(batches, format!("{compared} follower replica(s) match their leader's committed prefix across {} partition(s), {batches} batches compared", h.replica_logs.len()))
    } else {
        CheckResult::violated(
            batches,
            format!("{} divergence(s): {}", bad.len(), examples(&bad, |s| s.clone())),
        )
    }
}

/// hw-monotonic: for each (broker incarnation, partition, leader epoch) while that broker leads,
/// the high watermark never decreases across samples. Examined: HW samples.
fn hw_monotonic(h: &History) -> CheckResult {
    let mut last: BTreeMap<(u32, u64, &TopicPartition, i32), (u64, i64)> = BTreeMap::new();
    let mut bad = Vec::new();
    for s in &h.hw_samples {
        let key = (s.broker, s.incarnation, &s.tp, s.leader_epoch);
        if let Some(&(t0, hw0)) = last.get(&key) {
            if s.hw < hw0 {
                bad.push(format!("{} leader broker-{} (incarnation {}, epoch {}): HW {hw0} at {:.3}s then {} at {:.3}s", s.tp, s.broker, s.incarnation, s.leader_epoch, t0 as f64 / 1e9, s.hw, s.at_ns as f64 / 1e9));
            }
        }
        last.insert(key, (s.at_ns, s.hw));
    }
    if bad.is_empty() {
        CheckResult::held(
            h.hw_samples.len() as u64,
            format!("{} HW samples over {} leaderships", h.hw_samples.len(), last.len()),
        )
    } else {
        CheckResult::violated(
            h.hw_samples.len() as u64,
            format!("{} decrease(s): {}", bad.len(), examples(&bad, |s| s.clone())),
        )
    }
}

fn examples<T>(items: &[T], mut f: impl FnMut(&T) -> String) -> String {
    let mut s = items.iter().take(EXAMPLES_MAX).map(&mut f).collect::<Vec<_>>().join("; ");
    if items.len() > EXAMPLES_MAX {
        let _ = write!(s, "; and {} more", items.len() - EXAMPLES_MAX);
    }
    s
}

/// Records in the final logs.
fn final_records(h: &History) -> u64 {
    h.final_logs.values().flatten().map(|l| l.records.len() as u64).sum()
}

/// Records returned by polls.
fn polled_records(h: &History) -> u64 {
    h.polls
        .iter()
        .map(|p| match &p.kind {
            PollKind::Records(rs) => rs.len() as u64,
            PollKind::Reset { .. } => 0,
        })
        .sum()
}

/// lost-write: an acknowledged record (acks=1/all) that the final log does not hold.
/// Examined: acknowledged records at or above their final log's start offset (below it,
/// retention or DeleteRecords removed the records; they are counted in the detail). Linear: the
/// final log is looked up at the acknowledged offset, a batch's run of acknowledgements at once
/// ([`crate::sends::AckRun`]); only a record not found there is looked for in the rest of its
/// partition (a set of that partition's values, built on first need).
pub fn lost_write(h: &History) -> CheckResult {
    let slots = Slots::new(h);
    let mut lost: Vec<(usize, u64, i64, u64)> = Vec::new();
    let (mut acked, mut below_start) = (0u64, 0u64);
    let mut unreadable = BTreeSet::new();
    let mut values: Vec<Option<HashSet<u64>>> = vec![None; slots.len()];
    let mut hints = vec![0usize; slots.len()];
    // A batch's acknowledgements at a time: one look when the final log holds them in place,
    // record by record when it does not.
    for run in h.sends.acked_runs() {
        let (slot, n) = (run.slot as usize, u64::from(run.n));
        acked += n;
        let Some(Some(log)) = slots.final_log(slot) else {
            unreadable.insert(slot);
            continue;
        };
        if log.records.holds_span(run.offset, run.value, n, &mut hints[slot]) {
            continue;
        }
        for (offset, value) in run.records() {
            if log.value_near(offset, &mut hints[slot]) == Some(value) {
                continue;
            }
            if offset < log.log_start_offset {
                below_start += 1;
                continue;
            }
            let present = values[slot].get_or_insert_with(|| log.records.values().collect());
            if !present.contains(&value) {
                lost.push((slot, value, offset, run.at_ns));
            }
        }
    }
    if !unreadable.is_empty() {
        let mut names: Vec<String> = unreadable.into_iter().map(|s| slots.display(s)).collect();
        names.sort();
        return CheckResult::violated(
            acked,
            format!(
                "the final log of {} could not be read, so acknowledged writes cannot be shown present",
                names.join(", ")
            ),
        );
    }
    let examined = acked - below_start;
    let removed = if below_start > 0 {
        format!(" ({below_start} more acknowledged below their final log's start offset: removed by retention or DeleteRecords)")
    } else {
        String::new()
    };
    if lost.is_empty() {
        return CheckResult::held(
            examined,
            format!("all {examined} acknowledged records are in the final log{removed}"),
        );
    }
    let ends: Vec<String> = h
        .final_logs
        .iter()
        .filter_map(|(tp, l)| {
            l.as_ref().map(|l| format!("{tp} log end offset {}", l.log_end_offset))
        })
        .collect();
    CheckResult::violated(
        examined,
        format!(
            "{} of {examined} acknowledged records are missing from the final log{removed} ({}): {}",
            lost.len(),
            ends.join(", "),
            examples(&lost, |(slot, v, o, t)| format!(
                "value {v} acked at offset {}@{o} (t={:.3}s)",
                slots.display(*slot),
                *t as f64 / 1e9
            ))
        ),
    )
}

/// Who saw a value at an offset (for inconsistent-offsets' detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Acked(u32),
    Polled(u32),
    FinalLog,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Acked(p) => write!(f, "acked to producer {p}"),
            Source::Polled(c) => write!(f, "polled by consumer {c}"),
            Source::FinalLog => write!(f, "final log"),
        }
    }
}

/// Every (slot, offset, value) a history observed, in one fixed order: acknowledged sends, then
/// polled records, then the final logs.
fn observations(h: &History, slots: &Slots, mut see: impl FnMut(usize, i64, u64, Source)) {
    for (send, offset, _) in h.acked() {
        see(Slots::of(send.tp()), offset, send.value, Source::Acked(send.producer()));
    }
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            for (offset, value) in rs.iter() {
                see(p.tp.slot(), offset, value, Source::Polled(p.consumer));
            }
        }
    }
    for &(slot, _, log) in slots.finals() {
        for (offset, value) in log.into_iter().flat_map(|l| l.records.iter()) {
            see(slot, offset, value, Source::FinalLog);
        }
    }
}

/// Every poll's and final log's records, by slot.
fn seen_records<'a>(
    h: &'a History,
    slots: &'a Slots,
) -> impl Iterator<Item = (usize, &'a SeenRecords)> + 'a {
    let polled = h.polls.iter().filter_map(|p| Some((p.tp.slot(), p.records()?)));
    let finals = slots.finals().iter().filter_map(|&(slot, _, log)| Some((slot, &log?.records)));
    polled.chain(finals)
}

/// Per slot, the lowest and highest offset [`observations`] names and how many it makes
/// (`(i64::MAX, i64::MIN, 0)` for none), without a pass over records: acknowledgements as the
/// sends keep them (bounds that may be wider, never narrower), polls and final logs by their
/// bounds.
fn observation_bounds(h: &History, slots: &Slots) -> Vec<(i64, i64, u64)> {
    let mut bounds = h.sends.acked_offset_bounds();
    bounds.resize(bounds.len().max(slots.len()), (i64::MAX, i64::MIN, 0));
    for (slot, records) in seen_records(h, slots) {
        if let Some((lo, hi)) = records.offset_bounds() {
            widen_bounds(&mut bounds[slot], lo, hi, records.len() as u64);
        }
    }
    bounds
}

/// inconsistent-offsets: one offset seen holding two different values (by an ack, a poll or the
/// final log). Examined: distinct offsets observed. Linear: per partition an array indexed by
/// offset holds the first value seen; offsets that see a second value are flagged, and only
/// when there are any, a second pass collects the values each flagged offset held and who saw
/// each first.
pub fn inconsistent_offsets(h: &History) -> CheckResult {
    let slots = Slots::new(h);
    let mut tables: Vec<OffsetTable> = observation_bounds(h, &slots)
        .into_iter()
        .map(|(lo, hi, n)| OffsetTable::new(lo, hi, n))
        .collect();
    let mut conflicted = 0u64;
    // Acknowledgements gathered into spans: a batch's records are acknowledged at consecutive
    // offsets with consecutive values (one run), and so may be the batches after it.
    let mut span: Option<(usize, i64, u64, usize)> = None;
    for run in h.sends.acked_runs() {
        let (slot, m) = (run.slot as usize, run.n as usize);
        match &mut span {
            Some((s, o, v, n))
                if *s == slot
                    && o.checked_add(*n as i64) == Some(run.offset)
                    && v.checked_add(*n as u64) == Some(run.value) =>
            {
                *n += m
            }
            _ => {
                if let Some((s, o, v, n)) = span.replace((slot, run.offset, run.value, m)) {
                    conflicted += tables[s].observe_span(o, v, n);
                }
            }
        }
    }
    if let Some((s, o, v, n)) = span {
        conflicted += tables[s].observe_span(o, v, n);
    }
    for (slot, records) in seen_records(h, &slots) {
        for (offset, value, n) in records.spans() {
            conflicted += tables[slot].observe_span(offset, value, n);
        }
    }
    let observed: u64 = tables.iter().map(OffsetTable::distinct).sum();
    if conflicted == 0 {
        return CheckResult::held(
            observed,
            format!("{observed} observed offsets each held one value"),
        );
    }
    let mut conflicts: BTreeMap<(usize, i64), (usize, BTreeMap<u64, Source>)> = BTreeMap::new();
    observations(h, &slots, |slot, offset, value, src| {
        if tables[slot].flagged(offset) {
            let e = conflicts.entry((slots.rank(slot), offset)).or_insert((slot, BTreeMap::new()));
            e.1.entry(value).or_insert(src);
        }
    });
    let bad: Vec<_> = conflicts.into_iter().collect();
    CheckResult::violated(
        observed,
        format!(
            "{} offsets held more than one value: {}",
            bad.len(),
            examples(&bad, |((_, o), (slot, vs))| {
                let vals: Vec<String> =
                    vs.iter().map(|(v, src)| format!("value {v} ({src})")).collect();
                format!("offset {}@{o}: {}", slots.display(*slot), vals.join(" vs "))
            })
        ),
    )
}

/// A value at more than one offset of one partition: where, and who saw it ("final log" or
/// the consumer).
struct Dup {
    slot: usize,
    value: u64,
    offsets: Vec<i64>,
    consumer: Option<u32>,
}

/// duplicate: one value at two offsets of the final log, or polled at two offsets by one
/// consumer (a retried send written twice: what idempotence prevents). Examined: records of the
/// final log plus records polled. One partition (or consumer and partition) at a time: its runs
/// of values sorted ([`values_once`]), and only when two overlap, its values.
pub fn duplicate(h: &History) -> CheckResult {
    let slots = Slots::new(h);
    let examined = final_records(h) + polled_records(h);
    let mut dups: Vec<Dup> = Vec::new();
    for &(slot, _, log) in slots.finals() {
        let Some(records) = log.map(|l| &l.records) else { continue };
        if values_once(records.spans().collect(), false) {
            continue;
        }
        // Sized up front: the values' iterator cannot tell its length, and growing by doubling
        // copied the vector several times over for a final log of millions.
        let mut by_value: Vec<(u64, usize)> = Vec::with_capacity(records.len());
        by_value.extend(records.values().enumerate().map(|(i, v)| (v, i)));
        by_value.sort_unstable();
        for same in by_value.chunk_by(|a, b| a.0 == b.0).filter(|s| s.len() > 1) {
            let offsets = same.iter().filter_map(|&(_, i)| records.get(i)).map(|r| r.0).collect();
            dups.push(Dup { slot, value: same[0].0, offsets, consumer: None });
        }
    }
    for ((c, _), (slot, polls)) in polls_by_consumer(h, &slots) {
        let records = || polls.iter().filter_map(|p| p.records());
        if values_once(records().flat_map(SeenRecords::spans).collect(), true) {
            continue;
        }
        let mut seen: Vec<(u64, i64)> = Vec::with_capacity(records().map(SeenRecords::len).sum());
        seen.extend(records().flat_map(SeenRecords::iter).map(|(o, v)| (v, o)));
        seen.sort_unstable();
        seen.dedup();
        for same in seen.chunk_by(|a, b| a.0 == b.0).filter(|s| s.len() > 1) {
            let offsets = same.iter().map(|&(_, o)| o).collect();
            dups.push(Dup { slot, value: same[0].0, offsets, consumer: Some(c) });
        }
    }
    if dups.is_empty() {
        return CheckResult::held(examined, "no value appears at two offsets");
    }
    CheckResult::violated(
        examined,
        format!(
            "{} values appear at more than one offset: {}",
            dups.len(),
            examples(&dups, |d| {
                let tp = slots.display(d.slot);
                let o: Vec<String> = d.offsets.iter().map(|o| format!("{tp}@{o}")).collect();
                let src = d.consumer.map_or("final log".to_string(), |c| format!("consumer {c}"));
                format!("value {} at {} ({src})", d.value, o.join(", "))
            })
        ),
    )
}

/// Whether no value is at two offsets among `spans` (`(offset, value, n)`: `n ≥ 1` pairs whose
/// offsets and values rise by one together), judged span by span: sorted by value, a span whose
/// values overlap those before it must put them at the same offsets (the same records seen
/// twice) when `same_record_once`, and must not overlap at all otherwise. `false` when a value
/// may be at two offsets: [`duplicate`] then looks record by record, which names them.
fn values_once(mut spans: Vec<(i64, u64, usize)>, same_record_once: bool) -> bool {
    spans.sort_unstable_by_key(|&(o, v, _)| (v, o));
    // The values covered so far without a gap, up to `last`, each at its value − `shift`.
    let mut covered: Option<(u64, i128)> = None;
    for (o, v, n) in spans {
        assert!(n >= 1, "a span holds a pair");
        let (last, shift) = (v + (n as u64 - 1), i128::from(v) - i128::from(o));
        match &mut covered {
            Some((end, s)) if v <= *end => {
                if !same_record_once || shift != *s {
                    return false;
                }
                *end = (*end).max(last);
            }
            _ => covered = Some((last, shift)),
        }
    }
    true
}

/// Polls per consumer and partition, keyed (consumer, partition rank) so they iterate by
/// consumer, then topic and partition; each with its slot and its polls in history order.
#[allow(clippy::type_complexity)]
fn polls_by_consumer<'a>(
    h: &'a History,
    slots: &Slots,
) -> BTreeMap<(u32, usize), (usize, Vec<&'a Poll>)> {
    let mut out: BTreeMap<(u32, usize), (usize, Vec<&Poll>)> = BTreeMap::new();
    for p in &h.polls {
        let slot = p.tp.slot();
        out.entry((p.consumer, slots.rank(slot))).or_insert((slot, Vec::new())).1.push(p);
    }
    out
}

/// Each step of one consumer's polls of one partition, within a session (resets start a new
/// one): `step(previous offset, offset, poll time)`.
fn steps(polls: &[&Poll], mut step: impl FnMut(i64, i64, u64)) {
    let mut prev: Option<i64> = None;
    for p in polls {
        match &p.kind {
            PollKind::Records(rs) => {
                for (o, _) in rs.iter() {
                    if let Some(a) = prev {
                        step(a, o, p.at_ns);
                    }
                    prev = Some(o);
                }
            }
            PollKind::Reset { .. } => prev = None,
        }
    }
}

/// nonmonotonic-poll: a consumer saw an offset not above the previous one, with no reset between.
/// Examined: records polled.
pub fn nonmonotonic_poll(h: &History) -> CheckResult {
    let slots = Slots::new(h);
    let examined = polled_records(h);
    let mut bad = Vec::new();
    for ((c, _), (slot, polls)) in polls_by_consumer(h, &slots) {
        steps(&polls, |a, b, t| {
            if b <= a {
                bad.push((c, slot, a, b, t));
            }
        });
    }
    if bad.is_empty() {
        return CheckResult::held(examined, "every consumer's offsets rose between resets");
    }
    CheckResult::violated(
        examined,
        format!(
            "{} times a consumer went back or repeated: {}",
            bad.len(),
            examples(&bad, |(c, slot, a, b, t)| {
                let tp = slots.display(*slot);
                format!("consumer {c} polled {tp}@{b} after {tp}@{a} (t={:.3}s)", *t as f64 / 1e9)
            })
        ),
    )
}

/// poll-skip: a consumer jumped from offset a to b > a + 1 while the final log holds offsets
/// between them (records it should have seen), with no reset between. Examined: records polled.
pub fn poll_skip(h: &History) -> CheckResult {
    let slots = Slots::new(h);
    let examined = polled_records(h);
    let present: Vec<Option<Offsets>> =
        (0..slots.len()).map(|s| slots.final_log(s).map(Offsets::of)).collect();
    let mut bad = Vec::new();
    for ((c, _), (slot, polls)) in polls_by_consumer(h, &slots) {
        let Some(offsets) = &present[slot] else { continue };
        steps(&polls, |a, b, _| {
            if b > a + 1 {
                let missed = offsets.count_in(a + 1, b);
                if missed > 0 {
                    bad.push((c, slot, a, b, missed));
                }
            }
        });
    }
    let group_skips = group_skips(h, &slots, &present);
    if bad.is_empty() && group_skips.is_empty() {
        let groups = if h.group_members.is_empty() {
            ""
        } else {
            "; every group polled every offset below its committed offsets"
        };
        return CheckResult::held(
            examined,
            format!("no consumer skipped an offset present in the final log{groups}"),
        );
    }
    let mut parts = Vec::new();
    if !bad.is_empty() {
        parts.push(format!(
            "{} skips: {}",
            bad.len(),
            examples(&bad, |(c, slot, a, b, n)| {
                let tp = slots.display(*slot);
                format!("consumer {c} jumped from {tp}@{a} to {tp}@{b}, skipping {n} offsets present in the final log")
            })
        ));
    }
    if !group_skips.is_empty() {
        parts.push(format!(
            "{} partitions skipped across rebalances: {}",
            group_skips.len(),
            examples(&group_skips, |(g, tp, committed, missed, first)| format!(
                "group {g} committed {tp}@{committed} but no member polled {missed} offsets below it present in the final log (first {tp}@{first})"
            ))
        ));
    }
    CheckResult::violated(examined, parts.join("; "))
}

/// Across rebalances: for each group and partition, every offset in the final log below the
/// group's highest accepted commit was polled by some member (a hand-over that starts past the
/// committed offset loses records for the group even though each member's own polls rose).
/// One (group, partition) at a time: a flag per final offset below the commit.
fn group_skips<'a>(
    h: &'a History,
    slots: &Slots,
    present: &[Option<Offsets>],
) -> Vec<(&'a str, &'a TopicPartition, i64, usize, i64)> {
    let mut committed: BTreeMap<(&str, &TopicPartition), i64> = BTreeMap::new();
    for c in h.commits.iter().filter(|c| c.error.is_none()) {
        for (tp, o) in &c.offsets {
            let e = committed.entry((c.group.as_str(), tp)).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
    let mut polled: BTreeMap<(&str, usize), Vec<&Poll>> = BTreeMap::new();
    for p in &h.polls {
        let Some(g) = h.group_members.get(&p.consumer) else { continue };
        polled.entry((g.as_str(), p.tp.slot())).or_default().push(p);
    }
    let mut out = Vec::new();
    for ((g, tp), c) in committed {
        let Some(slot) = slots.of_tp(tp) else { continue };
        let Some(offsets) = &present[slot] else { continue };
        let mut unseen = vec![true; offsets.below(c)];
        for p in polled.get(&(g, slot)).into_iter().flatten() {
            let PollKind::Records(rs) = &p.kind else { continue };
            for i in rs.iter().filter_map(|r| offsets.position(r.0)) {
                if let Some(u) = unseen.get_mut(i) {
                    *u = false;
                }
            }
        }
        let missed = unseen.iter().filter(|u| **u).count();
        if let Some(first) = unseen.iter().position(|u| *u) {
            out.push((g, tp, c, missed, offsets.get(first)));
        }
    }
    out
}

/// group-exclusive: within one generation of a group, no partition is owned by two members.
/// Examined: (group, generation, partition) ownerships.
pub fn group_exclusive(h: &History) -> CheckResult {
    let mut owners: BTreeMap<(&str, i32, &TopicPartition), BTreeSet<&str>> = BTreeMap::new();
    for a in h.assignments.iter().filter(|a| a.generation >= 0) {
        for tp in &a.tps {
            owners
                .entry((a.group.as_str(), a.generation, tp))
                .or_default()
                .insert(a.member_id.as_str());
        }
    }
    let bad: Vec<_> = owners.iter().filter(|(_, m)| m.len() > 1).collect();
    if bad.is_empty() {
        let gens: BTreeSet<(&str, i32)> = owners.keys().map(|(g, gen, _)| (*g, *gen)).collect();
        return CheckResult::held(
            owners.len() as u64,
            format!("{} generations, each partition owned by at most one member", gens.len()),
        );
    }
    CheckResult::violated(
        owners.len() as u64,
        format!(
            "{} partitions owned by two members of one generation: {}",
            bad.len(),
            examples(&bad, |((g, gen, tp), m)| format!(
                "group {g} generation {gen}: {tp} owned by {}",
                m.iter().copied().collect::<Vec<_>>().join(" and ")
            ))
        ),
    )
}

/// committed-offset-monotonic: a group's accepted commits for a partition never go back. Commits
/// are ordered only where real time orders them (one was acknowledged before the other was
/// sent): a commit whose response was held up, e.g. by a partition, may be acknowledged after a
/// later one was stored, so acknowledgement order alone would accuse a correct coordinator.
/// Examined: accepted commits.
pub fn committed_offset_monotonic(h: &History) -> CheckResult {
    let mut by_tp: BTreeMap<(&str, &TopicPartition), Vec<(&crate::history::Commit, i64)>> =
        BTreeMap::new();
    for c in h.commits.iter().filter(|c| c.error.is_none()) {
        for (tp, o) in &c.offsets {
            by_tp.entry((c.group.as_str(), tp)).or_default().push((c, *o));
        }
    }
    let accepted = h.commits.iter().filter(|c| c.error.is_none()).count();
    let mut bad = Vec::new();
    for ((g, tp), mut commits) in by_tp {
        commits.sort_by_key(|(c, _)| c.at_ns);
        // The highest offset among commits acknowledged before each point in time, as a
        // running maximum over acknowledgement order.
        let mut best: Vec<(u64, i64, u32, i32)> = Vec::with_capacity(commits.len());
        for (c, o) in &commits {
            let prev = best.last().map_or((i64::MIN, 0, 0), |b| (b.1, b.2, b.3));
            best.push(if *o > prev.0 {
                (c.at_ns, *o, c.member, c.generation)
            } else {
                (c.at_ns, prev.0, prev.1, prev.2)
            });
        }
        for (c, o) in &commits {
            // Commits acknowledged strictly before this one was sent.
            let n = best.partition_point(|b| b.0 < c.sent_ns);
            if n == 0 {
                continue;
            }
            let (_, prev, by, gen) = best[n - 1];
            if *o < prev {
                bad.push((
                    g.to_string(),
                    tp.clone(),
                    prev,
                    by,
                    gen,
                    *o,
                    c.member,
                    c.generation,
                    c.sent_ns,
                ));
            }
        }
    }
    if bad.is_empty() {
        return CheckResult::held(
            accepted as u64,
            format!("{accepted} accepted commits, none went back"),
        );
    }
    CheckResult::violated(
        accepted as u64,
        format!(
            "{} commits went back: {}",
            bad.len(),
            examples(&bad, |(g, tp, prev, by, gen, o, m, mg, t)| {
                format!(
            "group {g} {tp}: consumer {m} (generation {mg}) committed {o}, sent at t={:.3}s after consumer {by} (generation {gen}) had committed {prev}",
            *t as f64 / 1e9
        )
            })
        ),
    )
}

/// generation-fencing: a commit sent with a generation older than one some member already held
/// is rejected (the coordinator bumps the generation before any member can learn the new one, so
/// accepting such a commit means a zombie's offsets were stored). Examined: commits (each is
/// compared with the generations members held before it was sent).
pub fn generation_fencing(h: &History) -> CheckResult {
    let mut newest: BTreeMap<&str, Vec<(u64, i32)>> = BTreeMap::new();
    for a in &h.assignments {
        newest.entry(a.group.as_str()).or_default().push((a.at_ns, a.generation));
    }
    let newer_before = |g: &str, t: u64, gen: i32| {
        newest.get(g).is_some_and(|v| v.iter().any(|&(at, ng)| at < t && ng > gen))
    };
    let mut bad = Vec::new();
    let (mut stale, mut rejected) = (0usize, 0usize);
    for c in &h.commits {
        if newer_before(&c.group, c.sent_ns, c.generation) {
            stale += 1;
            match &c.error {
                None => bad.push(c),
                Some(_) => rejected += 1,
            }
        }
    }
    if bad.is_empty() {
        return CheckResult::held(
            h.commits.len() as u64,
            format!(
                "{} commits, {stale} carried a superseded generation; all {rejected} rejected",
                h.commits.len()
            ),
        );
    }
    CheckResult::violated(
        h.commits.len() as u64,
        format!(
            "{} commits with a superseded generation were accepted: {}",
            bad.len(),
            examples(&bad, |c| format!(
                "consumer {} (generation {}) committed {:?} at t={:.3}s",
                c.member,
                c.generation,
                c.offsets.iter().map(|(tp, o)| (tp.to_string(), *o)).collect::<Vec<_>>(),
                c.sent_ns as f64 / 1e9
            ))
        ),
    )
}

/// liveness: after the last fault healed, sends made then were acknowledged and every consumer
/// caught up with the final log end. A run with producers must have sent after the heal (the
/// workload keeps producing for `produce_after_heal_s`), or "progress resumed" was not tested.
/// Examined: sends made after the last heal, plus consumer and group positions compared with
/// the log end.
pub fn liveness(h: &History) -> CheckResult {
    use LivenessCause as C;
    let mut problems: Vec<(LivenessCause, String)> =
        h.stuck.iter().map(|s| (s.cause, s.what.clone())).collect();
    let mut examined = 0u64;
    for (tp, log) in &h.final_logs {
        if log.is_none() {
            problems.push((C::UnreadableLog, format!("the final log of {tp} could not be read")));
        }
    }
    let heal = h.last_heal_ns.unwrap_or(0);
    let (mut after, mut resolved_ok) = (0usize, 0usize);
    if heal == 0 {
        // Every send came after: the counts the sends keep answer without a pass.
        let n = h.sends.outcomes();
        (after, resolved_ok) = (h.sends.len(), (n.acked + n.unconfirmed) as usize);
    } else {
        for s in h.sends.iter().filter(|s| s.created_ns() >= heal) {
            after += 1;
            let ok =
                matches!(s.outcome(), SendOutcome::Acked { .. } | SendOutcome::Unconfirmed { .. });
            resolved_ok += usize::from(ok);
        }
    }
    examined += after as u64;
    if !h.sends.is_empty() && after == 0 {
        problems.push((C::NoSendAfterHeal, format!("no send was made after the last fault healed (t={:.3}s): progress after the heal was not tested", heal as f64 / 1e9)));
    }
    if after > 0 && resolved_ok == 0 {
        problems.push((
            C::NoSuccessAfterHeal,
            format!(
                "none of the {} sends made after the last fault healed (t={:.3}s) succeeded",
                after,
                heal as f64 / 1e9
            ),
        ));
    }
    let pending = h.sends.outcomes().pending;
    if pending > 0 {
        problems.push((C::Unanswered, format!("{pending} sends were still unanswered at the end")));
    }
    for ((c, tp), pos) in &h.final_positions {
        if let Some(Some(log)) = h.final_logs.get(tp) {
            examined += 1;
            if *pos < log.log_end_offset {
                problems.push((
                    C::ConsumerBehind,
                    format!(
                        "consumer {c} ended at {tp}@{pos}, behind the log end {}",
                        log.log_end_offset
                    ),
                ));
            }
        }
    }
    // Groups: the newest generation owns every subscribed partition again, and the group's
    // progress reached each partition's log end.
    for (g, tps) in &h.group_partitions {
        let newest = h.assignments.iter().filter(|a| &a.group == g).map(|a| a.generation).max();
        let Some(gen) = newest else {
            problems
                .push((C::GroupNeverRebalanced, format!("group {g} never completed a rebalance")));
            continue;
        };
        let mut latest: BTreeMap<u32, &Vec<TopicPartition>> = BTreeMap::new();
        for a in h.assignments.iter().filter(|a| &a.group == g && a.generation == gen) {
            latest.insert(a.member, &a.tps);
        }
        let owned: BTreeSet<&TopicPartition> = latest.values().flat_map(|v| v.iter()).collect();
        let orphans: Vec<&TopicPartition> = tps.iter().filter(|tp| !owned.contains(tp)).collect();
        if !orphans.is_empty() {
            problems.push((
                C::GroupOrphans,
                format!(
                    "group {g}: {} partitions owned by no member in its last generation {gen} ({})",
                    orphans.len(),
                    examples(&orphans, |t| t.to_string())
                ),
            ));
        }
        for tp in tps {
            if let Some(Some(log)) = h.final_logs.get(tp) {
                examined += 1;
                let pos = h.group_positions.get(&(g.clone(), tp.clone())).copied().unwrap_or(-1);
                if pos < log.log_end_offset {
                    problems.push((
                        C::GroupBehind,
                        format!(
                            "group {g} ended at {tp}@{pos}, behind the log end {}",
                            log.log_end_offset
                        ),
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        let groups = if h.group_partitions.is_empty() {
            ""
        } else {
            "; every group owns all its partitions again"
        };
        CheckResult::held(examined, format!("{resolved_ok} sends succeeded after the last fault healed; {} consumer positions at the log end{groups}", h.final_positions.len()))
    } else {
        let mut causes: Vec<LivenessCause> = problems.iter().map(|p| p.0).collect();
        causes.sort();
        causes.dedup();
        let lines: Vec<String> = problems.into_iter().map(|p| p.1).collect();
        let mut r = CheckResult::violated(examined, lines.join("; "));
        r.causes = causes.into_iter().map(LivenessCause::as_str).collect();
        r
    }
}

#[cfg(test)]
#[path = "checkers_reference.rs"]
mod reference;

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::history::{FinalLog, Poll, Send, Stuck};

    const TP: &str = "t-0";

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }
    /// The id of `t-0` in every test history (made by [`empty`], which names it first).
    fn tp_id() -> crate::history::PartitionId {
        crate::history::Partitions::default().intern("t", 0)
    }
    fn empty() -> History {
        let mut h = History::default();
        assert_eq!(h.partitions.intern("t", 0), tp_id());
        h
    }

    fn send(value: u64, outcome: SendOutcome) -> Send {
        Send::new(Some(tp_id()), value, 0, outcome)
    }
    fn acked(value: u64, offset: i64) -> Send {
        send(value, SendOutcome::Acked { offset, at_ns: 1 })
    }
    fn poll(consumer: u32, rs: &[(i64, u64)]) -> Poll {
        Poll { consumer, tp: tp_id(), at_ns: 2, kind: PollKind::Records(rs.to_vec().into()) }
    }
    fn reset(consumer: u32) -> Poll {
        Poll {
            consumer,
            tp: tp_id(),
            at_ns: 2,
            kind: PollKind::Reset { from: 9, to: 0, reason: "test" },
        }
    }
    fn with_final(mut h: History, rs: &[(i64, u64)]) -> History {
        let end = rs.last().map(|r| r.0 + 1).unwrap_or(0);
        h.final_logs.insert(
            tp(),
            Some(FinalLog {
                log_start_offset: 0,
                log_end_offset: end,
                records: rs.to_vec().into(),
            }),
        );
        h
    }
    fn good() -> History {
        let mut h = empty();
        h.sends = vec![acked(10, 0), acked(11, 1), acked(12, 2)].into();
        h.polls = vec![poll(0, &[(0, 10), (1, 11)]), poll(0, &[(2, 12)])];
        h.final_positions.insert((0, tp()), 3);
        with_final(h, &[(0, 10), (1, 11), (2, 12)])
    }

    /// A group g of members 0 and 1 on TP: generation 1 gives TP to member 0, generation 2 to
    /// member 1 (member 0 committed 2 before the hand-over; member 1 commits 3).
    fn group_history() -> History {
        let mut h = good();
        h.final_positions.clear();
        h.group_members.insert(0, "g".into());
        h.group_members.insert(1, "g".into());
        h.group_partitions.insert("g".into(), vec![tp()]);
        h.group_positions.insert(("g".into(), tp()), 3);
        h.assignments = vec![
            assignment(0, 1, &[TP], 10),
            assignment(0, 1, &[], 40),
            assignment(1, 2, &[TP], 50),
        ];
        h.polls = vec![poll(0, &[(0, 10), (1, 11)]), poll(1, &[(2, 12)])];
        h.commits = vec![commit(0, 1, 2, 20, 30, None), commit(1, 2, 3, 60, 70, None)];
        h
    }
    fn assignment(
        member: u32,
        generation: i32,
        tps: &[&str],
        at_ns: u64,
    ) -> crate::history::Assignment {
        crate::history::Assignment {
            member,
            group: "g".into(),
            member_id: format!("m{member}"),
            generation,
            tps: tps.iter().filter_map(|t| TopicPartition::parse_dir_name(t)).collect(),
            at_ns,
        }
    }
    fn commit(
        member: u32,
        generation: i32,
        offset: i64,
        sent_ns: u64,
        at_ns: u64,
        error: Option<&str>,
    ) -> crate::history::Commit {
        crate::history::Commit {
            member,
            group: "g".into(),
            member_id: format!("m{member}"),
            generation,
            offsets: vec![(tp(), offset)],
            sent_ns,
            at_ns,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_clean_group_history_holds_everywhere() {
        let h = group_history();
        for c in CHECKS.iter().filter(|c| !CLUSTER_CHECKS.contains(c)) {
            let r = run(c, &h).unwrap();
            assert_eq!(r.outcome, Outcome::Held, "{c}: {}", r.detail);
            assert!(r.examined > 0, "{c} examined nothing");
        }
    }

    /// Checks that looked at nothing are vacuous, never held: an empty history proves nothing.
    #[test]
    fn checks_over_nothing_are_vacuous() {
        let h = History::default();
        for c in CHECKS {
            let r = run(c, &h).unwrap();
            assert_eq!((r.outcome, r.examined), (Outcome::Vacuous, 0), "{c}: {}", r.detail);
        }
        // The single-consumer history has no groups and no replicas: those checks are vacuous.
        let h = good();
        for c in [
            "group-exclusive",
            "committed-offset-monotonic",
            "generation-fencing",
            "replicas-agree",
            "hw-monotonic",
        ] {
            assert_eq!(run(c, &h).unwrap().outcome, Outcome::Vacuous, "{c}");
        }
        // Producers that never sent after the heal: liveness did not test progress.
        let mut h = good();
        h.last_heal_ns = Some(1_000);
        let r = liveness(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("no send was made after the last fault healed"), "{}", r.detail);
    }

    fn replica(
        hw: i64,
        leo: i64,
        batches: &[(i64, i64, u64)],
    ) -> Option<crate::history::ReplicaLog> {
        Some(crate::history::ReplicaLog {
            log_start_offset: 0,
            high_watermark: hw,
            log_end_offset: leo,
            batches: batches.to_vec(),
        })
    }

    /// Leader broker-0 and followers 1 (in the ISR) and 2 (out of it, behind).
    fn replicated(follower1: &[(i64, i64, u64)], follower2: &[(i64, i64, u64)]) -> History {
        let mut h = good();
        let lead = [(0, 1, 0xa), (2, 2, 0xb), (3, 5, 0xc)];
        let mut per = BTreeMap::new();
        per.insert(0u32, replica(6, 6, &lead));
        per.insert(1u32, replica(6, follower1.last().map_or(0, |b| b.1 + 1), follower1));
        per.insert(2u32, replica(3, follower2.last().map_or(0, |b| b.1 + 1), follower2));
        h.replica_logs.insert(tp(), per);
        h.final_partition.insert(tp(), (0, 4, vec![0, 1]));
        h
    }

    #[test]
    fn replicas_agree_fires_on_a_diverging_follower_batch() {
        let lead = [(0, 1, 0xa), (2, 2, 0xb), (3, 5, 0xc)];
        // The out-of-ISR follower is compared only up to its own HW 3.
        let h = replicated(&lead, &[(0, 1, 0xa), (2, 2, 0xb), (3, 4, 0xdead)]);
        let r = replicas_agree(&h);
        assert_eq!(r.outcome, Outcome::Held, "{}", r.detail);
        assert_eq!(r.examined, 5, "3 batches of broker-1 and 2 of broker-2 below its HW");
        // A follower in the ISR holding another batch at offsets 2..=2.
        let h = replicated(&[(0, 1, 0xa), (2, 2, 0xbad), (3, 5, 0xc)], &[(0, 1, 0xa)]);
        let r = replicas_agree(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(
            r.detail
                .contains("broker-1 differs from the leader broker-0 below offset 6 at batch 1"),
            "{}",
            r.detail
        );
        // A follower in the ISR that is missing the committed tail.
        let h = replicated(&[(0, 1, 0xa), (2, 2, 0xb)], &[(0, 1, 0xa)]);
        let r = replicas_agree(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(
            r.detail.contains("in the ISR but its log ends at 3 below the leader's HW 6"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn replicas_agree_compares_where_both_replicas_still_hold_the_log() {
        // Retention removed [0..=1] on the leader and [0..=2] on broker-1: compared from 3.
        let mut h = replicated(&[(3, 5, 0xc)], &[(0, 1, 0xa), (2, 2, 0xb)]);
        let per = h.replica_logs.get_mut(&tp()).expect("replicated");
        per.insert(0u32, replica(6, 6, &[(2, 2, 0xb), (3, 5, 0xc)]));
        let set_start = |r: &mut Option<crate::history::ReplicaLog>, start: i64| {
            r.as_mut().expect("read").log_start_offset = start;
        };
        set_start(per.get_mut(&0).expect("leader"), 2);
        set_start(per.get_mut(&1).expect("follower"), 3);
        let r = replicas_agree(&h);
        assert_eq!(r.outcome, Outcome::Held, "{}", r.detail);
        assert_eq!(
            r.examined, 2,
            "broker-1's batch 3..=5, broker-2's 2..=2 (from the leader's start to its own HW)"
        );
        // The same starts, but broker-1's batch at 3 differs: still caught.
        let per = h.replica_logs.get_mut(&tp()).expect("replicated");
        per.insert(1u32, replica(6, 6, &[(3, 5, 0xbad)]));
        set_start(per.get_mut(&1).expect("follower"), 3);
        let r = replicas_agree(&h);
        assert_eq!(r.outcome, Outcome::Violated, "{}", r.detail);
        assert!(r.detail.contains("at batch 0: leader has [3..=5]"), "{}", r.detail);
    }

    fn hw(
        at_ns: u64,
        broker: u32,
        incarnation: u64,
        epoch: i32,
        hw: i64,
    ) -> crate::history::HwSample {
        crate::history::HwSample { at_ns, broker, incarnation, tp: tp(), leader_epoch: epoch, hw }
    }

    #[test]
    fn hw_monotonic_fires_on_a_falling_sample_within_one_leadership() {
        let mut h = good();
        h.hw_samples =
            vec![hw(1, 0, 1, 0, 5), hw(2, 0, 1, 0, 7), hw(3, 1, 1, 1, 4), hw(4, 0, 2, 0, 3)];
        let r = hw_monotonic(&h);
        // A new leader (epoch 1) or a restarted broker (incarnation 2) starts its own series.
        assert_eq!((r.outcome, r.examined), (Outcome::Held, 4), "{}", r.detail);
        h.hw_samples.push(hw(5, 1, 1, 1, 3));
        let r = hw_monotonic(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(
            r.detail.contains("leader broker-1 (incarnation 1, epoch 1): HW 4"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn group_exclusive_fires_on_two_owners_in_one_generation_only() {
        let mut h = group_history();
        // Member 0 still believing it owns TP in generation 1 after generation 2 formed: fine.
        h.assignments.push(assignment(0, 1, &[TP], 55));
        assert_eq!(group_exclusive(&h).outcome, Outcome::Held);
        h.assignments.push(assignment(0, 2, &[TP], 56));
        let r = group_exclusive(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("generation 2: t-0 owned by m0 and m1"), "{}", r.detail);
    }

    #[test]
    fn committed_offsets_going_back_fire_only_when_real_time_orders_them() {
        // A zombie's stale commit sent after the newer commit was acknowledged, and accepted.
        let mut h = group_history();
        h.commits.push(commit(0, 1, 1, 80, 90, None));
        let r = committed_offset_monotonic(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("consumer 0 (generation 1) committed 1"), "{}", r.detail);
        // Rejected, it is harmless.
        let mut h = group_history();
        h.commits.push(commit(0, 1, 1, 80, 90, Some("UNKNOWN_MEMBER_ID")));
        assert_eq!(committed_offset_monotonic(&h).outcome, Outcome::Held);
        // Sent before the newer commit was acknowledged (its response held up): unordered.
        let mut h = group_history();
        h.commits.push(commit(0, 1, 2, 65, 200, None));
        assert_eq!(committed_offset_monotonic(&h).outcome, Outcome::Held);
    }

    #[test]
    fn generation_fencing_fires_on_an_accepted_superseded_generation() {
        let mut h = group_history();
        h.commits.push(commit(0, 1, 3, 80, 90, Some("ILLEGAL_GENERATION")));
        let r = generation_fencing(&h);
        assert_eq!(r.outcome, Outcome::Held);
        assert!(
            r.detail.contains("3 commits, 1 carried a superseded generation; all 1 rejected"),
            "{}",
            r.detail
        );
        h.commits.push(commit(0, 1, 3, 81, 91, None));
        assert_eq!(generation_fencing(&h).outcome, Outcome::Violated);
    }

    #[test]
    fn a_group_skipping_records_across_a_hand_over_is_a_poll_skip() {
        // Member 1 took over at offset 2 but the group committed 3 with offset 1 never polled.
        let mut h = group_history();
        h.polls = vec![poll(0, &[(0, 10)]), poll(1, &[(2, 12)])];
        let r = poll_skip(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(
            r.detail.contains("group g committed t-0@3 but no member polled 1 offsets"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn group_liveness_needs_every_partition_owned_and_consumed() {
        let mut h = group_history();
        h.assignments.push(assignment(1, 3, &[], 80));
        let r = liveness(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("owned by no member in its last generation 3"), "{}", r.detail);
        let mut h = group_history();
        h.group_positions.insert(("g".into(), tp()), 2);
        assert!(liveness(&h).detail.contains("group g ended at t-0@2, behind the log end 3"));
    }

    #[test]
    fn a_clean_history_holds_everywhere() {
        let h = good();
        for c in [
            "lost-write",
            "inconsistent-offsets",
            "duplicate",
            "nonmonotonic-poll",
            "poll-skip",
            "liveness",
        ] {
            let r = run(c, &h).unwrap();
            assert_eq!(r.outcome, Outcome::Held, "{c}: {}", r.detail);
            assert!(r.examined > 0, "{c}");
        }
    }

    #[test]
    fn lost_write_leaves_out_records_below_the_log_start_and_no_others() {
        // Retention removed offsets 0 and 1: their acknowledged records are not lost.
        let mut h = with_final(good(), &[(2, 12)]);
        let start = |h: &mut History, s: i64| {
            h.final_logs.get_mut(&tp()).and_then(|l| l.as_mut()).expect("read").log_start_offset =
                s;
        };
        start(&mut h, 2);
        let r = lost_write(&h);
        assert_eq!((r.outcome, r.examined), (Outcome::Held, 1), "{}", r.detail);
        assert!(
            r.detail.contains("(2 more acknowledged below their final log's start"),
            "{}",
            r.detail
        );
        // The log starting at 1 while offset 1 is missing: 11 is lost, 10 is not examined.
        start(&mut h, 1);
        let r = lost_write(&h);
        assert_eq!((r.outcome, r.examined), (Outcome::Violated, 2), "{}", r.detail);
        assert!(r.detail.contains("value 11 acked at offset t-0@1"), "{}", r.detail);
    }

    #[test]
    fn lost_write_fires_and_names_the_offset() {
        let h = with_final(good(), &[(0, 10), (1, 11)]);
        let r = lost_write(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("value 12 acked at offset t-0@2"), "{}", r.detail);
        // Failed, unconfirmed and pending sends are no promise.
        let mut h = with_final(empty(), &[]);
        h.sends = vec![
            send(1, SendOutcome::Failed { at_ns: 1 }),
            send(2, SendOutcome::Unconfirmed { at_ns: 1 }),
        ]
        .into();
        // ... and with nothing acknowledged there is nothing to check: vacuous, not held.
        assert_eq!((lost_write(&h).outcome, lost_write(&h).examined), (Outcome::Vacuous, 0));
        h.sends.push(acked(3, 0));
        let h = with_final(h, &[(0, 3)]);
        assert_eq!((lost_write(&h).outcome, lost_write(&h).examined), (Outcome::Held, 1));
        // An unreadable final log cannot prove anything.
        let mut h = good();
        h.final_logs.insert(tp(), None);
        assert_eq!(lost_write(&h).outcome, Outcome::Violated);
    }

    #[test]
    fn inconsistent_offsets_fires_on_ack_vs_final_and_poll_vs_final() {
        let h = with_final(good(), &[(0, 10), (1, 11), (2, 99)]);
        let r = inconsistent_offsets(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(
            r.detail
                .contains("offset t-0@2: value 12 (acked to producer 0) vs value 99 (final log)"),
            "{}",
            r.detail
        );
        let mut h = good();
        h.polls.push(poll(1, &[(1, 55)]));
        let r = inconsistent_offsets(&h);
        assert!(r.detail.contains("t-0@1"), "{}", r.detail);
    }

    #[test]
    fn duplicate_fires_on_final_log_and_on_one_consumer() {
        let h = with_final(good(), &[(0, 10), (1, 11), (2, 12), (3, 11)]);
        let r = duplicate(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("value 11 at t-0@1, t-0@3 (final log)"), "{}", r.detail);
        let mut h = good();
        h.polls.push(poll(0, &[(5, 10)]));
        assert!(duplicate(&h).detail.contains("consumer 0"));
        // Two consumers seeing the same record is not a duplicate.
        let mut h = good();
        h.polls.push(poll(1, &[(0, 10)]));
        assert_eq!(duplicate(&h).outcome, Outcome::Held);
    }

    #[test]
    fn nonmonotonic_fires_unless_reset() {
        let mut h = good();
        h.polls.push(poll(0, &[(1, 11)]));
        let r = nonmonotonic_poll(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("polled t-0@1 after t-0@2"), "{}", r.detail);
        let mut h = good();
        h.polls.push(reset(0));
        h.polls.push(poll(0, &[(0, 10)]));
        assert_eq!(nonmonotonic_poll(&h).outcome, Outcome::Held);
    }

    #[test]
    fn poll_skip_fires_only_over_present_offsets() {
        let mut h = good();
        h.polls = vec![poll(0, &[(0, 10)]), poll(0, &[(2, 12)])];
        let r = poll_skip(&h);
        assert_eq!(r.outcome, Outcome::Violated);
        assert!(r.detail.contains("from t-0@0 to t-0@2, skipping 1"), "{}", r.detail);
        // Offset 1 absent from the final log: nothing was skipped.
        let h2 = with_final(h, &[(0, 10), (2, 12)]);
        assert_eq!(poll_skip(&h2).outcome, Outcome::Held);
    }

    #[test]
    fn liveness_fires_on_stuck_pending_and_lagging() {
        let mut h = good();
        h.sends.push(send(13, SendOutcome::Pending));
        assert_eq!(liveness(&h).outcome, Outcome::Violated);
        assert_eq!(liveness(&h).causes, ["unanswered"]);
        let mut h = good();
        h.final_positions.insert((0, tp()), 1);
        assert!(liveness(&h).detail.contains("behind the log end 3"));
        assert_eq!(liveness(&h).causes, ["consumer-behind"]);
        h.stuck.push(Stuck::new(
            LivenessCause::NotSettled,
            "the run did not settle within settle_timeout_s=60",
        ));
        assert_eq!(liveness(&h).causes, ["not-settled", "consumer-behind"]);
        assert!(liveness(&good()).causes.is_empty());
        let mut h = good();
        h.last_heal_ns = Some(5);
        h.sends.push(Send::new(Some(tp_id()), 20, 6, SendOutcome::Failed { at_ns: 7 }));
        assert_eq!(liveness(&h).outcome, Outcome::Violated);
        let mut h = good();
        h.stuck.push(Stuck::other("broker-0 failed to start"));
        assert_eq!(liveness(&h).outcome, Outcome::Violated);
        assert_eq!(liveness(&h).causes, ["stuck"]);
    }

    /// The compact checkers against the string-keyed ones they replaced
    /// ([`super::reference`]), on random histories with every kind of fault.
    mod differential {
        use super::*;
        use crate::history::{Commit, PartitionId};
        use proptest::prelude::*;
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        use rand_chacha::ChaCha8Rng;

        const COMPARED: &[&str] =
            &["lost-write", "inconsistent-offsets", "duplicate", "nonmonotonic-poll", "poll-skip"];

        /// One consumer's polls of one partition's log: in chunks, now and then a reset, a
        /// step back, a skip or a wrong value.
        fn polls(
            r: &mut ChaCha8Rng,
            h: &mut History,
            c: u32,
            id: PartitionId,
            log: &[(i64, u64)],
            k: u32,
        ) {
            let (mut i, mut steps) = (0usize, 0);
            while i < log.len() && steps < 100 {
                steps += 1;
                match r.gen_range(0..12 * k) {
                    0 => h.polls.push(Poll {
                        consumer: c,
                        tp: id,
                        at_ns: steps,
                        kind: PollKind::Reset { from: 0, to: 0, reason: "test" },
                    }),
                    1 => i = i.saturating_sub(r.gen_range(1..4)),
                    2 => i += r.gen_range(1..4),
                    _ => {}
                }
                let j = (i + r.gen_range(1..6)).min(log.len());
                if i >= j {
                    break;
                }
                let mut recs = log[i..j].to_vec();
                if r.gen_range(0..15 * k) == 0 {
                    recs[0].1 ^= 1 << 50;
                }
                h.polls.push(Poll {
                    consumer: c,
                    tp: id,
                    at_ns: steps,
                    kind: PollKind::Records(recs.into()),
                });
                i = j;
            }
        }

        /// The final log: the true log with rare drops, changed values, repeats and swaps;
        /// sometimes unreadable or not read at all.
        fn final_log(
            r: &mut ChaCha8Rng,
            h: &mut History,
            tp: TopicPartition,
            log: &[(i64, u64)],
            k: u32,
        ) {
            let mut fin = Vec::new();
            for &(o, v) in log {
                match r.gen_range(0..25 * k) {
                    0 => {}
                    1 => fin.push((o, v ^ (1 << 51))),
                    2 => fin.extend([(o, v), (o + 1, v)]),
                    3 => fin.extend([(o, v), (o, v)]),
                    _ => fin.push((o, v)),
                }
            }
            if fin.len() > 2 && r.gen_range(0..8 * k) == 0 {
                fin.swap(0, 1);
            }
            let end = fin.iter().map(|x| x.0 + 1).max().unwrap_or(0);
            // Sometimes retention removed a prefix: the log starts above 0.
            let start = if end > 0 && r.gen_range(0..6) == 0 { r.gen_range(0..end) } else { 0 };
            fin.retain(|x| x.0 >= start);
            match r.gen_range(0..12 * k) {
                0 => drop(h.final_logs.insert(tp, None)),
                1 => {}
                _ => {
                    let l = FinalLog {
                        log_start_offset: start,
                        log_end_offset: end,
                        records: fin.into(),
                    };
                    h.final_logs.insert(tp, Some(l));
                }
            }
        }

        /// A random history over `partitions` partitions of topic `t`, named in a random order
        /// (so ids do not follow names); consumer 1 is a member of group g. Faults are 1,000
        /// times rarer in one history of three, so clean histories are compared too.
        fn random_history(seed: u64, partitions: i32) -> History {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let k = if r.gen_range(0..3) == 0 { 1000 } else { 1 };
            let mut h = History::default();
            let mut order: Vec<i32> = (0..partitions).collect();
            order.shuffle(&mut r);
            let mut value = 0u64;
            for p in order {
                let id = h.partitions.intern("t", p);
                let n = r.gen_range(0..40i64);
                let start = if r.gen_bool(0.2) { r.gen_range(0..1000) } else { 0 };
                let log: Vec<(i64, u64)> = (0..n)
                    .map(|i| {
                        value += 1;
                        (start + i, value)
                    })
                    .collect();
                for &(o, v) in &log {
                    let outcome = match r.gen_range(0..20 * k) {
                        0 => SendOutcome::Failed { at_ns: 1 },
                        1 => SendOutcome::Acked { offset: o + r.gen_range(-2..3), at_ns: 1 },
                        2 => SendOutcome::Pending,
                        // Far from the rest: this partition's offsets go to a hash map.
                        3 => SendOutcome::Acked { offset: o + (1 << 40), at_ns: 1 },
                        _ => SendOutcome::Acked { offset: o, at_ns: 1 },
                    };
                    let tp = if r.gen_range(0..200 * k) == 0 { None } else { Some(id) };
                    // Producer 0 for every send (`Send::producer` is the value's top bits);
                    // the draw that once chose one stays, so the histories stay the same.
                    let _ = r.gen_range(0..2);
                    h.sends.push(Send::new(tp, v, 0, outcome));
                }
                for c in 0..2 {
                    polls(&mut r, &mut h, c, id, &log, k);
                }
                if r.gen_bool(0.5) {
                    h.commits.push(Commit {
                        member: 1,
                        group: "g".into(),
                        member_id: "m1".into(),
                        generation: 1,
                        offsets: vec![(TopicPartition::new("t", p), start + r.gen_range(0..=n))],
                        sent_ns: 0,
                        at_ns: 0,
                        error: None,
                    });
                }
                final_log(&mut r, &mut h, TopicPartition::new("t", p), &log, k);
            }
            // A partition only the oracle read (never sent to or polled).
            let u = [(0, 1 << 52), (1, 1 << 52)];
            final_log(
                &mut r,
                &mut h,
                TopicPartition::new("u", 0),
                if k == 1 { &u } else { &[] },
                k,
            );
            h.group_members.insert(1, "g".into());
            h
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            /// Up to 10 partitions (t-0..t-9) sort alike as strings and as partitions: the
            /// details are equal too. Beyond, only the order of examples may differ.
            #[test]
            fn compact_checkers_agree_with_the_reference(seed in any::<u64>(), partitions in 1i32..14) {
                let h = random_history(seed, partitions);
                let old = super::super::reference::Old::of(&h);
                for c in COMPARED {
                    let new = run(c, &h).unwrap();
                    let want = super::super::reference::run(c, &old).unwrap();
                    prop_assert_eq!((new.outcome, new.examined), (want.outcome, want.examined), "{}", c);
                    if partitions <= 10 {
                        prop_assert_eq!(&new.detail, &want.detail, "{}", c);
                    }
                }
            }
        }

        /// The generator makes each kind of violation often enough to be compared.
        #[test]
        fn random_histories_violate_every_compared_check_somewhere() {
            for c in COMPARED {
                let violated = (0..200u64)
                    .filter(|s| {
                        run(c, &random_history(*s, 4)).unwrap().outcome == Outcome::Violated
                    })
                    .count();
                assert!((20..190).contains(&violated), "{c}: {violated} of 200");
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Judged on spans, a value is at two offsets exactly when it is among their
            /// records (each record once when the same record may be seen twice).
            #[test]
            fn values_once_agrees_with_the_records(
                spans in proptest::collection::vec((0i64..30, 0u64..30, 1usize..6), 0..8),
                same_record_once in any::<bool>(),
            ) {
                let each = |&(o, v, n): &(i64, u64, usize)| (0..n).map(move |k| (v + k as u64, o + k as i64));
                let mut pairs: Vec<(u64, i64)> = spans.iter().flat_map(each).collect();
                pairs.sort_unstable();
                if same_record_once {
                    pairs.dedup();
                }
                let twice = pairs.windows(2).any(|w| w[0].0 == w[1].0);
                prop_assert_eq!(values_once(spans, same_record_once), !twice);
            }
        }

        proptest! {
            /// A log built from its own acks, read in order by one consumer, violates nothing;
            /// dropping any acked record from the final log is always a lost write.
            #[test]
            fn consistent_histories_hold_and_any_drop_is_lost(n in 1usize..60, polls in proptest::collection::vec(1usize..8, 1..20), drop in 0usize..60) {
                let recs: Vec<(i64, u64)> = (0..n).map(|i| (i as i64, 1000 + i as u64)).collect();
                let mut h = empty();
                h.sends = recs.iter().map(|&(o, v)| acked(v, o)).collect();
                let mut i = 0;
                for k in polls {
                    if i >= n { break; }
                    let j = (i + k).min(n);
                    h.polls.push(poll(0, &recs[i..j]));
                    i = j;
                }
                h.final_positions.insert((0, tp()), i as i64);
                let h = with_final(h, &recs);
                for c in ["lost-write", "inconsistent-offsets", "duplicate", "nonmonotonic-poll", "poll-skip"] {
                    prop_assert_eq!(run(c, &h).unwrap().outcome, Outcome::Held, "{}", c);
                }
                let d = drop % n;
                let mut fewer = recs.clone();
                fewer.remove(d);
                let h2 = with_final(h, &fewer);
                let r = lost_write(&h2);
                prop_assert_eq!(r.outcome, Outcome::Violated);
                let needle = format!("offset t-0@{}", d);
                prop_assert!(r.detail.contains(&needle));
            }
        }
    }
}
