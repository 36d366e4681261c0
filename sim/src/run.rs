//! One run: build the host(s) from the scenario, start the workload, apply the fault timeline,
//! heal and settle, read the final state (the oracle), run the checkers, and assemble the
//! summary, charts and verdict. Everything inside the runtime is deterministic in the seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use broker::log::TopicPartition;

use serde_json::{json, Map, Value};

use crate::checkers::{self, CheckKind, LivenessCause, Outcome};
use crate::faults::driver::Driver;
use crate::history::{History, SendOutcome, Stuck};
use crate::metrics::{self, DiskSample};
use crate::sampler::{CpuSamples, NicSamples, Sampler};
use crate::scenario::Scenario;
use crate::trace::{hex, Tracer};
use crate::workload::lock;
use crate::world::World;
use crate::{exit, mode_description, oracle, settle};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep the trace's lines (for `--trace` and check-determinism).
    pub keep_trace: bool,
    /// How to replay: the scenario path as the user gave it, and the output dir.
    pub scenario_path: String,
    pub out_dir: String,
    /// `cargo simulate omb`: the workload the scenario was mapped from; the run then also
    /// builds OMB's result from its history.
    pub omb: Option<std::sync::Arc<crate::omb::Mapped>>,
}

/// What the simulated part of a run hands back.
pub struct RawRun {
    pub history: History,
    pub samples: Vec<DiskSample>,
    pub io: Vec<(u64, u64)>,
    /// The other brokers' disks' IO service intervals, by host name.
    pub other_io: BTreeMap<String, Vec<(u64, u64)>>,
    pub tracer: Tracer,
    pub end_ns: u64,
    pub final_disk: Value,
    /// Network runs: per-host NIC counters at the end (`Null` in storage runs).
    pub final_network: Value,
    /// Network runs with `cluster.host.cores`: the broker CPU's counters (`Null` otherwise).
    pub final_cpu: Value,
    /// Network runs: per sample, (time, host → (egress busy ns, ingress busy ns)).
    pub nic_samples: NicSamples,
    /// Network runs with a CPU model: per sample, (time, busy ns summed over cores), and cores.
    pub cpu_samples: CpuSamples,
    pub cores: u32,
    /// Cluster runs: leader/ISR timeline and leader-election figures (`Null` otherwise).
    pub cluster: Value,
    /// Network runs: requests each broker served, by API (its own metrics), at the end.
    pub served: Value,
    /// Per fault (index into the scenario's faults): the broker it hit, where one was resolved.
    pub fault_brokers: BTreeMap<usize, u32>,
    /// The models' invariants checked during the run (`model-invariants` in the summary).
    pub invariants: crate::invariants::Report,
    /// Every request-fault rule installed, with its broker's counters (by fault, then broker).
    pub request_rules: Vec<crate::faults::requests::RuleRecord>,
    /// Which fault kinds hit which roles (see [`crate::coverage`]).
    pub coverage: crate::coverage::Table,
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
    /// With `RunOptions::omb`: OMB's result JSON.
    pub omb: Option<client::omb::result::OmbResult>,
}

pub fn replay_command(opts: &RunOptions, seed: u64) -> String {
    format!("cargo simulate {} --seed {seed} --out {}", opts.scenario_path, opts.out_dir)
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
            .map(|a| json!({"t_s": a.at_ns as f64 / 1e9, "member": format!("consumer-{}", a.member), "generation": a.generation, "partitions": a.tps.iter().map(|tp| tp.to_string()).collect::<Vec<_>>()}))
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

/// The simulated part: must run inside a madsim runtime. Builds the world, starts the
/// workload and the samplers, drives the faults, heals, settles, and reads the final state.
pub async fn simulate(sc: &Scenario, seed: u64, keep_trace: bool) -> RawRun {
    let tracer = Tracer::new(keep_trace);
    tracer.event("run-start", &format!("scenario={} seed={seed}", sc.name));
    let world = World::build(sc, seed, &tracer).await;
    let api = world.reader(&tracer);
    let mut setup_failures = world.prepare(sc, &tracer).await;
    let w = crate::workload::start(sc, seed, &world, &tracer).await;
    setup_failures.extend(w.failures.iter().cloned());
    let cpus = world.cpus(&w.client_cpus);
    let sampler = Arc::new(Mutex::new(Sampler::new(&world, cpus.clone(), &tracer)));
    Sampler::spawn(&sampler, sc.sample_ms * 1_000_000, &tracer);
    let tps = oracle::partitions(sc);
    let groups = group_ids(sc);
    let observed = crate::sampler::spawn_observer(&world, tps.clone(), groups.clone(), &tracer);

    let duration_ns = sc.duration_s * 1_000_000_000;
    let mut faults = Driver::new(&sc.faults, &world, &w.members, &tracer);
    faults.run(duration_ns).await;
    tracer.sleep_until_ns(duration_ns).await;
    faults.heal(duration_ns, &world.net);
    settle::announce_heal(sc, faults.last_heal_ns, &tracer);
    let settle_deadline = duration_ns + sc.settle_timeout_s * 1_000_000_000;
    let settled = settle::settle(sc, &w, api.as_ref(), &tracer, settle_deadline).await;
    // The workload's network counters, before the oracle's read-back adds its own traffic.
    let final_network = serde_json::to_value(world.net.all_stats()).unwrap_or(Value::Null);

    // The oracle: every partition read back in full; (cluster runs) every replica's log.
    let give_up = settle_deadline + 10_000_000_000;
    let read_from_ns = tracer.now_ns();
    let final_logs = oracle::final_logs(api.as_ref(), &tps, &tracer, give_up).await;
    let replicas = match world.clustered {
        true => Some(oracle::replica_logs(&world, &tps, &tracer).await),
        false => None,
    };
    lock(&sampler).sample();
    lock(&sampler).check_disks(&world.hosts[0].name());
    let end_ns = tracer.now_ns();
    // Taken, not cloned (the history is the run's largest structure): a workload callback that
    // still fires records into an empty history nobody reads.
    let mut h = std::mem::take(&mut *lock(&w.history));
    h.final_logs = final_logs;
    let mut cluster = Value::Null;
    let names: Vec<String> = tps.iter().map(ToString::to_string).collect();
    let mut roles = crate::coverage::Roles::single_broker(&names, &groups);
    if let Some((replica_logs, final_partition)) = replicas {
        let o = std::mem::take(&mut *lock(&observed));
        roles = roles_of(&o);
        (h.hw_samples, h.replica_logs, h.final_partition) =
            (o.hw_samples, replica_logs, final_partition);
        let log = &faults.fault_log;
        cluster = crate::cluster::summary(&o.timeline, &o.controllers, log, &world.hosts);
    }
    h.last_heal_ns = Some(faults.last_heal_ns);
    h.stuck.extend(setup_failures.into_iter().map(Stuck::other));
    for host in &world.hosts {
        h.stuck.extend(lock(&host.failures).iter().cloned().map(Stuck::other));
    }
    if !settled {
        let why = format!("the run did not settle within settle_timeout_s={}", sc.settle_timeout_s);
        h.stuck.push(Stuck::new(LivenessCause::NotSettled, why));
        let late = acks_past_the_read_back(&mut h, read_from_ns);
        if late > 0 {
            h.stuck.push(Stuck::new(
                LivenessCause::LateAcks,
                format!("{late} acknowledgements arrived after the read-back began, at offsets past the log end it saw: judged as still pending"),
            ));
        }
    }
    let series = lock(&sampler).take();
    let coverage = crate::coverage::of_run(&sc.faults, &faults.resolved, &roles);
    let raw = RawRun {
        history: h,
        samples: series.samples,
        io: series.io,
        other_io: series.other_io,
        tracer,
        end_ns,
        final_disk: final_disk(&world),
        final_network,
        final_cpu: final_cpu(&cpus, end_ns),
        served: served(&world),
        nic_samples: series.nic_samples,
        cpu_samples: series.cpu_samples,
        cores: sc.host.cores.unwrap_or(0),
        cluster,
        fault_brokers: std::mem::take(&mut faults.resolved),
        invariants: series.invariants,
        request_rules: request_rules(&world),
        coverage,
    };
    // Everything was read from the disks: their log bytes go now (with no await after this, no
    // task runs again), not with the runtime, which tasks caught in reference cycles outlive.
    for host in &world.hosts {
        host.disk.wipe();
    }
    raw
}

/// A run that did not settle still had producers sending while the oracle read the logs back:
/// an acknowledgement that came after the read-back began, at an offset at or past the log end
/// the read-back saw, names a record the read-back could not have held. Such a send is judged
/// as still pending (it may or may not be in the log), not lost; one acknowledged below that
/// log end is judged as usual. Returns how many sends it re-judged.
fn acks_past_the_read_back(h: &mut History, read_from_ns: u64) -> usize {
    let ends: BTreeMap<TopicPartition, i64> = h
        .final_logs
        .iter()
        .filter_map(|(tp, l)| l.as_ref().map(|l| (tp.clone(), l.log_end_offset)))
        .collect();
    let late: Vec<usize> = (h.sends.iter().enumerate())
        .filter(|(_, s)| {
            let SendOutcome::Acked { offset, at_ns } = s.outcome() else { return false };
            let end = s.tp().and_then(|id| ends.get(h.partitions.name(id)).copied());
            at_ns >= read_from_ns && end.is_some_and(|end| offset >= end)
        })
        .map(|(slot, _)| slot)
        .collect();
    for &slot in &late {
        h.sends.update(slot, |s| s.set_outcome(SendOutcome::Pending));
    }
    late.len()
}

/// The workload's consumer groups, each once, in name order.
fn group_ids(sc: &Scenario) -> Vec<String> {
    let ids: std::collections::BTreeSet<String> =
        sc.consumers.iter().filter_map(|c| c.group_id.clone()).collect();
    ids.into_iter().collect()
}

/// Who held which role over a cluster run, from the observer's timelines (for coverage).
fn roles_of(o: &crate::cluster::Observed) -> crate::coverage::Roles {
    let partitions = o
        .timeline
        .iter()
        .map(|(tp, line)| {
            (tp.clone(), line.iter().map(|c| (c.t_s, c.leader, c.replicas.clone())).collect())
        })
        .collect();
    crate::coverage::Roles {
        partitions,
        controllers: o.controllers.iter().map(|&(t, b, _)| (t, b)).collect(),
        coordinators: o.coordinators.clone(),
    }
}

/// Every request-fault rule every host installed (the heal read the last counters).
fn request_rules(world: &World) -> Vec<crate::faults::requests::RuleRecord> {
    let mut all: Vec<_> = world.hosts.iter().flat_map(|h| h.request_records()).collect();
    all.sort_by_key(|r| r.fault);
    all
}

/// `request_faults` in `summary.json`: each installed rule with the broker's own counters.
fn request_faults_summary(rules: &[crate::faults::requests::RuleRecord]) -> Value {
    let installed = rules.iter().filter(|r| r.id.is_some()).count();
    let fired_rules = rules.iter().filter(|r| r.fired > 0).count();
    let fired_total: u64 = rules.iter().map(|r| r.fired).sum();
    json!({
        "installed": installed,
        "fired_rules": fired_rules,
        "fired_total": fired_total,
        "rules": rules,
        "counted_by": "each broker's own FaultControl (matched: requests its filters matched; fired: requests it acted on), read when the rule's `for` ended, when its broker process stopped, or when the run healed",
    })
}

/// Every broker's disk: broker-0's at the top level (as before clusters), each broker's by name.
fn final_disk(world: &World) -> Value {
    let mut d = serde_json::to_value(world.hosts[0].disk.stats()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut d {
        let per: Map<String, Value> = world
            .hosts
            .iter()
            .map(|h| (h.name(), serde_json::to_value(h.disk.stats()).unwrap_or(Value::Null)))
            .collect();
        m.insert("per_broker".into(), Value::Object(per));
    }
    d
}

/// Every broker's and every client host's CPU (`Null` without CPU models).
fn final_cpu(cpus: &[(String, net_model::SimCpu)], end_ns: u64) -> Value {
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
    let all: Map<String, Value> =
        cpus.iter().map(|(name, c)| (name.clone(), cpu_json(c))).collect();
    if all.is_empty() {
        Value::Null
    } else {
        Value::Object(all)
    }
}

/// `utilization` in `summary.json`: every resource inside the throughput window (the whole run
/// when there is none).
fn utilization(raw: &RawRun, throughput: &Value, brokers: u32, disks_per_broker: u32) -> Value {
    let w = &throughput["window_s"];
    let ns = |v: &Value| v.as_f64().map(|s| (s * 1e9) as u64);
    let window_ns = match (ns(&w[0]), ns(&w[1])) {
        (Some(a), Some(b)) if b > a => (a, b),
        _ => (0, raw.end_ns),
    };
    let each = |i: u32| (0..disks_per_broker).map(move |d| (i, d));
    let disks = (0..brokers.max(1))
        .flat_map(each)
        .map(|(i, d)| {
            let name = crate::sampler::disk_name(&format!("broker-{i}"), d);
            let first = i == 0 && d == 0;
            let io = if first { Some(raw.io.clone()) } else { raw.other_io.get(&name).cloned() };
            (name, io.unwrap_or_default())
        })
        .collect();
    metrics::utilization(&metrics::UtilizationInput {
        window_ns,
        nic: &raw.nic_samples,
        cpu: &raw.cpu_samples,
        cores: raw.cores,
        disks,
    })
}

/// Requests each broker served (its own metrics), by API.
fn served(world: &World) -> Value {
    let hosts = world.hosts.iter();
    Value::Object(hosts.filter_map(|h| h.served().map(|s| (h.name(), Value::String(s)))).collect())
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
    let (checks, exit_code) = judge(sc, &raw);
    let (hash, events, lines) = raw.tracer.finish();
    let verdict = if exit_code == exit::PASS { "pass" } else { "fail" };
    let workload = workload_of(sc);
    let mut fig = metrics::figures(h, &raw.samples, raw.io.clone(), &workload, raw.end_ns);
    fig.charts.extend(network_charts(&raw));
    let sim_s = raw.end_ns as f64 / 1e9;
    let omb =
        opts.omb.as_ref().map(|m| crate::omb::result(h, m, m.window_s, m.warmup_s + m.test_s));
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
        "replay": replay_command(opts, seed),
        "checks": checks,
        "throughput": fig.summary_throughput,
        "latency": fig.summary_latency,
        "page_cache": fig.summary_page_cache,
        "utilization": utilization(&raw, &fig.summary_throughput, sc.brokers, sc.host.disks),
        "disk": raw.final_disk,
        "network": raw.final_network,
        "cpu": raw.final_cpu,
        "requests_served": raw.served,
        "history": history_summary(h),
        "groups": group_summary(h),
        "cluster": raw.cluster.clone(),
        "request_faults": request_faults_summary(&raw.request_rules),
        "coverage": crate::coverage::to_json(&raw.coverage, 1),
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
        markers: markers(sc, &raw),
        x_max: sim_s,
        exit_code,
        verdict: verdict.to_string(),
        trace_hash: hash,
        trace_lines: lines,
        omb,
    }
}

/// Runs the scenario's checks and the models' invariants against their expectations: the
/// checks' JSON and the exit code.
fn judge(sc: &Scenario, raw: &RawRun) -> (Map<String, Value>, i32) {
    let mut checks = Map::new();
    let (mut safety_failed, mut liveness_failed) = (false, false);
    for name in &sc.checks {
        let Some(r) = checkers::run(name, &raw.history) else { continue };
        let expected = sc.expect.get(name).copied().unwrap_or(Outcome::Held);
        let (outcome, want) = (r.outcome.as_str(), expected.as_str());
        let line = format!("{name} {outcome} expected={want} examined={}", r.examined);
        raw.tracer.event_at(raw.end_ns, "check", &line);
        if r.outcome != expected {
            match checkers::kind_of(name) {
                CheckKind::Safety => safety_failed = true,
                CheckKind::Liveness => liveness_failed = true,
            }
        }
        let mut entry = json!({"outcome": outcome, "expected": want, "examined": r.examined, "detail": r.detail});
        if !r.causes.is_empty() {
            entry["causes"] = json!(r.causes);
        }
        checks.insert(name.clone(), entry);
    }
    let inv = &raw.invariants;
    let held = inv.violations.is_empty();
    let detail = if held {
        format!("every model invariant held ({} evaluations: the fabric's events and counters and every broker's consumer groups and replica fetchers' followed index every sample, each disk's check_invariants at the end)", inv.examined)
    } else {
        safety_failed = true;
        // Traced only when violated, so runs that hold keep their trace hashes.
        let line = format!(
            "{MODEL_INVARIANTS} violated examined={} {}",
            inv.examined,
            inv.violations.join("; ")
        );
        raw.tracer.event_at(raw.end_ns, "check", &line);
        inv.violations.join("; ")
    };
    let outcome = if held { Outcome::Held } else { Outcome::Violated };
    checks.insert(MODEL_INVARIANTS.into(), json!({"outcome": outcome.as_str(), "expected": "held", "examined": inv.examined, "detail": detail}));
    let exit_code = if safety_failed {
        exit::CHECK_VIOLATED
    } else if liveness_failed {
        exit::LIVENESS
    } else {
        exit::PASS
    };
    (checks, exit_code)
}

/// The check every run carries: the models' own invariants (see [`crate::invariants`]).
pub const MODEL_INVARIANTS: &str = "model-invariants";

/// The fault markers of the plots; a fault on a dynamic target names the broker it hit:
/// `kill leader:events/0 → broker-1`.
fn markers(sc: &Scenario, raw: &RawRun) -> Vec<reports::Marker> {
    let marker = |(i, f): (usize, &crate::faults::Fault)| {
        let label = match raw.fault_brokers.get(&i) {
            Some(b) if f.target.is_dynamic() => format!("{} → broker-{b}", f.label),
            _ => f.label.clone(),
        };
        reports::Marker { at_s: f.at_ns as f64 / 1e9, label }
    };
    sc.faults.iter().enumerate().map(marker).collect()
}

/// `history` in `summary.json`: counts, the first failed sends, each consumer, each final log.
fn history_summary(h: &History) -> Value {
    let failed = h.sends.outcomes().failed;
    // The counts say whether to look: a pass over millions of sends otherwise finds none.
    let failed_sends: Vec<Value> = (h.sends.iter())
        .take(if failed > 0 { usize::MAX } else { 0 })
        .filter(|s| matches!(s.outcome(), SendOutcome::Failed { .. }))
        .take(20)
        .map(|s| match s.outcome() {
            SendOutcome::Failed { at_ns } => json!({"producer": s.producer(), "partition": h.partitions.display(s.tp()), "error": h.send_errors.get(&s.value).map_or("", String::as_str), "at_s": at_ns as f64 / 1e9}),
            _ => Value::Null,
        })
        .collect();
    let final_logs: Map<String, Value> = h
        .final_logs
        .iter()
        .map(|(tp, l)| (tp.to_string(), l.as_ref().map(|l| json!({"log_start_offset": l.log_start_offset, "log_end_offset": l.log_end_offset, "records": l.records.len()})).unwrap_or(Value::Null)))
        .collect();
    json!({
        "sends": h.sends.len(),
        "failed": failed,
        "failed_sends": failed_sends,
        "producer_errors": h.producer_errors,
        "polls": h.polls.len(),
        "consumers": consumer_summary(h),
        "final_logs": final_logs,
        "last_heal_s": h.last_heal_ns.map(|n| n as f64 / 1e9),
        "stuck": h.stuck.iter().map(|s| &s.what).collect::<Vec<_>>(),
    })
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
        measure_warmup_ns: sc.measure_warmup_ns,
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

/// After a run's runtime is dropped: frees the log pages its disks held (the page store keeps
/// them otherwise, until a later run's writes sweep it) and hands freed heap back to the
/// system, so the checks and reports that follow, and the next seed of a sweep, do not stack
/// their memory on the finished simulation's.
fn release_run_memory() {
    disk_model::sim::file::release_unused_pages();
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the system; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A whole run in a fresh runtime seeded with `seed`.
pub fn run(sc: &Scenario, seed: u64, opts: &RunOptions) -> RunOutput {
    let sc = &sc.with_nemesis(seed);
    let started = std::time::Instant::now();
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let raw = rt.block_on(simulate(sc, seed, opts.keep_trace));
    drop(rt);
    release_run_memory();
    let wall_s = started.elapsed().as_secs_f64();
    conclude(sc, seed, raw, opts, wall_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{FinalLog, Send};

    /// Only an acknowledgement both after the read-back began and at or past the log end it saw
    /// is re-judged as pending; the same record acknowledged earlier, or below that log end, is
    /// still judged (and lost-write sees the one below the end missing).
    #[test]
    fn only_acks_past_the_read_back_are_judged_pending() {
        let mut h = History::default();
        let tp = h.partitions.intern("events", 0);
        let send = |value, offset, at_ns| {
            Send::new(Some(tp), value, 0, SendOutcome::Acked { offset, at_ns })
        };
        let records = (0..10).map(|o| (o, o as u64)).collect();
        let log = FinalLog { log_start_offset: 0, log_end_offset: 10, records };
        h.final_logs.insert(TopicPartition::new("events", 0), Some(log));
        h.sends =
            vec![send(5, 5, 50), send(100, 7, 200), send(101, 10, 200), send(102, 12, 50)].into();
        assert_eq!(acks_past_the_read_back(&mut h, 100), 1);
        let pending: Vec<u64> = h
            .sends
            .iter()
            .filter(|s| s.outcome() == SendOutcome::Pending)
            .map(|s| s.value)
            .collect();
        assert_eq!(pending, [101], "acked at 10 (the log end) after the read began");
        let lost = crate::checkers::lost_write(&h);
        assert!(lost.detail.contains("2 of 3 acknowledged"), "{}", lost.detail);
    }
}
