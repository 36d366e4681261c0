//! The topic registry: names, partition counts, ids and per-topic config overrides, persisted in
//! the data directory (`loglab-topics.json`, replaced atomically) so a restart recovers it.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use disk_model::{OpenMode, Storage};
use serde::{Deserialize, Serialize};

use crate::log::epoch::write_atomically;
use crate::log::LogConfig;

pub const REGISTRY_FILE: &str = "loglab-topics.json";
/// Largest registry file we read (bounds a corrupt file).
const REGISTRY_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub partitions: i32,
    /// 16-byte topic id (KIP-516), hex.
    pub id: String,
    /// Topic-level config overrides, by Kafka's topic config names.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Combined mode: where the controller's log created this incarnation
    /// (`TopicImage::created_at`), which orders it against other incarnations of the name.
    /// `None` on a single node and for topics recorded by an older Loglab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
}

impl TopicMeta {
    /// The id's 16 bytes: each pair of hex digits of `id`, 0 for a pair that is not hex. Read
    /// per topic of every Fetch and Metadata answer: the ids [`Registry::new_topic_id`] writes
    /// (32 hex digits, the uuid crate's simple form) by the crate's parser, anything else pair
    /// by pair (`from_str_radix` cost ~800 instructions an id).
    pub fn uuid(&self) -> [u8; 16] {
        if self.id.len() == 32 {
            if let Ok(id) = uuid::Uuid::try_parse(&self.id) {
                return id.into_bytes();
            }
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = self
                .id
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
        }
        out
    }

    pub fn log_config(&self, defaults: &LogConfig) -> LogConfig {
        let mut c = defaults.clone();
        for (k, v) in &self.configs {
            if let Err(e) = c.set(k, v) {
                tracing::warn!(key = %k, error = %e, "ignoring bad stored topic config");
            }
        }
        c
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub topics: BTreeMap<String, TopicMeta>,
    /// Next producer id InitProducerId hands out (kept across restarts).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Counter mixed into topic ids.
    #[serde(default)]
    pub ids_issued: u64,
    /// Single node: dynamic broker configs by resource (`""` or this broker's id); see
    /// `api/dynamic_configs.rs`. Not written while empty (older files stay byte-identical).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// Kafka's rule: 1-249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} chars, the limit is 249", name.len()));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!("topic name contains illegal character {c:?}"));
    }
    Ok(())
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Registry {
    pub async fn load(storage: &dyn Storage, root: &Path) -> io::Result<Self> {
        let path = root.join(REGISTRY_FILE);
        if !storage.exists(&path).await? {
            return Ok(Self::default());
        }
        let file = storage.open(&path, OpenMode::Existing).await?;
        let len = usize::try_from(file.len()).unwrap_or(usize::MAX).min(REGISTRY_BYTES_MAX);
        let bytes = file.read_at(0, len).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path:?}: {e}")))
    }

    pub async fn store(&self, storage: &dyn Storage, root: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        write_atomically(storage, root, REGISTRY_FILE, &json).await
    }

    /// A fresh topic id, derived from the name, the time and a counter (deterministic per run).
    pub fn new_topic_id(&mut self, name: &str, now_ms: i64) -> String {
        self.ids_issued += 1;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let a = splitmix(h ^ now_ms as u64);
        let b = splitmix(a ^ self.ids_issued);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4 shape
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: String) -> TopicMeta {
        TopicMeta { partitions: 1, id, configs: BTreeMap::new(), created_at: None }
    }

    proptest::proptest! {
        /// The id's bytes are what the general parser made of each pair of characters: ids as
        /// written, upper case, short ones, and ones with signs, spaces and non-ASCII.
        #[test]
        fn an_id_reads_as_each_pair_parsed(
            id in "[0-9a-fA-F+ g\u{e9}-]{0,34}|[0-9a-fA-F]{32}|[0-9a-f+-]{32}"
        ) {
            let mut want = [0u8; 16];
            for (i, b) in want.iter_mut().enumerate() {
                *b = id
                    .get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
            }
            proptest::prop_assert_eq!(meta(id).uuid(), want);
        }
    }

    #[test]
    fn a_new_id_reads_back_as_its_bytes() {
        let mut r = Registry::default();
        let m = meta(r.new_topic_id("events", 7));
        let uuid = m.uuid();
        assert_eq!(uuid.iter().map(|b| format!("{b:02x}")).collect::<String>(), m.id);
        assert_eq!(uuid[6] >> 4, 4, "version 4 shape");
    }

    #[test]
    fn names() {
        assert!(validate_topic_name("events.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
