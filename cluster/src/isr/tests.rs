// Mutation probes, 2026-12-02 (issue 20). Each rule below was broken on purpose in a scratch
// worktree, `cargo test -p cluster` run, the failure seen, the code restored. Lines are
// cluster/src/isr.rs's at the time; "→" names the tests that failed.
//
// High watermark
// - :482 HW may go back: `let advanced = candidate > self.hw` → `candidate != self.hw &&
//   candidate != i64::MIN` → leader_against_model ("HW went back"; reachable only since the
//   model has Op::Restart, a follower restarting with a shorter log),
//   hw_never_goes_back_when_a_follower_restarts_with_a_shorter_log.
// - :468 HW ignores min.insync.replicas (`if … < min_insync_replicas` → `if false`)
//   → leader_against_model.
// - :479 a follower not heard from since the leader started counts as caught up
//   (`None => candidate = i64::MIN` → `None => {}`) → leader_against_model, acks_all_errors,
//   hw_waits_for_every_isr_member_of_a_new_leader, lagging_follower_is_removed_….
// - :499 acks=all completes at HW == last offset (`hw > a.last_offset` → `>=`)
//   → leader_against_model, acks_all_errors.
// - :496 produces keep waiting when the ISR falls below min.insync (no
//   NOT_ENOUGH_REPLICAS_AFTER_APPEND) → leader_against_model, acks_all_errors.
// ISR expansion
// - :366 a follower behind the HW joins (drop `fetch_offset >= self.hw`)
//   → leader_against_model, expansion_needs_hw_and_epoch_start_and_counts_at_once.
// - :367 a follower behind the epoch start joins (drop `fetch_offset >= self.epoch_start_offset`)
//   → leader_against_model.
// - :368 a fenced/shutting-down follower is proposed (drop `!self.ineligible.contains`)
//   → leader_against_model, fenced_follower_is_not_proposed.
// - :262 an addition in flight does not bound the HW (maximal ISR = committed ISR)
//   → leader_against_model, expansion_needs_hw_and_epoch_start_and_counts_at_once.
// ISR shrink
// - :262 a removal counts before the controller committed it (maximal ISR minus the pending
//   shrink) → leader_against_model, lagging_follower_is_removed_only_after_the_lag_time_….
// - :397 removed at exactly the lag time (`> lag_max` → `>= lag_max`)
//   → leader_against_model, lagging_follower_is_removed_only_after_the_lag_time_….
// - :356 caught up only when at the leader's LEO now (drop Kafka's "had all the leader had at
//   its previous fetch" branch) → leader_against_model.
// - :354 every fetch counts as caught up (`if fetch_offset >= leader_leo` → `if true`)
//   → leader_against_model.
// Stale answers
// - :431 metadata of the partition epoch already held is adopted (`<=` → `<`)
//   → leader_against_model, stale_metadata_and_late_answers_are_ignored.
// - :415 an AlterPartition answer with nothing in flight is taken
//   → leader_against_model, stale_metadata_and_late_answers_are_ignored.
// Truncation by leader epoch (truncation_step, EpochCache; the cache's lines are in
// kafka-types/src/epoch.rs, property-tested there too)
// - :610 the follower keeps records past the leader's end of the common epoch
//   (`end.min(leader_end).min(leo)` → `end.min(leo)`) → truncation_finds_the_common_prefix.
// - :614 KIP-101 without KIP-279 (an unknown epoch answers Done at the leader's end, no
//   iteration) → truncation_finds_the_common_prefix, kip_279_example_iterates.
// - kafka-types epoch.rs: a request older than every epoch answers UNDEFINED instead of the
//   first epoch's start (the clamp the follower relies on) → truncation_finds_the_common_prefix.
// - :604 UNDEFINED answer keeps the log instead of a full reset
//   → truncation_finds_the_common_prefix, kip_279_example_iterates.
// - :564 lookup skips the asked epoch (`e.epoch <= epoch` → `<`)
//   → truncation_finds_the_common_prefix, kip_279_example_iterates, epoch_cache_rules.
// - :557 truncate_from_end keeps an entry starting at the cut (`<` → `<=`)
//   → truncation_finds_the_common_prefix (the kept caches), epoch_cache_rules.
// - :540 assign keeps an epoch that wrote nothing (`>=` → `>`) → epoch_cache_rules.
// - :534 assign accepts an older epoch (`epoch <= l.epoch` → `==`) → epoch_cache_rules.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn cfg(min_isr: usize) -> IsrConfig {
    IsrConfig {
        replica_lag_time_max_ms: 100,
        min_insync_replicas: min_isr,
        pending_acks_max: 64,
        unsafe_hw_may_fall: false,
    }
}

fn leader(min_isr: usize, isr: Vec<ReplicaId>, leo: i64) -> LeaderState {
    LeaderState::new(
        cfg(min_isr),
        LeaderStart {
            leader: 0,
            leader_epoch: 5,
            partition_epoch: 7,
            replicas: vec![0, 1, 2],
            isr,
            leo,
            hw: 0,
        },
        1_000,
    )
}

#[test]
fn hw_waits_for_every_isr_member_of_a_new_leader() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    assert_eq!(s.high_watermark(), 0, "followers have not reported yet");
    assert!(!s.on_follower_fetch(1, 10, 1_001).unwrap().hw_advanced);
    assert!(s.on_follower_fetch(2, 8, 1_001).unwrap().hw_advanced);
    assert_eq!(s.high_watermark(), 8);
    assert_eq!(
        s.on_follower_fetch(2, 11, 1_002),
        Err(FetchError::OffsetOutOfRange { fetch_offset: 11, leader_leo: 10 })
    );
    assert_eq!(s.on_follower_fetch(9, 1, 1_002), Err(FetchError::UnknownReplica(9)));
}

#[test]
fn delete_records_waits_for_every_isr_follower_log_start() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    assert_eq!(s.low_watermark(6), None, "followers have not reported");
    s.await_log_start(1, 6).unwrap();
    s.on_follower_log_start(1, 6);
    assert!(s.take_completed().is_empty(), "follower 2 has not moved yet");
    s.on_follower_log_start(2, 5);
    assert!(s.take_completed().is_empty(), "5 < 6");
    assert_eq!(s.low_watermark(6), Some(5));
    s.on_follower_log_start(2, 6);
    assert_eq!(s.take_completed(), vec![(1, Ok(()))]);
    // Already there: at once. A leader that resigns fails what still waits.
    s.await_log_start(2, 6).unwrap();
    assert_eq!(s.take_completed(), vec![(2, Ok(()))]);
    s.await_log_start(3, 9).unwrap();
    assert_eq!(s.resign(), vec![(3, Err(ProduceError::NotLeaderOrFollower))]);
    // A follower out of the ISR is not waited for.
    let mut s = leader(1, vec![0, 1], 10);
    s.on_follower_log_start(1, 4);
    s.await_log_start(4, 4).unwrap();
    assert_eq!(s.take_completed(), vec![(4, Ok(()))]);
}

#[test]
fn lagging_follower_is_removed_only_after_the_lag_time_and_counts_until_committed() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    s.on_follower_fetch(1, 10, 1_000).unwrap();
    s.on_follower_fetch(2, 4, 1_000).unwrap();
    assert_eq!(s.high_watermark(), 4);
    assert_eq!(s.maybe_shrink(1_100), None, "exactly the lag time is still in sync");
    s.on_follower_fetch(1, 10, 1_101).unwrap();
    let p = s.maybe_shrink(1_101).expect("replica 2 lags");
    assert_eq!(s.maximal_isr().len(), 3, "a removal counts only once committed");
    s.on_leader_append(12);
    s.on_follower_fetch(1, 12, 1_102).unwrap();
    assert_eq!(
        s.high_watermark(),
        4,
        "replica 2 still bounds the HW while the shrink is in flight"
    );
    assert_eq!(
        p,
        IsrChange { leader: 0, leader_epoch: 5, partition_epoch: 7, new_isr: vec![0, 1] }
    );
    assert_eq!(s.maybe_shrink(1_200), None, "one change in flight at a time");
    assert_eq!(s.high_watermark(), 4, "the shrink is not committed yet");
    assert!(s.on_alter_partition_response(AlterPartitionResponse::Committed {
        isr: vec![0, 1],
        partition_epoch: 8
    }));
    assert_eq!(s.high_watermark(), 12);
    assert_eq!(s.isr(), vec![0, 1]);
}

/// A follower that restarts with a shorter log (it lost an unflushed tail) reports a LEO below
/// the HW: the HW stays where it is — consumers may already have read up to it.
#[test]
fn hw_never_goes_back_when_a_follower_restarts_with_a_shorter_log() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    s.on_follower_fetch(1, 10, 1_001).unwrap();
    s.on_follower_fetch(2, 10, 1_001).unwrap();
    assert_eq!(s.high_watermark(), 10);
    s.on_leader_append(12);
    let out = s.on_follower_fetch(2, 6, 1_002).unwrap();
    assert!(!out.hw_advanced);
    assert_eq!(s.high_watermark(), 10, "HW went back");
    s.on_follower_fetch(1, 12, 1_003).unwrap();
    assert_eq!(s.high_watermark(), 10, "replica 2 at 6 holds the HW still");
    assert!(s.on_follower_fetch(2, 11, 1_004).unwrap().hw_advanced);
    assert_eq!(s.high_watermark(), 11);
}

/// The museum switch `unsafe_hw_may_fall` (`loglab.unsafe.zombie.fencing.disable`): the same
/// shorter report as above drags the HW back, and it rises again as the member catches up.
#[test]
fn with_the_museum_switch_the_hw_falls_to_what_the_isr_reports() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    s.config.unsafe_hw_may_fall = true;
    s.on_follower_fetch(1, 10, 1_001).unwrap();
    s.on_follower_fetch(2, 10, 1_001).unwrap();
    assert_eq!(s.high_watermark(), 10);
    s.on_leader_append(12);
    let out = s.on_follower_fetch(2, 6, 1_002).unwrap();
    assert!(!out.hw_advanced);
    assert_eq!(s.high_watermark(), 6, "the HW follows the shorter report down");
    s.on_follower_fetch(1, 12, 1_003).unwrap();
    assert!(s.on_follower_fetch(2, 11, 1_004).unwrap().hw_advanced);
    assert_eq!(s.high_watermark(), 11);
}

/// Metadata of a partition epoch the leader already has, and an answer with nothing in flight,
/// change nothing; newer metadata wins over the proposal in flight.
#[test]
fn stale_metadata_and_late_answers_are_ignored() {
    let mut s = leader(1, vec![0, 1], 10);
    s.on_follower_fetch(1, 10, 1_001).unwrap();
    assert!(!s.on_metadata_isr(vec![0], 7), "same partition epoch");
    assert!(!s.on_metadata_isr(vec![0], 6), "older partition epoch");
    assert_eq!((s.isr(), s.partition_epoch()), (vec![0, 1], 7));
    assert!(!s.on_alter_partition_response(AlterPartitionResponse::Committed {
        isr: vec![0],
        partition_epoch: 9
    }));
    assert_eq!((s.isr(), s.partition_epoch()), (vec![0, 1], 7));
    let p = s.on_follower_fetch(2, 10, 1_002).unwrap().propose.expect("2 caught up");
    assert_eq!(p.new_isr, vec![0, 1, 2]);
    s.on_metadata_isr(vec![0], 8);
    assert_eq!((s.isr(), s.partition_epoch(), s.in_flight()), (vec![0], 8, None));
    assert!(
        !s.on_alter_partition_response(AlterPartitionResponse::Committed {
            isr: p.new_isr,
            partition_epoch: 8
        }),
        "the superseded proposal's answer"
    );
    assert_eq!(s.isr(), vec![0]);
}

#[test]
fn expansion_needs_hw_and_epoch_start_and_counts_at_once() {
    let mut s = leader(1, vec![0], 10);
    assert_eq!(s.high_watermark(), 10);
    let out = s.on_follower_fetch(1, 9, 1_001).unwrap();
    assert_eq!(out.propose, None, "below the HW and the epoch start");
    s.on_leader_append(15);
    assert_eq!(
        s.on_follower_fetch(1, 12, 1_002).unwrap().propose,
        None,
        "below the HW (ISR is the leader alone)"
    );
    let out = s.on_follower_fetch(1, 15, 1_003).unwrap();
    assert_eq!(out.propose.unwrap().new_isr, vec![0, 1]);
    assert_eq!(s.maximal_isr().into_iter().collect::<Vec<_>>(), vec![0, 1]);
    assert!(!s.on_leader_append(16), "the pending member bounds the HW at once");
    assert_eq!(s.high_watermark(), 15);
    s.on_alter_partition_response(AlterPartitionResponse::Rejected);
    assert_eq!(s.isr(), vec![0]);
    assert_eq!(s.high_watermark(), 16);
}

#[test]
fn fenced_follower_is_not_proposed() {
    let mut s = leader(1, vec![0], 10);
    s.set_ineligible_replicas([1].into_iter().collect());
    assert_eq!(s.on_follower_fetch(1, 10, 1_001).unwrap().propose, None);
    s.set_ineligible_replicas(BTreeSet::new());
    assert!(s.on_follower_fetch(1, 10, 1_002).unwrap().propose.is_some());
}

#[test]
fn acks_all_errors() {
    let s = leader(2, vec![0], 10);
    assert_eq!(s.check_produce(), Err(ProduceError::NotEnoughReplicas));
    let mut s = leader(2, vec![0, 1], 10);
    s.on_follower_fetch(1, 10, 1_000).unwrap();
    s.check_produce().unwrap();
    s.on_leader_append(12);
    s.await_ack(1, 11).unwrap();
    assert_eq!(s.take_completed(), vec![]);
    s.on_metadata_isr(vec![0], 8);
    assert_eq!(s.take_completed(), vec![(1, Err(ProduceError::NotEnoughReplicasAfterAppend))]);
    let mut s = leader(2, vec![0, 1], 10);
    s.on_leader_append(12);
    s.await_ack(3, 11).unwrap();
    s.on_follower_fetch(1, 11, 1_000).unwrap();
    assert_eq!(s.take_completed(), vec![]);
    s.on_follower_fetch(1, 12, 1_000).unwrap();
    assert_eq!(s.take_completed(), vec![(3, Ok(()))]);
    s.await_ack(4, 11).unwrap();
    assert_eq!(s.take_completed(), vec![(4, Ok(()))], "already below the HW");
    s.on_leader_append(13);
    s.await_ack(5, 12).unwrap();
    assert_eq!(s.resign(), vec![(5, Err(ProduceError::NotLeaderOrFollower))]);
}

#[derive(Debug, Clone)]
enum Op {
    Append(i64),
    Fetch(usize, i64),
    /// Follower `r` restarts having lost the last `n` records of its log (written, not yet
    /// flushed when its power went), then fetches from its shorter log end. Its LEO goes back,
    /// possibly below the HW: the one way a maximal-ISR member's LEO drops under the HW.
    Restart(usize, i64),
    Time(u64),
    Shrink,
    Respond(bool),
    Produce(u8),
    ControllerRemoves(usize),
    /// Metadata says the followers in the mask (bits 1..=3) are fenced or shutting down.
    Ineligible(u8),
    /// A metadata update for the partition epoch the leader already has (replayed, or from a
    /// controller that lost its leadership), with follower `r` toggled in the ISR: ignored.
    StaleMetadata(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1i64..5).prop_map(Op::Append),
        6 => (1usize..4, 0i64..6).prop_map(|(r, k)| Op::Fetch(r, k)),
        2 => (1usize..4, 1i64..8).prop_map(|(r, n)| Op::Restart(r, n)),
        2 => (0u64..80).prop_map(Op::Time),
        2 => Just(Op::Shrink),
        2 => any::<bool>().prop_map(Op::Respond),
        3 => (1u8..4).prop_map(Op::Produce),
        1 => (1usize..4).prop_map(Op::ControllerRemoves),
        1 => prop_oneof![3 => Just(0u8), 1 => any::<u8>()].prop_map(Op::Ineligible),
        1 => (1usize..4).prop_map(Op::StaleMetadata),
    ]
}

/// The model's view of one follower: what it holds and what it told the leader.
#[derive(Debug, Clone, Default)]
struct ModelFollower {
    /// Its log end offset.
    actual: i64,
    /// The last LEO it reported to this leader (`None` before its first fetch).
    reported: Option<i64>,
    /// The largest LEO it ever reported to this leader.
    peak: i64,
    /// Its LEO went back (a restart with a shorter log) after it had reported.
    lost_tail: bool,
    /// Kafka's caught-up bookkeeping, restated: last time it had all the leader had.
    caught_up_ms: u64,
    last_fetch_ms: u64,
    leader_leo_at_last_fetch: i64,
}

impl ModelFollower {
    /// A fetch from `offset` (its LEO) at `now` while the leader's LEO is `leader_leo`.
    fn fetch(&mut self, offset: i64, leader_leo: i64, now: u64) {
        if offset >= leader_leo {
            self.caught_up_ms = self.caught_up_ms.max(now);
        } else if self.reported.is_some() && offset >= self.leader_leo_at_last_fetch {
            self.caught_up_ms = self.caught_up_ms.max(self.last_fetch_ms);
        }
        self.reported = Some(offset);
        self.peak = self.peak.max(offset);
        self.last_fetch_ms = now;
        self.leader_leo_at_last_fetch = leader_leo;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: crate::proptest_cases(256), ..ProptestConfig::default() })]

    /// The leader against a model: follower LEOs (which may go back when a follower restarts with
    /// a shorter log), the committed ISR and the AlterPartition in flight, the exact HW (the
    /// largest min-LEO over the maximal ISR seen so far, frozen below min.insync), which followers
    /// a shrink must remove and an expansion may add, and every produce's fate.
    #[test]
    fn leader_against_model(
        min_isr in 1usize..4,
        initial_isr in proptest::collection::btree_set(1i32..4, 0..4),
        leo0 in 0i64..5,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let replicas = vec![0, 1, 2, 3];
        let mut isr: Vec<ReplicaId> = std::iter::once(0).chain(initial_isr).collect();
        isr.sort();
        let mut s = LeaderState::new(cfg(min_isr), LeaderStart { leader: 0, leader_epoch: 3, partition_epoch: 0, replicas, isr: isr.clone(), leo: leo0, hw: 0 }, 0);
        let mut now = 0u64;
        let mut leader_leo = leo0;
        let mut followers: BTreeMap<ReplicaId, ModelFollower> = (1..4).map(|r| (r, ModelFollower::default())).collect();
        let mut model_isr: BTreeSet<ReplicaId> = isr.into_iter().collect();
        // The AlterPartition in flight, and the replica it adds if it is an expansion.
        let mut in_flight: Option<(IsrChange, Option<ReplicaId>)> = None;
        let mut ineligible: BTreeSet<ReplicaId> = BTreeSet::new();
        let mut pe = 0;
        let mut hw = s.high_watermark();
        // A new leader's HW waits for every ISR follower to report; alone, it is its own LEO.
        let alone = model_isr.len() == 1 && min_isr == 1;
        prop_assert_eq!(hw, if alone { leo0 } else { 0 });
        let mut waiting: BTreeMap<u64, i64> = BTreeMap::new();
        let mut next_id = 0u64;
        for op in ops {
            // A fetch by `r` at its current LEO, checked against the expansion rule.
            let fetch = |s: &mut LeaderState, followers: &mut BTreeMap<ReplicaId, ModelFollower>, in_flight: &mut Option<(IsrChange, Option<ReplicaId>)>, r: ReplicaId| -> Result<(), TestCaseError> {
                let f = followers.get_mut(&r).unwrap();
                let a = f.actual;
                let out = s.on_follower_fetch(r, a, now).unwrap();
                f.fetch(a, leader_leo, now);
                let may_join = in_flight.is_none() && !model_isr.contains(&r) && a >= hw && a >= leo0 && !ineligible.contains(&r);
                match out.propose {
                    Some(p) => {
                        prop_assert!(may_join, "expansion of {} at {} (HW {}, epoch start {}, ISR {:?}, in flight {:?}, ineligible {:?})", r, a, hw, leo0, model_isr, in_flight, ineligible);
                        let mut want: BTreeSet<ReplicaId> = model_isr.clone();
                        want.insert(r);
                        prop_assert_eq!(&p, &IsrChange { leader: 0, leader_epoch: 3, partition_epoch: pe, new_isr: want.into_iter().collect() });
                        *in_flight = Some((p, Some(r)));
                    }
                    None => prop_assert!(!may_join, "{} at {} may join (HW {}) but was not proposed", r, a, hw),
                }
                Ok(())
            };
            match op {
                Op::Append(n) => { leader_leo += n; s.on_leader_append(leader_leo); }
                Op::Fetch(r, k) => {
                    let r = r as ReplicaId;
                    let f = followers.get_mut(&r).unwrap();
                    f.actual = (f.actual + k).min(leader_leo);
                    fetch(&mut s, &mut followers, &mut in_flight, r)?;
                }
                Op::Restart(r, n) => {
                    let r = r as ReplicaId;
                    let f = followers.get_mut(&r).unwrap();
                    f.actual = (f.actual - n).max(0);
                    if f.reported.is_some_and(|o| f.actual < o) {
                        f.lost_tail = true;
                    }
                    fetch(&mut s, &mut followers, &mut in_flight, r)?;
                }
                Op::Time(dt) => now += dt,
                Op::Shrink => {
                    let lagging: BTreeSet<ReplicaId> = model_isr.iter().copied()
                        .filter(|r| *r != 0 && now.saturating_sub(followers[r].caught_up_ms) > 100)
                        .collect();
                    match s.maybe_shrink(now) {
                        Some(p) => {
                            prop_assert!(in_flight.is_none(), "a second AlterPartition while {:?} is in flight", in_flight);
                            prop_assert!(!lagging.is_empty());
                            let want: Vec<ReplicaId> = model_isr.difference(&lagging).copied().collect();
                            prop_assert_eq!(&p, &IsrChange { leader: 0, leader_epoch: 3, partition_epoch: pe, new_isr: want }, "shrink must remove exactly the lagging {:?}", lagging);
                            in_flight = Some((p, None));
                        }
                        None => prop_assert!(in_flight.is_some() || lagging.is_empty(), "lagging {:?} not removed at {}", lagging, now),
                    }
                }
                Op::Respond(commit) => {
                    if let Some((p, _)) = in_flight.take() {
                        if commit {
                            pe += 1;
                            model_isr = p.new_isr.iter().copied().collect();
                            s.on_alter_partition_response(AlterPartitionResponse::Committed { isr: p.new_isr, partition_epoch: pe });
                        } else {
                            s.on_alter_partition_response(AlterPartitionResponse::Rejected);
                        }
                    } else {
                        // A late duplicate answer: metadata carries the truth, nothing changes.
                        let late = AlterPartitionResponse::Committed { isr: vec![0], partition_epoch: pe + 1 };
                        let late = if commit { late } else { AlterPartitionResponse::Rejected };
                        prop_assert!(!s.on_alter_partition_response(late), "an answer with nothing in flight was taken");
                    }
                }
                Op::Produce(n) => {
                    match s.check_produce() {
                        Ok(()) => {
                            prop_assert!(model_isr.len() >= min_isr, "produce accepted with ISR {:?} below min.insync {}", model_isr, min_isr);
                            leader_leo += i64::from(n);
                            s.on_leader_append(leader_leo);
                            next_id += 1;
                            s.await_ack(next_id, leader_leo - 1).unwrap();
                            waiting.insert(next_id, leader_leo - 1);
                        }
                        Err(e) => {
                            prop_assert_eq!(e, ProduceError::NotEnoughReplicas);
                            prop_assert!(model_isr.len() < min_isr);
                        }
                    }
                }
                Op::ControllerRemoves(r) => {
                    let r = r as ReplicaId;
                    if model_isr.contains(&r) {
                        model_isr.remove(&r);
                        pe += 1;
                        in_flight = None; // newer metadata supersedes the proposal
                        s.on_metadata_isr(model_isr.iter().copied().collect(), pe);
                    }
                }
                Op::StaleMetadata(r) => {
                    let r = r as ReplicaId;
                    let mut stale = model_isr.clone();
                    if !stale.remove(&r) {
                        stale.insert(r);
                    }
                    prop_assert!(!s.on_metadata_isr(stale.into_iter().collect(), pe), "metadata of partition epoch {} applied twice", pe);
                }
                Op::Ineligible(mask) => {
                    ineligible = (1..4).filter(|r| mask & (1 << r) != 0).collect();
                    s.set_ineligible_replicas(ineligible.clone());
                }
            }
            prop_assert_eq!(s.isr(), model_isr.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(s.partition_epoch(), pe);
            prop_assert_eq!(s.in_flight(), in_flight.as_ref().map(|(p, _)| p));
            // The maximal ISR: the committed one plus an addition in flight (a removal counts
            // only once committed).
            let mut maximal = model_isr.clone();
            if let Some((_, Some(r))) = &in_flight {
                maximal.insert(*r);
            }
            prop_assert_eq!(&s.maximal_isr(), &maximal);
            let new_hw = s.high_watermark();
            prop_assert!(new_hw >= hw, "HW went back from {} to {}", hw, new_hw);
            let mut want_hw = hw;
            if maximal.len() >= min_isr {
                let candidate = maximal.iter().filter(|r| **r != 0)
                    .map(|r| followers[r].reported.unwrap_or(i64::MIN))
                    .fold(leader_leo, i64::min);
                want_hw = want_hw.max(candidate);
            }
            prop_assert_eq!(new_hw, want_hw, "HW (maximal ISR {:?}, followers {:?}, leader LEO {})", maximal, followers, leader_leo);
            if new_hw > hw {
                prop_assert!(maximal.len() >= min_isr, "HW advanced with ISR {:?} below min.insync {}", maximal, min_isr);
            }
            prop_assert!(new_hw <= leader_leo);
            hw = new_hw;
            for r in maximal.iter().filter(|r| **r != 0) {
                let f = &followers[r];
                prop_assert!(f.peak >= hw, "HW {} above anything ISR member {} ever held ({:?})", hw, r, f);
                if !f.lost_tail {
                    prop_assert!(f.reported.unwrap_or(0) >= hw, "HW {} above ISR member {}'s LEO", hw, r);
                }
            }
            for (id, result) in s.take_completed() {
                let last = waiting.remove(&id).expect("completed twice or unknown");
                match result {
                    Ok(()) => {
                        prop_assert!(maximal.len() >= min_isr);
                        prop_assert!(hw > last, "acked {} with HW {}", last, hw);
                        for r in maximal.iter().filter(|r| **r != 0) {
                            let leo = followers[r].reported.unwrap_or(i64::MIN);
                            prop_assert!(leo > last, "acked {} but ISR member {} is at {}", last, r, leo);
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, ProduceError::NotEnoughReplicasAfterAppend);
                        prop_assert!(maximal.len() < min_isr);
                    }
                }
            }
            // Whatever is still waiting is waiting for a reason.
            for (id, last) in &waiting {
                prop_assert!(maximal.len() >= min_isr && *last >= hw, "produce {} ending at {} still waits (HW {}, maximal ISR {:?})", id, last, hw, maximal);
            }
        }
        // Liveness: once every follower caught up and the controller answered each expansion,
        // nothing waits.
        for _ in 0..4 {
            if let Some(p) = s.in_flight().cloned() {
                pe += 1;
                s.on_alter_partition_response(AlterPartitionResponse::Committed { isr: p.new_isr, partition_epoch: pe });
            }
            s.set_ineligible_replicas(BTreeSet::new());
            for r in 1..4 {
                s.on_follower_fetch(r, leader_leo, now).unwrap();
            }
        }
        prop_assert_eq!(s.high_watermark(), leader_leo);
        prop_assert_eq!(s.isr(), vec![0, 1, 2, 3], "every caught-up follower rejoined");
        for (id, _) in s.take_completed() {
            waiting.remove(&id);
        }
        prop_assert!(waiting.is_empty(), "produces never completed: {:?}", waiting);
    }
}

// ---- follower truncation (KIP-101/279) ----

/// A log as the epoch of each offset.
fn cache_of(log: &[i32]) -> EpochCache {
    let mut c = EpochCache::default();
    for (o, e) in log.iter().enumerate() {
        c.assign(*e, o as i64);
    }
    c
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Runs the OffsetForLeaderEpoch exchange to its end; returns the truncation offset.
fn truncate_against(follower: &[i32], leader: &[i32]) -> i64 {
    exchange(&cache_of(follower), follower.len() as i64, &cache_of(leader), leader.len() as i64)
}

/// The exchange between a follower with epoch cache `fc` and log end `f_leo` and a leader with
/// `lc` and `l_leo`: the offset the follower ends up truncating to.
fn exchange(fc: &EpochCache, f_leo: i64, lc: &EpochCache, l_leo: i64) -> i64 {
    let Some(mut ask) = fc.latest().map(|e| e.epoch) else {
        return 0;
    };
    let mut leo = f_leo;
    for _ in 0..1_000 {
        let answer = match lc.end_offset_for(ask, l_leo) {
            Some((epoch, end_offset)) => LeaderEpochAnswer::Found { epoch, end_offset },
            None => LeaderEpochAnswer::Undefined,
        };
        let mut trimmed = fc.clone();
        trimmed.truncate_from_end(leo);
        match truncation_step(&trimmed, leo, answer) {
            Truncation::Done { offset } => return offset,
            Truncation::Reset => return 0,
            Truncation::AskAgain { offset, epoch } => {
                assert!(epoch < ask, "KIP-279 iteration must go to older epochs");
                assert!(offset <= leo, "an iteration must not grow the log");
                leo = offset;
                ask = epoch;
            }
        }
    }
    panic!("truncation did not converge");
}

#[derive(Debug, Clone)]
enum H {
    Elect(usize),
    Append(usize),
    Sync(usize, usize),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: crate::proptest_cases(256), ..ProptestConfig::default() })]

    /// Logs built by a history of leaders (clean or unclean) appending and followers copying:
    /// the exchange truncates exactly to the common prefix — never below it (that would drop
    /// records a later leader committed), never above it (divergent records would stay).
    /// Every replica also keeps its epoch cache as a broker does (an entry per appended epoch,
    /// trimmed at truncation) and syncs by running the exchange on it: the kept cache always
    /// equals the one rebuilt from its log.
    #[test]
    fn truncation_finds_the_common_prefix(
        hist in proptest::collection::vec(prop_oneof![
            1 => (0usize..3).prop_map(H::Elect),
            3 => (1usize..4).prop_map(H::Append),
            3 => (0usize..3, 0usize..100).prop_map(|(f, k)| H::Sync(f, k)),
        ], 1..60),
    ) {
        let mut logs: Vec<Vec<i32>> = vec![vec![]; 3];
        let mut caches: Vec<EpochCache> = vec![EpochCache::default(); 3];
        let (mut epoch, mut lead) = (0, 0);
        for h in hist {
            match h {
                H::Elect(r) => { epoch += 1; lead = r; }
                H::Append(n) => {
                    for _ in 0..n {
                        let o = logs[lead].len() as i64;
                        logs[lead].push(epoch);
                        caches[lead].assign(epoch, o);
                    }
                }
                H::Sync(f, k) => {
                    let l = logs[lead].clone();
                    let lcp = common_prefix(&logs[f], &l);
                    let t = exchange(&caches[f], logs[f].len() as i64, &caches[lead], l.len() as i64);
                    prop_assert_eq!(t, lcp as i64, "follower {:?} (cache {:?}) leader {:?}", logs[f], caches[f], l);
                    logs[f].truncate(lcp);
                    caches[f].truncate_from_end(t);
                    let k = lcp + k % (l.len() - lcp + 1);
                    for (o, e) in l.iter().enumerate().take(k).skip(lcp) {
                        logs[f].push(*e);
                        caches[f].assign(*e, o as i64);
                    }
                }
            }
            for f in 0..3 {
                prop_assert_eq!(&caches[f], &cache_of(&logs[f]), "replica {}'s kept epoch cache", f);
                let t = truncate_against(&logs[f], &logs[lead]);
                prop_assert_eq!(t, common_prefix(&logs[f], &logs[lead]) as i64, "follower {:?} leader {:?}", logs[f], logs[lead]);
            }
        }
    }
}

/// The cache's rules, each in the direction that matters: a newer epoch starting at or before
/// the latest entry's start replaces it (that epoch's records were truncated away), an older or
/// equal epoch is refused, truncation drops entries from the cut on, lookups go by epoch.
#[test]
fn epoch_cache_rules() {
    let mut c = EpochCache::default();
    assert!(c.assign(1, 0));
    assert!(c.assign(3, 5));
    assert!(!c.assign(3, 7), "same epoch does not move");
    assert!(!c.assign(2, 9), "an older epoch is refused");
    assert!(c.assign(4, 5), "an epoch that wrote nothing is replaced");
    let e = |epoch, start_offset| EpochEntry { epoch, start_offset };
    assert_eq!(c.entries(), &[e(1, 0), e(4, 5)]);
    assert!(c.assign(5, 8));
    assert_eq!(c.end_offset_for(4, 10), Some((4, 8)));
    assert_eq!(c.end_offset_for(3, 10), Some((1, 5)), "3 is unknown here: the epoch before it");
    assert_eq!(c.end_offset_for(5, 10), Some((5, 10)), "the latest epoch ends at the log end");
    assert_eq!(c.end_offset_for(0, 10), Some((0, 0)), "older than all: where the first starts");
    assert!(!c.truncate_from_end(9), "the cut is after the last start");
    assert!(c.truncate_from_end(8), "an entry starting at the cut has no records left");
    assert_eq!(c.entries(), &[e(1, 0), e(4, 5)]);
    assert!(!c.assign(2, 5));
    assert!(c.assign(6, 3), "a newer epoch starting before the latest entries replaces them");
    assert_eq!(c.entries(), &[e(1, 0), e(6, 3)]);
}

#[test]
fn kip_279_example_iterates() {
    // Follower: epochs 1 (0..2), 3 (2..4). Leader: epochs 1 (0..2), 2 (2..5).
    let follower = [1, 1, 3, 3];
    let leader = [1, 1, 2, 2, 2];
    let fc = cache_of(&follower);
    let lc = cache_of(&leader);
    let (e, end) = lc.end_offset_for(3, 5).unwrap();
    assert_eq!((e, end), (2, 5));
    assert_eq!(
        truncation_step(&fc, 4, LeaderEpochAnswer::Found { epoch: e, end_offset: end }),
        Truncation::AskAgain { offset: 2, epoch: 1 }
    );
    assert_eq!(truncate_against(&follower, &leader), 2);
    assert_eq!(truncation_step(&fc, 4, LeaderEpochAnswer::Undefined), Truncation::Reset);
}
