//! The classic consumer-group state machine (Kafka's `GroupMetadata` plus the rules of its
//! `GroupCoordinator`), as pure synchronous logic: requests and timer expiry go in with `now_ms`,
//! [`Effect`]s come out (responses to complete, group metadata to persist). Nothing here does IO
//! or waits; the async coordinator (`coordinator.rs`) owns the waiting, the timers and the log.
//!
//! States and the transitions Kafka allows:
//! `Empty → PreparingRebalance → CompletingRebalance → Stable`, `CompletingRebalance|Stable →
//! PreparingRebalance`, `PreparingRebalance → Empty` (nobody rejoined), anything → `Dead`
//! (unloaded). [`Group::transition`] asserts that, so every test that drives a group checks it.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::error_code as ec;

/// Identifies a delayed request (a JoinGroup or SyncGroup whose response waits for the rebalance).
pub type ReqId = u64;

/// Error codes of the group APIs (Kafka's numbers, from the one table in `kafka-types`).
pub mod codes {
    pub use kafka_types::error_code::{
        COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID,
        GROUP_ID_NOT_FOUND, GROUP_MAX_SIZE_REACHED, GROUP_SUBSCRIBED_TO_TOPIC, ILLEGAL_GENERATION,
        INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED,
        NON_EMPTY_GROUP, NOT_COORDINATOR, OFFSET_METADATA_TOO_LARGE, REBALANCE_IN_PROGRESS,
        UNKNOWN_MEMBER_ID,
    };
}
use codes::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's state names (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Kafka's `validPreviousStates`, read the other way round.
    pub fn can_move_to(self, next: GroupState) -> bool {
        use GroupState::*;
        match next {
            PreparingRebalance => matches!(self, Empty | CompletingRebalance | Stable),
            CompletingRebalance => self == PreparingRebalance,
            Stable => self == CompletingRebalance,
            Empty => self == PreparingRebalance,
            Dead => self != Dead,
        }
    }
}

/// Broker settings that bound groups (Kafka's names in comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.max.size`: members (and pending member ids) per group.
    pub members_max: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits for
    /// more members.
    pub initial_rebalance_delay_ms: i32,
    /// `offset.metadata.max.bytes`: the metadata string of one committed offset.
    pub offset_metadata_bytes_max: usize,
    /// Cap on one member's protocol metadata and on one assignment (not a Kafka key: a bound on
    /// what a client can make the coordinator keep and persist).
    pub member_bytes_max: usize,
    /// Protocols one JoinGroup may offer.
    pub protocols_max: usize,
    /// Group id length.
    pub group_id_bytes_max: usize,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, per group (each lives a
    /// session timeout; without a cap a client looping on JoinGroup could grow this freely).
    pub pending_members_max: usize,
    /// `offsets.retention.minutes`, in ms: how long the offsets of an Empty group (or of a simple
    /// consumer, by commit time) are kept (KIP-211).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets and dead groups are purged.
    pub offsets_retention_check_interval_ms: i64,
    /// `offsets.topic.segment.bytes`: smaller than other topics' so the cleaner (which never
    /// touches the active segment) gets to compact it.
    pub offsets_topic_segment_bytes: i64,
    /// `loglab.unsafe.group.commit.any.generation` (a museum switch, `crate::safeguards`): the
    /// coordinator stores commits it would refuse as from an unknown member or an old generation.
    pub unsafe_commit_any_generation: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms_min: 6000,
            session_timeout_ms_max: 1_800_000,
            members_max: i32::MAX as usize,
            initial_rebalance_delay_ms: 3000,
            offset_metadata_bytes_max: 4096,
            member_bytes_max: 1 << 20,
            protocols_max: 64,
            group_id_bytes_max: 1024,
            pending_members_max: 10_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_segment_bytes: 100 << 20,
            unsafe_commit_any_generation: false,
        }
    }
}

/// One member as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<ReqId>,
    sync_waiter: Option<ReqId>,
    /// Sent SyncGroup in the current generation (the sync timeout removes those that did not).
    synced: bool,
    heartbeat_deadline_ms: i64,
    /// Order of joining: the leader is the earliest member when a new one must be chosen.
    join_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ (KIP-394): a member without an id first gets one with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A member as listed to the leader in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    pub fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: i16) -> Self {
        Self { error, protocol_type: None, protocol: None, assignment: Bytes::new() }
    }
}

/// The group's metadata as persisted in `__consumer_offsets` (group metadata value v3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group_id: String,
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// What the coordinator must do after an input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Complete a waiting JoinGroup.
    Join(ReqId, JoinOutcome),
    /// Complete a waiting SyncGroup.
    Sync(ReqId, SyncOutcome),
    /// Append this group metadata record; responses after it in the list go out only once it is
    /// written (Kafka acknowledges SyncGroup after the assignment is stored).
    Persist(GroupSnapshot),
}

/// A member named in a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id of static members.
    static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with the deadline to join by.
    pending: BTreeMap<String, i64>,
    join_deadline_ms: Option<i64>,
    /// The first rebalance of an empty group waits its whole delay for more members.
    initial_join: bool,
    sync_deadline_ms: Option<i64>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    state_timestamp_ms: i64,
    next_join_seq: u64,
    /// `group.initial.rebalance.delay.ms` (refreshed from the config at every join).
    initial_delay_ms: i32,
}

fn same_protocols(a: &[(String, Bytes)], b: &[(String, Bytes)]) -> bool {
    a == b
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_deadline_ms: None,
            initial_join: false,
            sync_deadline_ms: None,
            offsets: BTreeMap::new(),
            state_timestamp_ms: now_ms,
            next_join_seq: 0,
            initial_delay_ms: GroupConfig::default().initial_rebalance_delay_ms,
        }
    }

    /// Rebuilds a group from its persisted metadata (at load): Stable with the stored members and
    /// assignments, or Empty. Member sessions restart at `now_ms`, as in Kafka.
    pub fn from_snapshot(s: &GroupSnapshot, now_ms: i64) -> Self {
        let mut g = Group::new(&s.group_id, now_ms);
        g.generation = s.generation;
        g.protocol_type = (!s.protocol_type.is_empty()).then(|| s.protocol_type.clone());
        g.state_timestamp_ms = s.state_timestamp_ms;
        if s.members.is_empty() {
            return g;
        }
        g.protocol = s.protocol.clone();
        g.leader = s.leader.clone();
        for m in &s.members {
            let seq = g.next_join_seq;
            g.next_join_seq += 1;
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: s.protocol_type.clone(),
                    protocols: vec![(
                        s.protocol.clone().unwrap_or_default(),
                        m.subscription.clone(),
                    )],
                    assignment: m.assignment.clone(),
                    join_waiter: None,
                    sync_waiter: None,
                    synced: true,
                    heartbeat_deadline_ms: now_ms + m.session_timeout_ms as i64,
                    join_seq: seq,
                },
            );
        }
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.values().min_by_key(|m| m.join_seq).map(|m| m.member_id.clone());
        }
        g.state = GroupState::Stable;
        g
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// True when the group holds nothing worth keeping in memory (never used, or emptied and
    /// without offsets): the coordinator may forget it.
    pub fn is_forgettable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && self.generation == 0
    }

    /// Offset expiry (KIP-211): an Empty group's offsets expire `retention_ms` after the group
    /// became Empty; a simple consumer's (no protocol type) `retention_ms` after each commit.
    /// Groups with members keep their offsets. Returns the expired (topic, partition)s.
    pub fn expire_offsets(&mut self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        if self.state != GroupState::Empty {
            return vec![];
        }
        let simple = self.protocol_type.is_none();
        let since = self.state_timestamp_ms;
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, o)| {
                (if simple { o.commit_timestamp_ms } else { since }).saturating_add(retention_ms)
                    <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.offsets.remove(k);
        }
        expired
    }

    /// An Empty group without offsets is deleted (Kafka writes its tombstone): true if it went
    /// Dead now.
    pub fn try_delete(&mut self, now_ms: i64) -> bool {
        if self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending.is_empty()
            && self.members.is_empty()
        {
            self.transition(GroupState::Dead, now_ms);
            return true;
        }
        false
    }

    /// Every waiting request (join or sync), for failing them all at unload/shutdown.
    pub fn waiters(&self) -> Vec<ReqId> {
        self.members.values().flat_map(|m| m.join_waiter.into_iter().chain(m.sync_waiter)).collect()
    }

    /// The persisted form of the group's current metadata.
    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol.clone();
        GroupSnapshot {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .sorted_members()
                .into_iter()
                .map(|m| MemberSnapshot {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn sorted_members(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.join_seq);
        v
    }

    /// The earliest deadline this group waits for (session expiry, join or sync phase end,
    /// pending member ids).
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let hb =
            self.members.values().filter(|m| !self.kept_alive(m)).map(|m| m.heartbeat_deadline_ms);
        let phase = match self.state {
            GroupState::PreparingRebalance => self.join_deadline_ms,
            GroupState::CompletingRebalance => self.sync_deadline_ms,
            _ => None,
        };
        hb.chain(phase).chain(self.pending.values().copied()).min()
    }

    /// Members waiting in a join or sync are alive (their session restarts when the phase ends).
    fn kept_alive(&self, m: &Member) -> bool {
        m.join_waiter.is_some() || m.sync_waiter.is_some()
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        assert!(
            self.state.can_move_to(to),
            "group {}: {:?} -> {:?} is not a Kafka transition",
            self.id,
            self.state,
            to
        );
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| m.rebalance_timeout_ms as i64).max().unwrap_or(0)
    }

    /// Is `instance` known under another member id (a zombie of a restarted static member)?
    fn fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        instance.and_then(|i| self.static_members.get(i)).is_some_and(|id| id != member_id)
    }

    /// Could a member offering `protocols` of `protocol_type` join, given the other members?
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        let others: Vec<&Member> =
            self.members.values().filter(|m| m.member_id != except).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols
            .iter()
            .any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Kafka's protocol selection: among the protocols every member supports, each member votes
    /// for its most preferred; most votes wins (ties: the earliest member's preference order).
    fn select_protocol(&self) -> Option<String> {
        let members = self.sorted_members();
        let first = members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| members.iter().all(|m| m.protocols.iter().any(|(x, _)| x == *n)))
            .collect();
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let votes = members
                .iter()
                .filter(|m| {
                    m.protocols.iter().map(|(n, _)| n).find(|n| candidates.contains(n)) == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, b)| votes > b) {
                best = Some((c, votes));
            }
        }
        best.map(|(n, _)| n.clone()).or_else(|| first.protocols.first().map(|(n, _)| n.clone()))
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// JoinGroup. `new_member_id` is the id this member gets if it has none yet (the coordinator
    /// makes unique ids; this logic has no randomness).
    pub fn join(
        &mut self,
        req_id: ReqId,
        r: JoinRequest,
        new_member_id: &str,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.initial_delay_ms = cfg.initial_rebalance_delay_ms;
        let err = |code: i16, id: &str| vec![Effect::Join(req_id, JoinOutcome::error(code, id))];
        if self.state == GroupState::Dead {
            return err(COORDINATOR_NOT_AVAILABLE, &r.member_id);
        }
        if r.session_timeout_ms < cfg.session_timeout_ms_min
            || r.session_timeout_ms > cfg.session_timeout_ms_max
        {
            return err(INVALID_SESSION_TIMEOUT, &r.member_id);
        }
        if r.protocol_type.is_empty()
            || r.protocols.is_empty()
            || r.protocols.len() > cfg.protocols_max
        {
            return err(INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
        }
        if r.protocols.iter().any(|(_, m)| m.len() > cfg.member_bytes_max) {
            return err(ec::INVALID_REQUEST, &r.member_id);
        }
        if !self.supports(&r.protocol_type, &r.protocols, &r.member_id) {
            return err(INCONSISTENT_GROUP_PROTOCOL, &r.member_id);
        }
        if r.member_id.is_empty() {
            self.join_unknown(req_id, r, new_member_id, now_ms, cfg, &mut fx);
        } else {
            self.join_known(req_id, r, now_ms, cfg, &mut fx);
        }
        fx
    }

    fn join_unknown(
        &mut self,
        req_id: ReqId,
        r: JoinRequest,
        new_id: &str,
        now_ms: i64,
        cfg: &GroupConfig,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(instance) = r.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                if self.members.contains_key(&old_id) {
                    self.replace_static_member(req_id, &old_id, new_id, r, now_ms, fx);
                    return;
                }
                self.static_members.remove(&instance);
            }
        } else if r.require_known_member_id {
            if self.members.len() + self.pending.len() >= cfg.members_max
                || self.pending.len() >= cfg.pending_members_max
            {
                fx.push(Effect::Join(req_id, JoinOutcome::error(GROUP_MAX_SIZE_REACHED, "")));
                return;
            }
            // The member must come back with this id within its session timeout.
            self.pending.insert(new_id.to_string(), now_ms + r.session_timeout_ms as i64);
            fx.push(Effect::Join(req_id, JoinOutcome::error(MEMBER_ID_REQUIRED, new_id)));
            return;
        }
        if self.members.len() + self.pending.len() >= cfg.members_max {
            fx.push(Effect::Join(req_id, JoinOutcome::error(GROUP_MAX_SIZE_REACHED, "")));
            return;
        }
        self.add_member_and_rebalance(req_id, new_id, r, now_ms, fx);
    }

    fn join_known(
        &mut self,
        req_id: ReqId,
        r: JoinRequest,
        now_ms: i64,
        cfg: &GroupConfig,
        fx: &mut Vec<Effect>,
    ) {
        let id = r.member_id.clone();
        if self.pending.contains_key(&id) {
            self.pending.remove(&id);
            if self.members.len() >= cfg.members_max {
                fx.push(Effect::Join(req_id, JoinOutcome::error(GROUP_MAX_SIZE_REACHED, &id)));
                return;
            }
            self.add_member_and_rebalance(req_id, &id, r, now_ms, fx);
            return;
        }
        if self.fenced(r.instance_id.as_deref(), &id) {
            fx.push(Effect::Join(req_id, JoinOutcome::error(FENCED_INSTANCE_ID, &id)));
            return;
        }
        if !self.members.contains_key(&id)
            || matches!(self.state, GroupState::Empty | GroupState::Dead)
        {
            fx.push(Effect::Join(req_id, JoinOutcome::error(UNKNOWN_MEMBER_ID, &id)));
            return;
        }
        let (changed, is_leader) = {
            let m = &self.members[&id];
            (
                !same_protocols(&m.protocols, &r.protocols),
                self.leader.as_deref() == Some(id.as_str()),
            )
        };
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&id, r, now_ms);
                self.set_join_waiter(&id, req_id, fx);
                self.maybe_complete_join(now_ms, fx);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if !changed && (self.state != GroupState::Stable || !is_leader) =>
            {
                // Nothing changed: answer with the current generation (the leader again gets the
                // member list while assignments are still being collected).
                self.touch(&id, now_ms);
                let with_members = self.state == GroupState::CompletingRebalance && is_leader;
                fx.push(Effect::Join(req_id, self.join_outcome(&id, with_members)));
            }
            _ => {
                self.update_member(&id, r, now_ms);
                self.prepare_rebalance(now_ms, fx);
                self.set_join_waiter(&id, req_id, fx);
                self.maybe_complete_join(now_ms, fx);
            }
        }
    }

    /// A static member restarted (new member id, same instance id): the new id replaces the old
    /// one; the old member's waiting requests are fenced. Unchanged metadata in a Stable group means
    /// no rebalance (KIP-345).
    fn replace_static_member(
        &mut self,
        req_id: ReqId,
        old_id: &str,
        new_id: &str,
        r: JoinRequest,
        now_ms: i64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(mut m) = self.members.remove(old_id) else { return };
        if let Some(w) = m.join_waiter.take() {
            fx.push(Effect::Join(w, JoinOutcome::error(FENCED_INSTANCE_ID, old_id)));
        }
        if let Some(w) = m.sync_waiter.take() {
            fx.push(Effect::Sync(w, SyncOutcome::error(FENCED_INSTANCE_ID)));
        }
        let changed = !same_protocols(&m.protocols, &r.protocols);
        m.member_id = new_id.to_string();
        self.members.insert(new_id.to_string(), m);
        if let Some(i) = &r.instance_id {
            self.static_members.insert(i.clone(), new_id.to_string());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        match self.state {
            GroupState::Stable if !changed => {
                self.touch(new_id, now_ms);
                if let Some(m) = self.members.get_mut(new_id) {
                    m.session_timeout_ms = r.session_timeout_ms;
                    m.rebalance_timeout_ms = r.rebalance_timeout_ms;
                    m.client_id = r.client_id;
                    m.client_host = r.client_host;
                }
                fx.push(Effect::Persist(self.snapshot()));
                let is_leader = self.leader.as_deref() == Some(new_id);
                fx.push(Effect::Join(req_id, self.join_outcome(new_id, is_leader)));
            }
            GroupState::PreparingRebalance => {
                self.update_member(new_id, r, now_ms);
                self.set_join_waiter(new_id, req_id, fx);
                self.maybe_complete_join(now_ms, fx);
            }
            _ => {
                self.update_member(new_id, r, now_ms);
                self.prepare_rebalance(now_ms, fx);
                self.set_join_waiter(new_id, req_id, fx);
                self.maybe_complete_join(now_ms, fx);
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req_id: ReqId,
        id: &str,
        r: JoinRequest,
        now_ms: i64,
        fx: &mut Vec<Effect>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(r.protocol_type.clone());
        }
        if let Some(i) = &r.instance_id {
            self.static_members.insert(i.clone(), id.to_string());
        }
        let seq = self.next_join_seq;
        self.next_join_seq += 1;
        self.members.insert(
            id.to_string(),
            Member {
                member_id: id.to_string(),
                instance_id: r.instance_id,
                client_id: r.client_id,
                client_host: r.client_host,
                session_timeout_ms: r.session_timeout_ms,
                rebalance_timeout_ms: r.rebalance_timeout_ms,
                protocol_type: r.protocol_type,
                protocols: r.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(req_id),
                sync_waiter: None,
                synced: false,
                heartbeat_deadline_ms: now_ms + r.session_timeout_ms as i64,
                join_seq: seq,
            },
        );
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms, fx);
        } else if self.initial_join {
            // Kafka's InitialDelayedJoin: every new member restarts the delay, within the
            // rebalance timeout counted from the start of the rebalance.
            let limit = self.state_timestamp_ms + self.max_rebalance_timeout_ms();
            self.join_deadline_ms =
                Some((now_ms + self.initial_delay_ms as i64).min(limit).max(now_ms));
        }
        self.maybe_complete_join(now_ms, fx);
    }

    fn update_member(&mut self, id: &str, r: JoinRequest, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = r.protocols;
            m.session_timeout_ms = r.session_timeout_ms;
            m.rebalance_timeout_ms = r.rebalance_timeout_ms;
            m.client_id = r.client_id;
            m.client_host = r.client_host;
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    /// A second JoinGroup for the same member (a retry on another connection) supersedes the
    /// first, which is answered so it does not hang.
    fn set_join_waiter(&mut self, id: &str, req_id: ReqId, fx: &mut Vec<Effect>) {
        if let Some(m) = self.members.get_mut(id) {
            if let Some(old) = m.join_waiter.replace(req_id) {
                fx.push(Effect::Join(old, JoinOutcome::error(REBALANCE_IN_PROGRESS, id)));
            }
        }
    }

    fn touch(&mut self, id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    fn join_outcome(&self, id: &str, with_members: bool) -> JoinOutcome {
        let protocol = self.protocol.clone();
        let members = if with_members {
            self.sorted_members()
                .into_iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: protocol.as_deref().map(|p| m.metadata_for(p)).unwrap_or_default(),
                })
                .collect()
        } else {
            vec![]
        };
        JoinOutcome {
            error: ec::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64, fx: &mut Vec<Effect>) {
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the generation that never completed are void.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    fx.push(Effect::Sync(w, SyncOutcome::error(REBALANCE_IN_PROGRESS)));
                }
            }
        }
        let from_empty = self.state == GroupState::Empty;
        let rebalance_ms = self.max_rebalance_timeout_ms();
        self.transition(GroupState::PreparingRebalance, now_ms);
        self.initial_join = from_empty;
        self.sync_deadline_ms = None;
        // Kafka's InitialDelayedJoin waits for more members, bounded by the rebalance timeout.
        let delay = if from_empty {
            (self.initial_delay_ms as i64).min(rebalance_ms)
        } else {
            rebalance_ms
        };
        self.join_deadline_ms = Some(now_ms + delay.max(0));
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now_ms: i64, fx: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = self.join_deadline_ms.is_some_and(|d| now_ms >= d);
        if deadline_passed || (!self.initial_join && self.all_joined()) {
            self.complete_join(now_ms, fx);
        }
    }

    /// The join phase ends: members that did not rejoin are dropped, the next generation starts.
    fn complete_join(&mut self, now_ms: i64, fx: &mut Vec<Effect>) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member_raw(&id, fx);
        }
        self.join_deadline_ms = None;
        self.initial_join = false;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            fx.push(Effect::Persist(self.snapshot()));
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.sorted_members().first().map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline_ms = Some(now_ms + self.max_rebalance_timeout_ms());
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.sorted_members().iter().map(|m| m.member_id.clone()).collect();
        for id in ids {
            let outcome = self.join_outcome(&id, id == leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.synced = false;
                m.assignment = Bytes::new();
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                if let Some(w) = m.join_waiter.take() {
                    fx.push(Effect::Join(w, outcome));
                }
            }
        }
    }

    /// Removes a member, answering its waiting requests; no state change.
    fn remove_member_raw(&mut self, id: &str, fx: &mut Vec<Effect>) {
        if let Some(m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter {
                fx.push(Effect::Join(w, JoinOutcome::error(UNKNOWN_MEMBER_ID, id)));
            }
            if let Some(w) = m.sync_waiter {
                fx.push(Effect::Sync(w, SyncOutcome::error(UNKNOWN_MEMBER_ID)));
            }
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).is_some_and(|x| x == id) {
                    self.static_members.remove(i);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member left or expired: rebalance the rest.
    fn remove_member(&mut self, id: &str, now_ms: i64, fx: &mut Vec<Effect>) {
        self.remove_member_raw(id, fx);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, fx);
                // Kafka tries the join at once: with nobody left it ends, and the group is Empty.
                self.maybe_complete_join(now_ms, fx);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// SyncGroup. `protocol_type`/`protocol` are v5's consistency checks (None below v5).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        req_id: ReqId,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        cfg: &GroupConfig,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let err = |code: i16| vec![Effect::Sync(req_id, SyncOutcome::error(code))];
        if self.state == GroupState::Dead {
            return err(COORDINATOR_NOT_AVAILABLE);
        }
        if self.fenced(instance_id, member_id) {
            return err(FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(member_id) {
            return err(UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return err(ILLEGAL_GENERATION);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return err(INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty => return err(UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => return err(REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                self.touch(member_id, now_ms);
                let m = &self.members[member_id];
                fx.push(Effect::Sync(
                    req_id,
                    SyncOutcome {
                        error: ec::NONE,
                        protocol_type: self.protocol_type.clone(),
                        protocol: self.protocol.clone(),
                        assignment: m.assignment.clone(),
                    },
                ));
            }
            GroupState::CompletingRebalance => {
                let is_leader = self.leader.as_deref() == Some(member_id);
                if is_leader && assignments.iter().any(|(_, a)| a.len() > cfg.member_bytes_max) {
                    return err(ec::INVALID_REQUEST);
                }
                self.touch(member_id, now_ms);
                if let Some(m) = self.members.get_mut(member_id) {
                    m.synced = true;
                    if let Some(old) = m.sync_waiter.replace(req_id) {
                        fx.push(Effect::Sync(old, SyncOutcome::error(REBALANCE_IN_PROGRESS)));
                    }
                }
                if is_leader {
                    let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    fx.push(Effect::Persist(self.snapshot()));
                    self.transition(GroupState::Stable, now_ms);
                    self.sync_deadline_ms = None;
                    let (pt, p) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
                        if let Some(w) = m.sync_waiter.take() {
                            fx.push(Effect::Sync(
                                w,
                                SyncOutcome {
                                    error: ec::NONE,
                                    protocol_type: pt.clone(),
                                    protocol: p.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            GroupState::Dead => unreachable!("handled above"),
        }
        fx
    }

    /// Heartbeat: the error code to answer.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if self.fenced(instance_id, member_id) {
            return FENCED_INSTANCE_ID;
        }
        if !self.members.contains_key(member_id) {
            return UNKNOWN_MEMBER_ID;
        }
        if generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty => UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                self.touch(member_id, now_ms);
                REBALANCE_IN_PROGRESS
            }
            _ => {
                self.touch(member_id, now_ms);
                ec::NONE
            }
        }
    }

    /// LeaveGroup for each named member: per-member error codes, and effects.
    pub fn leave(&mut self, leavers: &[Leaver], now_ms: i64) -> (Vec<i16>, Vec<Effect>) {
        let mut fx = Vec::new();
        let mut codes = Vec::with_capacity(leavers.len());
        for l in leavers {
            if self.state == GroupState::Dead {
                codes.push(COORDINATOR_NOT_AVAILABLE);
                continue;
            }
            // v3+: a static member may leave by instance id alone.
            let id = match (&l.instance_id, l.member_id.is_empty()) {
                (Some(i), true) => match self.static_members.get(i) {
                    Some(id) => id.clone(),
                    None => {
                        codes.push(UNKNOWN_MEMBER_ID);
                        continue;
                    }
                },
                _ => l.member_id.clone(),
            };
            if self.fenced(l.instance_id.as_deref(), &id) {
                codes.push(FENCED_INSTANCE_ID);
                continue;
            }
            if self.pending.remove(&id).is_some() {
                codes.push(ec::NONE);
                self.maybe_complete_join(now_ms, &mut fx);
                continue;
            }
            if !self.members.contains_key(&id) {
                codes.push(UNKNOWN_MEMBER_ID);
                continue;
            }
            self.remove_member(&id, now_ms, &mut fx);
            codes.push(ec::NONE);
        }
        (codes, fx)
    }

    /// OffsetCommit's membership check: `Ok` when the commit may be stored. A simple (non-group)
    /// commit (generation < 0, no member id) is accepted only while the group has no members.
    pub fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.fenced(instance_id, member_id) {
            return Err(FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(member_id) {
            return Err(UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(ILLEGAL_GENERATION);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(REBALANCE_IN_PROGRESS);
        }
        // Stable, or PreparingRebalance with the current generation (a member committing before
        // it rejoins): accepted, and it counts as a heartbeat.
        self.touch(member_id, now_ms);
        Ok(())
    }

    /// Stores a committed (or, with `None`, deleted) offset.
    pub fn apply_offset(&mut self, topic: &str, partition: i32, offset: Option<CommittedOffset>) {
        match offset {
            Some(o) => {
                self.offsets.insert((topic.to_string(), partition), o);
            }
            None => {
                self.offsets.remove(&(topic.to_string(), partition));
            }
        }
    }

    /// Timer expiry: pending member ids, member sessions, the join and sync phases.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.state == GroupState::Dead {
            return fx;
        }
        let expired_pending: Vec<String> =
            self.pending.iter().filter(|(_, d)| **d <= now_ms).map(|(id, _)| id.clone()).collect();
        for id in expired_pending {
            self.pending.remove(&id);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !self.kept_alive(m) && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, now_ms, &mut fx);
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, &mut fx),
            GroupState::CompletingRebalance
                if self.sync_deadline_ms.is_some_and(|d| now_ms >= d) =>
            {
                // Members that never sent SyncGroup in time are dropped (Kafka's pending-sync
                // timeout); the rest rebalance.
                let lagging: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.synced)
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in lagging {
                    self.remove_member_raw(&id, &mut fx);
                }
                self.prepare_rebalance(now_ms, &mut fx);
                self.maybe_complete_join(now_ms, &mut fx);
            }
            _ => {}
        }
        fx
    }

    /// The partition moved away (or the broker stops): every waiting request is answered with
    /// `code` and the group is Dead in this coordinator.
    pub fn unload(&mut self, code: i16, now_ms: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                fx.push(Effect::Join(w, JoinOutcome::error(code, &m.member_id)));
            }
            if let Some(w) = m.sync_waiter.take() {
                fx.push(Effect::Sync(w, SyncOutcome::error(code)));
            }
        }
        if self.state != GroupState::Dead {
            self.transition(GroupState::Dead, now_ms);
        }
        fx
    }

    /// The configured initial delay is per coordinator, kept on the group for the pure logic.
    pub fn set_initial_delay(&mut self, ms: i32) {
        self.initial_delay_ms = ms;
    }

    /// The group's own invariants, which hold between any two inputs (the property test checks
    /// them after every step; the simulator while a run runs): what is broken, empty when
    /// nothing is. Reads only; cost linear in members.
    pub fn invariant_violations(&self, cfg: &GroupConfig) -> Vec<String> {
        let mut out = Vec::new();
        let (members, pending) = (self.member_count(), self.pending_count());
        if members + pending > cfg.members_max.max(members) || members > cfg.members_max {
            out.push(format!(
                "{members} members + {pending} pending exceed group.max.size {}",
                cfg.members_max
            ));
        }
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.leader_violations(&mut out)
            }
            GroupState::Empty if members > 0 => out.push(format!("Empty with {members} members")),
            GroupState::PreparingRebalance if !self.initial_join && self.all_joined() => {
                // A join with everybody in ends at once (the initial delay waits on purpose).
                out.push("PreparingRebalance with every member joined".to_string());
            }
            GroupState::Empty | GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        for (instance, id) in &self.static_members {
            let mapped = self.members.get(id).and_then(|m| m.instance_id.as_deref());
            if mapped != Some(instance.as_str()) {
                out.push(format!("static member {instance} maps to {id}, which is {mapped:?}"));
            }
        }
        out
    }

    /// CompletingRebalance and Stable: a leader among the members and a protocol all support.
    fn leader_violations(&self, out: &mut Vec<String>) {
        let state = self.state.name();
        match self.leader.as_deref() {
            None => out.push(format!("{state} without a leader")),
            Some(l) if !self.members.contains_key(l) => {
                out.push(format!("{state}: leader {l} is not a member"));
            }
            Some(_) => {}
        }
        let Some(p) = self.protocol.as_deref() else {
            out.push(format!("{state} without a protocol"));
            return;
        };
        for m in self.members.values() {
            if !m.protocols.iter().any(|(n, _)| n == p) {
                out.push(format!("{state}: member {} does not support protocol {p}", m.member_id));
            }
        }
    }
}

/// The admin side of a group: DeleteGroups and OffsetDelete (Kafka's `GroupCoordinator`
/// `handleDeleteGroups` / `handleDeleteOffsets`).
impl Group {
    /// DeleteGroups: an Empty group goes Dead with its offsets; returns the (topic, partition)s
    /// whose offsets went (for tombstones). A group with members (or joining ones) is
    /// NON_EMPTY_GROUP; a Dead one GROUP_ID_NOT_FOUND.
    pub fn delete(&mut self, now_ms: i64) -> Result<Vec<(String, i32)>, i16> {
        match self.state {
            GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
            GroupState::Empty if self.members.is_empty() && self.pending.is_empty() => {
                let gone: Vec<(String, i32)> = self.offsets.keys().cloned().collect();
                self.offsets.clear();
                self.transition(GroupState::Dead, now_ms);
                Ok(gone)
            }
            _ => Err(NON_EMPTY_GROUP),
        }
    }

    /// OffsetDelete: one code per (topic, partition) of `partitions`, in order — NONE (its
    /// offset may go) or GROUP_SUBSCRIBED_TO_TOPIC (a member of this consumer group subscribes
    /// the topic). Group-level: GROUP_ID_NOT_FOUND (Dead), NON_EMPTY_GROUP (members of a
    /// protocol other than `consumer`, whose subscriptions cannot be read). Changes nothing:
    /// the caller stores tombstones, then applies them with [`Group::apply_offset`].
    pub fn offsets_deletable(&self, partitions: &[(String, i32)]) -> Result<Vec<i16>, i16> {
        if self.state == GroupState::Dead {
            return Err(GROUP_ID_NOT_FOUND);
        }
        if self.state == GroupState::Empty {
            return Ok(vec![ec::NONE; partitions.len()]);
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return Err(NON_EMPTY_GROUP);
        }
        let subscribed = self.subscribed_topics();
        Ok(partitions
            .iter()
            .map(|(t, _)| if subscribed.contains(t) { GROUP_SUBSCRIBED_TO_TOPIC } else { ec::NONE })
            .collect())
    }

    /// The topics the members subscribe to, read from their `consumer` protocol metadata for
    /// the group's protocol (a member's unreadable metadata subscribes to nothing).
    pub fn subscribed_topics(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let Some(p) = self.protocol.as_deref() else { return out };
        for m in self.members.values() {
            out.extend(consumer_subscription(&m.metadata_for(p)).unwrap_or_default());
        }
        out
    }
}

/// The topics of a ConsumerProtocolSubscription (every version starts with `version: i16`,
/// `topics: [string]`), bounded by the bytes present; `None` when malformed.
pub fn consumer_subscription(b: &[u8]) -> Option<Vec<String>> {
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = b.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    };
    let mut pos = 0;
    let version = take(&mut pos, 2)?;
    if i16::from_be_bytes([version[0], version[1]]) < 0 {
        return None;
    }
    let n = take(&mut pos, 4)?;
    let n = usize::try_from(i32::from_be_bytes([n[0], n[1], n[2], n[3]])).ok()?;
    // Each topic takes at least its two length bytes.
    if n > (b.len() - pos) / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take(&mut pos, 2)?;
        let len = usize::try_from(i16::from_be_bytes([len[0], len[1]])).ok()?;
        topics.push(String::from_utf8(take(&mut pos, len)?.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    //! Property tests: random clients (joins with and without ids, static members, syncs with
    //! current and stale generations, heartbeats, leaves, commits, time passing) drive one group;
    //! the checks are Kafka's promises. Transitions are checked by `transition`'s assert.
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    // Mutation probes, 2026-12-02 (issue 20): the generation check and its neighbours. Each
    // was planted in a scratch worktree, `cargo test -p broker --lib group` run, the failure
    // seen, the code restored. Lines are broker/src/group/state.rs's at the time.
    //
    // - :888 SyncGroup of any generation accepted (drop the check), or of an older one
    //   (`!=` → `>`) → group_keeps_kafkas_promises ("stale SyncGroup accepted"),
    //   two_members_rebalance_and_fencing.
    // - :950 Heartbeat of any generation accepted, or of an older one (`!=` → `>`)
    //   → group_keeps_kafkas_promises (reachable since a JoinGroup answer may be lost:
    //   Op::Join { lose_response }), two_members_rebalance_and_fencing.
    // - :1020 OffsetCommit of an older generation accepted (`!=` → `>`)
    //   → group_keeps_kafkas_promises ("stale commit accepted"), two_members_rebalance_and_fencing.
    // - :799 a rebalance does not start a new generation → group_keeps_kafkas_promises,
    //   two_members_rebalance_and_fencing, static_member_rejoins_without_rebalance.
    // - :1023 OffsetCommit accepted while CompletingRebalance → group_keeps_kafkas_promises,
    //   two_members_rebalance_and_fencing.
    // - :1011 a simple (generation -1) commit accepted in a group with members
    //   → group_keeps_kafkas_promises, limits_and_protocol_checks.
    // - :486 a zombie static member (old member id, same instance id) is not fenced
    //   → static_member_rejoins_without_rebalance.
    // - :1023 the other way round: a commit of the current generation refused while
    //   PreparingRebalance → group_keeps_kafkas_promises ("a commit of the current generation
    //   … refused"), two_members_rebalance_and_fencing.

    /// `PROPTEST_CASES` when set (the full test command deepens the properties that guard data),
    /// else the property's own default.
    fn proptest_cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
    }

    const SLOTS: usize = 4;
    const PARTITIONS: u8 = 6;

    #[derive(Debug, Clone)]
    enum Op {
        /// `lose_response`: the coordinator answers, the client never sees it (its connection
        /// dropped), so it keeps its old member id and generation — the way a live member ends
        /// up sending a stale generation.
        Join {
            slot: usize,
            forget_id: bool,
            v4: bool,
            static_member: bool,
            protocols: u8,
            lose_response: bool,
        },
        Sync {
            slot: usize,
            gen_delta: i32,
        },
        Heartbeat {
            slot: usize,
        },
        Leave {
            slot: usize,
        },
        Commit {
            slot: usize,
            gen_delta: i32,
            simple: bool,
        },
        Advance {
            ms: i64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..SLOTS, any::<bool>(), any::<bool>(), prop::bool::weighted(0.3), 0u8..3, prop::bool::weighted(0.15))
                .prop_map(|(slot, forget_id, v4, static_member, protocols, lose_response)| Op::Join { slot, forget_id, v4, static_member, protocols, lose_response }),
            4 => (0..SLOTS, prop_oneof![4 => Just(0), 1 => Just(-1), 1 => Just(1)]).prop_map(|(slot, gen_delta)| Op::Sync { slot, gen_delta }),
            2 => (0..SLOTS).prop_map(|slot| Op::Heartbeat { slot }),
            1 => (0..SLOTS).prop_map(|slot| Op::Leave { slot }),
            2 => (0..SLOTS, -2i32..2, prop::bool::weighted(0.2)).prop_map(|(slot, gen_delta, simple)| Op::Commit { slot, gen_delta, simple }),
            3 => (0i64..700).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    #[derive(Debug, Default, Clone)]
    struct Client {
        member_id: String,
        generation: i32,
        leader_members: Option<Vec<String>>,
    }

    #[derive(Default)]
    struct World {
        clients: Vec<Client>,
        next_req: ReqId,
        /// Outstanding requests: id → (slot, is_sync, generation sent, member identity): the
        /// identity is the static instance id if the member has one (KIP-345: a restarted static
        /// member inherits its assignment, its old incarnation is fenced), else its member id.
        outstanding: BTreeMap<ReqId, (usize, bool, i32, String)>,
        answered: BTreeSet<ReqId>,
        /// Requests whose answer never reaches the client.
        lost: BTreeSet<ReqId>,
        /// generation → member → assignment delivered by a successful SyncGroup.
        delivered: BTreeMap<i32, BTreeMap<String, Bytes>>,
        last_generation: i32,
        offsets_model: BTreeMap<(String, i32), i64>,
        next_member: u64,
    }

    fn protocols(kind: u8) -> Vec<(String, Bytes)> {
        match kind {
            0 => vec![
                ("range".into(), Bytes::from_static(b"r")),
                ("roundrobin".into(), Bytes::from_static(b"rr")),
            ],
            1 => vec![("roundrobin".into(), Bytes::from_static(b"rr"))],
            _ => vec![("sticky".into(), Bytes::from_static(b"s"))],
        }
    }

    impl World {
        fn effects(&mut self, g: &Group, fx: Vec<Effect>) {
            for e in fx {
                match e {
                    Effect::Persist(s) => {
                        assert_eq!(s.group_id, g.id);
                    }
                    Effect::Join(id, out) => {
                        assert!(self.answered.insert(id), "join {id} answered twice");
                        let (slot, is_sync, _, _) =
                            self.outstanding.remove(&id).expect("answer to an issued request");
                        assert!(!is_sync);
                        if self.lost.remove(&id) {
                            continue;
                        }
                        let c = &mut self.clients[slot];
                        match out.error {
                            ec::NONE => {
                                assert!(
                                    out.generation >= c.generation,
                                    "a member saw its generation go back"
                                );
                                c.member_id = out.member_id.clone();
                                c.generation = out.generation;
                                c.leader_members = (out.leader == out.member_id
                                    && !out.members.is_empty())
                                .then(|| out.members.iter().map(|m| m.member_id.clone()).collect());
                            }
                            MEMBER_ID_REQUIRED => c.member_id = out.member_id.clone(),
                            UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => *c = Client::default(),
                            _ => {}
                        }
                    }
                    Effect::Sync(id, out) => {
                        assert!(self.answered.insert(id), "sync {id} answered twice");
                        let (_, is_sync, generation, member) =
                            self.outstanding.remove(&id).expect("answer to an issued request");
                        assert!(is_sync);
                        if out.error == ec::NONE {
                            let per_gen = self.delivered.entry(generation).or_default();
                            if let Some(prev) = per_gen.get(&member) {
                                assert_eq!(
                                    prev, &out.assignment,
                                    "one member, one generation, two assignments"
                                );
                            }
                            per_gen.insert(member, out.assignment);
                        }
                    }
                }
            }
        }

        fn issue(&mut self, slot: usize, is_sync: bool, generation: i32, member: String) -> ReqId {
            self.next_req += 1;
            self.outstanding.insert(self.next_req, (slot, is_sync, generation, member));
            self.next_req
        }
    }

    /// The leader's assignment: partitions dealt round-robin over the members it was given.
    fn assign(members: &[String]) -> Vec<(String, Bytes)> {
        let mut per: BTreeMap<&String, Vec<u8>> = members.iter().map(|m| (m, vec![])).collect();
        for p in 0..PARTITIONS {
            let m = &members[p as usize % members.len()];
            per.get_mut(m).expect("member").push(p);
        }
        per.into_iter().map(|(m, ps)| (m.clone(), Bytes::from(ps))).collect()
    }

    fn run(ops: Vec<Op>, initial_delay_ms: i32, max_size: usize) {
        let cfg = GroupConfig {
            session_timeout_ms_min: 10,
            session_timeout_ms_max: 10_000,
            members_max: max_size,
            initial_rebalance_delay_ms: initial_delay_ms,
            ..GroupConfig::default()
        };
        let mut now = 1_000_000i64;
        let mut g = Group::new("g", now);
        let mut w = World { clients: vec![Client::default(); SLOTS], ..World::default() };
        for op in ops {
            let before = g.state();
            match op {
                Op::Join { slot, forget_id, v4, static_member, protocols: kind, lose_response } => {
                    let member_id =
                        if forget_id { String::new() } else { w.clients[slot].member_id.clone() };
                    let req = w.issue(slot, false, -1, String::new());
                    if lose_response {
                        w.lost.insert(req);
                    }
                    w.next_member += 1;
                    let new_id = format!("m{slot}-{}", w.next_member);
                    let r = JoinRequest {
                        member_id,
                        instance_id: static_member.then(|| format!("i{slot}")),
                        client_id: "c".into(),
                        client_host: "h".into(),
                        session_timeout_ms: 300,
                        rebalance_timeout_ms: 500,
                        protocol_type: "consumer".into(),
                        protocols: protocols(kind),
                        require_known_member_id: v4,
                    };
                    let fx = g.join(req, r, &new_id, now, &cfg);
                    w.effects(&g, fx);
                }
                Op::Sync { slot, gen_delta } => {
                    let c = w.clients[slot].clone();
                    let generation = c.generation + gen_delta;
                    let assignments = c.leader_members.as_deref().map(assign).unwrap_or_default();
                    let identity = g
                        .members
                        .get(&c.member_id)
                        .and_then(|m| m.instance_id.clone())
                        .unwrap_or_else(|| c.member_id.clone());
                    let req = w.issue(slot, true, generation, identity);
                    let accepted_generation = g.generation();
                    let (state, known) = (g.state(), g.members.contains_key(&c.member_id));
                    let owned = g.members.get(&c.member_id).map(|m| m.assignment.clone());
                    let fx = g.sync(
                        req,
                        generation,
                        &c.member_id,
                        None,
                        None,
                        None,
                        assignments,
                        now,
                        &cfg,
                    );
                    if generation != accepted_generation {
                        assert!(fx.iter().any(|e| matches!(e, Effect::Sync(id, o) if *id == req && o.error != ec::NONE)), "stale SyncGroup accepted");
                    } else if known && state == GroupState::Stable {
                        let ok = fx.iter().any(|e| matches!(e, Effect::Sync(id, o) if *id == req && o.error == ec::NONE && Some(&o.assignment) == owned.as_ref()));
                        assert!(ok, "SyncGroup of the current generation in a Stable group did not get the member's assignment: {fx:?}");
                    }
                    w.effects(&g, fx);
                }
                Op::Heartbeat { slot } => {
                    let c = &w.clients[slot];
                    let (state, current, known) =
                        (g.state(), g.generation(), g.members.contains_key(&c.member_id));
                    let code = g.heartbeat(c.generation, &c.member_id, None, now);
                    if c.generation != current {
                        assert_ne!(code, ec::NONE, "heartbeat from a stale generation accepted");
                        if known {
                            assert_eq!(
                                code, ILLEGAL_GENERATION,
                                "a member's heartbeat of generation {} in generation {}",
                                c.generation, current
                            );
                        }
                    } else if known {
                        let want = match state {
                            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
                            GroupState::CompletingRebalance | GroupState::Stable => ec::NONE,
                            GroupState::Empty | GroupState::Dead => {
                                unreachable!("members in {state:?}")
                            }
                        };
                        assert_eq!(
                            code, want,
                            "heartbeat of the current generation in {:?}",
                            state
                        );
                    }
                }
                Op::Leave { slot } => {
                    let c = w.clients[slot].clone();
                    let (codes, fx) = g.leave(
                        &[Leaver { member_id: c.member_id.clone(), instance_id: None }],
                        now,
                    );
                    assert_eq!(codes.len(), 1);
                    if codes[0] == ec::NONE {
                        assert!(g.members().all(|m| m.member_id != c.member_id));
                    }
                    w.effects(&g, fx);
                    w.clients[slot] = Client::default();
                }
                Op::Commit { slot, gen_delta, simple } => {
                    let c = w.clients[slot].clone();
                    let (generation, member) = if simple {
                        (-1, String::new())
                    } else {
                        (c.generation + gen_delta, c.member_id.clone())
                    };
                    let current = g.generation();
                    let (state, has_members, known) =
                        (g.state(), g.member_count() > 0, g.members.contains_key(&member));
                    match g.validate_commit(generation, &member, None, now) {
                        Ok(()) => {
                            assert!(
                                generation == current
                                    || (generation < 0 && state == GroupState::Empty),
                                "stale commit accepted"
                            );
                            assert!(
                                generation >= 0 || !has_members,
                                "simple commit accepted in a group with members"
                            );
                            assert_ne!(state, GroupState::CompletingRebalance);
                            let o = CommittedOffset {
                                offset: now,
                                leader_epoch: -1,
                                metadata: String::new(),
                                commit_timestamp_ms: now,
                            };
                            g.apply_offset("t", slot as i32, Some(o));
                            w.offsets_model.insert(("t".into(), slot as i32), now);
                        }
                        Err(code) => {
                            assert_ne!(code, ec::NONE);
                            let current_member = known
                                && generation == current
                                && matches!(
                                    state,
                                    GroupState::Stable | GroupState::PreparingRebalance
                                );
                            assert!(!current_member, "a commit of the current generation {current} refused in {state:?}: {code}");
                        }
                    }
                    let got: BTreeMap<(String, i32), i64> =
                        g.offsets.iter().map(|(k, v)| (k.clone(), v.offset)).collect();
                    assert_eq!(got, w.offsets_model);
                }
                Op::Advance { ms } => {
                    now += ms;
                    let fx = g.tick(now);
                    w.effects(&g, fx);
                }
            }
            check_invariants(&g, &cfg, before);
            assert!(g.generation() >= w.last_generation, "generation went back");
            w.last_generation = g.generation();
        }
        // Liveness: with no more input, every waiting request is answered once the timeouts pass.
        for _ in 0..4 {
            now += 10_000;
            let fx = g.tick(now);
            w.effects(&g, fx);
        }
        assert!(w.outstanding.is_empty(), "requests never answered: {:?}", w.outstanding);
        assert!(g.waiters().is_empty());
        // Within one generation no partition went to two members.
        for (generation, per) in &w.delivered {
            let mut seen = BTreeSet::new();
            for a in per.values() {
                for p in a.iter() {
                    assert!(
                        seen.insert(*p),
                        "generation {generation}: partition {p} delivered to two members: {per:?}"
                    );
                }
            }
        }
        // Unload answers everything and kills the group.
        let _ = g.unload(NOT_COORDINATOR, now);
        assert_eq!(g.state(), GroupState::Dead);
    }

    fn check_invariants(g: &Group, cfg: &GroupConfig, before: GroupState) {
        let broken = g.invariant_violations(cfg);
        assert!(broken.is_empty(), "group invariants: {broken:?}");
        if before != g.state() {
            // Several transitions may happen in one input; `transition` asserted each. A group
            // never leaves Dead and never goes straight from Empty to Stable.
            assert_ne!(before, GroupState::Dead);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: proptest_cases(2000), ..ProptestConfig::default() })]
        #[test]
        fn group_keeps_kafkas_promises(ops in prop::collection::vec(op(), 1..80), delay in prop_oneof![Just(0), Just(50)], max_size in 2usize..6) {
            run(ops, delay, max_size);
        }
    }

    fn join_req(member_id: &str, v4: bool) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 300,
            rebalance_timeout_ms: 500,
            protocol_type: "consumer".into(),
            protocols: protocols(0),
            require_known_member_id: v4,
        }
    }

    fn cfg0() -> GroupConfig {
        GroupConfig {
            session_timeout_ms_min: 10,
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    /// A Stable group of one member, `a`, leader of generation 1.
    fn stable_group(cfg: &GroupConfig) -> Group {
        let mut g = Group::new("g", 0);
        let _ = g.join(1, join_req("", true), "a", 0, cfg);
        let _ = g.join(2, join_req("a", true), "x", 0, cfg);
        let assignment = vec![("a".into(), Bytes::from_static(b"A"))];
        let _ = g.sync(3, 1, "a", None, None, None, assignment, 0, cfg);
        assert_eq!(g.state(), GroupState::Stable);
        g
    }

    /// The invariants the simulator checks can go red: each deliberately broken group is
    /// reported, the intact one is not.
    #[test]
    fn broken_groups_are_reported() {
        let cfg = cfg0();
        let g = stable_group(&cfg);
        assert_eq!(g.invariant_violations(&cfg), Vec::<String>::new());
        let mut no_leader = g.clone();
        no_leader.members.remove("a");
        let broken = no_leader.invariant_violations(&cfg);
        assert!(broken.iter().any(|v| v.contains("leader a is not a member")), "{broken:?}");
        let mut empty_with_members = g.clone();
        empty_with_members.state = GroupState::Empty;
        let broken = empty_with_members.invariant_violations(&cfg);
        assert_eq!(broken, vec!["Empty with 1 members".to_string()]);
        let mut no_protocol = g.clone();
        no_protocol.protocol = Some("none-supports-it".into());
        assert_eq!(no_protocol.invariant_violations(&cfg).len(), 1);
        let mut oversized = g.clone();
        let small = GroupConfig { members_max: 0, ..cfg.clone() };
        assert!(!oversized.invariant_violations(&small).is_empty());
        oversized.static_members.insert("i".into(), "nobody".into());
        assert!(oversized.invariant_violations(&cfg)[0].contains("static member i"));
    }

    #[test]
    fn two_members_rebalance_and_fencing() {
        let cfg = cfg0();
        let mut g = Group::new("g", 0);
        // KIP-394: v4 first gets an id.
        let fx = g.join(1, join_req("", true), "a", 0, &cfg);
        assert!(
            matches!(&fx[..], [Effect::Join(1, o)] if o.error == MEMBER_ID_REQUIRED && o.member_id == "a")
        );
        let fx = g.join(2, join_req("a", true), "x", 0, &cfg);
        assert!(
            matches!(&fx[..], [Effect::Join(2, o)] if o.error == ec::NONE && o.generation == 1 && o.leader == "a" && o.members.len() == 1)
        );
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        let fx = g.sync(
            3,
            1,
            "a",
            None,
            None,
            None,
            vec![("a".into(), Bytes::from_static(b"A"))],
            0,
            &cfg,
        );
        assert!(
            matches!(&fx[..], [Effect::Persist(_), Effect::Sync(3, o)] if o.assignment == Bytes::from_static(b"A"))
        );
        assert_eq!(g.state(), GroupState::Stable);
        // A second member: rebalance; the first learns by heartbeat and rejoins.
        let fx = g.join(4, join_req("", false), "b", 10, &cfg);
        assert!(fx.is_empty());
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(1, "a", None, 10), REBALANCE_IN_PROGRESS);
        assert_eq!(
            g.validate_commit(1, "a", None, 10),
            Ok(()),
            "commits of the current generation are allowed while preparing"
        );
        let fx = g.join(5, join_req("a", false), "y", 20, &cfg);
        assert_eq!(fx.len(), 2);
        assert_eq!(g.generation(), 2);
        assert_eq!(g.validate_commit(1, "a", None, 20), Err(ILLEGAL_GENERATION));
        assert_eq!(
            g.heartbeat(1, "a", None, 20),
            ILLEGAL_GENERATION,
            "a heartbeat of the previous generation"
        );
        assert_eq!(
            g.heartbeat(3, "a", None, 20),
            ILLEGAL_GENERATION,
            "a heartbeat of a generation to come"
        );
        assert_eq!(g.heartbeat(2, "a", None, 20), ec::NONE);
        assert_eq!(g.validate_commit(2, "a", None, 20), Err(REBALANCE_IN_PROGRESS));
        let stale = g.sync(6, 1, "b", None, None, None, vec![], 20, &cfg);
        assert!(matches!(&stale[..], [Effect::Sync(6, o)] if o.error == ILLEGAL_GENERATION));
        // Follower waits, leader completes.
        assert!(g.sync(7, 2, "b", None, None, None, vec![], 20, &cfg).is_empty());
        let fx = g.sync(
            8,
            2,
            "a",
            None,
            None,
            None,
            vec![("a".into(), Bytes::from_static(b"A")), ("b".into(), Bytes::from_static(b"B"))],
            20,
            &cfg,
        );
        assert_eq!(fx.len(), 3);
        // b's session expires: rebalance, a alone in generation 3 after it rejoins.
        assert_eq!(g.heartbeat(2, "a", None, 200), ec::NONE);
        let _ = g.tick(330);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.member_count(), 1);
        let fx = g.join(9, join_req("a", false), "z", 340, &cfg);
        assert!(
            matches!(&fx[..], [Effect::Join(9, o)] if o.generation == 3 && o.members.len() == 1)
        );
        // Unknown members and groups.
        assert_eq!(g.heartbeat(3, "nobody", None, 340), UNKNOWN_MEMBER_ID);
        let (codes, _) = g.leave(&[Leaver { member_id: "nobody".into(), instance_id: None }], 340);
        assert_eq!(codes, vec![UNKNOWN_MEMBER_ID]);
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let cfg = cfg0();
        let mut g = Group::new("g", 0);
        let mut r = join_req("", true);
        r.instance_id = Some("i1".into());
        let fx = g.join(1, r.clone(), "a", 0, &cfg);
        assert!(
            matches!(&fx[..], [Effect::Join(1, o)] if o.error == ec::NONE && o.member_id == "a"),
            "static members skip MEMBER_ID_REQUIRED"
        );
        let _ = g.sync(
            2,
            1,
            "a",
            Some("i1"),
            None,
            None,
            vec![("a".into(), Bytes::from_static(b"A"))],
            0,
            &cfg,
        );
        assert_eq!(g.state(), GroupState::Stable);
        // Restarted with the same instance id and metadata: new id, same generation, no rebalance.
        let fx = g.join(3, r.clone(), "a2", 10, &cfg);
        assert!(fx.iter().any(|e| matches!(e, Effect::Join(3, o) if o.error == ec::NONE && o.member_id == "a2" && o.generation == 1)));
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(
            g.heartbeat(1, "a", Some("i1"), 10),
            FENCED_INSTANCE_ID,
            "the old incarnation is fenced"
        );
        let fx = g.sync(4, 1, "a2", Some("i1"), None, None, vec![], 10, &cfg);
        assert!(
            matches!(&fx[..], [Effect::Sync(4, o)] if o.assignment == Bytes::from_static(b"A")),
            "the assignment carries over"
        );
        // Changed metadata: rebalance.
        r.protocols = protocols(1);
        let fx = g.join(5, r, "a3", 20, &cfg);
        assert!(fx.iter().any(|e| matches!(e, Effect::Join(5, o) if o.generation == 2)));
    }

    #[test]
    fn offsets_expire_only_in_empty_groups() {
        let cfg = cfg0();
        let o = |ts| {
            Some(CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: ts,
            })
        };
        // A simple consumer's offsets expire by commit time.
        let mut simple = Group::new("s", 0);
        simple.apply_offset("t", 0, o(0));
        simple.apply_offset("t", 1, o(500));
        assert_eq!(simple.expire_offsets(999, 1000), vec![]);
        assert_eq!(simple.expire_offsets(1000, 1000), vec![("t".to_string(), 0)]);
        assert!(!simple.try_delete(1000));
        assert_eq!(simple.expire_offsets(1500, 1000).len(), 1);
        assert!(simple.try_delete(1500));
        assert_eq!(simple.state(), GroupState::Dead);
        // A consumer group keeps offsets while it has members; once Empty, from that moment.
        let mut g = Group::new("g", 0);
        let _ = g.join(1, join_req("", false), "a", 0, &cfg);
        g.apply_offset("t", 0, o(0));
        assert_eq!(g.expire_offsets(10_000, 1000), vec![]);
        let _ = g.leave(&[Leaver { member_id: "a".into(), instance_id: None }], 20_000);
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(g.expire_offsets(20_999, 1000), vec![]);
        assert_eq!(g.expire_offsets(21_000, 1000).len(), 1);
        assert!(g.try_delete(21_000));
    }

    #[test]
    fn limits_and_protocol_checks() {
        let mut cfg = cfg0();
        cfg.members_max = 1;
        let mut g = Group::new("g", 0);
        let mut short = join_req("", false);
        short.session_timeout_ms = 1;
        assert!(
            matches!(&g.join(1, short, "a", 0, &cfg)[..], [Effect::Join(1, o)] if o.error == INVALID_SESSION_TIMEOUT)
        );
        let _ = g.join(2, join_req("", false), "a", 0, &cfg);
        assert!(
            matches!(&g.join(3, join_req("", false), "b", 0, &cfg)[..], [Effect::Join(3, o)] if o.error == GROUP_MAX_SIZE_REACHED)
        );
        cfg.members_max = 10;
        let mut other = join_req("", false);
        other.protocol_type = "connect".into();
        assert!(
            matches!(&g.join(4, other, "c", 0, &cfg)[..], [Effect::Join(4, o)] if o.error == INCONSISTENT_GROUP_PROTOCOL)
        );
        let mut disjoint = join_req("", false);
        disjoint.protocols = protocols(2);
        assert!(
            matches!(&g.join(5, disjoint, "d", 0, &cfg)[..], [Effect::Join(5, o)] if o.error == INCONSISTENT_GROUP_PROTOCOL)
        );
        let mut big = join_req("", false);
        big.protocols = vec![("range".into(), Bytes::from(vec![0u8; cfg.member_bytes_max + 1]))];
        assert!(
            matches!(&g.join(6, big, "e", 0, &cfg)[..], [Effect::Join(6, o)] if o.error == ec::INVALID_REQUEST)
        );
        // Simple commits only while the group has no members.
        assert_eq!(g.validate_commit(-1, "", None, 0), Err(UNKNOWN_MEMBER_ID));
        let mut empty = Group::new("h", 0);
        assert_eq!(empty.validate_commit(-1, "", None, 0), Ok(()));
    }

    /// A ConsumerProtocolSubscription of `topics` (version 1: topics, null user data, no owned
    /// partitions).
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        Bytes::from(b)
    }

    fn offset(o: i64) -> Option<CommittedOffset> {
        Some(CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        })
    }

    #[test]
    fn only_empty_groups_are_deleted_with_their_offsets() {
        let cfg = cfg0();
        let mut busy = stable_group(&cfg);
        busy.apply_offset("t", 0, offset(5));
        assert_eq!(busy.delete(1), Err(NON_EMPTY_GROUP));
        assert_eq!(busy.state(), GroupState::Stable);
        assert_eq!(busy.offsets.len(), 1, "a refused delete keeps the offsets");

        let mut simple = Group::new("s", 0);
        simple.apply_offset("t", 0, offset(5));
        simple.apply_offset("u", 2, offset(7));
        let gone = simple.delete(1).expect("an Empty group is deleted");
        assert_eq!(gone, vec![("t".to_string(), 0), ("u".to_string(), 2)]);
        assert_eq!(simple.state(), GroupState::Dead);
        assert!(simple.offsets.is_empty());
        assert_eq!(simple.delete(2), Err(GROUP_ID_NOT_FOUND), "deleted twice");
        assert_eq!(simple.offsets_deletable(&[("t".into(), 0)]), Err(GROUP_ID_NOT_FOUND));
    }

    #[test]
    fn offsets_of_subscribed_topics_stay() {
        let cfg = cfg0();
        let mut g = Group::new("g", 0);
        let mut r = join_req("", false);
        r.protocols = vec![("range".into(), subscription(&["t", "u"]))];
        let _ = g.join(1, r, "a", 0, &cfg);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        let want = [("t".to_string(), 0), ("x".to_string(), 1), ("u".to_string(), 3)];
        assert_eq!(
            g.offsets_deletable(&want),
            Ok(vec![GROUP_SUBSCRIBED_TO_TOPIC, ec::NONE, GROUP_SUBSCRIBED_TO_TOPIC])
        );
        // Members of another protocol type: their subscriptions cannot be read.
        let mut other = Group::new("o", 0);
        let mut r = join_req("", false);
        r.protocol_type = "connect".into();
        let _ = other.join(1, r, "a", 0, &cfg);
        assert_eq!(other.offsets_deletable(&want), Err(NON_EMPTY_GROUP));
        // An Empty group: everything may go.
        assert_eq!(Group::new("e", 0).offsets_deletable(&want), Ok(vec![ec::NONE; 3]));
    }

    proptest! {
        /// Any bytes: a subscription decodes or is refused, never panics or over-allocates; a
        /// well-formed one gives back its topics.
        #[test]
        fn subscriptions_decode_within_bounds(
            junk in prop::collection::vec(any::<u8>(), 0..64),
            topics in prop::collection::vec("[a-z]{0,8}", 0..6),
        ) {
            let _ = consumer_subscription(&junk);
            let refs: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
            prop_assert_eq!(consumer_subscription(&subscription(&refs)), Some(topics.clone()));
            let whole = subscription(&refs);
            for cut in 0..whole.len().min(6 + topics.iter().map(|t| t.len() + 2).sum::<usize>()) {
                let _ = consumer_subscription(&whole[..cut]);
            }
        }
    }
}
