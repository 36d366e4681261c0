//! Per-log settings, by Kafka's own names and with Kafka's defaults.

use thiserror::Error;

/// `cleanup.policy`: what happens to old segments. Kafka accepts a list; order does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Segments past `retention.ms` / `retention.bytes` are deleted (the default).
    Delete,
    /// Segments are compacted: only the latest record per key is kept (see `log::cleaner`).
    Compact,
    /// Both: compacted, and also deleted by retention.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compact(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn delete(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Kafka's spelling, as `DescribeConfigs` would show it.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Parses `delete`, `compact`, `compact,delete` / `delete,compact` (spaces and case ignored).
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let (mut compact, mut delete) = (false, false);
        for part in s.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }
}

/// Settings of one partition log. Field names are Kafka's topic-level config names with dots
/// replaced; units are last in the name.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` / `log.segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u32,
    /// `segment.ms` / `log.roll.ms`: roll a non-empty active segment older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes` / `log.index.size.max.bytes`: roll when the offset index is this big.
    pub segment_index_bytes: u32,
    /// `retention.bytes` / `log.retention.bytes`: -1 = unlimited.
    pub retention_bytes: i64,
    /// `retention.ms` / `log.retention.ms`: -1 = unlimited.
    pub retention_ms: i64,
    /// `flush.messages` / `log.flush.interval.messages`: fsync after this many messages.
    pub flush_messages: i64,
    /// `flush.ms` / `log.flush.interval.ms`: fsync when the last flush is older than this.
    pub flush_ms: i64,
    /// `max.message.bytes` / `message.max.bytes`: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// `cleanup.policy` / `log.cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` / `log.cleaner.delete.retention.ms`: how long a tombstone survives
    /// after the segment holding it was first cleaned.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` / `log.cleaner.min.cleanable.ratio`: clean a log when
    /// dirty bytes / cleanable bytes reaches this. Always finite, in [0, 1].
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` / `log.cleaner.min.compaction.lag.ms`: a record stays uncompacted
    /// at least this long (segments with newer records are not cleaned).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` / `log.cleaner.max.compaction.lag.ms`: a dirty record older than
    /// this makes the log cleanable whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.insync.replicas`: the ISR size `acks=all` needs (combined mode).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: read by the controller's election.
    pub unclean_leader_election_enable: bool,
    /// `compression.type`: `None` is Kafka's `producer` (batches kept as produced); a codec
    /// makes the broker recompress batches that arrive with another one.
    pub compression_type: Option<records::Compression>,
    /// `message.timestamp.type` / `log.message.timestamp.type`: `LogAppendTime` makes the broker
    /// stamp each batch with its append time.
    pub log_append_time: bool,
}

// `min_cleanable_dirty_ratio` is an f64, but `set` only ever stores finite values, so equality
// is reflexive and `Eq` holds (broker configs containing a `LogConfig` compare with `Eq`).
impl Eq for LogConfig {}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1024 * 1024 + 12,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            compression_type: None,
            log_append_time: false,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown log config key `{key}`")]
    UnknownKey { key: String },
    #[error("config `{key}`: `{value}` is not valid: {why}")]
    BadValue { key: String, value: String, why: &'static str },
}

/// Every topic config this broker knows, with its broker-level synonym (the static default):
/// one definition — [`LogConfig::set`] parses both spellings, [`LogConfig::get`] renders them.
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio"),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
];

/// The smallest segment: one index entry's worth of data plus a batch header.
const SEGMENT_BYTES_MIN: i64 = 14;

impl LogConfig {
    /// Sets one value by its Kafka name (topic-level or broker-level spelling).
    /// Returns `Ok(false)` if the key is not a log setting (so a broker config can pass others on).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let bad =
            |why| ConfigError::BadValue { key: key.to_string(), value: value.to_string(), why };
        let int = || value.trim().parse::<i64>().map_err(|_| bad("not an integer"));
        let in_range = |v: i64, lo: i64, hi: i64| {
            if v < lo || v > hi {
                Err(bad("out of range"))
            } else {
                Ok(v)
            }
        };
        match key {
            "segment.bytes" | "log.segment.bytes" => {
                self.segment_bytes = in_range(int()?, SEGMENT_BYTES_MIN, i32::MAX as i64)? as u32
            }
            "segment.ms" | "log.roll.ms" => self.segment_ms = in_range(int()?, 1, i64::MAX)?,
            "log.roll.hours" => {
                self.segment_ms = in_range(int()?, 1, i64::MAX / 3_600_000)? * 3_600_000
            }
            "index.interval.bytes" | "log.index.interval.bytes" => {
                self.index_interval_bytes = in_range(int()?, 0, i32::MAX as i64)? as u32
            }
            "segment.index.bytes" | "log.index.size.max.bytes" => {
                self.segment_index_bytes = in_range(int()?, 8, i32::MAX as i64)? as u32
            }
            "retention.bytes" | "log.retention.bytes" => {
                self.retention_bytes = in_range(int()?, -1, i64::MAX)?
            }
            "retention.ms" | "log.retention.ms" => {
                self.retention_ms = in_range(int()?, -1, i64::MAX)?
            }
            "log.retention.minutes" => {
                self.retention_ms =
                    in_range(int()?, -1, i64::MAX / 60_000)?.saturating_mul(60_000).max(-1)
            }
            "log.retention.hours" => {
                self.retention_ms =
                    in_range(int()?, -1, i64::MAX / 3_600_000)?.saturating_mul(3_600_000).max(-1)
            }
            "flush.messages" | "log.flush.interval.messages" => {
                self.flush_messages = in_range(int()?, 1, i64::MAX)?
            }
            "flush.ms" | "log.flush.interval.ms" => self.flush_ms = in_range(int()?, 0, i64::MAX)?,
            "max.message.bytes" | "message.max.bytes" => {
                self.max_message_bytes = in_range(int()?, 0, i32::MAX as i64)? as u32
            }
            "cleanup.policy" | "log.cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy::parse(value)
                    .ok_or_else(|| bad("expected delete, compact or compact,delete"))?
            }
            "delete.retention.ms" | "log.cleaner.delete.retention.ms" => {
                self.delete_retention_ms = in_range(int()?, 0, i64::MAX)?
            }
            "min.cleanable.dirty.ratio" | "log.cleaner.min.cleanable.ratio" => {
                let r = value.trim().parse::<f64>().map_err(|_| bad("not a number"))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(bad("out of range [0, 1]"));
                }
                self.min_cleanable_dirty_ratio = r
            }
            "min.compaction.lag.ms" | "log.cleaner.min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = in_range(int()?, 0, i64::MAX)?
            }
            "max.compaction.lag.ms" | "log.cleaner.max.compaction.lag.ms" => {
                self.max_compaction_lag_ms = in_range(int()?, 1, i64::MAX)?
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = in_range(int()?, 1, i32::MAX as i64)? as u32
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("expected true or false")),
                }
            }
            "compression.type" => {
                self.compression_type = match value.trim().to_ascii_lowercase().as_str() {
                    "producer" => None,
                    v => Some(records::Compression::from_name(v).ok_or_else(|| {
                        bad("expected producer, uncompressed, gzip, snappy, lz4 or zstd")
                    })?),
                }
            }
            "message.timestamp.type" | "log.message.timestamp.type" => {
                self.log_append_time = match value.trim() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => return Err(bad("expected CreateTime or LogAppendTime")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Like [`LogConfig::set`] but an unknown key is an error.
    pub fn set_strict(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if self.set(key, value)? {
            Ok(())
        } else {
            Err(ConfigError::UnknownKey { key: key.to_string() })
        }
    }

    /// The value of topic config `key` (a name of [`TOPIC_CONFIGS`]) as Kafka renders it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.as_str().to_string(),
            "compression.type" => {
                self.compression_type.map_or("producer", |c| c.name()).to_string()
            }
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => {
                if self.log_append_time { "LogAppendTime" } else { "CreateTime" }.to_string()
            }
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            _ => return None,
        })
    }

    /// Checks a topic config (Kafka's topic-level name and a valid value); the error says why.
    pub fn check_topic_config(key: &str, value: &str) -> Result<(), ConfigError> {
        if !TOPIC_CONFIGS.iter().any(|(k, _)| *k == key) {
            return Err(ConfigError::UnknownKey { key: key.to_string() });
        }
        LogConfig::default().set_strict(key, value)
    }

    /// Offset-index entries a segment may hold before it must roll.
    pub fn index_entries_max(&self) -> usize {
        (self.segment_index_bytes as usize / super::index::OFFSET_ENTRY_BYTES).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_errors() {
        let mut c = LogConfig::default();
        c.set_strict("log.segment.bytes", "1048576").unwrap();
        c.set_strict("flush.messages", "1").unwrap();
        c.set_strict("log.retention.hours", "1").unwrap();
        assert_eq!((c.segment_bytes, c.flush_messages, c.retention_ms), (1 << 20, 1, 3_600_000));
        assert!(matches!(c.set_strict("segment.bytes", "x"), Err(ConfigError::BadValue { .. })));
        assert!(matches!(
            c.set_strict("segment.bytes", "99999999999"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(c.set_strict("nope", "1"), Err(ConfigError::UnknownKey { .. })));
    }

    #[test]
    fn compaction_keys() {
        let mut c = LogConfig::default();
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        c.set_strict("cleanup.policy", "compact").unwrap();
        assert!(c.cleanup_policy.compact() && !c.cleanup_policy.delete());
        c.set_strict("log.cleanup.policy", "delete, compact").unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert!(matches!(
            c.set_strict("cleanup.policy", "compact,nope"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(c.set_strict("cleanup.policy", ""), Err(ConfigError::BadValue { .. })));
        c.set_strict("delete.retention.ms", "1000").unwrap();
        c.set_strict("log.cleaner.min.cleanable.ratio", "0.25").unwrap();
        c.set_strict("min.compaction.lag.ms", "5").unwrap();
        c.set_strict("max.compaction.lag.ms", "50").unwrap();
        assert_eq!((c.delete_retention_ms, c.min_cleanable_dirty_ratio), (1000, 0.25));
        assert_eq!((c.min_compaction_lag_ms, c.max_compaction_lag_ms), (5, 50));
        for bad in ["NaN", "1.5", "-0.1", "inf", "x"] {
            assert!(
                matches!(
                    c.set_strict("min.cleanable.dirty.ratio", bad),
                    Err(ConfigError::BadValue { .. })
                ),
                "{bad}"
            );
        }
    }
}
