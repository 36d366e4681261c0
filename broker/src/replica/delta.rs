//! Local changes between two metadata images, for one broker (Kafka's `TopicsDelta.localChanges`):
//! which partitions it must start or keep leading with new state, which it must follow (a new
//! leader or leader epoch), and which it must stop replicating (topic deleted or reassigned
//! away). Pure: images in, changes out.

use std::collections::{BTreeMap, BTreeSet};

use cluster::metadata::{BrokerId, MetadataImage, PartitionState, TopicId};

/// A partition by topic id (a topic recreated under the same name is a different partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic_id: TopicId,
    pub partition: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalChanges {
    /// Partitions this broker leads whose state is new or changed (new leadership, new leader
    /// epoch, or a new ISR / partition epoch the leader's high-watermark rule needs).
    pub leaders: BTreeMap<PartitionKey, (String, PartitionState)>,
    /// Partitions this broker follows with a new leader or leader epoch (fetch from the new
    /// leader after truncating by epoch). ISR-only changes do not concern a follower.
    pub followers: BTreeMap<PartitionKey, (String, PartitionState)>,
    /// Partitions this broker replicated and no longer does.
    pub stopped: BTreeSet<PartitionKey>,
}

impl LocalChanges {
    pub fn is_empty(&self) -> bool {
        self.leaders.is_empty() && self.followers.is_empty() && self.stopped.is_empty()
    }
}

fn replicated_by(
    img: &MetadataImage,
    me: BrokerId,
) -> BTreeMap<PartitionKey, (&str, &PartitionState)> {
    let mut out = BTreeMap::new();
    for t in img.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.replicas.contains(&me) {
                out.insert(
                    PartitionKey { topic_id: t.id, partition: i as u32 },
                    (t.name.as_str(), p),
                );
            }
        }
    }
    out
}

/// What `me` must do to go from `old` to `new`.
pub fn local_changes(old: &MetadataImage, new: &MetadataImage, me: BrokerId) -> LocalChanges {
    let before = replicated_by(old, me);
    let after = replicated_by(new, me);
    let mut out = LocalChanges::default();
    for (key, (name, p)) in &after {
        let prev = before.get(key).map(|(_, p)| *p);
        let entry = (name.to_string(), (*p).clone());
        if p.leader == me {
            if prev != Some(*p) {
                out.leaders.insert(*key, entry);
            }
        } else if prev.is_none_or(|q| q.leader != p.leader || q.leader_epoch != p.leader_epoch) {
            out.followers.insert(*key, entry);
        }
    }
    out.stopped = before.keys().filter(|k| !after.contains_key(k)).copied().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::metadata::TopicImage;
    use proptest::prelude::*;

    /// What a broker does with a partition, as far as replication cares.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Role {
        Leader(PartitionState),
        Follower { leader: BrokerId, leader_epoch: i32 },
    }

    fn roles(img: &MetadataImage, me: BrokerId) -> BTreeMap<PartitionKey, Role> {
        replicated_by(img, me)
            .into_iter()
            .map(|(k, (_, p))| {
                let r = if p.leader == me {
                    Role::Leader(p.clone())
                } else {
                    Role::Follower { leader: p.leader, leader_epoch: p.leader_epoch }
                };
                (k, r)
            })
            .collect()
    }

    fn partition() -> impl Strategy<Value = PartitionState> {
        (proptest::sample::subsequence(vec![0, 1, 2, 3], 1..=3), -1i32..4, 0i32..3, 0i32..3)
            .prop_map(|(replicas, leader, leader_epoch, partition_epoch)| PartitionState {
                isr: replicas.clone(),
                replicas,
                leader,
                leader_epoch,
                partition_epoch,
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                recovering: false,
            })
    }

    fn image() -> impl Strategy<Value = MetadataImage> {
        proptest::collection::btree_map(0u8..4, proptest::collection::vec(partition(), 1..4), 0..4)
            .prop_map(|topics| {
                let mut img = MetadataImage::default();
                for (id, partitions) in topics {
                    let t = TopicImage {
                        name: format!("t{id}"),
                        id: TopicId([id; 16]),
                        partitions,
                        created_at: 0,
                    };
                    img.topic_ids.insert(t.name.clone(), t.id);
                    img.topics.insert(t.id, t);
                }
                img
            })
    }

    proptest! {
        /// Applying the changes to the old roles gives the new roles, and nothing is reported
        /// that did not change.
        #[test]
        fn changes_take_old_roles_to_new_roles_minimally(old in image(), new in image(), me in 0i32..4) {
            let c = local_changes(&old, &new, me);
            let mut r = roles(&old, me);
            let before = r.clone();
            for k in &c.stopped {
                prop_assert!(r.remove(k).is_some());
            }
            for (k, (_, p)) in &c.leaders {
                prop_assert_eq!(p.leader, me);
                prop_assert_ne!(before.get(k), Some(&Role::Leader(p.clone())));
                r.insert(*k, Role::Leader(p.clone()));
            }
            for (k, (_, p)) in &c.followers {
                let f = Role::Follower { leader: p.leader, leader_epoch: p.leader_epoch };
                prop_assert_ne!(before.get(k), Some(&f));
                r.insert(*k, f);
            }
            prop_assert_eq!(r, roles(&new, me));
            prop_assert!(local_changes(&new, &new, me).is_empty());
        }
    }
}
