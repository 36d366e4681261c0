//! Lowering a [`RawScenario`] into a [`Scenario`]: defaults, ranges and the rules that tie
//! fields together (topic references, broker references, mode-dependent settings), each error
//! naming the path it is about.

use std::collections::BTreeMap;

use broker::log::LogConfig;
use disk_model::sim::{DeviceProfile, PageCacheConfig};

use super::raw::{RawCluster, RawHost, RawScenario, RawTopic};
use super::units::{range, req, ConfigMap, Obj, UInt};
use super::{
    invalid, join, timeline, workload, BrokerSpec, HostSpec, Mode, Scenario, TopicSpec,
    BROKERS_MAX, PARTITIONS_PER_TOPIC_MAX, PARTITION_REPLICAS_MAX, R,
};

/// "only with cluster.mode = network" for settings a storage run has no use for.
pub(super) const NETWORK_ONLY: &str =
    "only with cluster.mode = \"network\" (storage runs have a free link and free CPU)";

/// What `cluster` says.
pub(super) struct ClusterParts {
    pub mode: Mode,
    pub brokers: u32,
    pub controllers: u32,
    pub host: HostSpec,
    pub broker: BrokerSpec,
}

pub(super) fn scenario(raw: &RawScenario) -> R<Scenario> {
    let name = req(&raw.name, "", "name")?.clone();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(invalid("name", "expected letters, digits, '-' or '_'"));
    }
    let duration_s = range(&raw.duration_s, "", "duration_s", 10, 1, 86_400)?;
    let ClusterParts { mode, brokers, controllers, host, broker } =
        cluster(req(&raw.cluster, "", "cluster")?)?;
    let topics = topics(req(&raw.topics, "", "topics")?, brokers, &broker)?;
    let w = workload::workload(req(&raw.workload, "", "workload")?, &topics, mode, &host)?;
    // Fault targets are brokers or group members (consumer-N counts every consumer).
    let members: Vec<bool> = w
        .consumers
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.group_id.is_some(), c.count as usize))
        .collect();
    let disks = host.disks;
    let ctx =
        timeline::Ctx { brokers, disks, members: &members, topics: &topics, duration_s, mode };
    let faults = timeline::faults(raw, &ctx)?;
    let nemesis = raw.nemesis.get().map(|n| timeline::nemesis(n, &ctx)).transpose()?;
    let checks =
        workload::checks(raw.checks.get(), &w.producers, &w.consumers, &w.prefill, brokers)?;
    let expect = workload::expect(raw.expect.get(), &checks)?;
    Ok(Scenario {
        name,
        description: raw.description.get().cloned().unwrap_or_default(),
        seed: range(&raw.seed, "", "seed", 1, 0, u64::MAX)?,
        duration_s,
        settle_timeout_s: range(&raw.settle_timeout_s, "", "settle_timeout_s", 30, 1, 3_600)?,
        sample_ms: range(&raw.sample_ms, "", "sample_ms", 100, 1, 60_000)?,
        brokers,
        controllers,
        mode,
        host,
        broker,
        topics,
        producers: w.producers,
        consumers: w.consumers,
        faults,
        nemesis,
        checks,
        expect,
        produce_after_heal_s: range(
            &raw.produce_after_heal_s,
            "",
            "produce_after_heal_s",
            2,
            1,
            3_600,
        )?,
        measure_from_ns: raw.measure.get().and_then(|m| m.from.get()).map(|d| d.0),
        measure_warmup_ns: measure_warmup_ns(raw)?,
        client_hosts: w.client_hosts,
        client_nic_bps: w.client_nic_bps,
        prefill: w.prefill,
    })
}

/// `measure.warmup`: at most `duration_s`, and not with `measure.from` (which fixes the start).
fn measure_warmup_ns(raw: &RawScenario) -> R<u64> {
    let Some(m) = raw.measure.get() else { return Ok(0) };
    let Some(w) = m.warmup.get() else { return Ok(0) };
    if m.from.get().is_some() {
        return Err(invalid("measure.warmup", "not with measure.from: from fixes the window's start, warmup moves it from the first acknowledgement"));
    }
    let limit_ns = raw.duration_s.get().map_or(10, |d| d.0).saturating_mul(1_000_000_000);
    if w.0 > limit_ns {
        return Err(invalid("measure.warmup", "longer than duration_s: the window would be empty"));
    }
    Ok(w.0)
}

fn cluster(c: &RawCluster) -> R<ClusterParts> {
    let mode = c.mode.get().copied().unwrap_or(Mode::Storage);
    // Limits (measured, sim/README.md "Cluster runs"): a broker costs ~0.4 MB at start-up and
    // a partition replica ~100 KB, so 64 brokers and 30,000 replicas start in ~3 GB.
    let brokers = range(&c.brokers, "cluster", "brokers", 1, 1, BROKERS_MAX)? as u32;
    if brokers > 1 && mode != Mode::Network {
        return Err(invalid("cluster.brokers", "more than one broker needs cluster.mode = \"network\" (a combined-mode cluster on the simulated network)"));
    }
    // The metadata quorum: brokers 0..controllers-1 are also controllers (combined mode),
    // the others brokers only, as a Kafka cluster usually runs 3 controllers.
    let default_controllers = u64::from(brokers.min(3));
    let controllers = range(
        &c.controllers,
        "cluster",
        "controllers",
        default_controllers,
        1,
        u64::from(brokers),
    )? as u32;
    let no_host = RawHost::default();
    let host = host(c.host.get().map_or(&no_host, |h| &**h), "cluster.host", mode)?;
    let empty = ConfigMap::default();
    let broker = broker_spec(c.config.get().unwrap_or(&empty))?;
    Ok(ClusterParts { mode, brokers, controllers, host, broker })
}

/// `cluster.config`: judged by the broker's own parser (as `broker serve --override` would);
/// the log settings it models go into the broker's `LogConfig`.
fn broker_spec(config: &ConfigMap) -> R<BrokerSpec> {
    // The broker's own periodic tasks run (`broker::tasks`): Kafka's defaults.
    let d = broker::BrokerConfig::default();
    let mut broker = BrokerSpec {
        log: LogConfig::default(),
        checkpoint_interval_ms: d.checkpoint_interval_ms as u64,
        flush_scheduler_interval_ms: d.flush_scheduler_interval_ms as u64,
        raw: config.0.clone(),
    };
    let mut probe = broker::BrokerConfig::default();
    for (k, s) in &config.0 {
        let p = join("cluster.config", k);
        probe.set(k, s).map_err(|e| invalid(&p, e.to_string()))?;
        if !(k.starts_with("log.") || k == "message.max.bytes") {
            continue;
        }
        let interval = || {
            let v = super::units::Opt(s.trim().parse::<u64>().ok().map(UInt));
            if v.is_some() {
                range(&v, "cluster.config", k, 0, 1, i64::MAX as u64)
            } else {
                Err(invalid(&p, "expected a non-negative integer"))
            }
        };
        match k.as_str() {
            "log.flush.offset.checkpoint.interval.ms" => {
                broker.checkpoint_interval_ms = interval()?
            }
            "log.flush.scheduler.interval.ms" => broker.flush_scheduler_interval_ms = interval()?,
            // A broker-level `log.*` key that is not a log setting (`log.retention.check.interval.ms`,
            // `log.segment.delete.delay.ms`, `log.cleaner.*`): the broker knows it (the probe took
            // it) and reads it from `raw`.
            _ => match broker.log.set(k, s) {
                Ok(_) => {}
                Err(e) => return Err(invalid(&p, e.to_string())),
            },
        }
    }
    Ok(broker)
}

/// The page-cache knobs of `cluster.host` (Linux's names), defaults from the model.
fn page_cache(h: &RawHost, p: &str) -> R<PageCacheConfig> {
    let d = PageCacheConfig::default();
    let kb = |v: &super::units::Opt<UInt>, key: &str, default: u32| {
        range(v, p, key, default.into(), 4, 1 << 20).map(|n| n as u32)
    };
    let ratio = |v: &super::units::Opt<UInt>, key: &str, default: u32| {
        range(v, p, key, default.into(), 1, 100).map(|n| n as u32)
    };
    let centis = |v: &super::units::Opt<UInt>, key: &str, default: u32, lo: u64| {
        range(v, p, key, default.into(), lo, u32::MAX.into()).map(|n| n as u32)
    };
    Ok(PageCacheConfig {
        capacity_bytes: h.page_cache.get().map_or(d.capacity_bytes, |b| b.0),
        dirty_ratio: ratio(&h.dirty_ratio, "dirty_ratio", d.dirty_ratio)?,
        dirty_background_ratio: ratio(
            &h.dirty_background_ratio,
            "dirty_background_ratio",
            d.dirty_background_ratio,
        )?,
        dirty_expire_centisecs: centis(
            &h.dirty_expire_centisecs,
            "dirty_expire_centisecs",
            d.dirty_expire_centisecs,
            0,
        )?,
        dirty_writeback_centisecs: centis(
            &h.dirty_writeback_centisecs,
            "dirty_writeback_centisecs",
            d.dirty_writeback_centisecs,
            1,
        )?,
        read_ahead_kb: kb(&h.read_ahead_kb, "read_ahead_kb", d.read_ahead_kb)?,
        read_ahead_max_kb: kb(&h.read_ahead_max_kb, "read_ahead_max_kb", d.read_ahead_max_kb)?,
        writeback_chunk_kb: kb(&h.writeback_chunk_kb, "writeback_chunk_kb", d.writeback_chunk_kb)?,
    })
}

fn host(h: &RawHost, p: &str, mode: Mode) -> R<HostSpec> {
    if mode == Mode::Storage {
        let network = [
            ("nic", h.nic.is_some()),
            ("link_latency", h.link_latency.is_some()),
            ("cores", h.cores.is_some()),
            ("cpu", h.cpu.is_some()),
            ("clients_share_host", h.clients_share_host.is_some()),
        ];
        for (k, present) in network {
            if present {
                return Err(invalid(&join(p, k), NETWORK_ONLY));
            }
        }
    }
    let nic_bps = match h.nic.get() {
        None if mode == Mode::Storage => net_model::sim::NIC_BPS_MAX,
        None => net_model::sim::NicConfig::default().egress_bps,
        Some(b) => b.0,
    };
    let (cores, cpu) = cpu(h, p)?;
    let link_latency_ns = match h.link_latency.get() {
        None if mode == Mode::Storage => 0,
        None => net_model::sim::LinkConfig::default().latency_ns,
        Some(d) if d.0 > net_model::sim::LATENCY_NS_MAX => {
            let msg = format!("at most {} ns", net_model::sim::LATENCY_NS_MAX);
            return Err(invalid(&join(p, "link_latency"), msg));
        }
        Some(d) => d.0,
    };
    let page_cache = page_cache(h, p)?;
    page_cache.validate().map_err(|e| invalid(p, e))?;
    let clients_share_host = h.clients_share_host.get().copied().unwrap_or(false);
    if clients_share_host && cores.is_none() {
        let msg = "needs a CPU model (cluster.host.cores, or a profile's): the shared machine is its core pool";
        return Err(invalid(&join(p, "clients_share_host"), msg));
    }
    Ok(HostSpec {
        device: device(h, p)?,
        page_cache,
        torn_writes: h.torn_writes.get().copied().unwrap_or(false),
        disk_bytes: h.disk_bytes.get().map(|b| b.0),
        nic_bps,
        link_latency_ns,
        cores,
        cpu,
        clients_share_host,
        disks: range(&h.disks, p, "disks", 1, 1, DISKS_MAX)? as u32,
        profile: h.profile.get().cloned(),
        profile_name: h.name.get().cloned(),
        sources: h.sources.get().cloned().unwrap_or_default(),
    })
}

/// Disks per broker at most (JBOD: one `log.dirs` entry on each): the broker's limit on data
/// directories (`LOG_DIRS_MAX`), and far more than a machine has slots for.
pub const DISKS_MAX: u64 = broker::log::manager::LOG_DIRS_MAX as u64;

/// `disk` (a built-in device by name) or `device` (a device's parameters); default NVMe.
fn device(h: &RawHost, p: &str) -> R<DeviceProfile> {
    match (h.disk.get(), h.device.get()) {
        (Some(_), Some(_)) => {
            Err(invalid(&join(p, "device"), "give disk (a name) or device, not both"))
        }
        (_, Some(d)) => {
            d.0.validate().map_err(|e| invalid(&join(p, "device"), e))?;
            Ok(d.0.clone())
        }
        (disk, None) => {
            let disk = disk.map_or("nvme", String::as_str);
            DeviceProfile::by_name(disk).ok_or_else(|| {
                invalid(&join(p, "disk"), "expected one of hdd-7200, sata-ssd, nvme")
            })
        }
    }
}

/// The CPU model: `cores` (or the `cpu` object's own `cores`) turns it on; `cpu` sets its costs.
fn cpu(h: &RawHost, p: &str) -> R<(Option<u32>, net_model::CpuProfile)> {
    let cores_max = u64::from(net_model::cpu::CORES_MAX);
    let mut cpu = h.cpu.get().map(|c| c.0.clone()).unwrap_or_default();
    let cores = match (h.cores.get(), h.cpu.get()) {
        (None, None) => None,
        (Some(_), _) => Some(range(&h.cores, p, "cores", 0, 1, cores_max)? as u32),
        (None, Some(c)) => Some(c.0.cores),
    };
    if let Some(c) = cores {
        cpu.cores = c;
    }
    cpu.validate().map_err(|e| invalid(&join(p, "cpu"), e.to_string()))?;
    Ok((cores, cpu))
}

fn topics(list: &[Obj<RawTopic>], brokers: u32, broker: &BrokerSpec) -> R<Vec<TopicSpec>> {
    if list.is_empty() {
        return Err(invalid("topics", "at least one topic"));
    }
    let mut topics: Vec<TopicSpec> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let t = topic(t, &format!("topics[{i}]"), brokers, broker, &topics)?;
        topics.push(t);
    }
    let replicas: i64 =
        topics.iter().map(|t| i64::from(t.partitions) * i64::from(t.replication_factor)).sum();
    if replicas > PARTITION_REPLICAS_MAX as i64 {
        return Err(invalid(
            "topics",
            format!(
                "{replicas} partition replicas (partitions × replication.factor over all topics) \
                 exceed {PARTITION_REPLICAS_MAX}: each costs ~100 KB of memory at start-up \
                 (sim/README.md, Cluster runs)"
            ),
        ));
    }
    Ok(topics)
}

fn topic(
    t: &RawTopic,
    p: &str,
    brokers: u32,
    broker: &BrokerSpec,
    topics: &[TopicSpec],
) -> R<TopicSpec> {
    let name = req(&t.name, p, "name")?.clone();
    if name.is_empty()
        || name.len() > 249
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(invalid(&join(p, "name"), "a Kafka topic name: 1-249 of [a-zA-Z0-9._-]"));
    }
    if topics.iter().any(|x| x.name == name) {
        return Err(invalid(&join(p, "name"), format!("topic {name} listed twice")));
    }
    let partitions = range(&t.partitions, p, "partitions", 1, 1, PARTITIONS_PER_TOPIC_MAX)? as i32;
    let rf_path = join(p, "replication.factor");
    let replication_factor =
        range(&t.replication_factor, p, "replication.factor", 1, 1, brokers.into())
            .map_err(|_| invalid(&rf_path, format!("expected 1..={brokers} (cluster.brokers)")))?
            as i32;
    let mut log = broker.log.clone();
    let mut overrides = BTreeMap::new();
    let config_path = join(p, "config");
    for (k, s) in t.config.get().map_or(&[][..], |c| &c.0[..]) {
        let kp = join(&config_path, k);
        if k.starts_with("log.") || k == "message.max.bytes" {
            return Err(invalid(&kp, "a broker-level name: topics take topic-level names (e.g. segment.bytes, flush.messages)"));
        }
        log.set_strict(k, s).map_err(|e| invalid(&kp, e.to_string()))?;
        overrides.insert(k.clone(), s.clone());
    }
    Ok(TopicSpec { name, partitions, replication_factor, overrides, log })
}
