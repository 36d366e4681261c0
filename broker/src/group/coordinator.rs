//! The group coordinator service: owns a set of `__consumer_offsets` partitions and the groups
//! that hash to them, runs the pure state machines of `state.rs`, persists their records and
//! completes delayed JoinGroup/SyncGroup responses through oneshot channels.
//!
//! Locking: the coordinator's own mutex may be held while taking the topic registry or an
//! offsets partition's data lock (appends, loads); never the other way round. None is held while
//! a JoinGroup/SyncGroup waits for its rebalance.
//!
//! Timers: one task sleeps until the earliest group deadline (virtual time under the simulator).
//! It is spawned at the first use of a group, not at start, so a broker that never sees a group
//! runs exactly the tasks it ran before groups existed (the simulator's pinned traces rely on it).

use std::collections::BTreeMap;
use std::sync::{Mutex as StdMutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use records::{BatchBuilder, Compression};
use tokio::sync::{oneshot, watch, Mutex, Notify};

use super::offsets_topic::{self, partition_for, Loaded, OFFSETS_TOPIC};
use super::state::{
    codes, CommittedOffset, Effect, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest,
    Leaver, ReqId, SyncOutcome,
};
use crate::broker::{now_ms, Broker};
use crate::log::{Log, TopicPartition};
use crate::protocol::error_code as ec;

/// Bytes of an offsets partition read per step while loading (the broker lock is released between
/// steps) and the cap on one batch's decompressed records.
const LOAD_STEP_BYTES: usize = 1 << 20;
const LOAD_BATCH_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Loading,
    Loaded,
}

#[derive(Debug)]
enum Waiter {
    Join(oneshot::Sender<JoinOutcome>),
    Sync(oneshot::Sender<SyncOutcome>),
}

#[derive(Debug)]
struct Inner {
    /// Partition count of `__consumer_offsets` (the existing topic's, else the config's).
    num_partitions: i32,
    partitions: BTreeMap<i32, Ownership>,
    groups: BTreeMap<String, Group>,
    waiters: BTreeMap<ReqId, Waiter>,
    next_req: ReqId,
    next_member: u64,
    timers_started: bool,
    /// When the timer task next purges expired offsets and dead groups.
    next_cleanup_ms: Option<i64>,
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct Description {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// What [`Coordinator::check_invariants`] examined and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupsChecked {
    /// Groups examined.
    pub groups: u64,
    /// `group ID: what is broken`, at most [`GROUP_VIOLATIONS_MAX`].
    pub violations: Vec<String>,
}

/// Violations one check keeps (the groups examined are counted on).
pub const GROUP_VIOLATIONS_MAX: usize = 20;

#[derive(Debug)]
pub struct Coordinator {
    pub config: GroupConfig,
    inner: Mutex<Inner>,
    wake: Notify,
    /// Set by `tasks::run` so the timer task can be spawned at first use.
    runtime: StdMutex<Option<(Weak<Broker>, watch::Receiver<bool>)>>,
}

impl Coordinator {
    pub fn new(config: GroupConfig, num_partitions: i32) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                num_partitions: num_partitions.max(1),
                partitions: BTreeMap::new(),
                groups: BTreeMap::new(),
                waiters: BTreeMap::new(),
                next_req: 1,
                next_member: 0,
                timers_started: false,
                next_cleanup_ms: None,
            }),
            wake: Notify::new(),
            runtime: StdMutex::new(None),
        }
    }

    /// Called by `tasks::run`: what the timer task needs when it is spawned.
    /// Groups loaded at start with members need their session timers right away.
    pub fn attach(&self, broker: Weak<Broker>, shutdown: watch::Receiver<bool>) {
        *self.runtime.lock().unwrap_or_else(|p| p.into_inner()) = Some((broker, shutdown));
        // Nobody else holds the lock this early; if someone does, their request starts the timers.
        if let Ok(mut inner) = self.inner.try_lock() {
            if !inner.groups.is_empty() {
                self.ensure_timers(&mut inner);
            }
        }
    }

    pub async fn num_partitions(&self) -> i32 {
        self.inner.lock().await.num_partitions
    }

    /// Combined mode: the offsets topic's partition count as the controller created it.
    pub async fn set_num_partitions(&self, n: i32) {
        self.inner.lock().await.num_partitions = n.max(1);
    }

    /// Whether offsets partition `p` is loaded or loading here.
    pub async fn owns_partition(&self, p: i32) -> bool {
        self.inner.lock().await.partitions.contains_key(&p)
    }

    /// The offsets partition coordinating `group`, if this coordinator serves it now.
    pub async fn partition_of(&self, group: &str) -> Result<i32, i16> {
        let inner = self.inner.lock().await;
        inner.owned(group)
    }

    /// Startup: every partition of an existing `__consumer_offsets` is replayed; without the topic
    /// every partition is owned and empty (the topic is created at the first write).
    pub(crate) async fn load_at_open(
        &self,
        logs: &crate::log::LogManager,
        topic_partitions: Option<i32>,
    ) {
        let mut inner = self.inner.lock().await;
        if let Some(n) = topic_partitions {
            inner.num_partitions = n.max(1);
        }
        let now = now_ms();
        for p in 0..inner.num_partitions {
            let mut loaded = Loaded::default();
            if let Some(log) = logs.get(&TopicPartition::new(OFFSETS_TOPIC, p)) {
                read_partition(log, 0, None, &mut loaded).await;
            }
            install(&mut inner, p, loaded, now, &self.config);
        }
        let groups = inner.groups.len();
        tracing::info!(partitions = inner.num_partitions, groups, "group coordinator loaded");
    }

    /// Takes over offsets partition `p` (leadership moved here): replays its log from the start,
    /// then serves its groups. Requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS.
    pub async fn load_partition(&self, broker: &Broker, p: i32) {
        {
            let mut inner = self.inner.lock().await;
            if inner.partitions.contains_key(&p) {
                return;
            }
            inner.partitions.insert(p, Ownership::Loading);
        }
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        let mut loaded = Loaded::default();
        let mut offset = 0;
        loop {
            // The partition's lock is taken per step so produce and fetch keep flowing during a
            // load.
            let Some(part) = broker.partition(&tp) else { break };
            let Some(data) = part.data().await else { break };
            let next = read_partition(&data.log, offset, Some(LOAD_STEP_BYTES), &mut loaded).await;
            drop(data);
            match next {
                Some(n) => offset = n,
                None => break,
            }
        }
        let mut inner = self.inner.lock().await;
        if inner.partitions.get(&p) == Some(&Ownership::Loading) {
            install(&mut inner, p, loaded, now_ms(), &self.config);
        }
    }

    /// Gives up offsets partition `p`: its groups are dropped from memory and their waiting
    /// requests answered NOT_COORDINATOR (members then find the new coordinator).
    pub async fn unload_partition(&self, p: i32) {
        let mut inner = self.inner.lock().await;
        inner.partitions.remove(&p);
        let n = inner.num_partitions;
        let ids: Vec<String> =
            inner.groups.keys().filter(|g| partition_for(g, n) == p).cloned().collect();
        let now = now_ms();
        for id in ids {
            if let Some(mut g) = inner.groups.remove(&id) {
                let fx = g.unload(codes::NOT_COORDINATOR, now);
                reply_all(&mut inner, fx, false);
            }
        }
    }

    /// Broker shutdown: every waiting request is answered.
    pub async fn shutdown(&self) {
        let mut inner = self.inner.lock().await;
        let now = now_ms();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            if let Some(g) = inner.groups.get_mut(&id) {
                let waiting = !g.waiters().is_empty();
                if waiting {
                    let fx = g.unload(codes::COORDINATOR_NOT_AVAILABLE, now);
                    reply_all(&mut inner, fx, false);
                }
            }
        }
        let left: Vec<ReqId> = inner.waiters.keys().copied().collect();
        for id in left {
            match inner.waiters.remove(&id) {
                Some(Waiter::Join(tx)) => {
                    let _ = tx.send(JoinOutcome::error(codes::COORDINATOR_NOT_AVAILABLE, ""));
                }
                Some(Waiter::Sync(tx)) => {
                    let _ = tx.send(SyncOutcome::error(codes::COORDINATOR_NOT_AVAILABLE));
                }
                None => {}
            }
        }
    }

    fn validate_group_id(&self, group: &str) -> Result<(), i16> {
        if group.is_empty() || group.len() > self.config.group_id_bytes_max {
            return Err(codes::INVALID_GROUP_ID);
        }
        Ok(())
    }

    /// Spawns the timer task once (see the module docs).
    fn ensure_timers(&self, inner: &mut Inner) {
        if inner.timers_started {
            return;
        }
        let rt = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((broker, shutdown)) = rt {
            inner.timers_started = true;
            inner.next_cleanup_ms =
                Some(now_ms() + self.config.offsets_retention_check_interval_ms);
            tokio::spawn(run_timers(broker, shutdown));
        }
    }

    pub async fn join(&self, broker: &Broker, group: &str, r: JoinRequest) -> JoinOutcome {
        if let Err(code) = self.validate_group_id(group) {
            return JoinOutcome::error(code, &r.member_id);
        }
        let rx = {
            let mut inner = self.inner.lock().await;
            let p = match inner.owned(group) {
                Ok(p) => p,
                Err(code) => return JoinOutcome::error(code, &r.member_id),
            };
            self.ensure_timers(&mut inner);
            let now = now_ms();
            let req = inner.next_req;
            inner.next_req += 1;
            let (tx, rx) = oneshot::channel();
            inner.waiters.insert(req, Waiter::Join(tx));
            // Member ids must be unique across restarts: client id, the time, a counter.
            inner.next_member += 1;
            let new_id = format!("{}-{:x}-{}", truncate(&r.client_id, 200), now, inner.next_member);
            let cfg = &self.config;
            let g = inner.groups.entry(group.to_string()).or_insert_with(|| Group::new(group, now));
            let before = Shape::of(g);
            let fx = g.join(req, r, &new_id, now, cfg);
            before.log_change(g, "join");
            self.run_effects(broker, &mut inner, p, fx).await;
            forget_if_unused(&mut inner, group);
            rx
        };
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| JoinOutcome::error(codes::COORDINATOR_NOT_AVAILABLE, ""))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        if let Err(code) = self.validate_group_id(group) {
            return SyncOutcome::error(code);
        }
        let rx = {
            let mut inner = self.inner.lock().await;
            let p = match inner.owned(group) {
                Ok(p) => p,
                Err(code) => return SyncOutcome::error(code),
            };
            if !inner.groups.contains_key(group) {
                return SyncOutcome::error(codes::UNKNOWN_MEMBER_ID);
            }
            let now = now_ms();
            let req = inner.next_req;
            inner.next_req += 1;
            let (tx, rx) = oneshot::channel();
            let g = inner.groups.get_mut(group).expect("checked above");
            let before = Shape::of(g);
            let fx = g.sync(
                req,
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol,
                assignments,
                now,
                &self.config,
            );
            before.log_change(g, "sync");
            inner.waiters.insert(req, Waiter::Sync(tx));
            self.run_effects(broker, &mut inner, p, fx).await;
            rx
        };
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| SyncOutcome::error(codes::COORDINATOR_NOT_AVAILABLE))
    }

    pub async fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if let Err(code) = self.validate_group_id(group) {
            return code;
        }
        let mut inner = self.inner.lock().await;
        if let Err(code) = inner.owned(group) {
            return code;
        }
        let code = match inner.groups.get_mut(group) {
            Some(g) => g.heartbeat(generation, member_id, instance_id, now_ms()),
            None => codes::UNKNOWN_MEMBER_ID,
        };
        drop(inner);
        self.wake.notify_one();
        code
    }

    /// LeaveGroup: per-member codes, or a group-level error.
    pub async fn leave(
        &self,
        broker: &Broker,
        group: &str,
        leavers: &[Leaver],
    ) -> Result<Vec<i16>, i16> {
        self.validate_group_id(group)?;
        let mut inner = self.inner.lock().await;
        let p = inner.owned(group)?;
        let Some(g) = inner.groups.get_mut(group) else {
            return Ok(vec![codes::UNKNOWN_MEMBER_ID; leavers.len()]);
        };
        let before = Shape::of(g);
        let (codes_out, fx) = g.leave(leavers, now_ms());
        before.log_change(g, "leave");
        self.run_effects(broker, &mut inner, p, fx).await;
        drop(inner);
        self.wake.notify_one();
        Ok(codes_out)
    }

    /// OffsetCommit: per-offset codes (in input order), or a group-level error for all.
    pub async fn commit(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: &[OffsetToCommit],
    ) -> Result<Vec<i16>, i16> {
        self.validate_group_id(group)?;
        let mut inner = self.inner.lock().await;
        let p = inner.owned(group)?;
        self.ensure_timers(&mut inner);
        let now = now_ms();
        if !inner.groups.contains_key(group) {
            if generation >= 0 || !member_id.is_empty() {
                // Kafka: a generation-aware commit for a group this coordinator does not know.
                return Err(if generation >= 0 {
                    codes::ILLEGAL_GENERATION
                } else {
                    codes::UNKNOWN_MEMBER_ID
                });
            }
            inner.groups.insert(group.to_string(), Group::new(group, now));
        }
        let g = inner.groups.get_mut(group).expect("inserted above");
        if let Err(code) = g.validate_commit(generation, member_id, instance_id, now) {
            let fencing = code == codes::ILLEGAL_GENERATION || code == codes::UNKNOWN_MEMBER_ID;
            if !(fencing && self.config.unsafe_commit_any_generation) {
                forget_if_unused(&mut inner, group);
                return Err(code);
            }
            // The museum switch: store what generation fencing would refuse (OffsetCommit v0).
            tracing::warn!(
                group,
                generation,
                member_id,
                code,
                "unsafe: stale commit stored (loglab.unsafe.group.commit.any.generation)"
            );
        }
        let mut out = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for o in offsets {
            let md = o.metadata.clone().unwrap_or_default();
            if md.len() > self.config.offset_metadata_bytes_max {
                out.push(codes::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            if o.partition < 0 || crate::topics::validate_topic_name(&o.topic).is_err() {
                out.push(ec::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            let c = CommittedOffset {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: md,
                commit_timestamp_ms: now,
            };
            records.push((
                offsets_topic::offset_key(group, &o.topic, o.partition),
                Some(offsets_topic::offset_value(&c)),
            ));
            accepted.push((out.len(), o.topic.clone(), o.partition, c));
            out.push(ec::NONE);
        }
        if !records.is_empty() {
            if let Err(e) =
                append(broker, self.topic_configs(inner.num_partitions), p, records).await
            {
                tracing::warn!(group, error = %e, "offset commit not stored");
                for (i, ..) in &accepted {
                    out[*i] = codes::COORDINATOR_NOT_AVAILABLE;
                }
                forget_if_unused(&mut inner, group);
                return Ok(out);
            }
            if let Some(g) = inner.groups.get_mut(group) {
                for (_, t, part, c) in accepted {
                    g.apply_offset(&t, part, Some(c));
                }
            }
        }
        forget_if_unused(&mut inner, group);
        Ok(out)
    }

    /// OffsetFetch for one group: `None` topics = every committed offset.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>, i16> {
        let inner = self.inner.lock().await;
        inner.owned(group)?;
        let g = inner.groups.get(group);
        let mut out = Vec::new();
        match topics {
            Some(ts) => {
                for (t, parts) in ts {
                    let ps = parts
                        .iter()
                        .map(|p| (*p, g.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned())))
                        .collect();
                    out.push((t.clone(), ps));
                }
            }
            None => {
                if let Some(g) = g {
                    let mut by_topic: BTreeMap<&String, Vec<(i32, Option<CommittedOffset>)>> =
                        BTreeMap::new();
                    for ((t, p), c) in &g.offsets {
                        by_topic.entry(t).or_default().push((*p, Some(c.clone())));
                    }
                    out = by_topic.into_iter().map(|(t, v)| (t.clone(), v)).collect();
                }
            }
        }
        Ok(out)
    }

    /// ListGroups: (group id, protocol type, state) of every live group.
    /// ListGroups: (group id, protocol type, state) of every live group, or
    /// COORDINATOR_LOAD_IN_PROGRESS while a partition is loading (the list would be incomplete).
    pub async fn list(&self) -> Result<Vec<(String, String, &'static str)>, i16> {
        let inner = self.inner.lock().await;
        if inner.partitions.values().any(|o| *o == Ownership::Loading) {
            return Err(codes::COORDINATOR_LOAD_IN_PROGRESS);
        }
        Ok(inner
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| (g.id.clone(), g.protocol_type().unwrap_or("").to_string(), g.state().name()))
            .collect())
    }

    /// Every group's invariants ([`Group::invariant_violations`]), checked without waiting:
    /// `None` while a request holds the coordinator (its groups may be mid-change; the caller
    /// checks again later). Reads only; for the simulator's run-time checks.
    pub fn check_invariants(&self) -> Option<GroupsChecked> {
        let inner = self.inner.try_lock().ok()?;
        let mut out = GroupsChecked::default();
        for (id, g) in &inner.groups {
            out.groups += 1;
            for v in g.invariant_violations(&self.config) {
                if out.violations.len() < GROUP_VIOLATIONS_MAX {
                    out.violations.push(format!("group {id}: {v}"));
                }
            }
        }
        Some(out)
    }

    /// DescribeGroups for one group (unknown groups are Dead, as in Kafka).
    pub async fn describe(&self, group: &str) -> Result<Description, i16> {
        let inner = self.inner.lock().await;
        inner.owned(group)?;
        let Some(g) = inner.groups.get(group) else {
            return Ok(Description {
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            });
        };
        let stable = g.state() == GroupState::Stable;
        let protocol = g.protocol().unwrap_or("").to_string();
        let members = g
            .members()
            .map(|m| {
                let meta = if stable {
                    m.protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default()
                } else {
                    Bytes::new()
                };
                let asg = if stable { m.assignment.clone() } else { Bytes::new() };
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    meta,
                    asg,
                )
            })
            .collect();
        Ok(Description {
            state: g.state().name(),
            protocol_type: g.protocol_type().unwrap_or("").to_string(),
            protocol,
            members,
        })
    }

    /// Runs effects in order: persists, then completes waiters; a response after a failed
    /// persist becomes COORDINATOR_NOT_AVAILABLE (the member retries, as with Kafka's store errors).
    async fn run_effects(&self, broker: &Broker, inner: &mut Inner, p: i32, fx: Vec<Effect>) {
        let mut failed = false;
        for e in fx {
            match e {
                Effect::Persist(snap) => {
                    let rec = vec![(
                        offsets_topic::group_key(&snap.group_id),
                        Some(offsets_topic::group_value(&snap)),
                    )];
                    if let Err(e) =
                        append(broker, self.topic_configs(inner.num_partitions), p, rec).await
                    {
                        tracing::warn!(group = %snap.group_id, error = %e, "group metadata not stored");
                        failed = true;
                    }
                }
                other => reply_all(inner, vec![other], failed),
            }
        }
    }

    /// How `__consumer_offsets` is created (at its first write): partitions and topic configs.
    pub(crate) fn topic_configs(&self, partitions: i32) -> (i32, BTreeMap<String, String>) {
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), self.config.offsets_topic_segment_bytes.to_string()),
        ]);
        (partitions, configs)
    }

    /// Timer work: expires sessions and phases of every group whose deadline passed.
    async fn tick(&self, broker: &Broker) {
        let mut inner = self.inner.lock().await;
        let now = now_ms();
        if inner.next_cleanup_ms.is_some_and(|d| d <= now) {
            self.cleanup(broker, &mut inner, now).await;
            inner.next_cleanup_ms = Some(now + self.config.offsets_retention_check_interval_ms);
        }
        let due: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline_ms().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let n = inner.num_partitions;
            let Some(g) = inner.groups.get_mut(&id) else { continue };
            let before = Shape::of(g);
            let fx = g.tick(now);
            before.log_change(g, "timeout");
            self.run_effects(broker, &mut inner, partition_for(&id, n), fx).await;
        }
    }

    async fn next_deadline(&self) -> Option<i64> {
        let inner = self.inner.lock().await;
        inner
            .groups
            .values()
            .filter_map(|g| g.next_deadline_ms())
            .chain(inner.next_cleanup_ms)
            .min()
    }

    /// Offset expiry and group deletion, with tombstones so a reload agrees (Kafka's
    /// `cleanupGroupMetadata`).
    async fn cleanup(&self, broker: &Broker, inner: &mut Inner, now: i64) {
        let n = inner.num_partitions;
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        let mut purged = (0usize, 0usize);
        for id in ids {
            let p = partition_for(&id, n);
            if inner.partitions.get(&p) != Some(&Ownership::Loaded) {
                continue;
            }
            let Some(g) = inner.groups.get_mut(&id) else { continue };
            let expired = g.expire_offsets(now, self.config.offsets_retention_ms);
            let deleted = g.try_delete(now);
            let mut recs: Vec<(Bytes, Option<Bytes>)> = expired
                .iter()
                .map(|(t, part)| (offsets_topic::offset_key(&id, t, *part), None))
                .collect();
            if deleted {
                recs.push((offsets_topic::group_key(&id), None));
                inner.groups.remove(&id);
            }
            purged.0 += expired.len();
            purged.1 += deleted as usize;
            if !recs.is_empty() {
                if let Err(e) = append(broker, self.topic_configs(n), p, recs).await {
                    tracing::warn!(group = %id, error = %e, "tombstones not stored");
                }
            }
        }
        if purged != (0, 0) {
            tracing::info!(
                offsets = purged.0,
                groups = purged.1,
                "expired offsets and removed empty groups"
            );
        }
    }
}

/// DeleteGroups and OffsetDelete: validated by the state machine, tombstones stored first, then
/// applied in memory (a failed append changes nothing).
impl Coordinator {
    /// DeleteGroups for one group: NONE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP or a coordinator
    /// error.
    pub async fn delete_group(&self, broker: &Broker, group: &str) -> i16 {
        if let Err(code) = self.validate_group_id(group) {
            return code;
        }
        let mut inner = self.inner.lock().await;
        let p = match inner.owned(group) {
            Ok(p) => p,
            Err(code) => return code,
        };
        let now = now_ms();
        let Some(g) = inner.groups.get(group) else { return codes::GROUP_ID_NOT_FOUND };
        let gone = match g.clone().delete(now) {
            Ok(gone) => gone,
            Err(code) => return code,
        };
        let mut recs: Vec<(Bytes, Option<Bytes>)> = gone
            .iter()
            .map(|(t, part)| (offsets_topic::offset_key(group, t, *part), None))
            .collect();
        recs.push((offsets_topic::group_key(group), None));
        if let Err(e) = append(broker, self.topic_configs(inner.num_partitions), p, recs).await {
            tracing::warn!(group, error = %e, "group deletion not stored");
            return codes::COORDINATOR_NOT_AVAILABLE;
        }
        if let Some(g) = inner.groups.get_mut(group) {
            let _ = g.delete(now);
        }
        inner.groups.remove(group);
        tracing::info!(group, offsets = gone.len(), "group deleted");
        ec::NONE
    }

    /// OffsetDelete: a code per (topic, partition) in order, or a group-level error.
    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        self.validate_group_id(group)?;
        let mut inner = self.inner.lock().await;
        let p = inner.owned(group)?;
        let g = inner.groups.get(group).ok_or(codes::GROUP_ID_NOT_FOUND)?;
        let codes_out = g.offsets_deletable(partitions)?;
        let gone: Vec<&(String, i32)> = partitions
            .iter()
            .zip(&codes_out)
            .filter(|(k, c)| **c == ec::NONE && g.offsets.contains_key(*k))
            .map(|(k, _)| k)
            .collect();
        if gone.is_empty() {
            return Ok(codes_out);
        }
        let recs: Vec<(Bytes, Option<Bytes>)> = gone
            .iter()
            .map(|(t, part)| (offsets_topic::offset_key(group, t, *part), None))
            .collect();
        let gone: Vec<(String, i32)> = gone.into_iter().cloned().collect();
        if let Err(e) = append(broker, self.topic_configs(inner.num_partitions), p, recs).await {
            tracing::warn!(group, error = %e, "offset deletion not stored");
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(g) = inner.groups.get_mut(group) {
            for (t, part) in &gone {
                g.apply_offset(t, *part, None);
            }
        }
        forget_if_unused(&mut inner, group);
        tracing::info!(group, offsets = gone.len(), "offsets deleted");
        Ok(codes_out)
    }
}

/// Topic deletion: the committed offsets of a deleted topic go from every group this coordinator
/// owns, whatever the group's state (Kafka's `cleanupGroupMetadata` on deleted partitions), so a
/// topic created again under the name starts without them. Tombstones are stored first.
impl Coordinator {
    /// Removes every committed offset of `topic`; returns how many went. A group whose
    /// tombstones could not be stored keeps its offsets (logged; they expire as usual).
    pub async fn forget_topic(&self, broker: &Broker, topic: &str) -> usize {
        let mut inner = self.inner.lock().await;
        let mut targets: Vec<(String, i32, Vec<i32>)> = Vec::new();
        for (group, g) in &inner.groups {
            let parts: Vec<i32> =
                g.offsets.keys().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect();
            if parts.is_empty() {
                continue;
            }
            if let Ok(p) = inner.owned(group) {
                targets.push((group.clone(), p, parts));
            }
        }
        let mut removed = 0;
        for (group, p, parts) in targets {
            let recs: Vec<(Bytes, Option<Bytes>)> = parts
                .iter()
                .map(|part| (offsets_topic::offset_key(&group, topic, *part), None))
                .collect();
            if let Err(e) = append(broker, self.topic_configs(inner.num_partitions), p, recs).await
            {
                tracing::warn!(group, topic, error = %e, "offsets of a deleted topic not removed");
                continue;
            }
            if let Some(g) = inner.groups.get_mut(&group) {
                for part in &parts {
                    g.apply_offset(topic, *part, None);
                }
            }
            forget_if_unused(&mut inner, &group);
            removed += parts.len();
            tracing::info!(
                group,
                topic,
                offsets = parts.len(),
                "offsets of a deleted topic removed"
            );
        }
        removed
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Inner {
    fn owned(&self, group: &str) -> Result<i32, i16> {
        let p = partition_for(group, self.num_partitions);
        match self.partitions.get(&p) {
            Some(Ownership::Loaded) => Ok(p),
            Some(Ownership::Loading) => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(codes::NOT_COORDINATOR),
        }
    }
}

/// What operators want logged about a group: state, generation, member count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    state: GroupState,
    generation: i32,
    members: usize,
}

impl Shape {
    fn of(g: &Group) -> Self {
        Self { state: g.state(), generation: g.generation(), members: g.member_count() }
    }

    fn log_change(self, g: &Group, cause: &str) {
        let now = Shape::of(g);
        if now != self {
            tracing::info!(
                group = %g.id, cause, from = g_state(self.state), to = g_state(now.state), generation = now.generation,
                members = now.members, was_members = self.members, "group changed"
            );
        }
    }
}

fn g_state(s: GroupState) -> &'static str {
    s.name()
}

fn forget_if_unused(inner: &mut Inner, group: &str) {
    if inner.groups.get(group).is_some_and(|g| g.is_forgettable()) {
        inner.groups.remove(group);
    }
}

/// Completes waiters; with `failed`, successful outcomes become COORDINATOR_NOT_AVAILABLE.
fn reply_all(inner: &mut Inner, fx: Vec<Effect>, failed: bool) {
    for e in fx {
        match e {
            Effect::Join(id, mut out) => {
                if failed && out.error == ec::NONE {
                    out = JoinOutcome::error(codes::COORDINATOR_NOT_AVAILABLE, &out.member_id);
                }
                if let Some(Waiter::Join(tx)) = inner.waiters.remove(&id) {
                    let _ = tx.send(out);
                }
            }
            Effect::Sync(id, mut out) => {
                if failed && out.error == ec::NONE {
                    out = SyncOutcome::error(codes::COORDINATOR_NOT_AVAILABLE);
                }
                if let Some(Waiter::Sync(tx)) = inner.waiters.remove(&id) {
                    let _ = tx.send(out);
                }
            }
            Effect::Persist(_) => {}
        }
    }
}

/// Installs a replayed partition: its groups are rebuilt, the partition is served.
fn install(inner: &mut Inner, p: i32, loaded: Loaded, now: i64, cfg: &GroupConfig) {
    for (id, lg) in loaded.groups {
        let mut g = match &lg.metadata {
            Some(snap) => Group::from_snapshot(snap, now),
            None => Group::new(&id, now),
        };
        g.set_initial_delay(cfg.initial_rebalance_delay_ms);
        g.offsets = lg.offsets;
        inner.groups.insert(id, g);
    }
    inner.partitions.insert(p, Ownership::Loaded);
}

/// Replays `log` from `offset` into `loaded`. With a byte `budget`, stops after about that many
/// bytes and returns where to continue; `None` once the end is reached.
async fn read_partition(
    log: &Log,
    mut offset: i64,
    budget: Option<usize>,
    loaded: &mut Loaded,
) -> Option<i64> {
    offset = offset.max(log.log_start_offset());
    let end = log.log_end_offset();
    let mut read = 0usize;
    while offset < end {
        if budget.is_some_and(|b| read >= b) {
            return Some(offset);
        }
        let batches = match log.read_checked(offset, end, LOAD_STEP_BYTES).await {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => break,
            Err(e) => {
                tracing::error!(offset, error = %e, "reading __consumer_offsets stopped");
                break;
            }
        };
        for b in batches {
            read += b.len();
            let Ok(h) = records::BatchHeader::parse(&b) else { break };
            offset = h.last_offset() + 1;
            if h.is_control() {
                continue;
            }
            match records::decode_all(b, LOAD_BATCH_BYTES_MAX) {
                Ok(recs) => {
                    for r in recs {
                        let Some(k) = r.key.as_deref() else { continue };
                        if let Err(e) = loaded.apply(k, r.value.as_deref()) {
                            tracing::warn!(offset = r.offset, error = %e, "skipping a bad __consumer_offsets record");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(offset, error = %e, "skipping a bad __consumer_offsets batch")
                }
            }
        }
    }
    None
}

/// How long a commit waits for the offsets partition's ISR in combined mode
/// (`offsets.commit.timeout.ms`).
const OFFSETS_COMMIT_TIMEOUT_MS: u64 = 5_000;

/// Appends records to offsets partition `p`. On a single node the compacted topic is created at
/// first use and the append is the commit. In combined mode the topic comes from the controller,
/// this broker must lead `p`, and the write counts only once the ISR has it (Kafka's
/// `offsets.commit.required.acks=-1`): a commit acknowledged then lost with its leader would let
/// a group read records twice.
async fn append(
    broker: &Broker,
    topic: (i32, BTreeMap<String, String>),
    p: i32,
    records: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), String> {
    let now = now_ms();
    let mut b = BatchBuilder::new(BytesMut::new(), Compression::None, usize::MAX);
    for (k, v) in &records {
        b.append(now, Some(k), v.as_deref(), &[]).map_err(|e| e.to_string())?;
    }
    let mut buf = b.finish().map_err(|e| e.to_string())?;
    let combined = broker.controller_link().is_some();
    let tp = TopicPartition::new(OFFSETS_TOPIC, p);
    if !broker.registry.lock().await.topics.contains_key(OFFSETS_TOPIC) {
        if combined {
            return Err(format!("{OFFSETS_TOPIC} does not exist yet"));
        }
        let (num_partitions, configs) = topic;
        broker
            .ensure_topic(OFFSETS_TOPIC, num_partitions, configs)
            .await
            .map_err(|(code, msg)| format!("creating {OFFSETS_TOPIC}: {msg} ({code})"))?;
    }
    let part = broker.partition(&tp);
    let data = match &part {
        Some(part) => part.data().await,
        None => None,
    };
    let epoch = if combined {
        broker.replicas.check_produce(&tp).map_err(|e| e.to_string())?;
        broker.leader_epoch(OFFSETS_TOPIC, p)
    } else {
        0
    };
    let mut data = data.ok_or_else(|| format!("no log for {tp}"))?;
    let info = data.log.append_as_leader(&mut buf, epoch, now).await.map_err(|e| e.to_string())?;
    let leo = data.log.log_end_offset();
    let waiter = if combined {
        broker.replicas.on_leader_append(&tp, leo);
        Some(broker.replicas.await_ack(&tp, info.last_offset).map_err(|e| e.to_string())?)
    } else {
        None
    };
    drop(data);
    broker.appended.notify_waiters();
    if let Some(rx) = waiter {
        match tokio::time::timeout(Duration::from_millis(OFFSETS_COMMIT_TIMEOUT_MS), rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e.to_string()),
            Ok(Err(_)) => return Err("leadership of the offsets partition ended".into()),
            Err(_) => {
                return Err(format!(
                    "the ISR did not acknowledge within {OFFSETS_COMMIT_TIMEOUT_MS} ms"
                ))
            }
        }
    }
    Ok(())
}

/// The timer task: sleeps until the earliest group deadline (or a wake-up), then ticks.
async fn run_timers(broker: Weak<Broker>, mut shutdown: watch::Receiver<bool>) {
    let Some(b) = broker.upgrade() else { return };
    loop {
        let wait = match b.groups.next_deadline().await {
            Some(d) => Duration::from_millis((d - now_ms()).clamp(0, 3_600_000) as u64),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                b.groups.shutdown().await;
                return;
            }
            _ = b.groups.wake.notified() => continue,
            _ = tokio::time::sleep(wait) => {}
        }
        b.groups.tick(&b).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-time check sees every group, names a broken one, and backs off while a request
    /// holds the coordinator.
    #[test]
    fn check_invariants_reports_a_broken_group() {
        // A coordinator bounding groups to no members at all: a group with one member breaks
        // `group.max.size` (the state machine never lets one grow past it; loading does).
        let config = GroupConfig { members_max: 0, ..GroupConfig::default() };
        let c = Coordinator::new(config, 1);
        assert_eq!(c.check_invariants(), Some(GroupsChecked::default()));
        {
            let mut inner = c.inner.try_lock().expect("uncontended");
            inner.groups.insert("fine".into(), Group::new("fine", 0));
            let snapshot = super::super::state::GroupSnapshot {
                group_id: "big".into(),
                generation: 3,
                protocol_type: "consumer".into(),
                protocol: Some("range".into()),
                leader: Some("m".into()),
                state_timestamp_ms: 0,
                members: vec![super::super::state::MemberSnapshot {
                    member_id: "m".into(),
                    instance_id: None,
                    client_id: "c".into(),
                    client_host: "h".into(),
                    rebalance_timeout_ms: 1000,
                    session_timeout_ms: 1000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                }],
            };
            inner.groups.insert("big".into(), Group::from_snapshot(&snapshot, 0));
            assert!(c.check_invariants().is_none(), "held by a request: not checked");
        }
        let checked = c.check_invariants().expect("free");
        assert_eq!(checked.groups, 2);
        assert_eq!(
            checked.violations,
            vec!["group big: 1 members + 0 pending exceed group.max.size 0"]
        );
    }
}
