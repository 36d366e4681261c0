//! The assignors against their contracts: exclusivity and coverage, subscription respect, Kafka's
//! documented layouts, balance, stickiness and KIP-429's cooperative hand-over rule.

use std::collections::{BTreeMap, BTreeSet};

use client::group::{assign, GroupAssignment, MemberSubscription, Strategy};
use client::TopicPartition;
use proptest::prelude::*;

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn counts(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn member(id: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription::new(id, topics.iter().copied())
}

/// Every partition of a subscribed topic, exactly once, only to subscribers; nothing else.
fn check_exclusive_and_complete(
    members: &[MemberSubscription],
    topics: &BTreeMap<String, i32>,
    a: &GroupAssignment,
    complete: bool,
) {
    let mut seen = BTreeSet::new();
    for m in members {
        let got = a.get(&m.member_id).expect("every member in the assignment");
        for p in got {
            assert!(
                m.topics.contains(p.topic()),
                "{p:?} given to {} who does not subscribe",
                m.member_id
            );
            assert!(seen.insert(p.clone()), "{p:?} assigned twice");
        }
    }
    assert_eq!(a.len(), members.len(), "no unknown members");
    let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    for (t, &n) in topics {
        for p in 0..n {
            let want = subscribed.contains(t);
            if complete || !want {
                assert_eq!(seen.contains(&tp(t, p)), want, "{t}-{p}");
            }
        }
    }
}

fn sizes(a: &GroupAssignment) -> Vec<usize> {
    a.values().map(Vec::len).collect()
}

fn spread(a: &GroupAssignment) -> usize {
    let s = sizes(a);
    s.iter().max().unwrap_or(&0) - s.iter().min().unwrap_or(&0)
}

/// Members' next subscriptions: owning what `a` gave them, in `generation`.
fn owning(
    members: &[MemberSubscription],
    a: &GroupAssignment,
    generation: i32,
) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| MemberSubscription {
            owned: a.get(&m.member_id).cloned().unwrap_or_default(),
            generation,
            ..m.clone()
        })
        .collect()
}

#[test]
fn range_matches_kafkas_documented_layout() {
    // RangeAssignor javadoc: C0, C1 on t0, t1 with 3 partitions each.
    let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    let a = assign(Strategy::Range, &members, &counts(&[("t0", 3), ("t1", 3)]));
    assert_eq!(a["C0"], vec![tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]);
    assert_eq!(a["C1"], vec![tp("t0", 2), tp("t1", 2)]);
}

#[test]
fn roundrobin_matches_kafkas_documented_layouts() {
    let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    let a = assign(Strategy::RoundRobin, &members, &counts(&[("t0", 3), ("t1", 3)]));
    assert_eq!(a["C0"], vec![tp("t0", 0), tp("t0", 2), tp("t1", 1)]);
    assert_eq!(a["C1"], vec![tp("t0", 1), tp("t1", 0), tp("t1", 2)]);
    // Differing subscriptions (RoundRobinAssignor javadoc).
    let members =
        [member("C0", &["t0"]), member("C1", &["t0", "t1"]), member("C2", &["t0", "t1", "t2"])];
    let a = assign(Strategy::RoundRobin, &members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
    assert_eq!(a["C0"], vec![tp("t0", 0)]);
    assert_eq!(a["C1"], vec![tp("t1", 0)]);
    assert_eq!(a["C2"], vec![tp("t1", 1), tp("t2", 0), tp("t2", 1), tp("t2", 2)]);
}

#[test]
fn static_members_sort_first_by_instance_id() {
    let mut b = member("a-member", &["t"]);
    b.group_instance_id = Some("z".into());
    let mut c = member("b-member", &["t"]);
    c.group_instance_id = Some("y".into());
    let members = [member("0-dynamic", &["t"]), b, c];
    let a = assign(Strategy::Range, &members, &counts(&[("t", 3)]));
    assert_eq!(a["b-member"], vec![tp("t", 0)]);
    assert_eq!(a["a-member"], vec![tp("t", 1)]);
    assert_eq!(a["0-dynamic"], vec![tp("t", 2)]);
}

#[test]
fn sticky_keeps_partitions_of_remaining_members_when_one_leaves() {
    let topics = counts(&[("t", 6)]);
    let members: Vec<_> = ["a", "b", "c"].iter().map(|id| member(id, &["t"])).collect();
    for s in [Strategy::Sticky, Strategy::CooperativeSticky] {
        let first = assign(s, &members, &topics);
        assert_eq!(sizes(&first), vec![2, 2, 2]);
        let rest = owning(&members[..2], &first, 1);
        let second = assign(s, &rest, &topics);
        assert_eq!(sizes(&second), vec![3, 3]);
        for m in &rest {
            for p in &m.owned {
                assert!(second[&m.member_id].contains(p), "{s:?}: {} lost {p:?}", m.member_id);
            }
        }
    }
}

#[test]
fn cooperative_needs_two_rounds_to_move_a_partition() {
    let topics = counts(&[("t", 4)]);
    let two: Vec<_> = ["a", "b"].iter().map(|id| member(id, &["t"])).collect();
    let g1 = assign(Strategy::CooperativeSticky, &two, &topics);
    let mut three = owning(&two, &g1, 1);
    three.push(member("c", &["t"]));
    // Round 1: c gets nothing that a or b still owns; a and b keep what they keep.
    let g2 = assign(Strategy::CooperativeSticky, &three, &topics);
    assert!(g2["c"].is_empty(), "{g2:?}");
    let moved: usize = ["a", "b"].iter().map(|m| g1[*m].len() - g2[*m].len()).sum();
    assert_eq!(moved, 1, "only one partition has to move: {g2:?}");
    // The owners revoke; round 2 hands the revoked partition to c.
    let three = owning(&three, &g2, 2);
    let g3 = assign(Strategy::CooperativeSticky, &three, &topics);
    assert_eq!(g3["c"].len(), 1);
    assert_eq!(spread(&g3), 1);
    check_exclusive_and_complete(&three, &topics, &g3, true);
}

#[test]
fn newest_generation_wins_a_conflicting_claim() {
    let topics = counts(&[("t", 2)]);
    let mut a = member("a", &["t"]);
    a.owned = vec![tp("t", 0), tp("t", 1)];
    a.generation = 3;
    let mut b = member("b", &["t"]);
    b.owned = vec![tp("t", 0)];
    b.generation = 2;
    let g = assign(Strategy::Sticky, &[a, b], &topics);
    assert_eq!(g["a"], vec![tp("t", 0)], "a keeps the lower partition it owns newest");
    assert_eq!(g["b"], vec![tp("t", 1)]);
}

/// A group: members (ids m0..), each subscribing to a subset of topics t0.. (possibly all),
/// owning arbitrary partitions from some generation.
fn arb_group(
    uniform: bool,
) -> impl Strategy2<Value = (Vec<MemberSubscription>, BTreeMap<String, i32>)> {
    (1usize..4, 1usize..7)
        .prop_flat_map(move |(ntopics, nmembers)| {
            (
                proptest::collection::vec(0i32..9, ntopics),
                proptest::collection::vec(
                    (
                        proptest::collection::btree_set(0..ntopics, 1..=ntopics),
                        proptest::collection::vec((0..ntopics, 0i32..9), 0..6),
                        -1i32..3,
                        proptest::bool::ANY,
                    ),
                    nmembers,
                ),
            )
        })
        .prop_map(move |(parts, ms)| {
            let ntopics = parts.len();
            let topics: BTreeMap<String, i32> =
                parts.iter().enumerate().map(|(i, &n)| (format!("t{i}"), n)).collect();
            let members = ms
                .into_iter()
                .enumerate()
                .map(|(i, (subs, owned, generation, is_static))| {
                    let subs: Vec<usize> =
                        if uniform { (0..ntopics).collect() } else { subs.into_iter().collect() };
                    MemberSubscription {
                        member_id: format!("m{i}"),
                        group_instance_id: is_static.then(|| format!("i{}", 9 - i)),
                        topics: subs.iter().map(|t| format!("t{t}")).collect(),
                        owned: owned.into_iter().map(|(t, p)| tp(&format!("t{t}"), p)).collect(),
                        generation,
                    }
                })
                .collect();
            (members, topics)
        })
}

use proptest::strategy::Strategy as Strategy2;

proptest! {
    // PROPTEST_CASES raises the count for deep runs (scripts/test.sh's deep property step); the
    // default keeps the workspace run quick.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_subscribed_partition_once_and_only_to_subscribers((members, topics) in arb_group(false)) {
        for s in [Strategy::Range, Strategy::RoundRobin, Strategy::Sticky] {
            let a = assign(s, &members, &topics);
            check_exclusive_and_complete(&members, &topics, &a, true);
            // Deterministic and independent of input order.
            let mut rev = members.clone();
            rev.reverse();
            prop_assert_eq!(&assign(s, &rev, &topics), &a);
        }
        // Cooperative may withhold partitions for a round, never double-assign.
        let a = assign(Strategy::CooperativeSticky, &members, &topics);
        check_exclusive_and_complete(&members, &topics, &a, false);
    }

    #[test]
    fn roundrobin_and_sticky_are_balanced_with_uniform_subscriptions((members, topics) in arb_group(true)) {
        for s in [Strategy::RoundRobin, Strategy::Sticky] {
            let a = assign(s, &members, &topics);
            prop_assert!(spread(&a) <= 1, "{:?}: {:?}", s, a);
        }
    }

    #[test]
    fn sticky_moves_only_what_balance_requires(
        (members, topics) in arb_group(true),
        leave in proptest::bool::ANY,
    ) {
        for s in [Strategy::Sticky, Strategy::CooperativeSticky] {
            // Settle the group (cooperative may need a second round), then change membership.
            let mut cur = members.iter().map(|m| MemberSubscription { owned: vec![], generation: -1, ..m.clone() }).collect::<Vec<_>>();
            let mut a = assign(s, &cur, &topics);
            for g in 1..3 {
                cur = owning(&cur, &a, g);
                a = assign(s, &cur, &topics);
            }
            let total: usize = sizes(&a).iter().sum();
            let before = owning(&cur, &a, 3);
            let after: Vec<MemberSubscription> = if leave {
                if before.len() < 2 { continue; }
                before[..before.len() - 1].to_vec()
            } else {
                let mut v = before.clone();
                let mut newbie = before[0].clone();
                newbie.member_id = "zz-new".into();
                newbie.group_instance_id = None;
                newbie.owned = vec![];
                newbie.generation = -1;
                v.push(newbie);
                v
            };
            let next = assign(s, &after, &topics);
            let n = after.len();
            // Kept: a partition survives with its owner unless the owner is over its fair share.
            let mut moved_from_stayers = 0usize;
            for m in &after {
                let kept = m.owned.iter().filter(|p| next[&m.member_id].contains(p)).count();
                moved_from_stayers += m.owned.len() - kept;
                prop_assert!(kept >= m.owned.len().min(total / n), "{:?}: {} kept {} of {:?}", s, m.member_id, kept, m.owned);
            }
            if leave {
                prop_assert_eq!(moved_from_stayers, 0, "{:?}: a member leaving moves only its partitions", s);
            } else {
                // The newcomer takes about 1/n: at most ceil(total / n) move.
                prop_assert!(moved_from_stayers <= total.div_ceil(n), "{:?}: moved {}", s, moved_from_stayers);
            }
        }
    }

    #[test]
    fn cooperative_never_hands_over_a_partition_still_owned((members, topics) in arb_group(false)) {
        let a = assign(Strategy::CooperativeSticky, &members, &topics);
        for m in &members {
            for p in &m.owned {
                for (other, got) in &a {
                    if *other != m.member_id {
                        prop_assert!(!got.contains(p), "{:?} owned by {} given to {}", p, m.member_id, other);
                    }
                }
            }
        }
    }
}
