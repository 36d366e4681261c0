//! Topic incarnations (KIP-516): which incarnation of a topic name a broker's local copy holds,
//! judged against a metadata image that may be a *prefix* of the log (a broker catching up after a
//! restart sees the log replayed from its start).
//!
//! Every image applies the same records in the same order, so [`TopicImage::created_at`] (the
//! records applied before the topic's `CreateTopic`) orders the incarnations of one name, and an
//! image whose [`MetadataImage::applied`] is beyond it has seen that creation. The rule never
//! calls the incarnation the *full* log keeps stale on any prefix (property-tested below), so a
//! broker replaying the log never deletes live data.

use super::{MetadataImage, TopicId};

/// What a broker does with its local copy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTopic {
    /// The image's incarnation of the name: keep it.
    Current,
    /// Deleted, or replaced by a newer incarnation: retire the local logs.
    Stale,
    /// The image is older than the local copy (a prefix being replayed): leave it alone.
    Wait,
}

/// The verdict for the local copy of topic `name`, incarnation `local_id`, created at
/// `local_created_at` (`None`: not recorded, e.g. a copy made by an older Loglab).
pub fn local_topic(
    image: &MetadataImage,
    name: &str,
    local_id: TopicId,
    local_created_at: Option<u64>,
) -> LocalTopic {
    match image.topic_ids.get(name) {
        Some(id) if *id == local_id => LocalTopic::Current,
        Some(id) => {
            let theirs = image.topics.get(id).map_or(0, |t| t.created_at);
            match local_created_at {
                // The image's incarnation is older than ours: it is a prefix of the log.
                Some(ours) if theirs < ours => LocalTopic::Wait,
                // Newer (or an unordered copy of an older Loglab): ours is gone.
                _ => LocalTopic::Stale,
            }
        }
        // Past our creation and without it: deleted. Otherwise a prefix before it.
        None => match local_created_at {
            Some(ours) if image.applied > ours && !image.topics.contains_key(&local_id) => {
                LocalTopic::Stale
            }
            _ => LocalTopic::Wait,
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{PartitionRecord, Record};
    use super::*;

    fn create(name: &str, id: u8) -> Record {
        Record::CreateTopic {
            name: name.into(),
            topic_id: TopicId([id; 16]),
            partitions: vec![PartitionRecord { replicas: vec![0], isr: vec![0], leader: 0 }],
        }
    }

    /// One step of a log: create `name` (a fresh id) or delete it, for two names.
    fn ops() -> impl Strategy<Value = Vec<(bool, usize)>> {
        proptest::collection::vec((any::<bool>(), 0usize..2), 1..24)
    }

    /// The log the ops make (records the image refuses are kept: every replica refuses them
    /// alike) and every image along it.
    fn replay(ops: &[(bool, usize)]) -> Vec<MetadataImage> {
        let names = ["a", "b"];
        let mut img = MetadataImage::default();
        let mut images = vec![img.clone()];
        for (i, (is_create, n)) in ops.iter().enumerate() {
            let name = names[*n];
            let record = if *is_create {
                create(name, i as u8 + 1)
            } else {
                match img.topic_ids.get(name) {
                    Some(id) => Record::DeleteTopic { topic_id: *id },
                    None => Record::DeleteTopic { topic_id: TopicId([0xff; 16]) },
                }
            };
            let _ = img.apply(&record);
            images.push(img.clone());
        }
        images
    }

    proptest! {
        /// A broker holding an incarnation the final image keeps never hears "stale" from any
        /// prefix of the log; one holding an incarnation the final image dropped hears "stale"
        /// from the final image.
        #[test]
        fn prefixes_never_retire_live_data(ops in ops()) {
            let images = replay(&ops);
            let last = images.last().expect("at least the empty image");
            // Every incarnation that ever existed, with its creation point.
            let mut seen = std::collections::BTreeMap::new();
            for img in &images {
                for t in img.topics.values() {
                    seen.insert(t.id, (t.name.clone(), t.created_at));
                }
            }
            for (id, (name, at)) in &seen {
                let live = last.topics.contains_key(id);
                for img in &images {
                    let v = local_topic(img, name, *id, Some(*at));
                    if live {
                        prop_assert_ne!(v, LocalTopic::Stale, "{:?} at {} in {:?}", id, at, img.topic_ids);
                    }
                }
                let v = local_topic(last, name, *id, Some(*at));
                prop_assert_eq!(v, if live { LocalTopic::Current } else { LocalTopic::Stale });
            }
        }
    }

    #[test]
    fn delete_and_recreate() {
        let mut img = MetadataImage::default();
        img.apply(&create("t", 1)).unwrap();
        let old = img.topics[&TopicId([1; 16])].created_at;
        let before_delete = img.clone();
        img.apply(&Record::DeleteTopic { topic_id: TopicId([1; 16]) }).unwrap();
        assert_eq!(local_topic(&img, "t", TopicId([1; 16]), Some(old)), LocalTopic::Stale);
        img.apply(&create("t", 2)).unwrap();
        let new = img.topics[&TopicId([2; 16])].created_at;
        assert!(new > old);
        assert_eq!(local_topic(&img, "t", TopicId([1; 16]), Some(old)), LocalTopic::Stale);
        assert_eq!(local_topic(&img, "t", TopicId([2; 16]), Some(new)), LocalTopic::Current);
        // A restarted broker holding the new incarnation replays the old one first.
        assert_eq!(local_topic(&before_delete, "t", TopicId([2; 16]), Some(new)), LocalTopic::Wait);
        assert_eq!(
            local_topic(&MetadataImage::default(), "t", TopicId([2; 16]), Some(new)),
            LocalTopic::Wait
        );
        // A copy of an older Loglab (no creation point) with another id is replaced.
        assert_eq!(local_topic(&img, "t", TopicId([1; 16]), None), LocalTopic::Stale);
    }
}
