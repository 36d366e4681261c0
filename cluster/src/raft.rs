//! The Raft consensus core (Ongaro & Ousterhout) for the controller quorum, without IO.
//!
//! Inputs in, effects out, in the style of raft-rs's `RawNode`: the caller feeds [`Raft::tick`]
//! (logical time; the caller maps ticks to ms), [`Raft::step`] (a message from a peer) and
//! [`Raft::propose`], then takes a [`Ready`] and, in this order,
//! 1. persists `hard_state` (if any) and `entries` (first truncating its log at the first
//!    entry's index: entries replace any suffix from there), in either order,
//! 2. sends `messages`,
//! 3. applies `committed_entries` to the state machine,
//! 4. calls [`Raft::advance`] with the ready. No other call may come between `ready` and `advance`.
//!
//! Safety (the paper's properties, property-tested in `raft/tests.rs` under message loss,
//! duplication, reordering, partitions and crash-restarts):
//! - election safety: a node votes once per term (the vote is persisted before the answer is
//!   sent), so at most one leader per term;
//! - a vote is granted only to a candidate whose log is at least as up to date (last term, then
//!   last index), which gives leader completeness;
//! - log matching: AppendEntries carries the previous entry's index and term; a follower only
//!   appends after a match and only truncates a conflicting suffix, never a committed entry;
//! - a leader commits by counting replicas only for entries of its own term (earlier ones commit
//!   with them), and counts itself only for entries it has persisted, so a committed entry is on
//!   the disks of a majority;
//! - restart from the persisted [`HardState`] and log resumes as a follower in the same term with
//!   the same vote.
//!
//! Availability: randomized election timeouts (drawn from a seeded `ChaCha8Rng` handed in);
//! pre-vote, so a node cut off from the quorum does not inflate terms and depose a healthy leader
//! when it comes back; check-quorum, so a leader that has not heard from a majority for an
//! election timeout steps down, and followers that hear from a leader ignore vote requests
//! within that time (leader lease).
//!
//! Limits: entries per AppendEntries (`max_entries_per_append`), uncommitted entries on a leader
//! (`max_uncommitted_entries`: `propose` fails beyond), bytes per entry (`max_entry_bytes`),
//! committed entries handed out per [`Ready`] (`max_apply_entries_per_ready`).
//!
//! Not implemented: snapshots / log compaction (the log grows without bound; the metadata image
//! is rebuilt by replaying it), membership changes (the voter set is fixed), leadership transfer,
//! read-index, pipelining (a leader re-sends from a follower's next index until it is
//! acknowledged: simple, and enough for a metadata log).

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// A log entry. Index 1 is the first; `data` empty marks the no-op a new leader appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub data: Vec<u8>,
}

/// What must be on disk before messages that depend on it are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    pub commit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" (the sender's term + 1; nobody changes term for it).
    PreVote {
        last_log_index: u64,
        last_log_term: u64,
    },
    PreVoteResponse {
        granted: bool,
    },
    RequestVote {
        last_log_index: u64,
        last_log_term: u64,
    },
    RequestVoteResponse {
        granted: bool,
    },
    AppendEntries {
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    },
    /// On success `index` is the last index known to match the leader's log; on rejection it is
    /// the rejected `prev_log_index` and `hint` the follower's guess of the last index that could
    /// match.
    AppendEntriesResponse {
        success: bool,
        index: u64,
        hint: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub id: NodeId,
    /// Every voter, including `id`.
    pub voters: Vec<NodeId>,
    /// Election timeouts are drawn uniformly from `[min, max)` ticks.
    pub election_timeout_ticks_min: u32,
    pub election_timeout_ticks_max: u32,
    pub heartbeat_interval_ticks: u32,
    pub max_entries_per_append: usize,
    pub max_uncommitted_entries: usize,
    pub max_entry_bytes: usize,
    pub max_apply_entries_per_ready: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
}

impl Config {
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Self {
            id,
            voters,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            max_entries_per_append: 64,
            max_uncommitted_entries: 1_024,
            max_entry_bytes: 1 << 20,
            max_apply_entries_per_ready: 256,
            pre_vote: true,
            check_quorum: true,
        }
    }

    fn validate(&self) {
        let set: BTreeSet<NodeId> = self.voters.iter().copied().collect();
        assert!(
            set.len() == self.voters.len() && set.contains(&self.id),
            "bad voters {:?} for {}",
            self.voters,
            self.id
        );
        assert!(
            0 < self.heartbeat_interval_ticks
                && self.heartbeat_interval_ticks < self.election_timeout_ticks_min
                && self.election_timeout_ticks_min < self.election_timeout_ticks_max,
            "need 0 < heartbeat < election min < election max ticks"
        );
        assert!(
            self.max_entries_per_append > 0
                && self.max_uncommitted_entries > 0
                && self.max_apply_entries_per_ready > 0
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("{uncommitted} uncommitted entries, the limit")]
    TooManyUncommitted { uncommitted: usize },
    #[error("entry of {len} bytes exceeds {max}")]
    EntryTooLarge { len: usize, max: usize },
    #[error("empty entries are reserved for the leader's no-op")]
    Empty,
}

/// Effects for the caller; see the module docs for the order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    match_index: u64,
    next_index: u64,
}

/// One Raft node.
#[derive(Debug, Clone)]
pub struct Raft {
    config: Config,
    rng: ChaCha8Rng,
    role: Role,
    term: u64,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    /// `log[i]` has index `i + 1`.
    log: Vec<Entry>,
    commit: u64,
    applied: u64,
    /// Entries from this index on were not yet handed out in a `Ready`.
    unstable_from: u64,
    /// The last index known to be on disk.
    persisted: u64,
    persisted_hard_state: HardState,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    election_timeout: u32,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    /// Peers heard from since the last check-quorum round (leader only).
    recent_active: BTreeSet<NodeId>,
    messages: Vec<Message>,
    /// A `Ready` was handed out and not yet advanced.
    ready_pending: bool,
}

impl Raft {
    /// A brand-new node with an empty log.
    pub fn new(config: Config, rng: ChaCha8Rng) -> Self {
        Self::restart(config, rng, HardState::default(), Vec::new(), 0)
    }

    /// A node restarted from what it persisted; `applied` is what the state machine already has
    /// (0 if it is rebuilt by replaying the log).
    pub fn restart(
        config: Config,
        rng: ChaCha8Rng,
        hard_state: HardState,
        log: Vec<Entry>,
        applied: u64,
    ) -> Self {
        config.validate();
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.index, i as u64 + 1, "persisted log is not contiguous from 1");
            assert!(i == 0 || log[i - 1].term <= e.term, "persisted log terms go back");
        }
        let last = log.len() as u64;
        // The caller may have persisted the entries and the hard state of one `Ready` in either
        // order and crashed in between. A commit beyond the log is knowledge to re-learn; a log
        // term beyond the persisted term means that term's hard state (and so any vote in it)
        // never became durable — and nothing was sent on its behalf, since messages go out only
        // after both are on disk.
        let mut hard_state = hard_state;
        hard_state.commit = hard_state.commit.min(last);
        if let Some(e) = log.last().filter(|e| e.term > hard_state.term) {
            hard_state = HardState { term: e.term, vote: None, commit: hard_state.commit };
        }
        assert!(
            applied <= hard_state.commit,
            "applied {applied} beyond commit {}",
            hard_state.commit
        );
        let mut r = Self {
            config,
            rng,
            role: Role::Follower,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            log,
            commit: hard_state.commit,
            applied,
            unstable_from: last + 1,
            persisted: last,
            persisted_hard_state: hard_state,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            recent_active: BTreeSet::new(),
            messages: Vec::new(),
            ready_pending: false,
        };
        r.reset_election_timer();
        r
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> u64 {
        self.commit
    }
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    pub fn last_index(&self) -> u64 {
        self.log.len() as u64
    }
    pub fn log(&self) -> &[Entry] {
        &self.log
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.commit }
    }

    fn quorum(&self) -> usize {
        self.config.voters.len() / 2 + 1
    }
    fn last_term(&self) -> u64 {
        self.log.last().map_or(0, |e| e.term)
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.log.get(index as usize - 1).map(|e| e.term)
    }
    fn peers(&self) -> Vec<NodeId> {
        self.config.voters.iter().copied().filter(|v| *v != self.config.id).collect()
    }
    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.messages.push(Message { from: self.config.id, to, term: self.term, body });
    }
    fn send_with_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        self.messages.push(Message { from: self.config.id, to, term, body });
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let span = u64::from(
            self.config.election_timeout_ticks_max - self.config.election_timeout_ticks_min,
        );
        self.election_timeout =
            self.config.election_timeout_ticks_min + (self.rng.next_u64() % span) as u32;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.term, "term goes back");
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.reset_election_timer();
    }

    fn campaign(&mut self, pre: bool) {
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        let term = if pre {
            self.role = Role::PreCandidate;
            self.term + 1
        } else {
            self.role = Role::Candidate;
            self.term += 1;
            self.vote = Some(self.config.id);
            self.term
        };
        self.votes.insert(self.config.id, true);
        if self.votes.len() >= self.quorum() {
            return self.won_election(pre);
        }
        let (last_log_index, last_log_term) = (self.last_index(), self.last_term());
        for p in self.peers() {
            let body = if pre {
                MessageBody::PreVote { last_log_index, last_log_term }
            } else {
                MessageBody::RequestVote { last_log_index, last_log_term }
            };
            self.send_with_term(p, term, body);
        }
    }

    fn won_election(&mut self, pre: bool) {
        if pre {
            self.campaign(false);
        } else {
            self.become_leader();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.votes.clear();
        self.reset_election_timer();
        self.recent_active.clear();
        let next_index = self.last_index() + 1;
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| (p, Progress { match_index: 0, next_index }))
            .collect();
        // A no-op of the new term: earlier entries commit only with an entry of the leader's term.
        self.append(Vec::new());
        self.broadcast_append();
    }

    fn append(&mut self, data: Vec<u8>) -> u64 {
        let index = self.last_index() + 1;
        self.log.push(Entry { term: self.term, index, data });
        index
    }

    /// Ticks are logical time: one call is one tick.
    pub fn tick(&mut self) {
        assert!(!self.ready_pending, "tick between ready() and advance()");
        self.election_elapsed += 1;
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
                self.heartbeat_elapsed = 0;
                self.broadcast_append();
            }
            if self.election_elapsed >= self.config.election_timeout_ticks_min {
                self.election_elapsed = 0;
                if self.config.check_quorum {
                    let active = self.recent_active.len() + 1;
                    self.recent_active.clear();
                    if active < self.quorum() {
                        let term = self.term;
                        self.become_follower(term, None);
                    }
                }
            }
        } else if self.election_elapsed >= self.election_timeout {
            self.campaign(self.config.pre_vote);
        }
    }

    /// Appends `data` as a new entry (leader only); returns its index. The entry is committed
    /// once it shows up in a `Ready`'s `committed_entries` — it may also be lost if leadership
    /// changes first; the caller learns that when a different entry appears at that index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ProposeError> {
        assert!(!self.ready_pending, "propose between ready() and advance()");
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if data.is_empty() {
            return Err(ProposeError::Empty);
        }
        if data.len() > self.config.max_entry_bytes {
            return Err(ProposeError::EntryTooLarge {
                len: data.len(),
                max: self.config.max_entry_bytes,
            });
        }
        let uncommitted = (self.last_index() - self.commit) as usize;
        if uncommitted >= self.config.max_uncommitted_entries {
            return Err(ProposeError::TooManyUncommitted { uncommitted });
        }
        let index = self.append(data);
        self.broadcast_append();
        Ok(index)
    }

    fn in_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_timeout_ticks_min
    }

    fn log_up_to_date(&self, last_log_index: u64, last_log_term: u64) -> bool {
        last_log_term > self.last_term()
            || (last_log_term == self.last_term() && last_log_index >= self.last_index())
    }

    /// Handles a message from a peer. Messages from non-voters are ignored.
    pub fn step(&mut self, m: Message) {
        assert!(!self.ready_pending, "step between ready() and advance()");
        if m.to != self.config.id
            || m.from == self.config.id
            || !self.config.voters.contains(&m.from)
        {
            return;
        }
        if m.term > self.term {
            match &m.body {
                MessageBody::PreVote { .. } | MessageBody::RequestVote { .. }
                    if self.in_lease() =>
                {
                    // A leader is alive as far as we know: a node that lost touch must not take
                    // over (and must not make us move terms).
                    if matches!(m.body, MessageBody::PreVote { .. }) {
                        self.send(m.from, MessageBody::PreVoteResponse { granted: false });
                    }
                    return;
                }
                MessageBody::PreVote { .. } => {}
                // Granted pre-votes carry the term we would campaign in.
                MessageBody::PreVoteResponse { granted: true } if m.term == self.term + 1 => {}
                MessageBody::AppendEntries { .. } => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // A stale leader or candidate learns our term and steps down. Needed with
                // check-quorum/pre-vote: otherwise a node whose term moved ahead while cut off
                // could never rejoin a leader that does not hear its answers.
                MessageBody::AppendEntries { .. } => self.send(
                    m.from,
                    MessageBody::AppendEntriesResponse { success: false, index: 0, hint: 0 },
                ),
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { granted: false })
                }
                _ => {}
            }
            return;
        }

        match m.body {
            MessageBody::PreVote { last_log_index, last_log_term } => {
                // m.term > self.term here, or == (a peer's pre-vote in our own term: refuse, it
                // cannot win a term that already has our vote or leader).
                let granted =
                    m.term > self.term && self.log_up_to_date(last_log_index, last_log_term);
                let term = if granted { m.term } else { self.term };
                self.send_with_term(m.from, term, MessageBody::PreVoteResponse { granted });
            }
            MessageBody::RequestVote { last_log_index, last_log_term } => {
                let can_vote =
                    self.vote == Some(m.from) || (self.vote.is_none() && self.leader.is_none());
                let granted = can_vote && self.log_up_to_date(last_log_index, last_log_term);
                if granted {
                    self.vote = Some(m.from);
                    self.reset_election_timer();
                }
                self.send(m.from, MessageBody::RequestVoteResponse { granted });
            }
            MessageBody::PreVoteResponse { granted } => {
                // Only answers to this campaign count: a grant carries the term we campaign for.
                if self.role == Role::PreCandidate && (!granted || m.term == self.term + 1) {
                    self.count_vote(m.from, granted, true);
                }
            }
            MessageBody::RequestVoteResponse { granted } => {
                if self.role == Role::Candidate && m.term == self.term {
                    self.count_vote(m.from, granted, false);
                }
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                assert_ne!(self.role, Role::Leader, "two leaders in term {}", self.term);
                if self.role != Role::Follower || self.leader != Some(m.from) {
                    self.become_follower(m.term, Some(m.from));
                }
                self.election_elapsed = 0;
                self.handle_append(m.from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            MessageBody::AppendEntriesResponse { success, index, hint } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, success, index, hint);
                }
            }
        }
    }

    fn count_vote(&mut self, from: NodeId, granted: bool, pre: bool) {
        self.votes.entry(from).or_insert(granted);
        let yes = self.votes.values().filter(|g| **g).count();
        let no = self.votes.len() - yes;
        if yes >= self.quorum() {
            self.won_election(pre);
        } else if no >= self.quorum() {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        if prev_log_index < self.commit {
            // Everything up to our commit already matches any leader's log; skip that part.
            let skip = (self.commit - prev_log_index) as usize;
            if skip >= entries.len() {
                let index = self.commit;
                self.send(
                    leader,
                    MessageBody::AppendEntriesResponse { success: true, index, hint: 0 },
                );
                return;
            }
            let prev = self.commit;
            let prev_term = entries[skip - 1].term;
            return self.handle_append(
                leader,
                prev,
                prev_term,
                entries[skip..].to_vec(),
                leader_commit,
            );
        }
        match self.term_at(prev_log_index) {
            Some(t) if t == prev_log_term => {}
            found => {
                // Conflict back-off: our entries after `hint` with a term above the leader's term
                // at `prev_log_index` cannot match (the leader's terms there are ≤ it).
                let mut hint = (prev_log_index - 1).min(self.last_index());
                if found.is_some() {
                    while hint > self.commit
                        && self.term_at(hint).is_some_and(|t| t > prev_log_term)
                    {
                        hint -= 1;
                    }
                }
                self.send(
                    leader,
                    MessageBody::AppendEntriesResponse {
                        success: false,
                        index: prev_log_index,
                        hint,
                    },
                );
                return;
            }
        }
        let last_new = prev_log_index + entries.len() as u64;
        for e in entries {
            assert!(e.term <= self.term, "entry from a future term");
            match self.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(e.index > self.commit, "conflict at committed index {}", e.index);
                    self.log.truncate(e.index as usize - 1);
                    self.unstable_from = self.unstable_from.min(e.index);
                    self.persisted = self.persisted.min(e.index - 1);
                    self.log.push(e);
                }
                None => {
                    assert_eq!(e.index, self.last_index() + 1, "entries not contiguous");
                    self.log.push(e);
                }
            }
        }
        // Only what this message proved to match may be committed (our log may hold a stale
        // suffix beyond `last_new`).
        let commit = leader_commit.min(last_new);
        if commit > self.commit {
            self.commit = commit;
        }
        self.send(
            leader,
            MessageBody::AppendEntriesResponse { success: true, index: last_new, hint: 0 },
        );
    }

    fn handle_append_response(&mut self, from: NodeId, success: bool, index: u64, hint: u64) {
        self.recent_active.insert(from);
        let last = self.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        if success {
            if index > pr.match_index {
                pr.match_index = index.min(last);
                pr.next_index = pr.next_index.max(pr.match_index + 1);
                self.maybe_commit();
            }
            if self.progress[&from].next_index <= last {
                self.send_append(from);
            }
        } else {
            if index < pr.match_index || index + 1 != pr.next_index {
                return; // stale rejection (or our answer to a stale term)
            }
            pr.next_index = (hint + 1).min(index).max(pr.match_index + 1);
            self.send_append(from);
        }
    }

    fn maybe_commit(&mut self) {
        let mut matches: Vec<u64> = self.progress.values().map(|p| p.match_index).collect();
        matches.push(self.persisted);
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let majority = matches[self.quorum() - 1];
        // Only an entry of the current term commits by counting (Raft §5.4.2, Figure 8).
        if majority > self.commit && self.term_at(majority) == Some(self.term) {
            self.commit = majority;
            self.broadcast_append();
        }
    }

    fn broadcast_append(&mut self) {
        for p in self.peers() {
            self.send_append(p);
        }
    }

    fn send_append(&mut self, to: NodeId) {
        let pr = self.progress[&to];
        let prev_log_index = pr.next_index - 1;
        let prev_log_term = self.term_at(prev_log_index).expect("next index within the log");
        let end =
            (prev_log_index as usize + self.config.max_entries_per_append).min(self.log.len());
        let entries = self.log[prev_log_index as usize..end].to_vec();
        // Tell the follower to commit no further than it will then match.
        let leader_commit = self.commit;
        self.send(
            to,
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit },
        );
    }

    pub fn has_ready(&self) -> bool {
        self.unstable_from <= self.last_index()
            || !self.messages.is_empty()
            || self.hard_state() != self.persisted_hard_state
            || self.applied < self.commit
    }

    /// Takes the effects produced so far; call [`advance`](Self::advance) once they are done.
    pub fn ready(&mut self) -> Ready {
        assert!(!self.ready_pending, "ready() twice without advance()");
        self.ready_pending = true;
        let hs = self.hard_state();
        let hard_state = (hs != self.persisted_hard_state).then_some(hs);
        let entries = self.log[(self.unstable_from - 1) as usize..].to_vec();
        let apply_end =
            self.commit.min(self.applied + self.config.max_apply_entries_per_ready as u64);
        let committed_entries = self.log[self.applied as usize..apply_end as usize].to_vec();
        Ready {
            hard_state,
            entries,
            messages: std::mem::take(&mut self.messages),
            committed_entries,
        }
    }

    /// The caller persisted, sent and applied `ready`.
    pub fn advance(&mut self, ready: Ready) {
        assert!(self.ready_pending, "advance() without ready()");
        self.ready_pending = false;
        if let Some(hs) = ready.hard_state {
            self.persisted_hard_state = hs;
        }
        if let Some(last) = ready.entries.last() {
            self.persisted = last.index;
            self.unstable_from = last.index + 1;
        }
        if let Some(last) = ready.committed_entries.last() {
            self.applied = last.index;
        }
        if self.role == Role::Leader {
            // Our own persisted entries count towards the majority now.
            self.maybe_commit();
        }
    }
}

#[cfg(test)]
mod tests;
