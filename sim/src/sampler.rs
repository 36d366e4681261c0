//! What a run samples while it runs, every `sample_ms` of virtual time: broker-0's disk gauges
//! and every disk's event log, the fabric's event log and NIC busy time, every CPU's busy time,
//! and broker-0's own request counters — all into the trace and the series the figures use.
//! Cluster runs add the observer (every leader's HW and each partition's committed state,
//! every 250 ms).
//!
//! Promises: sampling only reads (no request perturbs the run); the order of trace lines per
//! tick is fixed (disk, other disks, broker counters, then the fabric's events).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use disk_model::sim::{DiskEvent, SimDisk};

use crate::host::Host;
use crate::invariants::{Invariants, Report};
use crate::metrics::DiskSample;
use crate::trace::Tracer;
use crate::world::World;

pub use crate::metrics::{CpuSamples, NicSamples};

/// Period of the cluster observer (leaders' HWs, partition states).
const OBSERVE_NS: u64 = 250_000_000;

/// A disk's name in `utilization` (`disk:NAME`): its host's, then `/<i>` for a host's disk `i`
/// beyond the first (JBOD).
pub fn disk_name(host: &str, device: u32) -> String {
    match device {
        0 => host.to_string(),
        d => format!("{host}/{d}"),
    }
}

/// The series a run's sampler collected.
#[derive(Default)]
pub struct Series {
    pub samples: Vec<DiskSample>,
    /// The first broker's first disk's IO service intervals.
    pub io: Vec<(u64, u64)>,
    /// The other disks' IO service intervals, by [`disk_name`] (the other brokers' are not
    /// traced per IO).
    pub other_io: BTreeMap<String, Vec<(u64, u64)>>,
    pub nic_samples: NicSamples,
    pub cpu_samples: CpuSamples,
    /// The models' invariants checked so far.
    pub invariants: Report,
}

pub struct Sampler {
    disk: SimDisk,
    /// The first broker host's name.
    first: String,
    /// The other brokers' disks (their events are traced without the per-IO lines).
    other_disks: Vec<(String, SimDisk)>,
    net: net_model::SimNet,
    /// The host whose broker's request counters are traced, and the last line.
    served: (Arc<Host>, String),
    /// Every broker host (their consumer groups' invariants are checked each tick).
    hosts: Vec<Arc<Host>>,
    /// Every host's CPU model (brokers, then client hosts), by host name.
    cpus: Vec<(String, net_model::SimCpu)>,
    tracer: Tracer,
    series: Series,
    invariants: Invariants,
    /// The line being traced, reused from event to event (no allocation per event).
    line: Vec<u8>,
}

impl Sampler {
    pub fn new(world: &World, cpus: Vec<(String, net_model::SimCpu)>, tracer: &Tracer) -> Self {
        let other_disks = world.hosts.iter().skip(1).map(|h| (h.name(), h.disk.clone())).collect();
        Sampler {
            disk: world.hosts[0].disk.clone(),
            first: world.hosts[0].name(),
            other_disks,
            net: world.net.clone(),
            served: (world.hosts[0].clone(), String::new()),
            hosts: world.hosts.clone(),
            cpus,
            tracer: tracer.clone(),
            series: Series::default(),
            invariants: Invariants::default(),
            line: Vec::new(),
        }
    }

    /// Samples every `every_ns` from now on, on a task of the current node.
    pub fn spawn(sampler: &Arc<Mutex<Sampler>>, every_ns: u64, tracer: &Tracer) {
        let (sampler, tracer) = (sampler.clone(), tracer.clone());
        tokio::spawn(async move {
            let mut t = 0;
            loop {
                t += every_ns;
                tracer.sleep_until_ns(t).await;
                sampler.lock().unwrap_or_else(|p| p.into_inner()).sample();
            }
        });
    }

    /// What was collected (the sampler keeps nothing but the invariants' state).
    pub fn take(&mut self) -> Series {
        let mut series = std::mem::take(&mut self.series);
        series.invariants = self.invariants.report();
        series
    }

    /// The disk model's own assertions on every broker's disk (the expensive checks: at the end).
    pub fn check_disks(&mut self, name_of_first: &str) {
        self.invariants.disk(name_of_first, &self.disk);
        for (name, d) in &self.other_disks {
            self.invariants.disk(name, d);
        }
    }

    pub fn sample(&mut self) {
        let now = self.tracer.now_ns();
        self.sample_disks(now);
        let (host, last) = &mut self.served;
        if let Some(line) = host.served() {
            if line != *last {
                self.tracer.event_at(now, "broker-served", &format!("{} {line}", host.name()));
                *last = line;
            }
        }
        for h in &self.hosts {
            if let Some(b) = h.process() {
                self.invariants.groups(&h.name(), b.groups.check_invariants());
                self.invariants.followed(&h.name(), b.replicas.check_followed_index());
            }
        }
        let stats = self.net.all_stats();
        self.invariants.net_stats(&stats, self.net.events_dropped());
        let busy =
            stats.into_iter().map(|(h, st)| (h, (st.egress_busy_ns, st.ingress_busy_ns))).collect();
        self.series.nic_samples.push((now, busy));
        if !self.cpus.is_empty() {
            let busy = self.cpus.iter().map(|(h, c)| (h.clone(), c.stats().busy_ns)).collect();
            self.series.cpu_samples.push((now, busy));
        }
        let events = self.net.drain_events();
        self.invariants.net_events(&events);
        for ev in events {
            self.line.clear();
            crate::trace_json::net(&mut self.line, &ev);
            trace_line(&self.tracer, &self.line, now, "net");
        }
    }

    fn sample_disks(&mut self, now: u64) {
        let st = self.disk.stats();
        self.series.samples.push(DiskSample {
            t_ns: now,
            dirty_bytes: st.dirty_bytes,
            cached_bytes: st.cached_bytes,
            writeback_bytes: st.writeback_bytes,
            hit_pages: st.cache_hit_pages,
            miss_pages: st.cache_miss_pages,
        });
        for ev in self.disk.drain_events() {
            match &ev {
                DiskEvent::Io { start_ns, done_ns, device: 0, .. } => {
                    self.series.io.push((*start_ns, *done_ns));
                }
                DiskEvent::Io { start_ns, done_ns, device, .. } => {
                    let io = self.series.other_io.entry(disk_name(&self.first, *device));
                    io.or_default().push((*start_ns, *done_ns));
                }
                _ => {}
            }
            self.line.clear();
            crate::trace_json::disk(&mut self.line, &ev);
            trace_line(&self.tracer, &self.line, now, "disk");
        }
        for (name, d) in &self.other_disks {
            for ev in d.drain_events() {
                if let DiskEvent::Io { start_ns, done_ns, device, .. } = &ev {
                    let io = self.series.other_io.entry(disk_name(name, *device)).or_default();
                    io.push((*start_ns, *done_ns));
                    continue;
                }
                self.line.clear();
                self.line.extend_from_slice(name.as_bytes());
                self.line.push(b' ');
                crate::trace_json::disk(&mut self.line, &ev);
                trace_line(&self.tracer, &self.line, now, "disk");
            }
        }
    }
}

/// Traces `line` (a prefix, possibly empty, then an event's JSON: [`crate::trace_json`] writes
/// serde_json's compact text).
fn trace_line(tracer: &Tracer, line: &[u8], now: u64, kind: &str) {
    // serde_json writes UTF-8; the prefix is a host name. `from_utf8` checks a word at a time
    // (`from_utf8_lossy`'s chunk walk cost ~2,000 instructions a line); the lossy text only if
    // something was not UTF-8 after all, as before.
    match std::str::from_utf8(line) {
        Ok(text) => tracer.event_at(now, kind, text),
        Err(_) => tracer.event_at(now, kind, &String::from_utf8_lossy(line)),
    }
}

/// Cluster runs: leaders' HWs and partition states, sampled in memory every 250 ms.
pub fn spawn_observer(
    world: &World,
    tps: Vec<broker::log::TopicPartition>,
    groups: Vec<String>,
    tracer: &Tracer,
) -> Arc<Mutex<crate::cluster::Observed>> {
    let observed = Arc::new(Mutex::new(crate::cluster::Observed::default()));
    if !world.clustered {
        return observed;
    }
    let obs = crate::cluster::Observer {
        hosts: world.hosts.clone(),
        tp_index: tps.iter().enumerate().map(|(i, tp)| (tp.clone(), i)).collect(),
        tps,
        groups,
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
    observed
}
