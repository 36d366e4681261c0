//! A topic name and a partition of it.
//!
//! [`Topic`] is an `Arc<str>`: cloning a [`TopicPartition`] (map keys, batches, requests) copies a
//! pointer, not the name. It compares, orders and hashes exactly as the `String` it replaces (by
//! the name's bytes), so maps keyed by it iterate in the same order as before.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A topic name, shared. Kafka limits names to 249 bytes; this type does not check (the broker
/// validates names where they enter).
///
/// Equality and order are the name's bytes', with one shortcut: two clones of the same name
/// (the same allocation) are equal without comparing bytes. (`Arc`'s own equality takes that
/// shortcut only for sized contents, not for `str`.) A producer's accumulator looks up its
/// partition queues with clones of the names it keyed them by, several comparisons a record.
#[derive(Clone)]
pub struct Topic(Arc<str>);

impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the name's `str` (what a `Borrow<str>` lookup hashes).
        (*self.0).hash(state);
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Topic {}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Topic {
    pub fn new(name: impl Into<Topic>) -> Self {
        name.into()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Topic {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<String> for Topic {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl From<&String> for Topic {
    fn from(name: &String) -> Self {
        Self(Arc::from(name.as_str()))
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> Self {
        topic.0.to_string()
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        **self == *other.0
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One partition of one topic. Orders by topic name, then partition; displays as `topic-partition`
/// (Kafka's spelling, also the partition's directory name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: Topic,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Topic>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The partition's directory name in a log dir: `topic-partition`.
    pub fn dir_name(&self) -> String {
        self.to_string()
    }

    /// `events-3` → (events, 3). Topic names may contain '-', so split at the last one; the
    /// partition must be a non-negative `i32` and the topic non-empty.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
        (!topic.is_empty()).then(|| Self::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    fn hash_of<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn behaves_like_the_string_it_replaces() {
        let tp = TopicPartition::new("a-b", 3);
        assert_eq!(tp.to_string(), "a-b-3");
        assert_eq!(tp.dir_name(), "a-b-3");
        assert_eq!(TopicPartition::parse_dir_name("a-b-3"), Some(tp.clone()));
        assert_eq!(TopicPartition::parse_dir_name("a-x"), None);
        assert_eq!(TopicPartition::parse_dir_name("a--1"), Some(TopicPartition::new("a-", 1)));
        assert_eq!(TopicPartition::parse_dir_name("-1"), None);
        assert_eq!(tp.topic, "a-b");
        assert_eq!(tp.topic(), "a-b");
        assert_eq!(hash_of(&tp.topic), hash_of("a-b"));
        assert_eq!(hash_of(&tp.topic), hash_of(&String::from("a-b")));
        assert!(TopicPartition::new("a", 9) < TopicPartition::new("b", 0));
        assert!(TopicPartition::new("a", 1) < TopicPartition::new("a", 2));
        assert_eq!(format!("{:?}", tp.topic), "\"a-b\"");
    }

    /// Clones (one allocation) and equal names in separate allocations compare alike, and
    /// different names order by their bytes either way.
    #[test]
    fn shared_and_separate_names_compare_by_content() {
        use std::cmp::Ordering;
        let a = Topic::from("events");
        let (clone, separate) = (a.clone(), Topic::from(String::from("events")));
        assert!(Arc::ptr_eq(&a.0, &clone.0) && !Arc::ptr_eq(&a.0, &separate.0));
        for b in [&clone, &separate] {
            assert_eq!(a, *b);
            assert_eq!(a.cmp(b), Ordering::Equal);
            assert_eq!(hash_of(&a), hash_of(b));
        }
        let (x, y) = (Topic::from("ab"), Topic::from("b"));
        assert_eq!(x.cmp(&y), "ab".cmp("b"));
        assert_eq!(y.cmp(&x), Ordering::Greater);
        assert_ne!(x, y);
        assert_ne!(Topic::from("ab"), Topic::from("abc"));
    }
}
