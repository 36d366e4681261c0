//! Kafka's default partitioning.
//!
//! - Keyed records: `toPositive(murmur2(key)) % numPartitions`, with murmur2 exactly as Java's
//!   `Utils.murmur2` (seed `0x9747b28c`, little-endian 4-byte blocks, Java int arithmetic), so a key
//!   lands on the partition a Java, librdkafka (`murmur2_random`) or franz-go producer picks.
//! - Null keys (or `partitioner.ignore.keys=true`): sticky partitioning after KIP-794. A topic
//!   sticks to one partition, then switches to a random partition (an available one when any are
//!   given). The random draws come from the generator handed in: no global randomness. (KIP-794's
//!   adaptive, load-aware weighting is left out.)
//! - When it switches is Kafka's `BuiltInPartitioner.updatePartitionInfo`, decided after each
//!   append of a sticky record: once `batch.size` bytes were appended to the partition if the
//!   batch the record went into is full (`enableSwitch = allBatchesFull(dq)` in
//!   `RecordAccumulator.append`: only the last batch of a queue can be incomplete), and always
//!   once twice `batch.size` were. A batch is full only when its estimate reached `batch.size`
//!   exactly; one that has no room for the next record is not, and the record opens a new batch,
//!   which is not full either. So in practice the switch comes at twice `batch.size`: Kafka's
//!   guard against switching in the middle of a batch that linger has not sent yet (with
//!   linger-driven sends, the partition's last batch would otherwise be a fragment).
//!   Records with a key (hashed) or an explicit partition do not count, as in Kafka, where they
//!   carry no sticky partition info.
//! - A sticky record that had to wait for buffer memory asks again after the wait: if other
//!   records' appends decided the switch meanwhile, it goes to the partition drawn now, not the
//!   one it was given (Kafka's `partitionChanged` retry in `RecordAccumulator.append`; the
//!   producer's `append_after_memory`).

use std::collections::BTreeMap;

use kafka_types::Topic;

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
    /// An append decided to switch: the next sticky record draws a new partition.
    switch: bool,
}

/// Keyed hashing plus per-topic sticky partitioning for null keys.
#[derive(Debug)]
pub struct Partitioner<R: RngCore> {
    rng: R,
    sticky_batch_size: usize,
    ignore_keys: bool,
    /// The sticky state of the first topic a null key was sent to, apart: a producer that
    /// writes one topic (the usual case) finds it with one comparison instead of a search,
    /// twice a record.
    first: Option<(Topic, Sticky)>,
    /// Every other topic's. Keyed by the producer's own topic names: a lookup with a clone of
    /// the key compares pointers, not bytes.
    others: BTreeMap<Topic, Sticky>,
}

impl<R: RngCore> Partitioner<R> {
    /// `sticky_batch_size` is `batch.size`; `rng` is a seeded generator (e.g. ChaCha8 from the
    /// run's seed with a per-subsystem salt).
    pub fn new(rng: R, sticky_batch_size: usize, ignore_keys: bool) -> Self {
        Self {
            rng,
            sticky_batch_size: sticky_batch_size.max(1),
            ignore_keys,
            first: None,
            others: BTreeMap::new(),
        }
    }

    /// `topic`'s sticky state, if a partition was drawn for it.
    fn sticky(&self, topic: &Topic) -> Option<&Sticky> {
        match &self.first {
            Some((t, s)) if t == topic => Some(s),
            _ => self.others.get(topic),
        }
    }

    fn sticky_mut(&mut self, topic: &Topic) -> Option<&mut Sticky> {
        match &mut self.first {
            Some((t, s)) if t == topic => Some(s),
            _ => self.others.get_mut(topic),
        }
    }

    fn set_sticky(&mut self, topic: &Topic, sticky: Sticky) {
        match &mut self.first {
            None => self.first = Some((topic.clone(), sticky)),
            Some((t, s)) if t == topic => *s = sticky,
            Some(_) => {
                self.others.insert(topic.clone(), sticky);
            }
        }
    }

    /// Chooses a partition in `0..num_partitions`. `available` lists partitions that currently have
    /// a leader (empty = treat all as available). `None` when `num_partitions` is 0.
    pub fn partition(
        &mut self,
        topic: &Topic,
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
        self.set_sticky(topic, Sticky { partition, produced_bytes: 0, switch: false });
        Some(partition)
    }

    /// [`Partitioner::partition`]'s answer when it needs no draw (a key's hash, or the sticky
    /// partition while it still has room), else `None`: then `partition` draws, and only then
    /// needs the list of available partitions.
    pub fn without_draw(
        &self,
        topic: &Topic,
        key: Option<&[u8]>,
        num_partitions: u32,
    ) -> Option<u32> {
        if num_partitions == 0 {
            return None;
        }
        if let (Some(key), false) = (key, self.ignore_keys) {
            return partition_for_key(key, num_partitions);
        }
        let s = self.sticky(topic)?;
        (s.partition < num_partitions && !s.switch).then_some(s.partition)
    }

    /// Tells the sticky partitioner that a record with `key` grew `topic`/`partition`'s batch by
    /// `bytes`, and whether that batch is now full (`batch_full`). Decides, as Kafka's
    /// `updatePartitionInfo`, whether the next sticky record switches partition: after
    /// `batch.size` bytes if the batch is full, after twice `batch.size` in any case. A keyed
    /// record (unless keys are ignored) is not the sticky partitioner's and does not count.
    pub fn on_append(
        &mut self,
        topic: &Topic,
        key: Option<&[u8]>,
        partition: u32,
        bytes: usize,
        batch_full: bool,
    ) {
        if key.is_some() && !self.ignore_keys {
            return;
        }
        let size = self.sticky_batch_size;
        if let Some(s) = self.sticky_mut(topic) {
            if s.partition == partition && !s.switch {
                s.produced_bytes = s.produced_bytes.saturating_add(bytes);
                s.switch = s.produced_bytes >= size.saturating_mul(2)
                    || (s.produced_bytes >= size && batch_full);
            }
        }
    }

    /// The current sticky partition of a topic, if one was chosen.
    pub fn sticky_partition(&self, topic: &Topic) -> Option<u32> {
        self.sticky(topic).map(|s| s.partition)
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

    /// The topic the tests send to (a new allocation each time: compared by its bytes).
    fn t() -> Topic {
        Topic::from("t")
    }

    /// `without_draw` answers exactly when `partition` would not draw, and with its answer: the
    /// producer lists the available partitions only when it returns `None`.
    #[test]
    fn without_draw_answers_exactly_when_partition_would_not_draw() {
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(7), 1_000, false);
        let (mut quick, mut drawn) = (0, 0);
        for i in 0..300u32 {
            let key = (i % 7 == 0).then(|| i.to_be_bytes());
            let key = key.as_ref().map(|k| &k[..]);
            let answer = p.without_draw(&t(), key, 6);
            let before = p.rng.get_word_pos();
            let chosen = p.partition(&t(), key, 6, &[1, 3, 5]).expect("6 partitions");
            let drew = p.rng.get_word_pos() != before;
            assert_eq!(answer.is_none(), drew, "record {i}: {answer:?}, drew {drew}");
            if let Some(a) = answer {
                assert_eq!(a, chosen, "record {i}");
                quick += 1;
            } else {
                assert!([1, 3, 5].contains(&chosen), "a draw picks an available partition");
                drawn += 1;
            }
            p.on_append(&t(), key, chosen, 90, i % 4 == 0);
        }
        assert!(quick > 200 && drawn > 12, "both paths taken: {quick} quick, {drawn} drawn");
        assert_eq!(p.without_draw(&t(), None, 0), None, "no partitions: no answer");
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
            let got = p.partition(&t(), Some(b"foobar"), n, &[]);
            assert_eq!(got, Some((to_positive(-790_332_482) as u32) % n));
        }
    }

    /// Records per sticky period of a run of 100-byte null-key records with `batch.size` 1000,
    /// where `full(n)` says whether the batch is full after the period's `n`th record.
    fn periods(seed: u64, full: impl Fn(usize) -> bool) -> Vec<(u32, usize)> {
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(seed), 1000, false);
        let mut runs: Vec<(u32, usize)> = Vec::new();
        for _ in 0..200 {
            let part = p.partition(&t(), None, 12, &[]).unwrap();
            if p.sticky(&t()).expect("drawn").produced_bytes == 0 {
                runs.push((part, 0)); // a draw: a new period
            }
            let run = runs.last_mut().expect("the first record draws");
            run.1 += 1;
            p.on_append(&t(), None, part, 100, full(run.1));
        }
        runs
    }

    /// Kafka switches after `batch.size` bytes only when the batch is full: with batches that
    /// never are (linger sends them first, or the next record does not fit), after twice.
    #[test]
    fn null_keys_switch_at_batch_size_only_on_a_full_batch_and_always_at_twice() {
        let exact = periods(7, |n| n % 10 == 0);
        let open = periods(7, |_| false);
        assert_eq!(exact, periods(7, |n| n % 10 == 0), "same seed, same choices");
        let whole = |runs: &[(u32, usize)]| runs[..runs.len() - 1].to_vec();
        assert!(whole(&exact).iter().all(|r| r.1 == 10), "a full batch at 1000 bytes: {exact:?}");
        assert!(whole(&open).iter().all(|r| r.1 == 20), "never full: twice batch.size: {open:?}");
        assert!(exact.len() >= 19 && open.len() >= 9, "switches over time: {exact:?} {open:?}");
        // Full at 500 bytes (before batch.size): no switch until batch.size is reached and the
        // batch is full again.
        let early = periods(7, |n| n % 5 == 0);
        assert!(whole(&early).iter().all(|r| r.1 == 10), "{early:?}");
    }

    /// Keyed records are hashed, not the sticky partitioner's: they do not move its count even
    /// when they land on the sticky partition; with `partitioner.ignore.keys` they do.
    #[test]
    fn keyed_records_do_not_count_toward_the_switch_unless_keys_are_ignored() {
        for ignore_keys in [false, true] {
            let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(5), 1000, ignore_keys);
            let sticky = p.partition(&t(), None, 6, &[]).unwrap();
            for _ in 0..30 {
                p.on_append(&t(), Some(b"k"), sticky, 100, true);
            }
            let moved = p.without_draw(&t(), None, 6).is_none();
            assert_eq!(moved, ignore_keys, "ignore_keys {ignore_keys}: 3000 keyed bytes");
        }
    }

    /// Each topic's sticky state is its own, however sends to several topics interleave: a
    /// topic draws (its `without_draw` says `None`) at the same sends whether it is written
    /// alone or between others (the first topic's state and the others' are kept apart).
    #[test]
    fn topics_keep_their_own_sticky_state_when_interleaved() {
        let topics: Vec<Topic> = ["a", "b", "c"].into_iter().map(Topic::from).collect();
        // Send i of topic k: (bytes appended, whether the batch is then full).
        let send = |k: usize, i: usize| (50 + 37 * ((i * (k + 3)) % 11), (i + k).is_multiple_of(4));
        let draws_alone = |k: usize| -> Vec<bool> {
            let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(9), 1000, false);
            (0..120)
                .map(|i| {
                    let drew = p.without_draw(&topics[k], None, 6).is_none();
                    let part = p.partition(&topics[k], None, 6, &[]).expect("6 partitions");
                    let (bytes, full) = send(k, i);
                    p.on_append(&topics[k], None, part, bytes, full);
                    drew
                })
                .collect()
        };
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(9), 1000, false);
        let mut draws: Vec<Vec<bool>> = vec![Vec::new(); 3];
        let mut sent = [0usize; 3];
        for step in 0..360usize {
            let k = (step * 7 + step / 5) % 3; // an irregular interleaving
            if sent[k] == 120 {
                continue;
            }
            let drew = p.without_draw(&topics[k], None, 6).is_none();
            let part = p.partition(&topics[k], None, 6, &[]).expect("6 partitions");
            assert_eq!(p.sticky_partition(&topics[k]), Some(part), "topic {k}");
            let (bytes, full) = send(k, sent[k]);
            p.on_append(&topics[k], None, part, bytes, full);
            draws[k].push(drew);
            sent[k] += 1;
        }
        for (k, d) in draws.iter().enumerate() {
            let alone = draws_alone(k);
            assert_eq!(d[..], alone[..d.len()], "topic {k}");
            assert!(d.len() > 60 && d.iter().filter(|&&x| x).count() > 5, "topic {k}: {d:?}");
        }
    }

    #[test]
    fn sticky_prefers_available_partitions_and_ignore_keys() {
        let mut p = Partitioner::new(ChaCha8Rng::seed_from_u64(3), 10, true);
        for _ in 0..100 {
            let part = p.partition(&t(), Some(b"k"), 8, &[2, 5]).unwrap();
            assert!(part == 2 || part == 5);
            p.on_append(&t(), Some(b"k"), part, 10, false);
        }
    }
}
