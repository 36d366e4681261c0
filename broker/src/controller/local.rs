//! The broker in combined mode: what changes when a controller quorum is configured.
//!
//! - Topics come from the controller's committed image. The replica manager
//!   (`crate::broker::replica_manager::run`, or [`run_sync`] without replication) follows the
//!   link's image and gives every topic of the image a local registry entry (with the image's
//!   topic id and creation point) and empty logs marked with the id (`partition.metadata`), so
//!   the partitions this broker leads can take writes. A local topic the image shows deleted or
//!   replaced by a newer incarnation is retired first (`crate::broker::incarnations`); one the
//!   image cannot judge (an image replayed from the log's start, older than the local copy) is
//!   left alone until it can.
//! - Metadata, CreateTopics and DeleteTopics answer from / go through the controller (see
//!   `api/metadata.rs`, `api/admin.rs`); Produce and Fetch refuse partitions this broker does not
//!   lead with NOT_LEADER_OR_FOLLOWER.

use std::sync::Arc;

use cluster::metadata::{ControllerError, MetadataImage, TopicId};
use tokio::sync::watch;

use super::link::{ControllerLink, LinkError};
use crate::broker::Broker;
use crate::protocol::error_code;

/// A topic id as the registry stores it (hex).
pub fn topic_id_hex(id: &TopicId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Kafka error code and message for a controller answer.
pub fn link_error_code(e: &LinkError) -> (i16, String) {
    let code = match e {
        LinkError::Unavailable(_) => error_code::REQUEST_TIMED_OUT,
        LinkError::Controller(c) => match c {
            ControllerError::TopicAlreadyExists => error_code::TOPIC_ALREADY_EXISTS,
            ControllerError::InvalidReplicationFactor(_) => error_code::INVALID_REPLICATION_FACTOR,
            ControllerError::InvalidPartitions(_) => error_code::INVALID_PARTITIONS,
            ControllerError::InvalidTopic(_) => error_code::INVALID_TOPIC_EXCEPTION,
            ControllerError::UnknownTopicOrPartition => error_code::UNKNOWN_TOPIC_OR_PARTITION,
            ControllerError::LimitExceeded(_) => error_code::POLICY_VIOLATION,
            ControllerError::StaleBrokerEpoch => 77,
            ControllerError::BrokerIdNotRegistered => 102,
            ControllerError::FencedLeaderEpoch => 74,
            ControllerError::InvalidUpdateVersion => 108,
            ControllerError::IneligibleReplica(_) => 107,
            ControllerError::InvalidRequest(_) => error_code::INVALID_REQUEST,
            ControllerError::InvalidReplicaAssignment(_) => error_code::INVALID_REPLICA_ASSIGNMENT,
            ControllerError::TopicDeletionPending { .. } => error_code::REQUEST_TIMED_OUT,
        },
    };
    (code, e.to_string())
}

impl Broker {
    /// Combined mode: attaches the controller link (once; later calls are ignored).
    pub fn attach_controller(&self, link: Arc<dyn ControllerLink>) {
        if self.cluster.set(link).is_err() {
            tracing::warn!("controller link already attached");
        }
    }

    pub(crate) fn controller_link(&self) -> Option<&Arc<dyn ControllerLink>> {
        self.cluster.get()
    }

    /// The committed metadata this broker has applied (combined mode only).
    pub fn cluster_image(&self) -> Option<Arc<MetadataImage>> {
        self.cluster.get().map(|l| l.metadata().borrow().clone())
    }

    /// In combined mode, the error for a Produce/Fetch/ListOffsets of a partition this broker
    /// does not lead (NOT_LEADER_OR_FOLLOWER; UNKNOWN_TOPIC_OR_PARTITION if the image does not
    /// have it). Leadership is the replica manager's role, not the image's: a broker leads only
    /// once it has started the partition's leader state. `None`: serve it (always in single-node
    /// mode).
    pub(crate) fn not_leader_error(&self, topic: &str, partition: i32) -> Option<i16> {
        self.cluster.get()?;
        self.not_leader_error_tp(&crate::log::TopicPartition::new(topic, partition))
    }

    /// [`Self::not_leader_error`] for a partition the caller already holds as a key (no name is
    /// copied: produce and fetch ask once per partition per request).
    pub(crate) fn not_leader_error_tp(&self, tp: &crate::log::TopicPartition) -> Option<i16> {
        let img = self.cluster_image()?;
        if !in_image(&img, tp, img.topic_ids.get(tp.topic()).copied()) {
            return Some(error_code::UNKNOWN_TOPIC_OR_PARTITION);
        }
        match self.replicas.leading_epoch(tp) {
            Some(_) => None,
            None => Some(error_code::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// [`Self::not_leader_error_tp`] then [`Self::check_leader_epoch`] (when `current_leader_epoch`
    /// is given) of `tp`, asked of `handle`, the broker's handle of `tp` the caller looked up (the
    /// same answers: nothing awaits between the lookup and these reads), with `tp`'s topic id in
    /// the image kept in `ids` while the image stays the same. A fetch pass asks this of each of
    /// its partitions (hundreds of them, again at every wake of a long poll): one map lookup and
    /// one role read each, where the two checks looked the partition up twice and the topic id
    /// once per partition.
    pub(crate) fn fetch_refusal(
        &self,
        tp: &crate::log::TopicPartition,
        handle: Option<&crate::partition::Partition>,
        current_leader_epoch: Option<i32>,
        ids: &mut Option<(Arc<MetadataImage>, Option<TopicId>)>,
    ) -> Option<i16> {
        let link = self.controller_link()?;
        let img = link.metadata().borrow().clone();
        let id = match ids {
            Some((cached, id)) if Arc::ptr_eq(cached, &img) => *id,
            _ => {
                let id = img.topic_ids.get(tp.topic()).copied();
                *ids = Some((img.clone(), id));
                id
            }
        };
        if !in_image(&img, tp, id) {
            return Some(error_code::UNKNOWN_TOPIC_OR_PARTITION);
        }
        let Some(epoch) = handle.and_then(crate::replica::state::leading_epoch_of) else {
            return Some(error_code::NOT_LEADER_OR_FOLLOWER);
        };
        epoch_error(current_leader_epoch?, epoch)
    }

    /// The leader epoch to stamp on appended batches: the leader state's in combined mode, else 0.
    pub(crate) fn leader_epoch(&self, topic: &str, partition: i32) -> i32 {
        self.leader_epoch_tp(&crate::log::TopicPartition::new(topic, partition))
    }

    /// [`Self::leader_epoch`] of a partition key the caller holds.
    pub(crate) fn leader_epoch_tp(&self, tp: &crate::log::TopicPartition) -> i32 {
        self.replicas.leading_epoch(tp).unwrap_or(0).max(0)
    }

    /// KIP-320: a request's `current_leader_epoch` (-1: not checked) against the epoch this
    /// broker leads `tp` at: older → FENCED_LEADER_EPOCH, newer → UNKNOWN_LEADER_EPOCH.
    pub(crate) fn check_leader_epoch(
        &self,
        tp: &crate::log::TopicPartition,
        current_leader_epoch: i32,
    ) -> Option<i16> {
        if current_leader_epoch < 0 || self.controller_link().is_none() {
            return None;
        }
        epoch_error(current_leader_epoch, self.replicas.leading_epoch(tp)?)
    }

    /// What consumers may read up to: the HW in combined mode, the log end on a single node.
    pub(crate) fn readable_end(&self, tp: &crate::log::TopicPartition, log_end_offset: i64) -> i64 {
        if self.controller_link().is_none() {
            return log_end_offset;
        }
        self.replicas.high_watermark(tp).unwrap_or(0).min(log_end_offset)
    }

    /// Gives every topic of `image` a local registry entry and logs. Returns topics created.
    pub async fn reconcile_topics(&self, image: &MetadataImage) -> usize {
        let mut created = 0;
        // The coordinator learns the offsets topic's size before the registry is locked: its
        // mutex may be held while taking the registry (commits), never the other way round.
        let offsets = image.topics.values().find(|t| t.name == crate::group::OFFSETS_TOPIC);
        if let Some(t) = offsets {
            if !self.registry.lock().await.topics.contains_key(&t.name) {
                let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                self.groups.set_num_partitions(n).await;
            }
        }
        // One pass at a time: a topic found registered has its logs.
        let _admin = self.topic_admin.lock().await;
        // Deleted or replaced topics go first, so a new incarnation starts with empty logs.
        self.retire_stale_topics(image).await;
        for t in image.topics.values() {
            let registered = self
                .registry
                .lock()
                .await
                .topics
                .get(&t.name)
                .map(|m| (m.partitions, m.id == topic_id_hex(&t.id), m.created_at));
            if let Some((have, same, created_at)) = registered {
                if !same {
                    continue; // another incarnation this (older) image does not know yet
                }
                if created_at.is_none() {
                    self.adopt_creation_point(&t.name, t.created_at).await;
                }
                // CreatePartitions: the image has more partitions than the registry.
                let want = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                if have < want && t.name != crate::group::OFFSETS_TOPIC {
                    if let Err((code, msg)) = self.grow_topic_admin_held(&t.name, want).await {
                        tracing::warn!(topic = %t.name, code, %msg, "cannot create local logs for new partitions");
                    }
                }
                continue;
            }
            let partitions = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            // Topic configs come with the image (config records); the offsets topic's are
            // fixed (compacted), so every replica applies them.
            let configs = if t.name == crate::group::OFFSETS_TOPIC {
                self.groups.topic_configs(partitions).1
            } else {
                image.topic_config_map(&t.name)
            };
            // Logs are created without the registry lock held (see `Broker::create_topic`),
            // marked with the image's topic id.
            let incarnation = Some((t.id.0, t.created_at));
            match self.create_topic_admin_held(&t.name, partitions, configs, incarnation).await {
                Ok(_) => created += 1,
                Err((code, msg)) => {
                    tracing::warn!(topic = %t.name, code, %msg, "cannot create local logs for a controller topic")
                }
            }
        }
        drop(_admin);
        // Topics already here follow the image's config records.
        self.sync_topic_configs(image).await;
        created
    }
}

impl Broker {
    /// A topic registered before creation points were recorded (an older Loglab, or a topic
    /// the image had when this one was written) takes the image's.
    async fn adopt_creation_point(&self, name: &str, created_at: u64) {
        let mut registry = self.registry.lock().await;
        if let Some(m) = registry.topics.get_mut(name) {
            m.created_at = Some(created_at);
            if let Err(e) = registry.store(self.storage.as_ref(), &self.root).await {
                tracing::warn!(topic = %name, error = %e, "storing the topic registry failed");
            }
        }
    }
}

/// Follows the controller's image and reconciles local topics until `shutdown`.
pub async fn run_sync(
    broker: Arc<Broker>,
    link: Arc<dyn ControllerLink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = link.metadata();
    loop {
        let image = rx.borrow_and_update().clone();
        broker.reconcile_topics(&image).await;
        tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// KIP-320's rule: a request's `current_leader_epoch` (negative: not checked) against the epoch
/// this broker leads at — older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
fn epoch_error(current_leader_epoch: i32, leading_epoch: i32) -> Option<i16> {
    if current_leader_epoch < 0 {
        return None;
    }
    match current_leader_epoch.cmp(&leading_epoch) {
        std::cmp::Ordering::Less => Some(error_code::FENCED_LEADER_EPOCH),
        std::cmp::Ordering::Greater => Some(error_code::UNKNOWN_LEADER_EPOCH),
        std::cmp::Ordering::Equal => None,
    }
}

/// Whether `img` has partition `tp` of the topic with id `id` (`tp`'s name looked up in it).
fn in_image(img: &MetadataImage, tp: &crate::log::TopicPartition, id: Option<TopicId>) -> bool {
    id.and_then(|id| img.partition(id, u32::try_from(tp.partition).ok()?)).is_some()
}
