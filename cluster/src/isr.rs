//! A partition leader's replication rules and a follower's truncation rule, without IO.
//!
//! Leader side ([`LeaderState`]): followers pull with Fetch; each fetch tells the leader the
//! follower's log end offset (LEO). From those the leader keeps
//! - the **ISR**: a follower joins (the leader proposes an AlterPartition, KIP-497) once its LEO is
//!   at least the high watermark and at least the start offset of the current leader epoch (so it
//!   holds everything this leader may have committed) and metadata does not call it fenced or
//!   shutting down (KIP-841); it leaves once it has not been caught up
//!   for `replica.lag.time.max.ms`;
//! - the **high watermark** (HW): the minimum LEO over the *maximal* ISR — the committed ISR plus a
//!   member whose addition is in flight. A removal counts only once the controller committed it,
//!   an addition counts at once, so the HW never depends on a replica the controller may not
//!   consider in sync. The HW never decreases (unless the museum switch
//!   [`IsrConfig::unsafe_hw_may_fall`] is on).
//!   The HW stands still while the maximal ISR is below `min.insync.replicas` (KIP-966: the
//!   replicas that left are the controller's eligible leaders and must hold all that is committed).
//! - `acks=all`: a produce whose last offset is `o` completes when HW > o; it fails
//!   NOT_ENOUGH_REPLICAS before the append when the ISR is smaller than `min.insync.replicas`, and
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below it before completion.
//!
//! Invariants (asserted or property-tested): HW ≤ the LEO of every member of the maximal ISR;
//! HW ≤ leader LEO; HW never decreases; at most one ISR change is in flight; the leader is always
//! in the ISR; an acknowledged `acks=all` produce is held by every maximal-ISR member.
//!
//! Follower side ([`truncation_step`]): after a leader change the follower asks the leader where
//! its latest epoch ends (OffsetForLeaderEpoch) and truncates there (KIP-101), iterating when the
//! leader answers with an epoch the follower does not have (KIP-279). It never truncates to its
//! HW: that could drop records a later leader committed.
//!
//! Limits: pending `acks=all` produces per partition (`pending_acks_max`), epoch cache entries
//! (`EPOCH_ENTRIES_MAX`). Offsets are `i64` as on the wire, replica ids `i32`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub type ReplicaId = i32;

/// The leader-epoch cache: one definition, in `kafka-types`.
pub use kafka_types::epoch::ENTRIES_MAX as EPOCH_ENTRIES_MAX;
pub use kafka_types::{EpochCache, EpochEntry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrConfig {
    /// `replica.lag.time.max.ms`: a follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` for `acks=all`.
    pub min_insync_replicas: usize,
    /// Produces waiting for the HW at most; beyond it a produce is refused (back-pressure).
    pub pending_acks_max: usize,
    /// The museum switch `loglab.unsafe.zombie.fencing.disable` (broker `safeguards`): the HW is
    /// the minimum LEO the maximal ISR reports *now*, so it falls when a member reports less than
    /// before (a replica back from an unclean restart, still in this leader's stale ISR). Off:
    /// the HW never decreases.
    #[serde(default)]
    pub unsafe_hw_may_fall: bool,
}

impl Default for IsrConfig {
    fn default() -> Self {
        Self {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            pending_acks_max: 10_000,
            unsafe_hw_may_fall: false,
        }
    }
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// `None` until the follower fetched from this leader (Kafka resets it on a leader change, so
    /// a new leader's HW waits for every ISR member to report).
    pub leo: Option<i64>,
    pub last_fetch_ms: u64,
    /// The leader's LEO at the follower's previous fetch (Kafka's `lastFetchLeaderLogEndOffset`).
    pub leader_leo_at_last_fetch: i64,
    /// Last time the follower had everything the leader had (at that fetch or at the previous one).
    pub last_caught_up_ms: u64,
    /// The follower's log start offset as its last fetch reported it (`None`: not reported).
    pub log_start: Option<i64>,
}

/// An AlterPartition request the leader wants sent to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    pub leader: ReplicaId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<ReplicaId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    None,
    Expand { replica: ReplicaId, proposal: IsrChange },
    Shrink { removed: BTreeSet<ReplicaId>, proposal: IsrChange },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    #[error("NOT_ENOUGH_REPLICAS: the ISR is smaller than min.insync.replicas")]
    NotEnoughReplicas,
    #[error("NOT_ENOUGH_REPLICAS_AFTER_APPEND: the ISR shrank below min.insync.replicas")]
    NotEnoughReplicasAfterAppend,
    #[error("NOT_LEADER_OR_FOLLOWER: this replica stopped leading the partition")]
    NotLeaderOrFollower,
    #[error("too many produces waiting for acknowledgement")]
    TooManyPendingAcks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("replica {0} is not a follower of this partition")]
    UnknownReplica(ReplicaId),
    #[error("fetch offset {fetch_offset} is beyond the leader's log end offset {leader_leo}")]
    OffsetOutOfRange { fetch_offset: i64, leader_leo: i64 },
}

/// What a follower fetch changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchOutcome {
    pub hw_advanced: bool,
    /// An ISR expansion to send to the controller.
    pub propose: Option<IsrChange>,
}

/// The controller's answer to an AlterPartition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterPartitionResponse {
    /// The change (or whatever the controller committed instead) with its partition epoch.
    Committed { isr: Vec<ReplicaId>, partition_epoch: i32 },
    /// Rejected (stale epochs, ineligible replica...): the leader drops the proposal and waits for
    /// metadata to tell it the current state.
    Rejected,
}

/// A produce waiting for `acks=all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingAck {
    id: u64,
    last_offset: i64,
}

/// A DeleteRecords waiting for the ISR's log start offsets to reach `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingTrim {
    id: u64,
    offset: i64,
}

/// What a replica knows when it becomes a partition's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    pub leader: ReplicaId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<ReplicaId>,
    /// The controller's ISR; must contain `leader`.
    pub isr: Vec<ReplicaId>,
    /// The local log's end offset and high watermark.
    pub leo: i64,
    pub hw: i64,
}

/// A partition leader's replication state.
#[derive(Debug, Clone)]
pub struct LeaderState {
    config: IsrConfig,
    leader: ReplicaId,
    leader_epoch: i32,
    /// LEO at the moment this replica became leader: the start offset of its epoch.
    epoch_start_offset: i64,
    partition_epoch: i32,
    replicas: Vec<ReplicaId>,
    isr: BTreeSet<ReplicaId>,
    pending: Pending,
    followers: BTreeMap<ReplicaId, FollowerState>,
    leader_leo: i64,
    hw: i64,
    acks: Vec<PendingAck>,
    /// DeleteRecords waiting for the followers' log starts (results join `completed`).
    trims: Vec<PendingTrim>,
    /// Followers metadata says may not join (fenced or shutting down, KIP-841): proposing them
    /// would only be rejected, again at every fetch.
    ineligible: BTreeSet<ReplicaId>,
    completed: Vec<(u64, Result<(), ProduceError>)>,
}

impl LeaderState {
    /// Becomes leader as `start` says, at `now_ms`.
    pub fn new(config: IsrConfig, start: LeaderStart, now_ms: u64) -> Self {
        let LeaderStart { leader, leader_epoch, partition_epoch, replicas, isr, leo, hw } = start;
        assert!(replicas.contains(&leader), "leader {leader} not among replicas {replicas:?}");
        assert!(isr.contains(&leader), "leader {leader} not in ISR {isr:?}");
        assert!(0 <= hw && hw <= leo, "hw {hw} outside [0, leo {leo}]");
        let followers = replicas
            .iter()
            .filter(|&&r| r != leader)
            .map(|&r| {
                // A follower in the ISR counts as caught up now, so it is not dropped before it
                // had a chance to fetch from the new leader (Kafka does the same).
                let caught_up = if isr.contains(&r) { now_ms } else { 0 };
                (
                    r,
                    FollowerState {
                        leo: None,
                        last_fetch_ms: 0,
                        leader_leo_at_last_fetch: 0,
                        last_caught_up_ms: caught_up,
                        log_start: None,
                    },
                )
            })
            .collect();
        let mut s = Self {
            config,
            leader,
            leader_epoch,
            epoch_start_offset: leo,
            partition_epoch,
            replicas,
            isr: isr.into_iter().collect(),
            pending: Pending::None,
            followers,
            leader_leo: leo,
            hw,
            acks: Vec::new(),
            trims: Vec::new(),
            ineligible: BTreeSet::new(),
            completed: Vec::new(),
        };
        s.update_hw();
        s
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw
    }
    pub fn leader_leo(&self) -> i64 {
        self.leader_leo
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    pub fn leader(&self) -> ReplicaId {
        self.leader
    }
    pub fn replicas(&self) -> &[ReplicaId] {
        &self.replicas
    }
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }
    /// The ISR the controller committed.
    pub fn isr(&self) -> Vec<ReplicaId> {
        self.isr.iter().copied().collect()
    }
    /// The ISR used for the HW and `acks=all`: committed plus an addition in flight.
    pub fn maximal_isr(&self) -> BTreeSet<ReplicaId> {
        self.maximal_isr_members().collect()
    }
    /// [`maximal_isr`](Self::maximal_isr)'s members without building the set (the HW and the
    /// acks read it at every follower fetch and every produce): the committed ISR, then a
    /// replica being added, if it is not already in.
    fn maximal_isr_members(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        let adding = match &self.pending {
            Pending::Expand { replica, .. } if !self.isr.contains(replica) => Some(*replica),
            _ => None,
        };
        self.isr.iter().copied().chain(adding)
    }
    fn maximal_isr_len(&self) -> usize {
        self.maximal_isr_members().count()
    }
    /// Metadata changed which brokers are fenced or shutting down (KIP-841).
    pub fn set_ineligible_replicas(&mut self, replicas: BTreeSet<ReplicaId>) {
        self.ineligible = replicas;
    }

    pub fn follower(&self, replica: ReplicaId) -> Option<&FollowerState> {
        self.followers.get(&replica)
    }
    /// The AlterPartition in flight, if any.
    pub fn in_flight(&self) -> Option<&IsrChange> {
        match &self.pending {
            Pending::None => None,
            Pending::Expand { proposal, .. } | Pending::Shrink { proposal, .. } => Some(proposal),
        }
    }

    /// The leader appended records: its LEO is now `leo`.
    pub fn on_leader_append(&mut self, leo: i64) -> bool {
        assert!(leo >= self.leader_leo, "leader LEO went back from {} to {leo}", self.leader_leo);
        self.leader_leo = leo;
        self.update_hw()
    }

    /// A changed `min.insync.replicas` (a topic config altered while leading): acks waiting
    /// are judged again at once. Returns whether the HW advanced.
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) -> bool {
        self.config.min_insync_replicas = min_insync_replicas.max(1);
        self.update_hw()
    }

    /// Checks `acks=all` before the append (NOT_ENOUGH_REPLICAS).
    pub fn check_produce(&self) -> Result<(), ProduceError> {
        if self.isr.len() < self.config.min_insync_replicas {
            return Err(ProduceError::NotEnoughReplicas);
        }
        if self.acks.len() >= self.config.pending_acks_max {
            return Err(ProduceError::TooManyPendingAcks);
        }
        Ok(())
    }

    /// Registers an appended `acks=all` produce ending at `last_offset`; its result appears in
    /// [`take_completed`](Self::take_completed) (possibly at once).
    pub fn await_ack(&mut self, id: u64, last_offset: i64) -> Result<(), ProduceError> {
        assert!(
            last_offset < self.leader_leo,
            "produce ends at {last_offset} beyond LEO {}",
            self.leader_leo
        );
        if self.acks.len() >= self.config.pending_acks_max {
            return Err(ProduceError::TooManyPendingAcks);
        }
        self.acks.push(PendingAck { id, last_offset });
        self.complete_acks();
        Ok(())
    }

    /// Results of `acks=all` produces decided since the last call, in decision order.
    pub fn take_completed(&mut self) -> Vec<(u64, Result<(), ProduceError>)> {
        std::mem::take(&mut self.completed)
    }

    /// This replica stops leading: every waiting produce (and DeleteRecords) fails.
    pub fn resign(&mut self) -> Vec<(u64, Result<(), ProduceError>)> {
        for a in self.acks.drain(..) {
            self.completed.push((a.id, Err(ProduceError::NotLeaderOrFollower)));
        }
        for t in self.trims.drain(..) {
            self.completed.push((t.id, Err(ProduceError::NotLeaderOrFollower)));
        }
        self.take_completed()
    }

    /// The low watermark (Kafka's `lowWatermarkIfLeader`): the smallest log start offset the
    /// maximal ISR's followers reported, `leader_log_start` when the leader is alone; `None`
    /// while a member has not reported since this leader started.
    pub fn low_watermark(&self, leader_log_start: i64) -> Option<i64> {
        let mut low = leader_log_start;
        for r in self.maximal_isr_members() {
            if r != self.leader {
                low = low.min(self.followers.get(&r).and_then(|f| f.log_start)?);
            }
        }
        Some(low)
    }

    /// Registers a DeleteRecords that moved the leader's log start to `offset`: it completes
    /// (in [`take_completed`](Self::take_completed), under `id`) once every maximal-ISR
    /// follower reports a log start at least `offset` — possibly at once.
    pub fn await_log_start(&mut self, id: u64, offset: i64) -> Result<(), ProduceError> {
        if self.acks.len() + self.trims.len() >= self.config.pending_acks_max {
            return Err(ProduceError::TooManyPendingAcks);
        }
        self.trims.push(PendingTrim { id, offset });
        self.complete_trims();
        Ok(())
    }

    /// A follower's fetch reported its log start offset (-1: unknown, ignored).
    pub fn on_follower_log_start(&mut self, replica: ReplicaId, log_start: i64) {
        if log_start < 0 {
            return;
        }
        if let Some(f) = self.followers.get_mut(&replica) {
            f.log_start = Some(f.log_start.map_or(log_start, |s| s.max(log_start)));
        }
        self.complete_trims();
    }

    fn complete_trims(&mut self) {
        if self.trims.is_empty() {
            return;
        }
        // The leader already moved its own start; only the followers are waited for.
        let Some(low) = self.low_watermark(i64::MAX) else { return };
        let (done, keep): (Vec<PendingTrim>, Vec<PendingTrim>) =
            self.trims.drain(..).partition(|t| low >= t.offset);
        self.trims = keep;
        self.completed.extend(done.into_iter().map(|t| (t.id, Ok(()))));
    }

    /// A follower fetched from `fetch_offset` (its LEO) at `now_ms`.
    pub fn on_follower_fetch(
        &mut self,
        replica: ReplicaId,
        fetch_offset: i64,
        now_ms: u64,
    ) -> Result<FetchOutcome, FetchError> {
        if fetch_offset > self.leader_leo || fetch_offset < 0 {
            return Err(FetchError::OffsetOutOfRange { fetch_offset, leader_leo: self.leader_leo });
        }
        let leader_leo = self.leader_leo;
        let f = self.followers.get_mut(&replica).ok_or(FetchError::UnknownReplica(replica))?;
        // Kafka's rule: caught up if it has all the leader has now, or all it had at the previous
        // fetch (then it was caught up as of that previous fetch).
        if fetch_offset >= leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= f.leader_leo_at_last_fetch && f.leo.is_some() {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.leo = Some(fetch_offset);
        f.last_fetch_ms = now_ms;
        f.leader_leo_at_last_fetch = leader_leo;

        let mut out = FetchOutcome::default();
        if matches!(self.pending, Pending::None)
            && !self.isr.contains(&replica)
            && fetch_offset >= self.hw
            && fetch_offset >= self.epoch_start_offset
            && !self.ineligible.contains(&replica)
        {
            let mut new_isr = self.isr.clone();
            new_isr.insert(replica);
            let proposal = self.proposal(new_isr);
            self.pending = Pending::Expand { replica, proposal: proposal.clone() };
            out.propose = Some(proposal);
        }
        out.hw_advanced = self.update_hw();
        Ok(out)
    }

    /// Proposes removing ISR followers not caught up within `replica.lag.time.max.ms`.
    pub fn maybe_shrink(&mut self, now_ms: u64) -> Option<IsrChange> {
        if !matches!(self.pending, Pending::None) {
            return None;
        }
        let lag_max = self.config.replica_lag_time_max_ms;
        let removed: BTreeSet<ReplicaId> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.leader)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max)
            })
            .collect();
        if removed.is_empty() {
            return None;
        }
        let new_isr: BTreeSet<ReplicaId> = self.isr.difference(&removed).copied().collect();
        let proposal = self.proposal(new_isr);
        self.pending = Pending::Shrink { removed, proposal: proposal.clone() };
        Some(proposal)
    }

    /// The controller answered the in-flight AlterPartition.
    pub fn on_alter_partition_response(&mut self, response: AlterPartitionResponse) -> bool {
        if matches!(self.pending, Pending::None) {
            return false; // a late duplicate; metadata updates carry the truth
        }
        self.pending = Pending::None;
        match response {
            AlterPartitionResponse::Committed { isr, partition_epoch } => {
                self.adopt(isr, partition_epoch)
            }
            AlterPartitionResponse::Rejected => {}
        }
        self.update_hw()
    }

    /// Metadata says the partition (same leader epoch) now has `isr` at `partition_epoch`, e.g.
    /// the controller removed a fenced follower (KIP-841). Older epochs are ignored.
    pub fn on_metadata_isr(&mut self, isr: Vec<ReplicaId>, partition_epoch: i32) -> bool {
        if partition_epoch <= self.partition_epoch {
            return false;
        }
        self.pending = Pending::None;
        self.adopt(isr, partition_epoch);
        self.update_hw()
    }

    fn adopt(&mut self, isr: Vec<ReplicaId>, partition_epoch: i32) {
        if partition_epoch < self.partition_epoch {
            return;
        }
        assert!(
            isr.contains(&self.leader),
            "committed ISR {isr:?} lost the leader {}",
            self.leader
        );
        self.isr = isr.into_iter().filter(|r| self.replicas.contains(r)).collect();
        self.partition_epoch = partition_epoch;
    }

    fn proposal(&self, new_isr: BTreeSet<ReplicaId>) -> IsrChange {
        IsrChange {
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr: new_isr.into_iter().collect(),
        }
    }

    /// Recomputes the HW from the maximal ISR; returns whether it advanced. It does not advance
    /// while the maximal ISR is smaller than `min.insync.replicas` (KIP-966): the replicas that
    /// left it are eligible leaders (ELR) and must hold everything committed.
    fn update_hw(&mut self) -> bool {
        self.complete_trims(); // the ISR may have changed
        if self.maximal_isr_len() < self.config.min_insync_replicas {
            self.complete_acks();
            return false;
        }
        let mut candidate = self.leader_leo;
        for r in self.maximal_isr_members() {
            if r == self.leader {
                continue;
            }
            match self.followers.get(&r).and_then(|f| f.leo) {
                Some(leo) => candidate = candidate.min(leo),
                None => candidate = i64::MIN, // not heard from since this leader started
            }
        }
        let advanced = candidate > self.hw;
        if advanced {
            self.hw = candidate;
        } else if self.config.unsafe_hw_may_fall && candidate != i64::MIN && candidate < self.hw {
            // Museum switch: what a member reports now is taken as the truth (see IsrConfig).
            self.hw = candidate.max(0);
        }
        self.complete_acks();
        advanced
    }

    fn complete_acks(&mut self) {
        let isr_size = self.maximal_isr_len();
        let min = self.config.min_insync_replicas;
        let hw = self.hw;
        let completed = &mut self.completed;
        self.acks.retain(|a| {
            if isr_size < min {
                completed.push((a.id, Err(ProduceError::NotEnoughReplicasAfterAppend)));
            } else if hw > a.last_offset {
                completed.push((a.id, Ok(())));
            } else {
                return true;
            }
            false
        });
    }
}

/// The leader's answer to OffsetForLeaderEpoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderEpochAnswer {
    /// The largest epoch ≤ the requested one the leader has, and where it ends on its log.
    Found { epoch: i32, end_offset: i64 },
    /// The leader knows no epoch ≤ the requested one (UNDEFINED_EPOCH_OFFSET).
    Undefined,
}

/// What a follower does with the leader's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to `offset` and start fetching there.
    Done { offset: i64 },
    /// Truncate to `offset`, then ask again for `epoch` (KIP-279: the leader answered an epoch
    /// this follower does not have).
    AskAgain { offset: i64, epoch: i32 },
    /// Neither side can find a common epoch: the follower's log is below the leader's log start
    /// (removed by retention there); truncate fully and start at the leader's log start offset.
    Reset,
}

/// KIP-279 truncation: the follower with epoch cache `cache` and log end offset `leo` asked about
/// its latest epoch and got `answer`. Never uses the HW.
pub fn truncation_step(cache: &EpochCache, leo: i64, answer: LeaderEpochAnswer) -> Truncation {
    let (leader_epoch, leader_end) = match answer {
        LeaderEpochAnswer::Found { epoch, end_offset } => (epoch, end_offset),
        LeaderEpochAnswer::Undefined => return Truncation::Reset,
    };
    match cache.end_offset_for(leader_epoch, leo) {
        // The leader has the follower's epoch `leader_epoch`: both logs agree up to where it ends
        // on the shorter of the two.
        Some((epoch, end)) if epoch == leader_epoch => {
            Truncation::Done { offset: end.min(leader_end).min(leo) }
        }
        // The follower lacks `leader_epoch`; everything after its largest earlier epoch is
        // suspect. Truncate to where that earlier epoch ends here and ask the leader about it.
        Some((epoch, end)) => Truncation::AskAgain { offset: end.min(leo), epoch },
        // The follower knows no epoch at all: nothing in common that epochs can prove except
        // what is below the leader's end. (A follower whose epochs are all newer than the
        // leader's answer gets that epoch back with its first epoch's start, as Kafka answers,
        // and so truncates there in the first arm.)
        None => Truncation::Done { offset: leader_end.min(leo) },
    }
}

#[cfg(test)]
mod tests;
