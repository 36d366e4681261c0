//! Consumer-group stories in the simulator (`cargo sim-test -p sim --test groups`): each shipped
//! group scenario meets its expectations under several seeds, and the zombie story really shows a
//! stale-generation commit being rejected (not merely the absence of one).
#![cfg(madsim)]

use std::path::Path;

use sim::run::{run, simulate, RunOptions};
use sim::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.json"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn opts(name: &str) -> RunOptions {
    RunOptions {
        keep_trace: false,
        scenario_path: format!("scenarios/{name}.json"),
        out_dir: format!("out/{name}"),
        omb: None,
    }
}

/// The history of one seeded run of `sc` (no trace kept).
fn history_of(sc: &Scenario, seed: u64) -> sim::history::History {
    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default())
        .block_on(simulate(sc, seed, false))
        .history
}

const GROUP_STORIES: &[&str] = &[
    "group-rebalance",
    "group-zombie-commit",
    "group-coordinator-restart",
    "group-leave",
    "group-poll-stall",
];

#[test]
fn group_stories_meet_their_expectations_under_several_seeds() {
    for name in GROUP_STORIES {
        let sc = scenario(name);
        for seed in 1..=4 {
            let out = run(&sc, seed, &opts(name));
            assert_eq!(
                out.exit_code,
                0,
                "{name} seed {seed}: {}",
                serde_json::to_string_pretty(&out.summary["checks"]).unwrap_or_default()
            );
        }
    }
}

#[test]
fn a_paused_member_commits_with_its_old_generation_and_is_rejected() {
    let sc = scenario("group-zombie-commit");
    for seed in 1..=3 {
        let h = &history_of(&sc, seed);
        // consumer-1 was paused 4s..14s: every commit it sent after resuming carried the
        // generation it held before the pause, and at least one was sent and rejected.
        let newest_before = |t: u64| {
            h.assignments.iter().filter(|a| a.at_ns < t).map(|a| a.generation).max().unwrap_or(-1)
        };
        let stale: Vec<_> = h
            .commits
            .iter()
            .filter(|c| {
                c.member == 1
                    && c.sent_ns >= 14_000_000_000
                    && c.generation < newest_before(c.sent_ns)
            })
            .collect();
        assert!(
            !stale.is_empty(),
            "seed {seed}: the resumed member never committed with its old generation: {:?}",
            h.commits
                .iter()
                .filter(|c| c.member == 1 && c.sent_ns >= 13_000_000_000)
                .take(3)
                .collect::<Vec<_>>()
        );
        for c in &stale {
            let err = c.error.as_deref().unwrap_or("accepted");
            assert!(
                err.contains("UNKNOWN_MEMBER_ID") || err.contains("ILLEGAL_GENERATION"),
                "seed {seed}: stale commit {c:?} ended {err}"
            );
        }
        // And the member came back: it owns partitions again in a later generation.
        let last_gen = h.assignments.iter().map(|a| a.generation).max().unwrap_or(-1);
        assert!(
            h.assignments
                .iter()
                .any(|a| a.member == 1 && a.generation == last_gen && !a.tps.is_empty()),
            "seed {seed}: consumer-1 never rejoined"
        );
    }
}

/// `stall_poll`: consumer-1's application stops 4s..10s between a poll and its commit while its
/// heartbeats go on. Only `max.poll.interval.ms` (3s) can take it out of the group before 10s
/// (its session timeout is 10s, and it never misses a heartbeat), so consumer-0 owning every
/// partition before the stall ends shows the consumer left by itself; the commit it makes when
/// the stall ends is refused, and it rejoins.
#[test]
fn a_member_whose_poll_loop_stalls_leaves_by_max_poll_interval_and_its_commit_is_refused() {
    let sc = scenario("group-poll-stall");
    for seed in 1..=3 {
        let h = &history_of(&sc, seed);
        let (stall_ns, end_ns) = (4_000_000_000u64, 10_000_000_000u64);
        let took_all = h
            .assignments
            .iter()
            .find(|a| a.member == 0 && a.tps.len() == 4 && a.at_ns > stall_ns && a.at_ns < end_ns);
        assert!(
            took_all.is_some(),
            "seed {seed}: consumer-0 never took every partition during the stall: {:?}",
            h.assignments
        );
        let after: Vec<_> =
            h.commits.iter().filter(|c| c.member == 1 && c.sent_ns >= end_ns).collect();
        let first = after
            .first()
            .unwrap_or_else(|| panic!("seed {seed}: consumer-1 never committed after the stall"));
        assert!(first.error.is_some(), "seed {seed}: the stale commit was accepted: {first:?}");
        assert!(
            h.assignments.iter().any(|a| a.member == 1 && a.at_ns > end_ns && !a.tps.is_empty()),
            "seed {seed}: consumer-1 never rejoined"
        );
    }
}
