//! Each partition's replication role on this broker, and the `acks=all` waiters.
//!
//! A partition this broker replicates is either a **leader** (a [`LeaderState`] from the `cluster`
//! crate: follower LEOs, the ISR, the high watermark, pending `acks=all` produces) or a
//! **follower** (which leader, at which leader epoch, whether it has truncated by epoch since it
//! started following, and its own HW). Partitions without a role are not served (single-node mode
//! never has roles: [`Replicas::high_watermark`] is `None` and callers use the log end).
//!
//! No IO and no `.await` here. Each partition's role and `acks=all` waiters live in its
//! [`Partition`] (see `crate::partition` for the lock rules); [`Replicas`] reaches them through
//! the partition map and keeps what spans partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cluster::isr::{
    AlterPartitionResponse, FetchError, FetchOutcome, IsrChange, IsrConfig, LeaderStart,
    LeaderState, ProduceError,
};
use cluster::metadata::{BrokerId, PartitionState, TopicId};
use tokio::sync::oneshot;

use crate::log::TopicPartition;
use crate::partition::{Partition, Partitions, RoleSlot};

/// `acks=all` produces waiting at once, broker-wide; beyond it produces are refused.
pub const ACK_WAITERS_MAX: usize = 100_000;

/// A leader's state is much larger than a follower's; one `Role` per partition, read on every
/// request, so it stays unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Role {
    Leader {
        topic_id: TopicId,
        state: LeaderState,
    },
    Follower {
        topic_id: TopicId,
        leader: BrokerId,
        leader_epoch: i32,
        /// This replica's HW: what the leader said is committed, capped at the local LEO.
        hw: i64,
        /// Truncated by leader epoch (OffsetForLeaderEpoch) since following this epoch.
        truncated: bool,
    },
}

/// A follower partition as its fetcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub truncated: bool,
}

/// An ISR change for the controller (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    pub change: IsrChange,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaCounters {
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leaderships_started: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// HWs read from `replication-offset-checkpoint` at start: where a partition's HW starts when
    /// it first gets a role (capped at the log end).
    checkpoint: BTreeMap<TopicPartition, i64>,
    /// ISR changes the leader wants sent, drained by the replica manager.
    alter_queue: Vec<AlterIsr>,
    counters: ReplicaCounters,
}

/// The broker-wide side of replication: each partition's role lives in its [`Partition`]; this
/// holds what spans partitions (the HW checkpoint read at start, queued ISR changes, counters,
/// the count of `acks=all` waiters). Its lock is a std mutex never held across an `.await` nor
/// while taking a partition's role lock.
#[derive(Debug)]
pub struct Replicas {
    partitions: Arc<Partitions>,
    inner: Mutex<Inner>,
    /// The partitions each leader is followed from here (by their followers' role), so a
    /// replica fetcher's round costs what it follows, not every partition here. Kept by
    /// [`Replicas::set_role`]; a leaf lock, taken under a partition's role lock. It may name a
    /// partition no longer in the map (taken at shutdown): readers check the map and the role.
    followed: std::sync::Mutex<BTreeMap<BrokerId, BTreeSet<TopicPartition>>>,
    /// `acks=all` produces waiting, broker-wide (bounded by [`ACK_WAITERS_MAX`]).
    waiting: AtomicUsize,
    /// Woken when an ISR change is queued.
    pub(crate) alter_ready: tokio::sync::Notify,
}

/// `Some(leader epoch)` when this broker leads `p` ([`Replicas::leading_epoch`] of a handle the
/// caller already holds).
pub(crate) fn leading_epoch_of(p: &Partition) -> Option<i32> {
    match &p.role().role {
        Some(Role::Leader { state, .. }) => Some(state.leader_epoch()),
        _ => None,
    }
}

/// Hands decided `acks=all` results to their waiting requests.
fn deliver(slot: &mut RoleSlot, waiting: &AtomicUsize, done: Vec<(u64, Result<(), ProduceError>)>) {
    for (id, r) in done {
        if let Some(tx) = slot.waiters.remove(&id) {
            waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(r);
        }
    }
}

impl Replicas {
    pub fn new(partitions: Arc<Partitions>) -> Self {
        Self {
            partitions,
            inner: Mutex::default(),
            followed: std::sync::Mutex::default(),
            waiting: AtomicUsize::new(0),
            alter_ready: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue_alter(&self, tp: &TopicPartition, topic_id: TopicId, change: IsrChange, expand: bool) {
        let mut g = self.lock();
        if expand {
            g.counters.isr_expands += 1;
        } else {
            g.counters.isr_shrinks += 1;
        }
        g.alter_queue.push(AlterIsr { tp: tp.clone(), topic_id, change });
    }

    /// Runs `f` on `tp`'s role slot (`None` when there is no such partition).
    fn with_slot<T>(&self, tp: &TopicPartition, f: impl FnOnce(&mut RoleSlot) -> T) -> Option<T> {
        let p = self.partitions.get(tp)?;
        let mut slot = p.role();
        Some(f(&mut slot))
    }

    fn with_role<T>(&self, tp: &TopicPartition, f: impl FnOnce(&Role) -> T) -> Option<T> {
        self.with_slot(tp, |s| s.role.as_ref().map(f)).flatten()
    }

    pub fn set_checkpoint(&self, hws: BTreeMap<TopicPartition, i64>) {
        self.lock().checkpoint = hws;
    }

    /// `tp` was deleted here: its checkpointed HW must not seed a new incarnation's.
    pub fn forget_checkpoint(&self, tp: &TopicPartition) {
        self.lock().checkpoint.remove(tp);
    }

    /// The HW of every partition with a role (for the checkpoint file).
    pub fn hw_snapshot(&self) -> BTreeMap<TopicPartition, i64> {
        let mut out = self.lock().checkpoint.clone();
        for p in self.partitions.all() {
            if let Some(r) = &p.role().role {
                out.insert(p.tp.clone(), role_hw(r));
            }
        }
        out
    }

    pub fn counters(&self) -> ReplicaCounters {
        self.lock().counters
    }

    fn count_roles(&self, f: impl Fn(&Role) -> bool) -> usize {
        self.partitions.all().iter().filter(|p| p.role().role.as_ref().is_some_and(&f)).count()
    }

    /// Leader partitions whose ISR is smaller than their replica set.
    pub fn under_replicated(&self) -> usize {
        self.count_roles(|r| matches!(r, Role::Leader { state, .. } if state.isr().len() < state.replicas().len()))
    }

    /// Leader partitions whose ISR is below `min.insync.replicas` (acks=all produces refused).
    pub fn under_min_isr(&self) -> usize {
        use cluster::isr::ProduceError::NotEnoughReplicas;
        self.count_roles(|r| matches!(r, Role::Leader { state, .. } if matches!(state.check_produce(), Err(NotEnoughReplicas))))
    }

    /// Partitions this broker leads.
    pub fn leader_count(&self) -> usize {
        self.count_roles(|r| matches!(r, Role::Leader { .. }))
    }

    /// `Some(hw)` for a partition with a role; `None` when it has none (single-node mode, or not
    /// yet assigned): callers then use the log end.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.with_role(tp, role_hw)
    }

    pub fn has_roles(&self) -> bool {
        self.count_roles(|_| true) > 0
    }

    /// (partition, leader epoch, HW) of every partition this broker leads, in name order: one
    /// pass for an observer that would otherwise look each partition up by name twice.
    pub fn leaders(&self) -> Vec<(TopicPartition, i32, i64)> {
        let mut out = Vec::new();
        for p in self.partitions.all() {
            if let Some(Role::Leader { state, .. }) = &p.role().role {
                out.push((p.tp.clone(), state.leader_epoch(), state.high_watermark()));
            }
        }
        out
    }

    /// `Some(leader epoch)` when this broker leads `tp`.
    pub fn leading_epoch(&self, tp: &TopicPartition) -> Option<i32> {
        self.partitions.get(tp).and_then(|p| leading_epoch_of(&p))
    }

    /// (leader, leader epoch) as this replica knows them.
    pub fn current_leader(&self, tp: &TopicPartition) -> Option<(BrokerId, i32)> {
        self.with_role(tp, |r| match r {
            Role::Leader { state, .. } => (state.leader(), state.leader_epoch()),
            Role::Follower { leader, leader_epoch, .. } => (*leader, *leader_epoch),
        })
    }

    /// A changed `min.insync.replicas` of `tp` (nothing unless this broker leads it).
    pub fn set_min_insync_replicas(&self, tp: &TopicPartition, min_insync_replicas: usize) {
        self.with_slot(tp, |slot| {
            let Some(Role::Leader { state, .. }) = slot.role.as_mut() else { return };
            state.set_min_insync_replicas(min_insync_replicas);
            let done = state.take_completed();
            deliver(slot, &self.waiting, done);
        });
    }

    /// `acks=all` admission before the append (NOT_ENOUGH_REPLICAS).
    pub fn check_produce(&self, tp: &TopicPartition) -> Result<(), ProduceError> {
        if self.waiting.load(Ordering::Relaxed) >= ACK_WAITERS_MAX {
            return Err(ProduceError::TooManyPendingAcks);
        }
        match self.with_role(tp, |r| match r {
            Role::Leader { state, .. } => state.check_produce(),
            _ => Err(ProduceError::NotLeaderOrFollower),
        }) {
            Some(r) => r,
            None => Err(ProduceError::NotLeaderOrFollower),
        }
    }

    /// The leader appended: its LEO is now `leo`. Returns whether the HW advanced.
    pub fn on_leader_append(&self, tp: &TopicPartition, leo: i64) -> bool {
        self.with_slot(tp, |slot| {
            let Some(Role::Leader { state, .. }) = slot.role.as_mut() else { return false };
            let advanced = state.on_leader_append(leo);
            let done = state.take_completed();
            deliver(slot, &self.waiting, done);
            advanced
        })
        .unwrap_or(false)
    }

    /// Registers an appended `acks=all` produce ending at `last_offset`.
    pub fn await_ack(
        &self,
        tp: &TopicPartition,
        last_offset: i64,
    ) -> Result<oneshot::Receiver<Result<(), ProduceError>>, ProduceError> {
        self.register_waiter(tp, |state, id| state.await_ack(id, last_offset))
    }

    /// One waiter on `tp`'s leader state, registered by `register` under a fresh id; answered when
    /// the leader state completes that id (NOT_LEADER_OR_FOLLOWER if this broker stops leading).
    fn register_waiter(
        &self,
        tp: &TopicPartition,
        register: impl FnOnce(&mut LeaderState, u64) -> Result<(), ProduceError>,
    ) -> Result<oneshot::Receiver<Result<(), ProduceError>>, ProduceError> {
        self.with_slot(tp, |slot| {
            let id = slot.next_ack_id;
            slot.next_ack_id += 1;
            let (tx, rx) = oneshot::channel();
            let Some(Role::Leader { state, .. }) = slot.role.as_mut() else {
                return Err(ProduceError::NotLeaderOrFollower);
            };
            register(state, id)?;
            let done = state.take_completed();
            slot.waiters.insert(id, tx);
            self.waiting.fetch_add(1, Ordering::Relaxed);
            deliver(slot, &self.waiting, done);
            Ok(rx)
        })
        .unwrap_or(Err(ProduceError::NotLeaderOrFollower))
    }

    /// A follower's fetch reached the leader: checks its leader epoch and records its LEO and
    /// log start offset (-1: not sent). Returns the HW to answer with and whether it advanced.
    pub fn on_follower_fetch(
        &self,
        tp: &TopicPartition,
        replica: BrokerId,
        fetch_offset: i64,
        log_start_offset: i64,
        now_ms: u64,
    ) -> Result<(i64, bool), FetchError> {
        let r = self.with_slot(tp, |slot| {
            let Some(Role::Leader { state, topic_id }) = slot.role.as_mut() else {
                return Err(FetchError::UnknownReplica(replica));
            };
            let topic_id = *topic_id;
            if state.follower(replica).is_some() {
                state.on_follower_log_start(replica, log_start_offset);
            }
            let FetchOutcome { hw_advanced, propose } =
                state.on_follower_fetch(replica, fetch_offset, now_ms)?;
            let hw = state.high_watermark();
            let done = state.take_completed();
            deliver(slot, &self.waiting, done);
            Ok((hw, hw_advanced, propose.map(|c| (topic_id, c))))
        });
        let (hw, advanced, propose) = r.unwrap_or(Err(FetchError::UnknownReplica(replica)))?;
        if let Some((topic_id, change)) = propose {
            self.queue_alter(tp, topic_id, change, true);
            self.alter_ready.notify_one();
        }
        Ok((hw, advanced))
    }

    /// Registers a DeleteRecords that moved the leader's log start of `tp` to `offset`: the
    /// receiver is answered once every ISR follower reported a log start at least `offset`
    /// (NOT_LEADER_OR_FOLLOWER if this broker stops leading first).
    pub fn await_log_start(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<oneshot::Receiver<Result<(), ProduceError>>, ProduceError> {
        if self.waiting.load(Ordering::Relaxed) >= ACK_WAITERS_MAX {
            return Err(ProduceError::TooManyPendingAcks);
        }
        self.register_waiter(tp, |state, id| state.await_log_start(id, offset))
    }

    /// Leaders whose lagging followers should leave the ISR: queues the proposals.
    pub fn maybe_shrink_all(&self, now_ms: u64) -> usize {
        let mut changes = Vec::new();
        for p in self.partitions.all() {
            if let Some(Role::Leader { state, topic_id }) = p.role().role.as_mut() {
                if let Some(c) = state.maybe_shrink(now_ms) {
                    changes.push((p.tp.clone(), *topic_id, c));
                }
            }
        }
        let n = changes.len();
        for (tp, id, c) in changes {
            self.queue_alter(&tp, id, c, false);
        }
        n
    }

    pub fn take_alters(&self) -> Vec<AlterIsr> {
        std::mem::take(&mut self.lock().alter_queue)
    }

    /// The controller answered an AlterPartition sent at `leader_epoch`. Returns whether the HW
    /// advanced.
    pub fn on_alter_response(
        &self,
        tp: &TopicPartition,
        leader_epoch: i32,
        response: AlterPartitionResponse,
    ) -> bool {
        self.with_slot(tp, |slot| {
            let Some(Role::Leader { state, .. }) = slot.role.as_mut() else { return false };
            if state.leader_epoch() != leader_epoch {
                return false;
            }
            let advanced = state.on_alter_partition_response(response);
            let done = state.take_completed();
            deliver(slot, &self.waiting, done);
            advanced
        })
        .unwrap_or(false)
    }

    /// Gives `tp` (whose role lock `slot` is) the role `role`, keeping the followed index.
    fn set_role(&self, tp: &TopicPartition, slot: &mut RoleSlot, role: Option<Role>) {
        let leader_of = |r: &Option<Role>| match r {
            Some(Role::Follower { leader, .. }) => Some(*leader),
            _ => None,
        };
        let (old, new) = (leader_of(&slot.role), leader_of(&role));
        slot.role = role;
        if old == new {
            return;
        }
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = old {
            if let Some(set) = followed.get_mut(&l) {
                set.remove(tp);
                if set.is_empty() {
                    followed.remove(&l);
                }
            }
        }
        if let Some(l) = new {
            followed.entry(l).or_default().insert(tp.clone());
        }
    }

    /// Ends a leadership in `slot` (if any): its waiting produces fail.
    fn resign(&self, slot: &mut RoleSlot) {
        if let Some(Role::Leader { mut state, .. }) = slot.role.take() {
            let done = state.resign();
            deliver(slot, &self.waiting, done);
        }
    }

    /// Metadata names `me` leader of `p`. A new leadership (or a new leader epoch) starts a
    /// [`LeaderState`] at the log's `leo` with this replica's HW; the same leadership takes the
    /// new ISR / partition epoch. `ineligible`: replicas metadata calls fenced (KIP-841).
    /// Called with `p`'s data lock held (roles change under it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn become_leader(
        &self,
        p: &Partition,
        topic_id: TopicId,
        ps: &PartitionState,
        me: BrokerId,
        leo: i64,
        config: IsrConfig,
        ineligible: BTreeSet<BrokerId>,
        now_ms: u64,
    ) -> bool {
        assert_eq!(ps.leader, me, "become_leader for a partition led by {}", ps.leader);
        let tp = &p.tp;
        let checkpointed = self.lock().checkpoint.get(tp).copied();
        let mut slot = p.role();
        let prior_hw = slot.role.as_ref().map(role_hw).or(checkpointed).unwrap_or(0);
        if let Some(Role::Leader { state, .. }) = slot.role.as_mut() {
            if state.leader_epoch() == ps.leader_epoch {
                state.set_ineligible_replicas(ineligible);
                let advanced = state.on_metadata_isr(ps.isr.clone(), ps.partition_epoch);
                let done = state.take_completed();
                deliver(&mut slot, &self.waiting, done);
                return advanced;
            }
        }
        self.resign(&mut slot);
        let mut isr = ps.isr.clone();
        if !isr.contains(&me) {
            // Metadata elected us outside the ISR (an unclean election): the ISR is us.
            isr = vec![me];
        }
        let start = LeaderStart {
            leader: me,
            leader_epoch: ps.leader_epoch,
            partition_epoch: ps.partition_epoch,
            replicas: ps.replicas.clone(),
            isr,
            leo,
            hw: prior_hw.clamp(0, leo),
        };
        let mut state = LeaderState::new(config, start, now_ms);
        state.set_ineligible_replicas(ineligible);
        tracing::info!(partition = %tp, leader_epoch = ps.leader_epoch, isr = ?ps.isr, leo, hw = state.high_watermark(), "became leader");
        self.set_role(tp, &mut slot, Some(Role::Leader { topic_id, state }));
        drop(slot);
        self.lock().counters.leaderships_started += 1;
        true
    }

    /// Metadata names `leader` (at `leader_epoch`) for a partition `me` follows. Returns whether
    /// anything changed (a new leader or epoch: the fetcher truncates by epoch first). Called
    /// with `p`'s data lock held.
    pub(crate) fn become_follower(
        &self,
        p: &Partition,
        topic_id: TopicId,
        leader: BrokerId,
        leader_epoch: i32,
        leo: i64,
    ) -> bool {
        let tp = &p.tp;
        let checkpointed = self.lock().checkpoint.get(tp).copied();
        let mut slot = p.role();
        if let Some(Role::Follower { leader: l, leader_epoch: e, .. }) = &slot.role {
            if *l == leader && *e == leader_epoch {
                return false;
            }
        }
        let prior_hw = slot.role.as_ref().map(role_hw).or(checkpointed).unwrap_or(0);
        self.resign(&mut slot);
        tracing::info!(partition = %tp, leader, leader_epoch, "became follower");
        let hw = prior_hw.clamp(0, leo);
        let role = Role::Follower { topic_id, leader, leader_epoch, hw, truncated: false };
        self.set_role(tp, &mut slot, Some(role));
        true
    }

    /// This broker no longer replicates `tp`.
    pub fn stop(&self, tp: &TopicPartition) {
        if let Some(p) = self.partitions.get(tp) {
            self.stop_partition(&p);
        }
    }

    /// This broker no longer replicates partition `p` of topic `topic_id`: nothing happens if
    /// `p` already has a role for another incarnation (the topic was created again).
    pub(crate) fn stop_partition_of(&self, p: &Partition, topic_id: TopicId) {
        let mut slot = p.role();
        let other = match &slot.role {
            Some(Role::Leader { topic_id: t, .. } | Role::Follower { topic_id: t, .. }) => {
                *t != topic_id
            }
            None => false,
        };
        if !other {
            self.resign(&mut slot);
            self.set_role(&p.tp, &mut slot, None);
        }
    }

    /// This broker no longer replicates `p` (also for a partition already out of the map).
    pub(crate) fn stop_partition(&self, p: &Partition) {
        let mut slot = p.role();
        self.resign(&mut slot);
        self.set_role(&p.tp, &mut slot, None);
    }

    /// Every partition: fail waiting produces (shutdown).
    pub fn stop_all(&self) {
        for p in self.partitions.all() {
            self.stop_partition(&p);
        }
    }

    /// Partitions followed from `leader`, in order (of those in the followed index, the ones
    /// still in the map and still following `leader`).
    pub fn followed_from(&self, leader: BrokerId) -> Vec<Followed> {
        let tps: Vec<TopicPartition> = {
            let followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
            followed.get(&leader).map(|s| s.iter().cloned().collect()).unwrap_or_default()
        };
        let mut out = Vec::with_capacity(tps.len());
        for p in tps.iter().filter_map(|tp| self.partitions.get(tp)) {
            if let Some(Role::Follower { leader: l, leader_epoch, truncated, .. }) = &p.role().role
            {
                if *l == leader {
                    out.push(Followed {
                        tp: p.tp.clone(),
                        leader_epoch: *leader_epoch,
                        truncated: *truncated,
                    });
                }
            }
        }
        out
    }

    /// Checks the followed index against the roles (the simulator does, each tick): for every
    /// leader, [`Replicas::followed_from`] must list exactly the partitions in the map a scan of
    /// every role finds following it, in order. Returns how many partitions the scan examined
    /// and every disagreement.
    pub fn check_followed_index(&self) -> (u64, Vec<String>) {
        let all = self.partitions.all();
        let mut scan: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
        for p in &all {
            if let Some(Role::Follower { leader, .. }) = &p.role().role {
                scan.entry(*leader).or_default().push(p.tp.clone());
            }
        }
        let mut leaders: BTreeSet<BrokerId> = scan.keys().copied().collect();
        leaders.extend(self.followed.lock().unwrap_or_else(|p| p.into_inner()).keys());
        let mut violations = Vec::new();
        for l in leaders {
            let got: Vec<TopicPartition> =
                self.followed_from(l).into_iter().map(|f| f.tp).collect();
            let want = scan.remove(&l).unwrap_or_default();
            if got != want {
                violations.push(format!("followed from {l}: index {got:?}, roles {want:?}"));
            }
        }
        (all.len() as u64, violations)
    }

    /// Leaders this broker follows someone of.
    pub fn followed_leaders(&self) -> BTreeSet<BrokerId> {
        let mut out = BTreeSet::new();
        for p in self.partitions.all() {
            if let Some(Role::Follower { leader, .. }) = &p.role().role {
                out.insert(*leader);
            }
        }
        out
    }

    /// Whether `tp` is still followed from `leader` at `leader_epoch` (checked, under the
    /// partition's data lock, before a fetched batch is appended).
    pub fn still_following(
        &self,
        tp: &TopicPartition,
        leader: BrokerId,
        leader_epoch: i32,
    ) -> bool {
        self.with_role(tp, |r| matches!(r, Role::Follower { leader: l, leader_epoch: e, .. } if *l == leader && *e == leader_epoch)).unwrap_or(false)
    }

    /// Runs `f` on `tp`'s follower state if it follows at `leader_epoch`.
    fn with_follower(
        &self,
        tp: &TopicPartition,
        leader_epoch: i32,
        f: impl FnOnce(&mut bool, &mut i64),
    ) {
        self.with_slot(tp, |slot| {
            if let Some(Role::Follower { leader_epoch: e, truncated, hw, .. }) = slot.role.as_mut()
            {
                if *e == leader_epoch {
                    f(truncated, hw);
                }
            }
        });
    }

    /// The follower truncated by epoch; its HW is capped at the new log end.
    pub fn mark_truncated(&self, tp: &TopicPartition, leader_epoch: i32, leo: i64) {
        self.with_follower(tp, leader_epoch, |truncated, hw| {
            *truncated = true;
            *hw = (*hw).min(leo);
        });
    }

    /// The follower must truncate by epoch again (e.g. the leader said its fetch offset is out of
    /// range).
    pub fn mark_untruncated(&self, tp: &TopicPartition, leader_epoch: i32) {
        self.with_follower(tp, leader_epoch, |truncated, _| *truncated = false);
    }

    /// A follower fetch answered: the leader's HW was `leader_hw`, the local log ends at `leo`.
    /// The follower's HW never goes back (a new leader's HW may lag the old one's for a moment;
    /// what the old one called committed stays committed), but never passes the local log end.
    pub fn update_follower_hw(
        &self,
        tp: &TopicPartition,
        leader_epoch: i32,
        leader_hw: i64,
        leo: i64,
    ) {
        self.with_follower(tp, leader_epoch, |_, hw| *hw = (*hw).max(leader_hw).min(leo));
    }
}

fn role_hw(r: &Role) -> i64 {
    match r {
        Role::Leader { state, .. } => state.high_watermark(),
        Role::Follower { hw, .. } => *hw,
    }
}
