//! The consumer, after Kafka's `KafkaConsumer` + `Fetcher`: manual assignment (below) and, through
//! `subscribe`, consumer groups (`crate::group`: join/sync/heartbeat, assignors, commits).
//!
//! - [`Consumer::assign`] sets the partitions; a partition without a position is reset by
//!   `auto.offset.reset` (earliest / latest / none) through ListOffsets.
//! - [`Consumer::seek`] sets a position; `seek_to_beginning` / `seek_to_end` /
//!   `seek_to_timestamp` are lazy (resolved by ListOffsets at the next `poll` or `position`).
//! - [`Consumer::poll`] returns buffered records first (at most `max.poll.records`), and before
//!   returning sends the next Fetch to every leader that has none in flight, so a fetch is on the
//!   wire while the application processes the previous one. A partition with buffered records is
//!   not fetched again until they are drained, and neither is any partition of its leader
//!   (Kafka's buffered-node gate, KAFKA-17182, merged 2025): a fetch leaving the buffered
//!   partition out would long-poll on the others and hold the drained one back.
//! - Fetch requests carry `fetch.min.bytes`, `fetch.max.wait.ms`, `fetch.max.bytes` and
//!   `max.partition.fetch.bytes`; the response frame is bounded before allocation. Records are
//!   decoded by `records::decode_batch` (CRC32C checked with `check.crcs`, decompression bounded);
//!   a partial batch at the end of a partition's data is dropped; records below the fetch offset
//!   (inside a compressed batch) are skipped; control batches are skipped.
//! - OFFSET_OUT_OF_RANGE resets per `auto.offset.reset` (`none` surfaces
//!   [`ConsumerError::OffsetOutOfRange`]); leader errors refresh metadata, and a partition whose
//!   fetch came back with a retriable error is not fetched from the same leader again for
//!   `retry.backoff.ms` (as librdkafka's `fetch.error.backoff.ms`): a leader that answers at once
//!   with the same error (its log offline after a storage error) is not asked again in a loop,
//!   while a new leader named by fresh metadata is asked at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_types::Topic;
use net_model::Network;
use records::Header;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::accumulator::TopicPartition;
use crate::cluster::Cluster;
use crate::conn::{Conn, ConnConfig, ConnError};
use crate::errors::{self, ErrorCode};
use crate::fetched::{self, PartitionRecords};
use crate::group::coordinator::{GroupCoordinator, GroupSettings, JoinDone, LeaderSnapshot};
use crate::group::membership::{after_sync, before_join, GroupError};
use crate::group::Strategy;

/// Slack over `fetch.max.bytes` for a Fetch response frame (headers, and KIP-74's first batch
/// that may exceed the limits).
const FETCH_RESPONSE_SLACK: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Earliest,
    Latest,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub bootstrap_servers: Vec<String>,
    pub client_id: String,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub fetch_max_wait_ms: i32,
    pub max_partition_fetch_bytes: i32,
    pub check_crcs: bool,
    pub auto_offset_reset: AutoOffsetReset,
    pub max_poll_records: usize,
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    pub default_api_timeout_ms: u64,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
    /// `group.id`: needed by `subscribe` and the commit/committed calls.
    pub group_id: Option<String>,
    /// `group.instance.id`: static membership (KIP-345).
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Also the rebalance timeout sent in JoinGroup.
    pub max_poll_interval_ms: u64,
    /// `partition.assignment.strategy`, in preference order; the group uses the first one every
    /// member offers (the broker's vote).
    pub partition_assignment_strategy: Vec<Strategy>,
    /// Takes effect only with a `group.id`.
    pub enable_auto_commit: bool,
    pub auto_commit_interval_ms: u64,
    /// How often a group member re-reads its subscribed topics' partition counts (a change, or a
    /// topic appearing, triggers a rebalance).
    pub metadata_max_age_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: String::new(),
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            fetch_max_wait_ms: 500,
            max_partition_fetch_bytes: 1_048_576,
            check_crcs: true,
            auto_offset_reset: AutoOffsetReset::Latest,
            max_poll_records: 500,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            default_api_timeout_ms: 60_000,
            isolation_level: 0,
            group_id: None,
            group_instance_id: None,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            // Kafka 4.0's default.
            partition_assignment_strategy: vec![Strategy::Range, Strategy::CooperativeSticky],
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            metadata_max_age_ms: 300_000,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConsumerError {
    #[error("unknown consumer config `{key}`")]
    UnknownConfig { key: String },
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidConfig { key: String, value: String, reason: String },
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: i32 },
    #[error("{topic}-{partition}: offset {offset} is out of range and auto.offset.reset=none")]
    OffsetOutOfRange { topic: String, partition: i32, offset: i64 },
    #[error("{topic}-{partition} has no position and auto.offset.reset=none")]
    NoOffset { topic: String, partition: i32 },
    #[error("{topic}-{partition}: {name} (error code {code})")]
    Broker { topic: String, partition: i32, code: i16, name: &'static str },
    #[error("{topic}-{partition} at offset {offset}: corrupt record batch: {reason}")]
    Corrupt { topic: String, partition: i32, offset: i64, reason: String },
    #[error("no leader known for {topic}-{partition} within default.api.timeout.ms")]
    NoLeader { topic: String, partition: i32 },
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("group: {0}")]
    Group(#[from] GroupError),
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConsumerError {
    ConsumerError::InvalidConfig { key: key.into(), value: value.into(), reason: reason.into() }
}

fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConsumerError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| invalid(key, value, e.to_string()))
}

impl ConsumerConfig {
    /// Parses `key=value` pairs (Kafka's consumer config names) over the defaults.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, ConsumerError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut c = Self::default();
        for (k, v) in pairs {
            c.set(k.as_ref().trim(), v.as_ref().trim())?;
        }
        Ok(c)
    }

    /// Java-properties-like text: `key=value` lines, `#`/`!` comments.
    pub fn from_properties(text: &str) -> Result<Self, ConsumerError> {
        let pairs = kafka_types::parse_properties(text)
            .map_err(|e| invalid(&e.text, "", "not key=value"))?;
        Self::from_pairs(pairs)
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConsumerError> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "client.id" => self.client_id = value.to_string(),
            "fetch.min.bytes" => self.fetch_min_bytes = num(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = num(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait_ms = num(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = num(key, value)?,
            "check.crcs" => {
                self.check_crcs = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(key, value, "expected true or false")),
                }
            }
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => AutoOffsetReset::Earliest,
                    "latest" => AutoOffsetReset::Latest,
                    "none" => AutoOffsetReset::None,
                    _ => return Err(invalid(key, value, "expected earliest, latest or none")),
                }
            }
            "max.poll.records" => {
                self.max_poll_records = num(key, value)?;
                if self.max_poll_records == 0 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
            }
            "request.timeout.ms" => self.request_timeout_ms = num(key, value)?,
            "retry.backoff.ms" => self.retry_backoff_ms = num(key, value)?,
            "default.api.timeout.ms" => self.default_api_timeout_ms = num(key, value)?,
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => 0,
                    "read_committed" => 1,
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "expected read_uncommitted or read_committed",
                        ))
                    }
                }
            }
            "group.id" => self.group_id = (!value.is_empty()).then(|| value.to_string()),
            "group.instance.id" => {
                self.group_instance_id = (!value.is_empty()).then(|| value.to_string())
            }
            "session.timeout.ms" => self.session_timeout_ms = num(key, value)?,
            "heartbeat.interval.ms" => {
                self.heartbeat_interval_ms = num(key, value)?;
                if self.heartbeat_interval_ms == 0 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
            }
            "max.poll.interval.ms" => {
                self.max_poll_interval_ms = num(key, value)?;
                if self.max_poll_interval_ms == 0 {
                    return Err(invalid(key, value, "must be at least 1"));
                }
            }
            "partition.assignment.strategy" => {
                let mut list = Vec::new();
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let s = Strategy::from_name(name).ok_or_else(|| {
                        invalid(
                            key,
                            value,
                            "expected range, roundrobin, sticky or cooperative-sticky",
                        )
                    })?;
                    if !list.contains(&s) {
                        list.push(s);
                    }
                }
                if list.is_empty() {
                    return Err(invalid(key, value, "needs at least one assignor"));
                }
                self.partition_assignment_strategy = list;
            }
            "enable.auto.commit" => {
                self.enable_auto_commit = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(key, value, "expected true or false")),
                }
            }
            "auto.commit.interval.ms" => self.auto_commit_interval_ms = num(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age_ms = num(key, value)?,
            _ => return Err(ConsumerError::UnknownConfig { key: key.into() }),
        }
        for (k, v) in [
            ("fetch.min.bytes", self.fetch_min_bytes),
            ("fetch.max.bytes", self.fetch_max_bytes),
            ("fetch.max.wait.ms", self.fetch_max_wait_ms),
            ("max.partition.fetch.bytes", self.max_partition_fetch_bytes),
        ] {
            if k == key && v < 0 {
                return Err(invalid(key, value, "must not be negative"));
            }
        }
        Ok(())
    }
}

/// A record as returned by [`Consumer::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared by every record of a fetch's partition (one allocation).
    pub topic: Topic,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Where a lazily resolved position should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetSpec {
    Earliest,
    Latest,
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PartState {
    position: Option<i64>,
    /// A pending seek-to (resolved by ListOffsets before fetching).
    reset: Option<OffsetSpec>,
    high_watermark: Option<i64>,
}

/// Decoded records of one partition from one fetch, not yet returned to the application.
#[derive(Debug)]
struct Completed {
    tp: TopicPartition,
    records: PartitionRecords,
    /// Records already handed out, from the front.
    taken: usize,
    /// Position after the last complete batch.
    next_offset: i64,
}

/// One partition's share of a fetch response, decoded in the fetch task.
#[derive(Debug)]
struct PartResult {
    tp: TopicPartition,
    fetch_offset: i64,
    error_code: i16,
    high_watermark: i64,
    records: PartitionRecords,
    next_offset: i64,
    corrupt: Option<String>,
}

type FetchOutcome = Result<Vec<PartResult>, ConnError>;

/// A consumer with manual assignment. `&mut self` methods, like Kafka's single-threaded consumer.
pub struct Consumer {
    cfg: ConsumerConfig,
    cluster: Arc<Cluster>,
    assignment: BTreeMap<TopicPartition, PartState>,
    buffered: VecDeque<Completed>,
    inflight: BTreeSet<i32>,
    node_backoff: BTreeMap<i32, Instant>,
    /// Partitions whose last fetch came back with a retriable error: the leader that answered
    /// it is not asked for them again before then.
    partition_backoff: BTreeMap<TopicPartition, (i32, Instant)>,
    tx: mpsc::UnboundedSender<(i32, FetchOutcome)>,
    rx: mpsc::UnboundedReceiver<(i32, FetchOutcome)>,
    need_metadata: bool,
    pending_error: Option<ConsumerError>,
    /// Kept for the group coordinator's own connection.
    net: Arc<dyn Network>,
    /// Created by `subscribe` or the first commit/committed call (needs `group.id`).
    group: Option<GroupCoordinator>,
    /// The subscribed topics (sorted); `None` = manual assignment.
    subscription: Option<Vec<String>>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// Assigned partitions whose position waits for their committed offset (OffsetFetch).
    pending_committed: BTreeSet<TopicPartition>,
    next_auto_commit: Option<Instant>,
    /// The leader's metadata snapshot from its last assignment, and when to compare it with fresh
    /// metadata (a topic appearing or growing means the leader must assign again).
    leader_snapshot: Option<LeaderSnapshot>,
    next_subscription_check: Option<Instant>,
    auto_commit_inflight: Option<tokio::sync::oneshot::Receiver<Result<(), ConsumerError>>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Consumer {
    pub fn new(cfg: ConsumerConfig, net: Arc<dyn Network>) -> Self {
        Self::with_cost_hook(cfg, net, Arc::new(net_model::RealCpu))
    }

    /// Like [`new`](Self::new), charging the client's CPU work (per request, CRC32C and
    /// decompression per byte) to `cost`: the client host's core pool in the simulator.
    pub fn with_cost_hook(
        cfg: ConsumerConfig,
        net: Arc<dyn Network>,
        cost: Arc<dyn net_model::CostHook>,
    ) -> Self {
        let max_response = (cfg.fetch_max_bytes.max(cfg.max_partition_fetch_bytes) as usize)
            .saturating_add(FETCH_RESPONSE_SLACK);
        let conn_cfg = ConnConfig {
            client_id: if cfg.client_id.is_empty() {
                "loglab-consumer".into()
            } else {
                cfg.client_id.clone()
            },
            // A long poll waits fetch.max.wait.ms on the broker on top of the request timeout.
            request_timeout: Duration::from_millis(
                cfg.request_timeout_ms + cfg.fetch_max_wait_ms as u64,
            ),
            max_in_flight: 5,
            max_response_bytes: max_response,
            connect_timeout: Duration::from_millis(cfg.request_timeout_ms.min(10_000)),
            cost,
        };
        let cluster =
            Arc::new(Cluster::new(Arc::clone(&net), cfg.bootstrap_servers.clone(), conn_cfg));
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            cfg,
            cluster,
            assignment: BTreeMap::new(),
            buffered: VecDeque::new(),
            inflight: BTreeSet::new(),
            node_backoff: BTreeMap::new(),
            partition_backoff: BTreeMap::new(),
            tx,
            rx,
            need_metadata: true,
            pending_error: None,
            net,
            group: None,
            subscription: None,
            listener: None,
            pending_committed: BTreeSet::new(),
            next_auto_commit: None,
            leader_snapshot: None,
            next_subscription_check: None,
            auto_commit_inflight: None,
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start without one
    /// (`auto.offset.reset` applies unless seeked).
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let st = self.assignment.remove(&tp).unwrap_or_default();
            next.insert(tp, st);
        }
        self.assignment = next;
        let assigned = &self.assignment;
        self.buffered.retain(|c| assigned.contains_key(&c.tp));
        self.need_metadata = true;
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.keys().cloned().collect()
    }

    fn state(&mut self, tp: &TopicPartition) -> Result<&mut PartState, ConsumerError> {
        self.assignment.get_mut(tp).ok_or_else(|| ConsumerError::NotAssigned {
            topic: tp.topic.to_string(),
            partition: tp.partition,
        })
    }

    fn drop_buffered(&mut self, tp: &TopicPartition) {
        self.buffered.retain(|c| &c.tp != tp);
    }

    /// The next fetch of `tp` starts at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumerError> {
        let st = self.state(tp)?;
        st.position = Some(offset);
        st.reset = None;
        self.drop_buffered(tp);
        Ok(())
    }

    fn seek_spec(&mut self, tps: &[TopicPartition], spec: OffsetSpec) -> Result<(), ConsumerError> {
        for tp in tps {
            let st = self.state(tp)?;
            st.position = None;
            st.reset = Some(spec);
        }
        for tp in tps {
            self.drop_buffered(tp);
        }
        Ok(())
    }

    /// Seeks to the log start offset (lazily, at the next `poll`/`position`).
    pub fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<(), ConsumerError> {
        self.seek_spec(tps, OffsetSpec::Earliest)
    }

    /// Seeks to the log end (the high watermark), lazily.
    pub fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<(), ConsumerError> {
        self.seek_spec(tps, OffsetSpec::Latest)
    }

    /// Seeks to the first offset whose timestamp is at least `timestamp` (the end when there is
    /// none), lazily.
    pub fn seek_to_timestamp(
        &mut self,
        tps: &[TopicPartition],
        timestamp: i64,
    ) -> Result<(), ConsumerError> {
        self.seek_spec(tps, OffsetSpec::Timestamp(timestamp))
    }

    /// The offset of the next record `poll` returns for `tp` (resolving a pending seek or reset).
    /// Only `tp`'s own position decides the answer: another assigned partition that has no
    /// offset yet (`auto.offset.reset=none`, not seeked) does not stop this one from resolving.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, ConsumerError> {
        self.state(tp)?;
        match self.update_positions().await {
            Ok(()) | Err(ConsumerError::NoOffset { .. }) => {}
            Err(e) => return Err(e),
        }
        let st = self.state(tp)?;
        st.position.ok_or_else(|| ConsumerError::NoOffset {
            topic: tp.topic.to_string(),
            partition: tp.partition,
        })
    }

    /// Log start offsets.
    pub async fn beginning_offsets(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumerError> {
        let r = self.list_offsets(tps.iter().map(|tp| (tp.clone(), -2)).collect()).await?;
        Ok(r.into_iter().map(|(tp, (o, _))| (tp, o)).collect())
    }

    /// High watermarks (read_uncommitted) / last stable offsets (read_committed).
    pub async fn end_offsets(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumerError> {
        let r = self.list_offsets(tps.iter().map(|tp| (tp.clone(), -1)).collect()).await?;
        Ok(r.into_iter().map(|(tp, (o, _))| (tp, o)).collect())
    }

    /// Per partition, the earliest offset whose timestamp is at least the given one, with that
    /// record's timestamp; `None` when no such record exists.
    pub async fn offsets_for_times(
        &mut self,
        query: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, Option<(i64, i64)>>, ConsumerError> {
        let r = self.list_offsets(query.to_vec()).await?;
        Ok(r.into_iter().map(|(tp, (o, ts))| (tp, (o >= 0).then_some((o, ts)))).collect())
    }

    async fn ensure_metadata(&mut self) -> Result<(), ConsumerError> {
        let missing = self.cluster.with_metadata(|m| {
            self.assignment.keys().any(|tp| m.leader_addr(&tp.topic, tp.partition).is_none())
        });
        if !self.need_metadata && !missing {
            return Ok(());
        }
        let topics: BTreeSet<String> =
            self.assignment.keys().map(|tp| tp.topic.to_string()).collect();
        if topics.is_empty() {
            self.need_metadata = false;
            return Ok(());
        }
        let topics: Vec<String> = topics.into_iter().collect();
        self.cluster.refresh_metadata(Some(&topics), false).await?;
        self.need_metadata = false;
        Ok(())
    }

    /// ListOffsets for each (partition, timestamp spec), grouped by leader.
    async fn list_offsets(
        &mut self,
        query: Vec<(TopicPartition, i64)>,
    ) -> Result<BTreeMap<TopicPartition, (i64, i64)>, ConsumerError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.default_api_timeout_ms);
        let mut out = BTreeMap::new();
        let mut todo = query;
        while !todo.is_empty() {
            let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
            let mut no_leader = Vec::new();
            self.cluster.with_metadata(|m| {
                for (tp, ts) in &todo {
                    match m.leader_addr(&tp.topic, tp.partition) {
                        Some((node, _)) => by_node.entry(node).or_default().push((tp.clone(), *ts)),
                        None => no_leader.push((tp.clone(), *ts)),
                    }
                }
            });
            let mut retry = no_leader;
            for (node, parts) in by_node {
                let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
                for (tp, ts) in &parts {
                    topics.entry(&tp.topic).or_default().push(
                        ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(*ts),
                    );
                }
                let req = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(self.cfg.isolation_level)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                ListOffsetsTopic::default()
                                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    );
                let resp = match self.cluster.node_conn(node).await {
                    Ok(c) => c.request(&req).await,
                    Err(e) => Err(e),
                };
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) if e.is_retriable() && Instant::now() < deadline => {
                        retry.extend(parts);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.to_string(), p.partition_index);
                        let Some((_, ts)) = parts.iter().find(|(q, _)| *q == tp) else {
                            continue;
                        };
                        if p.error_code == ErrorCode::NONE {
                            out.insert(tp, (p.offset, p.timestamp));
                        } else if errors::is_retriable(p.error_code) && Instant::now() < deadline {
                            retry.push((tp, *ts));
                        } else {
                            return Err(ConsumerError::Broker {
                                topic: tp.topic.to_string(),
                                partition: tp.partition,
                                code: p.error_code,
                                name: errors::error_name(p.error_code),
                            });
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let (tp, _) = &retry[0];
                return Err(ConsumerError::NoLeader {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                });
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.retry_backoff_ms.max(1))).await;
            self.need_metadata = true;
            self.ensure_metadata().await.ok();
            todo = retry;
        }
        Ok(out)
    }

    /// Resolves pending seeks and resets (`auto.offset.reset`) by ListOffsets, for every partition
    /// that has one. Then, with `auto.offset.reset=none`, names the first partition left without a
    /// position (Java's NoOffsetForPartitionException); the others are resolved all the same.
    async fn update_positions(&mut self) -> Result<(), ConsumerError> {
        let mut query = Vec::new();
        let mut no_offset: Option<TopicPartition> = None;
        for (tp, st) in &self.assignment {
            if st.position.is_some() || self.pending_committed.contains(tp) {
                continue;
            }
            let spec = match (st.reset, self.cfg.auto_offset_reset) {
                (Some(s), _) => s,
                (None, AutoOffsetReset::Earliest) => OffsetSpec::Earliest,
                (None, AutoOffsetReset::Latest) => OffsetSpec::Latest,
                (None, AutoOffsetReset::None) => {
                    no_offset.get_or_insert_with(|| tp.clone());
                    continue;
                }
            };
            query.push((tp.clone(), spec));
        }
        if !query.is_empty() {
            self.resolve_positions(query).await?;
        }
        match no_offset {
            Some(tp) => Err(ConsumerError::NoOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            }),
            None => Ok(()),
        }
    }

    /// ListOffsets for pending seeks and resets; a timestamp past the last record means the end.
    async fn resolve_positions(
        &mut self,
        query: Vec<(TopicPartition, OffsetSpec)>,
    ) -> Result<(), ConsumerError> {
        self.ensure_metadata().await?;
        let wire: Vec<(TopicPartition, i64)> =
            query.iter().map(|(tp, s)| (tp.clone(), s.wire())).collect();
        let found = self.list_offsets(wire).await?;
        let mut need_end = Vec::new();
        for (tp, spec) in query {
            let Some(&(offset, _)) = found.get(&tp) else { continue };
            if offset < 0 {
                // No record at or after the timestamp: the end of the log.
                need_end.push((tp, -1));
                continue;
            }
            if let Some(st) = self.assignment.get_mut(&tp) {
                if st.position.is_none() && (st.reset.is_none() || st.reset == Some(spec)) {
                    st.position = Some(offset);
                    st.reset = None;
                }
            }
        }
        if !need_end.is_empty() {
            let ends = self.list_offsets(need_end).await?;
            for (tp, (offset, _)) in ends {
                if let Some(st) = self.assignment.get_mut(&tp) {
                    st.position = Some(offset.max(0));
                    st.reset = None;
                }
            }
        }
        Ok(())
    }

    /// Returns records fetched for the assigned partitions, waiting up to `timeout` when none are
    /// buffered. An empty vector means the timeout passed.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumerError> {
        let parts = self.poll_partitions(timeout).await?;
        let mut out = Vec::with_capacity(parts.iter().map(PartitionRecords::len).sum());
        for p in parts {
            out.extend(p.into_records());
        }
        Ok(out)
    }

    /// [`Self::poll`], with the records as fetched: each partition's run of them, read in place
    /// ([`PartitionRecords::iter`]: no reference counting or copy a record).
    pub async fn poll_partitions(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<PartitionRecords>, ConsumerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending_error.take() {
                return Err(e);
            }
            if self.subscription.is_some() {
                self.poll_group(deadline).await?;
            }
            if let Err(e) = self.ensure_metadata().await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
            self.update_positions().await?;
            let records = self.drain_buffered();
            // Pipelining: the next fetch goes out before the application sees these records.
            self.send_fetches().await;
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wait = if self.inflight.is_empty() {
                // Nothing to wait for (no leaders, backoff): look again soon.
                Duration::from_millis(self.cfg.retry_backoff_ms.max(1)).min(deadline - now)
            } else {
                deadline - now
            };
            if let Ok(Some((node, outcome))) = tokio::time::timeout(wait, self.rx.recv()).await {
                self.handle_fetch(node, outcome);
            }
            // Take every other completed fetch without waiting.
            while let Ok((node, outcome)) = self.rx.try_recv() {
                self.handle_fetch(node, outcome);
            }
        }
    }

    /// Up to `max.poll.records` buffered records, each partition's as one run.
    fn drain_buffered(&mut self) -> Vec<PartitionRecords> {
        let mut out = Vec::new();
        let mut n = 0;
        let max = self.cfg.max_poll_records;
        while n < max {
            let Some(front) = self.buffered.front_mut() else { break };
            let valid = self.assignment.get(&front.tp).is_some_and(|st| st.position.is_some());
            if !valid {
                self.buffered.pop_front();
                continue;
            }
            let left = front.records.len() - front.taken;
            let take = (max - n).min(left);
            let from = front.taken;
            let last = take.checked_sub(1).map(|i| front.records.offset_at(from + i));
            // Shares what was fetched: no record copied.
            let part = front.records.part(from..from + take);
            front.taken += take;
            n += take;
            out.push(part);
            let exhausted = take == left;
            let next = front.next_offset;
            if let Some(st) = self.assignment.get_mut(&front.tp) {
                if exhausted {
                    st.position = Some(next);
                } else if let Some(l) = last {
                    st.position = Some(l + 1);
                }
            }
            if exhausted {
                self.buffered.pop_front();
            }
        }
        out
    }

    fn handle_fetch(&mut self, node: i32, outcome: FetchOutcome) {
        self.inflight.remove(&node);
        let parts = match outcome {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(node, error = %e, "fetch failed");
                self.need_metadata = true;
                self.node_backoff.insert(
                    node,
                    Instant::now() + Duration::from_millis(self.cfg.retry_backoff_ms),
                );
                return;
            }
        };
        for p in parts {
            let Some(st) = self.assignment.get_mut(&p.tp) else { continue };
            if st.position != Some(p.fetch_offset) {
                continue; // seeked meanwhile
            }
            if p.high_watermark >= 0 {
                st.high_watermark = Some(p.high_watermark);
            }
            match ErrorCode::from_code(p.error_code) {
                ErrorCode::NONE => {
                    if let Some(reason) = p.corrupt.clone() {
                        if p.records.is_empty() {
                            self.pending_error = Some(ConsumerError::Corrupt {
                                topic: p.tp.topic.to_string(),
                                partition: p.tp.partition,
                                offset: p.next_offset,
                                reason,
                            });
                            continue;
                        }
                    }
                    if p.records.is_empty() {
                        if p.next_offset > p.fetch_offset {
                            st.position = Some(p.next_offset); // only control batches
                        }
                        continue;
                    }
                    self.buffered.push_back(Completed {
                        tp: p.tp,
                        records: p.records,
                        taken: 0,
                        next_offset: p.next_offset,
                    });
                }
                ErrorCode::OFFSET_OUT_OF_RANGE => match self.cfg.auto_offset_reset {
                    AutoOffsetReset::None => {
                        self.pending_error = Some(ConsumerError::OffsetOutOfRange {
                            topic: p.tp.topic.to_string(),
                            partition: p.tp.partition,
                            offset: p.fetch_offset,
                        });
                    }
                    AutoOffsetReset::Earliest => {
                        st.position = None;
                        st.reset = Some(OffsetSpec::Earliest);
                    }
                    AutoOffsetReset::Latest => {
                        st.position = None;
                        st.reset = Some(OffsetSpec::Latest);
                    }
                },
                e if errors::needs_metadata_refresh(e.code()) || e.is_retriable() => {
                    self.need_metadata = true;
                    let until = Instant::now() + Duration::from_millis(self.cfg.retry_backoff_ms);
                    self.partition_backoff.insert(p.tp, (node, until));
                }
                e => {
                    self.pending_error = Some(ConsumerError::Broker {
                        topic: p.tp.topic.to_string(),
                        partition: p.tp.partition,
                        code: e.code(),
                        name: e.name(),
                    });
                }
            }
        }
    }

    async fn send_fetches(&mut self) {
        let now = Instant::now();
        self.partition_backoff.retain(|_, (_, until)| *until > now);
        let buffered: BTreeSet<&TopicPartition> = self.buffered.iter().map(|c| &c.tp).collect();
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        self.cluster.with_metadata(|m| {
            // Kafka's buffered-node gate (KAFKA-17182, `AbstractFetch.prepareFetchRequests`): a
            // node leading a partition whose records wait in the buffer is not fetched from at
            // all. A fetch leaving the buffered partition out would long-poll on the node's other
            // partitions, and the buffered one, once drained, could not be fetched until it
            // returned (up to `fetch.max.wait.ms` when they get no records).
            let buffered_nodes: BTreeSet<i32> = buffered
                .iter()
                .filter_map(|tp| m.leader_addr(&tp.topic, tp.partition).map(|(node, _)| node))
                .collect();
            for (tp, st) in &self.assignment {
                let Some(pos) = st.position else { continue };
                if buffered.contains(tp) {
                    continue;
                }
                let Some((node, _)) = m.leader_addr(&tp.topic, tp.partition) else {
                    continue;
                };
                if self.inflight.contains(&node)
                    || buffered_nodes.contains(&node)
                    || self.node_backoff.get(&node).is_some_and(|&t| t > now)
                    || self.partition_backoff.get(tp).is_some_and(|&(n, _)| n == node)
                {
                    continue;
                }
                by_node.entry(node).or_default().push((tp.clone(), pos));
            }
        });
        for (node, parts) in by_node {
            let conn = match self.cluster.node_conn(node).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(node, error = %e, "cannot connect for fetch");
                    self.need_metadata = true;
                    self.node_backoff
                        .insert(node, now + Duration::from_millis(self.cfg.retry_backoff_ms));
                    continue;
                }
            };
            let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
            for (tp, pos) in &parts {
                topics.entry(&tp.topic).or_default().push(
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_fetch_offset(*pos)
                        .with_partition_max_bytes(self.cfg.max_partition_fetch_bytes),
                );
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.cfg.fetch_max_wait_ms)
                .with_min_bytes(self.cfg.fetch_min_bytes)
                .with_max_bytes(self.cfg.fetch_max_bytes)
                .with_isolation_level(self.cfg.isolation_level)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            self.inflight.insert(node);
            let tx = self.tx.clone();
            let check_crcs = self.cfg.check_crcs;
            tokio::spawn(async move {
                let outcome = fetch(conn, req, parts, check_crcs).await;
                let _ = tx.send((node, outcome));
            });
        }
    }

    /// Closes the connections.
    pub async fn close(&mut self) {
        if let Some(mut g) = self.group.take() {
            if self.subscription.is_some() {
                // As Kafka: commit (auto), revoke, then leave (dynamic members only).
                if g.state() == crate::group::MemberState::Stable {
                    let owned = self.assignment();
                    if self.cfg.enable_auto_commit {
                        let offsets = self.consumed_offsets(&owned);
                        if let Err(e) = g.commit(&offsets, true).await {
                            tracing::warn!(error = %e, "commit on close failed");
                        }
                    }
                    self.notify(Notice::Revoked, &owned);
                }
                g.leave("the consumer is being closed").await;
            }
            g.close().await;
        }
        self.subscription = None;
        self.assignment.clear();
        self.buffered.clear();
        self.cluster.close().await;
    }
}

/// Callbacks around a rebalance, called inside `poll` (and `close`/`unsubscribe`) like Kafka's
/// `ConsumerRebalanceListener`. With `enable.auto.commit` the consumer has already committed the
/// positions of revoked partitions when `on_partitions_revoked` runs.
pub trait RebalanceListener: Send {
    /// Partitions taken away cleanly (their positions may be committed).
    fn on_partitions_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions newly given to this member (positions are set before the next fetch).
    fn on_partitions_assigned(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions lost with the generation (fenced, session or poll timeout): another member may
    /// own them already, so nothing must be committed for them. Kafka's default: as revoked.
    fn on_partitions_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(partitions)
    }
}

/// A rebalance notice as a value, for listeners that are channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Revoked(Vec<TopicPartition>),
    Assigned(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
}

/// A channel is a listener: every notice is sent as a [`RebalanceEvent`].
impl RebalanceListener for mpsc::UnboundedSender<RebalanceEvent> {
    fn on_partitions_revoked(&mut self, p: &[TopicPartition]) {
        let _ = self.send(RebalanceEvent::Revoked(p.to_vec()));
    }
    fn on_partitions_assigned(&mut self, p: &[TopicPartition]) {
        let _ = self.send(RebalanceEvent::Assigned(p.to_vec()));
    }
    fn on_partitions_lost(&mut self, p: &[TopicPartition]) {
        let _ = self.send(RebalanceEvent::Lost(p.to_vec()));
    }
}

#[derive(Debug, Clone, Copy)]
enum Notice {
    Revoked,
    Assigned,
    Lost,
}

/// The member's identity in its group, for checkers (group-exclusive per generation,
/// committed-offset monotonic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group_id: String,
    /// -1 outside a generation.
    pub generation_id: i32,
    /// Empty before the first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// Consumer groups: `subscribe`, commits, the rebalance driven from `poll`.
impl Consumer {
    fn group_coordinator(&mut self) -> Result<&mut GroupCoordinator, ConsumerError> {
        if self.group.is_none() {
            let group_id = self.cfg.group_id.clone().ok_or(GroupError::NoGroupId)?;
            if self.cfg.heartbeat_interval_ms >= self.cfg.session_timeout_ms {
                return Err(invalid(
                    "heartbeat.interval.ms",
                    &self.cfg.heartbeat_interval_ms.to_string(),
                    "must be lower than session.timeout.ms",
                ));
            }
            let settings = GroupSettings {
                group_id,
                group_instance_id: self.cfg.group_instance_id.clone(),
                session_timeout_ms: self.cfg.session_timeout_ms,
                rebalance_timeout_ms: self.cfg.max_poll_interval_ms,
                heartbeat_interval_ms: self.cfg.heartbeat_interval_ms,
                strategies: self.cfg.partition_assignment_strategy.clone(),
                retry_backoff_ms: self.cfg.retry_backoff_ms,
                request_timeout_ms: self.cfg.request_timeout_ms,
                default_api_timeout_ms: self.cfg.default_api_timeout_ms,
            };
            self.group = Some(GroupCoordinator::new(
                settings,
                Arc::clone(&self.net),
                Arc::clone(&self.cluster),
                self.cluster.config(),
            ));
        }
        Ok(self.group.as_mut().expect("created above"))
    }

    /// Joins the group `group.id` for `topics`; the assignment follows at the next `poll`s (which
    /// drive the rebalance). Replaces a manual assignment; a changed subscription rebalances.
    pub fn subscribe<I, T>(&mut self, topics: I) -> Result<(), ConsumerError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let topics: Vec<String> =
            topics.into_iter().map(Into::into).collect::<BTreeSet<_>>().into_iter().collect();
        self.group_coordinator()?;
        if self.subscription.is_none() {
            // Manual assignment and subscription do not mix (Kafka throws; we replace).
            self.assign(Vec::new());
        }
        if self.subscription.as_ref() != Some(&topics) {
            self.subscription = Some(topics);
            if let Some(g) = &self.group {
                g.request_rejoin();
            }
        }
        Ok(())
    }

    /// The subscribed topics, if subscribed.
    pub fn subscription(&self) -> Option<&[String]> {
        self.subscription.as_deref()
    }

    /// Revokes everything (committing first with auto commit) and leaves the group.
    pub async fn unsubscribe(&mut self) {
        if self.subscription.take().is_none() {
            return;
        }
        let owned = self.assignment();
        if let Some(mut g) = self.group.take() {
            if self.cfg.enable_auto_commit && g.state() == crate::group::MemberState::Stable {
                let offsets = self.consumed_offsets(&owned);
                if let Err(e) = g.commit(&offsets, true).await {
                    tracing::warn!(error = %e, "commit on unsubscribe failed");
                }
            }
            self.notify(Notice::Revoked, &owned);
            g.leave("the consumer unsubscribed").await;
            g.close().await;
        }
        self.assign(Vec::new());
        self.pending_committed.clear();
    }

    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// Generation and member id as this member knows them (`None` without `group.id`).
    pub fn group_metadata(&self) -> Option<GroupMetadata> {
        let group_id = self.cfg.group_id.clone()?;
        let (generation_id, member_id) =
            self.group.as_ref().map_or((-1, String::new()), |g| g.group_metadata());
        Some(GroupMetadata {
            group_id,
            generation_id,
            member_id,
            group_instance_id: self.cfg.group_instance_id.clone(),
        })
    }

    fn notify(&mut self, what: Notice, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        tracing::debug!(?what, ?partitions, "rebalance");
        if let Some(l) = self.listener.as_mut() {
            match what {
                Notice::Revoked => l.on_partitions_revoked(partitions),
                Notice::Assigned => l.on_partitions_assigned(partitions),
                Notice::Lost => l.on_partitions_lost(partitions),
            }
        }
    }

    /// Positions of `tps` that have one: the offsets a commit stores.
    fn consumed_offsets(&self, tps: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
        tps.iter()
            .filter_map(|tp| {
                let pos = self.assignment.get(tp)?.position?;
                Some((tp.clone(), pos))
            })
            .collect()
    }

    fn is_subscribed(&self) -> bool {
        self.subscription.is_some()
    }

    /// OffsetCommit of `offsets` (next offset to read per partition), or of every assigned
    /// partition's position when `None`. Fails with `CommitFailed` when the group has moved on.
    pub async fn commit_sync(
        &mut self,
        offsets: Option<BTreeMap<TopicPartition, i64>>,
    ) -> Result<(), ConsumerError> {
        let offsets = offsets.unwrap_or_else(|| self.consumed_offsets(&self.assignment()));
        let subscribed = self.is_subscribed();
        self.group_coordinator()?.commit(&offsets, subscribed).await?;
        Ok(())
    }

    /// Like [`commit_sync`](Self::commit_sync) in a background task; the receiver gets the result.
    pub fn commit_async(
        &mut self,
        offsets: Option<BTreeMap<TopicPartition, i64>>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), ConsumerError>>, ConsumerError> {
        let offsets = offsets.unwrap_or_else(|| self.consumed_offsets(&self.assignment()));
        let subscribed = self.is_subscribed();
        let handle = self.group_coordinator()?.handle();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let r = handle.commit(&offsets, subscribed).await.map_err(Into::into);
            let _ = tx.send(r);
        });
        Ok(rx)
    }

    /// The group's committed offsets for `tps` (`None` = nothing committed).
    pub async fn committed(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, ConsumerError> {
        Ok(self.group_coordinator()?.committed(tps).await?)
    }

    /// One step of group membership inside `poll`: losses, revocation before a join, the join
    /// itself (bounded by `deadline`), the new assignment and its positions, auto commit.
    async fn poll_group(&mut self, deadline: Instant) -> Result<(), ConsumerError> {
        let topics = self.subscription.clone().unwrap_or_default();
        let auto_commit = self.cfg.enable_auto_commit;
        let g = self.group.as_mut().expect("subscribe creates the group");
        g.touch_poll();
        if let Some(e) = g.take_fatal() {
            return Err(e.into());
        }
        if g.take_lost() {
            let owned = self.assignment();
            self.notify(Notice::Lost, &owned);
            self.assign(Vec::new());
            self.pending_committed.clear();
        }
        let g = self.group.as_mut().expect("subscribe creates the group");
        if g.needs_join() {
            if !g.join_in_flight() {
                let protocol = g.protocol();
                let owned = self.assignment();
                let plan = before_join(protocol, false, &owned);
                if !plan.revoked.is_empty() {
                    if auto_commit {
                        let offsets = self.consumed_offsets(&plan.revoked);
                        let g = self.group.as_mut().expect("exists");
                        if let Err(e) = g.commit(&offsets, true).await {
                            tracing::warn!(error = %e, "commit before revocation failed");
                        }
                    }
                    self.notify(Notice::Revoked, &plan.revoked);
                    let keep: Vec<TopicPartition> =
                        owned.iter().filter(|tp| !plan.revoked.contains(tp)).cloned().collect();
                    self.assign(keep);
                }
                let still_owned = self.assignment();
                let g = self.group.as_mut().expect("exists");
                g.start_join(topics, still_owned);
            }
            // Cooperative members keep fetching what they own meanwhile: do not block on the join.
            let wait = if self.assignment.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let g = self.group.as_mut().expect("exists");
            match g.poll_join(wait).await {
                None => {}
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(done)) => self.on_joined(done).await?,
            }
        } else {
            if !g.coordinator_known() {
                let wait = deadline.saturating_duration_since(Instant::now());
                if let Ok(Err(e)) = tokio::time::timeout(wait, g.ensure_coordinator()).await {
                    tracing::debug!(error = %e, "coordinator rediscovery failed");
                }
            }
            self.check_subscription_metadata().await;
        }
        self.resolve_committed().await?;
        if auto_commit {
            self.maybe_auto_commit();
        }
        Ok(())
    }

    /// A join round finished: revoke what moved (cooperative), take the new assignment, look up
    /// committed offsets for what is new.
    async fn on_joined(&mut self, done: JoinDone) -> Result<(), ConsumerError> {
        tracing::debug!(generation = done.generation, member = %done.member_id, assignment = ?done.assignment, "joined");
        let topics: BTreeSet<&str> =
            self.subscription.iter().flatten().map(String::as_str).collect();
        // A leader may hand out topics we did not ask for (another client's bug): ignore them.
        let assigned: Vec<TopicPartition> =
            done.assignment.iter().filter(|tp| topics.contains(tp.topic())).cloned().collect();
        let owned = self.assignment();
        let change = after_sync(done.protocol, &owned, &assigned);
        if !change.revoked.is_empty() {
            if self.cfg.enable_auto_commit {
                let offsets = self.consumed_offsets(&change.revoked);
                let g = self.group.as_mut().expect("exists");
                if let Err(e) = g.commit(&offsets, true).await {
                    tracing::warn!(error = %e, "commit of revoked partitions failed");
                }
            }
            self.notify(Notice::Revoked, &change.revoked);
        }
        self.assign(assigned);
        self.pending_committed.extend(change.added.iter().cloned());
        self.leader_snapshot = done.leader_snapshot.clone();
        self.schedule_subscription_check();
        self.next_auto_commit =
            Some(Instant::now() + Duration::from_millis(self.cfg.auto_commit_interval_ms));
        self.resolve_committed().await?;
        self.notify(Notice::Assigned, &change.added);
        if change.rejoin {
            if let Some(g) = &self.group {
                g.request_rejoin();
            }
        }
        Ok(())
    }

    /// Every `metadata.max.age.ms`; every second while a group topic is missing.
    fn schedule_subscription_check(&mut self) {
        let every = match &self.leader_snapshot {
            Some(snap) if snap.topics.iter().all(|t| snap.counts.contains_key(t)) => {
                self.cfg.metadata_max_age_ms
            }
            _ => self.cfg.metadata_max_age_ms.min(1_000),
        };
        self.next_subscription_check = Some(Instant::now() + Duration::from_millis(every.max(1)));
    }

    /// The leader's check (Kafka's `assignmentSnapshot`): a group topic appeared or changed its
    /// partition count since the assignment, so rejoin and assign again.
    async fn check_subscription_metadata(&mut self) {
        let Some(snap) = self.leader_snapshot.clone() else { return };
        if self.next_subscription_check.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.schedule_subscription_check();
        if snap.topics.is_empty() {
            return;
        }
        let cluster = Arc::clone(&self.cluster);
        let meta = match cluster.refresh_metadata(Some(&snap.topics), false).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "metadata for the group's topics failed");
                return;
            }
        };
        let counts: BTreeMap<String, i32> = meta
            .topics
            .into_iter()
            .filter(|(_, t)| t.error_code == ErrorCode::NONE && !t.partitions.is_empty())
            .map(|(name, t)| (name, t.partitions.len() as i32))
            .collect();
        if counts != snap.counts {
            tracing::debug!(before = ?snap.counts, after = ?counts, "group topics changed; rejoining");
            if let Some(g) = &self.group {
                g.request_rejoin();
            }
        }
    }

    /// Positions of newly assigned partitions: the committed offset, else `auto.offset.reset`.
    async fn resolve_committed(&mut self) -> Result<(), ConsumerError> {
        if self.pending_committed.is_empty() {
            return Ok(());
        }
        let tps: Vec<TopicPartition> = self.pending_committed.iter().cloned().collect();
        let g = self.group.as_mut().expect("exists");
        let committed = g.committed(&tps).await?;
        for tp in tps {
            self.pending_committed.remove(&tp);
            if let (Some(Some(offset)), Some(st)) =
                (committed.get(&tp), self.assignment.get_mut(&tp))
            {
                if st.position.is_none() {
                    st.position = Some(*offset);
                    st.reset = None;
                }
            }
        }
        Ok(())
    }

    /// `enable.auto.commit`: commits positions every `auto.commit.interval.ms`, one at a time.
    fn maybe_auto_commit(&mut self) {
        if let Some(rx) = self.auto_commit_inflight.as_mut() {
            match rx.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return,
                Ok(Err(e)) => tracing::debug!(error = %e, "auto commit failed"),
                _ => {}
            }
            self.auto_commit_inflight = None;
        }
        let now = Instant::now();
        let due = self.next_auto_commit.is_some_and(|t| now >= t);
        let stable =
            self.group.as_ref().is_some_and(|g| g.state() == crate::group::MemberState::Stable);
        if !due || !stable {
            return;
        }
        self.next_auto_commit = Some(now + Duration::from_millis(self.cfg.auto_commit_interval_ms));
        if let Ok(rx) = self.commit_async(None) {
            self.auto_commit_inflight = Some(rx);
        }
    }
}

async fn fetch(
    conn: Arc<Conn>,
    req: FetchRequest,
    parts: Vec<(TopicPartition, i64)>,
    check_crcs: bool,
) -> FetchOutcome {
    let resp = conn.request(&req).await?;
    if resp.error_code != ErrorCode::NONE {
        // A whole-request error (e.g. a fetch session error): every partition gets it.
        return Ok(parts
            .into_iter()
            .map(|(tp, fetch_offset)| PartResult {
                records: PartitionRecords::empty(tp.topic.clone(), tp.partition),
                tp,
                fetch_offset,
                error_code: resp.error_code,
                high_watermark: -1,
                next_offset: fetch_offset,
                corrupt: None,
            })
            .collect());
    }
    let mut out = Vec::new();
    for t in resp.responses {
        let topic = Topic::from(t.topic.as_str());
        for p in t.partitions {
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            let Some(&(_, fetch_offset)) = parts.iter().find(|(q, _)| *q == tp) else {
                continue;
            };
            let decoded = if p.error_code == ErrorCode::NONE {
                let data = p.records.unwrap_or_default();
                let (data_bytes, codec) =
                    (data.len() as u64, crate::conn::first_batch_codec(&data));
                let decoded =
                    fetched::decode(&topic, p.partition_index, data, fetch_offset, check_crcs);
                // Client CPU: CRC32C over what arrived, decompression over what came out.
                let cost = conn.cost_hook();
                if check_crcs {
                    cost.spend(net_model::Work::Crc32c, data_bytes).await;
                }
                if let Some(codec) = codec {
                    let out = decoded.records.field_bytes();
                    cost.spend(net_model::Work::Decompress(codec), out).await;
                    let records = decoded.records.len() as u64;
                    cost.spend(net_model::Work::DecompressRecords(codec), records).await;
                }
                decoded
            } else {
                fetched::Decoded {
                    records: PartitionRecords::empty(topic.clone(), p.partition_index),
                    next_offset: fetch_offset,
                    corrupt: None,
                }
            };
            let fetched::Decoded { records, next_offset, corrupt } = decoded;
            out.push(PartResult {
                tp,
                fetch_offset,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                records,
                next_offset,
                corrupt,
            });
        }
    }
    Ok(out)
}
