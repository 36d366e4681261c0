//! One run: build the host(s) from the scenario, start the workload, apply the fault timeline,
//! heal and settle, read the final state (the oracle), run the checkers, and assemble the
//! summary, charts and verdict. Everything inside the runtime is deterministic in the seed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::log::TopicPartition;
use disk_model::clock::Clock;
use disk_model::sim::{DiskEvent, FaultKind, FaultRule, SimDisk, SimDiskConfig};
use serde_json::{json, Map, Value};

use crate::api::BrokerApi;
use crate::checkers::{self, CheckKind, Outcome};
use crate::clientload::{ClientConsumer, ClientProducer, ClientSide};
use crate::history::{FinalLog, History};
use crate::host::{Host, InProcess, NetSide};
use crate::member::MemberHost;
use crate::metrics::{self, DiskSample};
use crate::netclient::NetClient;
use crate::scenario::{Acks, DiskErrorKind, FaultAction, Mode, Scenario, Target};
use crate::trace::{hex, Tracer};
use crate::workload::{decode_value, Consumer, Control, Producer};
use crate::{exit, mode_description};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep the trace's lines (for `--trace` and check-determinism).
    pub keep_trace: bool,
    /// How to replay: the scenario path as the user gave it, and the output dir.
    pub scenario_path: String,
    pub out_dir: String,
}

/// What the simulated part of a run hands back.
pub struct RawRun {
    pub history: History,
    pub samples: Vec<DiskSample>,
    pub io: Vec<(u64, u64)>,
    pub tracer: Tracer,
    pub end_ns: u64,
    pub final_disk: Value,
    /// Network runs: per-host NIC counters at the end (`Null` in storage runs).
    pub final_network: Value,
    /// Network runs with `cluster.host.cores`: the broker CPU's counters (`Null` otherwise).
    pub final_cpu: Value,
    /// Network runs: per sample, (time, host → (egress busy ns, ingress busy ns)).
    pub nic_samples: Vec<(u64, BTreeMap<String, (u64, u64)>)>,
    /// Network runs with a CPU model: per sample, (time, busy ns summed over cores), and cores.
    pub cpu_samples: Vec<(u64, BTreeMap<String, u64>)>,
    pub cores: u32,
    /// Cluster runs: leader/ISR timeline and leader-election figures (`Null` otherwise).
    pub cluster: Value,
    /// Network runs: requests each broker served, by API (its own metrics), at the end.
    pub served: Value,
    /// Per fault (index into the scenario's faults): the broker it hit, where one was resolved.
    pub fault_brokers: BTreeMap<usize, u32>,
}

pub struct RunOutput {
    pub summary: Value,
    pub charts: Vec<reports::Chart>,
    pub markers: Vec<reports::Marker>,
    pub x_max: f64,
    pub exit_code: i32,
    pub verdict: String,
    pub trace_hash: u64,
    pub trace_lines: Option<Vec<String>>,
}

pub fn replay_command(opts: &RunOptions, seed: u64) -> String {
    format!("cargo simulate {} --seed {seed} --out {}", opts.scenario_path, opts.out_dir)
}

struct Sampler {
    disk: SimDisk,
    /// Cluster runs: the other brokers' disks (their events are traced without the per-IO lines).
    other_disks: Vec<(String, SimDisk)>,
    net: Option<net_model::SimNet>,
    /// Network runs: the host whose broker's request counters are traced, and the last line.
    served: Option<(Arc<Host>, String)>,
    /// Every host's CPU model (brokers, then client hosts), by host name.
    cpus: Vec<(String, net_model::SimCpu)>,
    nic_samples: Vec<(u64, BTreeMap<String, (u64, u64)>)>,
    cpu_samples: Vec<(u64, BTreeMap<String, u64>)>,
    tracer: Tracer,
    samples: Vec<DiskSample>,
    io: Vec<(u64, u64)>,
}

impl Sampler {
    fn sample(&mut self) {
        let now = self.tracer.now_ns();
        let st = self.disk.stats();
        self.samples.push(DiskSample {
            t_ns: now,
            dirty_bytes: st.dirty_bytes,
            cached_bytes: st.cached_bytes,
            writeback_bytes: st.writeback_bytes,
            hit_pages: st.cache_hit_pages,
            miss_pages: st.cache_miss_pages,
        });
        for ev in self.disk.drain_events() {
            if let DiskEvent::Io { start_ns, done_ns, .. } = &ev {
                self.io.push((*start_ns, *done_ns));
            }
            let line =
                serde_json::to_string(&ev).unwrap_or_else(|e| format!("unserializable: {e}"));
            self.tracer.event_at(now, "disk", &line);
        }
        for (name, d) in &self.other_disks {
            for ev in d.drain_events() {
                if matches!(ev, DiskEvent::Io { .. }) {
                    continue;
                }
                let line =
                    serde_json::to_string(&ev).unwrap_or_else(|e| format!("unserializable: {e}"));
                self.tracer.event_at(now, "disk", &format!("{name} {line}"));
            }
        }
        if let Some((host, last)) = &mut self.served {
            if let Some(line) = host.served() {
                if line != *last {
                    self.tracer.event_at(now, "broker-served", &format!("{} {line}", host.name()));
                    *last = line;
                }
            }
        }
        if let Some(net) = &self.net {
            let busy = net
                .all_stats()
                .into_iter()
                .map(|(h, st)| (h, (st.egress_busy_ns, st.ingress_busy_ns)))
                .collect();
            self.nic_samples.push((now, busy));
        }
        if !self.cpus.is_empty() {
            self.cpu_samples.push((
                now,
                self.cpus.iter().map(|(h, c)| (h.clone(), c.stats().busy_ns)).collect(),
            ));
        }
        if let Some(net) = &self.net {
            for ev in net.drain_events() {
                let line =
                    serde_json::to_string(&ev).unwrap_or_else(|e| format!("unserializable: {e}"));
                self.tracer.event_at(now, "net", &line);
            }
        }
    }
}

/// A fault on a group member's host (kill, restart, pause, partition from the brokers).
fn apply_member(
    m: &MemberHost,
    action: &FaultAction,
    brokers: &[String],
    tracer: &Tracer,
    label: &str,
) {
    tracer.event("fault", label);
    match action {
        FaultAction::Kill => m.kill(),
        FaultAction::Restart => m.restart(),
        FaultAction::Pause => m.pause(),
        FaultAction::Leave => m.leave(),
        FaultAction::Partition => m.partition_from(brokers),
        other => tracer.event(
            "fault-ignored",
            &format!("{label}: {other:?} does not apply to a group member"),
        ),
    }
}

fn undo_member(
    m: &MemberHost,
    action: &FaultAction,
    brokers: &[String],
    tracer: &Tracer,
    label: &str,
) {
    tracer.event("fault-end", label);
    match action {
        FaultAction::Pause => m.resume(),
        FaultAction::Partition => m.heal_from(brokers),
        _ => {}
    }
}

fn apply(
    host: &Host,
    peers: &[String],
    action: &FaultAction,
    rules: &mut BTreeMap<usize, disk_model::sim::FaultId>,
    i: usize,
    tracer: &Tracer,
    label: &str,
) {
    tracer.event("fault", label);
    match action {
        FaultAction::Kill => host.kill(),
        // Parsing allows `leave` for group members only.
        FaultAction::Leave => {
            tracer.event("fault-ignored", &format!("{label}: a broker cannot leave a group"))
        }
        FaultAction::Restart => host.restart(),
        FaultAction::PowerLoss => host.power_loss(),
        FaultAction::Pause => host.pause(),
        FaultAction::SlowDisk { factor } => host.disk.set_slow_factor(*factor),
        FaultAction::DiskError { kind, probability, times, path } => {
            let kind = match kind {
                DiskErrorKind::Read => FaultKind::ReadError,
                DiskErrorKind::Write => FaultKind::WriteError,
                DiskErrorKind::Sync => FaultKind::SyncError,
                DiskErrorKind::NoSpace => FaultKind::NoSpace,
            };
            let mut rule = FaultRule::always(kind)
                .with_probability(*probability)
                .under(Host::data_path(path.as_deref()));
            if let Some(t) = times {
                rule = rule.times(*t);
            }
            rules.insert(i, host.disk.inject_fault(rule));
        }
        FaultAction::DropCaches => host.disk.drop_caches(),
        FaultAction::Partition => host.partition(peers),
        FaultAction::SlowNic { bps } => host.set_nic(Some(*bps)),
        FaultAction::Cut { direction, port, .. } => host.cut(peers, *direction, *port, true),
        FaultAction::CorruptSector { path } => {
            let hit = host.disk.corrupt_random_sector(Host::data_path(path.as_deref()));
            tracer.event("corrupted", &format!("{hit:?}"));
        }
    }
}

fn undo(
    host: &Host,
    peers: &[String],
    action: &FaultAction,
    rules: &mut BTreeMap<usize, disk_model::sim::FaultId>,
    i: usize,
    tracer: &Tracer,
    label: &str,
) {
    tracer.event("fault-end", label);
    match action {
        FaultAction::Pause => host.resume(),
        FaultAction::Partition => host.heal_partition(peers),
        FaultAction::SlowNic { .. } => host.set_nic(None),
        FaultAction::Cut { direction, port, .. } => host.cut(peers, *direction, *port, false),
        FaultAction::SlowDisk { .. } => host.disk.set_slow_factor(1),
        FaultAction::DiskError { .. } => {
            if let Some(id) = rules.remove(&i) {
                host.disk.clear_fault(id);
            }
        }
        _ => {}
    }
}

/// Whether every group is stable for the end of the run: each running member's latest
/// assignment is of the group's newest generation, and that generation owns every partition (a
/// run that stops mid-rebalance would judge the group on a half-told story).
fn groups_settled(h: &History, members: &BTreeMap<u32, Arc<MemberHost>>) -> bool {
    for (g, tps) in &h.group_partitions {
        let mut latest: BTreeMap<u32, &crate::history::Assignment> = BTreeMap::new();
        for a in h.assignments.iter().filter(|a| &a.group == g) {
            latest.insert(a.member, a);
        }
        let Some(newest) = latest.values().map(|a| a.generation).max() else { return false };
        let running: Vec<u32> = members
            .iter()
            .filter(|(i, m)| m.is_running() && h.group_members.get(i) == Some(g))
            .map(|(i, _)| *i)
            .collect();
        if running.iter().any(|i| latest.get(i).is_none_or(|a| a.generation != newest)) {
            return false;
        }
        let owned: std::collections::BTreeSet<&String> =
            latest.values().filter(|a| a.generation == newest).flat_map(|a| a.tps.iter()).collect();
        if tps.iter().any(|tp| !owned.contains(tp)) {
            return false;
        }
    }
    true
}

/// Consumer groups in `summary.json`: each member's assignments over time (what the member saw
/// after each rebalance notice) and the commits, so rebalance times can be read off.
fn group_summary(h: &History) -> Value {
    let mut out = Map::new();
    for g in h.group_partitions.keys() {
        let timeline: Vec<Value> = h
            .assignments
            .iter()
            .filter(|a| &a.group == g)
            .map(|a| json!({"t_s": a.at_ns as f64 / 1e9, "member": format!("consumer-{}", a.member), "generation": a.generation, "partitions": a.tps}))
            .collect();
        let commits = h.commits.iter().filter(|c| &c.group == g);
        let (accepted, rejected) =
            commits.fold(
                (0u64, 0u64),
                |(a, r), c| if c.error.is_none() { (a + 1, r) } else { (a, r + 1) },
            );
        out.insert(
            g.clone(),
            json!({
                "generations": h.assignments.iter().filter(|a| &a.group == g).map(|a| a.generation).max(),
                "commits_accepted": accepted,
                "commits_rejected": rejected,
                "assignments": timeline,
            }),
        );
    }
    Value::Object(out)
}

/// The simulated part: must run inside a madsim runtime.
pub async fn simulate(sc: &Scenario, seed: u64, keep_trace: bool) -> RawRun {
    let tracer = Tracer::new(keep_trace);
    tracer.event("run-start", &format!("scenario={} seed={seed}", sc.name));
    // Network runs: one fabric (its time 0 is the tracer's), the broker's host and
    // the client host on it.
    let net = (sc.mode == Mode::Network).then(|| {
        let nic = net_model::sim::NicConfig::symmetric(sc.host.nic_bps);
        let link = net_model::sim::LinkConfig {
            latency_ns: sc.host.link_latency_ns,
            ..Default::default()
        };
        net_model::SimNet::new(net_model::sim::SimNetConfig {
            seed,
            nic,
            link,
            ..Default::default()
        })
    });
    let mut cfg = SimDiskConfig::new(sc.host.device.clone(), seed);
    cfg.page_cache = sc.host.page_cache.clone();
    let disk = SimDisk::new(cfg, Clock::Runtime { epoch: tracer.epoch() });
    disk.set_torn_writes(sc.host.torn_writes);
    disk.set_space_limit_bytes(sc.host.disk_bytes);
    // The operator provisions `log.dirs` before the broker first starts (mkdir + a durable
    // parent entry). The broker's own `create_dir_all` of a missing data dir does not fsync the
    // parent directory, so without this a power loss would take the whole data dir with it.
    {
        use disk_model::Storage;
        let dir = std::path::Path::new(crate::host::DATA_DIR);
        let r = async {
            disk.create_dir_all(dir).await?;
            disk.sync_dir(std::path::Path::new("")).await
        }
        .await;
        tracer.event(
            "provisioned",
            &format!(
                "{} {}",
                crate::host::DATA_DIR,
                r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())
            ),
        );
    }
    let clustered = sc.brokers > 1;
    let side_for = |i: u32| {
        net.as_ref().map(|n| NetSide {
            net: n.clone(),
            view: n.add_host(
                &format!("broker-{i}"),
                net_model::sim::NicConfig::symmetric(sc.host.nic_bps),
            ),
            config: if clustered {
                crate::scenario::cluster_broker_config(&sc.broker, i, sc.controllers)
            } else {
                crate::scenario::broker_config(&sc.broker)
            },
            cpu: sc
                .host
                .cores
                .map(|c| net_model::SimCpu::new(net_model::CpuProfile::with_cores(c))),
            nominal_bps: sc.host.nic_bps,
            seed: seed ^ HOST_SALT ^ u64::from(i).wrapping_mul(0x0100_0000_01b3),
        })
    };
    let side = side_for(0);
    // Cluster runs: brokers 1..N, each with its own disk (its own power-loss domain), NIC, CPU.
    let mut more = Vec::new();
    for i in 1..sc.brokers {
        let mut cfg = SimDiskConfig::new(sc.host.device.clone(), seed ^ HOST_SALT ^ u64::from(i));
        cfg.page_cache = sc.host.page_cache.clone();
        let d = SimDisk::new(cfg, Clock::Runtime { epoch: tracer.epoch() });
        d.set_torn_writes(sc.host.torn_writes);
        d.set_space_limit_bytes(sc.host.disk_bytes);
        {
            use disk_model::Storage;
            let dir = std::path::Path::new(crate::host::DATA_DIR);
            let r = async {
                d.create_dir_all(dir).await?;
                d.sync_dir(std::path::Path::new("")).await
            }
            .await;
            tracer.event(
                "provisioned",
                &format!(
                    "broker-{i} {} {}",
                    crate::host::DATA_DIR,
                    r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())
                ),
            );
        }
        more.push((d, side_for(i)));
    }
    // Client machines: host 0 also carries the admin, the settle loop's and the oracle's reads.
    let client_names: Vec<String> =
        (0..sc.client_hosts).map(crate::host::client_host_name).collect();
    let client_nets: Vec<_> = net
        .as_ref()
        .map(|n| {
            client_names
                .iter()
                .map(|name| {
                    n.add_host(name, net_model::sim::NicConfig::symmetric(sc.client_nic_bps))
                })
                .collect()
        })
        .unwrap_or_default();
    let client_net = client_nets.first().cloned();
    let host = Host::with_network(
        0,
        disk.clone(),
        sc.broker.clone(),
        sc.topics.clone(),
        tracer.clone(),
        side,
    );
    host.start();
    let mut hosts = vec![host.clone()];
    for (i, (d, side)) in more.into_iter().enumerate() {
        let h = Host::with_network(
            i as u32 + 1,
            d,
            sc.broker.clone(),
            sc.topics.clone(),
            tracer.clone(),
            side,
        );
        h.start();
        hosts.push(h);
    }
    let in_process: Arc<dyn BrokerApi> = Arc::new(InProcess { hosts: vec![host.clone()] });
    // Storage runs share the in-process seam; network runs give each client its own connection.
    let api_for = |who: String, acks: i16, max_in_flight: usize| -> Arc<dyn BrokerApi> {
        match &client_net {
            Some(cn) => Arc::new(NetClient::new(
                cn.clone(),
                host.addr(),
                who,
                tracer.clone(),
                acks,
                max_in_flight,
            )),
            None => in_process.clone(),
        }
    };
    let api: Arc<dyn BrokerApi> = match (&client_net, clustered) {
        (Some(cn), true) => Arc::new(crate::cluster::Router {
            hosts: hosts.clone(),
            clients: hosts
                .iter()
                .map(|h| {
                    NetClient::new(cn.clone(), h.addr(), "oracle".into(), tracer.clone(), -1, 1)
                })
                .collect(),
        }),
        _ => api_for("oracle".into(), -1, 1),
    };
    let mut setup_failures = Vec::new();
    if let Some(cn) = &client_net {
        // Cluster runs: topics are created once every broker has registered, so the
        // controller spreads replicas and leaders round-robin over all of them (a topic created
        // while one broker is up would put every leader on it).
        if clustered {
            let give_up = tracer.now_ns() + 20_000_000_000;
            while crate::cluster::registered_brokers(&hosts) < sc.brokers as usize {
                if tracer.now_ns() > give_up {
                    setup_failures.push(format!(
                        "only {} of {} brokers registered within 20 s",
                        crate::cluster::registered_brokers(&hosts),
                        sc.brokers
                    ));
                    break;
                }
                tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
            }
            tracer.event(
                "brokers-registered",
                &format!("{}", crate::cluster::registered_brokers(&hosts)),
            );
        }
        // Like an operator's `kafka-topics --create` before the workload starts.
        let admin = NetClient::new(cn.clone(), host.addr(), "admin".into(), tracer.clone(), -1, 1);
        let give_up = 10_000_000_000;
        loop {
            match admin.create_topics(&sc.topics, Duration::from_secs(5)).await {
                Ok(()) => break,
                Err(e) if tracer.now_ns() < give_up => {
                    tracer.event("create-topics-retry", e.code());
                    tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
                }
                Err(e) => {
                    tracer.event("create-topics-failed", &e.to_string());
                    setup_failures.push(format!("the scenario's topics could not be created: {e}"));
                    break;
                }
            }
        }
        // Cluster runs: the workload starts once every partition has a leader.
        if clustered {
            let give_up = tracer.now_ns() + 20_000_000_000;
            loop {
                let ready = sc.topics.iter().all(|t| {
                    (0..t.partitions).all(|p| {
                        crate::cluster::partition_state(&hosts, &t.name, p)
                            .is_some_and(|s| s.leader >= 0)
                    })
                });
                if ready {
                    tracer.event(
                        "cluster-ready",
                        &format!(
                            "every partition has a leader; controller=broker-{}",
                            crate::cluster::active_controller(&hosts).map_or(-1, i64::from)
                        ),
                    );
                    break;
                }
                if tracer.now_ns() > give_up {
                    setup_failures.push("the cluster's partitions had no leaders 20 s after the topics were created".into());
                    break;
                }
                tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
            }
        }
    }
    let history = Arc::new(Mutex::new(History::default()));
    let control = Arc::new(Control::default());
    let duration_ns = sc.duration_s * 1_000_000_000;
    let partitions_of = |topic: &str| -> Vec<TopicPartition> {
        sc.topics
            .iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p)))
            .collect()
    };

    // Workload on a client node (it survives broker faults).
    let client = madsim::runtime::Handle::current().create_node().name("client").build();
    // Network runs: the client crate's Producer and Consumer on the client host, charging the
    // client host's own core pool (same profile as the broker's).
    let client_cpus: Vec<Option<net_model::SimCpu>> = client_nets
        .iter()
        .map(|_| {
            sc.host.cores.map(|c| net_model::SimCpu::new(net_model::CpuProfile::with_cores(c)))
        })
        .collect();
    let client_sides: Vec<ClientSide> = client_nets
        .iter()
        .zip(&client_cpus)
        .map(|(cn, cpu)| ClientSide {
            net: cn.clone(),
            cpu: cpu
                .clone()
                .map(|c| Arc::new(c) as Arc<dyn net_model::CostHook>)
                .unwrap_or_else(|| Arc::new(net_model::RealCpu)),
            bootstrap: hosts.iter().map(|h| h.addr()).collect(),
        })
        .collect();
    let client_side = client_sides.first().cloned();
    let side_of = |host: Option<u32>, i: u32| {
        client_sides.get(host.unwrap_or(i % sc.client_hosts.max(1)) as usize).cloned()
    };
    // Prefill: a backlog written before the workload's clock starts.
    let mut prefilled = 0u64;
    if let Some(side) = &client_side {
        for (k, spec) in sc.prefill.iter().enumerate() {
            let (ok, failed) =
                crate::clientload::prefill(spec, k as u32, side, &tracer, seed).await;
            prefilled += ok;
            if failed > 0 {
                setup_failures.push(format!(
                    "prefill of {}: {failed} of {} records failed",
                    spec.topic, spec.records
                ));
            }
        }
    }
    if !sc.prefill.is_empty() {
        tracer.event("prefill-done", &format!("records={prefilled}"));
    }
    let stop_ns = sc.producers_stop_ns();
    let mut index = 0u32;
    for spec in &sc.producers {
        for _ in 0..spec.count {
            control.producers_running.fetch_add(1, Ordering::SeqCst);
            if let Some(side) = side_of(spec.host, index) {
                let p = ClientProducer {
                    index,
                    spec: spec.clone(),
                    side,
                    history: history.clone(),
                    tracer: tracer.clone(),
                    control: control.clone(),
                    stop_at_ns: stop_ns,
                    seed,
                };
                client.spawn(p.run());
                index += 1;
                continue;
            }
            let p = Producer {
                index,
                spec: spec.clone(),
                partitions: partitions_of(&spec.topic),
                api: api_for(
                    format!("p{index}"),
                    if spec.acks == Acks::One { 1 } else { -1 },
                    spec.max_in_flight as usize,
                ),
                history: history.clone(),
                tracer: tracer.clone(),
                control: control.clone(),
                stop_at_ns: stop_ns,
                seed,
            };
            client.spawn(p.run());
            index += 1;
        }
    }
    let mut cindex = 0u32;
    let mut members: BTreeMap<u32, Arc<MemberHost>> = BTreeMap::new();
    for spec in &sc.consumers {
        let parts = partitions_of(&spec.topic);
        for k in 0..spec.count {
            // Static assignment: partitions dealt round-robin among this entry's consumers.
            let mine: Vec<_> = parts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % spec.count == k)
                .map(|(_, tp)| tp.clone())
                .collect();
            if mine.is_empty() && spec.group.is_none() {
                continue;
            }
            if let (Some(side), Some(group), Some(n)) = (&client_side, &spec.group, &net) {
                // A group member: its own host, subscribing (the group assigns partitions).
                let nic = net_model::sim::NicConfig::symmetric(sc.host.nic_bps);
                let m = MemberHost::new(
                    cindex,
                    spec.clone(),
                    group.clone(),
                    k,
                    n.clone(),
                    nic,
                    side.cpu.clone(),
                    side.bootstrap.clone(),
                    history.clone(),
                    tracer.clone(),
                    control.clone(),
                );
                {
                    let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
                    let g = spec.group_id.clone().unwrap_or_default();
                    h.group_members.insert(cindex, g.clone());
                    h.group_partitions.insert(g, parts.iter().map(|tp| tp.to_string()).collect());
                }
                m.start();
                members.insert(cindex, m);
                cindex += 1;
                continue;
            }
            if let Some(side) = side_of(spec.host, cindex) {
                let c = ClientConsumer {
                    index: cindex,
                    spec: spec.clone(),
                    partitions: mine,
                    side,
                    history: history.clone(),
                    tracer: tracer.clone(),
                    control: control.clone(),
                };
                client.spawn(c.run());
                cindex += 1;
                continue;
            }
            let c = Consumer {
                index: cindex,
                spec: spec.clone(),
                partitions: mine,
                api: api_for(format!("c{cindex}"), -1, 1),
                history: history.clone(),
                tracer: tracer.clone(),
                control: control.clone(),
            };
            client.spawn(c.run());
            cindex += 1;
        }
    }

    // Sampler: disk gauges + the disk's event log into the trace.
    let served = net.as_ref().map(|_| (host.clone(), String::new()));
    let other_disks: Vec<(String, SimDisk)> =
        hosts.iter().skip(1).map(|h| (h.name(), h.disk.clone())).collect();
    // Every host's CPU model (brokers, then client hosts): sampled for the chart, summed at the end.
    let host_cpus: Vec<(String, net_model::SimCpu)> = hosts
        .iter()
        .filter_map(|h| h.network.as_ref().and_then(|n| n.cpu.clone()).map(|c| (h.name(), c)))
        .chain(
            client_names
                .iter()
                .zip(&client_cpus)
                .filter_map(|(n, c)| c.clone().map(|c| (n.clone(), c))),
        )
        .collect();
    let sampler = Arc::new(Mutex::new(Sampler {
        disk: disk.clone(),
        other_disks,
        net: net.clone(),
        served,
        cpus: host_cpus.clone(),
        nic_samples: Vec::new(),
        cpu_samples: Vec::new(),
        tracer: tracer.clone(),
        samples: Vec::new(),
        io: Vec::new(),
    }));
    {
        let sampler = sampler.clone();
        let every = sc.sample_ms * 1_000_000;
        let tracer = tracer.clone();
        tokio::spawn(async move {
            let mut t = 0;
            loop {
                t += every;
                tracer.sleep_until_ns(t).await;
                sampler.lock().unwrap_or_else(|p| p.into_inner()).sample();
            }
        });
    }

    // Cluster runs: leaders' HWs and partition states, sampled in memory every 250 ms.
    let observed = Arc::new(Mutex::new(crate::cluster::Observed::default()));
    if clustered {
        let obs = crate::cluster::Observer {
            hosts: hosts.clone(),
            tps: partitions_all(sc),
            tracer: tracer.clone(),
            out: observed.clone(),
        };
        let tracer = tracer.clone();
        tokio::spawn(async move {
            let mut t = 0;
            loop {
                obs.sample();
                t += OBSERVE_NS;
                tracer.sleep_until_ns(t).await;
            }
        });
    }

    // Fault timeline: (time, start or end, fault index), in time order, file order on ties.
    let mut timeline: Vec<(u64, bool, usize)> = Vec::new();
    for (i, f) in sc.faults.iter().enumerate() {
        timeline.push((f.at_ns, true, i));
        if let Some(d) = f.for_ns {
            if f.at_ns + d < duration_ns {
                timeline.push((f.at_ns + d, false, i));
            }
        }
    }
    timeline.sort_by_key(|&(t, start, i)| (t, !start, i));
    let mut rules = BTreeMap::new();
    let mut active: BTreeMap<usize, ()> = BTreeMap::new();
    // When the last fault ended (a restart, or a fault's `for` elapsing): progress must follow.
    let mut last_heal_ns = 0u64;
    let mut member_active: BTreeMap<usize, ()> = BTreeMap::new();
    let broker_names: Vec<String> = hosts.iter().map(|h| h.name()).collect();
    // A partitioned broker is cut off from the client host, every member's host and (cluster
    // runs) the other brokers; `peers` narrows that for a `Cut`.
    let clients: Vec<String> =
        client_names.iter().cloned().chain(members.values().map(|m| m.name())).collect();
    let peers_of = |b: u32, action: &FaultAction| -> Vec<String> {
        let others =
            broker_names.iter().enumerate().filter(|(j, _)| *j as u32 != b).map(|(_, n)| n.clone());
        match action {
            FaultAction::Cut { peers: crate::scenario::Peers::Brokers, .. } => others.collect(),
            FaultAction::Cut { peers: crate::scenario::Peers::Clients, .. } => clients.clone(),
            _ => clients.iter().cloned().chain(others).collect(),
        }
    };
    // Which broker each fault hit (dynamic targets are resolved when the fault starts), and the
    // broker a dynamic target last resolved to (a `restart` of it restarts that one).
    let mut resolved: BTreeMap<usize, u32> = BTreeMap::new();
    let mut last_of: BTreeMap<Target, u32> = BTreeMap::new();
    let mut fault_log: Vec<(u64, String, u32)> = Vec::new();
    for (t, start, i) in timeline {
        tracer.sleep_until_ns(t).await;
        let f = &sc.faults[i];
        if let Target::Consumer(n) = f.target {
            if let Some(m) = members.get(&n) {
                if start {
                    apply_member(m, &f.action, &broker_names, &tracer, &f.label);
                    if f.action == FaultAction::Restart {
                        last_heal_ns = t;
                    } else {
                        member_active.insert(i, ());
                    }
                } else {
                    undo_member(m, &f.action, &broker_names, &tracer, &f.label);
                    member_active.remove(&i);
                    last_heal_ns = t;
                }
            }
            continue;
        }
        if start {
            let b = if f.target.is_dynamic() {
                let b = if f.action == FaultAction::Restart {
                    last_of.get(&f.target).copied()
                } else {
                    crate::cluster::resolve(f.target, &hosts)
                };
                let Some(b) = b else {
                    tracer.event(
                        "fault-skipped",
                        &format!("{}: {} resolves to no broker now", f.label, f.target.name()),
                    );
                    continue;
                };
                tracer.event("fault-target", &format!("{} -> broker-{b}", f.label));
                last_of.insert(f.target, b);
                b
            } else {
                match f.target {
                    Target::Broker(b) => b,
                    _ => continue,
                }
            };
            resolved.insert(i, b);
            let Some(h) = hosts.get(b as usize) else { continue };
            if clustered && f.action != FaultAction::Restart {
                fault_log.push((t, f.label.clone(), b));
            }
            apply(h, &peers_of(b, &f.action), &f.action, &mut rules, i, &tracer, &f.label);
            if f.action == FaultAction::Restart {
                last_heal_ns = t;
            } else if !matches!(
                f.action,
                FaultAction::DropCaches | FaultAction::CorruptSector { .. }
            ) {
                active.insert(i, ());
            }
        } else {
            let Some(&b) = resolved.get(&i) else { continue };
            undo(
                &hosts[b as usize],
                &peers_of(b, &f.action),
                &f.action,
                &mut rules,
                i,
                &tracer,
                &f.label,
            );
            active.remove(&i);
            last_heal_ns = t;
        }
    }
    tracer.sleep_until_ns(duration_ns).await;

    // Heal: end every fault still active, bring the brokers back.
    // Kill / power loss stay "active" until a restart; a restart ends them.
    active.retain(|&i, _| {
        !(matches!(sc.faults[i].action, FaultAction::Kill | FaultAction::PowerLoss)
            && resolved.get(&i).is_some_and(|&b| hosts[b as usize].is_up()))
    });
    if !active.is_empty() || hosts.iter().any(|h| !h.is_up()) {
        last_heal_ns = duration_ns;
    }
    for (&i, _) in active.iter().rev() {
        let f = &sc.faults[i];
        if let Some(&b) = resolved.get(&i) {
            undo(
                &hosts[b as usize],
                &peers_of(b, &f.action),
                &f.action,
                &mut rules,
                i,
                &tracer,
                &f.label,
            );
        }
    }
    for h in &hosts {
        h.disk.clear_faults();
        h.disk.set_slow_factor(1);
    }
    if clustered {
        if let Some(n) = &net {
            n.heal();
        }
    }
    for h in &hosts {
        if !h.is_up() {
            tracer.event("heal", &format!("restart {}", h.name()));
            h.restart();
        }
    }
    // Group members: end their pauses and partitions, bring killed ones back.
    member_active.retain(|&i, _| !(matches!(sc.faults[i].action, FaultAction::Kill | FaultAction::Leave) && matches!(sc.faults[i].target, Target::Consumer(n) if members.get(&n).is_some_and(|m| m.is_running()))));
    if !member_active.is_empty() || members.values().any(|m| !m.is_running()) {
        last_heal_ns = duration_ns;
    }
    for (&i, _) in member_active.iter().rev() {
        let f = &sc.faults[i];
        if let Target::Consumer(n) = f.target {
            if let Some(m) = members.get(&n) {
                undo_member(m, &f.action, &broker_names, &tracer, &f.label);
            }
        }
    }
    for m in members.values() {
        if !m.is_running() {
            tracer.event("heal", &format!("restart {}", m.name()));
            m.restart();
        }
    }
    let heal_ns = last_heal_ns;
    tracer.event("heal", &format!("all faults ended (last at {heal_ns} ns); producers send new records until {stop_ns} ns"));
    if stop_ns < heal_ns + sc.produce_after_heal_s * 1_000_000_000 && !sc.producers.is_empty() {
        tracer.event("heal-late", &format!("the last heal ({heal_ns} ns) came later than the timeline planned: producers stop at {stop_ns} ns"));
    }

    // Settle: producers finish their in-flight sends, consumers catch up with the log end.
    let settle_deadline = duration_ns + sc.settle_timeout_s * 1_000_000_000;
    let timeout = Duration::from_secs(5);
    let all_tps: Vec<TopicPartition> = sc
        .topics
        .iter()
        .flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p)))
        .collect();
    let mut settled = false;
    while tracer.now_ns() < settle_deadline {
        tracer.sleep_until_ns(tracer.now_ns() + 50_000_000).await;
        if control.producers_running.load(Ordering::SeqCst) > 0 {
            continue;
        }
        let positions = control.positions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut caught_up = true;
        if !groups_settled(&history.lock().unwrap_or_else(|p| p.into_inner()), &members) {
            continue;
        }
        let group_positions =
            control.group_positions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for spec in sc.consumers.iter().filter(|c| c.group.is_some()) {
            let g = spec.group_id.clone().unwrap_or_default();
            for tp in partitions_of(&spec.topic) {
                let pos = group_positions.get(&(g.clone(), tp.clone())).copied().unwrap_or(-1);
                match api.list_offsets(&tp, timeout).await {
                    Ok((_, end)) if pos >= end => {}
                    _ => caught_up = false,
                }
            }
        }
        for ((_, tp), pos) in &positions {
            match api.list_offsets(tp, timeout).await {
                Ok((_, end)) if *pos >= end => {}
                _ => caught_up = false,
            }
        }
        if caught_up {
            settled = true;
            break;
        }
    }
    control.stop_consumers.store(true, Ordering::SeqCst);
    tracer.event("settled", &format!("{settled}"));
    // The workload's network counters, before the oracle's read-back adds its own traffic.
    let final_network = net
        .as_ref()
        .map(|n| serde_json::to_value(n.all_stats()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);

    // The oracle: read every partition back in full.
    let mut finals = BTreeMap::new();
    for tp in &all_tps {
        finals.insert(
            tp.to_string(),
            read_all(api.as_ref(), tp, &tracer, settle_deadline + 10_000_000_000).await,
        );
    }
    // Cluster runs: every replica's log, read back through debugging Fetches (replicas-agree),
    // and the partition states the oracle read against.
    let mut replica_logs = BTreeMap::new();
    let mut final_partition = BTreeMap::new();
    if clustered {
        if let Some(cn) = &client_net {
            let readers: Vec<NetClient> = hosts
                .iter()
                .map(|h| {
                    NetClient::new(
                        cn.clone(),
                        h.addr(),
                        "replica-reader".into(),
                        tracer.clone(),
                        -1,
                        1,
                    )
                })
                .collect();
            for tp in &all_tps {
                if let Some(st) = crate::cluster::partition_state(&hosts, &tp.topic, tp.partition) {
                    let mut per = BTreeMap::new();
                    for &r in &st.replicas {
                        let Some(c) = usize::try_from(r).ok().and_then(|r| readers.get(r)) else {
                            continue;
                        };
                        per.insert(r as u32, crate::cluster::read_replica(c, tp, &tracer).await);
                    }
                    tracer.event(
                        "replica-logs",
                        &format!(
                            "{tp} leader={} epoch={} isr={:?} {}",
                            st.leader,
                            st.leader_epoch,
                            st.isr,
                            per.iter()
                                .map(|(b, l)| match l {
                                    Some(l) => format!(
                                        "broker-{b}:hw={},leo={},batches={}",
                                        l.high_watermark,
                                        l.log_end_offset,
                                        l.batches.len()
                                    ),
                                    None => format!("broker-{b}:unreadable"),
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    );
                    replica_logs.insert(tp.to_string(), per);
                    final_partition
                        .insert(tp.to_string(), (st.leader, st.leader_epoch, st.isr.clone()));
                }
            }
        }
    }
    sampler.lock().unwrap_or_else(|p| p.into_inner()).sample();
    let end_ns = tracer.now_ns();
    // Every broker's disk: broker-0's at the top level (as before), each broker's by name.
    let final_disk = {
        let mut d = serde_json::to_value(disk.stats()).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut d {
            let per: Map<String, Value> = hosts
                .iter()
                .map(|h| (h.name(), serde_json::to_value(h.disk.stats()).unwrap_or(Value::Null)))
                .collect();
            m.insert("per_broker".into(), Value::Object(per));
        }
        d
    };
    let cpu_json = |c: &net_model::SimCpu| {
        let st = c.stats();
        json!({
            "utilization": st.utilization(end_ns),
            "per_work": st.per_work.iter().map(|(w, s)| (format!("{w:?}"), serde_json::to_value(s).unwrap_or(Value::Null))).collect::<Map<String, Value>>(),
            "cores": st.cores,
            "busy_ns": st.busy_ns,
            "queued_ns": st.queued_ns,
            "stalled_ns": st.stalled_ns,
        })
    };
    // Every broker's and every client host's CPU.
    let cpus: Map<String, Value> =
        host_cpus.iter().map(|(name, c)| (name.clone(), cpu_json(c))).collect();
    let final_cpu = if cpus.is_empty() { Value::Null } else { Value::Object(cpus) };
    // Requests each broker served (its own metrics), by API.
    let served: Map<String, Value> =
        hosts.iter().filter_map(|h| h.served().map(|s| (h.name(), Value::String(s)))).collect();

    let mut h = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
    h.final_logs = finals;
    h.last_heal_ns = Some(heal_ns);
    h.stuck.extend(setup_failures);
    for host in &hosts {
        h.stuck.extend(host.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
    }
    let mut cluster_json = Value::Null;
    if clustered {
        let o = std::mem::take(&mut *observed.lock().unwrap_or_else(|p| p.into_inner()));
        h.hw_samples = o.hw_samples;
        h.replica_logs = replica_logs;
        h.final_partition = final_partition;
        cluster_json = crate::cluster::summary(&o.timeline, &o.controllers, &fault_log, &hosts);
    }
    if !settled {
        h.stuck.push(format!(
            "the run did not settle within settle_timeout_s={}",
            sc.settle_timeout_s
        ));
    }
    let s = std::mem::replace(
        &mut *sampler.lock().unwrap_or_else(|p| p.into_inner()),
        Sampler {
            disk: disk.clone(),
            other_disks: Vec::new(),
            net: None,
            served: None,
            cpus: Vec::new(),
            nic_samples: Vec::new(),
            cpu_samples: Vec::new(),
            tracer: tracer.clone(),
            samples: Vec::new(),
            io: Vec::new(),
        },
    );
    RawRun {
        history: h,
        samples: s.samples,
        io: s.io,
        tracer,
        end_ns,
        final_disk,
        final_network,
        final_cpu,
        served: Value::Object(served),
        nic_samples: s.nic_samples,
        cpu_samples: s.cpu_samples,
        cores: sc.host.cores.unwrap_or(0),
        cluster: cluster_json,
        fault_brokers: resolved,
    }
}

async fn read_all(
    api: &dyn BrokerApi,
    tp: &TopicPartition,
    tracer: &Tracer,
    give_up_ns: u64,
) -> Option<FinalLog> {
    let timeout = Duration::from_secs(5);
    let backoff = 100_000_000;
    let (start, end) = loop {
        match api.list_offsets(tp, timeout).await {
            Ok(r) => break r,
            Err(e) => {
                if tracer.now_ns() > give_up_ns {
                    tracer.event("final-read-failed", &format!("{tp} {e}"));
                    return None;
                }
                tracer.sleep_until_ns(tracer.now_ns() + backoff).await;
            }
        }
    };
    let mut records = Vec::new();
    let mut pos = start;
    while pos < end {
        match api.fetch(tp, pos, 1 << 20, Duration::ZERO, timeout).await {
            Ok(resp) => {
                let before = pos;
                for b in resp.batches {
                    let Ok(iter) = records::decode_batch(b, 256 << 20) else {
                        tracer.event("final-read-failed", &format!("{tp}@{pos} undecodable batch"));
                        return None;
                    };
                    for r in iter.flatten() {
                        if r.offset >= pos && r.offset < end {
                            records.push((
                                r.offset,
                                r.value.as_deref().and_then(decode_value).unwrap_or(u64::MAX),
                            ));
                        }
                    }
                }
                if let Some(last) = records.last() {
                    pos = pos.max(last.0 + 1);
                }
                if pos == before {
                    tracer.event("final-read-failed", &format!("{tp}@{pos} no progress"));
                    return None;
                }
            }
            Err(e) => {
                tracer.event("final-read-failed", &format!("{tp}@{pos} {e}"));
                return None;
            }
        }
    }
    tracer.event("final-log", &format!("{tp} start={start} end={end} records={}", records.len()));
    Some(FinalLog { log_start_offset: start, log_end_offset: end, records })
}

/// Salt of the per-broker seeds (disks, election timeouts, incarnations) in cluster runs.
const HOST_SALT: u64 = 0x686f_7374_7361_6c74; // "hostsalt"

/// Period of the cluster observer (leaders' HWs, partition states).
const OBSERVE_NS: u64 = 250_000_000;

fn partitions_all(sc: &Scenario) -> Vec<TopicPartition> {
    sc.topics
        .iter()
        .flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p)))
        .collect()
}

/// Checks, verdict, figures and summary, from a finished simulation.
pub fn conclude(
    sc: &Scenario,
    seed: u64,
    raw: RawRun,
    opts: &RunOptions,
    wall_s: f64,
) -> RunOutput {
    let h = &raw.history;
    let mut checks = Map::new();
    let mut safety_failed = false;
    let mut liveness_failed = false;
    for name in &sc.checks {
        let Some(r) = checkers::run(name, h) else { continue };
        let expected = sc.expect.get(name).copied().unwrap_or(Outcome::Held);
        raw.tracer.event_at(
            raw.end_ns,
            "check",
            &format!(
                "{name} {} expected={} examined={}",
                r.outcome.as_str(),
                expected.as_str(),
                r.examined
            ),
        );
        if r.outcome != expected {
            match checkers::kind_of(name) {
                CheckKind::Safety => safety_failed = true,
                CheckKind::Liveness => liveness_failed = true,
            }
        }
        checks.insert(name.clone(), json!({"outcome": r.outcome.as_str(), "expected": expected.as_str(), "examined": r.examined, "detail": r.detail}));
    }
    let (hash, events, lines) = raw.tracer.finish();
    let exit_code = if safety_failed {
        exit::CHECK_VIOLATED
    } else if liveness_failed {
        exit::LIVENESS
    } else {
        exit::PASS
    };
    let verdict = if exit_code == exit::PASS { "pass" } else { "fail" };
    let workload = workload_of(sc);
    let mut fig = metrics::figures(h, &raw.samples, raw.io.clone(), &workload, raw.end_ns);
    fig.charts.extend(network_charts(&raw));
    let sim_s = raw.end_ns as f64 / 1e9;
    // A fault on a dynamic target names the broker it hit: `kill leader:events/0 → broker-1`.
    let markers: Vec<reports::Marker> = sc
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let label = match raw.fault_brokers.get(&i) {
                Some(b) if f.target.is_dynamic() => format!("{} → broker-{b}", f.label),
                _ => f.label.clone(),
            };
            reports::Marker { at_s: f.at_ns as f64 / 1e9, label }
        })
        .collect();
    let failed: Vec<&crate::history::Send> = h
        .sends
        .iter()
        .filter(|s| matches!(s.outcome, crate::history::SendOutcome::Failed { .. }))
        .collect();
    let failed_sends: Vec<Value> = failed
        .iter()
        .take(20)
        .map(|s| match &s.outcome {
            crate::history::SendOutcome::Failed { at_ns, error } => json!({"producer": s.producer, "partition": s.tp, "error": error, "at_s": *at_ns as f64 / 1e9}),
            _ => Value::Null,
        })
        .collect();
    let replay = replay_command(opts, seed);
    let final_logs: Map<String, Value> = h
        .final_logs
        .iter()
        .map(|(tp, l)| (tp.clone(), l.as_ref().map(|l| json!({"log_start_offset": l.log_start_offset, "log_end_offset": l.log_end_offset, "records": l.records.len()})).unwrap_or(Value::Null)))
        .collect();
    let summary = json!({
        "scenario": sc.name,
        "scenario_file": opts.scenario_path,
        "description": sc.description,
        "mode": sc.mode.name(),
        "mode_description": mode_description(sc.mode),
        "seed": seed,
        "trace_hash": hex(hash),
        "trace_events": events,
        "verdict": verdict,
        "exit_code": exit_code,
        "replay": replay,
        "checks": checks,
        "throughput": fig.summary_throughput,
        "latency": fig.summary_latency,
        "page_cache": fig.summary_page_cache,
        "disk": raw.final_disk,
        "network": raw.final_network,
        "cpu": raw.final_cpu,
        "requests_served": raw.served,
        "history": {
            "sends": h.sends.len(),
            "failed": failed.len(),
            "failed_sends": failed_sends,
            "polls": h.polls.len(),
            "consumers": consumer_summary(h),
            "final_logs": final_logs,
            "last_heal_s": h.last_heal_ns.map(|n| n as f64 / 1e9),
            "stuck": h.stuck,
        },
        "groups": group_summary(&h),
        "cluster": raw.cluster.clone(),
        "speed": {
            "simulated_s": sim_s,
            "wall_s": wall_s,
            "simulated_s_per_wall_s": if wall_s > 0.0 { sim_s / wall_s } else { 0.0 },
            "records_per_wall_s": if wall_s > 0.0 { h.sends.len() as f64 / wall_s } else { 0.0 },
            "note": "wall-clock figures vary by machine and are not part of the trace",
        },
        "settings": sc.effective(),
        "plots": fig.charts.iter().map(|c| c.file.clone()).collect::<Vec<_>>(),
    });
    RunOutput {
        summary,
        charts: fig.charts,
        markers,
        x_max: sim_s,
        exit_code,
        verdict: verdict.to_string(),
        trace_hash: hash,
        trace_lines: lines,
    }
}

/// The workload's offered rates and record sizes, for the figures.
fn workload_of(sc: &Scenario) -> metrics::Workload {
    let mut record_bytes = Vec::new();
    for p in &sc.producers {
        record_bytes.extend(std::iter::repeat_n(p.record_bytes, p.count as usize));
    }
    let closed = sc.producers.iter().any(|p| p.max_rate);
    let records: f64 = sc.producers.iter().map(|p| p.rate_per_s as f64 * f64::from(p.count)).sum();
    let bytes: f64 = sc
        .producers
        .iter()
        .map(|p| (p.rate_per_s * p.record_bytes as u64) as f64 * f64::from(p.count))
        .sum();
    metrics::Workload {
        record_bytes,
        offered_records_per_s: (!closed && !sc.producers.is_empty()).then_some(records),
        offered_bytes_per_s: (!closed && !sc.producers.is_empty()).then_some(bytes),
        prefill_record_bytes: sc.prefill.iter().map(|p| p.record_bytes).collect(),
        measure_from_ns: sc.measure_from_ns,
        producers_stop_ns: sc.producers_stop_ns(),
    }
}

/// Per consumer: polls that returned records, records polled, and where it ended against the
/// final log end (summed over its partitions).
fn consumer_summary(h: &History) -> Value {
    let mut out: BTreeMap<u32, (u64, u64, i64)> = BTreeMap::new();
    for p in &h.polls {
        if let crate::history::PollKind::Records(rs) = &p.kind {
            let e = out.entry(p.consumer).or_default();
            e.0 += 1;
            e.1 += rs.len() as u64;
        }
    }
    for ((c, tp), pos) in &h.final_positions {
        let end = h.final_logs.get(tp).and_then(|l| l.as_ref()).map_or(0, |l| l.log_end_offset);
        out.entry(*c).or_default().2 += (end - pos).max(0);
    }
    for c in h.group_members.keys() {
        out.entry(*c).or_default();
    }
    Value::Object(
        out.into_iter()
            .map(|(c, (polls, records, behind))| {
                let group = h.group_members.get(&c);
                (format!("consumer-{c}"), json!({"polls": polls, "records": records, "behind_log_end": if group.is_some() { Value::Null } else { json!(behind) }, "group": group}))
            })
            .collect(),
    )
}

/// Network runs: NIC utilization per host and direction, and the broker's CPU utilization, per
/// sample interval (busy time of the interval / its length).
fn network_charts(raw: &RawRun) -> Vec<reports::Chart> {
    let mut charts = Vec::new();
    if raw.nic_samples.len() > 1 {
        let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for w in raw.nic_samples.windows(2) {
            let ((t0, a), (t1, b)) = (&w[0], &w[1]);
            let dt = t1.saturating_sub(*t0).max(1) as f64;
            for (host, (eg, ing)) in b {
                let (eg0, ing0) = a.get(host).copied().unwrap_or((0, 0));
                let x = *t1 as f64 / 1e9;
                lines
                    .entry(format!("{host} egress"))
                    .or_default()
                    .push((x, eg.saturating_sub(eg0) as f64 / dt));
                lines
                    .entry(format!("{host} ingress"))
                    .or_default()
                    .push((x, ing.saturating_sub(ing0) as f64 / dt));
            }
        }
        charts.push(reports::Chart {
            file: "nic_utilization.svg".into(),
            title: "NIC utilization (share of time serializing), per host and direction".into(),
            y_label: "utilization".into(),
            lines: lines.into_iter().map(|(name, points)| reports::Line { name, points }).collect(),
        });
    }
    if raw.cpu_samples.len() > 1 && raw.cores > 0 {
        let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for w in raw.cpu_samples.windows(2) {
            let ((t0, a), (t1, b)) = (&w[0], &w[1]);
            let span = t1.saturating_sub(*t0).max(1) as f64 * f64::from(raw.cores);
            for (host, busy) in b {
                let before = a.get(host).copied().unwrap_or(0);
                lines
                    .entry(host.clone())
                    .or_default()
                    .push((*t1 as f64 / 1e9, busy.saturating_sub(before) as f64 / span));
            }
        }
        charts.push(reports::Chart {
            file: "cpu_utilization.svg".into(),
            title: format!("CPU utilization per host ({} modeled cores each)", raw.cores),
            y_label: "utilization".into(),
            lines: lines.into_iter().map(|(name, points)| reports::Line { name, points }).collect(),
        });
    }
    charts
}

/// A whole run in a fresh runtime seeded with `seed`.
pub fn run(sc: &Scenario, seed: u64, opts: &RunOptions) -> RunOutput {
    let sc = &sc.with_nemesis(seed);
    let started = std::time::Instant::now();
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let raw = rt.block_on(simulate(sc, seed, opts.keep_trace));
    drop(rt);
    let wall_s = started.elapsed().as_secs_f64();
    conclude(sc, seed, raw, opts, wall_s)
}
