//! The models' own invariants, checked while a run runs (as their unit tests check them): cheap
//! ones on every sampler tick — the fabric's event log (every segment departs before it is
//! ready, no event was dropped from the log) and its counters (never decrease), and every
//! running broker's consumer groups (`Group::invariant_violations`: a leader among the members,
//! a protocol all support, Empty means no members, `group.max.size`, static members) — and the
//! disk model's `check_invariants` (page cache, files, namespace) on every broker's disk at the
//! end of the run.
//!
//! Promises: a violated invariant never passes silently: it is recorded with what was examined
//! and the run's summary carries a failed `model-invariants` check (exit code 1); a disk
//! assertion is caught and recorded (its message printed by the panic hook), never a crash of
//! the whole run. Checking only reads: nothing here touches the trace unless a check fails.

use std::cell::Cell;
use std::collections::BTreeMap;

use broker::group::coordinator::GroupsChecked;
use disk_model::sim::SimDisk;
use net_model::sim::{NetEvent, NicStats};

thread_local! {
    static CHECKING: Cell<bool> = const { Cell::new(false) };
}

/// Whether a model assertion is being evaluated on this thread (a panic then is a violated
/// invariant, recorded by [`Invariants`], not a crash of the simulator).
pub fn checking() -> bool {
    CHECKING.with(Cell::get)
}

/// What the checks examined and what they found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Invariant evaluations (events, counter sets and disks examined).
    pub examined: u64,
    pub violations: Vec<String>,
}

#[derive(Default)]
pub struct Invariants {
    report: Report,
    /// Per host: the counters of the previous tick.
    last_stats: BTreeMap<String, NicStats>,
}

/// At most this many violations are kept (the count goes on).
const VIOLATIONS_KEPT: usize = 20;

impl Invariants {
    fn violated(&mut self, what: String) {
        if self.report.violations.len() < VIOLATIONS_KEPT {
            self.report.violations.push(what);
        }
    }

    /// The fabric's events of one tick.
    pub fn net_events(&mut self, events: &[NetEvent]) {
        for ev in events {
            self.report.examined += 1;
            let NetEvent::Segment { stream, depart_ns, ready_ns, .. } = *ev else { continue };
            if depart_ns > ready_ns {
                self.violated(format!("net: stream {stream} segment ready at {ready_ns} ns before it departed at {depart_ns} ns"));
            }
            // Not checked here: stream order by the logged ready times. `set_nic` retimes
            // segments already in flight, so a logged `ready_ns` can be stale (the fabric keeps
            // each stream in order itself: `ready = max(arrival, last ready)`).
        }
    }

    /// The fabric's counters at one tick, and how many events its log dropped.
    pub fn net_stats(&mut self, stats: &BTreeMap<String, NicStats>, events_dropped: u64) {
        self.report.examined += 1;
        if events_dropped > 0 {
            self.violated(format!("net: {events_dropped} events dropped from the fabric's log (the trace misses them)"));
        }
        for (host, st) in stats {
            if let Some(prev) = self.last_stats.get(host) {
                let pairs = [
                    ("bytes_sent", prev.bytes_sent, st.bytes_sent),
                    ("bytes_received", prev.bytes_received, st.bytes_received),
                    ("segments_sent", prev.segments_sent, st.segments_sent),
                    ("egress_busy_ns", prev.egress_busy_ns, st.egress_busy_ns),
                    ("ingress_busy_ns", prev.ingress_busy_ns, st.ingress_busy_ns),
                    ("connects", prev.connects, st.connects),
                    ("resets", prev.resets, st.resets),
                ];
                for (name, before, now) in pairs {
                    if now < before {
                        self.violated(format!(
                            "net: {host} {name} went back from {before} to {now}"
                        ));
                    }
                }
            }
            self.last_stats.insert(host.clone(), st.clone());
        }
    }

    /// The group state invariants of one broker's coordinator (named `who`): every group counts
    /// as examined; `None` (a request held the coordinator) examines nothing this tick.
    pub fn groups(&mut self, who: &str, checked: Option<GroupsChecked>) {
        let Some(checked) = checked else { return };
        self.report.examined += checked.groups;
        for v in checked.violations {
            self.violated(format!("groups {who}: {v}"));
        }
    }

    /// One broker's replica fetchers' index of what it follows from each leader, against its
    /// partitions' roles (`Replicas::check_followed_index`): every partition scanned counts.
    pub fn followed(&mut self, who: &str, (examined, violations): (u64, Vec<String>)) {
        self.report.examined += examined;
        for v in violations {
            self.violated(format!("replicas {who}: {v}"));
        }
    }

    /// The disk model's own assertions on `disk` (named `who`).
    pub fn disk(&mut self, who: &str, disk: &SimDisk) {
        self.report.examined += 1;
        CHECKING.with(|c| c.set(true));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| disk.check_invariants()));
        CHECKING.with(|c| c.set(false));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a disk-model assertion failed".into());
            self.violated(format!("disk {who}: {msg}"));
        }
    }

    pub fn report(&self) -> Report {
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken group reaches the `model-invariants` report; a busy coordinator examines
    /// nothing; intact groups count as examined.
    #[test]
    fn a_broken_group_fails_the_check() {
        let mut inv = Invariants::default();
        inv.groups("broker-0", None);
        assert_eq!(inv.report().examined, 0);
        inv.groups("broker-0", Some(GroupsChecked { groups: 3, violations: vec![] }));
        assert_eq!(inv.report().examined, 3);
        assert!(inv.report().violations.is_empty());
        let broken =
            GroupsChecked { groups: 1, violations: vec!["group g: Empty with 2 members".into()] };
        inv.groups("broker-1", Some(broken));
        let r = inv.report();
        assert_eq!(r.examined, 4);
        assert_eq!(r.violations, vec!["groups broker-1: group g: Empty with 2 members"]);
    }
}
