//! Sparse indexes of a segment, in Kafka's on-disk formats. Pure in-memory logic; the segment
//! appends the encoded entries to the `.index` / `.timeindex` files.
//!
//! - Offset index (`.index`): 8-byte entries, relative offset (u32 BE) → file position (u32 BE).
//!   An entry `(o, p)` says: the batch that starts at position `p` ends at offset `base + o`
//!   (Kafka indexes a batch by its last offset). Looking up target `t` gives the largest entry
//!   with offset ≤ `t`; the batch containing `t` starts at or after that position.
//! - Time index (`.timeindex`): 12-byte entries, timestamp (i64 BE) → relative offset (u32 BE):
//!   the largest timestamp seen so far and the offset of the batch that carried it. Entries are
//!   strictly increasing in timestamp.

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetEntry {
    pub fn encode(&self) -> [u8; OFFSET_ENTRY_BYTES] {
        let mut b = [0u8; OFFSET_ENTRY_BYTES];
        b[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        b[4..].copy_from_slice(&self.position.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Self {
        assert!(b.len() >= OFFSET_ENTRY_BYTES);
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl TimeEntry {
    pub fn encode(&self) -> [u8; TIME_ENTRY_BYTES] {
        let mut b = [0u8; TIME_ENTRY_BYTES];
        b[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Self {
        assert!(b.len() >= TIME_ENTRY_BYTES);
        Self {
            timestamp: i64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// In-memory copy of a segment's offset index.
#[derive(Debug, Clone, Default)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    /// Decodes an index file's bytes. `None` if the entries are not a valid index for a log of
    /// `log_len` bytes (strictly increasing offsets and positions, every position inside the log):
    /// the caller then rebuilds the index from the log.
    pub fn decode(bytes: &[u8], log_len: u64) -> Option<Self> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return None;
        }
        let entries: Vec<_> =
            bytes.chunks_exact(OFFSET_ENTRY_BYTES).map(OffsetEntry::decode).collect();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let inside = entries.iter().all(|e| (e.position as u64) < log_len.max(1));
        (ordered && inside).then_some(Self { entries })
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    /// Adds an entry; entries must grow strictly in both offset and position.
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// Position to start scanning from for `relative_offset`: the position of the largest entry
    /// whose offset is ≤ the target, or 0.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let idx = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].position
        }
    }

    /// Drops entries for batches at or after `position` (after the log was cut there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
    }

    pub fn byte_len(&self) -> u64 {
        (self.entries.len() * OFFSET_ENTRY_BYTES) as u64
    }
}

/// In-memory copy of a segment's time index.
#[derive(Debug, Clone, Default)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// Decodes a time-index file. `None` if entries are not increasing in both fields.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return None;
        }
        let entries: Vec<_> = bytes.chunks_exact(TIME_ENTRY_BYTES).map(TimeEntry::decode).collect();
        let ordered = entries.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        });
        ordered.then_some(Self { entries })
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Whether `entry` would be appended: only a new, larger timestamp is indexed.
    pub fn accepts(&self, entry: &TimeEntry) -> bool {
        match self.entries.last() {
            Some(last) => {
                entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
            }
            None => true,
        }
    }

    pub fn push(&mut self, entry: TimeEntry) {
        assert!(self.accepts(&entry), "time index must grow: {:?} then {entry:?}", self.last());
        self.entries.push(entry);
    }

    /// Relative offset to start searching from for the first record with timestamp ≥ `timestamp`:
    /// the offset of the largest entry with timestamp < target (records before it cannot qualify
    /// only if their batch's max is smaller — so we start at that entry's batch), or 0.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let idx = self.entries.partition_point(|e| e.timestamp < timestamp);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].relative_offset
        }
    }

    /// Drops entries pointing at offsets ≥ `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|e| e.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn byte_len(&self) -> u64 {
        (self.entries.len() * TIME_ENTRY_BYTES) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// lookup agrees with a linear scan over the same entries.
        #[test]
        fn offset_lookup_matches_linear_scan(
            steps in proptest::collection::vec((1u32..50, 1u32..5000), 0..64),
            target in 0u32..4000,
        ) {
            let mut idx = OffsetIndex::default();
            let (mut off, mut pos) = (0u32, 0u32);
            for (d_off, d_pos) in steps {
                off += d_off;
                pos += d_pos;
                idx.push(OffsetEntry { relative_offset: off, position: pos });
            }
            let expected = idx.entries().iter().filter(|e| e.relative_offset <= target).map(|e| e.position).next_back().unwrap_or(0);
            prop_assert_eq!(idx.lookup(target), expected);
            let bytes: Vec<u8> = idx.entries().iter().flat_map(|e| e.encode()).collect();
            let back = OffsetIndex::decode(&bytes, u64::from(pos) + 1).unwrap();
            prop_assert_eq!(back.entries(), idx.entries());
        }

        #[test]
        fn time_lookup_matches_linear_scan(
            steps in proptest::collection::vec((1i64..100, 0u32..5), 0..64),
            target in 0i64..3000,
        ) {
            let mut idx = TimeIndex::default();
            let (mut ts, mut off) = (0i64, 0u32);
            for (d_ts, d_off) in steps {
                ts += d_ts;
                off += d_off;
                idx.push(TimeEntry { timestamp: ts, relative_offset: off });
            }
            let expected = idx.entries().iter().filter(|e| e.timestamp < target).map(|e| e.relative_offset).next_back().unwrap_or(0);
            prop_assert_eq!(idx.lookup(target), expected);
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(OffsetIndex::decode(&[0u8; 7], 100).is_none());
        let e1 = OffsetEntry { relative_offset: 5, position: 10 }.encode();
        let e0 = OffsetEntry { relative_offset: 3, position: 20 }.encode();
        assert!(OffsetIndex::decode(&[e1, e0].concat(), 100).is_none());
        assert!(OffsetIndex::decode(&e1, 5).is_none(), "position past the log's end");
    }
}
