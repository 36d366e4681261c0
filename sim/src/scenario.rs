//! Scenario files: JSON with Kafka's own config names. Every unknown key and every bad value is
//! an error naming its path (`workload.producers[0].acks: expected one of 0, 1, all`), and every
//! default is known and written into `summary.json`.
//!
//! Three steps: the file is deserialized into the raw types of [`raw`] (serde derive, unknown
//! keys refused, leaf syntaxes such as "10s" / "1GiB" / "10Gbps" in [`units`], the path of an
//! error from `serde_path_to_error`); [`lower`] (with [`workload`] and [`timeline`]) applies
//! defaults, ranges and the rules that tie fields together and builds a [`Scenario`];
//! [`effective`] serializes the settings in force.
//!
//! Scenario files are external input: nothing here panics on them.

use std::collections::BTreeMap;
use std::path::Path;

use broker::log::LogConfig;
use disk_model::sim::{DeviceProfile, PageCacheConfig};
use records::Compression;
use serde_json::Value;
use thiserror::Error;

use crate::checkers::Outcome;

mod effective;
#[cfg(test)]
mod golden;
mod lower;
pub mod profile;
mod raw;
mod request_faults;
mod timeline;
mod units;
mod workload;
pub use crate::faults::{Direction, DiskErrorKind, Fault, FaultAction, Peers, RuleSpec, Target};
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
    /// its cost hook to a `net_model::SimCpu` with [`HostSpec::cpu`] and this many cores.
    /// `None` = no CPU model (work costs no simulated time).
    pub cores: Option<u32>,
    /// The CPU model's costs (`cores` equals [`HostSpec::cores`] when that is set): the
    /// profile's `cpu` with `cluster.host.cpu` over it, else the model's defaults.
    pub cpu: net_model::CpuProfile,
    /// Clients share the brokers' machine (network mode with a CPU model): one core pool for
    /// every broker and client host, as when everything runs on one machine's loopback.
    pub clients_share_host: bool,
    /// Disks per broker (JBOD: `log.dirs` has one directory on each, sharing the page cache).
    pub disks: u32,
    /// The host profile the settings came from (`name (shipped)` or its path), if any.
    pub profile: Option<String>,
    pub profile_name: Option<String>,
    /// Where the numbers come from (the profile's `sources`, by key path or section).
    pub sources: BTreeMap<String, String>,
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
    /// `pacing`: `None` = seeded arrivals spread around the rate, each record created at its
    /// own time; `Some(tick)` = a sleeping load generator's bursts (perf's, Kafka's
    /// `ProducerPerformance`): records due exactly every 1/rate, each tick handing over at once
    /// every record due before the next, each created (and timed) when handed over.
    pub pacing_ns: Option<u64>,
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
    /// `measure.warmup`: the window starts this long after the first acknowledgement (0 = at
    /// it); exclusive with `measure.from`.
    pub measure_warmup_ns: u64,
    /// Client machines (`workload.client_hosts`), each with its own NIC and CPU.
    pub client_hosts: u32,
    /// The client hosts' NIC (`workload.client_nic`, default `cluster.host.nic`).
    pub client_nic_bps: u64,
    pub prefill: Vec<PrefillSpec>,
}

impl Scenario {
    /// Reads a scenario file; a relative `cluster.host.profile` path is relative to its directory.
    pub fn load(path: &Path) -> R<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse_in(&text, Some(path.parent().unwrap_or(Path::new("."))))
    }

    /// A scenario from text; a relative `cluster.host.profile` path is relative to the current
    /// directory.
    pub fn parse(text: &str) -> R<Self> {
        Self::parse_in(text, None)
    }

    /// A scenario from text, relative profile paths resolved against `base`.
    pub fn parse_in(text: &str, base: Option<&Path>) -> R<Self> {
        let mut v: Value = serde_json::from_str(text)?;
        with_profile(&mut v, base)?;
        let raw: units::Obj<raw::RawScenario> = units::from_value(v)?;
        lower::scenario(&raw)
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
        serde_json::to_value(effective::Effective::of(self)).unwrap_or(Value::Null)
    }
}

/// Replaces `cluster.host` by its profile with the scenario's keys over it, when it names one.
fn with_profile(v: &mut Value, base: Option<&Path>) -> R<()> {
    let Some(cluster) = v.get_mut("cluster").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let network = cluster.get("mode").and_then(Value::as_str) == Some("network");
    let Some(Value::Object(host)) = cluster.get("host") else {
        return Ok(());
    };
    if let Some(merged) = profile::resolve(host, base, network)? {
        cluster.insert("host".into(), merged);
    }
    Ok(())
}

/// A path joined with a key: `a.b`, or `a["b.c"]` for a key that is not a plain identifier.
fn join(path: &str, key: &str) -> String {
    let plain = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (true, false) => format!("[\"{key}\"]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[\"{key}\"]"),
    }
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

/// `cluster.brokers` at most. Measured start-up memory (sim/README.md, "Cluster runs"): ~0.4 MB
/// per broker (host, disk, page-cache and NIC models, broker and controller tasks).
pub const BROKERS_MAX: u64 = 64;
/// `topics[].partitions` at most (the controller's own per-topic limit).
pub const PARTITIONS_PER_TOPIC_MAX: u64 = 10_000;
/// Partition replicas (partitions × replication.factor, summed over topics) at most. Measured
/// start-up memory: ~95 KB per replica (20 brokers × 1,500 partitions × RF 3: 441 MB peak RSS
/// with no records; its log, index and checkpoint files and their page-cache state, the
/// partition's state on the broker), so 30,000 replicas start in ~3 GB before any record.
pub const PARTITION_REPLICAS_MAX: u64 = 30_000;

/// Cluster runs: broker `i`'s config — combined mode (broker + controller), node id `i`, the
/// quorum of every broker's controller on port 9093, simulator-friendly timeouts (fast but
/// realistic), then `cluster.config` on top (so a scenario can set any of them by Kafka's name).
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
        let d = |s: &str| units::duration_ns(&Value::String(s.into())).ok();
        assert_eq!(d("1.5s"), Some(1_500_000_000));
        assert_eq!(d("250ms"), Some(250_000_000));
        assert_eq!(d("2m"), Some(120_000_000_000));
        assert_eq!(d("soon"), None);
        assert_eq!(units::duration_ns(&serde_json::json!(3)).ok(), Some(3_000_000_000));
        let b = |s: &str| units::bytes(&Value::String(s.into())).ok();
        assert_eq!(b("1GiB"), Some(1 << 30));
        assert_eq!(b("1.5KiB"), Some(1536));
        assert_eq!(b("100MB"), Some(100_000_000));
        assert_eq!(b("1 XB"), None);
    }
}
