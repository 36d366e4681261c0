//! The async glue between a consumer and its group coordinator: FindCoordinator, the join task
//! (JoinGroup → the leader's assignment → SyncGroup), the heartbeat task, OffsetCommit,
//! OffsetFetch and LeaveGroup. Every decision is [`Membership`]'s; this file sends requests and
//! obeys its [`Next`].
//!
//! - The coordinator gets its own connection (as Kafka's client does), whose request timeout
//!   covers a JoinGroup parked on the broker for up to the rebalance timeout
//!   (`max.poll.interval.ms`) plus 5 s.
//! - The join runs as a task so `Consumer::poll(timeout)` can return empty while a rebalance
//!   waits for other members and pick the result up at a later poll.
//! - The heartbeat task beats every `heartbeat.interval.ms` while the member is stable, and leaves
//!   the group when `poll` was not called within `max.poll.interval.ms` (no LeaveGroup for a
//!   static member, as Kafka: its session timeout decides).
//!
//! Runtime-agnostic: tokio (madsim-tokio) tasks, time and sync only; no unbiased `select!`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use net_model::Network;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::assignor::{assign, MemberSubscription, Strategy};
use super::membership::{GroupError, JoinResponse, MemberState, Membership, Next, NO_GENERATION};
use super::protocol::{
    decode_cooperative_user_data, decode_sticky_user_data, encode_cooperative_user_data,
    encode_sticky_user_data, Assignment, Subscription, CONSUMER_PROTOCOL_VERSION,
};
use crate::accumulator::TopicPartition;
use crate::cluster::Cluster;
use crate::conn::{Conn, ConnConfig, ConnError};
use crate::errors::{self, ErrorCode};

/// Quick rejoins in a row (REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED) before backing off.
const QUICK_REJOINS_MAX: u32 = 10;
/// Kafka's slack over the rebalance timeout for a JoinGroup's request timeout.
const JOIN_SLACK_MS: u64 = 5_000;

/// The group settings of a consumer (Kafka's names in `ConsumerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: u64,
    /// `max.poll.interval.ms`: also the rebalance timeout sent in JoinGroup.
    pub rebalance_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// `partition.assignment.strategy`, in preference order.
    pub strategies: Vec<Strategy>,
    pub retry_backoff_ms: u64,
    pub request_timeout_ms: u64,
    pub default_api_timeout_ms: u64,
}

/// A finished join: the member's place in the new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinDone {
    pub generation: i32,
    pub member_id: String,
    pub protocol: Strategy,
    pub assignment: Vec<TopicPartition>,
    /// The leader's metadata snapshot: every topic the group subscribes to and the partition
    /// counts it assigned from (`None` for followers). Kafka's leader rejoins when it changes.
    pub leader_snapshot: Option<LeaderSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderSnapshot {
    pub topics: Vec<String>,
    /// Topics that existed, with their partition counts.
    pub counts: BTreeMap<String, i32>,
}

struct Shared {
    membership: Membership,
    conn: Option<Arc<Conn>>,
    last_poll: Instant,
    fatal: Option<GroupError>,
}

struct Inner {
    settings: GroupSettings,
    net: Arc<dyn Network>,
    cluster: Arc<Cluster>,
    conn_cfg: ConnConfig,
    shared: Mutex<Shared>,
}

type JoinResult = Result<JoinDone, GroupError>;

/// One member's link to its group. Owned by the consumer; tasks stop when it is dropped.
pub struct GroupCoordinator {
    inner: Arc<Inner>,
    heartbeat: Option<JoinHandle<()>>,
    join: Option<(JoinHandle<()>, oneshot::Receiver<JoinResult>)>,
    /// The eager sticky assignor's memory: the last assignment and its generation.
    last_assignment: Vec<TopicPartition>,
    last_generation: i32,
}

impl Drop for GroupCoordinator {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if let Some((h, _)) = self.join.take() {
            h.abort();
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(self.settings.retry_backoff_ms.max(1))
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms.max(1))
    }

    /// Forgets `conn` as the coordinator connection (if it still is) so the next step rediscovers.
    fn drop_conn(&self, conn: &Arc<Conn>) {
        let mut s = self.lock();
        if s.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            s.conn = None;
        }
    }

    /// FindCoordinator (key type 0) through any broker: the coordinator's `host:port`.
    async fn find_coordinator(&self) -> Result<String, GroupError> {
        let conn = self.cluster.any_conn().await?;
        let v = conn.version(ApiKey::FindCoordinator)?;
        let group = &self.settings.group_id;
        let mut req = FindCoordinatorRequest::default().with_key_type(0);
        if v >= 4 {
            req = req.with_coordinator_keys(vec![sb(group)]);
        } else {
            req = req.with_key(sb(group));
        }
        let resp = conn.request_at(&req, v).await?;
        let (code, host, port) = if v >= 4 {
            match resp.coordinators.first() {
                Some(c) => (c.error_code, c.host.to_string(), c.port),
                None => (ErrorCode::COORDINATOR_NOT_AVAILABLE.code(), String::new(), 0),
            }
        } else {
            (resp.error_code, resp.host.to_string(), resp.port)
        };
        if code != ErrorCode::NONE {
            return Err(GroupError::Broker {
                api: "FindCoordinator",
                code,
                name: errors::error_name(code),
            });
        }
        Ok(format!("{host}:{port}"))
    }

    /// The coordinator connection, discovering and connecting as needed, retrying within
    /// `default.api.timeout.ms`.
    async fn coordinator(&self) -> Result<Arc<Conn>, GroupError> {
        if let Some(c) = self.lock().conn.clone() {
            if c.is_open() {
                return Ok(c);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings.default_api_timeout_ms);
        loop {
            let found = match self.find_coordinator().await {
                Ok(addr) => Conn::connect(self.net.as_ref(), &addr, self.conn_cfg.clone())
                    .await
                    .map_err(GroupError::from),
                Err(e) => Err(e),
            };
            match found {
                Ok(c) => {
                    tracing::debug!(group = %self.settings.group_id, peer = c.peer(), "coordinator found");
                    self.lock().conn = Some(Arc::clone(&c));
                    return Ok(c);
                }
                Err(GroupError::Broker { code, .. })
                    if code != ErrorCode::COORDINATOR_NOT_AVAILABLE
                        && code != ErrorCode::NOT_COORDINATOR
                        && code != ErrorCode::COORDINATOR_LOAD_IN_PROGRESS =>
                {
                    return Err(GroupError::Broker {
                        api: "FindCoordinator",
                        code,
                        name: errors::error_name(code),
                    })
                }
                Err(e) => tracing::debug!(error = %e, "coordinator lookup failed"),
            }
            if Instant::now() >= deadline {
                return Err(GroupError::NoCoordinator { ms: self.settings.default_api_timeout_ms });
            }
            tokio::time::sleep(self.backoff()).await;
        }
    }

    /// Our JoinGroup metadata for `strategy`.
    fn subscription(
        &self,
        strategy: Strategy,
        topics: &[String],
        owned: &[TopicPartition],
        generation: i32,
        last: &(Vec<TopicPartition>, i32),
    ) -> Bytes {
        let mut sub = Subscription::new(topics.to_vec());
        sub.owned_partitions = owned.to_vec();
        sub.generation_id = generation;
        sub.user_data = match strategy {
            // Eager members revoked everything: what they had travels in user data.
            Strategy::Sticky => Some(encode_sticky_user_data(&last.0, Some(last.1))),
            Strategy::CooperativeSticky => Some(encode_cooperative_user_data(generation)),
            _ => None,
        };
        sub.encode(CONSUMER_PROTOCOL_VERSION)
    }

    /// The leader's part: decode every member's subscription, learn partition counts, assign.
    async fn leader_assign(
        &self,
        protocol: Strategy,
        resp: &JoinGroupResponse,
    ) -> Result<(Vec<SyncGroupRequestAssignment>, LeaderSnapshot), GroupError> {
        let mut members = Vec::with_capacity(resp.members.len());
        for m in &resp.members {
            let id = m.member_id.to_string();
            let mut ms = MemberSubscription::new(id.clone(), Vec::<String>::new());
            ms.group_instance_id = m.group_instance_id.as_ref().map(|s| s.to_string());
            match Subscription::decode(&m.metadata) {
                Ok((version, sub)) => {
                    ms.topics = sub.topics.into_iter().collect();
                    match protocol {
                        Strategy::Sticky => {
                            if let Some(Ok((owned, g))) =
                                sub.user_data.as_deref().map(decode_sticky_user_data)
                            {
                                ms.owned = owned;
                                ms.generation = g.unwrap_or(NO_GENERATION);
                            }
                        }
                        Strategy::CooperativeSticky => {
                            ms.owned = sub.owned_partitions;
                            ms.generation = if version >= 2 {
                                sub.generation_id
                            } else {
                                sub.user_data
                                    .as_deref()
                                    .and_then(decode_cooperative_user_data)
                                    .unwrap_or(NO_GENERATION)
                            };
                        }
                        Strategy::Range | Strategy::RoundRobin => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(member = %id, error = %e, "undecodable subscription; assigning it nothing");
                }
            }
            members.push(ms);
        }
        let topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut counts = BTreeMap::new();
        if !topics.is_empty() {
            let meta = self.cluster.refresh_metadata(Some(&topics), false).await?;
            for (name, t) in meta.topics {
                if t.error_code == ErrorCode::NONE && !t.partitions.is_empty() {
                    counts.insert(name, t.partitions.len() as i32);
                }
            }
        }
        let assignment = assign(protocol, &members, &counts);
        tracing::debug!(group = %self.settings.group_id, ?protocol, ?assignment, "leader assigned");
        let snapshot = LeaderSnapshot { topics, counts };
        let assignments = assignment
            .into_iter()
            .map(|(member, partitions)| {
                let bytes =
                    Assignment { partitions, user_data: None }.encode(CONSUMER_PROTOCOL_VERSION);
                SyncGroupRequestAssignment::default()
                    .with_member_id(sb(&member))
                    .with_assignment(bytes)
            })
            .collect();
        Ok((assignments, snapshot))
    }

    /// JoinGroup + SyncGroup until the member is stable in a generation, or a fatal error.
    async fn join(
        &self,
        topics: Vec<String>,
        owned: Vec<TopicPartition>,
        last: (Vec<TopicPartition>, i32),
    ) -> JoinResult {
        let s = &self.settings;
        let mut quick = 0u32;
        loop {
            let conn = self.coordinator().await?;
            let (member_id, generation, instance) = {
                let mut sh = self.lock();
                sh.membership.on_join_sent();
                (
                    sh.membership.member_id.clone(),
                    sh.membership.generation,
                    sh.membership.group_instance_id.clone(),
                )
            };
            let v = conn.version(ApiKey::JoinGroup)?;
            if instance.is_some() && v < 5 {
                return Err(GroupError::Broker {
                    api: "JoinGroup",
                    code: ErrorCode::UNSUPPORTED_VERSION.code(),
                    name: "UNSUPPORTED_VERSION (static membership needs JoinGroup v5)",
                });
            }
            let protocols = s
                .strategies
                .iter()
                .map(|&st| {
                    JoinGroupRequestProtocol::default()
                        .with_name(sb(st.name()))
                        .with_metadata(self.subscription(st, &topics, &owned, generation, &last))
                })
                .collect();
            let mut req = JoinGroupRequest::default()
                .with_group_id(GroupId(sb(&s.group_id)))
                .with_session_timeout_ms(s.session_timeout_ms.min(i32::MAX as u64) as i32)
                .with_member_id(sb(&member_id))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(protocols);
            if v >= 1 {
                req = req
                    .with_rebalance_timeout_ms(s.rebalance_timeout_ms.min(i32::MAX as u64) as i32);
            }
            if v >= 5 {
                req = req.with_group_instance_id(instance.as_deref().map(sb));
            }
            let resp = match conn.request_at(&req, v).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "JoinGroup failed; rediscovering the coordinator");
                    self.drop_conn(&conn);
                    self.lock().membership.reset_generation_if_joining();
                    tokio::time::sleep(self.backoff()).await;
                    continue;
                }
            };
            let jr = JoinResponse {
                error_code: resp.error_code,
                member_id: resp.member_id.to_string(),
                generation_id: resp.generation_id,
                protocol_name: resp.protocol_name.as_ref().map(|p| p.to_string()),
                leader: resp.leader.to_string(),
            };
            let next = self.lock().membership.on_join_response(&jr, &s.strategies);
            if !self.obey(next, &conn, &mut quick).await? {
                continue;
            }
            let (protocol, leader) = {
                let sh = self.lock();
                (
                    sh.membership.protocol.expect("set by a successful join"),
                    sh.membership.is_leader(),
                )
            };
            let (assignments, leader_snapshot) = if leader {
                match self.leader_assign(protocol, &resp).await {
                    Ok((a, snap)) => (a, Some(snap)),
                    Err(e) => {
                        // Without an assignment the generation cannot complete; start over.
                        tracing::warn!(error = %e, "leader could not assign; rejoining");
                        self.lock().membership.request_rejoin();
                        tokio::time::sleep(self.backoff()).await;
                        continue;
                    }
                }
            } else {
                (Vec::new(), None)
            };
            let sv = conn.version(ApiKey::SyncGroup)?;
            let mut sreq = SyncGroupRequest::default()
                .with_group_id(GroupId(sb(&s.group_id)))
                .with_generation_id(jr.generation_id)
                .with_member_id(sb(&jr.member_id))
                .with_assignments(assignments);
            if sv >= 3 {
                sreq = sreq.with_group_instance_id(instance.as_deref().map(sb));
            }
            if sv >= 5 {
                sreq = sreq
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(sb(protocol.name())));
            }
            let sresp = match conn.request_at(&sreq, sv).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "SyncGroup failed; rediscovering the coordinator");
                    self.drop_conn(&conn);
                    self.lock().membership.request_rejoin();
                    tokio::time::sleep(self.backoff()).await;
                    continue;
                }
            };
            let next = self.lock().membership.on_sync_response(sresp.error_code);
            if !self.obey(next, &conn, &mut quick).await? {
                continue;
            }
            let assignment = match Assignment::decode(&sresp.assignment) {
                Ok(a) => a.partitions,
                Err(e) => {
                    // A stable member with garbage for an assignment: nothing sane to consume.
                    self.lock().membership.reset_member_id();
                    return Err(e.into());
                }
            };
            return Ok(JoinDone {
                generation: jr.generation_id,
                member_id: jr.member_id,
                protocol,
                assignment,
                leader_snapshot,
            });
        }
    }

    /// Carries out `next`; `Ok(true)` = go on with this round, `Ok(false)` = start over.
    async fn obey(
        &self,
        next: Next,
        conn: &Arc<Conn>,
        quick: &mut u32,
    ) -> Result<bool, GroupError> {
        match next {
            Next::Done => {
                *quick = 0;
                return Ok(true);
            }
            Next::Rejoin => {
                *quick += 1;
                if *quick > QUICK_REJOINS_MAX {
                    tokio::time::sleep(self.backoff()).await;
                }
            }
            Next::Backoff => tokio::time::sleep(self.backoff()).await,
            Next::FindCoordinator => {
                self.drop_conn(conn);
                tokio::time::sleep(self.backoff()).await;
            }
            Next::Fatal(e) => {
                self.lock().fatal = Some(e.clone());
                return Err(e);
            }
        }
        Ok(false)
    }

    /// LeaveGroup for a dynamic member with a known coordinator; resets the member either way.
    async fn leave(&self, reason: &str) {
        let (member_id, is_static, conn) = {
            let s = self.lock();
            (s.membership.member_id.clone(), s.membership.is_static(), s.conn.clone())
        };
        if !member_id.is_empty() && !is_static {
            if let Some(conn) = conn.filter(|c| c.is_open()) {
                let r = async {
                    let v = conn.version(ApiKey::LeaveGroup)?;
                    let mut req = LeaveGroupRequest::default()
                        .with_group_id(GroupId(sb(&self.settings.group_id)));
                    if v >= 3 {
                        let mut m = MemberIdentity::default().with_member_id(sb(&member_id));
                        if v >= 5 {
                            m = m.with_reason(Some(sb(reason)));
                        }
                        req = req.with_members(vec![m]);
                    } else {
                        req = req.with_member_id(sb(&member_id));
                    }
                    conn.request_at(&req, v).await
                };
                match tokio::time::timeout(self.request_timeout(), r).await {
                    Ok(Ok(resp)) if resp.error_code == ErrorCode::NONE => {
                        tracing::debug!(member = %member_id, reason, "left the group")
                    }
                    Ok(Ok(resp)) => tracing::debug!(code = resp.error_code, "LeaveGroup refused"),
                    Ok(Err(e)) => tracing::debug!(error = %e, "LeaveGroup failed"),
                    Err(_) => tracing::debug!("LeaveGroup timed out"),
                }
            }
        }
        self.lock().membership.on_leave();
    }
}

async fn heartbeat_loop(inner: Arc<Inner>) {
    let interval = Duration::from_millis(inner.settings.heartbeat_interval_ms.max(1));
    let poll_max = Duration::from_millis(inner.settings.rebalance_timeout_ms);
    loop {
        tokio::time::sleep(interval).await;
        let snap = {
            let s = inner.lock();
            (s.membership.state == MemberState::Stable).then(|| {
                (
                    s.conn.clone(),
                    s.membership.generation,
                    s.membership.member_id.clone(),
                    s.membership.group_instance_id.clone(),
                    s.last_poll,
                )
            })
        };
        let Some((conn, generation, member_id, instance, last_poll)) = snap else {
            continue;
        };
        if last_poll.elapsed() > poll_max {
            tracing::warn!(
                group = %inner.settings.group_id,
                member = %member_id,
                "poll was not called within max.poll.interval.ms; leaving the group"
            );
            inner.leave("consumer poll timeout has expired").await;
            // What it owned may already be someone else's: lost, not revoked.
            inner.lock().membership.mark_lost();
            continue;
        }
        let Some(conn) = conn else { continue };
        let r = async {
            let v = conn.version(ApiKey::Heartbeat)?;
            let mut req = HeartbeatRequest::default()
                .with_group_id(GroupId(sb(&inner.settings.group_id)))
                .with_generation_id(generation)
                .with_member_id(sb(&member_id));
            if v >= 3 {
                req = req.with_group_instance_id(instance.as_deref().map(sb));
            }
            conn.request_at(&req, v).await
        };
        match tokio::time::timeout(inner.request_timeout(), r).await {
            Ok(Ok(resp)) => {
                let mut s = inner.lock();
                match s.membership.on_heartbeat_response(generation, resp.error_code) {
                    Next::FindCoordinator
                        if s.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) =>
                    {
                        s.conn = None;
                    }
                    Next::Fatal(e) => s.fatal = Some(e),
                    _ => {}
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "heartbeat failed; the coordinator will be rediscovered");
                inner.drop_conn(&conn);
            }
            Err(_) => {
                tracing::debug!("heartbeat timed out; the coordinator will be rediscovered");
                inner.drop_conn(&conn);
            }
        }
    }
}

impl GroupCoordinator {
    pub fn new(
        settings: GroupSettings,
        net: Arc<dyn Network>,
        cluster: Arc<Cluster>,
        base: &ConnConfig,
    ) -> Self {
        let mut conn_cfg = base.clone();
        conn_cfg.request_timeout = Duration::from_millis(
            settings
                .request_timeout_ms
                .max(settings.rebalance_timeout_ms.saturating_add(JOIN_SLACK_MS)),
        );
        let membership = Membership::new(settings.group_instance_id.clone());
        Self {
            inner: Arc::new(Inner {
                settings,
                net,
                cluster,
                conn_cfg,
                shared: Mutex::new(Shared {
                    membership,
                    conn: None,
                    last_poll: Instant::now(),
                    fatal: None,
                }),
            }),
            heartbeat: None,
            join: None,
            last_assignment: Vec::new(),
            last_generation: NO_GENERATION,
        }
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.inner.settings
    }

    /// (generation id, member id) as the member knows them now.
    pub fn group_metadata(&self) -> (i32, String) {
        let s = self.inner.lock();
        (s.membership.generation, s.membership.member_id.clone())
    }

    pub fn state(&self) -> MemberState {
        self.inner.lock().membership.state
    }

    pub fn protocol(&self) -> Option<Strategy> {
        self.inner.lock().membership.protocol
    }

    /// `poll` was called: resets the `max.poll.interval.ms` clock.
    pub fn touch_poll(&self) {
        self.inner.lock().last_poll = Instant::now();
    }

    pub fn needs_join(&self) -> bool {
        self.join.is_some() || self.inner.lock().membership.needs_join()
    }

    pub fn join_in_flight(&self) -> bool {
        self.join.is_some()
    }

    pub fn request_rejoin(&self) {
        self.inner.lock().membership.request_rejoin();
    }

    /// Takes the "partitions lost" mark.
    pub fn take_lost(&self) -> bool {
        self.inner.lock().membership.take_lost()
    }

    pub fn take_fatal(&self) -> Option<GroupError> {
        self.inner.lock().fatal.take()
    }

    /// Whether the coordinator connection is known and open.
    pub fn coordinator_known(&self) -> bool {
        self.inner.lock().conn.as_ref().is_some_and(|c| c.is_open())
    }

    /// Finds the coordinator now (bounded by `default.api.timeout.ms`).
    pub async fn ensure_coordinator(&self) -> Result<(), GroupError> {
        self.inner.coordinator().await.map(|_| ())
    }

    /// Starts a join round in the background unless one is running. `owned` is what the member
    /// still owns (cooperative) — empty after an eager revocation.
    pub fn start_join(&mut self, topics: Vec<String>, owned: Vec<TopicPartition>) {
        if self.join.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let last = (self.last_assignment.clone(), self.last_generation);
        let handle = tokio::spawn(async move {
            let r = inner.join(topics, owned, last).await;
            let _ = tx.send(r);
        });
        self.join = Some((handle, rx));
    }

    /// Waits up to `wait` for the join round started by [`start_join`](Self::start_join).
    pub async fn poll_join(&mut self, wait: Duration) -> Option<JoinResult> {
        let (_, rx) = self.join.as_mut()?;
        let r = match tokio::time::timeout(wait, rx).await {
            Err(_) => return None,
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(GroupError::Conn(ConnError::Closed {
                peer: "coordinator".into(),
                reason: "join task ended without an answer".into(),
            })),
        };
        self.join = None;
        if let Ok(done) = &r {
            self.last_assignment = done.assignment.clone();
            self.last_generation = done.generation;
            if self.heartbeat.is_none() {
                self.heartbeat = Some(tokio::spawn(heartbeat_loop(Arc::clone(&self.inner))));
            }
        }
        Some(r)
    }

    /// A cloneable handle for commits from other tasks (`commit_async`).
    pub fn handle(&self) -> GroupHandle {
        GroupHandle { inner: Arc::clone(&self.inner) }
    }

    /// See [`GroupHandle::commit`].
    pub async fn commit(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
        subscribed: bool,
    ) -> Result<(), GroupError> {
        self.handle().commit(offsets, subscribed).await
    }

    /// See [`GroupHandle::committed`].
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, GroupError> {
        self.handle().committed(tps).await
    }

    /// Leaves the group (LeaveGroup for dynamic members) and stops the tasks.
    pub async fn leave(&mut self, reason: &str) {
        if let Some((h, _)) = self.join.take() {
            h.abort();
        }
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.inner.leave(reason).await;
    }

    /// Stops the tasks and closes the coordinator connection.
    pub async fn close(&mut self) {
        if let Some((h, _)) = self.join.take() {
            h.abort();
        }
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let conn = self.inner.lock().conn.take();
        if let Some(c) = conn {
            c.close().await;
        }
    }
}

/// Commits and committed-offset lookups, usable from any task.
#[derive(Clone)]
pub struct GroupHandle {
    inner: Arc<Inner>,
}

impl GroupHandle {
    /// OffsetCommit of `offsets` (the next offset to read per partition). `subscribed` members
    /// commit in their generation; a manually assigned consumer with a group id commits as a
    /// "simple" member (generation -1, no member id).
    pub async fn commit(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
        subscribed: bool,
    ) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let deadline =
            Instant::now() + Duration::from_millis(inner.settings.default_api_timeout_ms);
        loop {
            let (generation, member_id, instance) = {
                let s = inner.lock();
                let m = &s.membership;
                if subscribed && m.generation == NO_GENERATION {
                    return Err(GroupError::CommitFailed {
                        code: ErrorCode::REBALANCE_IN_PROGRESS.code(),
                        name: "REBALANCE_IN_PROGRESS (not in a generation)",
                    });
                }
                if subscribed {
                    (m.generation, m.member_id.clone(), m.group_instance_id.clone())
                } else {
                    (NO_GENERATION, String::new(), None)
                }
            };
            let conn = inner.coordinator().await?;
            let v = conn.version(ApiKey::OffsetCommit)?;
            let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
            for (tp, &o) in offsets {
                topics.entry(&tp.topic).or_default().push(
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(tp.partition)
                        .with_committed_offset(o),
                );
            }
            let mut req = OffsetCommitRequest::default()
                .with_group_id(GroupId(sb(&inner.settings.group_id)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(sb(&member_id))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(sb(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            if v >= 7 {
                req = req.with_group_instance_id(instance.as_deref().map(sb));
            }
            let resp =
                tokio::time::timeout(inner.request_timeout(), conn.request_at(&req, v)).await;
            let mut retry: Option<GroupError> = None;
            match resp {
                Err(_) => {
                    inner.drop_conn(&conn);
                    retry = Some(GroupError::Conn(ConnError::Timeout {
                        api: "OffsetCommit",
                        peer: conn.peer().to_string(),
                        ms: inner.settings.request_timeout_ms,
                    }));
                }
                Ok(Err(e)) if e.is_retriable() => {
                    inner.drop_conn(&conn);
                    retry = Some(e.into());
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(resp)) => {
                    for t in &resp.topics {
                        for p in &t.partitions {
                            if p.error_code == ErrorCode::NONE || retry.is_some() {
                                continue;
                            }
                            let r =
                                inner.lock().membership.on_commit_error(generation, p.error_code);
                            match r {
                                Ok(_) => {
                                    if matches!(
                                        ErrorCode::from_code(p.error_code),
                                        ErrorCode::COORDINATOR_NOT_AVAILABLE
                                            | ErrorCode::NOT_COORDINATOR
                                    ) {
                                        inner.drop_conn(&conn);
                                    }
                                    retry = Some(GroupError::CommitPartition {
                                        topic: t.name.to_string(),
                                        partition: p.partition_index,
                                        code: p.error_code,
                                        name: errors::error_name(p.error_code),
                                    });
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    if retry.is_none() {
                        return Ok(());
                    }
                }
            }
            let e = retry.expect("set on every path that gets here");
            if Instant::now() >= deadline {
                return Err(e);
            }
            tracing::debug!(error = %e, "commit will be retried");
            tokio::time::sleep(inner.backoff()).await;
        }
    }

    /// OffsetFetch: the committed offset per partition (`None` = nothing committed).
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, GroupError> {
        let inner = &self.inner;
        let mut out = BTreeMap::new();
        if tps.is_empty() {
            return Ok(out);
        }
        let deadline =
            Instant::now() + Duration::from_millis(inner.settings.default_api_timeout_ms);
        loop {
            let conn = inner.coordinator().await?;
            let v = conn.version(ApiKey::OffsetFetch)?;
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in tps {
                topics.entry(&tp.topic).or_default().push(tp.partition);
            }
            let mut req = OffsetFetchRequest::default()
                .with_group_id(GroupId(sb(&inner.settings.group_id)))
                .with_topics(Some(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(sb(t)))
                                .with_partition_indexes(ps)
                        })
                        .collect(),
                ));
            if v >= 7 {
                req = req.with_require_stable(true);
            }
            let resp =
                tokio::time::timeout(inner.request_timeout(), conn.request_at(&req, v)).await;
            let mut retry_code = None;
            match resp {
                Err(_) => {
                    inner.drop_conn(&conn);
                    retry_code = Some(ErrorCode::NONE.code());
                }
                Ok(Err(e)) if e.is_retriable() => {
                    inner.drop_conn(&conn);
                    retry_code = Some(ErrorCode::NONE.code());
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(resp)) => {
                    let mut codes = vec![resp.error_code];
                    for t in &resp.topics {
                        for p in &t.partitions {
                            codes.push(p.error_code);
                            if p.error_code == ErrorCode::NONE {
                                let tp = TopicPartition::new(t.name.to_string(), p.partition_index);
                                out.insert(
                                    tp,
                                    (p.committed_offset >= 0).then_some(p.committed_offset),
                                );
                            }
                        }
                    }
                    for code in codes.into_iter().filter(|&c| c != ErrorCode::NONE) {
                        match ErrorCode::from_code(code) {
                            ErrorCode::COORDINATOR_NOT_AVAILABLE | ErrorCode::NOT_COORDINATOR => {
                                inner.drop_conn(&conn);
                                retry_code = Some(code);
                            }
                            ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
                            | ErrorCode::UNSTABLE_OFFSET_COMMIT => retry_code = Some(code),
                            e if e.is_retriable() => retry_code = Some(code),
                            e => {
                                return Err(GroupError::Broker {
                                    api: "OffsetFetch",
                                    code,
                                    name: e.name(),
                                })
                            }
                        }
                    }
                    if retry_code.is_none() {
                        for tp in tps {
                            out.entry(tp.clone()).or_insert(None);
                        }
                        return Ok(out);
                    }
                }
            }
            if Instant::now() >= deadline {
                let code = retry_code.unwrap_or(ErrorCode::NONE.code());
                return Err(GroupError::Broker {
                    api: "OffsetFetch",
                    code,
                    name: errors::error_name(code),
                });
            }
            out.clear();
            tokio::time::sleep(inner.backoff()).await;
        }
    }
}
