//! The scenario file as written: `Deserialize` types with Kafka's (and Linux's) key names,
//! unknown keys refused (`deny_unknown_fields`), every field optional at this level
//! ([`Opt`]: absent or a valid value). What is required, ranges and cross-field rules are
//! checked when these are lowered into a [`super::Scenario`].
//!
//! The order of fields is the order an "unknown key" error lists them in.

use std::collections::BTreeMap;

use disk_model::sim::DeviceProfile;
use net_model::profile::Measurement;
use net_model::CpuProfile;
use serde::Deserialize;
use serde_json::Value;

use super::units::{Bps, Bytes, Codec, ConfigMap, Dur, Obj, Opt, Prob, Rate, UInt};
use super::{Acks, Mode};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawScenario {
    pub name: Opt<String>,
    pub description: Opt<String>,
    pub seed: Opt<UInt>,
    pub duration_s: Opt<UInt>,
    pub settle_timeout_s: Opt<UInt>,
    pub sample_ms: Opt<UInt>,
    pub produce_after_heal_s: Opt<UInt>,
    pub measure: Opt<Obj<RawMeasure>>,
    pub cluster: Opt<Obj<RawCluster>>,
    pub topics: Opt<Vec<Obj<RawTopic>>>,
    pub workload: Opt<Obj<RawWorkload>>,
    pub faults: Opt<Vec<Obj<RawFault>>>,
    pub request_faults: Opt<Vec<Obj<RawRequestFault>>>,
    pub nemesis: Opt<Obj<RawNemesis>>,
    /// Check names; read by hand for their own messages (`checks[1]: unknown check ...`).
    pub checks: Opt<Value>,
    pub expect: Opt<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMeasure {
    pub from: Opt<Dur>,
    pub warmup: Opt<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    pub brokers: Opt<UInt>,
    pub controllers: Opt<UInt>,
    pub mode: Opt<Mode>,
    pub host: Opt<Obj<RawHost>>,
    pub config: Opt<ConfigMap>,
}

/// `cluster.host`, and a host profile file (`profiles/*.json`, see [`super::profile`]): the
/// same keys, read by this one type.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHost {
    /// A host profile (shipped name or file) the other keys override.
    pub profile: Opt<String>,
    pub name: Opt<String>,
    pub description: Opt<String>,
    /// A built-in device by name (`hdd-7200`, `sata-ssd`, `nvme`) ...
    pub disk: Opt<String>,
    /// ... or a device's own parameters (`disk_model::sim::DeviceProfile`).
    pub device: Opt<Obj<DeviceProfile>>,
    /// Disks per broker (JBOD: one `log.dirs` entry on each), 1..=64.
    pub disks: Opt<UInt>,
    pub page_cache: Opt<Bytes>,
    pub dirty_ratio: Opt<UInt>,
    pub dirty_background_ratio: Opt<UInt>,
    pub dirty_expire_centisecs: Opt<UInt>,
    pub dirty_writeback_centisecs: Opt<UInt>,
    pub read_ahead_kb: Opt<UInt>,
    pub read_ahead_max_kb: Opt<UInt>,
    pub writeback_chunk_kb: Opt<UInt>,
    pub torn_writes: Opt<bool>,
    pub disk_bytes: Opt<Bytes>,
    pub cores: Opt<UInt>,
    /// Per-operation CPU costs (`net_model::CpuProfile`; its `cores` is overridden by `cores`).
    pub cpu: Opt<Obj<CpuProfile>>,
    pub nic: Opt<Bps>,
    pub link_latency: Opt<Dur>,
    /// Clients run on the brokers' machine: one core pool for every broker and client.
    pub clients_share_host: Opt<bool>,
    /// Where each number comes from, by key path or section (`cpu`, `device.flush_ns`).
    pub sources: Opt<BTreeMap<String, String>>,
    /// What `cargo simulate calibrate` measured (`net_model::profile::Measurement` by name).
    pub measurements: Opt<BTreeMap<String, Obj<Measurement>>>,
    /// When, where and how a calibrated profile was measured.
    pub calibration: Opt<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTopic {
    pub name: Opt<String>,
    pub partitions: Opt<UInt>,
    #[serde(rename = "replication.factor")]
    pub replication_factor: Opt<UInt>,
    pub config: Opt<ConfigMap>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWorkload {
    pub producers: Opt<Vec<Obj<RawProducer>>>,
    pub consumers: Opt<Vec<Obj<RawConsumer>>>,
    pub client_hosts: Opt<UInt>,
    pub client_nic: Opt<Bps>,
    pub prefill: Opt<Vec<Obj<RawPrefill>>>,
}

/// A producer entry; the Kafka settings are exactly [`super::PRODUCER_SETTINGS`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProducer {
    pub count: Opt<UInt>,
    pub topic: Opt<String>,
    pub rate: Opt<Rate>,
    pub pacing: Opt<Dur>,
    #[serde(rename = "record.bytes")]
    pub record_bytes: Opt<UInt>,
    pub host: Opt<UInt>,
    pub acks: Opt<Acks>,
    #[serde(rename = "linger.ms")]
    pub linger_ms: Opt<UInt>,
    #[serde(rename = "batch.size")]
    pub batch_size: Opt<UInt>,
    #[serde(rename = "compression.type")]
    pub compression: Opt<Codec>,
    pub retries: Opt<UInt>,
    #[serde(rename = "retry.backoff.ms")]
    pub retry_backoff_ms: Opt<UInt>,
    #[serde(rename = "request.timeout.ms")]
    pub request_timeout_ms: Opt<UInt>,
    #[serde(rename = "delivery.timeout.ms")]
    pub delivery_timeout_ms: Opt<UInt>,
    #[serde(rename = "max.in.flight.requests.per.connection")]
    pub max_in_flight: Opt<UInt>,
    #[serde(rename = "enable.idempotence")]
    pub idempotence: Opt<bool>,
}

/// A consumer entry; the Kafka settings are exactly [`super::CONSUMER_SETTINGS`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConsumer {
    pub count: Opt<UInt>,
    pub topic: Opt<String>,
    #[serde(rename = "group.id")]
    pub group_id: Opt<String>,
    pub host: Opt<UInt>,
    #[serde(rename = "group.instance.id")]
    pub instance_id: Opt<String>,
    #[serde(rename = "max.partition.fetch.bytes")]
    pub max_partition_fetch_bytes: Opt<UInt>,
    #[serde(rename = "fetch.max.wait.ms")]
    pub fetch_max_wait_ms: Opt<UInt>,
    #[serde(rename = "auto.offset.reset")]
    pub auto_offset_reset: Opt<String>,
    #[serde(rename = "retry.backoff.ms")]
    pub retry_backoff_ms: Opt<UInt>,
    #[serde(rename = "request.timeout.ms")]
    pub request_timeout_ms: Opt<UInt>,
    #[serde(rename = "session.timeout.ms")]
    pub session_timeout_ms: Opt<UInt>,
    #[serde(rename = "heartbeat.interval.ms")]
    pub heartbeat_interval_ms: Opt<UInt>,
    #[serde(rename = "max.poll.interval.ms")]
    pub max_poll_interval_ms: Opt<UInt>,
    #[serde(rename = "partition.assignment.strategy")]
    pub assignment_strategy: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPrefill {
    pub topic: Opt<String>,
    pub records: Opt<UInt>,
    #[serde(rename = "record.bytes")]
    pub record_bytes: Opt<UInt>,
}

/// A `faults` entry: `at`, exactly one action key (its value the target) and that action's
/// options. Which options an action takes is checked when lowering ([`RawFault::keys`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFault {
    pub at: Opt<Dur>,
    #[serde(rename = "for")]
    pub for_: Opt<Dur>,
    pub kill: Opt<Value>,
    pub restart: Opt<Value>,
    pub power_loss: Opt<Value>,
    pub pause: Opt<Value>,
    pub leave: Opt<Value>,
    pub stall_poll: Opt<Value>,
    pub slow_disk: Opt<Value>,
    pub disk_error: Opt<Value>,
    pub drop_caches: Opt<Value>,
    pub corrupt_sector: Opt<Value>,
    pub partition: Opt<Value>,
    pub slow_nic: Opt<Value>,
    pub rolling_restart: Opt<Value>,
    pub factor: Opt<UInt>,
    pub kind: Opt<String>,
    pub probability: Opt<Prob>,
    pub times: Opt<UInt>,
    pub path: Opt<String>,
    /// `slow_disk`, `disk_error`, `corrupt_sector`: which of the broker's disks (JBOD), 0-based.
    pub disk: Opt<UInt>,
    pub peers: Opt<String>,
    pub direction: Opt<String>,
    pub port: Opt<UInt>,
    pub every: Opt<Dur>,
    pub down: Opt<Dur>,
    pub bps: Opt<Bps>,
}

impl RawFault {
    /// The keys present, in the order a JSON object's keys iterate (sorted).
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = [
            ("at", self.at.is_some()),
            ("for", self.for_.is_some()),
            ("factor", self.factor.is_some()),
            ("kind", self.kind.is_some()),
            ("probability", self.probability.is_some()),
            ("times", self.times.is_some()),
            ("path", self.path.is_some()),
            ("peers", self.peers.is_some()),
            ("direction", self.direction.is_some()),
            ("port", self.port.is_some()),
            ("every", self.every.is_some()),
            ("down", self.down.is_some()),
            ("bps", self.bps.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| k)
        .chain(super::timeline::ACTIONS.iter().copied().filter(|a| self.target(a).is_some()))
        .collect();
        keys.sort_unstable();
        keys
    }

    /// The value of action key `action` (its target), if present.
    pub fn target(&self, action: &str) -> Option<&Value> {
        match action {
            "kill" => self.kill.get(),
            "restart" => self.restart.get(),
            "power_loss" => self.power_loss.get(),
            "pause" => self.pause.get(),
            "leave" => self.leave.get(),
            "stall_poll" => self.stall_poll.get(),
            "slow_disk" => self.slow_disk.get(),
            "disk_error" => self.disk_error.get(),
            "drop_caches" => self.drop_caches.get(),
            "corrupt_sector" => self.corrupt_sector.get(),
            "partition" => self.partition.get(),
            "slow_nic" => self.slow_nic.get(),
            "rolling_restart" => self.rolling_restart.get(),
            _ => None,
        }
    }
}

/// A `request_faults` entry: `rule` is the broker's own rule JSON, checked by the broker's code.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRequestFault {
    pub at: Opt<Dur>,
    #[serde(rename = "for")]
    pub for_: Opt<Dur>,
    pub broker: Opt<Value>,
    pub rule: Opt<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNemesis {
    pub faults: Opt<Vec<String>>,
    pub targets: Opt<Vec<String>>,
    pub count: Opt<UInt>,
    pub from: Opt<Dur>,
    pub until: Opt<Dur>,
    pub min: Opt<Dur>,
    pub max: Opt<Dur>,
    #[serde(rename = "slow_disk.factor")]
    pub slow_disk_factor: Opt<UInt>,
    #[serde(rename = "slow_nic.bps")]
    pub slow_nic_bps: Opt<Bps>,
    pub minority: Opt<bool>,
    pub request_faults: Opt<Value>,
}
