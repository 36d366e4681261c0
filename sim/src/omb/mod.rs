//! `cargo simulate omb`: an OpenMessaging Benchmark workload and Kafka driver file mapped onto a
//! scenario, run, and reported in OMB's result JSON (`client::omb::result`).
//!
//! The mapping, as OMB spreads a workload over its workers:
//! - topics `omb-0000`, ... with `partitionsPerTopic` partitions and the driver's
//!   `replicationFactor` (capped at the broker count, with a note);
//! - per topic one producer entry of `producersPerTopic` producers, each offered
//!   `producerRate / (topics × producersPerTopic)` records/s (`"max"` for `producerRate: 0`),
//!   spread over `--workers` client hosts; the driver's producer properties that the scenario
//!   models are copied, the rest are notes;
//! - per topic and subscription a consumer group (`sub-TTT-SSS`) of `consumerPerSubscription`
//!   members, each on its own host, as the scenario runs group members;
//! - the warm-up is excluded by `measure.from`; the run lasts warm-up + test;
//! - `consumerBacklogSizeGB` becomes a prefill of that many bytes per topic that the groups drain
//!   from the earliest offset (capped by `--backlog-max-gb`: the simulated disks hold real bytes);
//! - `topicConfig`'s `min.insync.replicas` becomes the brokers' `min.insync.replicas` (a note says
//!   so), other topic configs the scenario models are the topic's `config`.
//!
//! What the simulator cannot measure is said, never faked: publish delay (a simulated producer
//! sends a record when it is created) is reported as empty lists and a note.

use std::collections::HashMap;
use std::path::Path;

use client::omb::result::{OmbResult, Recorder, ResultHeader};
use client::omb::{self, Driver, KeyDistributor, Note, Workload};
use serde_json::{json, Map, Value};

use crate::history::{History, PollKind, SendOutcome};

/// Producer and consumer settings a scenario models: the scenario's own lists.
const PRODUCER_KEYS: &[&str] = crate::scenario::PRODUCER_SETTINGS;
const CONSUMER_KEYS: &[&str] = crate::scenario::CONSUMER_SETTINGS;
/// Topic configs a scenario's topic takes.
const TOPIC_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
];
/// Properties every Kafka client has that mean nothing in the simulator (its own addresses and
/// timeouts for admin calls): dropped with one note each.
const CLIENT_ONLY_KEYS: &[&str] = &["bootstrap.servers", "default.api.timeout.ms", "client.id"];

/// `cargo simulate omb`'s knobs.
#[derive(Debug, Clone)]
pub struct OmbSim {
    pub brokers: u32,
    /// OMB workers: client hosts producers are spread over.
    pub workers: u32,
    /// A `cluster.host` object (disk, page_cache, nic, link_latency, cores, ...); `None`: NVMe,
    /// 4 GiB page cache, 10 Gb/s, 50 µs links, 8 cores.
    pub host: Option<Value>,
    pub warmup_minutes: Option<f64>,
    pub test_minutes: Option<f64>,
    pub seed: u64,
    /// Backlog (per topic) at most, GiB.
    pub backlog_max_gb: f64,
    /// OMB's stats window, seconds (OMB: 10).
    pub window_s: f64,
}

impl Default for OmbSim {
    fn default() -> Self {
        Self {
            brokers: 3,
            workers: 1,
            host: None,
            warmup_minutes: None,
            test_minutes: None,
            seed: 1,
            backlog_max_gb: 1.0,
            window_s: client::omb::result::WINDOW_S_DEFAULT,
        }
    }
}

/// A workload mapped onto a scenario.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub scenario: Value,
    pub notes: Vec<Note>,
    pub warmup_s: f64,
    pub test_s: f64,
    pub workload: Workload,
    pub driver_name: String,
    pub window_s: f64,
}

fn default_host() -> Value {
    json!({"disk": "nvme", "page_cache": "4GiB", "nic": "10Gbps", "link_latency": "50us", "cores": 8})
}

/// Maps `w` and `d` onto a scenario (JSON, as a scenario file holds it).
pub fn map(w: &Workload, d: &Driver, o: &OmbSim) -> Mapped {
    let mut notes = Vec::new();
    let mut w = w.clone();
    if let Some(m) = o.warmup_minutes {
        notes.push(Note::new("workload.warmupDurationMinutes", format!("overridden: {m}")));
        w.warmup_duration_minutes = m;
    }
    if let Some(m) = o.test_minutes {
        notes.push(Note::new("workload.testDurationMinutes", format!("overridden: {m}")));
        w.test_duration_minutes = m;
    }
    let (mut warmup_s, test_s) = (w.warmup_duration_minutes * 60.0, w.test_duration_minutes * 60.0);
    if omb::backlog_bytes(&w) > 0 && warmup_s > 0.0 {
        // The prefilled backlog is there from the start and the groups drain it at once: a
        // warm-up would hide the drain, which is what a backlog workload measures.
        notes.push(Note::new(
            "workload.warmupDurationMinutes",
            "no warm-up with a backlog: the simulated groups drain it from the start, and the drain is measured",
        ));
        warmup_s = 0.0;
    }
    let (cluster_config, topic_config) = topic_configs(d, &mut notes);
    let rf = replication_factor(d, o.brokers, &mut notes);
    let producer =
        properties(&d.producer_properties(), PRODUCER_KEYS, "producerConfig", &mut notes);
    let consumer =
        properties(&d.consumer_properties(), CONSUMER_KEYS, "consumerConfig", &mut notes);
    let window_s = omb::window_for(&w, o.window_s, &mut notes);
    let workload_notes = workload_notes(&w);
    notes.extend(workload_notes);
    let topics: Vec<Value> = (0..w.topics)
        .map(|t| {
            json!({"name": omb::topic_name("omb", t), "partitions": w.partitions_per_topic,
                   "replication.factor": rf, "config": topic_config})
        })
        .collect();
    let producers = producer_entries(&w, &producer, &mut notes);
    let consumers = consumer_entries(&w, &consumer);
    let prefill = prefill_entries(&w, o.backlog_max_gb, &mut notes);
    let scenario = json!({
        "name": format!("omb-{}", slug(&w.name)),
        "description": format!("Generated by `cargo simulate omb` from the OMB workload \"{}\" and driver \"{}\": {} topic(s) × {} partitions, {} producer(s) and {} subscription(s) × {} consumer(s) per topic, {} B messages, producerRate {}; warm-up {} s (excluded by measure.from), test {} s.",
            w.name, d.name, w.topics, w.partitions_per_topic, w.producers_per_topic, w.subscriptions_per_topic,
            w.consumer_per_subscription, w.message_size, w.producer_rate, warmup_s, test_s),
        "seed": o.seed,
        "duration_s": (warmup_s + test_s).ceil() as u64,
        "settle_timeout_s": 120,
        "measure": {"from": format!("{warmup_s}s")},
        "cluster": {"brokers": o.brokers, "mode": "network",
                    "host": o.host.clone().unwrap_or_else(default_host), "config": cluster_config},
        "topics": topics,
        "workload": {"client_hosts": o.workers, "producers": producers, "consumers": consumers,
                     "prefill": prefill},
    });
    Mapped { scenario, notes, warmup_s, test_s, workload: w, driver_name: d.name.clone(), window_s }
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    if s.is_empty() {
        "workload".into()
    } else {
        s
    }
}

/// Broker-level and topic-level configs from `topicConfig`.
fn topic_configs(d: &Driver, notes: &mut Vec<Note>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut cluster, mut topic) = (Map::new(), Map::new());
    for (k, v) in &d.topic_config {
        let key = format!("driver.topicConfig.{k}");
        if k == "min.insync.replicas" {
            cluster.insert(k.clone(), scalar(v));
            notes.push(Note::new(key, "applied as the brokers' min.insync.replicas (every topic)"));
        } else if TOPIC_KEYS.contains(&k.as_str()) {
            topic.insert(k.clone(), scalar(v));
        } else {
            notes.push(Note::new(key, "not modeled by the simulator; ignored"));
        }
    }
    (cluster, topic)
}

/// A property value as the scenario wants it: a number when it reads as one.
fn scalar(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    match v {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(v),
    }
}

fn replication_factor(d: &Driver, brokers: u32, notes: &mut Vec<Note>) -> u32 {
    let rf = u32::from(d.replication_factor).max(1);
    if rf > brokers {
        notes.push(Note::new(
            "driver.replicationFactor",
            format!("{rf} is more than the {brokers} broker(s): {brokers} used (give --brokers)"),
        ));
        return brokers;
    }
    rf
}

fn properties(
    props: &[(String, String)],
    modeled: &[&str],
    block: &str,
    notes: &mut Vec<Note>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in props {
        if modeled.contains(&k.as_str()) {
            out.insert(k.clone(), scalar(v));
        } else if CLIENT_ONLY_KEYS.contains(&k.as_str()) {
            notes.push(Note::new(
                format!("driver.{block}.{k}"),
                "the simulated cluster's own; ignored",
            ));
        } else {
            notes.push(Note::new(
                format!("driver.{block}.{k}"),
                "not modeled by the simulator; ignored",
            ));
        }
    }
    out
}

fn workload_notes(w: &Workload) -> Vec<Note> {
    let mut notes = Vec::new();
    if w.key_distributor != KeyDistributor::NoKey {
        notes.push(Note::new(
            "workload.keyDistributor",
            "not modeled: simulated records carry no key (the sticky partitioner spreads them)",
        ));
    }
    if w.payload_file.is_some() || w.use_randomized_payloads {
        notes.push(Note::new(
            "workload.payloadFile",
            "the simulator sends generated payloads of messageSize bytes (compression ratios follow them, not the file)",
        ));
    }
    notes.push(Note::new(
        "result.publishDelayLatency",
        "not measured in the simulator: a simulated producer sends each record when it is created",
    ));
    notes
}

fn producer_entries(w: &Workload, props: &Map<String, Value>, notes: &mut Vec<Note>) -> Vec<Value> {
    let rate = match omb::rate_per_producer(w) {
        None => json!("max"),
        Some(r) => {
            let each = r.round().max(1.0) as u64;
            let producers = u64::from(w.topics) * u64::from(w.producers_per_topic);
            if each * producers != w.producer_rate {
                notes.push(Note::new(
                    "workload.producerRate",
                    format!(
                        "{} msg/s over {producers} producers: each offered {each}/s ({} in all)",
                        w.producer_rate,
                        each * producers
                    ),
                ));
            }
            json!(format!("{each}/s"))
        }
    };
    (0..w.topics)
        .map(|t| {
            let mut e = props.clone();
            e.insert("count".into(), json!(w.producers_per_topic));
            e.insert("topic".into(), json!(omb::topic_name("omb", t)));
            e.insert("rate".into(), rate.clone());
            e.insert("record.bytes".into(), json!(w.message_size));
            Value::Object(e)
        })
        .collect()
}

fn consumer_entries(w: &Workload, props: &Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for t in 0..w.topics {
        for s in 0..w.subscriptions_per_topic {
            let mut e = props.clone();
            e.insert("count".into(), json!(w.consumer_per_subscription));
            e.insert("topic".into(), json!(omb::topic_name("omb", t)));
            e.insert("group.id".into(), json!(omb::group_id(t, s)));
            out.push(Value::Object(e));
        }
    }
    out
}

fn prefill_entries(w: &Workload, backlog_max_gb: f64, notes: &mut Vec<Note>) -> Vec<Value> {
    let mut bytes = omb::backlog_bytes(w);
    if bytes == 0 {
        return Vec::new();
    }
    let cap = (backlog_max_gb * (1u64 << 30) as f64) as u64;
    if bytes > cap {
        notes.push(Note::new(
            "workload.consumerBacklogSizeGB",
            format!("{} GiB per topic capped at {backlog_max_gb} GiB (--backlog-max-gb): the simulated disks hold real bytes", w.consumer_backlog_size_gb),
        ));
        bytes = cap;
    }
    notes.push(Note::new(
        "workload.consumerBacklogSizeGB",
        "the backlog is written before the run (prefill) and the groups drain it from the earliest offset while producers run",
    ));
    let records = (bytes / u64::from(w.message_size)).max(1);
    (0..w.topics)
        .map(|t| json!({"topic": omb::topic_name("omb", t), "records": records, "record.bytes": w.message_size}))
        .collect()
}

/// OMB's result from a simulated run's history: publish latency is record created →
/// acknowledged, end-to-end latency record created → polled (each subscription's receipt counts,
/// as in OMB), times in simulated seconds.
pub fn result(h: &History, m: &Mapped, window_s: f64, end_s: f64) -> OmbResult {
    let w = &m.workload;
    let mut rec = Recorder::new(m.warmup_s, window_s, w.subscriptions_per_topic);
    let mut created: HashMap<u64, u64> = HashMap::with_capacity(h.sends.len());
    let mut events: Vec<(u64, Event)> = Vec::with_capacity(h.sends.len() * 2);
    for s in h.sends.iter() {
        created.insert(s.value, s.created_ns());
        match s.outcome() {
            SendOutcome::Acked { at_ns, .. } | SendOutcome::Unconfirmed { at_ns } => events.push((
                at_ns,
                Event::Published { latency_ns: at_ns.saturating_sub(s.created_ns()) },
            )),
            SendOutcome::Failed { at_ns, .. } => events.push((at_ns, Event::Failed)),
            SendOutcome::Pending => {}
        }
    }
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            for v in rs.values() {
                let e2e_ns = created.get(&v).map(|c| p.at_ns.saturating_sub(*c));
                events.push((p.at_ns, Event::Consumed { e2e_ns }));
            }
        }
    }
    // The recorder's backlog follows time order.
    events.sort_by_key(|(t, _)| *t);
    for (t, e) in events {
        let t_s = t as f64 / 1e9;
        match e {
            Event::Published { latency_ns } => rec.published(t_s, latency_ns as f64 / 1e6, None),
            Event::Failed => rec.publish_failed(t_s),
            Event::Consumed { e2e_ns } => rec.consumed(t_s, e2e_ns.map(|n| n as f64 / 1e6)),
        }
    }
    let windows = (((end_s - m.warmup_s) / window_s).floor().max(0.0) as usize).max(1);
    let driver = if m.driver_name.is_empty() { "Kafka" } else { &m.driver_name };
    let mut r = rec.finish(ResultHeader::of(w, driver), windows);
    r.loglab.world = "simulated".into();
    r.loglab.notes = m.notes.clone();
    r
}

enum Event {
    Published {
        latency_ns: u64,
    },
    Failed,
    /// `None`: a prefilled record (its creation time is not in the history).
    Consumed {
        e2e_ns: Option<u64>,
    },
}

/// Reads a workload and a driver file (notes from both).
pub fn load(workload: &Path, driver: &Path) -> Result<(Workload, Driver, Vec<Note>), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let (w, mut notes) = omb::parse_workload(&workload.display().to_string(), &read(workload)?)
        .map_err(|e| e.to_string())?;
    let (d, dn) = omb::parse_driver(&driver.display().to_string(), &read(driver)?)
        .map_err(|e| e.to_string())?;
    notes.extend(dn);
    Ok((w, d, notes))
}

#[cfg(test)]
mod tests;
