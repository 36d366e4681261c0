use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn cfg(min_isr: usize) -> IsrConfig {
    IsrConfig {
        replica_lag_time_max_ms: 100,
        min_insync_replicas: min_isr,
        pending_acks_max: 64,
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
        Err(FetchError::OffsetOutOfRange {
            fetch_offset: 11,
            leader_leo: 10
        })
    );
    assert_eq!(
        s.on_follower_fetch(9, 1, 1_002),
        Err(FetchError::UnknownReplica(9))
    );
}

#[test]
fn lagging_follower_is_removed_only_after_the_lag_time_and_counts_until_committed() {
    let mut s = leader(1, vec![0, 1, 2], 10);
    s.on_follower_fetch(1, 10, 1_000).unwrap();
    s.on_follower_fetch(2, 4, 1_000).unwrap();
    assert_eq!(s.high_watermark(), 4);
    assert_eq!(
        s.maybe_shrink(1_100),
        None,
        "exactly the lag time is still in sync"
    );
    s.on_follower_fetch(1, 10, 1_101).unwrap();
    let p = s.maybe_shrink(1_101).expect("replica 2 lags");
    assert_eq!(
        p,
        IsrChange {
            leader: 0,
            leader_epoch: 5,
            partition_epoch: 7,
            new_isr: vec![0, 1]
        }
    );
    assert_eq!(
        s.maybe_shrink(1_200),
        None,
        "one change in flight at a time"
    );
    assert_eq!(s.high_watermark(), 4, "the shrink is not committed yet");
    assert!(
        s.on_alter_partition_response(AlterPartitionResponse::Committed {
            isr: vec![0, 1],
            partition_epoch: 8
        })
    );
    assert_eq!(s.high_watermark(), 10);
    assert_eq!(s.isr(), vec![0, 1]);
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
    assert!(
        !s.on_leader_append(16),
        "the pending member bounds the HW at once"
    );
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
    assert_eq!(
        s.take_completed(),
        vec![(1, Err(ProduceError::NotEnoughReplicasAfterAppend))]
    );
    let mut s = leader(2, vec![0, 1], 10);
    s.on_leader_append(12);
    s.await_ack(3, 11).unwrap();
    s.on_follower_fetch(1, 11, 1_000).unwrap();
    assert_eq!(s.take_completed(), vec![]);
    s.on_follower_fetch(1, 12, 1_000).unwrap();
    assert_eq!(s.take_completed(), vec![(3, Ok(()))]);
    s.await_ack(4, 11).unwrap();
    assert_eq!(
        s.take_completed(),
        vec![(4, Ok(()))],
        "already below the HW"
    );
    s.on_leader_append(13);
    s.await_ack(5, 12).unwrap();
    assert_eq!(
        s.resign(),
        vec![(5, Err(ProduceError::NotLeaderOrFollower))]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(i64),
    Fetch(usize, i64),
    Time(u64),
    Shrink,
    Respond(bool),
    Produce(u8),
    ControllerRemoves(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1i64..5).prop_map(Op::Append),
        6 => (1usize..4, 0i64..6).prop_map(|(r, k)| Op::Fetch(r, k)),
        2 => (0u64..80).prop_map(Op::Time),
        2 => Just(Op::Shrink),
        2 => any::<bool>().prop_map(Op::Respond),
        3 => (1u8..4).prop_map(Op::Produce),
        1 => (1usize..4).prop_map(Op::ControllerRemoves),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The leader against a model: reported follower LEOs, the committed ISR, the produces.
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
        let mut reported: BTreeMap<ReplicaId, i64> = BTreeMap::new();
        let mut actual: BTreeMap<ReplicaId, i64> = (1..4).map(|r| (r, 0)).collect();
        let mut model_isr: BTreeSet<ReplicaId> = isr.into_iter().collect();
        let mut pe = 0;
        let mut hw = s.high_watermark();
        let mut waiting: BTreeMap<u64, i64> = BTreeMap::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                Op::Append(n) => { leader_leo += n; s.on_leader_append(leader_leo); }
                Op::Fetch(r, k) => {
                    let r = r as ReplicaId;
                    let a = actual.get_mut(&r).unwrap();
                    *a = (*a + k).min(leader_leo);
                    let out = s.on_follower_fetch(r, *a, now).unwrap();
                    reported.insert(r, *a);
                    if let Some(p) = out.propose {
                        prop_assert!(!model_isr.contains(&r));
                        prop_assert!(*a >= hw && *a >= leo0, "expansion of a replica behind HW or epoch start");
                        prop_assert_eq!(p.partition_epoch, pe);
                        prop_assert!(p.new_isr.contains(&0) && p.new_isr.contains(&r));
                    }
                }
                Op::Time(dt) => now += dt,
                Op::Shrink => {
                    if let Some(p) = s.maybe_shrink(now) {
                        prop_assert!(p.new_isr.contains(&0));
                        prop_assert!(p.new_isr.len() < model_isr.len());
                        for r in model_isr.iter().filter(|r| !p.new_isr.contains(r)) {
                            prop_assert!(now - s.follower(*r).unwrap().last_caught_up_ms > 100);
                        }
                    }
                }
                Op::Respond(commit) => {
                    if let Some(p) = s.in_flight().cloned() {
                        if commit {
                            pe += 1;
                            model_isr = p.new_isr.iter().copied().collect();
                            s.on_alter_partition_response(AlterPartitionResponse::Committed { isr: p.new_isr, partition_epoch: pe });
                        } else {
                            s.on_alter_partition_response(AlterPartitionResponse::Rejected);
                        }
                    }
                }
                Op::Produce(n) => {
                    match s.check_produce() {
                        Ok(()) => {
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
                        s.on_metadata_isr(model_isr.iter().copied().collect(), pe);
                    }
                }
            }
            prop_assert_eq!(s.isr(), model_isr.iter().copied().collect::<Vec<_>>());
            let maximal = s.maximal_isr();
            prop_assert!(model_isr.is_subset(&maximal) && maximal.len() <= model_isr.len() + 1);
            let new_hw = s.high_watermark();
            prop_assert!(new_hw >= hw, "HW went back from {} to {}", hw, new_hw);
            if new_hw > hw {
                prop_assert!(maximal.len() >= min_isr, "HW advanced with ISR {:?} below min.insync {}", maximal, min_isr);
            }
            prop_assert!(new_hw <= leader_leo);
            hw = new_hw;
            for r in maximal.iter().filter(|r| **r != 0) {
                prop_assert!(reported.get(r).copied().unwrap_or(0) >= hw, "HW {} above ISR member {}'s LEO", hw, r);
            }
            for (id, result) in s.take_completed() {
                let last = waiting.remove(&id).expect("completed twice or unknown");
                match result {
                    Ok(()) => {
                        prop_assert!(maximal.len() >= min_isr);
                        for r in maximal.iter().filter(|r| **r != 0) {
                            prop_assert!(reported[r] > last, "acked {} but ISR member {} is at {}", last, r, reported[r]);
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, ProduceError::NotEnoughReplicasAfterAppend);
                        prop_assert!(maximal.len() < min_isr);
                    }
                }
            }
        }
        // Liveness: once every follower caught up and the controller answered each expansion,
        // nothing waits.
        for _ in 0..4 {
            if let Some(p) = s.in_flight().cloned() {
                pe += 1;
                s.on_alter_partition_response(AlterPartitionResponse::Committed { isr: p.new_isr, partition_epoch: pe });
            }
            for r in 1..4 {
                s.on_follower_fetch(r, leader_leo, now).unwrap();
            }
        }
        prop_assert_eq!(s.high_watermark(), leader_leo);
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
    let (fc, lc) = (cache_of(follower), cache_of(leader));
    let Some(mut ask) = fc.latest().map(|e| e.epoch) else {
        return 0;
    };
    let mut leo = follower.len() as i64;
    for _ in 0..1_000 {
        let answer = match lc.end_offset_for(ask, leader.len() as i64) {
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
    /// Logs built by a history of leaders (clean or unclean) appending and followers copying:
    /// the exchange truncates exactly to the common prefix — never below it (that would drop
    /// records a later leader committed), never above it (divergent records would stay).
    #[test]
    fn truncation_finds_the_common_prefix(
        hist in proptest::collection::vec(prop_oneof![
            1 => (0usize..3).prop_map(H::Elect),
            3 => (1usize..4).prop_map(H::Append),
            3 => (0usize..3, 0usize..100).prop_map(|(f, k)| H::Sync(f, k)),
        ], 1..60),
    ) {
        let mut logs: Vec<Vec<i32>> = vec![vec![]; 3];
        let (mut epoch, mut lead) = (0, 0);
        for h in hist {
            match h {
                H::Elect(r) => { epoch += 1; lead = r; }
                H::Append(n) => { for _ in 0..n { logs[lead].push(epoch); } }
                H::Sync(f, k) => {
                    let l = logs[lead].clone();
                    let lcp = common_prefix(&logs[f], &l);
                    let k = lcp + k % (l.len() - lcp + 1);
                    logs[f] = l[..k].to_vec();
                }
            }
            for f in 0..3 {
                let t = truncate_against(&logs[f], &logs[lead]);
                prop_assert_eq!(t, common_prefix(&logs[f], &logs[lead]) as i64, "follower {:?} leader {:?}", logs[f], logs[lead]);
            }
        }
    }
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
        truncation_step(
            &fc,
            4,
            LeaderEpochAnswer::Found {
                epoch: e,
                end_offset: end
            }
        ),
        Truncation::AskAgain {
            offset: 2,
            epoch: 1
        }
    );
    assert_eq!(truncate_against(&follower, &leader), 2);
    assert_eq!(
        truncation_step(&fc, 4, LeaderEpochAnswer::Undefined),
        Truncation::Reset
    );
}
