//! The group member's state machine, without IO (Kafka's `AbstractCoordinator` /
//! `ConsumerCoordinator` decisions): responses and error codes in, the member's new state and what
//! to do next out. The async glue in [`super::coordinator`] sends the requests and obeys.
//!
//! - JoinGroup: success moves to `CompletingRebalance` with the new member id, generation and
//!   protocol; ErrorCode::MEMBER_ID_REQUIRED (KIP-394) keeps the id the broker handed out and joins again at
//!   once; UNKNOWN_MEMBER_ID resets the id and generation; ErrorCode::ILLEGAL_GENERATION the generation;
//!   ErrorCode::REBALANCE_IN_PROGRESS joins again; ErrorCode::NOT_COORDINATOR / ErrorCode::COORDINATOR_NOT_AVAILABLE rediscover the
//!   coordinator; ErrorCode::COORDINATOR_LOAD_IN_PROGRESS backs off; ErrorCode::FENCED_INSTANCE_ID and the
//!   configuration errors are fatal.
//! - SyncGroup: success makes the member `Stable`; the same error classes as above.
//! - Heartbeat (while `Stable` only; answers for an older generation are ignored):
//!   ErrorCode::REBALANCE_IN_PROGRESS asks for a rejoin that keeps the generation (partitions are revoked
//!   normally), ErrorCode::ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID reset and mark the partitions lost.
//! - A reset while owning partitions means they are lost, not revoked: another member may already
//!   own them, so nothing is committed for them (`on_partitions_lost`).
//!
//! The rebalance bookkeeping around it is pure too: [`before_join`] says what to revoke or lose
//! before joining (eager: everything; cooperative: nothing), [`after_sync`] what changed.

use std::collections::BTreeSet;

use thiserror::Error;

use super::assignor::Strategy;
use super::protocol::ProtocolError;
use crate::accumulator::TopicPartition;
use crate::conn::ConnError;
use crate::errors::ErrorCode;

pub const UNKNOWN_MEMBER_ID: &str = "";
pub const NO_GENERATION: i32 = -1;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GroupError {
    #[error("subscribe needs group.id")]
    NoGroupId,
    #[error("{api} failed: {name} (error code {code})")]
    Broker { api: &'static str, code: i16, name: &'static str },
    /// Kafka's `CommitFailedException`: the group moved on, the offsets were not stored.
    #[error("commit failed: {name} (the group rebalanced; the partitions may be owned by another member now)")]
    CommitFailed { code: i16, name: &'static str },
    #[error("commit of {topic}-{partition} failed: {name} (error code {code})")]
    CommitPartition { topic: String, partition: i32, code: i16, name: &'static str },
    #[error("another member uses group.instance.id `{0}` (ErrorCode::FENCED_INSTANCE_ID)")]
    Fenced(String),
    #[error("the coordinator chose protocol `{0}`, which this member did not offer")]
    UnknownProtocol(String),
    #[error("bad group protocol bytes: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("coordinator: {0}")]
    Conn(#[from] ConnError),
    #[error("no coordinator for the group within {ms} ms")]
    NoCoordinator { ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Not in the group (never joined, reset, or left).
    Unjoined,
    /// JoinGroup sent.
    PreparingRebalance,
    /// JoinGroup answered, SyncGroup sent.
    CompletingRebalance,
    /// Has an assignment for the current generation; heartbeats.
    Stable,
}

/// What the glue does after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Carry on (the step succeeded, or the response needed nothing).
    Done,
    /// Send JoinGroup again now.
    Rejoin,
    /// Join again after `retry.backoff.ms`.
    Backoff,
    /// The coordinator moved or is gone: find it, then join again.
    FindCoordinator,
    Fatal(GroupError),
}

/// A successful-or-not JoinGroup answer, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error_code: i16,
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group_instance_id: Option<String>,
    pub member_id: String,
    pub generation: i32,
    pub protocol: Option<Strategy>,
    pub leader: String,
    pub state: MemberState,
    /// The group must be joined again (heartbeat saw a rebalance, cooperative revocation, ...).
    rejoin_needed: bool,
    /// The generation was lost while the member was in it: what it owned is lost, not revoked.
    lost: bool,
}

impl Membership {
    pub fn new(group_instance_id: Option<String>) -> Self {
        Self {
            group_instance_id,
            member_id: UNKNOWN_MEMBER_ID.into(),
            generation: NO_GENERATION,
            protocol: None,
            leader: String::new(),
            state: MemberState::Unjoined,
            rejoin_needed: true,
            lost: false,
        }
    }

    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    pub fn is_leader(&self) -> bool {
        !self.member_id.is_empty() && self.member_id == self.leader
    }

    /// Whether `poll` must (re)join before fetching.
    pub fn needs_join(&self) -> bool {
        self.rejoin_needed || self.state != MemberState::Stable
    }

    pub fn request_rejoin(&mut self) {
        self.rejoin_needed = true;
    }

    /// Takes the "partitions lost" mark (set by a generation reset while stable or rebalancing).
    pub fn take_lost(&mut self) -> bool {
        std::mem::take(&mut self.lost)
    }

    pub fn reset_generation(&mut self) {
        if self.generation != NO_GENERATION {
            self.lost = true;
        }
        self.generation = NO_GENERATION;
        self.state = MemberState::Unjoined;
        self.rejoin_needed = true;
    }

    pub fn reset_member_id(&mut self) {
        self.member_id = UNKNOWN_MEMBER_ID.into();
        self.reset_generation();
    }

    /// After LeaveGroup (or deciding to leave): a fresh member next time, as Kafka's
    /// `resetGenerationOnLeaveGroup`. Owned partitions were revoked by the caller, not lost.
    pub fn on_leave(&mut self) {
        self.member_id = UNKNOWN_MEMBER_ID.into();
        self.generation = NO_GENERATION;
        self.state = MemberState::Unjoined;
        self.rejoin_needed = true;
    }

    /// The member left on its own (poll timeout): what it owned may already be someone else's.
    pub fn mark_lost(&mut self) {
        self.lost = true;
    }

    /// A JoinGroup lost with its connection: the broker may complete the round without us.
    pub fn reset_generation_if_joining(&mut self) {
        if self.state == MemberState::PreparingRebalance {
            self.state = MemberState::Unjoined;
            self.rejoin_needed = true;
        }
    }

    pub fn on_join_sent(&mut self) {
        self.state = MemberState::PreparingRebalance;
    }

    /// Common error classes of JoinGroup / SyncGroup / Heartbeat / OffsetCommit.
    fn on_error(&mut self, api: &'static str, code: i16) -> Next {
        match ErrorCode::from_code(code) {
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.reset_member_id();
                Next::Rejoin
            }
            ErrorCode::ILLEGAL_GENERATION => {
                self.reset_generation();
                Next::Rejoin
            }
            ErrorCode::REBALANCE_IN_PROGRESS => {
                self.rejoin_needed = true;
                Next::Rejoin
            }
            ErrorCode::COORDINATOR_LOAD_IN_PROGRESS => Next::Backoff,
            ErrorCode::COORDINATOR_NOT_AVAILABLE | ErrorCode::NOT_COORDINATOR => {
                Next::FindCoordinator
            }
            ErrorCode::FENCED_INSTANCE_ID => {
                Next::Fatal(GroupError::Fenced(self.group_instance_id.clone().unwrap_or_default()))
            }
            e => Next::Fatal(GroupError::Broker { api, code, name: e.name() }),
        }
    }

    pub fn on_join_response(&mut self, r: &JoinResponse, offered: &[Strategy]) -> Next {
        if r.error_code == ErrorCode::NONE {
            let name = r.protocol_name.clone().unwrap_or_default();
            let Some(p) = Strategy::from_name(&name).filter(|p| offered.contains(p)) else {
                self.state = MemberState::Unjoined;
                return Next::Fatal(GroupError::UnknownProtocol(name));
            };
            self.member_id = r.member_id.clone();
            self.generation = r.generation_id;
            self.protocol = Some(p);
            self.leader = r.leader.clone();
            self.state = MemberState::CompletingRebalance;
            return Next::Done;
        }
        self.state = MemberState::Unjoined;
        if r.error_code == ErrorCode::MEMBER_ID_REQUIRED {
            // KIP-394: the broker named our id; join again with it.
            self.member_id = r.member_id.clone();
            return Next::Rejoin;
        }
        self.on_error("JoinGroup", r.error_code)
    }

    pub fn on_sync_response(&mut self, error_code: i16) -> Next {
        if self.state != MemberState::CompletingRebalance {
            return Next::Rejoin;
        }
        if error_code == ErrorCode::NONE {
            self.state = MemberState::Stable;
            self.rejoin_needed = false;
            return Next::Done;
        }
        self.state = MemberState::Unjoined;
        self.on_error("SyncGroup", error_code)
    }

    /// A Heartbeat answer for the request sent in `generation`. `Done` also when it asks for a
    /// rejoin: `poll` does that.
    pub fn on_heartbeat_response(&mut self, generation: i32, error_code: i16) -> Next {
        if generation != self.generation || self.state != MemberState::Stable {
            return Next::Done; // stale: the member moved on meanwhile
        }
        if error_code == ErrorCode::NONE {
            return Next::Done;
        }
        match self.on_error("Heartbeat", error_code) {
            Next::Rejoin | Next::Backoff => Next::Done,
            n => n,
        }
    }

    /// An OffsetCommit partition error. Group errors update the member and become
    /// `CommitFailed`; `Ok(true)` means retry (after rediscovering the coordinator when it moved).
    pub fn on_commit_error(
        &mut self,
        generation: i32,
        error_code: i16,
    ) -> Result<bool, GroupError> {
        match ErrorCode::from_code(error_code) {
            ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
            | ErrorCode::COORDINATOR_NOT_AVAILABLE
            | ErrorCode::NOT_COORDINATOR => Ok(true),
            e @ (ErrorCode::ILLEGAL_GENERATION
            | ErrorCode::UNKNOWN_MEMBER_ID
            | ErrorCode::REBALANCE_IN_PROGRESS) => {
                if generation == self.generation {
                    self.on_error("OffsetCommit", error_code);
                }
                Err(GroupError::CommitFailed { code: error_code, name: e.name() })
            }
            ErrorCode::FENCED_INSTANCE_ID => {
                Err(GroupError::Fenced(self.group_instance_id.clone().unwrap_or_default()))
            }
            e if e.is_retriable() => Ok(true),
            e => Err(GroupError::Broker { api: "OffsetCommit", code: error_code, name: e.name() }),
        }
    }
}

/// What to hand the listener before sending JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BeforeJoin {
    /// Revoked cleanly: commit their positions first (auto commit), then `on_partitions_revoked`.
    pub revoked: Vec<TopicPartition>,
    /// Lost with the generation: `on_partitions_lost`, nothing committed.
    pub lost: Vec<TopicPartition>,
}

/// Eager protocols give up everything before joining; cooperative ones keep all (KIP-429). After
/// a lost generation every owned partition is lost whatever the protocol.
pub fn before_join(protocol: Option<Strategy>, lost: bool, owned: &[TopicPartition]) -> BeforeJoin {
    if owned.is_empty() {
        return BeforeJoin::default();
    }
    if lost {
        return BeforeJoin { lost: owned.to_vec(), ..BeforeJoin::default() };
    }
    match protocol {
        Some(p) if p.is_cooperative() => BeforeJoin::default(),
        _ => BeforeJoin { revoked: owned.to_vec(), ..BeforeJoin::default() },
    }
}

/// What changed with a new assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AfterSync {
    /// Owned before, not any more (cooperative: revoke now, then rejoin).
    pub revoked: Vec<TopicPartition>,
    /// New to this member: positions come from committed offsets or `auto.offset.reset`.
    pub added: Vec<TopicPartition>,
    /// Cooperative members that revoked something join again so it can be handed out.
    pub rejoin: bool,
}

pub fn after_sync(
    protocol: Strategy,
    owned: &[TopicPartition],
    assigned: &[TopicPartition],
) -> AfterSync {
    let owned: BTreeSet<&TopicPartition> = owned.iter().collect();
    let assigned: BTreeSet<&TopicPartition> = assigned.iter().collect();
    let revoked: Vec<TopicPartition> = owned.difference(&assigned).map(|t| (*t).clone()).collect();
    let added = assigned.difference(&owned).map(|t| (*t).clone()).collect();
    AfterSync { rejoin: protocol.is_cooperative() && !revoked.is_empty(), revoked, added }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_ok(member: &str, generation: i32, leader: &str) -> JoinResponse {
        JoinResponse {
            error_code: ErrorCode::NONE.code(),
            member_id: member.into(),
            generation_id: generation,
            protocol_name: Some("range".into()),
            leader: leader.into(),
        }
    }

    #[test]
    fn join_sync_stable_then_rebalance() {
        let offered = [Strategy::Range];
        let mut m = Membership::new(None);
        assert!(m.needs_join());
        m.on_join_sent();
        let required = JoinResponse {
            error_code: ErrorCode::MEMBER_ID_REQUIRED.code(),
            ..join_ok("m-1", -1, "")
        };
        assert_eq!(m.on_join_response(&required, &offered), Next::Rejoin);
        assert_eq!(m.member_id, "m-1");
        assert_eq!(m.on_join_response(&join_ok("m-1", 1, "m-1"), &offered), Next::Done);
        assert!(m.is_leader());
        assert_eq!(m.on_sync_response(0), Next::Done);
        assert!(!m.needs_join());
        // A stale heartbeat answer changes nothing; a current ErrorCode::REBALANCE_IN_PROGRESS.code() asks to rejoin.
        assert_eq!(m.on_heartbeat_response(0, ErrorCode::REBALANCE_IN_PROGRESS.code()), Next::Done);
        assert!(!m.needs_join());
        assert_eq!(m.on_heartbeat_response(1, ErrorCode::REBALANCE_IN_PROGRESS.code()), Next::Done);
        assert!(m.needs_join());
        assert!(!m.take_lost(), "a rebalance revokes, it does not lose");
        assert_eq!(m.generation, 1, "rejoining keeps the generation for the sticky assignors");
    }

    #[test]
    fn fencing_errors_reset_and_lose() {
        let offered = [Strategy::Range];
        let mut m = Membership::new(None);
        m.on_join_response(&join_ok("m-1", 4, "x"), &offered);
        m.on_sync_response(0);
        assert_eq!(m.on_heartbeat_response(4, ErrorCode::ILLEGAL_GENERATION.code()), Next::Done);
        assert_eq!((m.member_id.as_str(), m.generation), ("m-1", NO_GENERATION));
        assert!(m.take_lost() && m.needs_join());
        m.on_join_response(&join_ok("m-1", 5, "x"), &offered);
        m.on_sync_response(0);
        assert_eq!(m.on_heartbeat_response(5, ErrorCode::UNKNOWN_MEMBER_ID.code()), Next::Done);
        assert_eq!((m.member_id.as_str(), m.generation), ("", NO_GENERATION));
        assert!(m.take_lost());
        assert_eq!(
            m.on_heartbeat_response(-1, ErrorCode::NOT_COORDINATOR.code()),
            Next::Done,
            "not stable: ignored"
        );
    }

    #[test]
    fn coordinator_and_fatal_errors() {
        let offered = [Strategy::Range];
        let mut m = Membership::new(Some("i-1".into()));
        let r = |code| JoinResponse { error_code: code, ..join_ok("", -1, "") };
        assert_eq!(
            m.on_join_response(&r(ErrorCode::NOT_COORDINATOR.code()), &offered),
            Next::FindCoordinator
        );
        assert_eq!(
            m.on_join_response(&r(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code()), &offered),
            Next::Backoff
        );
        assert_eq!(
            m.on_join_response(&r(ErrorCode::REBALANCE_IN_PROGRESS.code()), &offered),
            Next::Rejoin
        );
        assert_eq!(
            m.on_join_response(&r(ErrorCode::FENCED_INSTANCE_ID.code()), &offered),
            Next::Fatal(GroupError::Fenced("i-1".into()))
        );
        assert!(matches!(
            m.on_join_response(&r(ErrorCode::INCONSISTENT_GROUP_PROTOCOL.code()), &offered),
            Next::Fatal(GroupError::Broker { code: 23, .. })
        ));
        let mut other = join_ok("m", 1, "m");
        other.protocol_name = Some("roundrobin".into());
        assert!(matches!(
            m.on_join_response(&other, &offered),
            Next::Fatal(GroupError::UnknownProtocol(_))
        ));
    }

    #[test]
    fn commit_errors() {
        let mut m = Membership::new(None);
        m.on_join_response(&join_ok("m", 2, "m"), &[Strategy::Range]);
        m.on_sync_response(0);
        assert_eq!(m.on_commit_error(2, ErrorCode::NOT_COORDINATOR.code()), Ok(true));
        assert!(matches!(
            m.on_commit_error(1, ErrorCode::ILLEGAL_GENERATION.code()),
            Err(GroupError::CommitFailed { .. })
        ));
        assert_eq!(m.generation, 2, "an answer for an older generation resets nothing");
        assert!(matches!(
            m.on_commit_error(2, ErrorCode::REBALANCE_IN_PROGRESS.code()),
            Err(GroupError::CommitFailed { .. })
        ));
        assert!(m.needs_join());
    }

    #[test]
    fn revocation_plans() {
        let tp = |p| TopicPartition::new("t", p);
        let owned = [tp(0), tp(1)];
        assert_eq!(before_join(Some(Strategy::Range), false, &owned).revoked, owned.to_vec());
        assert_eq!(before_join(None, false, &owned).revoked, owned.to_vec());
        assert_eq!(
            before_join(Some(Strategy::CooperativeSticky), false, &owned),
            BeforeJoin::default()
        );
        assert_eq!(
            before_join(Some(Strategy::CooperativeSticky), true, &owned).lost,
            owned.to_vec()
        );
        let a = after_sync(Strategy::CooperativeSticky, &owned, &[tp(1), tp(2)]);
        assert_eq!((a.revoked, a.added, a.rejoin), (vec![tp(0)], vec![tp(2)], true));
        let a = after_sync(Strategy::Range, &[], &[tp(1)]);
        assert_eq!((a.revoked.len(), a.added, a.rejoin), (0, vec![tp(1)], false));
    }
}
