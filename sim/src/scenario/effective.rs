//! The effective configuration (`summary.json`'s `settings`): every setting in force, defaults
//! included, by Kafka's (and Linux's) names — `Serialize` views of a parsed [`Scenario`].

use std::collections::BTreeMap;

use broker::log::LogConfig;
use disk_model::sim::DeviceProfile;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{broker_config, BrokerSpec, ConsumerSpec, OffsetReset, ProducerSpec, Scenario};
use crate::faults::{Fault, FaultAction, RuleSpec};

#[derive(Serialize)]
pub(super) struct Effective<'a> {
    name: &'a str,
    description: &'a str,
    seed: u64,
    duration_s: u64,
    settle_timeout_s: u64,
    sample_ms: u64,
    produce_after_heal_s: u64,
    producers_stop_s: f64,
    measure: Measure,
    cluster: Cluster<'a>,
    topics: Vec<Topic<'a>>,
    workload: Workload<'a>,
    faults: Vec<FaultEntry<'a>>,
    nemesis: Option<Nemesis<'a>>,
    checks: &'a [String],
    expect: BTreeMap<&'a str, &'static str>,
}

#[derive(Serialize)]
struct Measure {
    from_s: Option<f64>,
    warmup_s: f64,
    default: &'static str,
}

#[derive(Serialize)]
struct Cluster<'a> {
    brokers: u32,
    controllers: u32,
    mode: &'static str,
    host: Host<'a>,
    config: Map<String, Value>,
}

#[derive(Serialize)]
struct Host<'a> {
    /// The profile the settings came from (`name (shipped)` or its path) and its `name`.
    profile: Option<&'a str>,
    profile_name: Option<&'a str>,
    disk: &'a str,
    disks: u32,
    disk_profile: &'a DeviceProfile,
    page_cache: u64,
    dirty_ratio: u32,
    dirty_background_ratio: u32,
    dirty_expire_centisecs: u32,
    dirty_writeback_centisecs: u32,
    read_ahead_kb: u32,
    read_ahead_max_kb: u32,
    writeback_chunk_kb: u32,
    torn_writes: bool,
    disk_bytes: Option<u64>,
    nic_bps: u64,
    link_latency_ns: u64,
    cores: Option<u32>,
    cpu_profile: Option<&'a net_model::CpuProfile>,
    clients_share_host: bool,
    #[serde(skip_serializing_if = "no_sources")]
    sources: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Topic<'a> {
    name: &'a str,
    partitions: i32,
    #[serde(rename = "replication.factor")]
    replication_factor: i32,
    config: TopicConfig,
    overrides: &'a BTreeMap<String, String>,
}

/// A topic's log settings by Kafka's topic-level names.
#[derive(Serialize)]
struct TopicConfig {
    #[serde(rename = "segment.bytes")]
    segment_bytes: u32,
    #[serde(rename = "segment.ms")]
    segment_ms: i64,
    #[serde(rename = "index.interval.bytes")]
    index_interval_bytes: u32,
    #[serde(rename = "segment.index.bytes")]
    segment_index_bytes: u32,
    #[serde(rename = "retention.bytes")]
    retention_bytes: i64,
    #[serde(rename = "retention.ms")]
    retention_ms: i64,
    #[serde(rename = "flush.messages")]
    flush_messages: i64,
    #[serde(rename = "flush.ms")]
    flush_ms: i64,
    #[serde(rename = "max.message.bytes")]
    max_message_bytes: u32,
}

/// The broker's log settings by Kafka's broker-level names (then the broker's own effective
/// config on top, see [`broker_config_map`]).
#[derive(Serialize)]
struct BrokerLogConfig {
    #[serde(rename = "log.segment.bytes")]
    segment_bytes: u32,
    #[serde(rename = "log.roll.ms")]
    segment_ms: i64,
    #[serde(rename = "log.index.interval.bytes")]
    index_interval_bytes: u32,
    #[serde(rename = "log.index.size.max.bytes")]
    segment_index_bytes: u32,
    #[serde(rename = "log.retention.bytes")]
    retention_bytes: i64,
    #[serde(rename = "log.retention.ms")]
    retention_ms: i64,
    #[serde(rename = "log.flush.interval.messages")]
    flush_messages: i64,
    #[serde(rename = "log.flush.interval.ms")]
    flush_ms: i64,
    #[serde(rename = "message.max.bytes")]
    max_message_bytes: u32,
    #[serde(rename = "log.flush.offset.checkpoint.interval.ms")]
    checkpoint_interval_ms: u64,
    #[serde(rename = "log.flush.scheduler.interval.ms")]
    flush_scheduler_interval_ms: u64,
}

#[derive(Serialize)]
struct Workload<'a> {
    client_hosts: u32,
    client_nic_bps: u64,
    prefill: Vec<Prefill<'a>>,
    producers: Vec<Producer<'a>>,
    consumers: Vec<Consumer<'a>>,
}

#[derive(Serialize)]
struct Prefill<'a> {
    topic: &'a str,
    records: u64,
    #[serde(rename = "record.bytes")]
    record_bytes: usize,
}

#[derive(Serialize)]
struct Producer<'a> {
    count: u32,
    topic: &'a str,
    rate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pacing: Option<String>,
    host: Option<u32>,
    #[serde(rename = "record.bytes")]
    record_bytes: usize,
    acks: &'static str,
    #[serde(rename = "linger.ms")]
    linger_ms: u64,
    #[serde(rename = "batch.size")]
    batch_size: usize,
    #[serde(rename = "compression.type")]
    compression: &'static str,
    retries: u32,
    #[serde(rename = "retry.backoff.ms")]
    retry_backoff_ms: u64,
    #[serde(rename = "request.timeout.ms")]
    request_timeout_ms: u64,
    #[serde(rename = "delivery.timeout.ms")]
    delivery_timeout_ms: u64,
    #[serde(rename = "max.in.flight.requests.per.connection")]
    max_in_flight: u32,
    #[serde(rename = "enable.idempotence")]
    idempotence: bool,
}

#[derive(Serialize)]
struct Consumer<'a> {
    count: u32,
    topic: &'a str,
    #[serde(rename = "group.id")]
    group_id: Option<&'a str>,
    assignment: &'static str,
    #[serde(rename = "session.timeout.ms")]
    session_timeout_ms: Option<u64>,
    #[serde(rename = "heartbeat.interval.ms")]
    heartbeat_interval_ms: Option<u64>,
    #[serde(rename = "max.poll.interval.ms")]
    max_poll_interval_ms: Option<u64>,
    #[serde(rename = "partition.assignment.strategy")]
    assignment_strategy: Option<&'a str>,
    #[serde(rename = "group.instance.id")]
    instance_id: Option<&'a str>,
    #[serde(rename = "enable.auto.commit")]
    auto_commit: Option<bool>,
    #[serde(rename = "max.partition.fetch.bytes")]
    max_partition_fetch_bytes: usize,
    #[serde(rename = "fetch.max.wait.ms")]
    fetch_max_wait_ms: u64,
    #[serde(rename = "auto.offset.reset")]
    auto_offset_reset: &'static str,
    #[serde(rename = "retry.backoff.ms")]
    retry_backoff_ms: u64,
    #[serde(rename = "request.timeout.ms")]
    request_timeout_ms: u64,
    #[serde(rename = "check.crcs")]
    check_crcs: bool,
}

/// A timeline entry; a request fault with its rule as written.
#[derive(Serialize)]
struct FaultEntry<'a> {
    at_s: f64,
    fault: &'a str,
    for_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a RuleSpec>,
}

#[derive(Serialize)]
struct Nemesis<'a> {
    faults: Vec<&'static str>,
    targets: Vec<String>,
    count: u32,
    from_s: f64,
    until_s: f64,
    min_s: f64,
    max_s: f64,
    #[serde(rename = "slow_disk.factor")]
    slow_disk_factor: u32,
    #[serde(rename = "slow_nic.bps")]
    slow_nic_bps: u64,
    request_faults: &'a [RuleSpec],
    salt: String,
}

fn no_sources(s: &&BTreeMap<String, String>) -> bool {
    s.is_empty()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl<'a> Effective<'a> {
    pub(super) fn of(sc: &'a Scenario) -> Self {
        let h = &sc.host;
        let pc = &h.page_cache;
        Effective {
            name: &sc.name,
            description: &sc.description,
            seed: sc.seed,
            duration_s: sc.duration_s,
            settle_timeout_s: sc.settle_timeout_s,
            sample_ms: sc.sample_ms,
            produce_after_heal_s: sc.produce_after_heal_s,
            producers_stop_s: seconds(sc.producers_stop_ns()),
            measure: Measure {
                from_s: sc.measure_from_ns.map(seconds),
                warmup_s: seconds(sc.measure_warmup_ns),
                default: "from the first acknowledgement (or poll) to when producers stop",
            },
            cluster: Cluster {
                brokers: sc.brokers,
                controllers: sc.controllers,
                mode: sc.mode.name(),
                host: Host {
                    profile: h.profile.as_deref(),
                    profile_name: h.profile_name.as_deref(),
                    disk: &h.device.name,
                    disks: h.disks,
                    disk_profile: &h.device,
                    page_cache: pc.capacity_bytes,
                    dirty_ratio: pc.dirty_ratio,
                    dirty_background_ratio: pc.dirty_background_ratio,
                    dirty_expire_centisecs: pc.dirty_expire_centisecs,
                    dirty_writeback_centisecs: pc.dirty_writeback_centisecs,
                    read_ahead_kb: pc.read_ahead_kb,
                    read_ahead_max_kb: pc.read_ahead_max_kb,
                    writeback_chunk_kb: pc.writeback_chunk_kb,
                    torn_writes: h.torn_writes,
                    disk_bytes: h.disk_bytes,
                    nic_bps: h.nic_bps,
                    link_latency_ns: h.link_latency_ns,
                    cores: h.cores,
                    cpu_profile: h.cores.map(|_| &h.cpu),
                    clients_share_host: h.clients_share_host,
                    sources: &h.sources,
                },
                config: broker_config_map(&sc.broker),
            },
            topics: sc.topics.iter().map(Topic::of).collect(),
            workload: Workload {
                client_hosts: sc.client_hosts,
                client_nic_bps: sc.client_nic_bps,
                prefill: sc
                    .prefill
                    .iter()
                    .map(|p| Prefill {
                        topic: &p.topic,
                        records: p.records,
                        record_bytes: p.record_bytes,
                    })
                    .collect(),
                producers: sc.producers.iter().map(Producer::of).collect(),
                consumers: sc.consumers.iter().map(Consumer::of).collect(),
            },
            faults: sc.faults.iter().map(FaultEntry::of).collect(),
            nemesis: sc.nemesis.as_ref().map(Nemesis::of),
            checks: &sc.checks,
            expect: sc.expect.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }
}

impl<'a> Topic<'a> {
    fn of(t: &'a super::TopicSpec) -> Self {
        let l = &t.log;
        Topic {
            name: &t.name,
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: TopicConfig {
                segment_bytes: l.segment_bytes,
                segment_ms: l.segment_ms,
                index_interval_bytes: l.index_interval_bytes,
                segment_index_bytes: l.segment_index_bytes,
                retention_bytes: l.retention_bytes,
                retention_ms: l.retention_ms,
                flush_messages: l.flush_messages,
                flush_ms: l.flush_ms,
                max_message_bytes: l.max_message_bytes,
            },
            overrides: &t.overrides,
        }
    }
}

impl BrokerLogConfig {
    fn of(b: &BrokerSpec) -> Self {
        let l: &LogConfig = &b.log;
        BrokerLogConfig {
            segment_bytes: l.segment_bytes,
            segment_ms: l.segment_ms,
            index_interval_bytes: l.index_interval_bytes,
            segment_index_bytes: l.segment_index_bytes,
            retention_bytes: l.retention_bytes,
            retention_ms: l.retention_ms,
            flush_messages: l.flush_messages,
            flush_ms: l.flush_ms,
            max_message_bytes: l.max_message_bytes,
            checkpoint_interval_ms: b.checkpoint_interval_ms,
            flush_scheduler_interval_ms: b.flush_scheduler_interval_ms,
        }
    }
}

/// The broker's log settings, then the broker's own `BrokerConfig::effective()` (every setting
/// by name, as text) built from `cluster.config`, then its three periodic intervals as numbers.
fn broker_config_map(b: &BrokerSpec) -> Map<String, Value> {
    let c = broker_config(b);
    let mut m = match serde_json::to_value(BrokerLogConfig::of(b)) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in c.effective() {
        m.insert(k.to_string(), Value::String(v));
    }
    m.insert("log.retention.check.interval.ms".into(), c.retention_check_interval_ms.into());
    m.insert("log.flush.scheduler.interval.ms".into(), c.flush_scheduler_interval_ms.into());
    m.insert("log.flush.offset.checkpoint.interval.ms".into(), c.checkpoint_interval_ms.into());
    m
}

impl<'a> Producer<'a> {
    fn of(p: &'a ProducerSpec) -> Self {
        Producer {
            count: p.count,
            topic: &p.topic,
            rate: if p.max_rate { "max".to_string() } else { format!("{}/s", p.rate_per_s) },
            pacing: p.pacing_ns.map(|ns| format!("{}us", ns / 1_000)),
            host: p.host,
            record_bytes: p.record_bytes,
            acks: p.acks.name(),
            linger_ms: p.linger_ms,
            batch_size: p.batch_size,
            compression: p.compression.name(),
            retries: p.retries,
            retry_backoff_ms: p.retry_backoff_ms,
            request_timeout_ms: p.request_timeout_ms,
            delivery_timeout_ms: p.delivery_timeout_ms,
            max_in_flight: p.max_in_flight,
            idempotence: p.idempotence,
        }
    }
}

impl<'a> Consumer<'a> {
    fn of(c: &'a ConsumerSpec) -> Self {
        let g = c.group.as_ref();
        Consumer {
            count: c.count,
            topic: &c.topic,
            group_id: c.group_id.as_deref(),
            assignment: match g {
                None => "static: partitions dealt round-robin to the consumers of this entry",
                Some(_) => "group: the client crate's group member (classic protocol), each member on its own host, committing after every poll",
            },
            session_timeout_ms: g.map(|g| g.session_timeout_ms),
            heartbeat_interval_ms: g.map(|g| g.heartbeat_interval_ms),
            max_poll_interval_ms: g.map(|g| g.max_poll_interval_ms),
            assignment_strategy: g.map(|g| g.assignment_strategy.as_str()),
            instance_id: g.and_then(|g| g.instance_id_prefix.as_deref()),
            auto_commit: g.map(|_| false),
            max_partition_fetch_bytes: c.max_partition_fetch_bytes,
            fetch_max_wait_ms: c.fetch_max_wait_ms,
            auto_offset_reset: match c.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
            retry_backoff_ms: c.retry_backoff_ms,
            request_timeout_ms: c.request_timeout_ms,
            check_crcs: true,
        }
    }
}

impl<'a> FaultEntry<'a> {
    fn of(f: &'a Fault) -> Self {
        FaultEntry {
            at_s: seconds(f.at_ns),
            fault: &f.label,
            for_s: f.for_ns.map(seconds),
            rule: match &f.action {
                FaultAction::Request { rule } => Some(rule),
                _ => None,
            },
        }
    }
}

impl<'a> Nemesis<'a> {
    fn of(n: &'a crate::nemesis::NemesisSpec) -> Self {
        Nemesis {
            faults: n.kinds.iter().map(|k| k.name()).collect(),
            targets: n.targets.iter().map(|t| t.name()).collect(),
            count: n.count,
            from_s: seconds(n.from_ns),
            until_s: seconds(n.until_ns),
            min_s: seconds(n.min_ns),
            max_s: seconds(n.max_ns),
            slow_disk_factor: n.slow_disk_factor,
            slow_nic_bps: n.slow_nic_bps,
            request_faults: &n.request_faults,
            salt: format!("{:#x}", crate::nemesis::NEMESIS_SALT),
        }
    }
}
