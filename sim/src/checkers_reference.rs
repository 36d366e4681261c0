//! The checkers as they were before the history became compact (partitions as strings, maps
//! per record), kept as the reference the compact checkers must agree with: same outcome, same
//! count, and the same detail where string order and partition order agree.

use std::collections::{BTreeMap, BTreeSet};

use super::{examples, CheckResult, Source};
use crate::history::{FinalLog, History, PollKind, SendOutcome};

type Tp = String;

pub struct OldSend {
    pub producer: u32,
    pub tp: Tp,
    pub value: u64,
    pub outcome: SendOutcome,
}

pub struct OldPoll {
    pub consumer: u32,
    pub tp: Tp,
    pub at_ns: u64,
    pub kind: PollKind,
}

pub struct Commit {
    pub group: String,
    pub offsets: Vec<(Tp, i64)>,
    pub error: Option<String>,
}

/// A history with every partition as its `topic-partition` string.
pub struct Old {
    pub sends: Vec<OldSend>,
    pub polls: Vec<OldPoll>,
    pub final_logs: BTreeMap<Tp, Option<FinalLog>>,
    pub commits: Vec<Commit>,
    pub group_members: BTreeMap<u32, String>,
}

impl Old {
    pub fn of(h: &History) -> Self {
        let name = |id| h.partitions.display(id);
        Old {
            sends: h
                .sends
                .iter()
                .map(|s| OldSend {
                    producer: s.producer(),
                    tp: name(s.tp()),
                    value: s.value,
                    outcome: s.outcome(),
                })
                .collect(),
            polls: h
                .polls
                .iter()
                .map(|p| OldPoll {
                    consumer: p.consumer,
                    tp: name(Some(p.tp)),
                    at_ns: p.at_ns,
                    kind: p.kind.clone(),
                })
                .collect(),
            final_logs: h.final_logs.iter().map(|(tp, l)| (tp.to_string(), l.clone())).collect(),
            commits: h
                .commits
                .iter()
                .map(|c| Commit {
                    group: c.group.clone(),
                    offsets: c.offsets.iter().map(|(tp, o)| (tp.to_string(), *o)).collect(),
                    error: c.error.clone(),
                })
                .collect(),
            group_members: h.group_members.clone(),
        }
    }

    fn acked(&self) -> impl Iterator<Item = (&OldSend, i64, u64)> {
        self.sends.iter().filter_map(|s| match s.outcome {
            SendOutcome::Acked { offset, at_ns } => Some((s, offset, at_ns)),
            _ => None,
        })
    }
}

/// The reference verdict of one of the checkers rewritten for the compact history.
pub fn run(check: &str, h: &Old) -> Option<CheckResult> {
    Some(match check {
        "lost-write" => lost_write(h),
        "inconsistent-offsets" => inconsistent_offsets(h),
        "duplicate" => duplicate(h),
        "nonmonotonic-poll" => nonmonotonic_poll(h),
        "poll-skip" => poll_skip(h),
        _ => return None,
    })
}

/// Records in the final logs.
fn final_records(h: &Old) -> u64 {
    h.final_logs.values().flatten().map(|l| l.records.len() as u64).sum()
}

/// Records returned by polls.
fn polled_records(h: &Old) -> u64 {
    h.polls
        .iter()
        .map(|p| match &p.kind {
            PollKind::Records(rs) => rs.len() as u64,
            PollKind::Reset { .. } => 0,
        })
        .sum()
}

/// Final values per partition: value → offsets holding it.
fn final_values(h: &Old) -> BTreeMap<&Tp, BTreeMap<u64, Vec<i64>>> {
    let mut out: BTreeMap<&Tp, BTreeMap<u64, Vec<i64>>> = BTreeMap::new();
    for (tp, log) in &h.final_logs {
        let m = out.entry(tp).or_default();
        if let Some(log) = log {
            for (offset, value) in log.records.iter() {
                m.entry(value).or_default().push(offset);
            }
        }
    }
    out
}

/// lost-write: an acknowledged record (acks=1/all) that the final log does not hold.
/// Examined: acknowledged records.
fn lost_write(h: &Old) -> CheckResult {
    let finals = final_values(h);
    let mut lost = Vec::new();
    let (mut acked, mut below_start) = (0u64, 0u64);
    let mut unreadable = BTreeSet::new();
    for (send, offset, at_ns) in h.acked() {
        acked += 1;
        let start = match h.final_logs.get(&send.tp) {
            Some(Some(log)) => log.log_start_offset,
            _ => {
                unreadable.insert(send.tp.clone());
                continue;
            }
        };
        let at = finals.get(&send.tp).and_then(|m| m.get(&send.value));
        if offset < start && !at.is_some_and(|offsets| offsets.contains(&offset)) {
            below_start += 1;
            continue;
        }
        let present = at.is_some();
        if !present {
            lost.push((send.tp.clone(), send.value, offset, at_ns));
        }
    }
    if !unreadable.is_empty() {
        return CheckResult::violated(
            acked,
            format!(
            "the final log of {} could not be read, so acknowledged writes cannot be shown present",
            unreadable.into_iter().collect::<Vec<_>>().join(", ")
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
            examples(&lost, |(tp, v, o, t)| format!(
                "value {v} acked at offset {tp}@{o} (t={:.3}s)",
                *t as f64 / 1e9
            ))
        ),
    )
}

/// inconsistent-offsets: one offset seen holding two different values (by an ack, a poll or the
/// final log). Examined: distinct offsets observed. One hash-map entry per offset (the first
/// value seen and who saw it); only offsets with a second value get an ordered map of values.
fn inconsistent_offsets(h: &Old) -> CheckResult {
    type First<'a> = std::collections::HashMap<(&'a Tp, i64), (u64, Source)>;
    type Conflicts<'a> = BTreeMap<(&'a Tp, i64), BTreeMap<u64, Source>>;
    fn see<'a>(
        first: &mut First<'a>,
        conflicts: &mut Conflicts<'a>,
        tp: &'a Tp,
        offset: i64,
        value: u64,
        src: Source,
    ) {
        match first.entry((tp, offset)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((value, src));
            }
            std::collections::hash_map::Entry::Occupied(e) => {
                let (v0, s0) = *e.get();
                if v0 != value {
                    conflicts
                        .entry((tp, offset))
                        .or_insert_with(|| BTreeMap::from([(v0, s0)]))
                        .entry(value)
                        .or_insert(src);
                }
            }
        }
    }
    let mut first: First = std::collections::HashMap::new();
    let mut conflicts: Conflicts = BTreeMap::new();
    for (send, offset, _) in h.acked() {
        see(&mut first, &mut conflicts, &send.tp, offset, send.value, Source::Acked(send.producer));
    }
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            for (offset, value) in rs.iter() {
                see(&mut first, &mut conflicts, &p.tp, offset, value, Source::Polled(p.consumer));
            }
        }
    }
    for (tp, log) in &h.final_logs {
        if let Some(log) = log {
            for (offset, value) in log.records.iter() {
                see(&mut first, &mut conflicts, tp, offset, value, Source::FinalLog);
            }
        }
    }
    let observed = first.len();
    if conflicts.is_empty() {
        return CheckResult::held(
            observed as u64,
            format!("{observed} observed offsets each held one value"),
        );
    }
    let bad: Vec<_> = conflicts.into_iter().collect();
    CheckResult::violated(
        observed as u64,
        format!(
            "{} offsets held more than one value: {}",
            bad.len(),
            examples(&bad, |((tp, o), vs)| {
                let vals: Vec<String> =
                    vs.iter().map(|(v, src)| format!("value {v} ({src})")).collect();
                format!("offset {tp}@{o}: {}", vals.join(" vs "))
            })
        ),
    )
}

/// duplicate: one value at two offsets of the final log, or polled at two offsets by one
/// consumer (a retried send written twice: what idempotence prevents). Examined: records of the
/// final log plus records polled.
fn duplicate(h: &Old) -> CheckResult {
    let mut dups: Vec<(Tp, u64, Vec<i64>, String)> = Vec::new();
    let examined = final_records(h) + polled_records(h);
    for (tp, m) in final_values(h) {
        for (v, offs) in m {
            if offs.len() > 1 {
                dups.push((tp.clone(), v, offs, "final log".into()));
            }
        }
    }
    let mut per_consumer: BTreeMap<(u32, &Tp), BTreeMap<u64, BTreeSet<i64>>> = BTreeMap::new();
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            for (offset, value) in rs.iter() {
                per_consumer
                    .entry((p.consumer, &p.tp))
                    .or_default()
                    .entry(value)
                    .or_default()
                    .insert(offset);
            }
        }
    }
    for ((c, tp), m) in per_consumer {
        for (v, offs) in m {
            if offs.len() > 1 {
                dups.push((tp.clone(), v, offs.into_iter().collect(), format!("consumer {c}")));
            }
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
            examples(&dups, |(tp, v, offs, src)| {
                let o: Vec<String> = offs.iter().map(|o| format!("{tp}@{o}")).collect();
                format!("value {v} at {} ({src})", o.join(", "))
            })
        ),
    )
}

/// Each consumer's polled offsets per partition, split into sessions at resets.
#[allow(clippy::type_complexity)]
fn sessions(h: &Old) -> BTreeMap<(u32, &Tp), Vec<Vec<(i64, u64)>>> {
    let mut out: BTreeMap<(u32, &Tp), Vec<Vec<(i64, u64)>>> = BTreeMap::new();
    for p in &h.polls {
        let s = out.entry((p.consumer, &p.tp)).or_insert_with(|| vec![Vec::new()]);
        match &p.kind {
            PollKind::Records(rs) => {
                s.last_mut().expect("one session").extend(rs.iter().map(|(o, _)| (o, p.at_ns)))
            }
            PollKind::Reset { .. } => s.push(Vec::new()),
        }
    }
    out
}

/// nonmonotonic-poll: a consumer saw an offset not above the previous one, with no reset between.
/// Examined: records polled.
fn nonmonotonic_poll(h: &Old) -> CheckResult {
    let examined = polled_records(h);
    let mut bad = Vec::new();
    for ((c, tp), sess) in sessions(h) {
        for s in sess {
            for w in s.windows(2) {
                if w[1].0 <= w[0].0 {
                    bad.push((c, tp.clone(), w[0].0, w[1].0, w[1].1));
                }
            }
        }
    }
    if bad.is_empty() {
        return CheckResult::held(examined, "every consumer's offsets rose between resets");
    }
    CheckResult::violated(
        examined,
        format!(
            "{} times a consumer went back or repeated: {}",
            bad.len(),
            examples(&bad, |(c, tp, a, b, t)| format!(
                "consumer {c} polled {tp}@{b} after {tp}@{a} (t={:.3}s)",
                *t as f64 / 1e9
            ))
        ),
    )
}

/// poll-skip: a consumer jumped from offset a to b > a + 1 while the final log holds offsets
/// between them (records it should have seen), with no reset between. Examined: records polled.
fn poll_skip(h: &Old) -> CheckResult {
    let examined = polled_records(h);
    let present: BTreeMap<&Tp, BTreeSet<i64>> = h
        .final_logs
        .iter()
        .map(|(tp, l)| {
            (tp, l.as_ref().map(|l| l.records.iter().map(|r| r.0).collect()).unwrap_or_default())
        })
        .collect();
    let mut bad = Vec::new();
    for ((c, tp), sess) in sessions(h) {
        let Some(offsets) = present.get(tp) else { continue };
        for s in sess {
            for w in s.windows(2) {
                let (a, b) = (w[0].0, w[1].0);
                if b > a + 1 {
                    let missed = offsets.range(a + 1..b).count();
                    if missed > 0 {
                        bad.push((c, tp.clone(), a, b, missed));
                    }
                }
            }
        }
    }
    let group_skips = group_skips(h, &present);
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
            examples(&bad, |(c, tp, a, b, n)| format!("consumer {c} jumped from {tp}@{a} to {tp}@{b}, skipping {n} offsets present in the final log"))
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
fn group_skips(
    h: &Old,
    present: &BTreeMap<&Tp, BTreeSet<i64>>,
) -> Vec<(String, Tp, i64, usize, i64)> {
    let mut committed: BTreeMap<(&str, &Tp), i64> = BTreeMap::new();
    for c in h.commits.iter().filter(|c| c.error.is_none()) {
        for (tp, o) in &c.offsets {
            let e = committed.entry((c.group.as_str(), tp)).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
    let mut polled: BTreeMap<(&str, &Tp), BTreeSet<i64>> = BTreeMap::new();
    for p in &h.polls {
        let Some(g) = h.group_members.get(&p.consumer) else { continue };
        if let PollKind::Records(rs) = &p.kind {
            polled.entry((g.as_str(), &p.tp)).or_default().extend(rs.iter().map(|r| r.0));
        }
    }
    let mut out = Vec::new();
    for ((g, tp), c) in committed {
        let Some(offsets) = present.get(tp) else { continue };
        let seen = polled.get(&(g, tp));
        let missed: Vec<i64> =
            offsets.range(..c).filter(|o| !seen.is_some_and(|s| s.contains(o))).copied().collect();
        if let Some(&first) = missed.first() {
            out.push((g.to_string(), tp.clone(), c, missed.len(), first));
        }
    }
    out
}
