//! Scenario files: JSON with Kafka's own config names. Parsed by hand so that every unknown key
//! and every bad value is an error naming its path (`workload.producers[0].acks: expected one of
//! 0, 1, all`), and so that every default is known and written into `summary.json`.
//!
//! Scenario files are external input: nothing here panics on them.

use std::collections::BTreeMap;
use std::path::Path;

use broker::log::LogConfig;
use disk_model::sim::{DeviceProfile, PageCacheConfig};
use records::Compression;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::checkers::{Outcome, CHECKS};

#[cfg(test)]
mod golden;
mod request_faults;
pub use crate::faults::{Direction, DiskErrorKind, Fault, FaultAction, Peers, RuleSpec, Target};
use request_faults::{parse_nemesis_rules, parse_request_faults};
pub use request_faults::{parse_rule, REQUEST_FAULTS_MAX};

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

fn invalid(path: &str, msg: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        path: if path.is_empty() { "(top level)".into() } else { path.to_string() },
        msg: msg.into(),
    }
}

type R<T> = Result<T, ScenarioError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    Zero,
    One,
    All,
}

impl Acks {
    pub fn name(self) -> &'static str {
        match self {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

/// What the network and the CPU cost (`cluster.mode`). Both modes run the same path: the
/// unmodified broker behind `net_model::SimNet`, the `client` crate's `Producer`/`Consumer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Storage stories: a free link (the fastest NIC the model takes, zero latency) and free CPU
    /// (no core pool), so only the disk, the page cache and the log shape the run.
    Storage,
    /// Networked runs: `Broker::open` + `server::run` on a madsim node, workloads are the
    /// `client` crate's `Producer`/`Consumer` over `net_model::SimNet`.
    Network,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Storage => "storage",
            Mode::Network => "network",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostSpec {
    pub device: DeviceProfile,
    pub page_cache: PageCacheConfig,
    pub torn_writes: bool,
    /// Total file bytes before ENOSPC; `None` = unlimited.
    pub disk_bytes: Option<u64>,
    /// NIC bandwidth each way, bits per second (network mode only; default 10 Gb/s).
    pub nic_bps: u64,
    /// One-way latency between any two hosts (network mode only; default 50 µs, same rack).
    pub link_latency_ns: u64,
    /// Cores of the broker's CPU model (network mode only): the broker charges its work through
    /// its cost hook to a `net_model::SimCpu` with the default profile and this many cores.
    /// `None` = no CPU model (work costs no simulated time).
    pub cores: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub log: LogConfig,
    pub checkpoint_interval_ms: u64,
    pub flush_scheduler_interval_ms: u64,
    /// `cluster.config` as written (key, value as text), in file order. Network mode builds the
    /// broker's own `BrokerConfig` from it (so every key `broker serve` accepts is accepted).
    pub raw: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level overrides (Kafka's topic config names) over the broker's log config.
    pub overrides: BTreeMap<String, String>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub count: u32,
    pub topic: String,
    /// Records per second, per producer; 0 with `max_rate`.
    pub rate_per_s: u64,
    /// `"rate": "max"`: a closed loop, as fast as the client allows (bounded by `buffer.memory`
    /// and `max.in.flight.requests.per.connection`), like `kafka-producer-perf-test
    /// --throughput -1`. Network mode only.
    pub max_rate: bool,
    /// The client host this producer runs on (`workload.client_hosts`); `None` = spread
    /// round-robin over the client hosts with the other producers.
    pub host: Option<u32>,
    pub record_bytes: usize,
    pub acks: Acks,
    pub linger_ms: u64,
    pub batch_size: usize,
    pub compression: Compression,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub request_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
    pub max_in_flight: u32,
    /// `enable.idempotence` (network mode: the client crate's producer; default false here).
    pub idempotence: bool,
}

/// A consumer group member's settings (Kafka's consumer config names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub max_poll_interval_ms: u64,
    pub rebalance_timeout_ms: Option<u64>,
    /// `partition.assignment.strategy`, as written (comma-separated list).
    pub assignment_strategy: String,
    /// `group.instance.id` prefix: member k of the entry is `<prefix>-<k>` (static membership).
    pub instance_id_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub count: u32,
    pub topic: String,
    pub group_id: Option<String>,
    /// Group settings when `group.id` is set (network mode: each member on its own host).
    pub group: Option<GroupSpec>,
    pub max_partition_fetch_bytes: usize,
    pub fetch_max_wait_ms: u64,
    pub auto_offset_reset: OffsetReset,
    pub retry_backoff_ms: u64,
    pub request_timeout_ms: u64,
    /// The client host this consumer runs on (plain consumers; group members have their own).
    pub host: Option<u32>,
}

/// Records written before the workload's clock starts (a backlog for consumer benchmarks):
/// acks=all, as fast as the client allows, not recorded send by send.
#[derive(Debug, Clone)]
pub struct PrefillSpec {
    pub topic: String,
    pub records: u64,
    pub record_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub duration_s: u64,
    /// After `duration_s` producers stop and faults heal; the run ends when everything settled
    /// or after this long (then liveness fails).
    pub settle_timeout_s: u64,
    /// Period of the metrics sampler (disk gauges, page-cache counters).
    pub sample_ms: u64,
    pub brokers: u32,
    /// Brokers `0..controllers` also run a controller of the metadata quorum.
    pub controllers: u32,
    pub mode: Mode,
    pub host: HostSpec,
    pub broker: BrokerSpec,
    pub topics: Vec<TopicSpec>,
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub faults: Vec<Fault>,
    /// Random faults drawn from each run's seed (see [`crate::nemesis`]).
    pub nemesis: Option<crate::nemesis::NemesisSpec>,
    pub checks: Vec<String>,
    /// Expected outcome per check (default: held).
    pub expect: BTreeMap<String, Outcome>,
    /// Producers keep sending this long after the last fault healed (at least until
    /// `duration_s`), so every run tests that progress resumes after the heal.
    pub produce_after_heal_s: u64,
    /// Start of the throughput/latency measurement window (`measure.from`); `None` = the first
    /// acknowledgement (start-up excluded).
    pub measure_from_ns: Option<u64>,
    /// Client machines (`workload.client_hosts`), each with its own NIC and CPU.
    pub client_hosts: u32,
    /// The client hosts' NIC (`workload.client_nic`, default `cluster.host.nic`).
    pub client_nic_bps: u64,
    pub prefill: Vec<PrefillSpec>,
}

// ------------------------------------------------------------------------------------------ walker

/// What `cluster` says.
struct ClusterParts {
    mode: Mode,
    brokers: u32,
    controllers: u32,
    host: HostSpec,
    broker: BrokerSpec,
}

struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

fn join(path: &str, key: &str) -> String {
    let plain = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (true, false) => format!("[\"{key}\"]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[\"{key}\"]"),
    }
}

fn obj<'a>(v: &'a Value, path: &str, allowed: &[&str]) -> R<Obj<'a>> {
    let map = v.as_object().ok_or_else(|| invalid(path, "expected an object"))?;
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(
                &join(path, k),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(Obj { path: path.to_string(), map })
}

impl<'a> Obj<'a> {
    fn p(&self, key: &str) -> String {
        join(&self.path, key)
    }
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }
    fn req(&self, key: &str) -> R<&'a Value> {
        self.get(key).ok_or_else(|| invalid(&self.p(key), "required"))
    }
    fn string(&self, key: &str, default: Option<&str>) -> R<String> {
        match self.get(key) {
            None => default.map(str::to_string).ok_or_else(|| invalid(&self.p(key), "required")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(&self.p(key), "expected a string")),
        }
    }
    fn uint(&self, key: &str, default: u64, lo: u64, hi: u64) -> R<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => uint_value(v, &self.p(key), lo, hi),
        }
    }
    fn boolean(&self, key: &str, default: bool) -> R<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(&self.p(key), "expected true or false")),
        }
    }
}

fn uint_value(v: &Value, path: &str, lo: u64, hi: u64) -> R<u64> {
    let n = match v {
        Value::Number(n) => {
            n.as_u64().ok_or_else(|| invalid(path, "expected a non-negative integer"))?
        }
        Value::String(s) => {
            s.trim().parse::<u64>().map_err(|_| invalid(path, "expected a non-negative integer"))?
        }
        _ => return Err(invalid(path, "expected a non-negative integer")),
    };
    if n < lo || n > hi {
        return Err(invalid(path, format!("{n} is out of range {lo}..={hi}")));
    }
    Ok(n)
}

/// A number split off its unit suffix: "1.5s" → (1.5 as milli-units…). Kept integral: parses
/// "<int>[.<frac>]<unit>" into an integer count of the smallest unit to avoid float rounding.
fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let idx = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    (s[..idx].trim(), s[idx..].trim())
}

/// Parses a decimal "12", "1.25" into value × scale (scale a power of ten ≥ the fraction digits).
fn decimal_scaled(num: &str, scale: u64) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut v = int.checked_mul(scale)?;
    let mut place = scale;
    for c in frac.chars() {
        let d = c.to_digit(10)? as u64;
        place /= 10;
        if place == 0 {
            return if d == 0 { Some(v) } else { None };
        }
        v = v.checked_add(d * place)?;
    }
    Some(v)
}

/// "10s", "500ms", "2m", "1.5s", or a number of seconds → nanoseconds.
pub fn parse_duration_ns(v: &Value, path: &str) -> R<u64> {
    let bad = || {
        invalid(path, "expected a duration like \"10s\", \"250ms\", \"2m\" or a number of seconds")
    };
    match v {
        Value::Number(n) => {
            let s = n.to_string();
            decimal_scaled(&s, 1_000_000_000).ok_or_else(bad)
        }
        Value::String(s) => {
            let (num, unit) = split_unit(s);
            let scale = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" | "" => 1_000_000_000,
                "m" | "min" => 60_000_000_000,
                _ => return Err(bad()),
            };
            decimal_scaled(num, scale).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// "1GiB", "512MiB", "100MB", "4096" → bytes.
pub fn parse_bytes(v: &Value, path: &str) -> R<u64> {
    let bad = || {
        invalid(path, "expected a size like \"1GiB\", \"512MiB\", \"100MB\" or a number of bytes")
    };
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            let (num, unit) = split_unit(s);
            let scale: u64 = match unit {
                "" | "B" => 1,
                "KB" | "kB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "TB" => 1_000_000_000_000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                _ => return Err(bad()),
            };
            // Allow "1.5GiB": scale the decimal by 1000 first.
            let milli = decimal_scaled(num, 1000).ok_or_else(bad)?;
            milli.checked_mul(scale).map(|b| b / 1000).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// "5000/s" or a number → records per second.
fn parse_rate(v: &Value, path: &str) -> R<u64> {
    let bad = || {
        invalid(path, "expected a rate like \"5000/s\", a number of records per second, or \"max\"")
    };
    let n = match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => s
            .trim()
            .strip_suffix("/s")
            .unwrap_or(s.trim())
            .trim()
            .parse::<u64>()
            .map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if n == 0 || n > 10_000_000 {
        return Err(invalid(path, format!("{n} records/s is out of range 1..=10000000")));
    }
    Ok(n)
}

/// A config value (number, string or bool) as the string Kafka's config parser would see.
fn config_string(v: &Value, path: &str) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(path, "expected a string, number or boolean")),
    }
}

// ------------------------------------------------------------------------------------------ parse

impl Scenario {
    pub fn load(path: &Path) -> R<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> R<Self> {
        let v: Value = serde_json::from_str(text)?;
        let top = obj(
            &v,
            "",
            &[
                "name",
                "description",
                "seed",
                "duration_s",
                "settle_timeout_s",
                "sample_ms",
                "produce_after_heal_s",
                "measure",
                "cluster",
                "topics",
                "workload",
                "faults",
                "request_faults",
                "nemesis",
                "checks",
                "expect",
            ],
        )?;
        let name = top.string("name", None)?;
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("name", "expected letters, digits, '-' or '_'"));
        }
        let description = top.string("description", Some(""))?;
        let seed = top.uint("seed", 1, 0, u64::MAX)?;
        let duration_s = top.uint("duration_s", 10, 1, 86_400)?;
        let settle_timeout_s = top.uint("settle_timeout_s", 30, 1, 3_600)?;
        let sample_ms = top.uint("sample_ms", 100, 1, 60_000)?;
        let produce_after_heal_s = top.uint("produce_after_heal_s", 2, 1, 3_600)?;
        let measure_from_ns = match top.get("measure") {
            None => None,
            Some(m) => {
                let o = obj(m, "measure", &["from"])?;
                match o.get("from") {
                    None => None,
                    Some(v) => Some(parse_duration_ns(v, &o.p("from"))?),
                }
            }
        };

        // cluster
        let ClusterParts { mode, brokers, controllers, host, broker } = parse_cluster(&top)?;

        // topics
        let topics_v =
            top.req("topics")?.as_array().ok_or_else(|| invalid("topics", "expected a list"))?;
        if topics_v.is_empty() {
            return Err(invalid("topics", "at least one topic"));
        }
        let mut topics: Vec<TopicSpec> = Vec::new();
        for (i, t) in topics_v.iter().enumerate() {
            let t = parse_topic(t, i, brokers, &broker, &topics)?;
            topics.push(t);
        }
        let WorkloadParts { client_hosts, client_nic_bps, producers, consumers, prefill } =
            parse_workload(&top, &topics, mode, &host)?;

        // faults: targets are brokers or group members (consumer-N counts every consumer).
        let members: Vec<bool> = consumers
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.group_id.is_some(), c.count as usize))
            .collect();
        let mut faults =
            parse_faults(top.get("faults"), brokers, &members, &topics, duration_s, mode)?;
        // Request faults join the timeline (stable: file faults first on ties); absent, the
        // timeline is exactly the `faults` list.
        faults.extend(parse_request_faults(top.get("request_faults"), brokers, duration_s)?);
        faults.sort_by_key(|f| f.at_ns);
        let nemesis = match top.get("nemesis") {
            None => None,
            Some(v) => Some(parse_nemesis(v, brokers, &members, &topics, duration_s, mode)?),
        };

        // checks
        let checks = parse_checks(top.get("checks"), &producers, &consumers, &prefill, brokers)?;
        let expect = parse_expect(top.get("expect"), &checks)?;

        Ok(Scenario {
            name,
            description,
            seed,
            duration_s,
            settle_timeout_s,
            sample_ms,
            brokers,
            controllers,
            mode,
            host,
            broker,
            topics,
            producers,
            consumers,
            faults,
            nemesis,
            checks,
            expect,
            produce_after_heal_s,
            measure_from_ns,
            client_hosts,
            client_nic_bps,
            prefill,
        })
    }

    /// The scenario a run with `seed` executes: its own faults plus the nemesis' draw for the
    /// seed (sorted by time, file faults first on ties).
    pub fn with_nemesis(&self, seed: u64) -> Scenario {
        let mut sc = self.clone();
        if let Some(n) = &self.nemesis {
            sc.faults.extend(crate::nemesis::draw(n, seed));
            sc.faults.sort_by_key(|f| f.at_ns);
        }
        sc
    }

    /// When the last fault heals, as far as the timeline says before the run (the run itself
    /// records the real time): a fault still active at `duration_s` (a kill or power loss
    /// without a later restart of its target, a `for` reaching past the end, a pause without
    /// `for`) heals at `duration_s`.
    pub fn planned_last_heal_ns(&self) -> u64 {
        let end = self.duration_s * 1_000_000_000;
        let mut last = 0u64;
        for (i, f) in self.faults.iter().enumerate() {
            let heal = match (&f.action, f.for_ns) {
                (FaultAction::Restart, _) => f.at_ns,
                (FaultAction::DropCaches | FaultAction::CorruptSector { .. }, _) => continue,
                (_, Some(d)) => (f.at_ns + d).min(end),
                (FaultAction::Kill | FaultAction::PowerLoss | FaultAction::Leave, None) => {
                    let restarted = self.faults[i + 1..].iter().any(|g| {
                        g.action == FaultAction::Restart
                            && g.target == f.target
                            && g.at_ns >= f.at_ns
                    });
                    if restarted {
                        continue;
                    }
                    end
                }
                (_, None) => end,
            };
            last = last.max(heal.min(end));
        }
        last
    }

    /// When producers stop sending new records: `duration_s`, or later when the last fault
    /// heals less than `produce_after_heal_s` before it (every run produces after its heal).
    pub fn producers_stop_ns(&self) -> u64 {
        let end = self.duration_s * 1_000_000_000;
        let heal = self.planned_last_heal_ns();
        if heal == 0 && self.faults.is_empty() {
            return end;
        }
        end.max(heal + self.produce_after_heal_s * 1_000_000_000)
    }

    /// Every setting in force, defaults included, by Kafka's (and Linux's) names.
    pub fn effective(&self) -> Value {
        let h = &self.host;
        let pc = &h.page_cache;
        json!({
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "settle_timeout_s": self.settle_timeout_s,
            "sample_ms": self.sample_ms,
            "produce_after_heal_s": self.produce_after_heal_s,
            "producers_stop_s": self.producers_stop_ns() as f64 / 1e9,
            "measure": {"from_s": self.measure_from_ns.map(|n| n as f64 / 1e9), "default": "from the first acknowledgement (or poll) to when producers stop"},
            "cluster": {
                "brokers": self.brokers,
                "controllers": self.controllers,
                "mode": self.mode.name(),
                "host": {
                    "disk": h.device.name,
                    "disk_profile": serde_json::to_value(&h.device).unwrap_or(Value::Null),
                    "page_cache": pc.capacity_bytes,
                    "dirty_ratio": pc.dirty_ratio,
                    "dirty_background_ratio": pc.dirty_background_ratio,
                    "dirty_expire_centisecs": pc.dirty_expire_centisecs,
                    "dirty_writeback_centisecs": pc.dirty_writeback_centisecs,
                    "read_ahead_kb": pc.read_ahead_kb,
                    "read_ahead_max_kb": pc.read_ahead_max_kb,
                    "writeback_chunk_kb": pc.writeback_chunk_kb,
                    "torn_writes": h.torn_writes,
                    "disk_bytes": h.disk_bytes,
                    "nic_bps": h.nic_bps,
                    "link_latency_ns": h.link_latency_ns,
                    "cores": h.cores,
                    "cpu_profile": h.cores.map(|c| serde_json::to_value(net_model::CpuProfile::with_cores(c)).unwrap_or(Value::Null)),
                },
                "config": network_broker_config_json(&self.broker),
            },
            "topics": self.topics.iter().map(|t| json!({
                "name": t.name,
                "partitions": t.partitions,
                "replication.factor": t.replication_factor,
                "config": topic_config_json(&t.log),
                "overrides": t.overrides,
            })).collect::<Vec<_>>(),
            "workload": {
                "client_hosts": self.client_hosts,
                "client_nic_bps": self.client_nic_bps,
                "prefill": self.prefill.iter().map(|p| json!({"topic": p.topic, "records": p.records, "record.bytes": p.record_bytes})).collect::<Vec<_>>(),
                "producers": self.producers.iter().map(producer_json).collect::<Vec<_>>(),
                "consumers": self.consumers.iter().map(consumer_json).collect::<Vec<_>>(),
            },
            "faults": self.faults.iter().map(fault_json).collect::<Vec<_>>(),
            "nemesis": self.nemesis.as_ref().map(|n| json!({
                "faults": n.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "targets": n.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
                "count": n.count,
                "from_s": n.from_ns as f64 / 1e9,
                "until_s": n.until_ns as f64 / 1e9,
                "min_s": n.min_ns as f64 / 1e9,
                "max_s": n.max_ns as f64 / 1e9,
                "slow_disk.factor": n.slow_disk_factor,
                "slow_nic.bps": n.slow_nic_bps,
                "request_faults": n.request_faults,
                "salt": format!("{:#x}", crate::nemesis::NEMESIS_SALT),
            })),
            "checks": self.checks,
            "expect": self.expect.iter().map(|(k, v)| (k.clone(), Value::String(v.as_str().into()))).collect::<Map<_, _>>(),
        })
    }
}

/// A timeline entry in `settings`; a request fault with its rule as written.
fn fault_json(f: &Fault) -> Value {
    let mut v = json!({
        "at_s": f.at_ns as f64 / 1e9,
        "fault": f.label,
        "for_s": f.for_ns.map(|n| n as f64 / 1e9),
    });
    if let FaultAction::Request { rule } = &f.action {
        v["rule"] = serde_json::to_value(rule).unwrap_or(Value::Null);
    }
    v
}

/// A producer entry in `settings`, every default included.
fn producer_json(p: &ProducerSpec) -> Value {
    json!({
    "count": p.count,
    "topic": p.topic,
    "rate": if p.max_rate { "max".to_string() } else { format!("{}/s", p.rate_per_s) },
    "host": p.host,
    "record.bytes": p.record_bytes,
    "acks": p.acks.name(),
    "linger.ms": p.linger_ms,
    "batch.size": p.batch_size,
    "compression.type": p.compression.name(),
    "retries": p.retries,
    "retry.backoff.ms": p.retry_backoff_ms,
    "request.timeout.ms": p.request_timeout_ms,
    "delivery.timeout.ms": p.delivery_timeout_ms,
    "max.in.flight.requests.per.connection": p.max_in_flight,
    "enable.idempotence": p.idempotence,
    })
}

/// A consumer entry in `settings`, every default included.
fn consumer_json(c: &ConsumerSpec) -> Value {
    json!({
    "count": c.count,
    "topic": c.topic,
    "group.id": c.group_id,
    "assignment": match &c.group {
        None => "static: partitions dealt round-robin to the consumers of this entry".to_string(),
        Some(_) => "group: the client crate's group member (classic protocol), each member on its own host, committing after every poll".to_string(),
    },
    "session.timeout.ms": c.group.as_ref().map(|g| g.session_timeout_ms),
    "heartbeat.interval.ms": c.group.as_ref().map(|g| g.heartbeat_interval_ms),
    "max.poll.interval.ms": c.group.as_ref().map(|g| g.max_poll_interval_ms),
    "partition.assignment.strategy": c.group.as_ref().map(|g| g.assignment_strategy.clone()),
    "group.instance.id": c.group.as_ref().and_then(|g| g.instance_id_prefix.clone()),
    "enable.auto.commit": c.group.as_ref().map(|_| false),
    "max.partition.fetch.bytes": c.max_partition_fetch_bytes,
    "fetch.max.wait.ms": c.fetch_max_wait_ms,
    "auto.offset.reset": match c.auto_offset_reset { OffsetReset::Earliest => "earliest", OffsetReset::Latest => "latest" },
    "retry.backoff.ms": c.retry_backoff_ms,
    "request.timeout.ms": c.request_timeout_ms,
    "check.crcs": true,
    })
}

fn broker_config_json(b: &BrokerSpec) -> Value {
    let l = &b.log;
    json!({
        "log.segment.bytes": l.segment_bytes,
        "log.roll.ms": l.segment_ms,
        "log.index.interval.bytes": l.index_interval_bytes,
        "log.index.size.max.bytes": l.segment_index_bytes,
        "log.retention.bytes": l.retention_bytes,
        "log.retention.ms": l.retention_ms,
        "log.flush.interval.messages": l.flush_messages,
        "log.flush.interval.ms": l.flush_ms,
        "message.max.bytes": l.max_message_bytes,
        "log.flush.offset.checkpoint.interval.ms": b.checkpoint_interval_ms,
        "log.flush.scheduler.interval.ms": b.flush_scheduler_interval_ms,
    })
}

/// Network mode: the broker's `BrokerConfig` built from `cluster.config`, every setting by name.
pub fn broker_config(b: &BrokerSpec) -> broker::BrokerConfig {
    let mut c = broker::BrokerConfig::default();
    for (k, v) in &b.raw {
        // Validated at parse time; a failure here cannot happen for a parsed scenario.
        let _ = c.set(k, v);
    }
    c
}

/// Cluster runs: broker `i`'s config — combined mode (broker + controller), node id `i`, the
/// quorum of every broker's controller on port 9093, simulator-friendly timeouts (fast but
/// realistic), then `cluster.config` on top (so a scenario can set any of them by Kafka's name).
/// `cluster.brokers` at most.
pub const BROKERS_MAX: u64 = 64;
/// `topics[].partitions` at most (the controller's own per-topic limit).
pub const PARTITIONS_PER_TOPIC_MAX: u64 = 10_000;

pub fn cluster_broker_config(b: &BrokerSpec, i: u32, controllers: u32) -> broker::BrokerConfig {
    let mut c = broker::BrokerConfig::default();
    let voters: Vec<String> =
        (0..controllers).map(|j| format!("{j}@broker-{j}:{CONTROLLER_PORT}")).collect();
    let roles = if i < controllers { "broker,controller" } else { "broker" };
    let defaults: &[(&str, String)] = &[
        ("node.id", i.to_string()),
        ("process.roles", roles.into()),
        ("controller.quorum.voters", voters.join(",")),
        ("broker.heartbeat.interval.ms", "250".into()),
        ("broker.session.timeout.ms", "3000".into()),
        ("controller.quorum.election.timeout.ms", "1000".into()),
        ("controller.quorum.fetch.timeout.ms", "1000".into()),
        ("controller.quorum.request.timeout.ms", "2000".into()),
        ("replica.lag.time.max.ms", "3000".into()),
        ("replica.fetch.wait.max.ms", "100".into()),
        ("replica.fetch.backoff.ms", "50".into()),
        ("replica.socket.timeout.ms", "3000".into()),
        ("loglab.metadata.poll.ms", "100".into()),
    ];
    for (k, v) in defaults {
        let _ = c.set(k, v);
    }
    if i < controllers {
        c.quorum.controller_listen = Some(format!("broker-{i}:{CONTROLLER_PORT}"));
    }
    for (k, v) in &b.raw {
        let _ = c.set(k, v);
    }
    c.node_id = i as i32;
    c
}

/// The controller listener's port in cluster runs.
pub const CONTROLLER_PORT: u16 = 9093;

fn network_broker_config_json(b: &BrokerSpec) -> Value {
    let c = broker_config(b);
    let mut m = match broker_config_json(b) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in c.effective() {
        m.insert(k.to_string(), Value::String(v));
    }
    m.insert("log.retention.check.interval.ms".into(), json!(c.retention_check_interval_ms));
    m.insert("log.flush.scheduler.interval.ms".into(), json!(c.flush_scheduler_interval_ms));
    m.insert("log.flush.offset.checkpoint.interval.ms".into(), json!(c.checkpoint_interval_ms));
    Value::Object(m)
}

fn topic_config_json(l: &LogConfig) -> Value {
    json!({
        "segment.bytes": l.segment_bytes,
        "segment.ms": l.segment_ms,
        "index.interval.bytes": l.index_interval_bytes,
        "segment.index.bytes": l.segment_index_bytes,
        "retention.bytes": l.retention_bytes,
        "retention.ms": l.retention_ms,
        "flush.messages": l.flush_messages,
        "flush.ms": l.flush_ms,
        "max.message.bytes": l.max_message_bytes,
    })
}

/// "10Gbps", "1Gbps", "100Mbps", "1.5Gbps" or a number of bits per second.
fn parse_bps(v: &Value, path: &str) -> R<u64> {
    let bad = || {
        invalid(path, "expected a bandwidth like \"10Gbps\", \"1Gbps\", \"100Mbps\" or a number of bits per second")
    };
    let bps = match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => {
            let (num, unit) = split_unit(s);
            let scale: u64 = match unit {
                "bps" | "" => 1,
                "Kbps" | "kbps" => 1_000,
                "Mbps" => 1_000_000,
                "Gbps" => 1_000_000_000,
                _ => return Err(bad()),
            };
            let milli = decimal_scaled(num, 1000).ok_or_else(bad)?;
            milli.checked_mul(scale).map(|b| b / 1000).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    let (lo, hi) = (net_model::sim::NIC_BPS_MIN, net_model::sim::NIC_BPS_MAX);
    if bps < lo || bps > hi {
        return Err(invalid(path, format!("{bps} bits/s is out of range {lo}..={hi}")));
    }
    Ok(bps)
}

fn parse_cluster(top: &Obj) -> R<ClusterParts> {
    let cluster_v = top.req("cluster")?;
    let cluster = obj(cluster_v, "cluster", &["brokers", "controllers", "mode", "host", "config"])?;
    let mode = match cluster.get("mode") {
        None => Mode::Storage,
        Some(Value::String(s)) if s == "storage" => Mode::Storage,
        Some(Value::String(s)) if s == "network" => Mode::Network,
        Some(_) => return Err(invalid("cluster.mode", "expected one of storage, network")),
    };
    // Limits: every broker is a host with its own disk, page-cache model, NIC and CPU, and a
    // replica of what it hosts in memory; 64 brokers and 10,000 partitions per topic keep a
    // run within this machine's memory at the shipped workloads (see sim/README.md).
    let brokers = cluster.uint("brokers", 1, 1, BROKERS_MAX)? as u32;
    if brokers > 1 && mode != Mode::Network {
        return Err(invalid("cluster.brokers", "more than one broker needs cluster.mode = \"network\" (a combined-mode cluster on the simulated network)"));
    }
    // The metadata quorum: brokers 0..controllers-1 are also controllers (combined mode),
    // the others brokers only, as a Kafka cluster usually runs 3 controllers.
    let controllers =
        cluster.uint("controllers", u64::from(brokers.min(3)), 1, u64::from(brokers))? as u32;
    let host = parse_host(cluster.get("host"), "cluster.host", mode)?;
    let mut broker = BrokerSpec {
        log: LogConfig::default(),
        checkpoint_interval_ms: 60_000,
        flush_scheduler_interval_ms: i64::MAX as u64,
        raw: Vec::new(),
    };
    {
        // The broker's own periodic tasks run (`broker::tasks`): Kafka's defaults.
        let d = broker::BrokerConfig::default();
        broker.checkpoint_interval_ms = d.checkpoint_interval_ms as u64;
        broker.flush_scheduler_interval_ms = d.flush_scheduler_interval_ms as u64;
    }
    if let Some(cfg) = cluster.get("config") {
        let m = cfg.as_object().ok_or_else(|| invalid("cluster.config", "expected an object"))?;
        let mut probe = broker::BrokerConfig::default();
        for (k, v) in m {
            let p = join("cluster.config", k);
            let s = config_string(v, &p)?;
            broker.raw.push((k.clone(), s.clone()));
            {
                // The broker's parser decides, as `broker serve --override` would.
                probe.set(k, &s).map_err(|e| invalid(&p, e.to_string()))?;
                if !(k.starts_with("log.") || k == "message.max.bytes") {
                    continue;
                }
            }
            match k.as_str() {
                "log.flush.offset.checkpoint.interval.ms" => {
                    broker.checkpoint_interval_ms = uint_value(&Value::String(s), &p, 1, i64::MAX as u64)?
                }
                "log.flush.scheduler.interval.ms" => {
                    broker.flush_scheduler_interval_ms = uint_value(&Value::String(s), &p, 1, i64::MAX as u64)?
                }
                _ => match broker.log.set(k, &s) {
                    Ok(true) => {}
                    Ok(false) => return Err(invalid(&p, "unknown broker config (log.* settings, flush.*, segment.*, retention.*, message.max.bytes and the two log.flush intervals are modeled)")),
                    Err(e) => return Err(invalid(&p, e.to_string())),
                },
            }
        }
    }

    Ok(ClusterParts { mode, brokers, controllers, host, broker })
}

fn parse_topic(
    t: &Value,
    i: usize,
    brokers: u32,
    broker: &BrokerSpec,
    topics: &[TopicSpec],
) -> R<TopicSpec> {
    let p = format!("topics[{i}]");
    let o = obj(t, &p, &["name", "partitions", "replication.factor", "config"])?;
    let name = o.string("name", None)?;
    if name.is_empty()
        || name.len() > 249
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(invalid(&o.p("name"), "a Kafka topic name: 1-249 of [a-zA-Z0-9._-]"));
    }
    if topics.iter().any(|x| x.name == name) {
        return Err(invalid(&o.p("name"), format!("topic {name} listed twice")));
    }
    let partitions = o.uint("partitions", 1, 1, PARTITIONS_PER_TOPIC_MAX)? as i32;
    let replication_factor =
        o.uint("replication.factor", 1, 1, u64::from(brokers)).map_err(|_| {
            invalid(&o.p("replication.factor"), format!("expected 1..={brokers} (cluster.brokers)"))
        })? as i32;
    let mut log = broker.log.clone();
    let mut overrides = BTreeMap::new();
    if let Some(cfg) = o.get("config") {
        let m = cfg.as_object().ok_or_else(|| invalid(&o.p("config"), "expected an object"))?;
        for (k, v) in m {
            let kp = join(&o.p("config"), k);
            let s = config_string(v, &kp)?;
            if k.starts_with("log.") || k == "message.max.bytes" {
                return Err(invalid(&kp, "a broker-level name: topics take topic-level names (e.g. segment.bytes, flush.messages)"));
            }
            log.set_strict(k, &s).map_err(|e| invalid(&kp, e.to_string()))?;
            overrides.insert(k.clone(), s);
        }
    }
    Ok(TopicSpec { name, partitions, replication_factor, overrides, log })
}

/// `name` is one of the scenario's topics.
fn topic_of(topics: &[TopicSpec], name: &str, path: &str) -> R<()> {
    if topics.iter().any(|t| t.name == name) {
        Ok(())
    } else {
        Err(invalid(path, format!("no topic named {name} in topics")))
    }
}

/// A producer's or consumer's `host` (a client machine), if given.
fn host_of(o: &Obj, client_hosts: u32) -> R<Option<u32>> {
    match o.get("host") {
        None => Ok(None),
        Some(_) => Ok(Some(o.uint("host", 0, 0, u64::from(client_hosts) - 1)? as u32)),
    }
}

/// The items of a list at `path` (absent = empty), each parsed by `f` with its own path.
fn list_of<T>(v: Option<&Value>, path: &str, mut f: impl FnMut(&Value, &str) -> R<T>) -> R<Vec<T>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| invalid(path, "expected a list"))?;
    list.iter().enumerate().map(|(i, item)| f(item, &format!("{path}[{i}]"))).collect()
}

/// What producers, consumers and prefill entries are checked against.
struct WorkloadCtx<'a> {
    topics: &'a [TopicSpec],
    mode: Mode,
    client_hosts: u32,
}

/// The Kafka producer settings a producer entry takes (by Kafka's names); `cargo simulate omb`
/// copies exactly these from a driver's producerConfig.
pub const PRODUCER_SETTINGS: &[&str] = &[
    "acks",
    "linger.ms",
    "batch.size",
    "compression.type",
    "retries",
    "retry.backoff.ms",
    "request.timeout.ms",
    "delivery.timeout.ms",
    "max.in.flight.requests.per.connection",
    "enable.idempotence",
];

/// The Kafka consumer settings a consumer entry takes; `cargo simulate omb` copies exactly these
/// from a driver's consumerConfig.
pub const CONSUMER_SETTINGS: &[&str] = &[
    "max.partition.fetch.bytes",
    "fetch.max.wait.ms",
    "auto.offset.reset",
    "retry.backoff.ms",
    "request.timeout.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
];

fn parse_producer(pv: &Value, p: &str, ctx: &WorkloadCtx) -> R<ProducerSpec> {
    let keys =
        [&["count", "topic", "rate", "record.bytes", "host"][..], PRODUCER_SETTINGS].concat();
    let o = obj(pv, p, &keys)?;
    let topic = o.string("topic", None)?;
    topic_of(ctx.topics, &topic, &o.p("topic"))?;
    let acks = match o.get("acks") {
        None => Acks::All,
        Some(v) => match v {
            Value::Number(n) if n.as_i64() == Some(0) => Acks::Zero,
            Value::Number(n) if n.as_i64() == Some(1) => Acks::One,
            Value::Number(n) if n.as_i64() == Some(-1) => Acks::All,
            Value::String(s) if s == "0" => Acks::Zero,
            Value::String(s) if s == "1" => Acks::One,
            Value::String(s) if s == "all" || s == "-1" => Acks::All,
            _ => return Err(invalid(&o.p("acks"), "expected one of 0, 1, all")),
        },
    };
    let compression = match o.get("compression.type") {
        None => Compression::None,
        Some(Value::String(s)) => Compression::from_name(s).ok_or_else(|| {
            invalid(&o.p("compression.type"), "expected one of none, gzip, snappy, lz4, zstd")
        })?,
        Some(_) => {
            return Err(invalid(
                &o.p("compression.type"),
                "expected one of none, gzip, snappy, lz4, zstd",
            ))
        }
    };
    let idempotence = o.boolean("enable.idempotence", false)?;
    if idempotence && acks != Acks::All {
        return Err(invalid(
            &o.p("enable.idempotence"),
            "idempotence requires acks = all (as Kafka's producer)",
        ));
    }
    let record_bytes = o.uint("record.bytes", 100, 8, 1 << 20)? as usize;
    let max_rate = o.req("rate")?.as_str().is_some_and(|r| r.trim() == "max");
    if max_rate && ctx.mode != Mode::Network {
        return Err(invalid(&o.p("rate"), "\"max\" (a closed loop) needs cluster.mode = \"network\" (the client crate's producer)"));
    }
    Ok(ProducerSpec {
        count: o.uint("count", 1, 1, 1000)? as u32,
        topic,
        rate_per_s: if max_rate { 0 } else { parse_rate(o.req("rate")?, &o.p("rate"))? },
        max_rate,
        host: host_of(&o, ctx.client_hosts)?,
        record_bytes,
        acks,
        linger_ms: o.uint("linger.ms", 5, 0, 3_600_000)?,
        batch_size: o.uint("batch.size", 16384, 0, 64 << 20)? as usize,
        compression,
        retries: o.uint("retries", i32::MAX as u64, 0, i32::MAX as u64)? as u32,
        retry_backoff_ms: o.uint("retry.backoff.ms", 100, 0, 3_600_000)?,
        request_timeout_ms: o.uint("request.timeout.ms", 30_000, 1, 3_600_000)?,
        delivery_timeout_ms: o.uint("delivery.timeout.ms", 120_000, 1, 3_600_000)?,
        max_in_flight: o.uint("max.in.flight.requests.per.connection", 5, 1, 100)? as u32,
        idempotence,
    })
}

fn parse_consumer(cv: &Value, p: &str, ctx: &WorkloadCtx) -> R<ConsumerSpec> {
    let keys =
        [&["count", "topic", "group.id", "host", "group.instance.id"][..], CONSUMER_SETTINGS]
            .concat();
    let o = obj(cv, p, &keys)?;
    let topic = o.string("topic", None)?;
    topic_of(ctx.topics, &topic, &o.p("topic"))?;
    let auto_offset_reset = match o.string("auto.offset.reset", Some("earliest"))?.as_str() {
        "earliest" => OffsetReset::Earliest,
        "latest" => OffsetReset::Latest,
        _ => return Err(invalid(&o.p("auto.offset.reset"), "expected one of earliest, latest")),
    };
    let group_id = match o.get("group.id") {
        None => None,
        Some(_) => Some(o.string("group.id", None)?),
    };
    let group = parse_group(&o, group_id.as_deref(), ctx.mode)?;
    if group_id.is_some() && o.get("host").is_some() {
        return Err(invalid(&o.p("host"), "group members run on their own hosts (consumer-N)"));
    }
    Ok(ConsumerSpec {
        count: o.uint("count", 1, 1, 1000)? as u32,
        topic,
        group_id,
        group,
        max_partition_fetch_bytes: o.uint("max.partition.fetch.bytes", 1 << 20, 1, 1 << 30)?
            as usize,
        fetch_max_wait_ms: o.uint("fetch.max.wait.ms", 500, 0, 3_600_000)?,
        auto_offset_reset,
        retry_backoff_ms: o.uint("retry.backoff.ms", 100, 0, 3_600_000)?,
        request_timeout_ms: o.uint("request.timeout.ms", 30_000, 1, 3_600_000)?,
        host: host_of(&o, ctx.client_hosts)?,
    })
}

/// A consumer entry's group settings (only with `group.id`).
fn parse_group(o: &Obj, group_id: Option<&str>, mode: Mode) -> R<Option<GroupSpec>> {
    const GROUP_KEYS: &[&str] = &[
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "group.instance.id",
    ];
    match group_id {
        None => {
            if let Some(k) = GROUP_KEYS.iter().find(|k| o.get(k).is_some()) {
                return Err(invalid(&o.p(k), "only with group.id"));
            }
            Ok(None)
        }
        Some(g) => {
            if mode != Mode::Network {
                return Err(invalid(&o.p("group.id"), "consumer groups need cluster.mode = \"network\" (members are the client crate's consumers on their own hosts)"));
            }
            if g.is_empty() {
                return Err(invalid(&o.p("group.id"), "must not be empty"));
            }
            let session_timeout_ms = o.uint("session.timeout.ms", 45_000, 1, 3_600_000)?;
            let heartbeat_interval_ms = o.uint("heartbeat.interval.ms", 3_000, 1, 3_600_000)?;
            if heartbeat_interval_ms >= session_timeout_ms {
                return Err(invalid(
                    &o.p("heartbeat.interval.ms"),
                    "must be below session.timeout.ms",
                ));
            }
            let assignment_strategy =
                o.string("partition.assignment.strategy", Some("range,cooperative-sticky"))?;
            for name in assignment_strategy.split(',').map(str::trim) {
                if !["range", "roundrobin", "sticky", "cooperative-sticky"].contains(&name) {
                    return Err(invalid(&o.p("partition.assignment.strategy"), format!("unknown assignor {name}: expected range, roundrobin, sticky, cooperative-sticky")));
                }
            }
            Ok(Some(GroupSpec {
                session_timeout_ms,
                heartbeat_interval_ms,
                max_poll_interval_ms: o.uint("max.poll.interval.ms", 300_000, 1, 3_600_000)?,
                rebalance_timeout_ms: None,
                assignment_strategy,
                instance_id_prefix: match o.get("group.instance.id") {
                    None => None,
                    Some(_) => Some(o.string("group.instance.id", None)?),
                },
            }))
        }
    }
}

/// `checks`: as listed, or (absent) every check that has something to examine.
fn parse_checks(
    v: Option<&Value>,
    producers: &[ProducerSpec],
    consumers: &[ConsumerSpec],
    prefill: &[PrefillSpec],
    brokers: u32,
) -> R<Vec<String>> {
    match v {
        // The cluster checks (replicas-agree, hw-monotonic) are on by default only in
        // cluster runs; single-broker scenarios can list them (they hold trivially).
        // Only the checks that apply: a check with nothing to examine would be vacuous.
        None => {
            let has_consumers = !consumers.is_empty();
            let has_groups = consumers.iter().any(|c| c.group.is_some());
            let acked = producers.iter().any(|p| p.acks != Acks::Zero);
            let writes = !producers.is_empty() || !prefill.is_empty();
            Ok(CHECKS
                .iter()
                .filter(|c| match **c {
                    "lost-write" => acked,
                    "inconsistent-offsets" | "duplicate" => writes,
                    "nonmonotonic-poll" | "poll-skip" => has_consumers,
                    "group-exclusive" | "committed-offset-monotonic" | "generation-fencing" => {
                        has_groups
                    }
                    "replicas-agree" | "hw-monotonic" => brokers > 1,
                    _ => true,
                })
                .map(|s| s.to_string())
                .collect())
        }
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, c) in a.iter().enumerate() {
                let p = format!("checks[{i}]");
                let s = c.as_str().ok_or_else(|| invalid(&p, "expected a check name"))?;
                if !CHECKS.contains(&s) {
                    return Err(invalid(
                        &p,
                        format!("unknown check {s} (expected one of: {})", CHECKS.join(", ")),
                    ));
                }
                if !out.iter().any(|x| x == s) {
                    out.push(s.to_string());
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid("checks", "expected a list of check names")),
    }
}

/// `expect`: each check's expected outcome (default held).
fn parse_expect(v: Option<&Value>, checks: &[String]) -> R<BTreeMap<String, Outcome>> {
    let mut expect: BTreeMap<String, Outcome> =
        checks.iter().map(|c| (c.clone(), Outcome::Held)).collect();
    if let Some(e) = v {
        let m = e.as_object().ok_or_else(|| {
            invalid("expect", "expected an object of check → \"held\" | \"violated\"")
        })?;
        for (k, v) in m {
            let p = join("expect", k);
            if !checks.contains(k) {
                return Err(invalid(&p, "not one of this scenario's checks"));
            }
            let o = match v.as_str() {
                Some("held") => Outcome::Held,
                Some("violated") => Outcome::Violated,
                _ => return Err(invalid(&p, "expected one of held, violated")),
            };
            expect.insert(k.clone(), o);
        }
    }
    Ok(expect)
}

/// What `workload` says.
struct WorkloadParts {
    client_hosts: u32,
    client_nic_bps: u64,
    producers: Vec<ProducerSpec>,
    consumers: Vec<ConsumerSpec>,
    prefill: Vec<PrefillSpec>,
}

/// `workload`: client machines, producers, consumers, prefill.
fn parse_workload(
    top: &Obj,
    topics: &[TopicSpec],
    mode: Mode,
    host: &HostSpec,
) -> R<WorkloadParts> {
    let w = obj(
        top.req("workload")?,
        "workload",
        &["producers", "consumers", "client_hosts", "client_nic", "prefill"],
    )?;
    let client_hosts = w.uint("client_hosts", 1, 1, 64)? as u32;
    let client_nic_bps = match w.get("client_nic") {
        None => host.nic_bps,
        Some(_) if mode != Mode::Network => {
            return Err(invalid("workload.client_nic", "needs cluster.mode = \"network\""))
        }
        Some(v) => parse_bps(v, "workload.client_nic")?,
    };
    if client_hosts > 1 && mode != Mode::Network {
        return Err(invalid(
            "workload.client_hosts",
            "client hosts are network hosts: needs cluster.mode = \"network\"",
        ));
    }
    let ctx = WorkloadCtx { topics, mode, client_hosts };
    let producers =
        list_of(w.get("producers"), "workload.producers", |v, p| parse_producer(v, p, &ctx))?;
    let consumers =
        list_of(w.get("consumers"), "workload.consumers", |v, p| parse_consumer(v, p, &ctx))?;
    let prefill = parse_prefill(w.get("prefill"), &ctx)?;
    Ok(WorkloadParts { client_hosts, client_nic_bps, producers, consumers, prefill })
}

/// `workload.prefill`: backlogs written before the workload's clock starts.
fn parse_prefill(v: Option<&Value>, ctx: &WorkloadCtx) -> R<Vec<PrefillSpec>> {
    if let Some(Value::Array(list)) = v {
        if ctx.mode != Mode::Network && !list.is_empty() {
            return Err(invalid("workload.prefill", "prefill writes through the client crate's producer: needs cluster.mode = \"network\""));
        }
    }
    list_of(v, "workload.prefill", |pv, p| {
        let o = obj(pv, p, &["topic", "records", "record.bytes"])?;
        let topic = o.string("topic", None)?;
        topic_of(ctx.topics, &topic, &o.p("topic"))?;
        Ok(PrefillSpec {
            topic,
            records: o.uint("records", 0, 1, 100_000_000)?,
            record_bytes: o.uint("record.bytes", 100, 8, 1 << 20)? as usize,
        })
    })
}

/// `faults`: every entry (a rolling restart is several), in time order (file order on ties).
fn parse_faults(
    v: Option<&Value>,
    brokers: u32,
    members: &[bool],
    topics: &[TopicSpec],
    duration_s: u64,
    mode: Mode,
) -> R<Vec<Fault>> {
    let lists = list_of(v, "faults", |fv, p| {
        parse_fault(fv, p, brokers, members, topics, duration_s, mode)
    })?;
    let mut faults: Vec<Fault> = lists.into_iter().flatten().collect();
    // Stable: same time keeps file order.
    faults.sort_by_key(|f| f.at_ns);
    Ok(faults)
}

/// The page-cache knobs of `cluster.host` (Linux's names), defaults from the model.
fn parse_page_cache(o: &Obj) -> R<PageCacheConfig> {
    let d = PageCacheConfig::default();
    Ok(PageCacheConfig {
        capacity_bytes: match o.get("page_cache") {
            None => d.capacity_bytes,
            Some(v) => parse_bytes(v, &o.p("page_cache"))?,
        },
        dirty_ratio: o.uint("dirty_ratio", d.dirty_ratio.into(), 1, 100)? as u32,
        dirty_background_ratio: o.uint(
            "dirty_background_ratio",
            d.dirty_background_ratio.into(),
            1,
            100,
        )? as u32,
        dirty_expire_centisecs: o.uint(
            "dirty_expire_centisecs",
            d.dirty_expire_centisecs.into(),
            0,
            u32::MAX.into(),
        )? as u32,
        dirty_writeback_centisecs: o.uint(
            "dirty_writeback_centisecs",
            d.dirty_writeback_centisecs.into(),
            1,
            u32::MAX.into(),
        )? as u32,
        read_ahead_kb: o.uint("read_ahead_kb", d.read_ahead_kb.into(), 4, 1 << 20)? as u32,
        read_ahead_max_kb: o.uint("read_ahead_max_kb", d.read_ahead_max_kb.into(), 4, 1 << 20)?
            as u32,
        writeback_chunk_kb: o.uint("writeback_chunk_kb", d.writeback_chunk_kb.into(), 4, 1 << 20)?
            as u32,
    })
}

fn parse_host(v: Option<&Value>, path: &str, mode: Mode) -> R<HostSpec> {
    let empty = Value::Object(Map::new());
    let v = v.unwrap_or(&empty);
    let o = obj(
        v,
        path,
        &[
            "disk",
            "page_cache",
            "dirty_ratio",
            "dirty_background_ratio",
            "dirty_expire_centisecs",
            "dirty_writeback_centisecs",
            "read_ahead_kb",
            "read_ahead_max_kb",
            "writeback_chunk_kb",
            "torn_writes",
            "disk_bytes",
            "cores",
            "nic",
            "link_latency",
        ],
    )?;
    if mode == Mode::Storage {
        for k in ["nic", "link_latency", "cores"] {
            if o.get(k).is_some() {
                return Err(invalid(
                    &o.p(k),
                    "only with cluster.mode = \"network\" (storage runs have a free link and free CPU)",
                ));
            }
        }
    }
    let nic_bps = match o.get("nic") {
        None if mode == Mode::Storage => net_model::sim::NIC_BPS_MAX,
        None => net_model::sim::NicConfig::default().egress_bps,
        Some(v) => parse_bps(v, &o.p("nic"))?,
    };
    let cores = match o.get("cores") {
        None => None,
        Some(v) => {
            Some(uint_value(v, &o.p("cores"), 1, u64::from(net_model::cpu::CORES_MAX))? as u32)
        }
    };
    let link_latency_ns = match o.get("link_latency") {
        None if mode == Mode::Storage => 0,
        None => net_model::sim::LinkConfig::default().latency_ns,
        Some(v) => {
            let ns = parse_duration_ns(v, &o.p("link_latency"))?;
            if ns > net_model::sim::LATENCY_NS_MAX {
                return Err(invalid(
                    &o.p("link_latency"),
                    format!("at most {} ns", net_model::sim::LATENCY_NS_MAX),
                ));
            }
            ns
        }
    };
    let disk = o.string("disk", Some("nvme"))?;
    let device = DeviceProfile::by_name(&disk)
        .ok_or_else(|| invalid(&o.p("disk"), "expected one of hdd-7200, sata-ssd, nvme"))?;
    let page_cache = parse_page_cache(&o)?;
    page_cache.validate().map_err(|e| invalid(path, e))?;
    let disk_bytes = match o.get("disk_bytes") {
        None => None,
        Some(v) => Some(parse_bytes(v, &o.p("disk_bytes"))?),
    };
    Ok(HostSpec {
        device,
        page_cache,
        torn_writes: o.boolean("torn_writes", false)?,
        disk_bytes,
        nic_bps,
        link_latency_ns,
        cores,
    })
}

fn parse_broker_ref(v: &Value, path: &str, brokers: u32) -> R<u32> {
    let s = v.as_str().ok_or_else(|| invalid(path, "expected a broker like \"broker-0\""))?;
    let n: u32 = s
        .strip_prefix("broker-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| invalid(path, "expected a broker like \"broker-0\""))?;
    if n >= brokers {
        return Err(invalid(path, format!("no {s}: the cluster has {brokers} broker(s)")));
    }
    Ok(n)
}

/// A list of strings at `key`, each with its path (`None` when absent).
fn string_list(o: &Obj, key: &str) -> R<Option<Vec<(String, String)>>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(|s| (format!("{}[{i}]", o.p(key)), s.to_string()))
                    .ok_or_else(|| invalid(&format!("{}[{i}]", o.p(key)), "expected a string"))
            })
            .collect::<R<Vec<_>>>()
            .map(Some),
        Some(_) => Err(invalid(&o.p(key), "expected a list")),
    }
}

/// `nemesis.faults`: the kinds of fault to draw (each once).
fn nemesis_kinds(o: &Obj, mode: Mode) -> R<Vec<crate::nemesis::NemesisKind>> {
    use crate::nemesis::NemesisKind;
    let mut kinds = Vec::new();
    for (p, name) in string_list(o, "faults")?
        .ok_or_else(|| invalid(&o.p("faults"), "required: the kinds of fault to draw"))?
    {
        let k = NemesisKind::from_name(&name).ok_or_else(|| {
            invalid(
                &p,
                format!(
                    "unknown fault kind (expected one of: {})",
                    NemesisKind::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        if matches!(k, NemesisKind::Partition | NemesisKind::SlowNic) && mode != Mode::Network {
            return Err(invalid(&p, "only with cluster.mode = \"network\""));
        }
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        return Err(invalid(&o.p("faults"), "name at least one kind of fault"));
    }
    Ok(kinds)
}

/// `nemesis.targets`: brokers and group members (default: every one).
fn nemesis_targets(
    o: &Obj,
    brokers: u32,
    members: &[bool],
    topics: &[TopicSpec],
) -> R<Vec<Target>> {
    Ok(match string_list(o, "targets")? {
        Some(ts) => ts
            .iter()
            .map(|(p, t)| {
                let target = parse_target(&Value::String(t.clone()), p, brokers, members, topics)?;
                if target.is_dynamic() {
                    return Err(invalid(
                        p,
                        "the nemesis draws among brokers (broker-N) and group members (consumer-N)",
                    ));
                }
                Ok(target)
            })
            .collect::<R<Vec<_>>>()?,
        None => (0..brokers)
            .map(Target::Broker)
            .chain(
                members
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| **m)
                    .map(|(i, _)| Target::Consumer(i as u32)),
            )
            .collect(),
    })
}

fn parse_nemesis(
    v: &Value,
    brokers: u32,
    members: &[bool],
    topics: &[TopicSpec],
    duration_s: u64,
    mode: Mode,
) -> R<crate::nemesis::NemesisSpec> {
    use crate::nemesis::{NemesisSpec, NEMESIS_COUNT_MAX};
    let o = obj(
        v,
        "nemesis",
        &[
            "faults",
            "targets",
            "count",
            "from",
            "until",
            "min",
            "max",
            "slow_disk.factor",
            "slow_nic.bps",
            "minority",
            "request_faults",
        ],
    )?;
    let kinds = nemesis_kinds(&o, mode)?;
    let targets = nemesis_targets(&o, brokers, members, topics)?;
    for k in &kinds {
        if !targets.iter().any(|t| k.applies_to(*t)) {
            return Err(invalid(
                &o.p("faults"),
                format!("{} applies to none of the targets", k.name()),
            ));
        }
    }
    let end_ns = duration_s * 1_000_000_000;
    let dur = |key: &str, default: u64| -> R<u64> {
        o.get(key).map_or(Ok(default), |v| parse_duration_ns(v, &o.p(key)))
    };
    let from_ns = dur("from", 1_000_000_000.min(end_ns / 2))?;
    let until_ns = dur("until", end_ns.saturating_sub(1_000_000_000).max(from_ns + 1))?;
    if from_ns >= until_ns || until_ns > end_ns {
        return Err(invalid(
            &o.p("until"),
            format!(
                "the window [from, until) must be non-empty and end by duration_s ({duration_s}s)"
            ),
        ));
    }
    let min_ns = dur("min", 1_000_000_000)?;
    let max_ns = dur("max", 5_000_000_000)?;
    if min_ns > max_ns || min_ns == 0 {
        return Err(invalid(&o.p("min"), "must be positive and at most max"));
    }
    let request_faults = parse_nemesis_rules(&o, &kinds, min_ns)?;
    Ok(NemesisSpec {
        kinds,
        targets,
        count: o.uint("count", 5, 0, u64::from(NEMESIS_COUNT_MAX))? as u32,
        from_ns,
        until_ns,
        min_ns,
        max_ns,
        slow_disk_factor: o.uint("slow_disk.factor", 10, 1, 1_000_000)? as u32,
        slow_nic_bps: match o.get("slow_nic.bps") {
            None => 100_000_000,
            Some(v) => parse_bps(v, &o.p("slow_nic.bps"))?,
        },
        minority: o.boolean("minority", false)?,
        brokers,
        request_faults,
    })
}

fn parse_target(
    v: &Value,
    path: &str,
    brokers: u32,
    members: &[bool],
    topics: &[TopicSpec],
) -> R<Target> {
    if let Some(s) = v.as_str() {
        if s == "controller" || s.starts_with("leader:") || s.starts_with("follower:") {
            if brokers < 2 {
                return Err(invalid(path, format!("{s}: only in a cluster (cluster.brokers > 1)")));
            }
            if s == "controller" {
                return Ok(Target::Controller);
            }
            let (kind, tp) = s.split_once(':').unwrap_or((s, ""));
            let bad = || {
                invalid(
                    path,
                    format!("expected {kind}:TOPIC/PARTITION naming a topic of the scenario"),
                )
            };
            let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
            let p: i32 = p.parse().map_err(|_| bad())?;
            let topic = topics.iter().find(|x| x.name == t).ok_or_else(bad)?;
            if p < 0 || p >= topic.partitions {
                return Err(bad());
            }
            let name: &'static str = Box::leak(t.to_string().into_boxed_str());
            return Ok(if kind == "leader" {
                Target::Leader(name, p)
            } else {
                Target::Follower(name, p)
            });
        }
    }
    if let Some(n) = v.as_str().and_then(|s| s.strip_prefix("consumer-")) {
        let n: u32 = n.parse().map_err(|_| {
            invalid(
                path,
                "expected a broker like \"broker-0\" or a group member like \"consumer-0\"",
            )
        })?;
        return match members.get(n as usize) {
            Some(true) => Ok(Target::Consumer(n)),
            Some(false) => Err(invalid(path, format!("consumer-{n} has no group.id: faults hit group members only (they run on their own hosts)"))),
            None => Err(invalid(path, format!("no consumer-{n}: the workload has {} consumer(s)", members.len()))),
        };
    }
    parse_broker_ref(v, path, brokers).map(Target::Broker)
}

/// `rolling_restart`: kill and restart every broker in turn: broker-i dies at `at + i*every`,
/// comes back `down` later (a process crash; the page cache survives).
fn parse_rolling_restart(o: &Obj, at_ns: u64, brokers: u32, duration_s: u64) -> R<Vec<Fault>> {
    let action = "rolling_restart";
    // Kill and restart every broker in turn: broker-i dies at `at + i*every`, comes back
    // `down` later (a process crash; the page cache survives).
    if o.req(action)?.as_str() != Some("all") {
        return Err(invalid(&o.p(action), "expected \"all\" (every broker in turn)"));
    }
    let every =
        o.get("every").map_or(Ok(5_000_000_000), |v| parse_duration_ns(v, &o.p("every")))?;
    let down = o.get("down").map_or(Ok(1_000_000_000), |v| parse_duration_ns(v, &o.p("down")))?;
    if down >= every {
        return Err(invalid(&o.p("down"), "must be shorter than every"));
    }
    let mut out = Vec::new();
    for b in 0..brokers {
        let t = at_ns + u64::from(b) * every;
        if t + down >= duration_s * 1_000_000_000 {
            return Err(invalid(&o.p("every"), format!("the rolling restart of {brokers} brokers must end before the end of the run ({duration_s}s)")));
        }
        let target = Target::Broker(b);
        out.push(Fault {
            at_ns: t,
            target,
            action: FaultAction::Kill,
            for_ns: None,
            label: format!("rolling_restart kill broker-{b}"),
        });
        out.push(Fault {
            at_ns: t + down,
            target,
            action: FaultAction::Restart,
            for_ns: None,
            label: format!("rolling_restart restart broker-{b}"),
        });
    }
    Ok(out)
}

/// The action a fault entry names, with its options.
fn parse_action(o: &Obj, action: &str, for_ns: Option<u64>, mode: Mode) -> R<FaultAction> {
    Ok(match action {
        "kill" => FaultAction::Kill,
        "restart" => FaultAction::Restart,
        "leave" => FaultAction::Leave,
        "power_loss" => FaultAction::PowerLoss,
        "pause" => {
            if for_ns.is_none() {
                return Err(invalid(&o.p("for"), "required for pause"));
            }
            FaultAction::Pause
        }
        "slow_disk" => FaultAction::SlowDisk { factor: o.uint("factor", 10, 1, 1_000_000)? as u32 },
        "disk_error" => {
            let kind = match o.string("kind", None)?.as_str() {
                "read" => DiskErrorKind::Read,
                "write" => DiskErrorKind::Write,
                "sync" => DiskErrorKind::Sync,
                "no_space" => DiskErrorKind::NoSpace,
                _ => {
                    return Err(invalid(
                        &o.p("kind"),
                        "expected one of read, write, sync, no_space",
                    ))
                }
            };
            let probability = match o.get("probability") {
                None => 1.0,
                Some(v) => v
                    .as_f64()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| invalid(&o.p("probability"), "expected a number in 0..=1"))?,
            };
            let times = match o.get("times") {
                None => None,
                Some(v) => Some(uint_value(v, &o.p("times"), 1, u64::MAX)?),
            };
            let path = match o.get("path") {
                None => None,
                Some(_) => Some(o.string("path", None)?),
            };
            FaultAction::DiskError { kind, probability, times, path }
        }
        "drop_caches" => FaultAction::DropCaches,
        "partition" => {
            if mode != Mode::Network {
                return Err(invalid(
                    &o.p("partition"),
                    "only with cluster.mode = \"network\" (storage runs have a free link and free CPU)",
                ));
            }
            if o.get("peers").is_none() && o.get("direction").is_none() && o.get("port").is_none() {
                FaultAction::Partition
            } else {
                let peers = match o.string("peers", Some("all"))?.as_str() {
                    "all" => Peers::All,
                    "brokers" => Peers::Brokers,
                    "clients" => Peers::Clients,
                    _ => {
                        return Err(invalid(&o.p("peers"), "expected one of all, brokers, clients"))
                    }
                };
                let direction = match o.string("direction", Some("both"))?.as_str() {
                    "both" => Direction::Both,
                    "in" => Direction::In,
                    "out" => Direction::Out,
                    _ => return Err(invalid(&o.p("direction"), "expected one of both, in, out")),
                };
                let port = match o.get("port") {
                    None => None,
                    Some(v) => Some(uint_value(v, &o.p("port"), 1, 65_535)? as u16),
                };
                if port.is_some() && direction != Direction::Both {
                    return Err(invalid(
                        &o.p("direction"),
                        "a port-level partition cuts its connections both ways",
                    ));
                }
                FaultAction::Cut { peers, direction, port }
            }
        }
        "slow_nic" => {
            if mode != Mode::Network {
                return Err(invalid(
                    &o.p("slow_nic"),
                    "only with cluster.mode = \"network\" (storage runs have a free link and free CPU)",
                ));
            }
            FaultAction::SlowNic { bps: parse_bps(o.req("bps")?, &o.p("bps"))? }
        }
        "corrupt_sector" => FaultAction::CorruptSector {
            path: match o.get("path") {
                None => None,
                Some(_) => Some(o.string("path", None)?),
            },
        },
        _ => unreachable!("action list is closed"),
    })
}

/// A fault as the trace and the plots name it: `slow_disk broker-0 x10 for 1500ms`.
fn fault_label(
    action: &str,
    target: Target,
    action_v: &FaultAction,
    for_ns: Option<u64>,
) -> String {
    let mut label = format!("{action} {}", target.name());
    match action_v {
        FaultAction::SlowDisk { factor } => label.push_str(&format!(" x{factor}")),
        FaultAction::SlowNic { bps } => label.push_str(&format!(" {bps}bps")),
        FaultAction::DiskError { kind, probability, .. } => {
            label.push_str(&format!(" {kind:?} p={probability}"))
        }
        FaultAction::Cut { peers, direction, port } => {
            label.push_str(&format!(" peers={peers:?} direction={direction:?}").to_lowercase());
            if let Some(p) = port {
                label.push_str(&format!(" port={p}"));
            }
        }
        _ => {}
    }
    if let Some(f) = for_ns {
        label.push_str(&format!(" for {}ms", f / 1_000_000));
    }
    label
}

fn parse_fault(
    v: &Value,
    path: &str,
    brokers: u32,
    members: &[bool],
    topics: &[TopicSpec],
    duration_s: u64,
    mode: Mode,
) -> R<Vec<Fault>> {
    const ACTIONS: &[&str] = &[
        "kill",
        "restart",
        "power_loss",
        "pause",
        "leave",
        "slow_disk",
        "disk_error",
        "drop_caches",
        "corrupt_sector",
        "partition",
        "slow_nic",
        "rolling_restart",
    ];
    let m = v.as_object().ok_or_else(|| invalid(path, "expected an object"))?;
    let actions: Vec<&str> = ACTIONS.iter().copied().filter(|a| m.contains_key(*a)).collect();
    let [action] = actions[..] else {
        return Err(invalid(path, format!("expected exactly one of: {}", ACTIONS.join(", "))));
    };
    let allowed: &[&str] = match action {
        "pause" => &["at", "pause", "for"],
        "slow_disk" => &["at", "slow_disk", "factor", "for"],
        "disk_error" => &["at", "disk_error", "kind", "probability", "times", "path", "for"],
        "corrupt_sector" => &["at", "corrupt_sector", "path"],
        "partition" => &["at", "partition", "for", "peers", "direction", "port"],
        "rolling_restart" => &["at", "rolling_restart", "every", "down"],
        "slow_nic" => &["at", "slow_nic", "bps", "for"],
        _ => &["at", action],
    };
    let o = obj(v, path, allowed)?;
    let at_ns = parse_duration_ns(o.req("at")?, &o.p("at"))?;
    if at_ns >= duration_s * 1_000_000_000 {
        return Err(invalid(
            &o.p("at"),
            format!("must be before the end of the run ({duration_s}s)"),
        ));
    }
    if action == "rolling_restart" {
        return parse_rolling_restart(&o, at_ns, brokers, duration_s);
    }
    let target = parse_target(o.req(action)?, &o.p(action), brokers, members, topics)?;
    if matches!(target, Target::Consumer(_))
        && !["kill", "restart", "pause", "partition", "leave"].contains(&action)
    {
        return Err(invalid(&o.p(action), "a group member can be killed, restarted, paused, partitioned or leave (it has no disk)"));
    }
    if action == "leave" && !matches!(target, Target::Consumer(_)) {
        return Err(invalid(&o.p(action), "only a group member (consumer-N) can leave"));
    }
    let for_ns = match o.get("for") {
        None => None,
        Some(v) => Some(parse_duration_ns(v, &o.p("for"))?),
    };
    let action_v = parse_action(&o, action, for_ns, mode)?;
    let label = fault_label(action, target, &action_v, for_ns);
    Ok(vec![Fault { at_ns, target, action: action_v, for_ns, label }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"name": "t", "cluster": {}, "topics": [{"name": "events"}],
        "workload": {"producers": [{"topic": "events", "rate": "100/s"}]}}"#;

    fn err(text: &str) -> String {
        Scenario::parse(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn workload_options_are_checked_and_producers_outlive_the_last_heal() {
        let net = |w: &str, extra: &str| {
            format!(
                r#"{{"name": "t", "duration_s": 10, "cluster": {{"mode": "network"}}, "topics": [{{"name": "events"}}], "workload": {w}{extra}}}"#
            )
        };
        let ok = Scenario::parse(&net(r#"{"client_hosts": 2, "producers": [{"topic": "events", "rate": "max", "host": 1}], "prefill": [{"topic": "events", "records": 10}]}"#, "")).unwrap();
        assert!(
            ok.producers[0].max_rate
                && ok.producers[0].host == Some(1)
                && ok.client_hosts == 2
                && ok.prefill[0].records == 10
        );
        assert!(err(&net(
            r#"{"client_hosts": 2, "producers": [{"topic": "events", "rate": "1/s", "host": 2}]}"#,
            ""
        ))
        .starts_with("workload.producers[0].host"));
        assert!(err(&MIN.replace(r#""rate": "100/s""#, r#""rate": "max""#))
            .contains("needs cluster.mode"));
        assert!(err(&MIN.replace(r#""workload": {"#, r#""workload": {"client_hosts": 2, "#))
            .starts_with("workload.client_hosts"));
        // No faults: producers stop at duration_s.
        assert_eq!(ok.producers_stop_ns(), 10_000_000_000);
        // A kill at 9 s restarted at 9.5 s: the last heal is 9.5 s, producers go on to 11.5 s.
        let f = r#", "faults": [{"at": "9s", "kill": "broker-0"}, {"at": "9500ms", "restart": "broker-0"}]"#;
        let sc = Scenario::parse(&net(r#"{"producers": [{"topic": "events", "rate": "1/s"}]}"#, f))
            .unwrap();
        assert_eq!(
            (sc.planned_last_heal_ns(), sc.producers_stop_ns()),
            (9_500_000_000, 11_500_000_000)
        );
        // A kill never restarted heals when the run heals everything, at duration_s.
        let f = r#", "faults": [{"at": "2s", "kill": "broker-0"}]"#;
        let sc = Scenario::parse(&net(r#"{"producers": [{"topic": "events", "rate": "1/s"}]}"#, f))
            .unwrap();
        assert_eq!(sc.producers_stop_ns(), 12_000_000_000);
    }

    #[test]
    fn minimal_scenario_gets_every_default() {
        let s = Scenario::parse(MIN).unwrap();
        assert_eq!(s.producers[0].acks, Acks::All);
        assert_eq!(s.producers[0].linger_ms, 5);
        assert_eq!(s.broker.log, LogConfig::default());
        // Only the checks that apply: one producer with acks=all, no consumer, one broker.
        assert_eq!(s.checks, vec!["lost-write", "inconsistent-offsets", "duplicate", "liveness"]);
        let e = s.effective();
        assert_eq!(e["workload"]["producers"][0]["batch.size"], 16384);
        assert_eq!(e["cluster"]["config"]["log.flush.interval.messages"], i64::MAX);
        assert_eq!(e["cluster"]["host"]["disk"], "nvme");
    }

    #[test]
    fn errors_name_the_path() {
        let bad_acks = MIN.replace(r#""rate": "100/s""#, r#""rate": "100/s", "acks": 2"#);
        assert_eq!(err(&bad_acks), "workload.producers[0].acks: expected one of 0, 1, all");
        let unknown = MIN.replace(r#""rate": "100/s""#, r#""rate": "100/s", "lingr.ms": 2"#);
        assert!(
            err(&unknown).starts_with("workload.producers[0][\"lingr.ms\"]: unknown key"),
            "{}",
            err(&unknown)
        );
        let top = MIN.replace(r#""name": "t","#, r#""name": "t", "durration_s": 3,"#);
        assert!(err(&top).starts_with("durration_s: unknown key"));
        let cfg =
            MIN.replace(r#""cluster": {}"#, r#""cluster": {"config": {"flush.messages": "x"}}"#);
        assert!(err(&cfg).starts_with("cluster.config[\"flush.messages\"]:"), "{}", err(&cfg));
        let cache =
            MIN.replace(r#""cluster": {}"#, r#""cluster": {"host": {"page_cache": "lots"}}"#);
        assert!(err(&cache).starts_with("cluster.host.page_cache: expected a size"));
        let fault = MIN
            .replace(r#""cluster""#, r#""faults": [{"at": "1s", "kill": "broker-3"}], "cluster""#);
        assert!(err(&fault).starts_with("faults[0].kill: no broker-3"), "{}", err(&fault));
        let topic = MIN.replace(r#""topic": "events""#, r#""topic": "nope""#);
        assert!(err(&topic).starts_with("workload.producers[0].topic: no topic named nope"));
        let exp =
            MIN.replace(r#""name": "t","#, r#""name": "t", "expect": {"lost-write": "maybe"},"#);
        assert_eq!(err(&exp), "expect[\"lost-write\"]: expected one of held, violated");
        assert!(err("{").contains("not valid JSON"));
    }

    #[test]
    fn mode_is_storage_by_default_network_on_request_and_unknown_values_name_the_path() {
        assert_eq!(Scenario::parse(MIN).unwrap().mode, Mode::Storage);
        let net = MIN.replace(r#""cluster": {}"#, r#""cluster": {"mode": "network", "host": {"nic": "1Gbps", "link_latency": "200us", "cores": 4}, "config": {"num.partitions": 3, "log.segment.bytes": 1048576}}"#);
        let s = Scenario::parse(&net).unwrap();
        assert_eq!(s.mode, Mode::Network);
        assert_eq!(
            (s.host.nic_bps, s.host.link_latency_ns, s.host.cores),
            (1_000_000_000, 200_000, Some(4))
        );
        assert_eq!(s.broker.log.segment_bytes, 1 << 20);
        assert_eq!(broker_config(&s.broker).num_partitions, 3);
        assert_eq!(s.effective()["cluster"]["mode"], "network");
        let bad = MIN.replace(r#""cluster": {}"#, r#""cluster": {"mode": "tcp"}"#);
        assert_eq!(err(&bad), "cluster.mode: expected one of storage, network");
        let nic = MIN.replace(r#""cluster": {}"#, r#""cluster": {"host": {"nic": "1Gbps"}}"#);
        assert!(err(&nic).starts_with("cluster.host.nic: only with cluster.mode"), "{}", err(&nic));
        let key = MIN.replace(
            r#""cluster": {}"#,
            r#""cluster": {"mode": "network", "config": {"segment.bytes": 1048576}}"#,
        );
        assert!(
            err(&key).starts_with("cluster.config[\"segment.bytes\"]: unknown config key"),
            "{}",
            err(&key)
        );
        let part = MIN.replace(
            r#""cluster""#,
            r#""faults": [{"at": "1s", "partition": "broker-0", "for": "1s"}], "cluster""#,
        );
        assert!(
            err(&part).starts_with("faults[0].partition: only with cluster.mode"),
            "{}",
            err(&part)
        );
        let part = part.replace(r#""cluster": {}"#, r#""cluster": {"mode": "network"}"#);
        let s = Scenario::parse(&part).unwrap();
        assert_eq!(
            (s.faults[0].action.clone(), s.faults[0].label.as_str()),
            (FaultAction::Partition, "partition broker-0 for 1000ms")
        );
        let nic = part
            .replace(r#""partition": "broker-0""#, r#""slow_nic": "broker-0", "bps": "10Mbps""#);
        let s = Scenario::parse(&nic).unwrap();
        assert_eq!(
            (s.faults[0].action.clone(), s.faults[0].label.as_str()),
            (FaultAction::SlowNic { bps: 10_000_000 }, "slow_nic broker-0 10000000bps for 1000ms")
        );
        // Storage runs are network runs too: the broker's own parser judges `cluster.config`
        // (a topic-level spelling is not a broker key).
        let topic_key =
            MIN.replace(r#""cluster": {}"#, r#""cluster": {"config": {"flush.messages": 1}}"#);
        assert!(
            err(&topic_key).starts_with("cluster.config[\"flush.messages\"]: "),
            "{}",
            err(&topic_key)
        );
        let broker_key =
            MIN.replace(r#""cluster": {}"#, r#""cluster": {"config": {"num.partitions": 3}}"#);
        assert!(Scenario::parse(&broker_key).is_ok());
    }

    #[test]
    fn units() {
        let d = |s: &str| parse_duration_ns(&Value::String(s.into()), "x").ok();
        assert_eq!(d("1.5s"), Some(1_500_000_000));
        assert_eq!(d("250ms"), Some(250_000_000));
        assert_eq!(d("2m"), Some(120_000_000_000));
        assert_eq!(d("soon"), None);
        assert_eq!(parse_duration_ns(&json!(3), "x").ok(), Some(3_000_000_000));
        let b = |s: &str| parse_bytes(&Value::String(s.into()), "x").ok();
        assert_eq!(b("1GiB"), Some(1 << 30));
        assert_eq!(b("1.5KiB"), Some(1536));
        assert_eq!(b("100MB"), Some(100_000_000));
        assert_eq!(b("1 XB"), None);
    }
}
