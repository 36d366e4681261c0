//! The partition log, in Kafka's own on-disk format.
//!
//! request → handler → partition → **log** → storage. Files are reached only through
//! `disk_model::Storage`, so the same code runs on real files and on the simulated disk.
//!
//! - [`config`]: per-log settings by Kafka's names.
//! - [`cleaner`]: log compaction (`cleanup.policy=compact`).
//! - [`index`]: offset and time index math and encodings (pure).
//! - [`segment`]: one `.log` + `.index` + `.timeindex` triple.
//! - [`partition_log`]: segments of one partition: append, read, roll, retention, truncation,
//!   flush policy, recovery.
//! - [`epoch`]: the leader-epoch cache and its checkpoint.
//! - [`file_cache`]: the broker-wide bound on open descriptors (files open on use, close when idle).
//! - [`manager`]: the data directory: partition dirs, clean-shutdown marker, checkpoints.
//! - [`partition_metadata`]: each partition dir's topic id (`partition.metadata`) and the names
//!   of retired (`-delete`) dirs.

pub mod cleaner;
pub mod config;
pub mod epoch;
pub mod file_cache;
pub mod index;
pub mod manager;
pub mod mounts;
pub mod partition_log;
pub mod partition_metadata;
pub mod recompress;
pub mod segment;

pub use config::{CleanupPolicy, LogConfig};
pub use manager::{DataDir, LogManager, LogPoints, TopicPartition};
pub use partition_log::{
    AppendInfo, Log, LogError, OpenOptions, ParsedBatches, ReadInfo, RecoveryReport,
    SegmentSnapshot,
};
