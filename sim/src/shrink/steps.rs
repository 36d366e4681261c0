//! The shrinking steps after the explicit replay, each change kept only if the check is still
//! violated: ddmin over fault units, shorter faults, earlier faults, a shorter run, lower
//! rates, fewer partitions, fewer brokers.

use serde_json::{json, Value};

use super::{Cand, Shrinker};
use crate::scenario::Scenario;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
/// Halvings tried per fault and per knob (bounds the runs of the steps after ddmin).
const HALVINGS_MAX: u32 = 3;

/// Every step in order; ddmin again when the later steps changed something.
pub fn minimize(s: &mut Shrinker, mut c: Cand) -> Cand {
    for round in 0..2 {
        let before = serde_json::to_string(&c.to_json()).unwrap_or_default();
        s.begin(if round == 0 { "ddmin" } else { "ddmin again" });
        c = ddmin(s, c);
        s.begin("shorter faults");
        c = shorten(s, c);
        s.begin("earlier faults");
        c = earlier(s, c);
        s.begin("shorter run");
        c = shorter_run(s, c);
        s.begin("lower rates");
        c = lower_rates(s, c);
        s.begin("fewer partitions");
        c = fewer_partitions(s, c);
        s.begin("fewer brokers");
        c = fewer_brokers(s, c);
        if serde_json::to_string(&c.to_json()).unwrap_or_default() == before || !s.budget_left() {
            break;
        }
    }
    c
}

fn with_units(c: &Cand, units: Vec<Vec<super::Entry>>) -> Cand {
    Cand { doc: c.doc.clone(), units }
}

/// Zeller's ddmin over the units: the smallest subset (1-minimal within the budget) that
/// still violates the check. The empty set is tried first.
pub fn ddmin(s: &mut Shrinker, c: Cand) -> Cand {
    if c.units.is_empty() || s.test(&with_units(&c, Vec::new()), "ddmin: no faults at all") {
        return with_units(&c, Vec::new());
    }
    let mut cur = c.units.clone();
    let mut n = 2usize;
    while cur.len() >= 2 && s.budget_left() {
        let chunk = cur.len().div_ceil(n);
        let parts: Vec<Vec<usize>> =
            (0..cur.len()).collect::<Vec<_>>().chunks(chunk).map(<[usize]>::to_vec).collect();
        let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<Vec<super::Entry>> {
            cur.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, u)| u.clone()).collect()
        };
        let mut next = None;
        for (k, p) in parts.iter().enumerate() {
            let sub = pick(&|i| p.contains(&i));
            let what =
                format!("ddmin: keep part {} of {} ({} units)", k + 1, parts.len(), sub.len());
            if sub.len() < cur.len() && s.test(&with_units(&c, sub.clone()), &what) {
                next = Some((sub, 2));
                break;
            }
        }
        if next.is_none() && parts.len() > 2 {
            for (k, p) in parts.iter().enumerate() {
                let sub = pick(&|i| !p.contains(&i));
                let what = format!(
                    "ddmin: drop part {} of {} ({} units left)",
                    k + 1,
                    parts.len(),
                    sub.len()
                );
                if s.test(&with_units(&c, sub.clone()), &what) {
                    next = Some((sub, (n - 1).max(2)));
                    break;
                }
            }
        }
        match next {
            Some((sub, m)) => (cur, n) = (sub, m),
            None if n >= cur.len() => break,
            None => n = (2 * n).min(cur.len()),
        }
    }
    with_units(&c, cur)
}

/// Rounded down to whole milliseconds when at least one (readable files), else as is.
fn ms_floor(ns: u64) -> u64 {
    if ns >= MS {
        ns / MS * MS
    } else {
        ns
    }
}

/// Halves each fault's `for` and each process fault's downtime (the gap to its restart).
fn shorten(s: &mut Shrinker, mut c: Cand) -> Cand {
    for u in 0..c.units.len() {
        for e in 0..c.units[u].len() {
            for _ in 0..HALVINGS_MAX {
                let Some(f) = c.units[u][e].for_ns else { break };
                let half = ms_floor(f / 2);
                if half < MS || !s.budget_left() {
                    break;
                }
                let mut t = c.clone();
                t.units[u][e].for_ns = Some(half);
                let what = format!(
                    "{} {}: for {} -> {}",
                    t.units[u][e].action,
                    t.units[u][e].target,
                    super::fmt_ns(f),
                    super::fmt_ns(half)
                );
                if !s.test(&t, &what) {
                    break;
                }
                c = t;
            }
        }
        c = shorter_downtime(s, c, u);
    }
    c
}

/// A unit of a process fault and its restart: the restart moved halfway to the fault.
fn shorter_downtime(s: &mut Shrinker, mut c: Cand, u: usize) -> Cand {
    for _ in 0..HALVINGS_MAX {
        let unit = &c.units[u];
        if unit.len() != 2 || unit[1].action != "restart" || !s.budget_left() {
            break;
        }
        let gap = unit[1].at_ns.saturating_sub(unit[0].end_ns());
        let half = ms_floor(gap / 2);
        if half < 10 * MS {
            break;
        }
        let mut t = c.clone();
        t.units[u][1].at_ns = t.units[u][0].end_ns() + half;
        let what = format!(
            "{} {}: down {} -> {}",
            unit[0].action,
            unit[0].target,
            super::fmt_ns(gap),
            super::fmt_ns(half)
        );
        if !s.test(&t, &what) {
            break;
        }
        c = t;
    }
    c
}

/// Moves each unit earlier (all its entries by one shift: half its start time).
fn earlier(s: &mut Shrinker, mut c: Cand) -> Cand {
    for u in 0..c.units.len() {
        for _ in 0..HALVINGS_MAX {
            let start = c.units[u].iter().map(|e| e.at_ns).min().unwrap_or(0);
            let shift = ms_floor(start / 2);
            if shift < 100 * MS || !s.budget_left() {
                break;
            }
            let mut t = c.clone();
            for e in &mut t.units[u] {
                e.at_ns -= shift;
            }
            let e0 = &t.units[u][0];
            let what = format!(
                "{} {}: at {} -> {}",
                e0.action,
                e0.target,
                super::fmt_ns(start),
                super::fmt_ns(start - shift)
            );
            if !s.test(&t, &what) {
                break;
            }
            c = t;
        }
    }
    c
}

fn parsed(c: &Cand) -> Option<Scenario> {
    Scenario::parse(&serde_json::to_string(&c.to_json()).ok()?).ok()
}

/// `duration_s` cut to a second after the last fault ends (else halfway there).
fn shorter_run(s: &mut Shrinker, c: Cand) -> Cand {
    let Some(sc) = parsed(&c) else { return c };
    let last = c.units.iter().flatten().map(|e| e.end_ns()).max().unwrap_or(0);
    let tight = last.div_ceil(S) + 1;
    let mut cur = c;
    for d in [tight, (tight + sc.duration_s).div_ceil(2)] {
        if d >= sc.duration_s {
            continue;
        }
        let mut t = cur.clone();
        t.doc["duration_s"] = json!(d);
        if s.test(&t, &format!("duration_s {} -> {d}", sc.duration_s)) {
            cur = t;
            break;
        }
    }
    cur
}

/// A producer's rate as records per second, if the file gives it as `N/s` or a number.
fn rate_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.strip_suffix("/s")?.trim().parse().ok())
}

/// Halves each producer's rate.
fn lower_rates(s: &mut Shrinker, mut c: Cand) -> Cand {
    let n = c.doc.pointer("/workload/producers").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..n {
        for _ in 0..HALVINGS_MAX {
            let ptr = format!("/workload/producers/{i}/rate");
            let Some(r) = c.doc.pointer(&ptr).and_then(rate_of) else { break };
            if r < 2 || !s.budget_left() {
                break;
            }
            let mut t = c.clone();
            if let Some(v) = t.doc.pointer_mut(&ptr) {
                *v = json!(format!("{}/s", r / 2));
            }
            if !s.test(&t, &format!("producers[{i}].rate {r}/s -> {}/s", r / 2)) {
                break;
            }
            c = t;
        }
    }
    c
}

/// Each topic down to one partition (else half).
fn fewer_partitions(s: &mut Shrinker, mut c: Cand) -> Cand {
    let n = c.doc["topics"].as_array().map_or(0, Vec::len);
    for i in 0..n {
        let p = c.doc["topics"][i]["partitions"].as_u64().unwrap_or(1);
        for want in [1, p / 2] {
            if want < 1 || want >= p || !s.budget_left() {
                continue;
            }
            let mut t = c.clone();
            t.doc["topics"][i]["partitions"] = json!(want);
            if s.test(&t, &format!("topics[{i}].partitions {p} -> {want}")) {
                c = t;
                break;
            }
        }
    }
    c
}

/// One broker fewer at a time (replication factors clamped to the brokers left).
fn fewer_brokers(s: &mut Shrinker, mut c: Cand) -> Cand {
    loop {
        let Some(b) = c.doc.pointer("/cluster/brokers").and_then(Value::as_u64) else { return c };
        if b < 2 || !s.budget_left() {
            return c;
        }
        let mut t = c.clone();
        t.doc["cluster"]["brokers"] = json!(b - 1);
        for topic in t.doc["topics"].as_array_mut().into_iter().flatten() {
            if topic["replication.factor"].as_u64().is_some_and(|rf| rf > b - 1) {
                topic["replication.factor"] = json!(b - 1);
            }
        }
        if !s.test(&t, &format!("cluster.brokers {b} -> {}", b - 1)) {
            return c;
        }
        c = t;
    }
}
