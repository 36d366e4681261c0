//! Each partition's replication role on this broker, and the `acks=all` waiters.
//!
//! A partition this broker replicates is either a **leader** (a [`LeaderState`] from the `cluster`
//! crate: follower LEOs, the ISR, the high watermark, pending `acks=all` produces) or a
//! **follower** (which leader, at which leader epoch, whether it has truncated by epoch since it
//! started following, and its own HW). Partitions without a role are not served (single-node mode
//! never has roles: [`Replicas::high_watermark`] is `None` and callers use the log end).
//!
//! No IO and no `.await` here: one std mutex, held for a few map operations. Lock order: the
//! broker's state lock (logs) first, then this one; role changes are made with the broker's state
//! lock held, so a path holding it (an append, a follower's append, a fetch) sees a stable role.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use cluster::isr::{
    AlterPartitionResponse, FetchError, FetchOutcome, IsrChange, IsrConfig, LeaderStart,
    LeaderState, ProduceError,
};
use cluster::metadata::{BrokerId, PartitionState, TopicId};
use tokio::sync::oneshot;

use crate::log::TopicPartition;

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
    parts: BTreeMap<TopicPartition, Role>,
    waiters: BTreeMap<u64, oneshot::Sender<Result<(), ProduceError>>>,
    next_ack_id: u64,
    /// HWs read from `replication-offset-checkpoint` at start: where a partition's HW starts when
    /// it first gets a role (capped at the log end).
    checkpoint: BTreeMap<TopicPartition, i64>,
    /// ISR changes the leader wants sent, drained by the replica manager.
    alter_queue: Vec<AlterIsr>,
    counters: ReplicaCounters,
}

#[derive(Debug, Default)]
pub struct Replicas {
    inner: Mutex<Inner>,
    /// Woken when an ISR change is queued.
    pub(crate) alter_ready: tokio::sync::Notify,
}

impl Inner {
    /// Hands decided `acks=all` results to their waiting requests.
    fn deliver(&mut self, done: Vec<(u64, Result<(), ProduceError>)>) {
        for (id, r) in done {
            if let Some(tx) = self.waiters.remove(&id) {
                let _ = tx.send(r);
            }
        }
    }

    fn queue_alter(
        &mut self,
        tp: &TopicPartition,
        topic_id: TopicId,
        change: IsrChange,
        expand: bool,
    ) {
        if expand {
            self.counters.isr_expands += 1;
        } else {
            self.counters.isr_shrinks += 1;
        }
        self.alter_queue.push(AlterIsr { tp: tp.clone(), topic_id, change });
    }
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_checkpoint(&self, hws: BTreeMap<TopicPartition, i64>) {
        self.lock().checkpoint = hws;
    }

    /// The HW of every partition with a role (for the checkpoint file).
    pub fn hw_snapshot(&self) -> BTreeMap<TopicPartition, i64> {
        let g = self.lock();
        let mut out = g.checkpoint.clone();
        for (tp, r) in &g.parts {
            out.insert(tp.clone(), role_hw(r));
        }
        out
    }

    pub fn counters(&self) -> ReplicaCounters {
        self.lock().counters
    }

    /// Leader partitions whose ISR is smaller than their replica set.
    pub fn under_replicated(&self) -> usize {
        self.lock()
            .parts
            .values()
            .filter(|r| matches!(r, Role::Leader { state, .. } if state.isr().len() < state.replicas().len()))
            .count()
    }

    /// Partitions this broker leads.
    pub fn leader_count(&self) -> usize {
        self.lock().parts.values().filter(|r| matches!(r, Role::Leader { .. })).count()
    }

    /// `Some(hw)` for a partition with a role; `None` when it has none (single-node mode, or not
    /// yet assigned): callers then use the log end.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.lock().parts.get(tp).map(role_hw)
    }

    pub fn has_roles(&self) -> bool {
        !self.lock().parts.is_empty()
    }

    /// `Some(leader epoch)` when this broker leads `tp`.
    pub fn leading_epoch(&self, tp: &TopicPartition) -> Option<i32> {
        match self.lock().parts.get(tp) {
            Some(Role::Leader { state, .. }) => Some(state.leader_epoch()),
            _ => None,
        }
    }

    /// (leader, leader epoch) as this replica knows them.
    pub fn current_leader(&self, tp: &TopicPartition) -> Option<(BrokerId, i32)> {
        match self.lock().parts.get(tp)? {
            Role::Leader { state, .. } => Some((state.leader(), state.leader_epoch())),
            Role::Follower { leader, leader_epoch, .. } => Some((*leader, *leader_epoch)),
        }
    }

    /// `acks=all` admission before the append (NOT_ENOUGH_REPLICAS).
    pub fn check_produce(&self, tp: &TopicPartition) -> Result<(), ProduceError> {
        let g = self.lock();
        if g.waiters.len() >= ACK_WAITERS_MAX {
            return Err(ProduceError::TooManyPendingAcks);
        }
        match g.parts.get(tp) {
            Some(Role::Leader { state, .. }) => state.check_produce(),
            _ => Err(ProduceError::NotLeaderOrFollower),
        }
    }

    /// The leader appended: its LEO is now `leo`. Returns whether the HW advanced.
    pub fn on_leader_append(&self, tp: &TopicPartition, leo: i64) -> bool {
        let mut g = self.lock();
        let Some(Role::Leader { state, .. }) = g.parts.get_mut(tp) else { return false };
        let advanced = state.on_leader_append(leo);
        let done = state.take_completed();
        g.deliver(done);
        advanced
    }

    /// Registers an appended `acks=all` produce ending at `last_offset`.
    pub fn await_ack(
        &self,
        tp: &TopicPartition,
        last_offset: i64,
    ) -> Result<oneshot::Receiver<Result<(), ProduceError>>, ProduceError> {
        let mut g = self.lock();
        let id = g.next_ack_id;
        g.next_ack_id += 1;
        let (tx, rx) = oneshot::channel();
        let Some(Role::Leader { state, .. }) = g.parts.get_mut(tp) else {
            return Err(ProduceError::NotLeaderOrFollower);
        };
        state.await_ack(id, last_offset)?;
        let done = state.take_completed();
        g.waiters.insert(id, tx);
        g.deliver(done);
        Ok(rx)
    }

    /// A follower's fetch reached the leader: checks its leader epoch and records its LEO.
    /// Returns the HW to answer with and whether it advanced.
    pub fn on_follower_fetch(
        &self,
        tp: &TopicPartition,
        replica: BrokerId,
        fetch_offset: i64,
        now_ms: u64,
    ) -> Result<(i64, bool), FetchError> {
        let mut g = self.lock();
        let Some(Role::Leader { state, topic_id }) = g.parts.get_mut(tp) else {
            return Err(FetchError::UnknownReplica(replica));
        };
        let topic_id = *topic_id;
        let FetchOutcome { hw_advanced, propose } =
            state.on_follower_fetch(replica, fetch_offset, now_ms)?;
        let hw = state.high_watermark();
        let done = state.take_completed();
        g.deliver(done);
        if let Some(change) = propose {
            g.queue_alter(tp, topic_id, change, true);
            drop(g);
            self.alter_ready.notify_one();
        }
        Ok((hw, hw_advanced))
    }

    /// Leaders whose lagging followers should leave the ISR: queues the proposals.
    pub fn maybe_shrink_all(&self, now_ms: u64) -> usize {
        let mut g = self.lock();
        let mut changes = Vec::new();
        for (tp, r) in g.parts.iter_mut() {
            if let Role::Leader { state, topic_id } = r {
                if let Some(c) = state.maybe_shrink(now_ms) {
                    changes.push((tp.clone(), *topic_id, c));
                }
            }
        }
        let n = changes.len();
        for (tp, id, c) in changes {
            g.queue_alter(&tp, id, c, false);
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
        let mut g = self.lock();
        let Some(Role::Leader { state, .. }) = g.parts.get_mut(tp) else { return false };
        if state.leader_epoch() != leader_epoch {
            return false;
        }
        let advanced = state.on_alter_partition_response(response);
        let done = state.take_completed();
        g.deliver(done);
        advanced
    }

    /// Metadata names `me` leader of `tp`. A new leadership (or a new leader epoch) starts a
    /// [`LeaderState`] at the log's `leo` with this replica's HW; the same leadership takes the
    /// new ISR / partition epoch. `ineligible`: replicas metadata calls fenced (KIP-841).
    #[allow(clippy::too_many_arguments)]
    pub fn become_leader(
        &self,
        tp: &TopicPartition,
        topic_id: TopicId,
        p: &PartitionState,
        me: BrokerId,
        leo: i64,
        config: IsrConfig,
        ineligible: BTreeSet<BrokerId>,
        now_ms: u64,
    ) -> bool {
        assert_eq!(p.leader, me, "become_leader for a partition led by {}", p.leader);
        let mut g = self.lock();
        let prior_hw =
            g.parts.get(tp).map(role_hw).or_else(|| g.checkpoint.get(tp).copied()).unwrap_or(0);
        if let Some(Role::Leader { state, .. }) = g.parts.get_mut(tp) {
            if state.leader_epoch() == p.leader_epoch {
                state.set_ineligible_replicas(ineligible);
                let advanced = state.on_metadata_isr(p.isr.clone(), p.partition_epoch);
                let done = state.take_completed();
                g.deliver(done);
                return advanced;
            }
        }
        if let Some(Role::Leader { mut state, .. }) = g.parts.remove(tp) {
            let done = state.resign();
            g.deliver(done);
        }
        let mut isr = p.isr.clone();
        if !isr.contains(&me) {
            // Metadata elected us outside the ISR (an unclean election): the ISR is us.
            isr = vec![me];
        }
        let start = LeaderStart {
            leader: me,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr,
            leo,
            hw: prior_hw.clamp(0, leo),
        };
        let mut state = LeaderState::new(config, start, now_ms);
        state.set_ineligible_replicas(ineligible);
        g.counters.leaderships_started += 1;
        tracing::info!(partition = %tp, leader_epoch = p.leader_epoch, isr = ?p.isr, leo, hw = state.high_watermark(), "became leader");
        g.parts.insert(tp.clone(), Role::Leader { topic_id, state });
        true
    }

    /// Metadata names `leader` (at `leader_epoch`) for a partition `me` follows. Returns whether
    /// anything changed (a new leader or epoch: the fetcher truncates by epoch first).
    pub fn become_follower(
        &self,
        tp: &TopicPartition,
        topic_id: TopicId,
        leader: BrokerId,
        leader_epoch: i32,
        leo: i64,
    ) -> bool {
        let mut g = self.lock();
        if let Some(Role::Follower { leader: l, leader_epoch: e, .. }) = g.parts.get(tp) {
            if *l == leader && *e == leader_epoch {
                return false;
            }
        }
        let prior_hw =
            g.parts.get(tp).map(role_hw).or_else(|| g.checkpoint.get(tp).copied()).unwrap_or(0);
        if let Some(Role::Leader { mut state, .. }) = g.parts.remove(tp) {
            let done = state.resign();
            g.deliver(done);
        }
        tracing::info!(partition = %tp, leader, leader_epoch, "became follower");
        g.parts.insert(
            tp.clone(),
            Role::Follower {
                topic_id,
                leader,
                leader_epoch,
                hw: prior_hw.clamp(0, leo),
                truncated: false,
            },
        );
        true
    }

    /// This broker no longer replicates `tp`.
    pub fn stop(&self, tp: &TopicPartition) {
        let mut g = self.lock();
        if let Some(Role::Leader { mut state, .. }) = g.parts.remove(tp) {
            let done = state.resign();
            g.deliver(done);
        }
    }

    /// Every partition: fail waiting produces (shutdown).
    pub fn stop_all(&self) {
        let tps: Vec<TopicPartition> = self.lock().parts.keys().cloned().collect();
        for tp in tps {
            self.stop(&tp);
        }
    }

    /// Partitions followed from `leader`, in order.
    pub fn followed_from(&self, leader: BrokerId) -> Vec<Followed> {
        self.lock()
            .parts
            .iter()
            .filter_map(|(tp, r)| match r {
                Role::Follower { leader: l, leader_epoch, truncated, .. } if *l == leader => {
                    Some(Followed {
                        tp: tp.clone(),
                        leader_epoch: *leader_epoch,
                        truncated: *truncated,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Leaders this broker follows someone of.
    pub fn followed_leaders(&self) -> BTreeSet<BrokerId> {
        self.lock()
            .parts
            .values()
            .filter_map(|r| match r {
                Role::Follower { leader, .. } => Some(*leader),
                _ => None,
            })
            .collect()
    }

    /// Whether `tp` is still followed from `leader` at `leader_epoch` (checked, under the broker's
    /// state lock, before a fetched batch is appended).
    pub fn still_following(
        &self,
        tp: &TopicPartition,
        leader: BrokerId,
        leader_epoch: i32,
    ) -> bool {
        matches!(self.lock().parts.get(tp), Some(Role::Follower { leader: l, leader_epoch: e, .. }) if *l == leader && *e == leader_epoch)
    }

    /// The follower truncated by epoch; its HW is capped at the new log end.
    pub fn mark_truncated(&self, tp: &TopicPartition, leader_epoch: i32, leo: i64) {
        if let Some(Role::Follower { leader_epoch: e, truncated, hw, .. }) =
            self.lock().parts.get_mut(tp)
        {
            if *e == leader_epoch {
                *truncated = true;
                *hw = (*hw).min(leo);
            }
        }
    }

    /// The follower must truncate by epoch again (e.g. the leader said its fetch offset is out of
    /// range).
    pub fn mark_untruncated(&self, tp: &TopicPartition, leader_epoch: i32) {
        if let Some(Role::Follower { leader_epoch: e, truncated, .. }) =
            self.lock().parts.get_mut(tp)
        {
            if *e == leader_epoch {
                *truncated = false;
            }
        }
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
        if let Some(Role::Follower { leader_epoch: e, hw, .. }) = self.lock().parts.get_mut(tp) {
            if *e == leader_epoch {
                *hw = (*hw).max(leader_hw).min(leo);
            }
        }
    }
}

fn role_hw(r: &Role) -> i64 {
    match r {
        Role::Leader { state, .. } => state.high_watermark(),
        Role::Follower { hw, .. } => *hw,
    }
}
