//! The end of a run's story: after the faults healed, producers finish their in-flight sends,
//! consumers catch up with the log end and every group is stable; then the consumers stop.
//!
//! Promises: [`settle`] returns by the deadline (`duration_s + settle_timeout_s`), `true` only
//! when every producer finished, every group's newest generation owns every partition with
//! each running member in it, and every consumer (and group) reached each partition's log end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::log::TopicPartition;

use crate::api::BrokerApi;
use crate::history::History;
use crate::member::MemberHost;
use crate::scenario::Scenario;
use crate::trace::Tracer;
use crate::workload::{lock, Workload};

/// Traces when the faults ended and when producers stop (and whether the heal came later than
/// the timeline planned).
pub fn announce_heal(sc: &Scenario, heal_ns: u64, tracer: &Tracer) {
    let stop_ns = sc.producers_stop_ns();
    tracer.event("heal", &format!("all faults ended (last at {heal_ns} ns); producers send new records until {stop_ns} ns"));
    if stop_ns < heal_ns + sc.produce_after_heal_s * 1_000_000_000 && !sc.producers.is_empty() {
        tracer.event("heal-late", &format!("the last heal ({heal_ns} ns) came later than the timeline planned: producers stop at {stop_ns} ns"));
    }
}

/// Waits, polling every 50 ms until `deadline_ns`, for the workload to settle; then stops the
/// consumers. Returns whether it settled.
pub async fn settle(
    sc: &Scenario,
    w: &Workload,
    api: &dyn BrokerApi,
    tracer: &Tracer,
    deadline_ns: u64,
) -> bool {
    let mut settled = false;
    while tracer.now_ns() < deadline_ns {
        tracer.sleep_until_ns(tracer.now_ns() + 50_000_000).await;
        if w.control.producers_running.load(Ordering::SeqCst) > 0 {
            continue;
        }
        if !groups_settled(&lock(&w.history), &w.members) {
            continue;
        }
        if caught_up(sc, w, api).await {
            settled = true;
            break;
        }
    }
    w.control.stop_consumers.store(true, Ordering::SeqCst);
    tracer.event("settled", &format!("{settled}"));
    settled
}

/// Whether every group's committed position and every plain consumer's position reached the
/// partition's log end.
async fn caught_up(sc: &Scenario, w: &Workload, api: &dyn BrokerApi) -> bool {
    let timeout = Duration::from_secs(5);
    let positions = lock(&w.control.positions).clone();
    let group_positions = lock(&w.control.group_positions).clone();
    let at_end = |pos: i64, r: Result<(i64, i64), _>| matches!(r, Ok((_, end)) if pos >= end);
    let mut caught_up = true;
    for spec in sc.consumers.iter().filter(|c| c.group.is_some()) {
        let g = spec.group_id.clone().unwrap_or_default();
        for tp in partitions_of(sc, &spec.topic) {
            let pos = group_positions.get(&(g.clone(), tp.clone())).copied().unwrap_or(-1);
            if !at_end(pos, api.list_offsets(&tp, timeout).await) {
                caught_up = false;
            }
        }
    }
    for ((_, tp), pos) in &positions {
        if !at_end(*pos, api.list_offsets(tp, timeout).await) {
            caught_up = false;
        }
    }
    caught_up
}

fn partitions_of(sc: &Scenario, topic: &str) -> Vec<TopicPartition> {
    let topics = sc.topics.iter().filter(|t| t.name == topic);
    topics.flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p))).collect()
}

/// Whether every group is stable for the end of the run: each running member's latest
/// assignment is of the group's newest generation, and that generation owns every partition (a
/// run that stops mid-rebalance would judge the group on a half-told story).
fn groups_settled(h: &History, members: &BTreeMap<u32, Arc<MemberHost>>) -> bool {
    for (g, tps) in &h.group_partitions {
        let mut latest: BTreeMap<u32, &crate::history::Assignment> = BTreeMap::new();
        for a in h.assignments.iter().filter(|a| &a.group == g) {
            latest.insert(a.member, a);
        }
        let Some(newest) = latest.values().map(|a| a.generation).max() else { return false };
        let running: Vec<u32> = members
            .iter()
            .filter(|(i, m)| m.is_running() && h.group_members.get(i) == Some(g))
            .map(|(i, _)| *i)
            .collect();
        if running.iter().any(|i| latest.get(i).is_none_or(|a| a.generation != newest)) {
            return false;
        }
        let owned: BTreeSet<&TopicPartition> =
            latest.values().filter(|a| a.generation == newest).flat_map(|a| a.tps.iter()).collect();
        if tps.iter().any(|tp| !owned.contains(tp)) {
            return false;
        }
    }
    true
}
