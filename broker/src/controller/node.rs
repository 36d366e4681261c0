//! One controller of the quorum: drives `cluster::raft::Raft` with real (or virtual) time, the
//! disk and the network, applies the committed metadata log to a `MetadataImage`, and — while it
//! is the Raft leader — is the active controller: it turns broker requests and session expiry
//! into `metadata::Record`s and proposes them.
//!
//! Shape: one actor task owns the Raft core, the store and the image; everything else talks to it
//! through its bounded inbox. Each loop pass handles one timer tick or a batch of inputs, then
//! runs the Raft `Ready` cycle in the contract's order: persist (fsync) → send → apply → advance.
//! Peer messages are queued per peer (bounded; dropped when full, which Raft tolerates) to a
//! sender task that keeps one outbound connection and reconnects with doubling backoff.
//!
//! One Raft entry holds one decision's records (a JSON `Vec<Record>`), so a decision commits
//! atomically. Decisions read the *working image*: the committed image plus every entry of the
//! leader's log beyond it (KRaft decides on uncommitted state too); it is rebuilt whenever the
//! term changes. A request is answered once its entry commits in the term it was proposed in;
//! if leadership moves first it fails with NOT_CONTROLLER / REQUEST_TIMED_OUT and the broker
//! retries (topic creation may then answer TOPIC_ALREADY_EXISTS for its own earlier attempt).
//! With `loglab.unsafe.controller.epoch.fencing.disable` (the bug museum's zombie controller,
//! `crate::safeguards`) a decision is answered as soon as it is appended in the leader's own
//! term: a leader cut off from the quorum, until check-quorum makes it step down, answers
//! decisions that never commit, and the broker acts on them.
//! The active controller's soft state (last heartbeat per broker) starts afresh each term, as in
//! Kafka, so a new controller gives every broker a full session before fencing it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster::metadata::{Controller, ControllerConfig, MetadataImage, Record, TopicId};
use cluster::raft::{Message, NodeId, ProposeError, Raft, Role};
use disk_model::Storage;
use net_model::{Connection, Network};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::frame::{self, FRAME_BYTES_MAX};
use super::raft_log::{RaftStore, StoreError, StoreLimits};
use super::rpc::{
    ControllerRequest, ControllerResponse, MetadataBatch, QuorumConfig, RpcError, Wire,
    FETCH_ENTRIES_MAX,
};

/// Inputs queued to the actor.
const INBOX_MAX: usize = 1_024;
/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 256;
/// Inputs handled per loop pass before the `Ready` cycle runs.
const INPUTS_PER_PASS_MAX: usize = 256;
/// Requests waiting for their entry to commit.
const PENDING_MAX: usize = 4_096;
/// Salts of the seeded rngs, so one subsystem's draws never shift another's.
const SALT_ELECTION: u64 = 0x7261_6674_656c_6563; // "raftelec"
const SALT_TOPIC_ID: u64 = 0x746f_7069_6369_6473; // "topicids"

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    #[error("controller listener {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("node {0} is not among the voters")]
    NotAVoter(NodeId),
}

/// What the node shows to the outside (tests, logs, the broker in combined mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub applied: u64,
}

/// A running controller.
#[derive(Debug)]
pub struct ControllerHandle {
    pub status: watch::Receiver<NodeStatus>,
    /// The committed image (what every voter agrees on).
    pub image: watch::Receiver<Arc<MetadataImage>>,
    /// The bound controller listener (`host:port`).
    pub local_addr: String,
    pub task: JoinHandle<()>,
}

enum Input {
    Peer(Message),
    Request(ControllerRequest, oneshot::Sender<ControllerResponse>),
}

struct Pending {
    term: u64,
    response: ControllerResponse,
    reply: Option<oneshot::Sender<ControllerResponse>>,
    deadline: Instant,
}

/// Starts a controller: recovers `<root>/__cluster_metadata-0/`, binds `listen`, connects to the
/// other voters, and runs until `shutdown` turns true.
pub async fn start(
    cfg: QuorumConfig,
    net: Arc<dyn Network>,
    storage: Arc<dyn Storage>,
    root: &Path,
    listen: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<ControllerHandle, NodeError> {
    if !cfg.voters.contains_key(&cfg.node_id) {
        return Err(NodeError::NotAVoter(cfg.node_id));
    }
    let (store, rec) = RaftStore::open(storage, root, StoreLimits::default()).await?;
    let raft_cfg = cfg.raft_config();
    let rng = ChaCha8Rng::seed_from_u64(
        cfg.seed ^ SALT_ELECTION ^ cfg.node_id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    tracing::info!(
        node = cfg.node_id,
        term = rec.hard_state.term,
        entries = rec.entries.len(),
        commit = rec.hard_state.commit,
        "controller recovering"
    );
    let raft = Raft::restart(raft_cfg, rng, rec.hard_state, rec.entries, 0);
    let listener = net
        .bind(listen)
        .await
        .map_err(|source| NodeError::Listen { addr: listen.to_string(), source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| NodeError::Listen { addr: listen.to_string(), source })?;

    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_MAX);
    let mut peers = BTreeMap::new();
    for (&id, addr) in cfg.voters.iter().filter(|(id, _)| **id != cfg.node_id) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
        peers.insert(id, tx);
        tokio::spawn(peer_sender(cfg.clone(), net.clone(), id, addr.clone(), rx, shutdown.clone()));
    }
    tokio::spawn(accept_loop(listener, inbox_tx, cfg.request_timeout_ms, shutdown.clone()));

    let status0 = status_of(&raft, 0);
    let (status_tx, status) = watch::channel(status0);
    let (image_tx, image) = watch::channel(Arc::new(MetadataImage::default()));
    let node = Node {
        topic_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ SALT_TOPIC_ID ^ cfg.node_id),
        cfg,
        raft,
        store,
        image: MetadataImage::default(),
        applied: 0,
        work: None,
        controller: None,
        pending: BTreeMap::new(),
        peers,
        status_tx,
        image_tx,
        start: Instant::now(),
        last_rebalance_ms: 0,
    };
    let task = tokio::spawn(node.run(inbox_rx, shutdown));
    Ok(ControllerHandle { status, image, local_addr, task })
}

fn status_of(raft: &Raft, applied: u64) -> NodeStatus {
    NodeStatus {
        role: raft.role(),
        term: raft.term(),
        leader: raft.leader(),
        commit: raft.commit_index(),
        applied,
    }
}

fn decode_records(data: &[u8]) -> Vec<Record> {
    if data.is_empty() {
        return Vec::new(); // a leader's no-op
    }
    match serde_json::from_slice(data) {
        Ok(r) => r,
        Err(e) => {
            // Only this code proposes entries, so this is a bug or a corrupted log that passed
            // the CRC; every voter skips it alike.
            tracing::error!(error = %e, "undecodable metadata entry skipped");
            Vec::new()
        }
    }
}

struct Node {
    cfg: QuorumConfig,
    raft: Raft,
    store: RaftStore,
    /// The committed image, through Raft index `applied`.
    image: MetadataImage,
    applied: u64,
    /// The leader's working image: (term, image, last log index folded in).
    work: Option<(u64, MetadataImage, u64)>,
    /// The active controller's soft state, for the term it was made in.
    controller: Option<(u64, Controller)>,
    pending: BTreeMap<u64, Pending>,
    peers: BTreeMap<NodeId, mpsc::Sender<Message>>,
    status_tx: watch::Sender<NodeStatus>,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    topic_rng: ChaCha8Rng,
    start: Instant,
    /// When the leader balance was last checked (`leader.imbalance.check.interval.seconds`).
    last_rebalance_ms: u64,
}

impl Node {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Input>, mut shutdown: watch::Receiver<bool>) {
        let tick = Duration::from_millis(self.cfg.tick_ms.max(1));
        let mut next_tick = Instant::now() + tick;
        let mut since_controller_tick = 0u64;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                r = shutdown.changed() => if r.is_err() { break } else { continue },
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick += tick;
                    self.raft.tick();
                    since_controller_tick += self.cfg.tick_ms;
                    if since_controller_tick >= self.cfg.controller_tick_ms {
                        since_controller_tick = 0;
                        self.controller_tick();
                    }
                    self.expire_pending();
                }
                input = inbox.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    for _ in 1..INPUTS_PER_PASS_MAX {
                        match inbox.try_recv() {
                            Ok(i) => self.handle(i),
                            Err(_) => break,
                        }
                    }
                }
            }
            if let Err(e) = self.process_ready().await {
                // Memory and disk may disagree now; a controller that cannot persist must not
                // vote or lead. It stops; the others carry on.
                tracing::error!(node = self.cfg.node_id, error = %e, "controller stops: cannot persist the metadata log");
                break;
            }
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(ControllerResponse::Error(RpcError::Unavailable(
                    "controller stopped".into(),
                )));
            }
        }
        tracing::info!(node = self.cfg.node_id, "controller stopped");
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Peer(m) => self.raft.step(m),
            Input::Request(req, reply) => self.request(req, reply),
        }
    }

    /// The working image, brought up to the end of the leader's log.
    fn work(&mut self) -> &mut MetadataImage {
        let term = self.raft.term();
        if self.work.as_ref().is_none_or(|w| w.0 != term || w.2 < self.applied) {
            self.work = Some((term, self.image.clone(), self.applied));
        }
        let (_, img, through) = self.work.as_mut().expect("just set");
        for e in &self.raft.log()[*through as usize..] {
            for r in decode_records(&e.data) {
                let _ = img.apply(&r);
            }
            *through = e.index;
        }
        img
    }

    fn active_controller(&mut self) -> &mut Controller {
        let term = self.raft.term();
        if self.controller.as_ref().is_none_or(|c| c.0 != term) {
            let config = ControllerConfig {
                broker_session_timeout_ms: self.cfg.broker_session_timeout_ms,
                unclean_leader_election_enable: self.cfg.unclean_leader_election_enable,
                min_insync_replicas: self.cfg.min_insync_replicas,
                unsafe_elr_disabled: self.cfg.unsafe_elr_disabled,
            };
            self.controller = Some((term, Controller::new(config)));
        }
        &mut self.controller.as_mut().expect("just set").1
    }

    fn controller_tick(&mut self) {
        if self.raft.role() != Role::Leader {
            return;
        }
        let now = self.now_ms();
        let work = self.work().clone();
        let records = self.active_controller().tick(&work, now);
        if !records.is_empty() {
            tracing::info!(
                node = self.cfg.node_id,
                records = records.len(),
                "sessions expired: fencing"
            );
            if let Err(e) = self.propose(&records) {
                tracing::warn!(error = %e, "fencing proposal refused");
            }
            return;
        }
        self.maybe_rebalance(now);
    }

    /// `auto.leader.rebalance.enable`: every `leader.imbalance.check.interval.seconds`, the
    /// preferred replicas of imbalanced brokers are elected (`Controller::rebalance_leaders`).
    fn maybe_rebalance(&mut self, now: u64) {
        let interval = self.cfg.leader_imbalance_check_interval_ms.max(1);
        if !self.cfg.auto_leader_rebalance_enable
            || now.saturating_sub(self.last_rebalance_ms) < interval
        {
            return;
        }
        self.last_rebalance_ms = now;
        let work = self.work().clone();
        let pct = self.cfg.leader_imbalance_per_broker_percentage;
        let records = self.active_controller().rebalance_leaders(&work, pct);
        if records.is_empty() {
            return;
        }
        tracing::info!(
            node = self.cfg.node_id,
            partitions = records.len(),
            "leader imbalance: electing preferred replicas"
        );
        if let Err(e) = self.propose(&records) {
            tracing::warn!(error = %e, "preferred leader proposal refused");
        }
    }

    fn propose(&mut self, records: &[Record]) -> Result<u64, ProposeError> {
        let data = serde_json::to_vec(records).expect("records always serialize");
        self.raft.propose(data)
    }

    fn request(&mut self, req: ControllerRequest, reply: oneshot::Sender<ControllerResponse>) {
        let not_controller =
            ControllerResponse::Error(RpcError::NotController { leader: self.raft.leader() });
        if self.raft.role() != Role::Leader {
            let _ = reply.send(not_controller);
            return;
        }
        match req {
            ControllerRequest::FetchMetadata { after_index, broker_id, acted } => {
                if let Some(b) = broker_id {
                    self.active_controller().note_acted(b, acted);
                }
                let _ = reply.send(self.fetch_metadata(after_index));
                return;
            }
            ControllerRequest::DeletionPending { name } => {
                let _ =
                    reply.send(ControllerResponse::DeletionPending(self.deletion_pending(&name)));
                return;
            }
            _ => {}
        }
        if self.pending.len() >= PENDING_MAX {
            let _ = reply.send(ControllerResponse::Error(RpcError::Unavailable(
                "too many requests in flight".into(),
            )));
            return;
        }
        let now = self.now_ms();
        let work = self.work().clone();
        let decided = match req {
            ControllerRequest::RegisterBroker {
                broker_id,
                incarnation,
                endpoint,
                clean_shutdown,
            } => self
                .active_controller()
                .register_broker(&work, broker_id, incarnation, endpoint, clean_shutdown, now)
                .map(|d| (d.records, ControllerResponse::Registered { broker_epoch: d.reply })),
            ControllerRequest::BrokerHeartbeat { broker_id, broker_epoch, want_fence, logs } => {
                self.active_controller()
                    .heartbeat_with_logs(&work, broker_id, broker_epoch, want_fence, &logs, now)
                    .map(|d| {
                        (
                            d.records,
                            ControllerResponse::Heartbeat {
                                fenced: d.reply.fenced,
                                metadata_index: 0,
                            },
                        )
                    })
            }
            ControllerRequest::AlterPartition(r) => self
                .active_controller()
                .alter_partition(&work, &r)
                .map(|d| (d.records, ControllerResponse::Partition(d.reply))),
            ControllerRequest::CreateTopic { name, partitions, replication_factor, configs } => {
                let mut id = [0u8; 16];
                self.topic_rng.fill_bytes(&mut id);
                // Spread leaders across topics: start where the previous partitions ended.
                let start = work.topics.values().map(|t| t.partitions.len()).sum();
                let rf = replication_factor;
                self.active_controller()
                    .create_topic_with_configs(
                        &work,
                        &name,
                        TopicId(id),
                        partitions,
                        rf,
                        start,
                        &configs,
                    )
                    .map(|d| (d.records, ControllerResponse::TopicCreated(d.reply)))
            }
            ControllerRequest::AlterConfigs { changes } => self
                .active_controller()
                .alter_configs(&work, &changes)
                .map(|d| (d.records, ControllerResponse::ConfigsAltered)),
            ControllerRequest::DeleteTopic { name } => self
                .active_controller()
                .delete_topic(&work, &name)
                .map(|d| (d.records, ControllerResponse::TopicDeleted(d.reply))),
            ControllerRequest::CreateTopicAssigned { name, assignment, configs } => {
                let mut id = [0u8; 16];
                self.topic_rng.fill_bytes(&mut id);
                self.active_controller()
                    .create_topic_assigned_with_configs(
                        &work,
                        &name,
                        TopicId(id),
                        &assignment,
                        &configs,
                    )
                    .map(|d| (d.records, ControllerResponse::TopicCreated(d.reply)))
            }
            ControllerRequest::ElectPreferred { partitions } => {
                let d = self.active_controller().elect_preferred(&work, &partitions);
                Ok((d.records, ControllerResponse::Elected(d.reply)))
            }
            ControllerRequest::CreatePartitions { name, count } => {
                let start = work.topics.values().map(|t| t.partitions.len()).sum();
                self.active_controller()
                    .create_partitions(&work, &name, count, start)
                    .map(|d| (d.records, ControllerResponse::TopicCreated(d.reply)))
            }
            ControllerRequest::FetchMetadata { .. } | ControllerRequest::DeletionPending { .. } => {
                unreachable!("answered above")
            }
        };
        let (records, response) = match decided {
            Ok(x) => x,
            Err(e) => {
                let _ = reply.send(ControllerResponse::Error(RpcError::Controller(e)));
                return;
            }
        };
        if records.is_empty() {
            let _ = reply.send(self.finish(response));
            return;
        }
        self.propose_and_answer(&records, response, reply);
    }

    /// Proposes a decision's records; its answer waits for their commit in this term (or, with
    /// `unsafe_answer_uncommitted`, goes out at once).
    fn propose_and_answer(
        &mut self,
        records: &[Record],
        response: ControllerResponse,
        reply: oneshot::Sender<ControllerResponse>,
    ) {
        match self.propose(records) {
            Ok(index) if self.cfg.unsafe_answer_uncommitted => {
                // The museum's zombie controller: the decision is only in this leader's log.
                tracing::debug!(node = self.cfg.node_id, index, "answered before commit (unsafe)");
                let _ = reply.send(self.finish(response));
            }
            Ok(index) => {
                let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
                let term = self.raft.term();
                self.pending
                    .insert(index, Pending { term, response, reply: Some(reply), deadline });
            }
            Err(ProposeError::NotLeader { leader }) => {
                let _ = reply.send(ControllerResponse::Error(RpcError::NotController { leader }));
            }
            Err(e) => {
                let _ = reply.send(ControllerResponse::Error(RpcError::Unavailable(e.to_string())));
            }
        }
    }

    /// [`Controller::deletion_pending`] on the working image, which is read in place (this is
    /// polled while a DeleteTopics waits; no copy of the image).
    fn deletion_pending(&mut self, name: &str) -> Vec<cluster::metadata::BrokerId> {
        self.active_controller();
        self.work();
        let (Some((_, work, _)), Some((_, controller))) = (&self.work, &self.controller) else {
            unreachable!("both set just above")
        };
        controller.deletion_pending(work, name)
    }

    /// Fills in what is known only at answer time.
    fn finish(&self, response: ControllerResponse) -> ControllerResponse {
        match response {
            ControllerResponse::Heartbeat { fenced, .. } => {
                ControllerResponse::Heartbeat { fenced, metadata_index: self.applied }
            }
            r => r,
        }
    }

    fn fetch_metadata(&self, after_index: u64) -> ControllerResponse {
        let end = self.applied.min(after_index.saturating_add(FETCH_ENTRIES_MAX as u64));
        let from = after_index.min(end);
        let batches = self.raft.log()[from as usize..end as usize]
            .iter()
            .map(|e| MetadataBatch { index: e.index, records: decode_records(&e.data) })
            .collect();
        ControllerResponse::Metadata { batches, committed_index: self.applied }
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(i, _)| *i).collect();
        for i in expired {
            if let Some(r) = self.pending.get_mut(&i).and_then(|p| p.reply.take()) {
                let _ = r.send(ControllerResponse::Error(RpcError::Unavailable(format!(
                    "entry {i} not committed in time"
                ))));
            }
            self.pending.remove(&i);
        }
    }

    async fn process_ready(&mut self) -> Result<(), StoreError> {
        // Each pass makes progress (entries persisted, messages sent, entries applied); the bound
        // only keeps a pathological peer from starving the inbox.
        for _ in 0..64 {
            if !self.raft.has_ready() {
                break;
            }
            let rd = self.raft.ready();
            self.store.persist(rd.hard_state, &rd.entries).await?;
            for m in &rd.messages {
                if let Some(q) = self.peers.get(&m.to) {
                    // Full or closed: dropped; Raft retransmits.
                    let _ = q.try_send(m.clone());
                }
            }
            let mut changed = false;
            for e in &rd.committed_entries {
                for r in decode_records(&e.data) {
                    if let Err(err) = self.image.apply(&r) {
                        tracing::debug!(index = e.index, error = %err, "record rejected by the image");
                    }
                    changed = true;
                }
                self.applied = e.index;
                if let Some(mut p) = self.pending.remove(&e.index) {
                    let resp = if p.term == e.term {
                        self.finish(p.response)
                    } else {
                        ControllerResponse::Error(RpcError::Unavailable(format!(
                            "entry {} was replaced by a new leader",
                            e.index
                        )))
                    };
                    if let Some(r) = p.reply.take() {
                        let _ = r.send(resp);
                    }
                }
            }
            if changed {
                self.image_tx.send_replace(Arc::new(self.image.clone()));
            }
            self.raft.advance(rd);
        }
        let status = status_of(&self.raft, self.applied);
        if status.role != Role::Leader || status.term != self.status_tx.borrow().term {
            self.work = None;
            self.controller = None;
            // An entry of an earlier term may still commit under the new leader, but this node
            // cannot tell; the broker retries with the leader.
            let stale: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| p.term != status.term || status.role != Role::Leader)
                .map(|(i, _)| *i)
                .collect();
            for i in stale {
                if let Some(r) = self.pending.remove(&i).and_then(|mut p| p.reply.take()) {
                    let _ = r.send(ControllerResponse::Error(RpcError::NotController {
                        leader: status.leader,
                    }));
                }
            }
        }
        if *self.status_tx.borrow() != status {
            if status.role != self.status_tx.borrow().role
                || status.leader != self.status_tx.borrow().leader
            {
                tracing::info!(node = self.cfg.node_id, role = ?status.role, term = status.term, leader = ?status.leader, "controller quorum state");
            }
            self.status_tx.send_replace(status);
        }
        Ok(())
    }
}

/// Sends one peer's messages over one connection, reconnecting with doubling backoff.
async fn peer_sender(
    cfg: QuorumConfig,
    net: Arc<dyn Network>,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = cfg.retry_backoff_ms.max(1);
    let mut conn: Option<Connection> = None;
    loop {
        let m = tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return } else { continue },
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        if conn.is_none() {
            let connect = tokio::time::timeout(
                Duration::from_millis(cfg.request_timeout_ms),
                net.connect(&addr),
            );
            match connect.await {
                Ok(Ok(c)) => {
                    tracing::debug!(node = cfg.node_id, peer, %addr, "connected to voter");
                    backoff = cfg.retry_backoff_ms.max(1);
                    conn = Some(c);
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    tracing::debug!(node = cfg.node_id, peer, %addr, error = %why, backoff_ms = backoff, "voter unreachable");
                    // This message is lost (Raft retransmits); wait before the next attempt and
                    // drop what queued meanwhile, which is stale by then.
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(cfg.reconnect_backoff_ms_max.max(1));
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if let Err(e) = frame::write(c.writer.as_mut(), &Wire::Raft(m), FRAME_BYTES_MAX).await {
            tracing::debug!(node = cfg.node_id, peer, error = %e, "voter connection lost");
            conn = None;
        }
    }
}

async fn accept_loop(
    listener: Box<dyn net_model::Listener>,
    inbox: mpsc::Sender<Input>,
    request_timeout_ms: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return } else { continue },
            a = listener.accept() => a,
        };
        match accepted {
            Ok(conn) => {
                tokio::spawn(serve_conn(conn, inbox.clone(), request_timeout_ms, shutdown.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "controller accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One inbound connection: Raft frames from a voter, or requests from a broker.
async fn serve_conn(
    mut conn: Connection,
    inbox: mpsc::Sender<Input>,
    request_timeout_ms: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let frame = tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return } else { continue },
            f = frame::read::<Wire, _>(&mut conn.reader, FRAME_BYTES_MAX) => f,
        };
        match frame {
            Ok(None) => return,
            Err(e) => {
                tracing::info!(peer = %conn.peer, error = %e, "closing controller connection");
                return;
            }
            Ok(Some(Wire::Raft(m))) => {
                // Full: dropped, as a lossy network would.
                if let Err(mpsc::error::TrySendError::Closed(_)) = inbox.try_send(Input::Peer(m)) {
                    return;
                }
            }
            Ok(Some(Wire::Request(req))) => {
                let (tx, rx) = oneshot::channel();
                if inbox.send(Input::Request(req, tx)).await.is_err() {
                    return;
                }
                // The node answers every request by its deadline; the slack covers a slow fsync.
                let wait = Duration::from_millis(request_timeout_ms.saturating_mul(2));
                let resp = match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(r)) => r,
                    _ => ControllerResponse::Error(RpcError::Unavailable(
                        "no answer from the controller".into(),
                    )),
                };
                if let Err(e) =
                    frame::write(conn.writer.as_mut(), &Wire::Response(resp), FRAME_BYTES_MAX).await
                {
                    tracing::debug!(peer = %conn.peer, error = %e, "controller connection lost");
                    return;
                }
            }
            Ok(Some(Wire::Response(_))) => {
                tracing::info!(peer = %conn.peer, "closing controller connection: unexpected response frame");
                return;
            }
        }
    }
}
