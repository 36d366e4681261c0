//! Kafka's default partitioning.
//!
//! - Keyed records: `toPositive(murmur2(key)) % numPartitions`, with murmur2 exactly as Java's
//!   `Utils.murmur2` (seed `0x9747b28c`, little-endian 4-byte blocks, Java int arithmetic), so a key
//!   lands on the partition a Java, librdkafka (`murmur2_random`) or franz-go producer picks.
//! - Null keys (or `partitioner.ignore.keys=true`): sticky partitioning after KIP-794. A topic
//!   sticks to one partition until `batch.size` bytes were appended to it, then switches to a random
//!   partition (an available one when any are given). The random draws come from the generator
//!   handed in: no global randomness. (KIP-794's adaptive, load-aware weighting is left out, and
//!   so is its switch guard: Kafka switches after `batch.size` bytes only while the partition's
//!   last batch is full, `allBatchesFull` in `RecordAccumulator.append`, and always after twice
//!   `batch.size`.)

use std::collections::BTreeMap;

use rand::RngCore;

const MURMUR2_SEED: u32 = 0x9747_b28c;

/// Java's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`. Returns Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = MURMUR2_SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= (byte as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for a non-null key (`None` for a topic that
/// metadata says has no partitions).
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> Option<u32> {
    (num_partitions > 0).then(|| (to_positive(murmur2(key)) as u32) % num_partitions)
}

#[derive(Debug, Clone)]
struct Sticky {
    partition: u32,
    produced_bytes: usize,
}

/// Keyed hashing plus per-topic sticky partitioning for null keys.
#[derive(Debug)]
pub struct Partitioner<R: RngCore> {
    rng: R,
    sticky_batch_size: usize,
    ignore_keys: bool,
    sticky: BTreeMap<String, Sticky>,
}

impl<R: RngCore> Partitioner<R> {
    /// `sticky_batch_size` is `batch.size`; `rng` is a seeded generator (e.g. ChaCha8 from the
    /// run's seed with a per-subsystem salt).
    pub fn new(rng: R, sticky_batch_size: usize, ignore_keys: bool) -> Self {
        Self {
            rng,
            sticky_batch_size: sticky_batch_size.max(1),
            ignore_keys,
            sticky: BTreeMap::new(),
        }
    }

    /// Chooses a partition in `0..num_partitions`. `available` lists partitions that currently have
    /// a leader (empty = treat all as available). `None` when `num_partitions` is 0.
    pub fn partition(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        num_partitions: u32,
        available: &[u32],
    ) -> Option<u32> {
        if num_partitions == 0 {
            return None;
        }
        if let Some(p) = self.without_draw(topic, key, num_partitions) {
            return Some(p);
        }
        assert!(key.is_none() || self.ignore_keys, "a key's partition is its hash, never drawn");
        let partition = self.next_partition(num_partitions, available);
        self.sticky.insert(topic.to_string(), Sticky { partition, produced_bytes: 0 });
        Some(partition)
    }

    /// [`Partitioner::partition`]'s answer when it needs no draw (a key's hash, or the sticky
    /// partition while it still has room), else `None`: then `partition` draws, and only then
    /// needs the list of available partitions.
    pub fn without_draw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        num_partitions: u32,
    ) -> Option<u32> {
        if num_partitions == 0 {
            return None;
        }
        if let (Some(key), false) = (key, self.ignore_keys) {
            return partition_for_key(key, num_partitions);
        }
        let s = self.sticky.get(topic)?;
        (s.partition < num_partitions && s.produced_bytes < self.sticky_batch_size)
            .then_some(s.partition)
    }

    /// Tells the sticky partitioner that `bytes` were appended to `topic`/`partition`; after
    /// `batch.size` bytes the next null-key record switches partition.
    pub fn on_append(&mut self, topic: &str, partition: u32, bytes: usize) {
        if let Some(s) = self.sticky.get_mut(topic) {
            if s.partition == partition {
                s.produced_bytes = s.produced_bytes.saturating_add(bytes);
            }
        }
    }

    /// The current sticky partition of a topic, if one was chosen.
    pub fn sticky_partition(&self, topic: &str) -> Option<u32> {
        self.sticky.get(topic).map(|s| s.partition)
    }

    fn next_partition(&mut self, num_partitions: u32, available: &[u32]) -> u32 {
        let r = self.rng.next_u32();
        let usable: Vec<u32> = available.iter().copied().filter(|&p| p < num_partitions).collect();
        if usable.is_empty() {
            r % num_partitions
        } else {
            usable[(r as usize) % usable.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `without_draw` answers exactly when `partition` would not draw, and with its answer: the
    /// producer lists the available partitions only when it returns `None`.
    #[test]
    fn without_draw_answers_exactly_when_partition_would_not_draw() {
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(7), 1_000, false);
        let (mut quick, mut drawn) = (0, 0);
        for i in 0..300u32 {
            let key = (i % 7 == 0).then(|| i.to_be_bytes());
            let key = key.as_ref().map(|k| &k[..]);
            let answer = p.without_draw("t", key, 6);
            let before = p.rng.get_word_pos();
            let chosen = p.partition("t", key, 6, &[1, 3, 5]).expect("6 partitions");
            let drew = p.rng.get_word_pos() != before;
            assert_eq!(answer.is_none(), drew, "record {i}: {answer:?}, drew {drew}");
            if let Some(a) = answer {
                assert_eq!(a, chosen, "record {i}");
                quick += 1;
            } else {
                assert!([1, 3, 5].contains(&chosen), "a draw picks an available partition");
                drawn += 1;
            }
            p.on_append("t", chosen, 90);
        }
        assert!(quick > 200 && drawn > 20, "both paths taken: {quick} quick, {drawn} drawn");
        assert_eq!(p.without_draw("t", None, 0), None, "no partitions: no answer");
    }

    /// Kafka's `UtilsTest.testMurmur2` vectors.
    #[test]
    fn murmur2_matches_kafka_java() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_records_hash_to_positive_partitions() {
        // toPositive(-973932308) = 1173551340; % 6 = 0
        assert_eq!(partition_for_key(b"21", 6), Some(1_173_551_340u32 % 6));
        assert_eq!(partition_for_key(b"21", 0), None);
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(1), 16384, false);
        for n in 1..20 {
            let got = p.partition("t", Some(b"foobar"), n, &[]);
            assert_eq!(got, Some((to_positive(-790_332_482) as u32) % n));
        }
    }

    #[test]
    fn null_keys_stick_until_batch_size_then_switch_deterministically() {
        let run = |seed| {
            let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(seed), 1000, false);
            let mut seen = Vec::new();
            for _ in 0..50 {
                let part = p.partition("t", None, 12, &[]).unwrap();
                p.on_append("t", part, 100);
                seen.push(part);
            }
            seen
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same choices");
        // Ten records of 100 bytes per sticky period.
        for chunk in a.chunks(10) {
            assert!(chunk.iter().all(|&x| x == chunk[0]), "{a:?}");
        }
        assert!(a.iter().any(|&x| x != a[0]), "switches partitions over time");
    }

    #[test]
    fn sticky_prefers_available_partitions_and_ignore_keys() {
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(3), 10, true);
        for _ in 0..100 {
            let part = p.partition("t", Some(b"k"), 8, &[2, 5]).unwrap();
            assert!(part == 2 || part == 5);
            p.on_append("t", part, 10);
        }
    }
}
