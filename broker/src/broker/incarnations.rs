//! Topic incarnations on this broker (KIP-516, issue 15): a topic deleted and created again under
//! the same name is a new topic, and its partitions must start empty here.
//!
//! - Each partition directory carries its topic id (`partition.metadata`, written when the log is
//!   created). At open, a directory holding another id than its topic's registry entry is
//!   retired and replaced by an empty log; a directory without the file (an older Loglab)
//!   adopts its topic's id.
//! - Combined mode: on every metadata image, a local topic the image shows deleted, or replaced
//!   by a newer incarnation, is retired before the image's topics get their logs
//!   (`cluster::metadata::local_topic` decides, safely on an image that is a prefix of the log).
//! - Retiring renames a partition directory to Kafka's `<topic>-<partition>.<hex>-delete` form;
//!   the background task removes retired directories `log.segment.delete.delay.ms` later, at most
//!   [`RETIRED_REMOVALS_PER_PASS`] per pass; leftovers found at open are removed at the first pass.

use std::path::PathBuf;

use cluster::metadata::{LocalTopic, MetadataImage, TopicId};

use super::{now_ms, Broker, BrokerError};
use crate::controller::local::topic_id_hex;
use crate::log::{partition_metadata, LogConfig, LogManager, TopicPartition};
use crate::topics::{Registry, TopicMeta};

/// Retired directories removed per background pass at most (each removal walks a directory).
pub const RETIRED_REMOVALS_PER_PASS: usize = 16;

/// Open-time reconciliation of the registry and the partition directories: directories without
/// a registry entry become topics (under the id their `partition.metadata` names, if any), a
/// directory of another incarnation is retired, registry partitions without a log get an empty
/// one. Returns whether the registry changed, and every retired directory (also earlier ones).
pub(super) async fn reconcile_at_open(
    logs: &mut LogManager,
    registry: &mut Registry,
    defaults: &LogConfig,
    now: i64,
) -> Result<(bool, Vec<PathBuf>), BrokerError> {
    let mut changed = false;
    let mut retired = logs.retired_dirs().await?;
    let storage = logs.storage().clone();
    let found: Vec<TopicPartition> = logs.partitions().cloned().collect();
    for tp in &found {
        let dir = logs.get(tp).expect("listed").dir().to_path_buf();
        let on_disk = partition_metadata::read(storage.as_ref(), &dir).await?;
        match (registry.topics.get(tp.topic()).map(TopicMeta::uuid), on_disk) {
            (Some(id), Some(d)) if d != id => {
                tracing::warn!(partition = %tp, "directory of another incarnation of its topic: retired");
                retired.extend(logs.retire(tp, &d).await?);
                continue;
            }
            (Some(_), _) => {}
            (None, _) => {
                let id = match on_disk {
                    Some(d) => topic_id_hex(&TopicId(d)),
                    None => registry.new_topic_id(&tp.topic, now),
                };
                let meta =
                    TopicMeta { partitions: 0, id, configs: Default::default(), created_at: None };
                registry.topics.insert(tp.topic().to_string(), meta);
                changed = true;
            }
        }
        let meta = registry.topics.get_mut(tp.topic()).expect("registered above");
        if meta.partitions <= tp.partition {
            meta.partitions = tp.partition + 1;
            changed = true;
        }
        if on_disk.is_none() {
            // A directory of an older Loglab: it adopts its topic's id.
            partition_metadata::write(storage.as_ref(), &dir, &meta.uuid()).await?;
        }
    }
    for (name, meta) in registry.topics.clone() {
        for p in 0..meta.partitions {
            let tp = TopicPartition::new(name.clone(), p);
            if logs.get(&tp).is_none() {
                let log = logs.create(tp, meta.log_config(defaults), now).await?;
                let dir = log.dir().to_path_buf();
                partition_metadata::write(storage.as_ref(), &dir, &meta.uuid()).await?;
            }
        }
    }
    Ok((changed, retired))
}

impl Broker {
    /// Queues a retired directory for removal after `log.segment.delete.delay.ms`.
    pub(crate) fn queue_retired(&self, dir: PathBuf) {
        let due = now_ms().saturating_add(self.config.file_delete_delay_ms);
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).push((due, dir));
    }

    /// Retired directories not removed yet.
    pub fn retired_dirs_pending(&self) -> usize {
        self.retired.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Removes the retired directories whose delay has passed (at most
    /// [`RETIRED_REMOVALS_PER_PASS`]); returns how many. A failed removal is logged and
    /// forgotten: the next start finds the directory again.
    pub async fn remove_retired_dirs(&self) -> usize {
        let now = now_ms();
        let due: Vec<PathBuf> = {
            let mut q = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.iter().take_while(|(t, _)| *t <= now).count().min(RETIRED_REMOVALS_PER_PASS);
            q.drain(..n).map(|(_, d)| d).collect()
        };
        for d in &due {
            if self.is_shut_down() {
                break;
            }
            let i = crate::log::manager::dir_index(self.roots.iter().map(PathBuf::as_path), d)
                .unwrap_or(0);
            match self.dirs.lock().await[i].remove_retired(d).await {
                Ok(()) => tracing::info!(dir = ?d, "retired partition directory removed"),
                Err(e) => {
                    tracing::warn!(dir = ?d, error = %e, "removing a retired directory failed")
                }
            }
        }
        due.len()
    }

    /// Takes topic `name` (incarnation `meta`) out of the registry and retires every local
    /// partition of it. The caller holds `topic_admin`. Errors name what failed (the rest was
    /// still done).
    pub(crate) async fn retire_topic_admin_held(
        &self,
        name: &str,
        meta: &TopicMeta,
    ) -> Result<(), String> {
        let mut failed = None;
        {
            let mut registry = self.registry.lock().await;
            if registry.topics.get(name).is_some_and(|m| m.id == meta.id) {
                registry.topics.remove(name);
            }
            if let Err(e) = registry.store(self.storage.as_ref(), &self.root).await {
                failed = Some(e.to_string());
            }
        }
        // Every partition here, also beyond the registry's count (a crash may have left them).
        let parts: Vec<TopicPartition> = self
            .partitions
            .all()
            .iter()
            .filter(|p| p.tp.topic() == name)
            .map(|p| p.tp.clone())
            .collect();
        for tp in parts {
            if let Err(e) = self.delete_partition(&tp, meta.uuid()).await {
                failed = Some(e.to_string());
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Combined mode: retires each local topic `image` shows deleted or replaced by a newer
    /// incarnation (the offsets topic is the group coordinator's and left alone). The caller
    /// holds `topic_admin`. Returns the topics retired.
    pub(crate) async fn retire_stale_topics(&self, image: &MetadataImage) -> usize {
        let local: Vec<(String, TopicMeta)> = {
            let registry = self.registry.lock().await;
            registry
                .topics
                .iter()
                .filter(|(n, _)| n.as_str() != crate::group::OFFSETS_TOPIC)
                .map(|(n, m)| (n.clone(), m.clone()))
                .collect()
        };
        let mut retired = 0;
        for (name, meta) in local {
            let id = TopicId(meta.uuid());
            if cluster::metadata::local_topic(image, &name, id, meta.created_at)
                != LocalTopic::Stale
            {
                continue;
            }
            tracing::info!(topic = %name, id = %meta.id, "topic deleted or replaced in the metadata: retiring its partitions");
            match self.retire_topic_admin_held(&name, &meta).await {
                Ok(()) => retired += 1,
                Err(e) => tracing::error!(topic = %name, error = %e, "retiring a topic failed"),
            }
        }
        retired
    }
}
