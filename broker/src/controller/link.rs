//! The broker's side of the controller quorum: [`ControllerLink`] is what the broker uses;
//! [`RpcLink`] implements it over the controller listener's RPCs.
//!
//! [`RpcLink::spawn`] registers the broker (it starts fenced), then heartbeats every
//! `broker.heartbeat.interval.ms`; the first heartbeat asks to be unfenced. Each heartbeat answer
//! carries the controller's committed metadata index, and when the broker is behind it pulls the
//! committed record batches (`FetchMetadata`) and applies them to its own image, published on a
//! watch channel. A heartbeat refused with STALE_BROKER_EPOCH / BROKER_ID_NOT_REGISTERED (the
//! controller lost us) registers again. Requests go to the last known active controller; a
//! NOT_CONTROLLER answer names the leader to try next, an unreachable voter moves on to the next
//! one, with backoff, until the request timeout.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster::metadata::{
    AlterPartitionRequest, BrokerId, ConfigChange, ControllerError, Endpoint, MetadataImage,
    PartitionState, ReplicaLogInfo, TopicId,
};
use cluster::raft::NodeId;
use net_model::{Connection, Network};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::frame::{self, FRAME_BYTES_MAX};
use super::rpc::{ControllerRequest, ControllerResponse, RpcError, Wire};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The controller decided against the request (a Kafka error code).
    #[error("{0}")]
    Controller(#[from] ControllerError),
    /// No active controller answered in time; the outcome is unknown.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
}

/// What the broker needs from the controller quorum.
#[async_trait]
pub trait ControllerLink: Send + Sync + fmt::Debug {
    fn broker_id(&self) -> BrokerId;
    /// The epoch of this broker's registration; -1 before the first one.
    fn broker_epoch(&self) -> i64;
    /// The committed metadata this broker has applied.
    fn metadata(&self) -> watch::Receiver<Arc<MetadataImage>>;
    async fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> Result<PartitionState, LinkError>;
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
    ) -> Result<TopicId, LinkError>;
    async fn delete_topic(&self, name: &str) -> Result<TopicId, LinkError>;
    /// CreateTopics with topic configs (committed with the topic, as one decision).
    async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicId, LinkError>;
    /// Config sets and deletes, all or nothing; answered once committed and applied here.
    async fn alter_configs(&self, changes: Vec<ConfigChange>) -> Result<(), LinkError>;
    /// CreateTopics with a manual assignment (`assignment[p]`: partition p's replicas) and
    /// topic configs (committed with the topic, as one decision).
    async fn create_topic_assigned(
        &self,
        name: &str,
        assignment: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicId, LinkError> {
        let _ = (name, assignment, configs);
        Err(LinkError::Unavailable("manual assignment is not supported by this link".into()))
    }
    /// ElectLeaders (preferred): a Kafka error code per (topic, partition), in order.
    async fn elect_preferred(&self, partitions: Vec<(String, u32)>) -> Result<Vec<i16>, LinkError> {
        let _ = partitions;
        Err(LinkError::Unavailable("ElectLeaders is not supported by this link".into()))
    }
    /// CreatePartitions: grows topic `name` to `count` partitions; the topic id on success.
    async fn create_partitions(&self, name: &str, count: u32) -> Result<TopicId, LinkError> {
        let _ = (name, count);
        Err(LinkError::Unavailable("CreatePartitions is not supported by this link".into()))
    }
    /// This broker's logs of the partitions awaiting unclean recovery (KIP-966) it is a candidate
    /// for; the link sends them with every heartbeat until replaced (empty: none).
    fn report_logs(&self, _logs: Vec<ReplicaLogInfo>) {}
    /// This broker acted on (applied the roles of, retired the deleted topics of) an image that
    /// had applied `applied` records; the link reports it with its metadata pulls, and the
    /// controller creates a deleted name again only once every live broker acted on the deletion.
    fn report_acted(&self, _applied: u64) {}
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub broker_id: BrokerId,
    /// This process's id, so the controller tells a restart from a duplicate.
    pub incarnation: u64,
    /// Where clients reach this broker (what Metadata advertises).
    pub endpoint: Endpoint,
    /// `controller.quorum.voters`.
    pub voters: BTreeMap<NodeId, String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `controller.quorum.request.timeout.ms`: one request, retries included.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// `loglab.metadata.poll.ms`: how often committed metadata is pulled between heartbeats.
    pub metadata_poll_ms: u64,
    /// Whether this process found its logs cleanly shut down. Only the first registration of the
    /// process says so; a later one (the controller lost us) is clean: nothing was lost since.
    pub clean_shutdown: bool,
}

impl LinkConfig {
    pub fn new(broker_id: BrokerId, endpoint: Endpoint, voters: BTreeMap<NodeId, String>) -> Self {
        Self {
            broker_id,
            incarnation: 0,
            endpoint,
            voters,
            heartbeat_interval_ms: 2_000,
            request_timeout_ms: 5_000,
            retry_backoff_ms: 20,
            metadata_poll_ms: 250,
            clean_shutdown: true,
        }
    }
}

struct Applied {
    image: MetadataImage,
    index: u64,
}

pub struct RpcLink {
    cfg: LinkConfig,
    net: Arc<dyn Network>,
    epoch: AtomicI64,
    fenced: AtomicBool,
    /// The voter to try first (the last known leader).
    target: AtomicU64,
    conn: Mutex<Option<(NodeId, Connection)>>,
    applied: Mutex<Applied>,
    applied_index: AtomicU64,
    /// [`ControllerLink::report_acted`]: sent with every metadata pull.
    acted: AtomicU64,
    /// The `acted` the last metadata pull carried: a heartbeat pulls when it is behind.
    acted_sent: AtomicU64,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    /// The last error, for log lines without flooding them.
    last_error: StdMutex<Option<String>>,
    /// Set by a controlled shutdown: no more heartbeats (one would unfence us again).
    stopping: AtomicBool,
    registered_once: AtomicBool,
    /// What the next heartbeats report for unclean recovery ([`ControllerLink::report_logs`]).
    log_reports: StdMutex<Vec<ReplicaLogInfo>>,
    /// New reports: heartbeat now rather than at the next interval.
    beat_soon: tokio::sync::Notify,
}

impl fmt::Debug for RpcLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcLink")
            .field("broker_id", &self.cfg.broker_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RpcLink {
    pub fn new(cfg: LinkConfig, net: Arc<dyn Network>) -> Arc<Self> {
        assert!(!cfg.voters.is_empty(), "a controller link needs voters");
        let first = *cfg.voters.keys().next().expect("non-empty");
        let (image_tx, _) = watch::channel(Arc::new(MetadataImage::default()));
        Arc::new(Self {
            cfg,
            net,
            epoch: AtomicI64::new(-1),
            fenced: AtomicBool::new(true),
            target: AtomicU64::new(first),
            conn: Mutex::new(None),
            applied: Mutex::new(Applied { image: MetadataImage::default(), index: 0 }),
            applied_index: AtomicU64::new(0),
            acted: AtomicU64::new(0),
            acted_sent: AtomicU64::new(0),
            image_tx,
            last_error: StdMutex::new(None),
            stopping: AtomicBool::new(false),
            registered_once: AtomicBool::new(false),
            log_reports: StdMutex::new(Vec::new()),
            beat_soon: tokio::sync::Notify::new(),
        })
    }

    /// Whether the controller last said this broker is fenced.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// The metadata log index this broker has applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Relaxed)
    }

    /// Registers, then heartbeats and pulls metadata until `shutdown` turns true. Stopping the
    /// task stops the heartbeats, so the controller fences this broker after its session.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let link = self.clone();
        tokio::spawn(async move {
            // Heartbeats every `heartbeat_interval_ms`; between them, metadata pulls every
            // `metadata_poll_ms` so a new topic reaches every broker well within a heartbeat.
            let mut next_beat = Instant::now();
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let now = Instant::now();
                if now >= next_beat {
                    let ok = link.beat().await;
                    let wait = if ok {
                        link.cfg.heartbeat_interval_ms
                    } else {
                        link.cfg.retry_backoff_ms.max(1) * 10
                    };
                    next_beat = now + Duration::from_millis(wait);
                } else if link.broker_epoch() >= 0 && !link.stopping.load(Ordering::Relaxed) {
                    if let Err(e) = link.catch_up().await {
                        link.note_error("metadata fetch", &e);
                    }
                }
                let poll = Instant::now() + Duration::from_millis(link.cfg.metadata_poll_ms.max(1));
                tokio::select! {
                    biased;
                    r = shutdown.changed() => if r.is_err() { return },
                    _ = link.beat_soon.notified() => next_beat = Instant::now(),
                    _ = tokio::time::sleep_until(next_beat.min(poll)) => {}
                }
            }
        })
    }

    fn note_error(&self, what: &str, e: &LinkError) {
        let text = format!("{what}: {e}");
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(broker = self.cfg.broker_id, "{text}");
            *last = Some(text);
        }
    }

    /// Controlled shutdown: asks the controller to fence this broker now, so its partitions get
    /// new leaders at once instead of after `broker.session.timeout.ms`. Heartbeats stop for good.
    pub async fn controlled_shutdown(&self) -> Result<(), LinkError> {
        self.stopping.store(true, Ordering::Relaxed);
        let broker_epoch = self.broker_epoch();
        if broker_epoch < 0 {
            return Ok(());
        }
        let req = ControllerRequest::BrokerHeartbeat {
            broker_id: self.cfg.broker_id,
            broker_epoch,
            want_fence: true,
            logs: Vec::new(),
        };
        match self.call(req).await? {
            ControllerResponse::Heartbeat { fenced: true, .. } => {
                self.fenced.store(true, Ordering::Relaxed);
                tracing::info!(broker = self.cfg.broker_id, "controlled shutdown: fenced");
                Ok(())
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// One registration or heartbeat (and a metadata pull when behind); false on failure.
    async fn beat(&self) -> bool {
        if self.stopping.load(Ordering::Relaxed) {
            return true;
        }
        let epoch = self.epoch.load(Ordering::Relaxed);
        if epoch < 0 {
            let clean_shutdown =
                self.cfg.clean_shutdown || self.registered_once.load(Ordering::Relaxed);
            let req = ControllerRequest::RegisterBroker {
                broker_id: self.cfg.broker_id,
                incarnation: self.cfg.incarnation,
                endpoint: self.cfg.endpoint.clone(),
                clean_shutdown,
            };
            return match self.call(req).await {
                Ok(ControllerResponse::Registered { broker_epoch }) => {
                    self.registered_once.store(true, Ordering::Relaxed);
                    tracing::info!(
                        broker = self.cfg.broker_id,
                        broker_epoch,
                        "registered with the controller"
                    );
                    self.epoch.store(broker_epoch, Ordering::Relaxed);
                    true
                }
                Ok(other) => {
                    self.note_error(
                        "registration",
                        &LinkError::Unavailable(format!("unexpected answer {other:?}")),
                    );
                    false
                }
                Err(e) => {
                    self.note_error("registration", &e);
                    false
                }
            };
        }
        let logs = self.log_reports.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let req = ControllerRequest::BrokerHeartbeat {
            broker_id: self.cfg.broker_id,
            broker_epoch: epoch,
            want_fence: false,
            logs,
        };
        match self.call(req).await {
            Ok(ControllerResponse::Heartbeat { fenced, metadata_index }) => {
                if self.fenced.swap(fenced, Ordering::Relaxed) != fenced {
                    tracing::info!(
                        broker = self.cfg.broker_id,
                        fenced,
                        "controller changed our fencing"
                    );
                }
                // Also when this broker acted on an image the controller has not heard of: with
                // heartbeats more frequent than metadata pulls, this is the only report.
                let unreported =
                    self.acted.load(Ordering::Relaxed) > self.acted_sent.load(Ordering::Relaxed);
                if metadata_index > self.applied_index() || unreported {
                    if let Err(e) = self.catch_up().await {
                        self.note_error("metadata fetch", &e);
                    }
                }
                true
            }
            Err(LinkError::Controller(
                ControllerError::StaleBrokerEpoch | ControllerError::BrokerIdNotRegistered,
            )) => {
                tracing::warn!(
                    broker = self.cfg.broker_id,
                    epoch,
                    "controller does not know our registration; registering again"
                );
                self.epoch.store(-1, Ordering::Relaxed);
                self.fenced.store(true, Ordering::Relaxed);
                false
            }
            Ok(other) => {
                self.note_error(
                    "heartbeat",
                    &LinkError::Unavailable(format!("unexpected answer {other:?}")),
                );
                false
            }
            Err(e) => {
                self.note_error("heartbeat", &e);
                false
            }
        }
    }

    /// Pulls and applies committed metadata until caught up with the controller.
    pub async fn catch_up(&self) -> Result<u64, LinkError> {
        let mut applied = self.applied.lock().await;
        // Bounded: each round applies up to FETCH_ENTRIES_MAX entries or stops.
        for _ in 0..10_000 {
            let acted = self.acted.load(Ordering::Relaxed);
            let req = ControllerRequest::FetchMetadata {
                after_index: applied.index,
                broker_id: Some(self.cfg.broker_id),
                acted,
            };
            let resp = self.call(req).await?;
            self.acted_sent.fetch_max(acted, Ordering::Relaxed);
            let ControllerResponse::Metadata { batches, committed_index } = resp else {
                return Err(LinkError::Unavailable(format!("unexpected answer {resp:?}")));
            };
            let progressed = !batches.is_empty();
            for b in batches {
                if b.index != applied.index + 1 {
                    return Err(LinkError::Unavailable(format!(
                        "metadata batch {} after {}",
                        b.index, applied.index
                    )));
                }
                for r in &b.records {
                    let _ = applied.image.apply(r);
                }
                applied.index = b.index;
            }
            if progressed {
                self.applied_index.store(applied.index, Ordering::Relaxed);
                self.image_tx.send_replace(Arc::new(applied.image.clone()));
            }
            if applied.index >= committed_index || !progressed {
                return Ok(applied.index);
            }
        }
        Ok(applied.index)
    }

    /// Sends `req` to the active controller, following NOT_CONTROLLER hints and moving past
    /// unreachable voters, until `request_timeout_ms`.
    pub async fn call(&self, req: ControllerRequest) -> Result<ControllerResponse, LinkError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
        let mut conn = self.conn.lock().await;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            let target = self.target.load(Ordering::Relaxed);
            if conn.as_ref().is_none_or(|(id, _)| *id != target) {
                *conn = None;
                let addr = &self.cfg.voters[&target];
                let attempt =
                    deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(
                        (self.cfg.request_timeout_ms / 4).max(self.cfg.retry_backoff_ms),
                    ));
                match tokio::time::timeout(attempt, self.net.connect(addr)).await {
                    Ok(Ok(c)) => *conn = Some((target, c)),
                    Ok(Err(e)) => {
                        last = format!("connect to controller {target} at {addr}: {e}");
                        self.next_target(target, None);
                        tokio::time::sleep(Duration::from_millis(self.cfg.retry_backoff_ms.max(1)))
                            .await;
                        continue;
                    }
                    Err(_) => {
                        last = format!("connect to controller {target} at {addr}: timed out");
                        self.next_target(target, None);
                        continue;
                    }
                }
            }
            let (_, c) = conn.as_mut().expect("connected above");
            let exchange = async {
                frame::write(c.writer.as_mut(), &Wire::Request(req.clone()), FRAME_BYTES_MAX)
                    .await?;
                frame::read::<Wire, _>(&mut c.reader, FRAME_BYTES_MAX).await
            };
            // One stalled voter (cut off, or a stale leader that cannot commit) must not use up
            // the whole budget: each attempt gets a quarter of it.
            let attempt =
                deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(
                    (self.cfg.request_timeout_ms / 4).max(self.cfg.retry_backoff_ms),
                ));
            match tokio::time::timeout(attempt, exchange).await {
                Ok(Ok(Some(Wire::Response(ControllerResponse::Error(
                    RpcError::NotController { leader },
                ))))) => {
                    last = format!("controller {target} is not the leader (leader {leader:?})");
                    self.next_target(target, leader);
                    tokio::time::sleep(Duration::from_millis(self.cfg.retry_backoff_ms.max(1)))
                        .await;
                }
                Ok(Ok(Some(Wire::Response(ControllerResponse::Error(RpcError::Controller(
                    e,
                )))))) => return Err(LinkError::Controller(e)),
                Ok(Ok(Some(Wire::Response(ControllerResponse::Error(RpcError::Unavailable(
                    why,
                )))))) => {
                    last = why;
                    tokio::time::sleep(Duration::from_millis(self.cfg.retry_backoff_ms.max(1)))
                        .await;
                }
                Ok(Ok(Some(Wire::Response(r)))) => return Ok(r),
                Ok(Ok(other)) => {
                    last = format!("controller {target} answered {other:?}");
                    *conn = None;
                    self.next_target(target, None);
                }
                Ok(Err(e)) => {
                    last = format!("controller {target}: {e}");
                    *conn = None;
                    self.next_target(target, None);
                    tokio::time::sleep(Duration::from_millis(self.cfg.retry_backoff_ms.max(1)))
                        .await;
                }
                Err(_) => {
                    // Timed out mid-exchange: the connection may hold a late answer; drop it.
                    last = format!("controller {target} did not answer in time");
                    *conn = None;
                    self.next_target(target, None);
                }
            }
        }
        Err(LinkError::Unavailable(last))
    }

    /// A topic creation, retried while the controller says a deletion of the same name is not
    /// yet acted on by every live broker, until `request_timeout_ms`.
    async fn call_create(&self, req: ControllerRequest) -> Result<ControllerResponse, LinkError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
        loop {
            match self.call(req.clone()).await {
                Err(LinkError::Controller(ControllerError::TopicDeletionPending { .. }))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(self.deletion_poll()).await;
                }
                r => return r,
            }
        }
    }

    /// Waits until every live broker acted on the deletion of `name` (so none of them still
    /// leads its partitions by name), until `request_timeout_ms`; then REQUEST_TIMED_OUT, as
    /// Kafka answers a deletion that did not complete in time (it still completes).
    async fn await_deletion(&self, name: &str) -> Result<(), LinkError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
        loop {
            let req = ControllerRequest::DeletionPending { name: name.to_string() };
            let brokers = match self.call(req).await? {
                ControllerResponse::DeletionPending(b) => b,
                other => {
                    return Err(LinkError::Unavailable(format!("unexpected answer {other:?}")))
                }
            };
            if brokers.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let name = name.to_string();
                return Err(LinkError::Controller(ControllerError::TopicDeletionPending {
                    name,
                    brokers,
                }));
            }
            tokio::time::sleep(self.deletion_poll()).await;
        }
    }

    fn deletion_poll(&self) -> Duration {
        Duration::from_millis(self.cfg.metadata_poll_ms.clamp(10, 100))
    }

    fn next_target(&self, current: NodeId, hint: Option<NodeId>) {
        let next = match hint.filter(|h| *h != current && self.cfg.voters.contains_key(h)) {
            Some(h) => h,
            None => self
                .cfg
                .voters
                .keys()
                .copied()
                .find(|v| *v > current)
                .unwrap_or_else(|| *self.cfg.voters.keys().next().expect("non-empty")),
        };
        self.target.store(next, Ordering::Relaxed);
    }
}

#[async_trait]
impl ControllerLink for RpcLink {
    fn broker_id(&self) -> BrokerId {
        self.cfg.broker_id
    }

    fn broker_epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    fn metadata(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }

    async fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> Result<PartitionState, LinkError> {
        match self.call(ControllerRequest::AlterPartition(req)).await? {
            ControllerResponse::Partition(p) => {
                let _ = self.catch_up().await;
                Ok(p)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
    ) -> Result<TopicId, LinkError> {
        self.create_topic_with_configs(name, partitions, replication_factor, BTreeMap::new()).await
    }

    async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicId, LinkError> {
        let req = ControllerRequest::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
        };
        match self.call_create(req).await? {
            ControllerResponse::TopicCreated(id) => {
                // Answered after commit, so the pull includes it: callers see their topic.
                self.catch_up().await?;
                Ok(id)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    fn report_logs(&self, logs: Vec<ReplicaLogInfo>) {
        let mut current = self.log_reports.lock().unwrap_or_else(|p| p.into_inner());
        if *current != logs {
            if !logs.is_empty() {
                tracing::info!(
                    broker = self.cfg.broker_id,
                    ?logs,
                    "reporting logs for unclean recovery"
                );
                self.beat_soon.notify_one();
            }
            *current = logs;
        }
    }

    fn report_acted(&self, applied: u64) {
        self.acted.fetch_max(applied, Ordering::Relaxed);
    }

    async fn alter_configs(&self, changes: Vec<ConfigChange>) -> Result<(), LinkError> {
        match self.call(ControllerRequest::AlterConfigs { changes }).await? {
            ControllerResponse::ConfigsAltered => {
                self.catch_up().await?;
                Ok(())
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn create_topic_assigned(
        &self,
        name: &str,
        assignment: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicId, LinkError> {
        let req =
            ControllerRequest::CreateTopicAssigned { name: name.to_string(), assignment, configs };
        match self.call_create(req).await? {
            ControllerResponse::TopicCreated(id) => {
                self.catch_up().await?;
                Ok(id)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn elect_preferred(&self, partitions: Vec<(String, u32)>) -> Result<Vec<i16>, LinkError> {
        match self.call(ControllerRequest::ElectPreferred { partitions }).await? {
            ControllerResponse::Elected(codes) => {
                self.catch_up().await?;
                Ok(codes)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn create_partitions(&self, name: &str, count: u32) -> Result<TopicId, LinkError> {
        match self
            .call(ControllerRequest::CreatePartitions { name: name.to_string(), count })
            .await?
        {
            ControllerResponse::TopicCreated(id) => {
                self.catch_up().await?;
                Ok(id)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicId, LinkError> {
        match self.call(ControllerRequest::DeleteTopic { name: name.to_string() }).await? {
            ControllerResponse::TopicDeleted(id) => {
                self.catch_up().await?;
                self.await_deletion(name).await?;
                Ok(id)
            }
            other => Err(LinkError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }
}
