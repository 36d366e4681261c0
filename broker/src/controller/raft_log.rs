//! The controller's Raft log and hard state on disk, under `<data-dir>/__cluster_metadata-0/`
//! (Kafka's directory name for the metadata log), through `disk_model::Storage` only.
//!
//! - `raft.log`: entries appended as `[len u32 BE][crc32c(body) u32 BE][body: serde_json Entry]`.
//!   A suffix replaced by a new leader is cut with `truncate` before the new entries go on.
//! - `quorum-state`: the `HardState` (term, vote, commit) as JSON, replaced atomically
//!   (temp + fsync + rename + dir fsync), as Kafka's `quorum-state` file.
//!
//! Raft requires both to be durable before the messages of the same `Ready` are sent, so
//! [`RaftStore::persist`] fsyncs before it returns. Recovery reads the log from the start,
//! keeps the longest prefix of whole, CRC-valid, contiguous entries and cuts the rest (a torn
//! tail from a crash mid-append). Bounded: `log_bytes_max` (no snapshots yet, so the log is the
//! whole history; past the bound the controller refuses to persist and stops rather than lose
//! entries) and the state file's size.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::raft::{Entry, HardState};
use disk_model::{FileRef, OpenMode, Storage};

pub const METADATA_DIR: &str = "__cluster_metadata-0";
pub const LOG_FILE: &str = "raft.log";
pub const STATE_FILE: &str = "quorum-state";
const STATE_BYTES_MAX: usize = 64 * 1024;
const HEADER_BYTES: usize = 8;
const READ_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("metadata log would grow to {len} bytes, beyond {max}")]
    LogFull { len: u64, max: u64 },
    #[error("corrupt {STATE_FILE}: {0}")]
    BadState(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    pub log_bytes_max: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self { log_bytes_max: 256 << 20 }
    }
}

/// One entry's bytes on disk.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let body = serde_json::to_vec(e).expect("an Entry always serializes");
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The longest valid prefix of a log file: its entries (contiguous from index 1, terms never
/// going back), each entry's start position, and the prefix's length in bytes. Pure.
pub fn parse_log(bytes: &[u8]) -> (Vec<Entry>, Vec<u64>, u64) {
    let (mut entries, mut positions, mut pos) = (Vec::<Entry>::new(), Vec::new(), 0usize);
    while let Some(head) = bytes.get(pos..pos + HEADER_BYTES) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let Some(body) = bytes.get(pos + HEADER_BYTES..pos + HEADER_BYTES + len) else { break };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(e) = serde_json::from_slice::<Entry>(body) else { break };
        let contiguous =
            e.index == entries.len() as u64 + 1 && entries.last().is_none_or(|l| l.term <= e.term);
        if !contiguous {
            break;
        }
        positions.push(pos as u64);
        entries.push(e);
        pos += HEADER_BYTES + len;
    }
    (entries, positions, pos as u64)
}

/// What [`RaftStore::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// Bytes cut from the log's tail (torn or corrupt).
    pub truncated_bytes: u64,
}

#[derive(Debug)]
pub struct RaftStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    log: FileRef,
    /// `positions[i]`: where the entry of index `i + 1` starts.
    positions: Vec<u64>,
    limits: StoreLimits,
}

impl RaftStore {
    /// Opens (creating if missing) `<root>/__cluster_metadata-0/` and recovers its contents.
    pub async fn open(
        storage: Arc<dyn Storage>,
        root: &Path,
        limits: StoreLimits,
    ) -> Result<(Self, Recovered), StoreError> {
        let dir = root.join(METADATA_DIR);
        if !storage.exists(&dir).await? {
            storage.create_dir_all(&dir).await?;
            // The directory's own entry must be durable, or a power loss takes the whole log.
            storage.sync_dir(root).await?;
        }
        let hard_state = match storage.open(&dir.join(STATE_FILE), OpenMode::Existing).await {
            Ok(f) => {
                let len = f.len() as usize;
                if len > STATE_BYTES_MAX {
                    return Err(StoreError::BadState(format!("{len} bytes")));
                }
                let bytes = f.read_at(0, len).await?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::BadState(e.to_string()))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => HardState::default(),
            Err(e) => return Err(e.into()),
        };
        let log = storage.open(&dir.join(LOG_FILE), OpenMode::OpenOrCreate).await?;
        let len = log.len();
        if len > limits.log_bytes_max {
            return Err(StoreError::LogFull { len, max: limits.log_bytes_max });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        while (bytes.len() as u64) < len {
            let chunk = log
                .read_at(
                    bytes.len() as u64,
                    READ_CHUNK_BYTES.min((len - bytes.len() as u64) as usize),
                )
                .await?;
            if chunk.is_empty() {
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        let (entries, positions, valid) = parse_log(&bytes);
        let truncated_bytes = len - valid;
        if truncated_bytes > 0 {
            tracing::warn!(valid, truncated_bytes, "metadata log: cutting a torn or corrupt tail");
            log.truncate(valid).await?;
            log.sync().await?;
        }
        storage.sync_dir(&dir).await?;
        let store = Self { storage, dir, log, positions, limits };
        Ok((store, Recovered { hard_state, entries, truncated_bytes }))
    }

    /// The index of the last entry on disk.
    pub fn last_index(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Makes `hard_state` and `entries` durable: entries replace the log from the first one's
    /// index on. Returns only after fsync.
    pub async fn persist(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        if let Some(first) = entries.first() {
            assert!(
                first.index >= 1 && first.index <= self.last_index() + 1,
                "entries from {} do not continue a log ending at {}",
                first.index,
                self.last_index()
            );
            let keep = (first.index - 1) as usize;
            if keep < self.positions.len() {
                let cut = self.positions[keep];
                self.log.truncate(cut).await?;
                self.positions.truncate(keep);
            }
            let mut buf = Vec::new();
            let mut positions = Vec::with_capacity(entries.len());
            let base = self.log.len();
            for e in entries {
                assert_eq!(
                    e.index,
                    self.last_index() + positions.len() as u64 + 1,
                    "entries not contiguous"
                );
                positions.push(base + buf.len() as u64);
                buf.extend(encode_entry(e));
            }
            let len = base + buf.len() as u64;
            if len > self.limits.log_bytes_max {
                return Err(StoreError::LogFull { len, max: self.limits.log_bytes_max });
            }
            self.log.append(&buf).await?;
            self.log.sync().await?;
            self.positions.extend(positions);
        }
        if let Some(hs) = hard_state {
            let data = serde_json::to_vec(&hs).expect("a HardState always serializes");
            crate::log::epoch::write_atomically(
                self.storage.as_ref(),
                &self.dir,
                STATE_FILE,
                &data,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(terms: &[u64]) -> Vec<Entry> {
        let mut t = 0;
        terms
            .iter()
            .enumerate()
            .map(|(i, d)| {
                t += d;
                Entry { term: t, index: i as u64 + 1, data: vec![i as u8; (*d as usize) % 7] }
            })
            .collect()
    }

    proptest! {
        /// Any cut of a valid log parses to exactly the entries wholly before the cut; flipping a
        /// byte never yields an entry that was not written, and keeps every entry before it.
        #[test]
        fn torn_and_corrupt_tails(deltas in proptest::collection::vec(0u64..3, 0..20), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let es = entries(&deltas);
            let bytes: Vec<u8> = es.iter().flat_map(encode_entry).collect();
            let (all, positions, valid) = parse_log(&bytes);
            prop_assert_eq!(&all, &es);
            prop_assert_eq!(valid, bytes.len() as u64);
            let cut = if bytes.is_empty() { 0 } else { cut.index(bytes.len() + 1) };
            let (got, _, valid) = parse_log(&bytes[..cut]);
            let whole = positions.iter().enumerate().filter(|(i, _)| {
                let end = positions.get(i + 1).copied().unwrap_or(bytes.len() as u64);
                end as usize <= cut
            }).count();
            prop_assert_eq!(&got[..], &es[..whole]);
            prop_assert!(valid as usize <= cut);
            if !bytes.is_empty() {
                let at = flip.index(bytes.len());
                let mut bad = bytes.clone();
                bad[at] ^= 0x5a;
                let (got, _, _) = parse_log(&bad);
                let before = positions.iter().filter(|p| **p as usize <= at).count().saturating_sub(1);
                prop_assert!(got.len() >= before);
                prop_assert_eq!(&got[..], &es[..got.len()]);
            }
        }
    }
}
