//! The controller's replicated state machine (KRaft, KIP-631) and its decisions, without IO.
//!
//! The metadata log is a sequence of [`Record`]s; [`MetadataImage::apply`] folds them into an
//! image of brokers, topics and partitions. Every controller applies the same committed records
//! in the same order and so holds the same image: `apply` is deterministic, iterates only ordered
//! collections, and rejects a stale or invalid record *without changing the image* (so a rejected
//! record is rejected everywhere alike).
//!
//! The active [`Controller`] turns requests and the passage of time into records to propose:
//! broker registration and heartbeats (a broker whose session, `broker.session.timeout.ms`,
//! expires is fenced), leader election when a leader is fenced, AlterPartition from leaders, topic
//! creation and deletion. Decisions read the image that already includes every record proposed so
//! far (committed or not, as KRaft does), so the caller must apply a decision's records to that
//! image before making the next decision.
//!
//! Invariants (asserted by `apply`, property-tested):
//! - a partition's leader is -1 (offline) or a member of its ISR; ISR ⊆ replicas, never empty,
//!   no duplicates;
//! - `partition_epoch` grows by exactly one per change; `leader_epoch` strictly grows whenever the
//!   leader changes and never goes back;
//! - a fenced broker leaves every ISR unless it is the last member (KIP-841), so an ISR holds
//!   fenced brokers only as a sole last member;
//! - **eligible leader replicas** (a reduced KIP-966): a replica removed from the ISR while the
//!   ISR is smaller than `min.insync.replicas` joins the partition's ELR — no `acks=all` write was
//!   acknowledged after it left, so it holds every one. The ELR is cleared once the ISR is back at
//!   `min.insync.replicas`, loses members that rejoin the ISR, and loses a broker that registers
//!   after an unclean shutdown (its unflushed tail may be gone). When no ISR member is live, a live
//!   ELR member is elected (clean), and a sole ISR member that restarted uncleanly hands the ISR
//!   to the ELR. With `min.insync.replicas=1` the ELR is always empty: Kafka's older behaviour,
//!   where a sole ISR member that lost its tail is elected again;
//!   ELR ⊆ replicas and ELR ∩ ISR = ∅;
//! - **last known ELR and unclean recovery** (the rest of KIP-966): an unclean restart cannot tell a
//!   process crash (the page cache, so the log, survives) from a power loss, so a broker that
//!   leaves the ELR that way joins the partition's last known ELR (cleared with the ELR once the ISR
//!   is back at `min.insync.replicas`; ⊆ replicas, disjoint from ISR and ELR). When the sole ISR
//!   member restarts uncleanly with an empty ELR and a non-empty last known ELR, it is not elected
//!   as "last ISR member": the partition goes offline `recovering`, its brokers report their logs
//!   (last epoch, log end) with their heartbeats, and once every candidate (ISR ∪ last known ELR)
//!   has reported at its current broker epoch, the longest log that is live leads
//!   ([`Controller::recover`]);
//! - with `unclean.leader.election.enable` off, a new leader comes from the ISR; with it on, an
//!   offline partition may take a live replica outside the ISR, and the ISR becomes just it;
//! - broker epochs grow per registration; a request carrying an older one is stale;
//! - config records (`Record::Config`, Kafka's ConfigRecord; `metadata/configs.rs`) hold topic
//!   configs and dynamic broker configs; a topic's go with it. The controller's decisions for a
//!   partition read its topic's `min.insync.replicas` and `unclean.leader.election.enable`
//!   ([`ControllerConfig::for_topic`]).
//!
//! Limits: brokers (`brokers_max`), topics (`topics_max`), partitions per topic
//! (`partitions_per_topic_max`), replication factor (`replication_factor_max`), topic name length
//! (249, Kafka's).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod configs;
mod incarnation;
pub use configs::{
    ConfigChange, ConfigResource, CONFIGS_PER_RESOURCE_MAX, CONFIG_CHANGES_MAX,
    CONFIG_NAME_LEN_MAX, CONFIG_VALUE_LEN_MAX,
};
pub use incarnation::{local_topic, LocalTopic};

pub type BrokerId = i32;
/// No leader: the partition is offline.
pub const NO_LEADER: BrokerId = -1;
/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// A topic's id (Kafka's 16-byte Uuid); the caller draws it from its seeded rng.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// One replica assignment with its initial state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
}

/// The records of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A broker (re)starts: `incarnation` is its process's id, `broker_epoch` the controller's
    /// counter (greater than any earlier registration). A registered broker starts fenced.
    RegisterBroker {
        broker_id: BrokerId,
        incarnation: u64,
        broker_epoch: i64,
        endpoint: Endpoint,
    },
    FenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    UnfenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    CreateTopic {
        name: String,
        topic_id: TopicId,
        partitions: Vec<PartitionRecord>,
    },
    /// A partition's new leader/ISR. `partition_epoch` must be the current one plus one.
    PartitionChange {
        topic_id: TopicId,
        partition: u32,
        leader: BrokerId,
        leader_epoch: i32,
        isr: Vec<BrokerId>,
        partition_epoch: i32,
        #[serde(default)]
        elr: Vec<BrokerId>,
        #[serde(default)]
        last_known_elr: Vec<BrokerId>,
        #[serde(default)]
        recovering: bool,
    },
    DeleteTopic {
        topic_id: TopicId,
    },
    /// A topic config or dynamic broker config set or deleted (Kafka's ConfigRecord); see
    /// `metadata/configs.rs`.
    Config(ConfigChange),
    /// CreatePartitions: `partitions` are appended to the topic's (they get the next indexes).
    CreatePartitions {
        topic_id: TopicId,
        partitions: Vec<PartitionRecord>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub incarnation: u64,
    pub broker_epoch: i64,
    pub endpoint: Endpoint,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Eligible leader replicas (see the module doc).
    #[serde(default)]
    pub elr: Vec<BrokerId>,
    /// Last known ELR (KIP-966): replicas that left the ELR because they restarted uncleanly.
    /// Their logs may have survived (a process crash keeps the page cache), so they are
    /// candidates of unclean recovery. Cleared once the ISR is back at `min.insync.replicas`.
    #[serde(default)]
    pub last_known_elr: Vec<BrokerId>,
    /// Awaiting unclean recovery (KIP-966): the sole ISR member restarted uncleanly while
    /// last-known-ELR members may hold more; no leader until every candidate (ISR ∪ last known
    /// ELR) reported its log, then the longest log leads.
    #[serde(default)]
    pub recovering: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<PartitionState>,
    /// Records the image had applied when this topic was created ([`MetadataImage::applied`]):
    /// every image replays the same log, so incarnations of one name are ordered by it, and an
    /// image that has applied more records than this and lacks the id has seen it deleted.
    #[serde(default)]
    pub created_at: u64,
}

/// Why `apply` refused a record. The image is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("stale record: {0}")]
    Stale(String),
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub brokers_max: usize,
    pub topics_max: usize,
    pub partitions_per_topic_max: usize,
    pub replication_factor_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            brokers_max: 1_000,
            topics_max: 10_000,
            partitions_per_topic_max: 10_000,
            replication_factor_max: 16,
        }
    }
}

/// The state the metadata log describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub limits: Limits,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<TopicId, TopicImage>,
    pub topic_ids: BTreeMap<String, TopicId>,
    /// The largest broker epoch handed out so far.
    pub last_broker_epoch: i64,
    /// Records applied (accepted) so far.
    pub applied: u64,
    /// Topic config overrides by topic name (`Record::Config`); gone with the topic.
    #[serde(default)]
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Dynamic broker configs by broker id (decimal), `""` for the cluster-wide default.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Deleted topic names not created again, with [`MetadataImage::applied`] once the deletion
    /// was applied: a broker whose image has applied that many records has seen it. The
    /// controller creates the name again only once every live broker acted on the deletion
    /// ([`Controller::deletion_pending`]). At most `topics_max` names (the oldest go first).
    #[serde(default)]
    pub deleted_at: BTreeMap<String, u64>,
}

impl Default for MetadataImage {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl MetadataImage {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_ids: BTreeMap::new(),
            last_broker_epoch: 0,
            applied: 0,
            topic_configs: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            deleted_at: BTreeMap::new(),
        }
    }

    pub fn partition(&self, topic_id: TopicId, partition: u32) -> Option<&PartitionState> {
        self.topics.get(&topic_id)?.partitions.get(partition as usize)
    }

    pub fn is_live(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// Unfenced brokers in id order.
    pub fn live_brokers(&self) -> Vec<BrokerId> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| b.broker_id).collect()
    }

    /// Appends `partitions` to topic `topic_id` (a `CreatePartitions` record).
    fn apply_create_partitions(
        &mut self,
        topic_id: TopicId,
        partitions: &[PartitionRecord],
    ) -> Result<(), ApplyError> {
        let max = self.limits.partitions_per_topic_max;
        let rf_max = self.limits.replication_factor_max;
        let topic = self
            .topics
            .get_mut(&topic_id)
            .ok_or_else(|| ApplyError::Invalid(format!("unknown topic {topic_id:?}")))?;
        if partitions.is_empty() || topic.partitions.len() + partitions.len() > max {
            return Err(ApplyError::Invalid(format!("{} more partitions", partitions.len())));
        }
        topic.partitions.extend(new_partition_states(partitions, rf_max)?);
        Ok(())
    }

    /// Applies one record, or rejects it leaving the image unchanged.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::RegisterBroker { broker_id, incarnation, broker_epoch, endpoint } => {
                if *broker_id < 0 {
                    return Err(ApplyError::Invalid(format!("broker id {broker_id}")));
                }
                if *broker_epoch <= self.last_broker_epoch {
                    return Err(ApplyError::Stale(format!(
                        "broker epoch {broker_epoch} ≤ {}",
                        self.last_broker_epoch
                    )));
                }
                if !self.brokers.contains_key(broker_id)
                    && self.brokers.len() >= self.limits.brokers_max
                {
                    return Err(ApplyError::Limit(format!("{} brokers", self.brokers.len())));
                }
                self.last_broker_epoch = *broker_epoch;
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        incarnation: *incarnation,
                        broker_epoch: *broker_epoch,
                        endpoint: endpoint.clone(),
                        fenced: true,
                    },
                );
            }
            Record::FenceBroker { broker_id, broker_epoch }
            | Record::UnfenceBroker { broker_id, broker_epoch } => {
                let fence = matches!(record, Record::FenceBroker { .. });
                let b = self
                    .brokers
                    .get_mut(broker_id)
                    .ok_or_else(|| ApplyError::Invalid(format!("unknown broker {broker_id}")))?;
                if b.broker_epoch != *broker_epoch {
                    return Err(ApplyError::Stale(format!(
                        "broker {broker_id} epoch {broker_epoch}, current {}",
                        b.broker_epoch
                    )));
                }
                b.fenced = fence;
            }
            Record::CreateTopic { name, topic_id, partitions } => {
                validate_topic_name(name).map_err(ApplyError::Invalid)?;
                if self.topic_ids.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(ApplyError::Invalid(format!("topic {name} or its id exists")));
                }
                if self.topics.len() >= self.limits.topics_max {
                    return Err(ApplyError::Limit(format!("{} topics", self.topics.len())));
                }
                if partitions.is_empty() || partitions.len() > self.limits.partitions_per_topic_max
                {
                    return Err(ApplyError::Invalid(format!("{} partitions", partitions.len())));
                }
                let states = new_partition_states(partitions, self.limits.replication_factor_max)?;
                self.topic_ids.insert(name.clone(), *topic_id);
                self.deleted_at.remove(name);
                let created_at = self.applied;
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: states,
                        created_at,
                    },
                );
            }
            Record::CreatePartitions { topic_id, partitions } => {
                self.apply_create_partitions(*topic_id, partitions)?;
            }
            Record::PartitionChange {
                topic_id,
                partition,
                leader,
                leader_epoch,
                isr,
                partition_epoch,
                elr,
                last_known_elr,
                recovering,
            } => {
                let current = self.partition(*topic_id, *partition).ok_or_else(|| {
                    ApplyError::Invalid(format!("unknown partition {topic_id:?}/{partition}"))
                })?;
                if *partition_epoch != current.partition_epoch + 1 {
                    return Err(ApplyError::Stale(format!(
                        "partition epoch {partition_epoch}, current {}",
                        current.partition_epoch
                    )));
                }
                let leader_changed = *leader != current.leader;
                if *leader_epoch < current.leader_epoch
                    || (leader_changed && *leader_epoch == current.leader_epoch)
                {
                    return Err(ApplyError::Stale(format!(
                        "leader epoch {leader_epoch}, current {}",
                        current.leader_epoch
                    )));
                }
                let next = PartitionState {
                    replicas: current.replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    elr: elr.clone(),
                    last_known_elr: last_known_elr.clone(),
                    recovering: *recovering,
                };
                check_partition(&next).map_err(ApplyError::Invalid)?;
                let topic = self.topics.get_mut(topic_id).expect("partition found above");
                topic.partitions[*partition as usize] = next;
            }
            Record::DeleteTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or_else(|| ApplyError::Invalid(format!("unknown topic {topic_id:?}")))?;
                self.topic_ids.remove(&topic.name);
                self.topic_configs.remove(&topic.name);
                self.deleted_at.insert(topic.name, self.applied + 1);
                while self.deleted_at.len() > self.limits.topics_max {
                    let oldest = self
                        .deleted_at
                        .iter()
                        .min_by_key(|(name, at)| (**at, (*name).clone()))
                        .map(|(name, _)| name.clone())
                        .expect("non-empty");
                    self.deleted_at.remove(&oldest);
                }
            }
            Record::Config(change) => {
                self.check_config(change)?;
                self.apply_config(change);
            }
        }
        self.applied += 1;
        Ok(())
    }
}

/// A partition's shape: leader in ISR (or offline), ISR a non-empty duplicate-free subset of the
/// replicas, replicas duplicate-free and valid ids.
/// The states of new partitions (of a `CreateTopic` or `CreatePartitions` record): epochs 0, no
/// ELR; each checked, the whole list refused at the first bad one.
fn new_partition_states(
    partitions: &[PartitionRecord],
    rf_max: usize,
) -> Result<Vec<PartitionState>, ApplyError> {
    let mut states = Vec::with_capacity(partitions.len());
    for p in partitions {
        if p.replicas.is_empty() || p.replicas.len() > rf_max {
            return Err(ApplyError::Invalid(format!("replication factor {}", p.replicas.len())));
        }
        let state = PartitionState {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: 0,
            partition_epoch: 0,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            recovering: false,
        };
        check_partition(&state).map_err(ApplyError::Invalid)?;
        states.push(state);
    }
    Ok(states)
}

fn check_partition(p: &PartitionState) -> Result<(), String> {
    let replicas: BTreeSet<BrokerId> = p.replicas.iter().copied().collect();
    if replicas.len() != p.replicas.len() || replicas.iter().any(|r| *r < 0) {
        return Err(format!("bad replicas {:?}", p.replicas));
    }
    let isr: BTreeSet<BrokerId> = p.isr.iter().copied().collect();
    if isr.is_empty() || isr.len() != p.isr.len() || !isr.is_subset(&replicas) {
        return Err(format!("bad ISR {:?} for replicas {:?}", p.isr, p.replicas));
    }
    if p.leader != NO_LEADER && !isr.contains(&p.leader) {
        return Err(format!("leader {} not in ISR {:?}", p.leader, p.isr));
    }
    let elr: BTreeSet<BrokerId> = p.elr.iter().copied().collect();
    if elr.len() != p.elr.len() || !elr.is_subset(&replicas) || !elr.is_disjoint(&isr) {
        return Err(format!("bad ELR {:?} for replicas {:?}, ISR {:?}", p.elr, p.replicas, p.isr));
    }
    let lke: BTreeSet<BrokerId> = p.last_known_elr.iter().copied().collect();
    if lke.len() != p.last_known_elr.len()
        || !lke.is_subset(&replicas)
        || !lke.is_disjoint(&isr)
        || !lke.is_disjoint(&elr)
    {
        return Err(format!(
            "bad last known ELR {:?} for replicas {:?}, ISR {:?}, ELR {:?}",
            p.last_known_elr, p.replicas, p.isr, p.elr
        ));
    }
    if p.recovering && (p.leader != NO_LEADER || lke.is_empty()) {
        return Err(format!(
            "recovering with leader {} and last known ELR {:?}",
            p.leader, p.last_known_elr
        ));
    }
    Ok(())
}

pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_LEN_MAX || name == "." || name == ".." {
        return Err(format!("illegal topic name {name:?}"));
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-') {
        return Err(format!("illegal character in topic name {name:?}"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker not heard from for longer is fenced.
    pub broker_session_timeout_ms: u64,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// `min.insync.replicas`: below it, replicas leaving the ISR join the ELR.
    pub min_insync_replicas: usize,
    /// `loglab.unsafe.elr.disable` (a bug-museum switch, `broker/src/safeguards.rs`): no eligible
    /// leader replicas, no last known ELR, no unclean recovery (before KIP-966). The controller
    /// then treats every topic as `min.insync.replicas=1` ([`ControllerConfig::for_topic`]): a sole
    /// ISR member back from an unclean shutdown is elected again, whatever it lost.
    #[serde(default)]
    pub unsafe_elr_disabled: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            broker_session_timeout_ms: 9_000,
            unclean_leader_election_enable: false,
            min_insync_replicas: 1,
            unsafe_elr_disabled: false,
        }
    }
}

/// Kafka error codes the controller answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error("STALE_BROKER_EPOCH")]
    StaleBrokerEpoch,
    #[error("BROKER_ID_NOT_REGISTERED")]
    BrokerIdNotRegistered,
    #[error("UNKNOWN_TOPIC_OR_PARTITION")]
    UnknownTopicOrPartition,
    #[error("FENCED_LEADER_EPOCH")]
    FencedLeaderEpoch,
    #[error("INVALID_UPDATE_VERSION")]
    InvalidUpdateVersion,
    #[error("INELIGIBLE_REPLICA: {0}")]
    IneligibleReplica(BrokerId),
    #[error("INVALID_REQUEST: {0}")]
    InvalidRequest(String),
    #[error("INVALID_REPLICATION_FACTOR: {0}")]
    InvalidReplicationFactor(String),
    #[error("INVALID_PARTITIONS: {0}")]
    InvalidPartitions(String),
    #[error("INVALID_TOPIC_EXCEPTION: {0}")]
    InvalidTopic(String),
    #[error("TOPIC_ALREADY_EXISTS")]
    TopicAlreadyExists,
    #[error("POLICY_VIOLATION: {0}")]
    LimitExceeded(String),
    #[error("INVALID_REPLICA_ASSIGNMENT: {0}")]
    InvalidReplicaAssignment(String),
    /// CreateTopics of a name whose deletion some live broker has not acted on yet (it may
    /// still lead the old partitions by that name); the broker retries until its timeout.
    #[error("REQUEST_TIMED_OUT: topic {name} is still being deleted on brokers {brokers:?}")]
    TopicDeletionPending { name: String, brokers: Vec<BrokerId> },
}

/// An AlterPartition request from a partition leader (KIP-497).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: BrokerId,
    pub broker_epoch: i64,
    pub topic_id: TopicId,
    pub partition: u32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// A decision: records to propose, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    pub records: Vec<Record>,
    pub reply: T,
}

/// The heartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Whether the broker is fenced once `records` are applied.
    pub fenced: bool,
}

/// A replica's log as a broker reports it for a partition awaiting unclean recovery (what KIP-966's
/// GetReplicaLogInfo answers): sent with heartbeats while the broker's image says `recovering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLogInfo {
    pub topic_id: TopicId,
    pub partition: u32,
    /// The partition epoch of the image the broker reported from (a report for an older state
    /// does not count).
    pub partition_epoch: i32,
    /// The leader epoch of the log's last batch (-1: empty log).
    pub last_epoch: i32,
    pub log_end_offset: i64,
}

impl ReplicaLogInfo {
    /// Longer log first: the newer last epoch, then the larger log end (KIP-966).
    fn length_key(&self) -> (i32, i64) {
        (self.last_epoch, self.log_end_offset)
    }
}

/// The active controller's soft state (not replicated): when each broker was last heard from, and
/// the log reports of partitions awaiting unclean recovery (broker epoch of each report). A new
/// active controller starts every session afresh at its first tick, as Kafka does; brokers repeat
/// their reports with every heartbeat while recovery lasts.
#[derive(Debug, Clone, Default)]
pub struct Controller {
    pub config: ControllerConfig,
    last_heartbeat_ms: BTreeMap<BrokerId, u64>,
    log_reports: BTreeMap<(TopicId, u32), BTreeMap<BrokerId, (i64, ReplicaLogInfo)>>,
    /// Per broker, the largest [`MetadataImage::applied`] it reported having acted on (its
    /// partition roles and retired logs follow that image).
    acted: BTreeMap<BrokerId, u64>,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            last_heartbeat_ms: BTreeMap::new(),
            log_reports: BTreeMap::new(),
            acted: BTreeMap::new(),
        }
    }

    /// A broker reports it acted on an image that had applied `applied` records (KRaft brokers
    /// report their metadata offset the same way). Never moves back.
    pub fn note_acted(&mut self, broker: BrokerId, applied: u64) {
        let at = self.acted.entry(broker).or_insert(0);
        *at = (*at).max(applied);
    }

    /// The live brokers that have not yet acted on the deletion of topic `name` (none when the
    /// name was not deleted). Until they have, one of them may still lead the old partitions
    /// by name, and a producer that already sees the new topic could get an acknowledgement
    /// from the old incarnation just before it is retired: so the name is not created again.
    pub fn deletion_pending(&self, image: &MetadataImage, name: &str) -> Vec<BrokerId> {
        let Some(&at) = image.deleted_at.get(name) else { return Vec::new() };
        image
            .live_brokers()
            .into_iter()
            .filter(|b| self.acted.get(b).copied().unwrap_or(0) < at)
            .collect()
    }

    /// BrokerRegistration: a new registration (fenced) with the next broker epoch. A broker that
    /// re-registers (a restart) first loses its leaderships and ISR places like a fenced one.
    /// `clean_shutdown` false (the broker's logs were not closed cleanly: a crash or power loss)
    /// also takes it out of every ELR, and out of any ISR it is the sole member of when the ELR
    /// can take over.
    pub fn register_broker(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        incarnation: u64,
        endpoint: Endpoint,
        clean_shutdown: bool,
        now_ms: u64,
    ) -> Result<Decision<i64>, ControllerError> {
        if broker_id < 0 {
            return Err(ControllerError::InvalidRequest(format!("broker id {broker_id}")));
        }
        if !image.brokers.contains_key(&broker_id)
            && image.brokers.len() >= image.limits.brokers_max
        {
            return Err(ControllerError::LimitExceeded(format!("{} brokers", image.brokers.len())));
        }
        let mut work = image.clone();
        let mut records = Vec::new();
        if let Some(old) = image.brokers.get(&broker_id) {
            if !old.fenced {
                records.extend(fence_records(&mut work, &self.config, broker_id, old.broker_epoch));
            }
        }
        if !clean_shutdown {
            records.extend(partition_changes(&mut work, |img, topic, p| {
                after_unclean_restart(img, &self.config.for_topic(img, topic), p, broker_id)
            }));
        }
        let broker_epoch = work.last_broker_epoch + 1;
        let reg = Record::RegisterBroker { broker_id, incarnation, broker_epoch, endpoint };
        work.apply(&reg).expect("registration built from the image");
        records.push(reg);
        self.last_heartbeat_ms.insert(broker_id, now_ms);
        Ok(Decision { records, reply: broker_epoch })
    }

    /// BrokerHeartbeat: renews the session; a fenced broker that wants to be unfenced (it caught
    /// up with the metadata log) is unfenced, and offline partitions it can lead get it as leader;
    /// `want_fence` (controlled shutdown) fences it.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        want_fence: bool,
        now_ms: u64,
    ) -> Result<Decision<HeartbeatReply>, ControllerError> {
        self.heartbeat_with_logs(image, broker_id, broker_epoch, want_fence, &[], now_ms)
    }

    /// A heartbeat carrying the broker's log reports for partitions awaiting unclean recovery:
    /// as [`Controller::heartbeat`], then every recovering partition whose candidates have all
    /// reported elects its longest log ([`Controller::recover`]).
    pub fn heartbeat_with_logs(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        want_fence: bool,
        logs: &[ReplicaLogInfo],
        now_ms: u64,
    ) -> Result<Decision<HeartbeatReply>, ControllerError> {
        let b = image.brokers.get(&broker_id).ok_or(ControllerError::BrokerIdNotRegistered)?;
        if b.broker_epoch != broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch);
        }
        self.last_heartbeat_ms.insert(broker_id, now_ms);
        for info in logs {
            let Some(p) = image.partition(info.topic_id, info.partition) else { continue };
            if p.recovering && recovery_candidates(p).contains(&broker_id) {
                self.log_reports
                    .entry((info.topic_id, info.partition))
                    .or_default()
                    .insert(broker_id, (broker_epoch, *info));
            }
        }
        // The common heartbeat changes nothing: no copy of the image (the whole cluster's
        // partitions) for it.
        if b.fenced == want_fence && self.log_reports.is_empty() {
            return Ok(Decision {
                records: Vec::new(),
                reply: HeartbeatReply { fenced: b.fenced },
            });
        }
        let mut work = image.clone();
        let mut records = match (b.fenced, want_fence) {
            (true, false) => unfence_records(&mut work, &self.config, broker_id, broker_epoch),
            (false, true) => fence_records(&mut work, &self.config, broker_id, broker_epoch),
            _ => Vec::new(),
        };
        if !self.log_reports.is_empty() {
            records.extend(self.recover(&mut work));
        }
        Ok(Decision { records, reply: HeartbeatReply { fenced: work.brokers[&broker_id].fenced } })
    }

    /// Fences every unfenced broker whose session expired at `now_ms`.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: u64) -> Vec<Record> {
        // The image is copied only when a broker is fenced (most ticks fence nobody).
        let mut work: Option<MetadataImage> = None;
        let mut records = Vec::new();
        for b in image.brokers.values() {
            let last = *self.last_heartbeat_ms.entry(b.broker_id).or_insert(now_ms);
            if !b.fenced && now_ms.saturating_sub(last) > self.config.broker_session_timeout_ms {
                let work = work.get_or_insert_with(|| image.clone());
                records.extend(fence_records(work, &self.config, b.broker_id, b.broker_epoch));
            }
        }
        records
    }

    /// Unclean recovery (KIP-966): for each partition awaiting it whose candidates (its ISR and
    /// last known ELR) have all reported their logs at their current broker epoch and the
    /// current partition epoch, the longest log (newest last epoch, then largest log end; replica
    /// order among equals) that is live leads, alone in the ISR; the other last-known-ELR
    /// members stay there (candidates of a later recovery), the suspect ISR member leaves.
    /// A partition whose longest log is fenced waits. Records are applied to `work`.
    pub fn recover(&mut self, work: &mut MetadataImage) -> Vec<Record> {
        let mut records = Vec::new();
        let keys: Vec<(TopicId, u32)> = self.log_reports.keys().copied().collect();
        for key in keys {
            let Some(p) = work.partition(key.0, key.1).cloned() else {
                self.log_reports.remove(&key);
                continue;
            };
            if !p.recovering {
                self.log_reports.remove(&key);
                continue;
            }
            let reports = &self.log_reports[&key];
            let candidates = recovery_candidates(&p);
            let mut infos = Vec::with_capacity(candidates.len());
            for c in &candidates {
                let current = work.brokers.get(c).map(|b| b.broker_epoch);
                match reports.get(c) {
                    Some((epoch, info))
                        if Some(*epoch) == current && info.partition_epoch == p.partition_epoch =>
                    {
                        infos.push((*c, *info))
                    }
                    _ => break,
                }
            }
            if infos.len() != candidates.len() {
                continue;
            }
            let best = infos
                .iter()
                .map(|(_, i)| i.length_key())
                .max()
                .expect("a recovering partition has candidates");
            let Some(leader) = infos
                .iter()
                .find(|(c, i)| i.length_key() == best && work.is_live(*c))
                .map(|(c, _)| *c)
            else {
                continue;
            };
            // The others — the last known ELR and the old ISR member alike — stay candidates of a
            // later recovery, not ELR members: any of them may have lost its tail (a power loss
            // looks like a crash at registration), and any may be all that is left should the
            // new leader lose its log next (the old sole ISR member held every acknowledged write).
            let topic = work.topics.get(&key.0).map(|t| t.name.clone()).unwrap_or_default();
            let min_insync = self.config.for_topic(work, &topic).min_insync_replicas;
            let last_known_elr: Vec<BrokerId> = if min_insync > 1 {
                candidates.iter().copied().filter(|r| *r != leader).collect()
            } else {
                Vec::new()
            };
            let next = PartitionState {
                replicas: p.replicas.clone(),
                isr: vec![leader],
                leader,
                leader_epoch: p.leader_epoch + 1,
                partition_epoch: p.partition_epoch + 1,
                elr: Vec::new(),
                last_known_elr,
                recovering: false,
            };
            let record = change_record(key.0, key.1, next);
            work.apply(&record).expect("recovery built from the image");
            records.push(record);
            self.log_reports.remove(&key);
        }
        records
    }

    /// AlterPartition (KIP-497) from the partition's leader.
    pub fn alter_partition(
        &self,
        image: &MetadataImage,
        req: &AlterPartitionRequest,
    ) -> Result<Decision<PartitionState>, ControllerError> {
        let b = image.brokers.get(&req.broker_id).ok_or(ControllerError::BrokerIdNotRegistered)?;
        if b.broker_epoch != req.broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch);
        }
        let p = image
            .partition(req.topic_id, req.partition)
            .ok_or(ControllerError::UnknownTopicOrPartition)?;
        if req.broker_id != p.leader || req.leader_epoch != p.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch);
        }
        if req.partition_epoch != p.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion);
        }
        let new: BTreeSet<BrokerId> = req.new_isr.iter().copied().collect();
        if new.len() != req.new_isr.len()
            || !new.contains(&p.leader)
            || !new.iter().all(|r| p.replicas.contains(r))
        {
            return Err(ControllerError::InvalidRequest(format!(
                "ISR {:?} for replicas {:?} led by {}",
                req.new_isr, p.replicas, p.leader
            )));
        }
        // KIP-841: only an unfenced broker may join.
        if let Some(bad) = new.iter().find(|r| !p.isr.contains(r) && !image.is_live(**r)) {
            return Err(ControllerError::IneligibleReplica(*bad));
        }
        let isr: Vec<BrokerId> = ordered_by_replicas(&p.replicas, &new);
        if isr == p.isr {
            return Ok(Decision { records: Vec::new(), reply: p.clone() });
        }
        let topic = image.topics.get(&req.topic_id).map(|t| t.name.as_str()).unwrap_or_default();
        let min_insync = self.config.for_topic(image, topic).min_insync_replicas;
        let elr = next_elr(p, &isr, min_insync);
        let last_known_elr = next_last_known_elr(p, &isr, &elr, min_insync);
        let reply = PartitionState {
            isr,
            partition_epoch: p.partition_epoch + 1,
            elr,
            last_known_elr,
            ..p.clone()
        };
        Ok(Decision {
            records: vec![change_record(req.topic_id, req.partition, reply.clone())],
            reply,
        })
    }

    /// CreateTopics: replicas assigned round-robin over unfenced brokers (in id order), each
    /// partition starting one broker further than the previous so leaders spread; `start` shifts
    /// the whole topic (callers pass e.g. the number of existing partitions).
    pub fn create_topic(
        &self,
        image: &MetadataImage,
        name: &str,
        topic_id: TopicId,
        partitions: u32,
        replication_factor: u16,
        start: usize,
    ) -> Result<Decision<TopicId>, ControllerError> {
        validate_topic_name(name).map_err(ControllerError::InvalidTopic)?;
        if image.topic_ids.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists);
        }
        let brokers = self.deletion_pending(image, name);
        if !brokers.is_empty() {
            return Err(ControllerError::TopicDeletionPending { name: name.to_string(), brokers });
        }
        if image.topics.contains_key(&topic_id) {
            return Err(ControllerError::InvalidRequest("topic id in use".into()));
        }
        if image.topics.len() >= image.limits.topics_max {
            return Err(ControllerError::LimitExceeded(format!("{} topics", image.topics.len())));
        }
        if partitions == 0 || partitions as usize > image.limits.partitions_per_topic_max {
            return Err(ControllerError::InvalidPartitions(format!("{partitions}")));
        }
        let live = image.live_brokers();
        let rf = replication_factor as usize;
        if rf == 0 || rf > live.len() || rf > image.limits.replication_factor_max {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "{rf} with {} live brokers",
                live.len()
            )));
        }
        let parts = (0..partitions as usize)
            .map(|p| {
                let replicas: Vec<BrokerId> =
                    (0..rf).map(|i| live[(start + p + i) % live.len()]).collect();
                PartitionRecord { leader: replicas[0], isr: replicas.clone(), replicas }
            })
            .collect();
        Ok(Decision {
            records: vec![Record::CreateTopic {
                name: name.to_string(),
                topic_id,
                partitions: parts,
            }],
            reply: topic_id,
        })
    }

    /// [`Controller::create_topic`] with the topic's configs (one decision: the topic and its
    /// config records commit together).
    #[allow(clippy::too_many_arguments)]
    pub fn create_topic_with_configs(
        &self,
        image: &MetadataImage,
        name: &str,
        topic_id: TopicId,
        partitions: u32,
        replication_factor: u16,
        start: usize,
        configs: &BTreeMap<String, String>,
    ) -> Result<Decision<TopicId>, ControllerError> {
        let d = self.create_topic(image, name, topic_id, partitions, replication_factor, start)?;
        with_topic_configs(image, d, name, configs)
    }

    /// [`Controller::create_topic_assigned`] with the topic's configs (one decision).
    pub fn create_topic_assigned_with_configs(
        &self,
        image: &MetadataImage,
        name: &str,
        topic_id: TopicId,
        assignment: &[Vec<BrokerId>],
        configs: &BTreeMap<String, String>,
    ) -> Result<Decision<TopicId>, ControllerError> {
        let d = self.create_topic_assigned(image, name, topic_id, assignment)?;
        with_topic_configs(image, d, name, configs)
    }

    /// AlterConfigs / IncrementalAlterConfigs, already resolved to sets and deletes by the broker.
    pub fn alter_configs(
        &self,
        image: &MetadataImage,
        changes: &[ConfigChange],
    ) -> Result<Decision<()>, ControllerError> {
        configs::alter_configs(image, changes)
    }

    pub fn delete_topic(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Decision<TopicId>, ControllerError> {
        let id = *image.topic_ids.get(name).ok_or(ControllerError::UnknownTopicOrPartition)?;
        Ok(Decision { records: vec![Record::DeleteTopic { topic_id: id }], reply: id })
    }

    /// CreateTopics with a manual assignment: `assignment[p]` are partition p's replicas, all
    /// registered brokers; the ISR is the unfenced ones, led by the first.
    pub fn create_topic_assigned(
        &self,
        image: &MetadataImage,
        name: &str,
        topic_id: TopicId,
        assignment: &[Vec<BrokerId>],
    ) -> Result<Decision<TopicId>, ControllerError> {
        let mut d = self.create_topic(image, name, topic_id, 1, 1, 0).or_else(|e| match e {
            // Only the name, the id and the topic count are checked here; the placement below.
            ControllerError::InvalidReplicationFactor(_) => {
                Ok(Decision { records: Vec::new(), reply: topic_id })
            }
            e => Err(e),
        })?;
        if assignment.is_empty() || assignment.len() > image.limits.partitions_per_topic_max {
            return Err(ControllerError::InvalidPartitions(format!("{}", assignment.len())));
        }
        let mut parts = Vec::with_capacity(assignment.len());
        for (p, replicas) in assignment.iter().enumerate() {
            if replicas.is_empty() || replicas.len() > image.limits.replication_factor_max {
                return Err(ControllerError::InvalidReplicationFactor(format!(
                    "{} replicas for partition {p}",
                    replicas.len()
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "broker {b} of partition {p} is not registered"
                )));
            }
            let isr: Vec<BrokerId> =
                replicas.iter().copied().filter(|b| image.is_live(*b)).collect();
            let Some(&leader) = isr.first() else {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "every broker of partition {p} is fenced"
                )));
            };
            parts.push(PartitionRecord { replicas: replicas.clone(), isr, leader });
        }
        d.records =
            vec![Record::CreateTopic { name: name.to_string(), topic_id, partitions: parts }];
        Ok(d)
    }

    /// ElectLeaders (preferred): for each (topic, partition), in order, the first replica of
    /// its assignment becomes leader if it is live and in the ISR. Replies with a Kafka error
    /// code per partition: NONE (elected), ELECTION_NOT_NEEDED (it leads already),
    /// PREFERRED_LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION.
    pub fn elect_preferred(
        &self,
        image: &MetadataImage,
        partitions: &[(String, u32)],
    ) -> Decision<Vec<i16>> {
        use kafka_types::error_code as ec;
        let mut records = Vec::new();
        let mut codes = Vec::with_capacity(partitions.len());
        for (name, partition) in partitions {
            let id = image.topic_ids.get(name).copied();
            let Some((id, p)) = id.and_then(|id| Some((id, image.partition(id, *partition)?)))
            else {
                codes.push(ec::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            };
            let preferred = p.replicas[0];
            if p.leader == preferred {
                codes.push(ec::ELECTION_NOT_NEEDED);
            } else if !p.isr.contains(&preferred) || !image.is_live(preferred) {
                codes.push(ec::PREFERRED_LEADER_NOT_AVAILABLE);
            } else if records.iter().any(|r| {
                matches!(r, Record::PartitionChange { topic_id, partition: q, .. } if *topic_id == id && q == partition)
            }) {
                codes.push(ec::ELECTION_NOT_NEEDED); // asked twice in one request
            } else {
                match change(p, &self.config, preferred, p.isr.clone()) {
                    Some(next) => {
                        records.push(change_record(id, *partition, next));
                        codes.push(ec::NONE);
                    }
                    None => codes.push(ec::ELECTION_NOT_NEEDED),
                }
            }
        }
        Decision { records, reply: codes }
    }

    /// Auto leader rebalance (`auto.leader.rebalance.enable`, checked every
    /// `leader.imbalance.check.interval.seconds`): a broker's imbalance is the share of the
    /// partitions it is the preferred replica of (first of the assignment) that it does not
    /// lead; for each live broker whose imbalance exceeds `imbalance_percentage`, its partitions
    /// where it is in the ISR but not the leader get a preferred election — the rule of
    /// ElectLeaders ([`Controller::elect_preferred`]), whose records these are.
    pub fn rebalance_leaders(
        &self,
        image: &MetadataImage,
        imbalance_percentage: u32,
    ) -> Vec<Record> {
        // Per preferred broker: partitions it prefers, and those it could lead but does not.
        let mut by_broker: BTreeMap<BrokerId, (usize, Vec<(String, u32)>)> = BTreeMap::new();
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(&preferred) = p.replicas.first() else { continue };
                let entry = by_broker.entry(preferred).or_default();
                entry.0 += 1;
                if p.leader != preferred && p.isr.contains(&preferred) {
                    entry.1.push((t.name.clone(), i as u32));
                }
            }
        }
        let mut wanted = Vec::new();
        for (broker, (preferred, movable)) in by_broker {
            let over =
                movable.len() as u64 * 100 > u64::from(imbalance_percentage) * preferred as u64;
            if image.is_live(broker) && over {
                wanted.extend(movable);
            }
        }
        if wanted.is_empty() {
            return Vec::new();
        }
        self.elect_preferred(image, &wanted).records
    }

    /// CreatePartitions: grows topic `name` to `count` partitions, the new ones assigned like
    /// [`Controller::create_topic`]'s (round-robin over unfenced brokers from `start`) with the
    /// replication factor of the topic's first partition. Replies with the topic id.
    pub fn create_partitions(
        &self,
        image: &MetadataImage,
        name: &str,
        count: u32,
        start: usize,
    ) -> Result<Decision<TopicId>, ControllerError> {
        let id = *image.topic_ids.get(name).ok_or(ControllerError::UnknownTopicOrPartition)?;
        let topic = image.topics.get(&id).ok_or(ControllerError::UnknownTopicOrPartition)?;
        let have = topic.partitions.len();
        if (count as usize) <= have {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {name} has {have} partitions; {count} would not increase it"
            )));
        }
        if count as usize > image.limits.partitions_per_topic_max {
            return Err(ControllerError::InvalidPartitions(format!("{count}")));
        }
        let live = image.live_brokers();
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        if rf == 0 || rf > live.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "{rf} with {} live brokers",
                live.len()
            )));
        }
        let parts = (have..count as usize)
            .map(|p| {
                let replicas: Vec<BrokerId> =
                    (0..rf).map(|i| live[(start + p + i) % live.len()]).collect();
                PartitionRecord { leader: replicas[0], isr: replicas.clone(), replicas }
            })
            .collect();
        Ok(Decision {
            records: vec![Record::CreatePartitions { topic_id: id, partitions: parts }],
            reply: id,
        })
    }
}

/// A topic creation decision `d` (its `CreateTopic` record first) with config records for the
/// topic's `configs` appended, checked against the image that has the topic.
fn with_topic_configs(
    image: &MetadataImage,
    mut d: Decision<TopicId>,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<Decision<TopicId>, ControllerError> {
    if configs.is_empty() {
        return Ok(d);
    }
    let mut work = image.clone();
    work.apply(&d.records[0]).expect("topic record built from the image");
    let changes: Vec<ConfigChange> = configs
        .iter()
        .map(|(k, v)| ConfigChange {
            resource: ConfigResource::Topic(name.to_string()),
            name: k.clone(),
            value: Some(v.clone()),
        })
        .collect();
    d.records.extend(configs::alter_configs(&work, &changes)?.records);
    Ok(d)
}

fn ordered_by_replicas(replicas: &[BrokerId], members: &BTreeSet<BrokerId>) -> Vec<BrokerId> {
    replicas.iter().copied().filter(|r| members.contains(r)).collect()
}

/// The first live ISR member in replica order (Kafka prefers the assignment order, so the
/// preferred leader wins when it is available).
fn elect_from(image: &MetadataImage, p: &PartitionState, isr: &[BrokerId]) -> Option<BrokerId> {
    p.replicas.iter().copied().find(|r| isr.contains(r) && image.is_live(*r))
}

/// The change to partition `p` when `broker` is gone (fenced): it leaves the ISR unless it is the
/// last member (KIP-841), and if it led, a new leader is elected — from the live ISR, else from the
/// live ELR, else (unclean election on) any live replica. `None` if nothing changes.
fn without_broker(
    image: &MetadataImage,
    config: &ControllerConfig,
    p: &PartitionState,
    broker: BrokerId,
) -> Option<PartitionState> {
    if !p.replicas.contains(&broker) {
        return None;
    }
    let mut isr: Vec<BrokerId> = p.isr.iter().copied().filter(|r| *r != broker).collect();
    if isr.is_empty() {
        isr = p.isr.clone(); // the last member stays: it holds everything committed
    }
    let mut leader = p.leader;
    if leader == broker || (leader != NO_LEADER && !isr.contains(&leader)) {
        leader = elect_from(image, p, &isr).unwrap_or(NO_LEADER);
    }
    if leader == NO_LEADER {
        if let Some(r) = elect_from(image, p, &p.elr) {
            // A clean election from the ELR: it has every acknowledged write.
            leader = r;
            isr = vec![r];
        }
    }
    if leader == NO_LEADER && config.unclean_leader_election_enable {
        if let Some(r) = p.replicas.iter().copied().find(|r| image.is_live(*r)) {
            leader = r;
            isr = vec![r];
            return change_elr(p, config, leader, isr, Vec::new());
        }
    }
    change(p, config, leader, isr)
}

/// The change to an offline partition `p` now that `broker` is live again.
fn with_broker(
    image: &MetadataImage,
    config: &ControllerConfig,
    p: &PartitionState,
    broker: BrokerId,
) -> Option<PartitionState> {
    if p.leader != NO_LEADER || !p.replicas.contains(&broker) || p.recovering {
        // Recovering: the leader is chosen from the candidates' logs (`Controller::recover`).
        return None;
    }
    if p.isr.contains(&broker) {
        return change(p, config, broker, p.isr.clone());
    }
    if p.elr.contains(&broker) && p.isr.iter().all(|r| !image.is_live(*r)) {
        return change(p, config, broker, vec![broker]);
    }
    if config.unclean_leader_election_enable && p.isr.iter().all(|r| !image.is_live(*r)) {
        return change_elr(p, config, broker, vec![broker], Vec::new());
    }
    None
}

/// The change to `p` when `broker` registers after an unclean shutdown: it leaves the ELR (its
/// unflushed tail may be gone) for the last known ELR (a process crash keeps it: it may still hold
/// every acknowledged write). If it is the sole ISR member, the ISR passes to the ELR when the ELR
/// has members (theirs hold every acknowledged write); else, when last-known-ELR members may hold
/// more than it, the partition waits for unclean recovery (KIP-966) instead of electing it.
fn after_unclean_restart(
    image: &MetadataImage,
    config: &ControllerConfig,
    p: &PartitionState,
    broker: BrokerId,
) -> Option<PartitionState> {
    if !p.replicas.contains(&broker) {
        return None;
    }
    let elr: Vec<BrokerId> = p.elr.iter().copied().filter(|r| *r != broker).collect();
    let mut lke = p.last_known_elr.clone();
    if p.elr.contains(&broker) && !lke.contains(&broker) {
        lke.push(broker);
        lke = in_replica_order(&p.replicas, &lke);
    }
    if p.isr == [broker] && !elr.is_empty() {
        let leader = elect_from(image, p, &elr).unwrap_or(NO_LEADER);
        let isr = if leader == NO_LEADER { vec![elr[0]] } else { vec![leader] };
        let rest: Vec<BrokerId> = elr.iter().copied().filter(|r| !isr.contains(r)).collect();
        // It held every acknowledged write until it stopped, and a crash keeps its log: a
        // candidate of unclean recovery, should the ELR lose its data too.
        if !lke.contains(&broker) {
            lke.push(broker);
            lke = in_replica_order(&p.replicas, &lke);
        }
        return change_full(p, config, leader, isr, rest, lke, false);
    }
    if p.isr == [broker] && lke.iter().any(|r| *r != broker) {
        // The rule: a sole ISR member back from an unclean shutdown is not elected as such while
        // another replica may hold more of what was acknowledged; recovery picks the longest log.
        lke.retain(|r| *r != broker);
        return change_full(p, config, NO_LEADER, p.isr.clone(), Vec::new(), lke, true);
    }
    if elr.len() != p.elr.len() {
        return change_full(p, config, p.leader, p.isr.clone(), elr, lke, p.recovering);
    }
    None
}

/// The replicas unclean recovery asks: the ISR and the last known ELR, in replica order.
pub fn recovery_candidates(p: &PartitionState) -> Vec<BrokerId> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r) || p.last_known_elr.contains(r))
        .collect()
}

fn in_replica_order(replicas: &[BrokerId], members: &[BrokerId]) -> Vec<BrokerId> {
    replicas.iter().copied().filter(|r| members.contains(r)).collect()
}

/// The ELR after the ISR becomes `isr` (see the module doc).
fn next_elr(p: &PartitionState, isr: &[BrokerId], min_insync: usize) -> Vec<BrokerId> {
    if isr.len() >= min_insync {
        return Vec::new();
    }
    p.replicas
        .iter()
        .copied()
        .filter(|r| !isr.contains(r) && (p.elr.contains(r) || p.isr.contains(r)))
        .collect()
}

/// The last known ELR after the ISR becomes `isr` and the ELR `elr`: cleared once the ISR is back
/// at `min.insync.replicas` (everything committed from then on is on a full ISR), members that
/// rejoin the ISR or the ELR leave it.
fn next_last_known_elr(
    p: &PartitionState,
    isr: &[BrokerId],
    elr: &[BrokerId],
    min_insync: usize,
) -> Vec<BrokerId> {
    if isr.len() >= min_insync {
        return Vec::new();
    }
    p.last_known_elr.iter().copied().filter(|r| !isr.contains(r) && !elr.contains(r)).collect()
}

fn change(
    p: &PartitionState,
    config: &ControllerConfig,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> Option<PartitionState> {
    let elr = next_elr(p, &isr, config.min_insync_replicas);
    change_elr(p, config, leader, isr, elr)
}

fn change_elr(
    p: &PartitionState,
    config: &ControllerConfig,
    leader: BrokerId,
    isr: Vec<BrokerId>,
    elr: Vec<BrokerId>,
) -> Option<PartitionState> {
    let lke = p.last_known_elr.clone();
    let recovering = p.recovering && leader == NO_LEADER;
    change_full(p, config, leader, isr, elr, lke, recovering)
}

/// The change to `p`; the last known ELR is filtered by [`next_last_known_elr`], and recovery
/// ends once there is a leader or no candidate besides the ISR is left.
fn change_full(
    p: &PartitionState,
    config: &ControllerConfig,
    leader: BrokerId,
    isr: Vec<BrokerId>,
    elr: Vec<BrokerId>,
    lke: Vec<BrokerId>,
    recovering: bool,
) -> Option<PartitionState> {
    let with = PartitionState { last_known_elr: lke, ..p.clone() };
    let last_known_elr = next_last_known_elr(&with, &isr, &elr, config.min_insync_replicas);
    let recovering = recovering && leader == NO_LEADER && !last_known_elr.is_empty();
    if leader == p.leader
        && isr == p.isr
        && elr == p.elr
        && last_known_elr == p.last_known_elr
        && recovering == p.recovering
    {
        return None;
    }
    let leader_epoch = if leader != p.leader { p.leader_epoch + 1 } else { p.leader_epoch };
    Some(PartitionState {
        replicas: p.replicas.clone(),
        isr,
        leader,
        leader_epoch,
        partition_epoch: p.partition_epoch + 1,
        elr,
        last_known_elr,
        recovering,
    })
}

/// Records that fence `broker`, applied to `work` as they are made.
fn fence_records(
    work: &mut MetadataImage,
    config: &ControllerConfig,
    broker: BrokerId,
    broker_epoch: i64,
) -> Vec<Record> {
    let mut records = vec![Record::FenceBroker { broker_id: broker, broker_epoch }];
    work.apply(&records[0]).expect("fence built from the image");
    records.extend(partition_changes(work, |img, topic, p| {
        without_broker(img, &config.for_topic(img, topic), p, broker)
    }));
    records
}

fn unfence_records(
    work: &mut MetadataImage,
    config: &ControllerConfig,
    broker: BrokerId,
    broker_epoch: i64,
) -> Vec<Record> {
    let mut records = vec![Record::UnfenceBroker { broker_id: broker, broker_epoch }];
    work.apply(&records[0]).expect("unfence built from the image");
    records.extend(partition_changes(work, |img, topic, p| {
        with_broker(img, &config.for_topic(img, topic), p, broker)
    }));
    records
}

fn partition_changes(
    work: &mut MetadataImage,
    f: impl Fn(&MetadataImage, &str, &PartitionState) -> Option<PartitionState>,
) -> Vec<Record> {
    let mut changes = Vec::new();
    for (id, topic) in &work.topics {
        for (i, p) in topic.partitions.iter().enumerate() {
            if let Some(next) = f(work, &topic.name, p) {
                changes.push(change_record(*id, i as u32, next));
            }
        }
    }
    for r in &changes {
        work.apply(r).expect("partition change built from the image");
    }
    changes
}

/// The record that makes `next` partition `partition` of `topic_id`.
fn change_record(topic_id: TopicId, partition: u32, next: PartitionState) -> Record {
    Record::PartitionChange {
        topic_id,
        partition,
        leader: next.leader,
        leader_epoch: next.leader_epoch,
        isr: next.isr,
        partition_epoch: next.partition_epoch,
        elr: next.elr,
        last_known_elr: next.last_known_elr,
        recovering: next.recovering,
    }
}

#[cfg(test)]
mod tests;
