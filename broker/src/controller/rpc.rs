//! The controller listener's messages and the quorum settings.
//!
//! One listener per controller carries two kinds of connection, told apart by their frames:
//! - voter → voter: a one-way stream of [`Wire::Raft`] frames (each voter keeps one outbound
//!   connection per peer; answers travel on the peer's own outbound connection);
//! - broker → controller: [`Wire::Request`] / [`Wire::Response`], one request in flight per
//!   connection, answered in order.
//!
//! Metadata propagation is a pull, as KRaft brokers fetch the metadata log: a heartbeat answer
//! carries the controller's committed metadata index, and a broker behind it sends
//! [`ControllerRequest::FetchMetadata`] for the committed record batches after the index it has
//! applied (at most `FETCH_ENTRIES_MAX` per answer), applying them to its own image.
//! Requests to a voter that is not the active controller answer [`RpcError::NotController`] with
//! the leader it knows, so the broker retries there.

use std::collections::BTreeMap;

use cluster::metadata::{
    AlterPartitionRequest, BrokerId, ConfigChange, ControllerError, Endpoint, PartitionState,
    Record, ReplicaLogInfo, TopicId,
};
use cluster::raft::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// Committed entries per FetchMetadata answer.
pub const FETCH_ENTRIES_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    Raft(Message),
    Request(ControllerRequest),
    Response(ControllerResponse),
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// `clean_shutdown`: the broker's logs were closed cleanly before this start (false after a
    /// crash or power loss: its unflushed tail may be gone, so it leaves every ELR).
    RegisterBroker {
        broker_id: BrokerId,
        incarnation: u64,
        endpoint: Endpoint,
        #[serde(default = "yes")]
        clean_shutdown: bool,
    },
    /// `logs`: this broker's log (last epoch, log end) for every partition its image shows
    /// awaiting unclean recovery with it as a candidate (KIP-966's GetReplicaLogInfo, carried by
    /// the heartbeat since the controller never calls brokers).
    BrokerHeartbeat {
        broker_id: BrokerId,
        broker_epoch: i64,
        want_fence: bool,
        #[serde(default)]
        logs: Vec<ReplicaLogInfo>,
    },
    AlterPartition(AlterPartitionRequest),
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: u16,
        /// Topic configs (validated by the broker that took the request).
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// Config sets and deletes (AlterConfigs / IncrementalAlterConfigs), all or nothing.
    AlterConfigs {
        changes: Vec<ConfigChange>,
    },
    DeleteTopic {
        name: String,
    },
    /// CreateTopics with a manual assignment (answered `TopicCreated`).
    CreateTopicAssigned {
        name: String,
        assignment: Vec<Vec<BrokerId>>,
        /// Topic configs (validated by the broker that took the request).
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// ElectLeaders (preferred) of these (topic, partition)s (answered `Elected`).
    ElectPreferred {
        partitions: Vec<(String, u32)>,
    },
    /// CreatePartitions: grow topic `name` to `count` partitions (answered `TopicCreated`).
    CreatePartitions {
        name: String,
        count: u32,
    },
    /// Committed metadata after `after_index` (0: from the start). `broker_id` (absent from
    /// tools) and `acted`: the [`MetadataImage::applied`] of the last image this broker acted on
    /// (roles applied, deleted topics retired), as KRaft brokers report their metadata offset.
    ///
    /// [`MetadataImage::applied`]: cluster::metadata::MetadataImage::applied
    FetchMetadata {
        after_index: u64,
        #[serde(default)]
        broker_id: Option<BrokerId>,
        #[serde(default)]
        acted: u64,
    },
    /// Which live brokers have not yet acted on the deletion of topic `name` (answered
    /// `DeletionPending`; empty once it is done everywhere). DeleteTopics waits for it.
    DeletionPending {
        name: String,
    },
}

/// One committed entry of the metadata log: its Raft index and its records (none for a
/// leader's no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    pub index: u64,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    Registered {
        broker_epoch: i64,
    },
    Heartbeat {
        fenced: bool,
        metadata_index: u64,
    },
    Partition(PartitionState),
    TopicCreated(TopicId),
    TopicDeleted(TopicId),
    ConfigsAltered,
    /// A Kafka error code per partition of an `ElectPreferred`, in order.
    Elected(Vec<i16>),
    Metadata {
        batches: Vec<MetadataBatch>,
        committed_index: u64,
    },
    DeletionPending(Vec<BrokerId>),
    Error(RpcError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RpcError {
    /// NOT_CONTROLLER: ask `leader` (if known).
    #[error("NOT_CONTROLLER (leader {leader:?})")]
    NotController { leader: Option<NodeId> },
    #[error("{0}")]
    Controller(ControllerError),
    /// The decision was proposed but not committed (leadership moved, or the quorum is slow):
    /// the outcome is unknown; retrying is safe for heartbeats and registrations, and answers
    /// TOPIC_ALREADY_EXISTS for a topic creation that did commit.
    #[error("REQUEST_TIMED_OUT: {0}")]
    Unavailable(String),
}

/// The quorum settings, by Kafka's names where Kafka has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// `controller.quorum.voters`: id → `host:port` of its controller listener.
    pub voters: BTreeMap<NodeId, String>,
    /// `controller.quorum.fetch.timeout.ms`: silence from the leader before a follower campaigns
    /// (the lower bound of the randomized election timeout).
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`: the random spread added to the fetch timeout
    /// (Kafka's randomized election backoff), so voters rarely campaign at once.
    pub election_timeout_ms: u64,
    /// `loglab.controller.quorum.tick.ms`: one Raft tick.
    pub tick_ms: u64,
    /// `loglab.controller.tick.ms`: how often the active controller checks sessions.
    pub controller_tick_ms: u64,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`: a proposal not committed by then fails.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms` (first reconnect delay; doubles up to
    /// `reconnect.backoff.max.ms`).
    pub retry_backoff_ms: u64,
    pub reconnect_backoff_ms_max: u64,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// `min.insync.replicas` (the ELR rule).
    pub min_insync_replicas: usize,
    /// `loglab.unsafe.elr.disable` (a museum switch, [`crate::safeguards`]): no ELR (before KIP-966).
    pub unsafe_elr_disabled: bool,
    /// `loglab.unsafe.controller.epoch.fencing.disable` (a museum switch,
    /// [`crate::safeguards`]): a decision is answered once appended in the leader's own term,
    /// before the quorum commits it (a zombie controller's answers count).
    pub unsafe_answer_uncommitted: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leadership back to preferred
    /// replicas every `leader.imbalance.check.interval.seconds`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Seed of the election-timeout rng (salted with the node id).
    pub seed: u64,
}

impl QuorumConfig {
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>) -> Self {
        Self {
            node_id,
            voters,
            fetch_timeout_ms: 2_000,
            election_timeout_ms: 1_000,
            tick_ms: 50,
            controller_tick_ms: 250,
            broker_session_timeout_ms: 9_000,
            request_timeout_ms: 5_000,
            retry_backoff_ms: 20,
            reconnect_backoff_ms_max: 1_000,
            unclean_leader_election_enable: false,
            min_insync_replicas: 1,
            unsafe_elr_disabled: false,
            unsafe_answer_uncommitted: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
            seed: 0,
        }
    }

    /// The Raft core's settings in ticks: election timeout in
    /// `[fetch, fetch + election)` ms, heartbeats at a quarter of the fetch timeout.
    pub fn raft_config(&self) -> cluster::raft::Config {
        let tick = self.tick_ms.max(1);
        let min = (self.fetch_timeout_ms / tick).clamp(3, 100_000) as u32;
        let spread = (self.election_timeout_ms / tick).clamp(1, 100_000) as u32;
        let mut c = cluster::raft::Config::new(self.node_id, self.voters.keys().copied().collect());
        c.election_timeout_ticks_min = min;
        c.election_timeout_ticks_max = min + spread;
        c.heartbeat_interval_ticks = (min / 4).max(1);
        c
    }
}

/// `controller.quorum.voters`: `id@host:port,id@host:port,…`.
pub fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) =
            part.split_once('@').ok_or_else(|| format!("`{part}`: expected id@host:port"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("`{part}`: bad node id"))?;
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| format!("`{part}`: expected host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{part}`: bad host or port"));
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node id {id} listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no voters".into());
    }
    if out.len() > 9 {
        return Err(format!("{} voters; at most 9", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_reject() {
        let v = parse_voters("0@127.0.0.1:9093, 1@127.0.0.1:9095,2@h:9097").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&1], "127.0.0.1:9095");
        for bad in ["", "x@h:1", "0@h", "0@h:0", "0@:5", "0@h:1,0@h:2", "0h:1"] {
            assert!(parse_voters(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn raft_timeouts_follow_the_kafka_settings() {
        let mut q = QuorumConfig::new(1, parse_voters("0@h:1,1@h:2,2@h:3").unwrap());
        q.tick_ms = 10;
        q.fetch_timeout_ms = 500;
        q.election_timeout_ms = 300;
        let c = q.raft_config();
        assert_eq!(
            (
                c.election_timeout_ticks_min,
                c.election_timeout_ticks_max,
                c.heartbeat_interval_ticks
            ),
            (50, 80, 12)
        );
    }
}
