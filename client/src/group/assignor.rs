//! Partition assignors, run by the group leader: pure functions from the members' subscriptions
//! (topics, and for the sticky ones the partitions each owns and the generation it owned them in)
//! and the topics' partition counts to an assignment. Deterministic: members and partitions are
//! sorted before anything is decided and only ordered collections are iterated.
//!
//! - `range` (Kafka's `RangeAssignor`): per topic, the subscribed members in order each take a
//!   contiguous range; the first `partitions % members` take one extra.
//! - `roundrobin` (`RoundRobinAssignor`): every partition of every subscribed topic, sorted by topic
//!   then partition, dealt in turn to the next member subscribed to its topic.
//! - `sticky` / `cooperative-sticky` (`StickyAssignor`, `CooperativeStickyAssignor`, KIP-54,
//!   KIP-429): as balanced as the subscriptions allow while keeping every owned partition balance
//!   permits. Claims are resolved by generation (the newest claim wins; two claims in one
//!   generation both lose). The cooperative variant then withholds every partition that is moving
//!   to a new owner while another member still claims it: the owner revokes it, rejoins, and the
//!   next rebalance hands it out (KIP-429's two rounds).
//!
//! Member order is Kafka's `MemberInfo` order: members with a `group.instance.id` first, by it,
//! then the rest by member id.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::accumulator::TopicPartition;

/// `partition.assignment.strategy` values, under Kafka's protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl Strategy {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::RoundRobin => "roundrobin",
            Strategy::Sticky => "sticky",
            Strategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Accepts the protocol names and Kafka's Java class names.
    pub fn from_name(s: &str) -> Option<Self> {
        let short = s.trim().rsplit('.').next().unwrap_or("");
        Some(match (s.trim(), short) {
            ("range", _) | (_, "RangeAssignor") => Strategy::Range,
            ("roundrobin", _) | (_, "RoundRobinAssignor") => Strategy::RoundRobin,
            ("sticky", _) | (_, "StickyAssignor") => Strategy::Sticky,
            ("cooperative-sticky", _) | (_, "CooperativeStickyAssignor") => {
                Strategy::CooperativeSticky
            }
            _ => return None,
        })
    }

    /// KIP-429: cooperative members keep their partitions across a rebalance and revoke only
    /// what moves; eager members revoke everything before joining.
    pub fn is_cooperative(self) -> bool {
        self == Strategy::CooperativeSticky
    }
}

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// What the member owns now (sticky assignors; ignored by range/roundrobin).
    pub owned: Vec<TopicPartition>,
    /// The generation `owned` is from; -1 when unknown.
    pub generation: i32,
}

impl MemberSubscription {
    pub fn new(
        member_id: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            member_id: member_id.into(),
            group_instance_id: None,
            topics: topics.into_iter().map(Into::into).collect(),
            owned: Vec::new(),
            generation: -1,
        }
    }
}

/// Kafka's `MemberInfo` order.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// Member id → assigned partitions (sorted). Every member appears, possibly with nothing. Topics
/// absent from `partitions_per_topic` (unknown to the metadata) are not assigned.
pub type GroupAssignment = BTreeMap<String, Vec<TopicPartition>>;

/// Runs `strategy` over `members` and the topics' partition counts.
pub fn assign(
    strategy: Strategy,
    members: &[MemberSubscription],
    partitions_per_topic: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    sorted.dedup_by(|a, b| a.member_id == b.member_id);
    let mut out = match strategy {
        Strategy::Range => range(&sorted, partitions_per_topic),
        Strategy::RoundRobin => round_robin(&sorted, partitions_per_topic),
        Strategy::Sticky => sticky(&sorted, partitions_per_topic),
        Strategy::CooperativeSticky => {
            let mut a = sticky(&sorted, partitions_per_topic);
            withhold_moving(&sorted, &mut a);
            a
        }
    };
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn empty_assignment(members: &[&MemberSubscription]) -> GroupAssignment {
    members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect()
}

fn range(members: &[&MemberSubscription], counts: &BTreeMap<String, i32>) -> GroupAssignment {
    let mut out = empty_assignment(members);
    for (topic, &n) in counts {
        let subs: Vec<&&MemberSubscription> =
            members.iter().filter(|m| m.topics.contains(topic)).collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        let (n, m) = (n as usize, subs.len());
        let (per, extra) = (n / m, n % m);
        for (i, member) in subs.iter().enumerate() {
            let start = per * i + i.min(extra);
            let len = per + usize::from(i < extra);
            let dst = out.get_mut(&member.member_id).expect("every member has an entry");
            dst.extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p as i32)));
        }
    }
    out
}

/// Every partition of a topic some member subscribes to, sorted by topic then partition.
fn subscribed_partitions(
    members: &[&MemberSubscription],
    counts: &BTreeMap<String, i32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    let mut out = Vec::new();
    for t in topics {
        if let Some(&n) = counts.get(t) {
            out.extend((0..n.max(0)).map(|p| TopicPartition::new(t.clone(), p)));
        }
    }
    out
}

fn round_robin(members: &[&MemberSubscription], counts: &BTreeMap<String, i32>) -> GroupAssignment {
    let mut out = empty_assignment(members);
    if members.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for tp in subscribed_partitions(members, counts) {
        // Some member subscribes to every partition listed, so this finds one within a lap.
        for step in 0..members.len() {
            let i = (next + step) % members.len();
            if members[i].topics.contains(tp.topic()) {
                out.get_mut(&members[i].member_id).expect("every member has an entry").push(tp);
                next = i + 1;
                break;
            }
        }
    }
    out
}

/// The sticky core shared by `sticky` and `cooperative-sticky`.
fn sticky(members: &[&MemberSubscription], counts: &BTreeMap<String, i32>) -> GroupAssignment {
    let all = subscribed_partitions(members, counts);
    let exists = |tp: &TopicPartition| {
        counts.get(tp.topic()).is_some_and(|&n| (0..n).contains(&tp.partition))
    };

    // Resolve claims: newest generation wins; a tie at the newest leaves the partition unowned.
    let mut claims: BTreeMap<&TopicPartition, Vec<(i32, usize)>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let owned: BTreeSet<&TopicPartition> = m.owned.iter().collect();
        for tp in owned {
            if exists(tp) && m.topics.contains(tp.topic()) {
                claims.entry(tp).or_default().push((m.generation, i));
            }
        }
    }
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (tp, cs) in claims {
        let newest = cs.iter().map(|c| c.0).max().expect("non-empty");
        let at_newest: Vec<usize> = cs.iter().filter(|c| c.0 == newest).map(|c| c.1).collect();
        if let [only] = at_newest[..] {
            owner.insert(tp.clone(), only);
        }
    }
    let mut count = vec![0usize; members.len()];
    for &i in owner.values() {
        count[i] += 1;
    }

    // Hand out unowned partitions, each to the least loaded member subscribed to its topic.
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        let best = (0..members.len())
            .filter(|&i| members[i].topics.contains(tp.topic()))
            .min_by_key(|&i| (count[i], i));
        let Some(i) = best else { continue };
        owner.insert(tp.clone(), i);
        count[i] += 1;
    }

    // Balance: move a partition from the most loaded member to an eligible member with at least
    // two fewer, until no such move exists. Each move lowers the sum of squared counts by at
    // least 2, so this ends within |partitions|² / 2 moves.
    let moves_max = all.len() * all.len() / 2 + 1;
    let mut moves = 0;
    loop {
        let mut donors: Vec<usize> = (0..members.len()).collect();
        donors.sort_by_key(|&i| (std::cmp::Reverse(count[i]), i));
        let mut found = None;
        'search: for &d in &donors {
            if count[d] < 2 {
                break;
            }
            // Highest partitions move first, so the low ones a member owns stay put.
            for (tp, _) in owner.iter().rev().filter(|(_, &o)| o == d) {
                let receiver = (0..members.len())
                    .filter(|&r| count[r] + 1 < count[d] && members[r].topics.contains(tp.topic()))
                    .min_by_key(|&r| (count[r], r));
                if let Some(r) = receiver {
                    found = Some((tp.clone(), d, r));
                    break 'search;
                }
            }
        }
        let Some((tp, d, r)) = found else { break };
        owner.insert(tp, r);
        count[d] -= 1;
        count[r] += 1;
        moves += 1;
        assert!(moves <= moves_max, "sticky balancing did not converge");
    }

    let mut out = empty_assignment(members);
    for (tp, i) in owner {
        out.get_mut(&members[i].member_id).expect("every member has an entry").push(tp);
    }
    out
}

/// KIP-429: a partition assigned to a member other than one that still claims it is left out of
/// this round; its owner revokes it and rejoins, and the next round assigns it.
fn withhold_moving(members: &[&MemberSubscription], assignment: &mut GroupAssignment) {
    let mut claimed_by: BTreeMap<&TopicPartition, BTreeSet<&str>> = BTreeMap::new();
    for m in members {
        for tp in &m.owned {
            claimed_by.entry(tp).or_default().insert(&m.member_id);
        }
    }
    for (member, tps) in assignment.iter_mut() {
        tps.retain(|tp| {
            claimed_by.get(tp).is_none_or(|owners| owners.iter().all(|o| *o == member.as_str()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in
            [Strategy::Range, Strategy::RoundRobin, Strategy::Sticky, Strategy::CooperativeSticky]
        {
            assert_eq!(Strategy::from_name(s.name()), Some(s));
        }
        assert_eq!(
            Strategy::from_name("org.apache.kafka.clients.consumer.CooperativeStickyAssignor"),
            Some(Strategy::CooperativeSticky)
        );
        assert_eq!(Strategy::from_name("nope"), None);
    }
}
