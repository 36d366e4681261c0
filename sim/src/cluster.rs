//! Cluster runs (`cluster.brokers` > 1): N brokers in combined mode (each host also runs a
//! controller of the KRaft-style metadata quorum), what the run needs to know about them, and
//! how it reads them.
//!
//! - Fault targets resolved at fault time: `leader:T/P` and `follower:T/P` from the newest
//!   committed metadata image any live broker holds (the broker's own controller link, read in
//!   memory: no request disturbs the run), `controller` from the controllers' Raft status.
//! - [`Router`]: the oracle's and the settle loop's view of the cluster: each call goes to the
//!   partition's current leader (one connection per broker, as a Kafka client keeps them).
//! - [`Observer`]: every `sample_ms` of simulated time, each live leader's HW per partition (for
//!   hw-monotonic) and each partition's (leader, epoch, ISR) as committed (the leader/ISR
//!   timeline in `summary.json`), read in memory from the broker processes.
//! - [`read_replicas`]: after the run healed, every replica's log through a debugging Fetch
//!   (replica id -2), batch by batch (for replicas-agree).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use broker::log::TopicPartition;
use bytes::Bytes;
use serde::Serialize;

use crate::api::{ApiError, BrokerApi, FetchResponse, ProduceResponse};
use crate::history::{HwSample, ReplicaLog};
use crate::host::Host;
use crate::netclient::NetClient;
use crate::scenario::Target;
use crate::trace::Tracer;

/// A partition's state as committed: (leader, leader epoch, ISR, replicas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
}

/// The newest committed metadata image among the live brokers.
fn best_image(hosts: &[Arc<Host>]) -> Option<Arc<cluster::metadata::MetadataImage>> {
    let mut best: Option<Arc<cluster::metadata::MetadataImage>> = None;
    for h in hosts.iter().filter(|h| h.is_up()) {
        if let Some(img) = h.image() {
            if best.as_ref().is_none_or(|b| img.applied > b.applied) {
                best = Some(img);
            }
        }
    }
    best
}

pub fn partition_state(hosts: &[Arc<Host>], topic: &str, partition: i32) -> Option<PartState> {
    state_in(best_image(hosts)?.as_ref(), topic, partition)
}

/// `topic`'s `partition` as metadata image `img` has it.
fn state_in(
    img: &cluster::metadata::MetadataImage,
    topic: &str,
    partition: i32,
) -> Option<PartState> {
    let id = img.topic_ids.get(topic)?;
    let p = img.topics.get(id)?.partitions.get(usize::try_from(partition).ok()?)?;
    Some(PartState {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        isr: p.isr.clone(),
        replicas: p.replicas.clone(),
    })
}

/// Brokers registered and unfenced in the newest committed metadata any live broker holds.
pub fn registered_brokers(hosts: &[Arc<Host>]) -> usize {
    best_image(hosts).map_or(0, |img| img.live_brokers().len())
}

/// The active controller: the live node that is Raft leader with the highest term.
pub fn active_controller(hosts: &[Arc<Host>]) -> Option<u32> {
    hosts
        .iter()
        .filter(|h| h.is_up())
        .filter_map(|h| {
            h.controller_status()
                .filter(|s| s.role == cluster::raft::Role::Leader)
                .map(|s| (s.term, h.id))
        })
        .max()
        .map(|(_, id)| id)
}

/// A dynamic target's broker now (`None`: nobody fits, e.g. no leader).
pub fn resolve(target: Target, hosts: &[Arc<Host>]) -> Option<u32> {
    match target {
        Target::Broker(n) => Some(n),
        Target::Consumer(_) => None,
        Target::Controller => active_controller(hosts),
        Target::Leader(t, p) => {
            partition_state(hosts, t, p).and_then(|s| u32::try_from(s.leader).ok())
        }
        Target::Follower(t, p) => {
            let s = partition_state(hosts, t, p)?;
            let live: Vec<u32> = s
                .replicas
                .iter()
                .filter(|&&r| r != s.leader)
                .filter_map(|&r| u32::try_from(r).ok())
                .filter(|&r| hosts.get(r as usize).is_some_and(|h| h.is_up()))
                .collect();
            // Prefer a follower that is not the active controller, so a fault on it hits
            // replication, not the metadata quorum's leader too.
            let ctl = active_controller(hosts);
            live.iter().copied().find(|&r| Some(r) != ctl).or_else(|| live.first().copied())
        }
        Target::FollowerRank(t, p, j) => {
            let s = partition_state(hosts, t, p)?;
            let r = s.replicas.iter().filter(|&&r| r != s.leader).nth(usize::from(j))?;
            let r = u32::try_from(*r).ok()?;
            hosts.get(r as usize).is_some_and(|h| h.is_up()).then_some(r)
        }
    }
}

/// Calls go to the partition's current leader (as the committed metadata says).
pub struct Router {
    pub hosts: Vec<Arc<Host>>,
    pub clients: Vec<NetClient>,
}

impl Router {
    fn leader(&self, tp: &TopicPartition) -> Result<&NetClient, ApiError> {
        let s =
            partition_state(&self.hosts, &tp.topic, tp.partition).ok_or(ApiError::Unavailable)?;
        let i = usize::try_from(s.leader).map_err(|_| ApiError::Unavailable)?;
        self.clients.get(i).ok_or(ApiError::Unavailable)
    }
}

#[async_trait]
impl BrokerApi for Router {
    async fn produce(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        wait: bool,
        timeout: Duration,
    ) -> Result<Option<ProduceResponse>, ApiError> {
        self.leader(tp)?.produce(tp, batch, wait, timeout).await
    }

    async fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
        timeout: Duration,
    ) -> Result<FetchResponse, ApiError> {
        self.leader(tp)?.fetch(tp, offset, max_bytes, max_wait, timeout).await
    }

    async fn list_offsets(
        &self,
        tp: &TopicPartition,
        timeout: Duration,
    ) -> Result<(i64, i64), ApiError> {
        self.leader(tp)?.list_offsets(tp, timeout).await
    }
}

/// A change of a partition's committed state, as the observer saw it.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub t_s: f64,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// The assignment (for coverage's follower role; not in `summary.json`).
    #[serde(skip)]
    pub replicas: Vec<i32>,
}

#[derive(Default)]
pub struct Observed {
    pub hw_samples: Vec<HwSample>,
    pub timeline: BTreeMap<String, Vec<StateChange>>,
    /// Active controller changes: (time s, broker or -1 for none, Raft term).
    pub controllers: Vec<(f64, i64, u64)>,
    /// Per consumer group, coordinator changes: (time s, broker or -1 for none). Not traced.
    pub coordinators: BTreeMap<String, Vec<(f64, i32)>>,
    last_hw: BTreeMap<(u32, TopicPartition), (u64, i32, i64)>,
}

/// Samples leaders' HWs and partition states every `every_ns` (spawned on the supervisor).
pub struct Observer {
    pub hosts: Vec<Arc<Host>>,
    pub tps: Vec<TopicPartition>,
    /// Each of `tps`' position in it.
    pub tp_index: HashMap<TopicPartition, usize>,
    /// The workload's consumer groups (whose coordinators coverage needs).
    pub groups: Vec<String>,
    pub tracer: Tracer,
    pub out: Arc<Mutex<Observed>>,
}

impl Observer {
    pub fn sample(&self) {
        let now = self.tracer.now_ns();
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for h in self.hosts.iter().filter(|h| h.is_up()) {
            let Some(b) = h.process() else { continue };
            let inc = h.incarnation();
            // The broker's leaders in one pass, taken in `tps` order (as a lookup of each of
            // `tps` would find them: a 20-broker run samples 30,000 pairs every 250 ms).
            let mut leading: Vec<(usize, TopicPartition, i32, i64)> = (b.replicas.leaders())
                .into_iter()
                .filter_map(|(tp, epoch, hw)| Some((*self.tp_index.get(&tp)?, tp, epoch, hw)))
                .collect();
            leading.sort_unstable_by_key(|l| l.0);
            for (_, tp, epoch, hw) in leading {
                let key = (h.id, tp.clone());
                if o.last_hw.get(&key) == Some(&(inc, epoch, hw)) {
                    continue;
                }
                o.last_hw.insert(key, (inc, epoch, hw));
                o.hw_samples.push(HwSample {
                    at_ns: now,
                    broker: h.id,
                    incarnation: inc,
                    tp: tp.clone(),
                    leader_epoch: epoch,
                    hw,
                });
            }
        }
        let ctl = self
            .hosts
            .iter()
            .filter(|h| h.is_up())
            .filter_map(|h| {
                h.controller_status()
                    .filter(|s| s.role == cluster::raft::Role::Leader)
                    .map(|s| (s.term, h.id))
            })
            .max()
            .map_or((-1, 0), |(term, id)| (i64::from(id), term));
        if o.controllers.last().is_none_or(|&(_, b, t)| (b, t) != ctl) {
            self.tracer.event("controller", &format!("active=broker-{} term={}", ctl.0, ctl.1));
            o.controllers.push((now as f64 / 1e9, ctl.0, ctl.1));
        }
        // One image for every partition of the sample (not one search of the hosts each).
        let img = best_image(&self.hosts);
        for tp in &self.tps {
            let Some(s) = img.as_deref().and_then(|img| state_in(img, &tp.topic, tp.partition))
            else {
                continue;
            };
            let line = o.timeline.entry(tp.to_string()).or_default();
            if line.last().is_some_and(|l| {
                l.leader == s.leader && l.leader_epoch == s.leader_epoch && l.isr == s.isr
            }) {
                continue;
            }
            self.tracer.event(
                "partition-state",
                &format!("{tp} leader={} epoch={} isr={:?}", s.leader, s.leader_epoch, s.isr),
            );
            line.push(StateChange {
                t_s: now as f64 / 1e9,
                leader: s.leader,
                leader_epoch: s.leader_epoch,
                isr: s.isr,
                replicas: s.replicas,
            });
        }
        self.sample_coordinators(now, &mut o);
    }

    /// Each group's coordinator: the leader of its `__consumer_offsets` partition (read in
    /// memory, no trace event: trace hashes are unchanged by it).
    fn sample_coordinators(&self, now: u64, o: &mut Observed) {
        use broker::group::offsets_topic::{partition_for, OFFSETS_TOPIC};
        let Some(img) = best_image(&self.hosts) else { return };
        let parts = img.topic_ids.get(OFFSETS_TOPIC).and_then(|id| img.topics.get(id));
        for g in &self.groups {
            let leader = parts
                .filter(|t| !t.partitions.is_empty())
                .and_then(|t| {
                    let n = i32::try_from(t.partitions.len()).ok()?;
                    t.partitions.get(usize::try_from(partition_for(g, n)).ok()?)
                })
                .map_or(-1, |p| p.leader);
            let line = o.coordinators.entry(g.clone()).or_default();
            if line.last().is_none_or(|&(_, b)| b != leader) {
                line.push((now as f64 / 1e9, leader));
            }
        }
    }
}

/// A batch's bytes, hashed for `replicas-agree` (which compares replicas batch by batch):
/// XXH3 with its fixed default seed, so the same bytes hash the same in every run; an order of
/// magnitude faster than SipHash over every batch of every replica (3 % of a bench run).
fn batch_hash(b: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(b)
}

/// Reads one replica's whole log through debugging Fetches: batches, its HW and log end.
pub async fn read_replica(
    c: &NetClient,
    tp: &TopicPartition,
    tracer: &Tracer,
) -> Option<ReplicaLog> {
    let timeout = Duration::from_secs(5);
    let mut batches = Vec::new();
    let mut offset = 0i64;
    let (mut hw, mut leo, mut start) = (-1, -1, 0);
    for _ in 0..100_000 {
        let (got, h, l, s) = match c.debug_fetch(tp, offset, 1 << 20, timeout).await {
            Ok(r) => r,
            // Retention or DeleteRecords moved the log's start past `offset` (before the read or
            // during it): the replica's log is what remains, read from its new start.
            Err(ApiError::OffsetOutOfRange { log_start_offset, .. })
                if log_start_offset > offset =>
            {
                batches.retain(|b: &(i64, i64, u64)| b.1 >= log_start_offset);
                (start, offset) = (log_start_offset, log_start_offset);
                continue;
            }
            Err(e) => {
                tracer.event("replica-read-failed", &format!("{tp}@{offset} {e}"));
                return None;
            }
        };
        if hw < 0 {
            (hw, leo, start) = (h, l, start.max(s));
        }
        if got.is_empty() {
            break;
        }
        for b in got {
            let Ok(hd) = records::BatchHeader::parse(&b) else {
                tracer.event("replica-read-failed", &format!("{tp}@{offset} unparsable batch"));
                return None;
            };
            let last = hd.last_offset();
            if last >= offset {
                batches.push((hd.base_offset, last, batch_hash(&b)));
                offset = last + 1;
            }
        }
        if offset >= leo && leo >= 0 {
            break;
        }
    }
    Some(ReplicaLog { log_start_offset: start, high_watermark: hw, log_end_offset: leo, batches })
}

/// `summary.json`'s `cluster` section: per partition, the leader/ISR timeline (leader changes
/// with epochs, ISR shrinks and expands as committed), and per broker fault that hit a
/// partition's leader, how long until the committed metadata named another leader.
pub fn summary(
    timeline: &BTreeMap<String, Vec<StateChange>>,
    controllers: &[(f64, i64, u64)],
    faults: &[(u64, String, u32)],
    hosts: &[Arc<Host>],
) -> serde_json::Value {
    use serde_json::json;
    let mut parts = serde_json::Map::new();
    let mut elections = Vec::new();
    for (tp, line) in timeline {
        let (mut shrinks, mut expands, mut leader_changes) = (0u32, 0u32, 0u32);
        for w in line.windows(2) {
            if w[1].isr.len() < w[0].isr.len() {
                shrinks += 1;
            }
            if w[1].isr.len() > w[0].isr.len() {
                expands += 1;
            }
            if w[1].leader != w[0].leader || w[1].leader_epoch != w[0].leader_epoch {
                leader_changes += 1;
            }
        }
        parts.insert(tp.clone(), json!({"leader_changes": leader_changes, "isr_shrinks": shrinks, "isr_expands": expands, "timeline": line}));
        for (t, label, b) in faults {
            let t_s = *t as f64 / 1e9;
            // The leader when the fault hit.
            let Some(before) = line.iter().rev().find(|c| c.t_s <= t_s) else { continue };
            if before.leader != *b as i32 {
                continue;
            }
            let next =
                line.iter().find(|c| c.t_s > t_s && c.leader >= 0 && c.leader != before.leader);
            elections.push(json!({
                "partition": tp,
                "fault": label,
                "at_s": t_s,
                "old_leader": before.leader,
                "new_leader": next.map(|c| c.leader),
                "new_epoch": next.map(|c| c.leader_epoch),
                "elected_after_s": next.map(|c| c.t_s - t_s),
            }));
        }
    }
    json!({
        "brokers": hosts.len(),
        "observer_period_ms": 250,
        "partitions": parts,
        "leader_elections": elections,
        "controllers": controllers.iter().map(|(t, b, term)| json!({"t_s": t, "active": b, "term": term})).collect::<Vec<_>>(),
        "note": "states as committed in the metadata quorum, sampled every 250 ms of simulated time (election times are upper bounds at that resolution)",
    })
}
