//! The broker's shared state and request dispatch.
//!
//! One `Broker` per process (or per simulated host): the topic registry, the partitions (each a
//! [`Partition`]: log, producer state, replication role; see `crate::partition` for the lock
//! rules), the data directory's checkpoint files, and a `Notify` that wakes long-polling fetches
//! when data is appended. Connections call [`Broker::handle`] with one request frame at a time.
//! What a broker does with the controller's image (roles, recovery reports, the HW checkpoint,
//! the replica manager task) is in [`replica_manager`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use disk_model::Storage;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::ApiKey;
use net_model::{Chunk, CostHook, RealCpu, Work};
use thiserror::Error;
use tokio::sync::{Mutex, Notify};

use crate::config::BrokerConfig;
use crate::log::{DataDir, LogError, LogManager, LogPoints, TopicPartition};
use crate::metrics::Metrics;
use crate::partition::{Partition, Partitions};
use crate::producer_state::ProducerStates;
use crate::protocol::{self, error_code, parse_request, Request, RequestError};
use crate::topics::{validate_topic_name, Registry, TopicMeta};
use cluster::metadata::TopicId;

mod incarnations;
pub mod replica_manager;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("log: {0}")]
    Log(#[from] LogError),
}

/// What a connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this frame (length prefix included).
    Respond(Vec<Chunk>),
    /// Send nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection; the reason goes to the log.
    Close(String),
}

impl Outcome {
    pub fn frame(b: Bytes) -> Self {
        Outcome::Respond(vec![Chunk::Bytes(b)])
    }
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub(crate) storage: Arc<dyn Storage>,
    /// The first data directory: the topic registry, the metadata log and the replication
    /// checkpoint live here (`roots[0]`).
    pub(crate) root: PathBuf,
    /// Every data directory (`log.dirs`, in order; several: JBOD), paths inside `storage`.
    pub(crate) roots: Vec<PathBuf>,
    /// Partition logs in each data directory: where the next one goes (`log::manager::place`).
    /// Changed only under `topic_admin` or by partition creation and deletion.
    dir_logs: std::sync::Mutex<Vec<usize>>,
    advertised: RwLock<(String, i32)>,
    /// The topic registry. Held only briefly: never while a topic's partition files are
    /// created; never taken while holding a partition's data lock.
    pub(crate) registry: Mutex<Registry>,
    /// Serializes topic creation and deletion (taken before the registry, never by the data
    /// path): a topic's partition files are created under it, without the registry lock, so
    /// produce, fetch and metadata keep being served while a large topic is created.
    pub(crate) topic_admin: Mutex<()>,
    /// The dynamic broker configs the live logs were last configured with (combined mode).
    pub(crate) dynamic_configs_seen: std::sync::Mutex<crate::api::dynamic_configs::BrokerConfigs>,
    /// Every partition here, by name (lock rules: `crate::partition`).
    pub(crate) partitions: Arc<Partitions>,
    /// The data directories' checkpoint files (in `roots` order); held only by checkpoint
    /// writers (the periodic task, the cleaner, topic deletion, shutdown), never with a
    /// partition's data lock.
    pub(crate) dirs: Mutex<Vec<DataDir>>,
    /// Set by [`Broker::shutdown`]: every log is flushed and closed.
    closed: AtomicBool,
    /// Woken after every append (long-polling fetches wait on it).
    pub(crate) appended: Arc<Notify>,
    pub metrics: Metrics,
    /// Request-level fault rules (issue 19): none unless installed; then consulted per request.
    pub faults: crate::faults::FaultControl,
    /// The live client connections, which the admin API can reset or hold half-open.
    pub connections: Arc<crate::faults::Connections>,
    /// The CPU seam: a no-op on real hardware, the host's core pool in the simulator.
    cost: RwLock<Arc<dyn CostHook>>,
    /// The group coordinator (consumer groups, committed offsets in `__consumer_offsets`).
    pub groups: crate::group::Coordinator,
    /// Combined mode: the controller quorum this broker answers to. Unset in single-node mode,
    /// where every path behaves exactly as without a quorum.
    pub(crate) cluster: std::sync::OnceLock<Arc<dyn crate::controller::link::ControllerLink>>,
    /// Combined mode: each partition's replication role here (leader state, follower state).
    pub replicas: Arc<crate::replica::Replicas>,
    /// Combined mode with a controller on this node: its Raft status (ActiveControllerCount).
    pub(crate) controller_status:
        std::sync::OnceLock<tokio::sync::watch::Receiver<crate::controller::node::NodeStatus>>,
    /// Whether the logs were shut down cleanly before this open (`.kafka_cleanshutdown`).
    opened_clean: bool,
    /// The data directories as DescribeLogDirs names them (set by `broker serve`).
    pub(crate) log_dir_labels: std::sync::OnceLock<Vec<String>>,
    /// Retired partition directories (`…-delete`) and when they may be removed (ms), in order.
    pub(crate) retired: std::sync::Mutex<Vec<(i64, PathBuf)>>,
}

pub use crate::now_ms;
pub(crate) use crate::partition::rebuild_partition_producers;

impl Broker {
    /// Opens the data directory `root` inside `storage`: loads the topic registry and recovers
    /// every partition log.
    pub async fn open(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
        root: &Path,
    ) -> Result<Self, BrokerError> {
        Self::open_dirs(config, storage, &[root.to_path_buf()]).await
    }

    /// [`Broker::open`] of several data directories (`log.dirs`: JBOD), paths inside
    /// `storage`; the first holds the topic registry.
    pub async fn open_dirs(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
        roots: &[PathBuf],
    ) -> Result<Self, BrokerError> {
        crate::log::manager::check_roots(roots)?;
        let root = roots[0].as_path();
        // Every log file opens on use and closes when idle, within one broker-wide bound.
        let storage: Arc<dyn Storage> = Arc::new(crate::log::file_cache::CachedStorage::new(
            storage,
            config.limits.open_files_max(),
        ));
        let mut registry = Registry::load(storage.as_ref(), root).await?;
        // Single node: the dynamic broker configs are in the registry (combined mode: in the
        // image, applied once it arrives).
        let defaults = crate::api::dynamic_configs::layered(
            &config.log,
            &registry.broker_configs,
            config.node_id,
        );
        let topics = registry.topics.clone();
        let config_for = move |topic: &str| {
            topics.get(topic).map(|m| m.log_config(&defaults)).unwrap_or_else(|| defaults.clone())
        };
        let now = now_ms();
        let (mut logs, reports) =
            LogManager::open_dirs(storage.clone(), roots, config.log.clone(), &config_for, now)
                .await?;
        let recovered = reports.values().filter(|r| r.segments_recovered > 0).count();
        let opened_clean = logs.was_clean();
        tracing::info!(
            partitions = reports.len(),
            recovered,
            clean = logs.was_clean(),
            "logs opened"
        );
        // Reconcile: partition dirs without a registry entry (a crash between the two writes)
        // become topics; registry partitions without a log get an empty one; a dir holding
        // another incarnation of its topic (`partition.metadata`) is retired.
        let (mut changed, retired) =
            incarnations::reconcile_at_open(&mut logs, &mut registry, &config.log, now).await?;
        let groups = crate::group::Coordinator::new(
            config.group.clone(),
            config.offsets_topic_num_partitions,
        );
        let offsets_partitions =
            registry.topics.get(crate::group::OFFSETS_TOPIC).map(|m| m.partitions);
        if config.quorum.voters.is_none() {
            groups.load_at_open(&logs, offsets_partitions).await;
        } else if let Some(n) = offsets_partitions {
            // Combined mode: this broker coordinates the groups of the offsets partitions it
            // leads, loaded when the replica manager makes it their leader.
            groups.set_num_partitions(n).await;
        }
        if registry.next_producer_id < 1000 {
            registry.next_producer_id = 1000;
            changed = true;
        }
        if changed {
            registry.store(storage.as_ref(), root).await?;
        }
        let partitions = Arc::new(Partitions::default());
        let (dirs, logs, dir_logs) = logs.into_parts();
        for (tp, log) in logs {
            // Idempotent-producer state is rebuilt from the tail of each log, so a producer
            // retrying across a restart still gets its duplicates recognised.
            let mut producers = ProducerStates::default();
            rebuild_partition_producers(&mut producers, &tp, &log).await;
            partitions.insert(Partition::new(tp, log, producers));
        }
        // Fault rules' probabilities: a fixed stream per node (a simulated run replays it).
        let fault_seed = 0x5eed_fa17_u64 ^ u64::from(config.node_id as u32);
        Ok(Self {
            advertised: RwLock::new(("127.0.0.1".into(), 9092)),
            config,
            storage,
            root: root.to_path_buf(),
            roots: roots.to_vec(),
            dir_logs: std::sync::Mutex::new(dir_logs),
            registry: Mutex::new(registry),
            topic_admin: Mutex::new(()),
            dynamic_configs_seen: std::sync::Mutex::new(Default::default()),
            replicas: Arc::new(crate::replica::Replicas::new(partitions.clone())),
            partitions,
            dirs: Mutex::new(dirs),
            closed: AtomicBool::new(false),
            appended: Arc::new(Notify::new()),
            metrics: Metrics::default(),
            faults: crate::faults::FaultControl::new(fault_seed),
            connections: Arc::default(),
            cost: RwLock::new(Arc::new(RealCpu)),
            groups,
            cluster: std::sync::OnceLock::new(),
            controller_status: std::sync::OnceLock::new(),
            opened_clean,
            log_dir_labels: std::sync::OnceLock::new(),
            retired: std::sync::Mutex::new(retired.into_iter().map(|d| (now, d)).collect()),
        })
    }

    /// The address Metadata advertises for this broker.
    pub fn set_advertised(&self, host: &str, port: i32) {
        let (h, p) = self.config.advertised.clone().unwrap_or((host.to_string(), port));
        if let Ok(mut a) = self.advertised.write() {
            *a = (h, p);
        }
    }

    pub fn advertised(&self) -> (String, i32) {
        self.advertised.read().map(|a| a.clone()).unwrap_or_else(|_| ("127.0.0.1".into(), 9092))
    }

    /// The handle of `tp`'s partition, if this broker has its log.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.get(tp)
    }

    /// Whether [`Broker::shutdown`] ran (every log flushed and closed).
    pub fn is_shut_down(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The CPU cost hook installed now.
    pub(crate) fn cost_hook(&self) -> Arc<dyn CostHook> {
        self.cost.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs the CPU cost hook (the simulator's core pool); the default charges nothing.
    pub fn set_cost_hook(&self, hook: Arc<dyn CostHook>) {
        *self.cost.write().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Charges `bytes` of `work` to this host's CPU (sleeps in simulated time, free for real).
    pub(crate) async fn spend(&self, work: Work, bytes: u64) {
        let hook = self.cost.read().unwrap_or_else(|p| p.into_inner()).clone();
        hook.spend(work, bytes).await;
    }

    /// Handles one request frame (without its length prefix).
    pub async fn handle(&self, frame: Bytes) -> Outcome {
        // Every request pays a fixed overhead (what batching amortizes); a produce request's
        // records are copied once into the append buffer and CRC-checked once.
        let frame_len = frame.len() as u64;
        self.spend(Work::Request, frame_len).await;
        if frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == 0 {
            self.spend(Work::Memcpy, frame_len).await;
            self.spend(Work::Crc32c, frame_len).await;
        }
        let req = match parse_request(frame) {
            Ok(r) => r,
            Err(e) => return Outcome::Close(e.to_string()),
        };
        let started = tokio::time::Instant::now();
        let key = req.api_key;
        let outcome = if self.faults.is_active() {
            self.handle_with_faults(req).await
        } else {
            self.dispatch_outcome(req).await
        };
        let micros = started.elapsed().as_micros() as u64;
        self.metrics.record_request(key, micros, matches!(outcome, Outcome::Close(_)));
        outcome
    }

    async fn dispatch_outcome(&self, req: Request) -> Outcome {
        match self.dispatch(req).await {
            Ok(o) => o,
            Err(e) => Outcome::Close(e.to_string()),
        }
    }

    /// A request while fault rules are installed: the first rule that fires decides (an error
    /// instead of handling or after it, a delay, a throttle time, a disconnect before or after
    /// handling).
    async fn handle_with_faults(&self, req: Request) -> Outcome {
        use crate::faults::{respond, Action};
        let facts = respond::facts(&req);
        let Some(action) = self.faults.decide(&facts, now_ms().max(0) as u64) else {
            return self.dispatch_outcome(req).await;
        };
        tracing::info!(api = facts.api, ?action, "fault rule fired");
        let answer = |req: &Request, code| match respond::error_response(req, code) {
            Ok(Some(frame)) => Outcome::frame(frame),
            Ok(None) => Outcome::NoResponse,
            Err(e) => Outcome::Close(e.to_string()),
        };
        match action {
            Action::ErrorInstead(code) => answer(&req, code),
            Action::ErrorAfter(code) => {
                let told = answer(&req, code);
                let _ = self.dispatch_outcome(req).await;
                told
            }
            Action::Delay { ms } => {
                let outcome = self.dispatch_outcome(req).await;
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                outcome
            }
            Action::DisconnectBefore => {
                Outcome::Close("fault rule: disconnect before handling".into())
            }
            Action::DisconnectAfter => {
                let _ = self.dispatch_outcome(req).await;
                Outcome::Close("fault rule: disconnect after handling".into())
            }
            Action::Throttle { ms } => {
                let (key, version) = (req.api_key, req.api_version);
                let mut outcome = self.dispatch_outcome(req).await;
                if let Outcome::Respond(chunks) = &mut outcome {
                    if let Err(e) = crate::faults::throttle::apply(key, version, chunks, ms) {
                        tracing::warn!(error = %e, "fault rule: throttle not applied");
                    }
                }
                outcome
            }
        }
    }

    /// Routes one request. Produce takes the request by value: once decoded, its record sets are
    /// the only owners of their bytes, which the log then rewrites in place without a copy.
    async fn dispatch(&self, req: Request) -> Result<Outcome, RequestError> {
        let req_ref = &req;
        let (lo, hi) = protocol::supported_range(req.api_key)
            .ok_or(RequestError::UnknownApi(req.api_key as i16))?;
        let v = req.api_version;
        if req.api_key == ApiKey::ApiVersions {
            return Ok(self.api_versions(req_ref));
        }
        if req.api_key == ApiKey::Produce && (0..3).contains(&v) {
            return Ok(self.produce_legacy(req_ref));
        }
        if v < lo || v > hi {
            return Err(RequestError::UnsupportedVersion {
                api: protocol::api_name(req.api_key),
                version: v,
            });
        }
        match req.api_key {
            ApiKey::Metadata => self.metadata(req_ref).await,
            ApiKey::Produce => self.produce(req).await,
            ApiKey::Fetch => self.fetch(req_ref).await,
            ApiKey::ListOffsets => self.list_offsets(req_ref).await,
            ApiKey::CreateTopics => self.create_topics(req_ref).await,
            ApiKey::DeleteTopics => self.delete_topics(req_ref).await,
            ApiKey::InitProducerId => self.init_producer_id(req_ref).await,
            ApiKey::FindCoordinator => self.find_coordinator(req_ref).await,
            ApiKey::JoinGroup => self.join_group(req_ref).await,
            ApiKey::SyncGroup => self.sync_group(req_ref).await,
            ApiKey::Heartbeat => self.heartbeat(req_ref).await,
            ApiKey::LeaveGroup => self.leave_group(req_ref).await,
            ApiKey::OffsetCommit => self.offset_commit(req_ref).await,
            ApiKey::OffsetFetch => self.offset_fetch(req_ref).await,
            ApiKey::ListGroups => self.list_groups(req_ref).await,
            ApiKey::DescribeGroups => self.describe_groups(req_ref).await,
            ApiKey::OffsetForLeaderEpoch => self.offset_for_leader_epoch(req_ref).await,
            ApiKey::DescribeConfigs => self.describe_configs(req_ref).await,
            ApiKey::AlterConfigs => self.alter_configs(req_ref).await,
            ApiKey::IncrementalAlterConfigs => self.incremental_alter_configs(req_ref).await,
            ApiKey::CreatePartitions => self.create_partitions(req_ref).await,
            ApiKey::DeleteRecords => self.delete_records(req_ref).await,
            ApiKey::DeleteGroups => self.delete_groups(req_ref).await,
            ApiKey::OffsetDelete => self.offset_delete(req_ref).await,
            ApiKey::DescribeLogDirs => self.describe_log_dirs(req_ref).await,
            ApiKey::ElectLeaders => self.elect_leaders(req_ref).await,
            _ => Err(RequestError::UnknownApi(req.api_key as i16)),
        }
    }

    /// ApiVersions, with KIP-511's fallback: a version we do not know is answered in v0 with
    /// UNSUPPORTED_VERSION and our ranges, so the client can retry with one we do.
    fn api_versions(&self, req: &Request) -> Outcome {
        let (mut version, mut error) = (req.api_version, error_code::NONE);
        if !(0..=3).contains(&version) || req.header.is_none() {
            version = 0;
            error = error_code::UNSUPPORTED_VERSION;
        }
        let mut resp = ApiVersionsResponse::default();
        resp.error_code = error;
        resp.api_keys = protocol::SUPPORTED
            .iter()
            .map(|(k, lo, hi)| {
                let mut a = ApiVersion::default();
                a.api_key = *k as i16;
                a.min_version = *lo;
                a.max_version = *hi;
                a
            })
            .collect();
        // Default-valued tagged fields stay unset: kafka-protocol then emits none, which
        // librdkafka < 2.2 requires.
        match protocol::encode_response(ApiKey::ApiVersions, version, req.correlation_id, &resp) {
            Ok(b) => Outcome::frame(b),
            Err(e) => Outcome::Close(format!("encoding ApiVersions: {e}")),
        }
    }

    /// Creates a topic: registered first (under the registry lock, briefly), then its logs are
    /// created under `topic_admin` only. The caller must not hold the registry lock. Refused
    /// with POLICY_VIOLATION if this broker would hold more than
    /// `loglab.partitions.per.broker.max` partitions.
    pub(crate) async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<TopicMeta, (i16, String)> {
        let _admin = self.topic_admin.lock().await;
        self.create_topic_admin_held(name, partitions, configs, None).await
    }

    /// [`Broker::create_topic`] for a caller holding `topic_admin`. `incarnation`: the topic id
    /// and creation point the controller gave it (combined mode); else a fresh id.
    pub(crate) async fn create_topic_admin_held(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
        incarnation: Option<([u8; 16], u64)>,
    ) -> Result<TopicMeta, (i16, String)> {
        let (meta, cfg, now) = {
            let mut registry = self.registry.lock().await;
            self.register_topic(&mut registry, name, partitions, configs, incarnation).await?
        };
        if self.is_shut_down() {
            return Err((error_code::KAFKA_STORAGE_ERROR, "broker is shutting down".into()));
        }
        for p in 0..partitions {
            self.create_partition(TopicPartition::new(name, p), cfg.clone(), now, meta.uuid())
                .await
                .map_err(|e| (error_code::KAFKA_STORAGE_ERROR, e.to_string()))?;
            // Real file calls never yield: let other requests run between partitions.
            tokio::task::yield_now().await;
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    /// [`Broker::create_topic`], or the topic's registration if it exists already (auto-create).
    pub(crate) async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<TopicMeta, (i16, String)> {
        if let Some(meta) = self.registry.lock().await.topics.get(name) {
            return Ok(meta.clone());
        }
        match self.create_topic(name, partitions, configs).await {
            Err((code, msg)) if code == error_code::TOPIC_ALREADY_EXISTS => {
                self.registry.lock().await.topics.get(name).cloned().ok_or((code, msg))
            }
            other => other,
        }
    }

    /// The partitions registered on this broker (every topic's count, summed).
    pub(crate) fn registered_partitions(registry: &Registry) -> i64 {
        registry.topics.values().map(|m| i64::from(m.partitions)).sum()
    }

    /// Checks a new topic and writes it into the registry (stored); returns its meta, log config
    /// and creation time.
    async fn register_topic(
        &self,
        registry: &mut Registry,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
        incarnation: Option<([u8; 16], u64)>,
    ) -> Result<(TopicMeta, crate::log::LogConfig, i64), (i16, String)> {
        validate_topic_name(name).map_err(|e| (error_code::INVALID_TOPIC_EXCEPTION, e))?;
        if registry.topics.contains_key(name) {
            return Err((error_code::TOPIC_ALREADY_EXISTS, format!("topic {name} already exists")));
        }
        // Kafka forbids topics that collide once '.' and '_' are treated alike (metric names).
        let norm = |s: &str| s.replace('.', "_");
        if let Some(other) = registry.topics.keys().find(|t| norm(t) == norm(name)) {
            return Err((
                error_code::INVALID_TOPIC_EXCEPTION,
                format!("topic {name} collides with existing topic {other}"),
            ));
        }
        if partitions < 1 {
            return Err((
                error_code::INVALID_PARTITIONS,
                format!("{partitions} partitions is not valid"),
            ));
        }
        self.check_broker_partitions(registry, partitions)?;
        let mut cfg = self.log_defaults_with(registry);
        for (k, v) in &configs {
            crate::log::LogConfig::check_topic_config(k, v)
                .and_then(|()| cfg.set_strict(k, v))
                .map_err(|e| (error_code::INVALID_CONFIG, e.to_string()))?;
        }
        let now = now_ms();
        let (id, created_at) = match incarnation {
            Some((id, at)) => (crate::controller::local::topic_id_hex(&TopicId(id)), Some(at)),
            None => (registry.new_topic_id(name, now), None),
        };
        let meta = TopicMeta { partitions, id, configs, created_at };
        registry.topics.insert(name.to_string(), meta.clone());
        if let Err(e) = registry.store(self.storage.as_ref(), &self.root).await {
            registry.topics.remove(name);
            return Err((error_code::KAFKA_STORAGE_ERROR, e.to_string()));
        }
        Ok((meta, cfg, now))
    }

    /// [`Broker::check_broker_partitions`] under a registry lock of its own, released on return
    /// (never held across the caller's next steps).
    pub(crate) async fn check_broker_partitions_now(&self, more: i32) -> Result<(), (i16, String)> {
        let registry = self.registry.lock().await;
        self.check_broker_partitions(&registry, more)
    }

    /// POLICY_VIOLATION if `more` partitions would take this broker past
    /// `loglab.partitions.per.broker.max`.
    pub(crate) fn check_broker_partitions(
        &self,
        registry: &Registry,
        more: i32,
    ) -> Result<(), (i16, String)> {
        let max = self.config.limits.partitions_per_broker_max;
        let have = Self::registered_partitions(registry);
        if have + i64::from(more) > i64::from(max) {
            return Err((
                error_code::POLICY_VIOLATION,
                format!(
                    "{more} more partitions would make {} on this broker, over loglab.partitions.per.broker.max={max}",
                    have + i64::from(more)
                ),
            ));
        }
        Ok(())
    }

    /// Creates the log of a new partition of topic `topic_id` (nothing if it exists), its
    /// directory marked with the id (`partition.metadata`).
    pub(crate) async fn create_partition(
        &self,
        tp: TopicPartition,
        config: crate::log::LogConfig,
        now: i64,
        topic_id: [u8; 16],
    ) -> Result<(), LogError> {
        if self.partitions.get(&tp).is_none() {
            let i = crate::log::manager::place(&self.dir_logs());
            let log =
                crate::log::manager::create_log(&self.storage, &self.roots[i], &tp, config, now)
                    .await?;
            self.dir_logs_add(i, 1);
            crate::log::partition_metadata::write(self.storage.as_ref(), log.dir(), &topic_id)
                .await?;
            self.partitions.insert(Partition::new(tp, log, ProducerStates::default()));
        }
        Ok(())
    }

    /// Periodic work: retention, `flush.ms`, checkpoints. Returns errors only for logging.
    /// One partition's data lock at a time.
    pub async fn run_retention(&self) -> Result<usize, LogError> {
        let now = now_ms();
        let mut deleted = 0;
        for p in self.partitions.all() {
            let Some(mut data) = p.data().await else { continue };
            if !data.log.is_offline() {
                deleted += data.log.apply_retention(now).await?;
            }
        }
        Ok(deleted)
    }

    /// One pass of the log cleaner (`log.cleaner.backoff.ms` apart): cleans the dirtiest due
    /// compacted log. The partition's data lock is held only to plan, to swap in each cleaned
    /// segment group and to finish; reading and writing segments happens without it. Returns
    /// whether a log was cleaned.
    pub async fn run_cleaner(&self) -> Result<bool, LogError> {
        use crate::log::cleaner::CleanJob;
        let now = now_ms();
        let mut best: Option<(Arc<Partition>, CleanJob)> = None;
        for p in self.partitions.all() {
            let Some(data) = p.data().await else { continue };
            if let Some(job) = CleanJob::plan(&data.log, now, false) {
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| job.cleanable.dirty_ratio > b.cleanable.dirty_ratio)
                {
                    drop(data);
                    best = Some((p, job));
                }
            }
        }
        let Some((part, mut job)) = best else { return Ok(false) };
        let tp = part.tp.clone();
        let dedupe = usize::try_from(self.config.cleaner_dedupe_buffer_size).unwrap_or(usize::MAX);
        let result: Result<bool, LogError> = async {
            job.build_offset_map(dedupe).await?;
            // The job cleans only below the recovery point (see `cleaner::cleanable`); recovery
            // trusts a cleaned segment's short end only below the checkpointed one, so write it
            // before the first swap (recovery points only grow; a truncation aborts the job).
            self.run_checkpoint().await?;
            while let Some((old, seg)) = job.clean_next_group(now).await? {
                let Some(mut data) = part.data().await else {
                    job.abort(Some(seg)).await;
                    return Ok(false);
                };
                if !job.install(&mut data.log, old, seg).await? {
                    return Ok(false);
                }
            }
            let Some(mut data) = part.data().await else { return Ok(false) };
            job.finish(&mut data.log);
            drop(data);
            let points = self.log_points().await;
            let dirs = self.dirs.lock().await;
            if !self.is_shut_down() {
                for (dir, p) in dirs.iter().zip(&points) {
                    dir.write_cleaner_checkpoint(p).await?;
                }
            }
            Ok(true)
        }
        .await;
        match &result {
            Ok(true) => tracing::info!(partition = %tp, stats = ?job.stats, "log cleaned"),
            Ok(false) => tracing::info!(partition = %tp, "log changed during cleaning; will retry"),
            Err(e @ LogError::Corrupt { .. }) => {
                tracing::error!(partition = %tp, error = %e, "log cleaner: corrupt data, partition marked uncleanable");
                if let Some(mut data) = part.data().await {
                    data.log.mark_uncleanable(e.to_string());
                }
            }
            Err(_) => {}
        }
        result
    }

    /// `flush.ms`: fsyncs logs whose last flush is too old, and the segments rolls left
    /// pending (as Kafka schedules a rolled segment's flush). The fsyncs run without the
    /// partition's lock (files collected under it, recovery points advanced after), so requests
    /// keep flowing: a rolled 1 GiB segment's fsync takes seconds on a real disk.
    pub async fn run_flush(&self) -> Result<(), LogError> {
        let now = now_ms();
        let mut work = Vec::new();
        for p in self.partitions.all() {
            let Some(mut data) = p.data().await else { continue };
            if data.log.is_offline() {
                continue;
            }
            let flush = if data.log.flush_due(now) {
                data.log.prepare_flush().await?
            } else if data.log.roll_flush_pending() {
                data.log.prepare_flush_rolled().await?
            } else {
                continue;
            };
            let dir = data.log.dir().to_path_buf();
            drop(data);
            work.push((p, flush, dir));
        }
        for (_, flush, dir) in &work {
            for f in &flush.files {
                f.sync().await?;
            }
            self.storage.sync_dir(dir).await?;
        }
        for (p, flush, _) in work {
            if let Some(mut data) = p.data().await {
                data.log.mark_flushed(&flush, now);
            }
        }
        Ok(())
    }

    /// What each data directory's checkpoint files record of its open logs (in `roots` order;
    /// one data lock at a time).
    async fn log_points(&self) -> Vec<BTreeMap<TopicPartition, LogPoints>> {
        let mut points = vec![BTreeMap::new(); self.roots.len()];
        for p in self.partitions.all() {
            if let Some(data) = p.data().await {
                let i = self.dir_index_of(data.log.dir());
                points[i].insert(p.tp.clone(), LogPoints::of(&data.log));
            }
        }
        points
    }

    /// The data directory (index into `roots`) holding the partition directory `dir`.
    pub(crate) fn dir_index_of(&self, dir: &Path) -> usize {
        crate::log::manager::dir_index(self.roots.iter().map(PathBuf::as_path), dir)
            .expect("every log lives in one of the data directories")
    }

    /// Partition logs in each data directory.
    fn dir_logs(&self) -> Vec<usize> {
        self.dir_logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn dir_logs_add(&self, i: usize, n: isize) {
        let mut counts = self.dir_logs.lock().unwrap_or_else(|p| p.into_inner());
        counts[i] = counts[i].checked_add_signed(n).expect("log counts stay non-negative");
    }

    /// Writes the recovery-point, log-start and cleaner checkpoints of every data directory.
    pub async fn run_checkpoint(&self) -> Result<(), LogError> {
        let points = self.log_points().await;
        let mut dirs = self.dirs.lock().await;
        if self.is_shut_down() {
            return Ok(()); // shutdown wrote the final checkpoints
        }
        for (dir, p) in dirs.iter_mut().zip(&points) {
            dir.checkpoint(p).await?;
        }
        Ok(())
    }

    /// Clean shutdown: flush and close every log, checkpoint, write the clean-shutdown marker.
    pub async fn shutdown(&self) -> Result<(), BrokerError> {
        self.groups.shutdown().await;
        if !self.closed.swap(true, Ordering::SeqCst) {
            let now = now_ms();
            let mut points = vec![BTreeMap::new(); self.roots.len()];
            let mut offline = vec![Vec::new(); self.roots.len()];
            for p in self.partitions.take_all() {
                if let Some(mut data) = p.close().await {
                    let i = self.dir_index_of(data.log.dir());
                    // An offline log (a storage error, e.g. ENOSPC) keeps its last checkpoint;
                    // the others are flushed and shut down as usual.
                    if let Err(e) = data.log.flush(now).await {
                        tracing::error!(partition = %p.tp, error = %e, "offline log not flushed");
                        offline[i].push(p.tp.clone());
                        continue;
                    }
                    points[i].insert(p.tp.clone(), LogPoints::of(&data.log));
                }
            }
            let mut dirs = self.dirs.lock().await;
            for (i, dir) in dirs.iter_mut().enumerate() {
                shut_down_dir(dir, &points[i], &offline[i]).await?;
            }
        }
        self.appended.notify_waiters();
        Ok(())
    }

    /// Deletes `tp`'s partition (of topic `topic_id`): out of the map, its replication stopped,
    /// its log closed and its directory retired (renamed `…-delete`, removed after
    /// `log.segment.delete.delay.ms` by the background task).
    pub(crate) async fn delete_partition(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
    ) -> Result<(), LogError> {
        let Some(part) = self.partitions.remove(tp) else { return Ok(()) };
        if !self.partitions.all().iter().any(|p| p.tp.topic == tp.topic) {
            // The topic's last partition here: its per-topic metrics go, as in Kafka.
            self.metrics.forget_topic(&tp.topic);
        }
        self.replicas.stop_partition(&part);
        self.replicas.forget_checkpoint(tp);
        let Some(data) = part.close().await else { return Ok(()) };
        let dir = data.log.dir().to_path_buf();
        let i = self.dir_index_of(&dir);
        self.dir_logs_add(i, -1);
        let retired = self.dirs.lock().await[i].retire_log(tp, &dir, &topic_id).await?;
        tracing::info!(partition = %tp, dir = ?retired, "partition directory retired");
        self.queue_retired(retired);
        Ok(())
    }

    /// Whether the data directory was shut down cleanly before this start.
    pub fn opened_clean(&self) -> bool {
        self.opened_clean
    }

    /// Whether this node's controller is the active one (the Raft leader).
    pub fn is_active_controller(&self) -> bool {
        self.controller_status.get().is_some_and(|s| s.borrow().role == cluster::raft::Role::Leader)
    }

    /// Replication gauges for the metrics endpoint.
    pub fn cluster_gauges(&self) -> crate::metrics::ClusterGauges {
        let c = self.replicas.counters();
        crate::metrics::ClusterGauges {
            under_replicated: self.replicas.under_replicated() as u64,
            leaders: self.replicas.leader_count() as u64,
            isr_shrinks: c.isr_shrinks,
            isr_expands: c.isr_expands,
            active_controller: u64::from(self.is_active_controller()),
        }
    }

    /// Partition count and total log bytes.
    pub async fn log_stats(&self) -> (usize, u64) {
        let (mut n, mut bytes) = (0, 0);
        for p in self.partitions.all() {
            if let Some(data) = p.data().await {
                n += 1;
                bytes += data.log.size_bytes();
            }
        }
        (n, bytes)
    }
}

/// One data directory's part of a clean shutdown: its checkpoints from `points`, then its
/// marker unless a log in it is `offline`.
async fn shut_down_dir(
    dir: &mut DataDir,
    points: &BTreeMap<TopicPartition, LogPoints>,
    offline: &[TopicPartition],
) -> Result<(), LogError> {
    let root = dir.root().to_path_buf();
    // A full or failing disk (ENOSPC) must not turn the shutdown into a failure: the logs
    // that could be flushed are, and the checkpoints on disk are the previous, complete
    // ones (each is replaced atomically), from which the next start recovers.
    if let Err(e) = dir.checkpoint(points).await {
        tracing::error!(dir = ?root, error = %e, "checkpoints not written at shutdown; no clean-shutdown marker: the next start recovers from the previous checkpoints");
    } else if offline.is_empty() {
        dir.write_clean_shutdown_marker().await?;
        tracing::info!(dir = ?root, "logs flushed, clean-shutdown marker written");
    } else {
        // The marker would let the next start trust every log; an offline one must be
        // recovered (its tail validated), so none is written.
        tracing::warn!(dir = ?root, offline = offline.len(), partitions = ?offline, "logs flushed except offline ones; no clean-shutdown marker: the next start recovers from the checkpoints");
    }
    Ok(())
}
