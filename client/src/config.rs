//! Producer configuration under Kafka's own names and defaults (Apache Kafka 4.0 producer:
//! `acks=all`, `linger.ms=5`, idempotence on).

use std::collections::BTreeMap;

use records::Compression;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown producer config `{key}`")]
    UnknownKey { key: String },
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
    #[error("config line `{line}` is not key=value")]
    BadLine { line: String },
    #[error("`{key}`: {reason}")]
    Conflict { key: String, reason: String },
}

/// `acks`: how many replicas must have a write before the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no response at all.
    None,
    /// `acks=1`: the leader's log.
    Leader,
    /// `acks=all` / `-1`: every in-sync replica.
    All,
}

impl Acks {
    /// The value sent in a Produce request.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    pub bootstrap_servers: Vec<String>,
    pub client_id: String,
    pub acks: Acks,
    pub linger_ms: u64,
    pub batch_size: usize,
    pub buffer_memory: usize,
    pub max_block_ms: u64,
    pub compression_type: Compression,
    /// `compression.gzip.level` / `compression.zstd.level` (KIP-390); `None` = codec default.
    pub compression_level: Option<i32>,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub enable_idempotence: bool,
    pub max_in_flight_requests_per_connection: u32,
    pub max_request_size: usize,
    pub request_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
    pub partitioner_ignore_keys: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: String::new(),
            acks: Acks::All,
            linger_ms: 5,
            batch_size: 16_384,
            buffer_memory: 33_554_432,
            max_block_ms: 60_000,
            compression_type: Compression::None,
            compression_level: None,
            retries: i32::MAX as u32,
            retry_backoff_ms: 100,
            enable_idempotence: true,
            max_in_flight_requests_per_connection: 5,
            max_request_size: 1_048_576,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            partitioner_ignore_keys: false,
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| invalid(key, value, e.to_string()))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// Parses Java-properties text into (key, value) pairs in file order (the one parser, in
/// kafka-types, shared with the broker's `server.properties`).
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    kafka_types::parse_properties(text).map_err(|e| ConfigError::BadLine { line: e.text })
}

impl ProducerConfig {
    /// Parses `key=value` pairs over the defaults, then applies Kafka's cross-checks:
    /// - idempotence needs `acks=all`, `retries > 0` and `max.in.flight.requests.per.connection <= 5`;
    ///   when `enable.idempotence` was set explicitly a conflict is an error, otherwise idempotence
    ///   is quietly turned off (Kafka 3.2+ behaviour).
    /// - `delivery.timeout.ms >= linger.ms + request.timeout.ms`; an error if set explicitly,
    ///   otherwise raised to that sum.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut c = Self::default();
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            let (key, value) = (k.as_ref().trim(), v.as_ref().trim());
            c.set(key, value)?;
            set.insert(key.to_string(), value.to_string());
        }
        c.reconcile(&set)?;
        Ok(c)
    }

    /// Parses Java-properties-like text ([`parse_properties`]) over the defaults.
    pub fn from_properties(text: &str) -> Result<Self, ConfigError> {
        Self::from_pairs(parse_properties(text)?)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = match value {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(invalid(key, value, "expected 0, 1, all or -1")),
                }
            }
            "linger.ms" => self.linger_ms = parse_num(key, value)?,
            "batch.size" => self.batch_size = parse_num(key, value)?,
            "buffer.memory" => {
                self.buffer_memory = parse_num(key, value)?;
                if self.buffer_memory == 0 {
                    return Err(invalid(key, value, "must be positive"));
                }
            }
            "max.block.ms" => self.max_block_ms = parse_num(key, value)?,
            "compression.type" => {
                self.compression_type = match value {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(invalid(key, value, "expected none, gzip, snappy, lz4 or zstd"))
                    }
                }
            }
            "compression.gzip.level" => {
                let l: i32 = parse_num(key, value)?;
                if !(l == -1 || (1..=9).contains(&l)) {
                    return Err(invalid(key, value, "expected -1 or 1..=9"));
                }
                self.compression_level = (l != -1).then_some(l);
            }
            "compression.zstd.level" => {
                let l: i32 = parse_num(key, value)?;
                if !(-131_072..=22).contains(&l) {
                    return Err(invalid(key, value, "expected -131072..=22"));
                }
                self.compression_level = Some(l);
            }
            "retries" => {
                let r: i64 = parse_num(key, value)?;
                if !(0..=i32::MAX as i64).contains(&r) {
                    return Err(invalid(key, value, "expected 0..=2147483647"));
                }
                self.retries = r as u32;
            }
            "retry.backoff.ms" => self.retry_backoff_ms = parse_num(key, value)?,
            "enable.idempotence" => self.enable_idempotence = parse_bool(key, value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection = parse_num(key, value)?;
                if self.max_in_flight_requests_per_connection == 0 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
            }
            "max.request.size" => {
                self.max_request_size = parse_num(key, value)?;
                if self.max_request_size == 0 {
                    return Err(invalid(key, value, "must be positive"));
                }
            }
            "request.timeout.ms" => self.request_timeout_ms = parse_num(key, value)?,
            "delivery.timeout.ms" => self.delivery_timeout_ms = parse_num(key, value)?,
            "partitioner.ignore.keys" => self.partitioner_ignore_keys = parse_bool(key, value)?,
            _ => return Err(ConfigError::UnknownKey { key: key.to_string() }),
        }
        Ok(())
    }

    fn reconcile(&mut self, set: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let idempotence_explicit = set.contains_key("enable.idempotence");
        if self.enable_idempotence {
            let conflict = if self.acks != Acks::All {
                Some(("acks", "idempotence requires acks=all"))
            } else if self.retries == 0 {
                Some(("retries", "idempotence requires retries > 0"))
            } else if self.max_in_flight_requests_per_connection > 5 {
                Some((
                    "max.in.flight.requests.per.connection",
                    "idempotence requires max.in.flight.requests.per.connection <= 5",
                ))
            } else {
                None
            };
            if let Some((key, reason)) = conflict {
                if idempotence_explicit {
                    return Err(ConfigError::Conflict {
                        key: key.to_string(),
                        reason: reason.to_string(),
                    });
                }
                self.enable_idempotence = false;
            }
        }
        let floor = self.linger_ms.saturating_add(self.request_timeout_ms);
        if self.delivery_timeout_ms < floor {
            if set.contains_key("delivery.timeout.ms") {
                return Err(ConfigError::Conflict {
                    key: "delivery.timeout.ms".to_string(),
                    reason: format!("must be at least linger.ms + request.timeout.ms = {floor}"),
                });
            }
            self.delivery_timeout_ms = floor;
        }
        Ok(())
    }

    /// Every effective setting under its Kafka name (for a run's summary).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.bootstrap_servers.join(",")),
            ("client.id", self.client_id.clone()),
            (
                "acks",
                match self.acks {
                    Acks::None => "0",
                    Acks::Leader => "1",
                    Acks::All => "all",
                }
                .into(),
            ),
            ("linger.ms", self.linger_ms.to_string()),
            ("batch.size", self.batch_size.to_string()),
            ("buffer.memory", self.buffer_memory.to_string()),
            ("max.block.ms", self.max_block_ms.to_string()),
            ("compression.type", self.compression_type.name().to_string()),
            ("retries", self.retries.to_string()),
            ("retry.backoff.ms", self.retry_backoff_ms.to_string()),
            ("enable.idempotence", self.enable_idempotence.to_string()),
            (
                "max.in.flight.requests.per.connection",
                self.max_in_flight_requests_per_connection.to_string(),
            ),
            ("max.request.size", self.max_request_size.to_string()),
            ("request.timeout.ms", self.request_timeout_ms.to_string()),
            ("delivery.timeout.ms", self.delivery_timeout_ms.to_string()),
            ("partitioner.ignore.keys", self.partitioner_ignore_keys.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = ProducerConfig::from_pairs(Vec::<(&str, &str)>::new()).unwrap();
        assert_eq!(c.acks, Acks::All);
        assert_eq!((c.linger_ms, c.batch_size, c.buffer_memory), (5, 16384, 32 << 20));
        assert_eq!((c.max_block_ms, c.retries), (60_000, 2_147_483_647));
        assert!(c.enable_idempotence);
        assert_eq!(c.max_in_flight_requests_per_connection, 5);
        assert_eq!(
            (c.max_request_size, c.request_timeout_ms, c.delivery_timeout_ms),
            (1 << 20, 30_000, 120_000)
        );
        assert_eq!(c.compression_type, Compression::None);
    }

    #[test]
    fn parses_properties() {
        let c = ProducerConfig::from_properties(
            "# a comment\nacks=1\nlinger.ms = 20\nbatch.size=65536\ncompression.type=lz4\nbootstrap.servers=a:9092, b:9092\n",
        )
        .unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!((c.linger_ms, c.batch_size), (20, 65536));
        assert_eq!(c.compression_type, Compression::Lz4);
        assert_eq!(c.bootstrap_servers, vec!["a:9092", "b:9092"]);
        assert!(!c.enable_idempotence, "acks=1 turns default idempotence off");
    }

    #[test]
    fn errors_name_the_key() {
        let e = ProducerConfig::from_pairs([("linger.ms", "soon")]).unwrap_err();
        assert!(e.to_string().contains("linger.ms"), "{e}");
        let e = ProducerConfig::from_pairs([("compression.type", "brotli")]).unwrap_err();
        assert!(e.to_string().contains("compression.type"), "{e}");
        let e = ProducerConfig::from_pairs([("lingerms", "5")]).unwrap_err();
        assert_eq!(e, ConfigError::UnknownKey { key: "lingerms".into() });
        let e = ProducerConfig::from_pairs([("enable.idempotence", "true"), ("acks", "1")])
            .unwrap_err();
        assert!(matches!(e, ConfigError::Conflict { ref key, .. } if key == "acks"), "{e}");
        let e = ProducerConfig::from_pairs([("delivery.timeout.ms", "1000")]).unwrap_err();
        assert!(e.to_string().contains("delivery.timeout.ms"), "{e}");
        assert!(ProducerConfig::from_properties("novalue").is_err());
    }

    #[test]
    fn delivery_timeout_is_raised_when_defaulted() {
        let c = ProducerConfig::from_pairs([("request.timeout.ms", "200000")]).unwrap();
        assert_eq!(c.delivery_timeout_ms, 200_005);
    }
}
