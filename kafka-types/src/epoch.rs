//! The leader-epoch cache (KIP-101/279): which leader epoch started writing at which offset of a
//! partition's log, the rules Kafka's `LeaderEpochFileCache` keeps
//! (`storage/src/main/java/org/apache/kafka/storage/internals/epoch/LeaderEpochFileCache.java`),
//! as pure logic. The broker persists it (`leader-epoch-checkpoint`); the follower's truncation
//! rule (`cluster::isr::truncation_step`) reads it.
//!
//! Invariant: along the entries epochs strictly increase and start offsets never decrease (the
//! operations below keep them strictly increasing; a checkpoint file may hold equal ones).
//!
//! Differences from Kafka, deliberate:
//! - `assign` adds only an epoch newer than the latest one. Kafka also accepts the latest epoch
//!   with a smaller start offset, and an older epoch (dropping every entry of a newer epoch or a
//!   later start). Neither happens to a log that truncates by epoch before appending.
//! - A requested epoch newer than every known one answers the latest epoch and the log end offset.
//!   Kafka answers UNDEFINED there, and cannot reach that branch for its own leader, because a new
//!   leader assigns its epoch at the log end when elected; Loglab's leader assigns it only with its
//!   first batch, so in between the newest known epoch is still the one being written.
//! - At most [`ENTRIES_MAX`] entries; assigning beyond evicts the oldest (Kafka is unbounded).

/// Entries kept at most; one per leader change that wrote, so generous.
pub const ENTRIES_MAX: usize = 100_000;

/// Leader epoch `epoch` started writing at offset `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// A cache holding `entries` if they keep the invariant and the limit, else `None`.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Option<Self> {
        let ordered = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset);
        (ordered && entries.len() <= ENTRIES_MAX).then_some(Self { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    pub fn earliest(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// Records that `epoch` starts at `start_offset`; returns whether the cache changed. Only an
    /// epoch newer than the latest is added; entries starting at or after `start_offset` go
    /// first (their records were truncated away, or their epoch wrote nothing). A negative epoch
    /// (a batch without one) is ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| epoch <= l.epoch) {
            return false;
        }
        while self.latest().is_some_and(|l| l.start_offset >= start_offset) {
            self.entries.pop();
        }
        if self.entries.len() >= ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// The log was truncated to end at `end_offset`: drops entries starting at or after it.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let kept = self.entries.partition_point(|e| e.start_offset < end_offset);
        let changed = kept != self.entries.len();
        self.entries.truncate(kept);
        changed
    }

    /// The log start moved to `start_offset`: drops epochs that ended at or before it and moves
    /// the start of the epoch holding it there (Kafka: "truncateFromStart(6) will retain an entry
    /// at offset 6").
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let at_or_before = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if at_or_before == 0 {
            return false;
        }
        let mut changed = at_or_before > 1;
        self.entries.drain(..at_or_before - 1);
        if self.entries[0].start_offset != start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// OffsetsForLeaderEpoch: for `requested`, the largest known epoch ≤ it and the offset where
    /// that epoch ended on this log (the next epoch's start, or `log_end_offset` for the latest).
    /// A request older than every known epoch answers itself and the first epoch's start (Kafka:
    /// the data below was removed; the requester replicates from there). `None` (Kafka's
    /// UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) for an empty cache or a negative request.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let first = self.earliest()?;
        if requested < 0 {
            return None;
        }
        let after = self.entries.partition_point(|e| e.epoch <= requested);
        if after == 0 {
            return Some((requested, first.start_offset));
        }
        let found = self.entries[after - 1];
        let end = self.entries.get(after).map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let entries =
            entries.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset });
        EpochCache::from_entries(entries.collect()).unwrap()
    }

    #[test]
    fn assign_rules() {
        let mut c = EpochCache::default();
        assert!(c.assign(1, 0));
        assert!(c.assign(3, 5));
        assert!(!c.assign(3, 7), "same epoch does not move");
        assert!(!c.assign(3, 2), "nor back");
        assert!(!c.assign(2, 9), "an older epoch is refused");
        assert!(!c.assign(-1, 9), "a batch without epoch");
        assert!(c.assign(4, 5), "an epoch that wrote nothing is replaced");
        assert_eq!(c, cache(&[(1, 0), (4, 5)]));
        assert!(c.assign(6, 3), "a newer epoch starting before the latest ones replaces them");
        assert_eq!(c, cache(&[(1, 0), (6, 3)]));
    }

    #[test]
    fn truncation() {
        let mut c = cache(&[(1, 0), (3, 5), (4, 8)]);
        assert!(!c.truncate_from_end(9));
        assert!(c.truncate_from_end(8), "an entry starting at the cut has no records left");
        assert_eq!(c, cache(&[(1, 0), (3, 5)]));
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(6));
        assert_eq!(c, cache(&[(3, 6)]));
        assert!(!c.truncate_from_start(6));
        assert!(c.truncate_from_start(7));
        assert_eq!(c, cache(&[(3, 7)]));
        assert!(!cache(&[(3, 7)]).truncate_from_start(2), "below every start: nothing to drop");
    }

    #[test]
    fn end_offset_as_kafka_answers() {
        let c = cache(&[(1, 0), (3, 5), (4, 8)]);
        assert_eq!(c.end_offset_for(4, 10), Some((4, 10)), "the latest ends at the log end");
        assert_eq!(c.end_offset_for(3, 10), Some((3, 8)));
        assert_eq!(c.end_offset_for(2, 10), Some((1, 5)), "unknown: the epoch before it");
        assert_eq!(c.end_offset_for(9, 10), Some((4, 10)), "newer than all: the latest");
        assert_eq!(c.end_offset_for(-1, 10), None);
        assert_eq!(EpochCache::default().end_offset_for(0, 10), None);
        let trimmed = cache(&[(3, 6), (4, 8)]);
        assert_eq!(trimmed.end_offset_for(1, 10), Some((1, 6)), "older than all: first start");
    }

    #[test]
    fn from_entries_checks_order() {
        let e = |epoch, start_offset| EpochEntry { epoch, start_offset };
        assert!(EpochCache::from_entries(vec![e(1, 5), e(0, 9)]).is_none());
        assert!(EpochCache::from_entries(vec![e(0, 5), e(0, 6)]).is_none());
        assert!(EpochCache::from_entries(vec![e(0, 5), e(1, 4)]).is_none());
        assert!(EpochCache::from_entries(vec![e(0, 5), e(1, 5)]).is_some(), "as the file allowed");
        assert!(EpochCache::from_entries(vec![e(0, 5), e(2, 6)]).is_some());
    }
}
