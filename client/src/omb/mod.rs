//! OpenMessaging Benchmark (OMB) workloads and Kafka driver files, as OMB's own framework reads
//! them (`io.openmessaging.benchmark.Workload`, `driver-kafka`'s `Config`), and its result JSON
//! (`TestResult`). Both worlds use this: `perf omb` runs a workload against a real broker
//! ([`run`]), `cargo simulate omb` maps it onto a scenario; both write [`result::OmbResult`].
//!
//! Parsing promises:
//! - Every key OMB defines is read with OMB's defaults (`warmupDurationMinutes` 1,
//!   `backlogDrainRatio` 1.0, `keyDistributor` NO_KEY, `replicationFactor` 1).
//! - A key OMB does not define is reported as a [`Note`], never silently dropped, and never an
//!   error (OMB's own Jackson reader would refuse it; a user editing a file deserves to know).
//! - Kafka property blocks (`topicConfig`, `commonConfig`, `producerConfig`, `consumerConfig`) are
//!   parsed with the same properties parser as the client's configs; which properties a world
//!   honours is that world's decision, reported as notes by the caller.
//! - Limits, each an error naming the field: topics 1..=10,000; partitionsPerTopic 1..=10,000;
//!   messageSize 1..=1 MiB; producersPerTopic 1..=1,000; subscriptionsPerTopic 0..=100;
//!   consumerPerSubscription 0..=1,000; durations 0..=1,440 minutes (test > 0).

pub mod result;
pub mod run;

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::parse_properties;

/// `topics` at most.
pub const TOPICS_MAX: u32 = 10_000;
/// `partitionsPerTopic` at most (the controller's per-topic limit).
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;
/// `messageSize` at most (Kafka's default `max.request.size`).
pub const MESSAGE_SIZE_MAX: u32 = 1 << 20;
/// `producersPerTopic` at most.
pub const PRODUCERS_PER_TOPIC_MAX: u32 = 1_000;
/// `subscriptionsPerTopic` at most.
pub const SUBSCRIPTIONS_PER_TOPIC_MAX: u32 = 100;
/// `consumerPerSubscription` at most.
pub const CONSUMERS_PER_SUBSCRIPTION_MAX: u32 = 1_000;
/// Any duration, in minutes, at most (one day).
pub const DURATION_MINUTES_MAX: f64 = 1_440.0;

#[derive(Debug, Error)]
pub enum OmbError {
    #[error("{file}: not YAML: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: `{field}`: {reason}")]
    Field { file: String, field: String, reason: String },
    #[error("{file}: `{field}`: bad property line: {reason}")]
    Properties { file: String, field: String, reason: String },
}

/// OMB's `KeyDistributorType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyDistributor {
    /// No key: the producer's partitioner spreads records (sticky).
    #[default]
    NoKey,
    /// Keys from a fixed pool of 10,000, in turn.
    KeyRoundRobin,
    /// A random key per record.
    RandomNano,
}

/// An OMB workload file (`workloads/*.yaml`), field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    #[serde(default)]
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    #[serde(default)]
    pub key_distributor: KeyDistributor,
    pub message_size: u32,
    #[serde(default)]
    pub use_randomized_payloads: bool,
    #[serde(default)]
    pub random_bytes_ratio: f64,
    #[serde(default)]
    pub randomized_payload_pool_size: u32,
    #[serde(default)]
    pub payload_file: Option<String>,
    #[serde(default)]
    pub subscriptions_per_topic: u32,
    #[serde(default)]
    pub consumer_per_subscription: u32,
    pub producers_per_topic: u32,
    /// Messages per second over the whole workload (every producer together); 0: as fast as
    /// possible.
    #[serde(default)]
    pub producer_rate: u64,
    /// OMB reads a whole number; fractions are allowed here for short runs.
    #[serde(default, rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_size_gb: f64,
    #[serde(default = "one")]
    pub backlog_drain_ratio: f64,
    pub test_duration_minutes: f64,
    #[serde(default = "one")]
    pub warmup_duration_minutes: f64,
}

fn one() -> f64 {
    1.0
}

const WORKLOAD_KEYS: &[&str] = &[
    "name",
    "topics",
    "partitionsPerTopic",
    "keyDistributor",
    "messageSize",
    "useRandomizedPayloads",
    "randomBytesRatio",
    "randomizedPayloadPoolSize",
    "payloadFile",
    "subscriptionsPerTopic",
    "consumerPerSubscription",
    "producersPerTopic",
    "producerRate",
    "consumerBacklogSizeGB",
    "backlogDrainRatio",
    "testDurationMinutes",
    "warmupDurationMinutes",
];

/// A Kafka driver file (`driver-kafka/*.yaml`): the framework's keys and the Kafka driver's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Driver {
    pub name: String,
    pub driver_class: String,
    pub replication_factor: u16,
    pub reset: bool,
    /// `topicConfig`, parsed, in file order.
    pub topic_config: Vec<(String, String)>,
    /// `commonConfig`: given to producers and consumers (and the admin client) before their own.
    pub common_config: Vec<(String, String)>,
    pub producer_config: Vec<(String, String)>,
    pub consumer_config: Vec<(String, String)>,
}

impl Driver {
    /// What a producer gets: `commonConfig`, then `producerConfig` over it (OMB's order).
    pub fn producer_properties(&self) -> Vec<(String, String)> {
        merged(&self.common_config, &self.producer_config)
    }

    /// What a consumer gets: `commonConfig`, then `consumerConfig` over it.
    pub fn consumer_properties(&self) -> Vec<(String, String)> {
        merged(&self.common_config, &self.consumer_config)
    }
}

fn merged(base: &[(String, String)], over: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        base.iter().filter(|(k, _)| !over.iter().any(|(o, _)| o == k)).cloned().collect();
    out.extend(over.iter().cloned());
    out
}

const DRIVER_KEYS: &[&str] = &[
    "name",
    "driverClass",
    "replicationFactor",
    "reset",
    "topicConfig",
    "commonConfig",
    "producerConfig",
    "consumerConfig",
];

/// Something in the input that was not taken as written: an unknown key, a property a world does
/// not model, a cap. Every note goes to stdout and into the result file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// Where: `workload.foo`, `driver.producerConfig.buffer.memory`, ...
    pub key: String,
    pub what: String,
}

impl Note {
    pub fn new(key: impl Into<String>, what: impl Into<String>) -> Self {
        Self { key: key.into(), what: what.into() }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.what)
    }
}

fn yaml_mapping(file: &str, text: &str) -> Result<serde_norway::Mapping, OmbError> {
    let value: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| OmbError::Yaml { file: file.into(), reason: e.to_string() })?;
    match value {
        serde_norway::Value::Mapping(m) => Ok(m),
        _ => Err(OmbError::Yaml { file: file.into(), reason: "expected a mapping of keys".into() }),
    }
}

fn unknown_keys(
    map: &serde_norway::Mapping,
    known: &[&str],
    prefix: &str,
    what: &str,
) -> Vec<Note> {
    map.keys()
        .map(|k| k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}")))
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| Note::new(format!("{prefix}.{k}"), format!("not a key of {what}; ignored")))
        .collect()
}

/// Parses a workload file's text; `file` names it in errors. Unknown keys come back as notes.
pub fn parse_workload(file: &str, text: &str) -> Result<(Workload, Vec<Note>), OmbError> {
    let map = yaml_mapping(file, text)?;
    let notes = unknown_keys(&map, WORKLOAD_KEYS, "workload", "an OMB workload");
    let known: serde_norway::Mapping = map
        .into_iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| WORKLOAD_KEYS.contains(&k)))
        .collect();
    let w: Workload = serde_path_to_error::deserialize(serde_norway::Value::Mapping(known))
        .map_err(|e| {
            let field = e.path().to_string();
            OmbError::Field { file: file.into(), field, reason: e.into_inner().to_string() }
        })?;
    validate_workload(file, &w)?;
    Ok((w, notes))
}

fn validate_workload(file: &str, w: &Workload) -> Result<(), OmbError> {
    let bad = |field: &str, reason: String| {
        Err(OmbError::Field { file: file.into(), field: field.into(), reason })
    };
    let range = |field: &str, v: u32, lo: u32, hi: u32| {
        if v < lo || v > hi {
            bad(field, format!("{v} is outside {lo}..={hi}"))
        } else {
            Ok(())
        }
    };
    range("topics", w.topics, 1, TOPICS_MAX)?;
    range("partitionsPerTopic", w.partitions_per_topic, 1, PARTITIONS_PER_TOPIC_MAX)?;
    range("messageSize", w.message_size, 1, MESSAGE_SIZE_MAX)?;
    range("producersPerTopic", w.producers_per_topic, 1, PRODUCERS_PER_TOPIC_MAX)?;
    range("subscriptionsPerTopic", w.subscriptions_per_topic, 0, SUBSCRIPTIONS_PER_TOPIC_MAX)?;
    range(
        "consumerPerSubscription",
        w.consumer_per_subscription,
        0,
        CONSUMERS_PER_SUBSCRIPTION_MAX,
    )?;
    if w.subscriptions_per_topic > 0 && w.consumer_per_subscription == 0 {
        return bad("consumerPerSubscription", "a subscription needs at least 1 consumer".into());
    }
    for (field, m, lo_exclusive) in [
        ("testDurationMinutes", w.test_duration_minutes, true),
        ("warmupDurationMinutes", w.warmup_duration_minutes, false),
    ] {
        let low_ok = if lo_exclusive { m > 0.0 } else { m >= 0.0 };
        if !m.is_finite() || !low_ok || m > DURATION_MINUTES_MAX {
            return bad(field, format!("{m} minutes is outside the allowed range"));
        }
    }
    if !(w.consumer_backlog_size_gb >= 0.0 && w.consumer_backlog_size_gb.is_finite()) {
        return bad("consumerBacklogSizeGB", "must be 0 or more".into());
    }
    if !(0.0..=1.0).contains(&w.backlog_drain_ratio) {
        return bad("backlogDrainRatio", "must be within 0.0..=1.0".into());
    }
    if !(0.0..=1.0).contains(&w.random_bytes_ratio) {
        return bad("randomBytesRatio", "must be within 0.0..=1.0".into());
    }
    Ok(())
}

/// Parses a driver file's text. Unknown keys come back as notes; property blocks are parsed.
pub fn parse_driver(file: &str, text: &str) -> Result<(Driver, Vec<Note>), OmbError> {
    let map = yaml_mapping(file, text)?;
    let notes = unknown_keys(&map, DRIVER_KEYS, "driver", "an OMB Kafka driver");
    let get = |k: &str| map.get(serde_norway::Value::String(k.into()));
    let text_of = |k: &str| -> Result<String, OmbError> {
        match get(k) {
            None | Some(serde_norway::Value::Null) => Ok(String::new()),
            Some(serde_norway::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(OmbError::Field {
                file: file.into(),
                field: k.into(),
                reason: "expected a string".into(),
            }),
        }
    };
    let props = |k: &str| -> Result<Vec<(String, String)>, OmbError> {
        parse_properties(&text_of(k)?).map_err(|e| OmbError::Properties {
            file: file.into(),
            field: k.into(),
            reason: e.to_string(),
        })
    };
    let replication_factor = match get("replicationFactor") {
        None | Some(serde_norway::Value::Null) => 1,
        Some(v) => v.as_u64().filter(|rf| (1..=64).contains(rf)).ok_or_else(|| OmbError::Field {
            file: file.into(),
            field: "replicationFactor".into(),
            reason: format!("{v:?} is not within 1..=64"),
        })? as u16,
    };
    let reset = get("reset").and_then(serde_norway::Value::as_bool).unwrap_or(false);
    let driver = Driver {
        name: text_of("name")?,
        driver_class: text_of("driverClass")?,
        replication_factor,
        reset,
        topic_config: props("topicConfig")?,
        common_config: props("commonConfig")?,
        producer_config: props("producerConfig")?,
        consumer_config: props("consumerConfig")?,
    };
    Ok((driver, notes))
}

/// Topic `i`'s name. OMB draws a random prefix per run (`test-topic-<random>-<i>`); Loglab takes
/// the prefix from the caller so a simulated run stays a function of its seed.
pub fn topic_name(prefix: &str, i: u32) -> String {
    format!("{prefix}-{i:04}")
}

/// Subscription `s` of topic `t`: its consumer group id (OMB: `sub-<topic>-<s>`).
pub fn group_id(t: u32, s: u32) -> String {
    format!("sub-{t:03}-{s:03}")
}

/// The rate each producer is offered, messages per second (OMB divides `producerRate` evenly
/// over every producer); `None` for `producerRate: 0`, as fast as possible.
pub fn rate_per_producer(w: &Workload) -> Option<f64> {
    let producers = u64::from(w.topics) * u64::from(w.producers_per_topic);
    (w.producer_rate > 0).then(|| w.producer_rate as f64 / producers as f64)
}

/// The stats window a run uses: `window_s`, or the whole test when the test is shorter (a
/// window that never completes would report nothing), with a note saying so.
pub fn window_for(w: &Workload, window_s: f64, notes: &mut Vec<Note>) -> f64 {
    let test_s = w.test_duration_minutes * 60.0;
    if test_s < window_s {
        notes.push(Note::new(
            "window_s",
            format!("the test ({test_s} s) is shorter than a {window_s} s window: one window of {test_s} s"),
        ));
        return test_s;
    }
    window_s
}

/// The backlog OMB builds before consumers start, in bytes (per subscription; 0: none).
pub fn backlog_bytes(w: &Workload) -> u64 {
    (w.consumer_backlog_size_gb * (1u64 << 30) as f64) as u64
}

#[cfg(test)]
mod tests;
