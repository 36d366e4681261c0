//! The leader-epoch cache and its `leader-epoch-checkpoint` file (KIP-101/279).
//!
//! Each entry says: leader epoch `e` started writing at offset `o`. A follower that becomes
//! leader-aware asks "where does my epoch end on your log?" (OffsetForLeaderEpoch) and truncates to
//! the answer instead of to its high watermark — the fix for KIP-101's divergence bugs.
//!
//! File format (Kafka's `CheckpointFile`): a version line `0`, a count line, then one
//! `epoch startOffset` line per entry. Written to `.tmp`, fsynced, renamed, directory fsynced.

use std::io;
use std::path::{Path, PathBuf};

use disk_model::{OpenMode, Storage};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Entries kept at most; epochs grow one per leader change, so this is generous.
const ENTRIES_MAX: usize = 100_000;

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
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed.
    /// Only a newer epoch is added (a batch of an older epoch never re-opens it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(last) if epoch <= last.epoch => false,
            _ => {
                // An entry starting at or after the new one's start is stale (log was truncated).
                while self.entries.last().is_some_and(|l| l.start_offset >= start_offset) {
                    self.entries.pop();
                }
                self.entries.push(EpochEntry { epoch, start_offset });
                true
            }
        }
    }

    /// Removes entries whose start offset is ≥ `end_offset` (after the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// After the log start moved to `start_offset`: drop epochs that ended before it and clamp the
    /// first surviving entry's start to it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let first_kept = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if first_kept == 0 {
            return false;
        }
        let mut changed = first_kept > 1;
        self.entries.drain(..first_kept - 1);
        if self.entries[0].start_offset != start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// OffsetForLeaderEpoch: for a requested epoch, the largest epoch ≤ it that we know and the
    /// offset where that epoch ended on this log (the next epoch's start, or `log_end_offset`).
    /// `None` if every known epoch is newer than the request (UNDEFINED_EPOCH in Kafka).
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let idx = self.entries.partition_point(|e| e.epoch <= epoch);
        if idx == 0 {
            return None;
        }
        let found = self.entries[idx - 1];
        let end = self.entries.get(idx).map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    pub fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let version = lines.next().ok_or("empty checkpoint")?;
        if version.trim() != "0" {
            return Err(format!("unknown checkpoint version {version:?}"));
        }
        let count: usize =
            lines.next().ok_or("no count line")?.trim().parse().map_err(|_| "bad count")?;
        if count > ENTRIES_MAX {
            return Err(format!("{count} entries exceeds the limit {ENTRIES_MAX}"));
        }
        let mut cache = EpochCache::default();
        for _ in 0..count {
            let line = lines.next().ok_or("fewer entries than the count")?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or("bad epoch")?;
            let start_offset: i64 =
                parts.next().and_then(|p| p.parse().ok()).ok_or("bad offset")?;
            if cache.latest().is_some_and(|l| l.epoch >= epoch || l.start_offset > start_offset) {
                return Err(format!("entries out of order at epoch {epoch}"));
            }
            cache.entries.push(EpochEntry { epoch, start_offset });
        }
        Ok(cache)
    }

    /// Loads `dir/leader-epoch-checkpoint`; a missing or malformed file gives an empty cache
    /// (logged), as Kafka does — epochs are then re-learned from batches during recovery.
    pub async fn load(storage: &dyn Storage, dir: &Path) -> io::Result<Self> {
        let path = dir.join(CHECKPOINT_FILE);
        if !storage.exists(&path).await? {
            return Ok(Self::default());
        }
        let file = storage.open(&path, OpenMode::Existing).await?;
        let len = usize::try_from(file.len()).unwrap_or(usize::MAX).min(ENTRIES_MAX * 48);
        let bytes = file.read_at(0, len).await?;
        match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(Self::decode) {
            Ok(cache) => Ok(cache),
            Err(why) => {
                tracing::warn!(?path, %why, "ignoring malformed leader-epoch checkpoint");
                Ok(Self::default())
            }
        }
    }

    /// Replaces the checkpoint file atomically and durably.
    pub async fn store(&self, storage: &dyn Storage, dir: &Path) -> io::Result<()> {
        write_atomically(storage, dir, CHECKPOINT_FILE, self.encode().as_bytes()).await
    }
}

/// Write-to-temp, fsync, rename, fsync the directory: the file is either old or new after a crash.
pub async fn write_atomically(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    if storage.exists(&tmp).await? {
        storage.remove_file(&tmp).await?;
    }
    let file = storage.open(&tmp, OpenMode::CreateNew).await?;
    file.append(data).await?;
    file.sync().await?;
    drop(file);
    storage.rename(&tmp, &dir.join(name)).await?;
    storage.sync_dir(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_lookup() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "same epoch does not move");
        assert!(c.assign(2, 10));
        assert!(c.assign(3, 20));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 10)));
        assert_eq!(c.end_offset_for(1, 30), Some((0, 10)), "unknown epoch maps to the one before");
        assert_eq!(c.end_offset_for(3, 30), Some((3, 30)));
        assert!(c.truncate_from_end(20));
        assert_eq!(c.latest(), Some(EpochEntry { epoch: 2, start_offset: 10 }));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 2, start_offset: 12 }]);
        assert_eq!(c.end_offset_for(1, 30), None);
        let back = EpochCache::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(EpochCache::decode("0\n2\n1 5\n0 9\n").is_err());
        assert!(EpochCache::decode("0\n99999999\n").is_err());
    }
}
