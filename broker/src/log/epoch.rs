//! The leader-epoch cache and its `leader-epoch-checkpoint` file (KIP-101/279). The cache's rules
//! are `kafka_types::EpochCache`'s; this module adds the file.
//!
//! Each entry says: leader epoch `e` started writing at offset `o`. A follower that becomes
//! leader-aware asks "where does my epoch end on your log?" (OffsetForLeaderEpoch) and truncates to
//! the answer instead of to its high watermark — the fix for KIP-101's divergence bugs.
//!
//! File format (Kafka's `CheckpointFile`): a version line `0`, a count line, then one
//! `epoch startOffset` line per entry. Written to `.tmp`, fsynced, renamed, directory fsynced.

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use disk_model::{OpenMode, Storage};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Entries a checkpoint may hold: the cache's own limit.
const ENTRIES_MAX: usize = kafka_types::epoch::ENTRIES_MAX;

pub use kafka_types::EpochEntry;

/// The leader-epoch cache of one partition log: `kafka_types::EpochCache` (its rules, through
/// `Deref`) plus its checkpoint file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache(kafka_types::EpochCache);

impl Deref for EpochCache {
    type Target = kafka_types::EpochCache;
    fn deref(&self) -> &kafka_types::EpochCache {
        &self.0
    }
}

impl DerefMut for EpochCache {
    fn deref_mut(&mut self) -> &mut kafka_types::EpochCache {
        &mut self.0
    }
}

impl EpochCache {
    pub fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries().len());
        for e in self.entries() {
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
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let line = lines.next().ok_or("fewer entries than the count")?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or("bad epoch")?;
            let start_offset: i64 =
                parts.next().and_then(|p| p.parse().ok()).ok_or("bad offset")?;
            entries.push(EpochEntry { epoch, start_offset });
        }
        let cache = kafka_types::EpochCache::from_entries(entries).ok_or("entries out of order")?;
        Ok(Self(cache))
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
        assert_eq!(c.end_offset_for(1, 30), Some((1, 12)), "older than all: the first start");
        let back = EpochCache::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(EpochCache::decode("0\n2\n1 5\n0 9\n").is_err());
        assert!(EpochCache::decode("0\n99999999\n").is_err());
    }
}
