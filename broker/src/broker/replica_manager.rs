//! The replica manager (Kafka's `ReplicaManager`): what a broker does with the controller's
//! image — partition roles (become leader, become follower, stop), unclean-recovery reports,
//! the HW checkpoint, ISR changes sent to the controller — and [`run`], the task that follows
//! the image. The pure parts and the per-partition state live in `crate::replica`, which never
//! sees the broker; this module sits above both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster::isr::{AlterPartitionResponse, IsrConfig};
use cluster::metadata::{AlterPartitionRequest, BrokerId, MetadataImage};
use net_model::Network;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{now_ms, Broker};
use crate::controller::link::{ControllerLink, LinkError};
use crate::log::manager::{decode_offsets, encode_offsets};
use crate::log::TopicPartition;
use crate::partition::{OwnedData, Partition};
use crate::replica::{delta, fetcher, state};

/// The HW checkpoint file in the data directory (Kafka's name).
pub const HW_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Bytes of the checkpoint read at most (one short line per partition).
const HW_CHECKPOINT_BYTES_MAX: usize = 16 << 20;

impl Broker {
    /// The leader's rules for a log: `min.insync.replicas` is the topic's (its log config).
    fn isr_config(&self, log: &crate::log::LogConfig) -> IsrConfig {
        IsrConfig {
            replica_lag_time_max_ms: self.config.replication.replica_lag_time_max_ms,
            min_insync_replicas: log.min_insync_replicas as usize,
            unsafe_hw_may_fall: self.config.replication.unsafe_zombie_fencing_disabled,
            ..IsrConfig::default()
        }
    }

    /// Applies the partition roles of `new` (coming from `old`). Each role changes under its
    /// partition's data lock, so no append or follower write sees a half-changed role.
    pub(crate) async fn apply_roles(&self, old: &MetadataImage, new: &MetadataImage) {
        let me: BrokerId = self.config.node_id;
        let changes = delta::local_changes(old, new, me);
        let ineligible: BTreeSet<BrokerId> =
            new.brokers.values().filter(|b| b.fenced).map(|b| b.broker_id).collect();
        let fencing_changed =
            old.brokers.values().filter(|b| b.fenced).map(|b| b.broker_id).collect::<BTreeSet<_>>()
                != ineligible;
        if changes.is_empty() && !fencing_changed {
            return;
        }
        if self.is_shut_down() {
            return;
        }
        let now = now_ms().max(0) as u64;
        let mut leaders = changes.leaders.clone();
        if fencing_changed {
            // Leaders whose partition state did not change still need the new fenced set.
            for t in new.topics.values() {
                for (i, p) in t.partitions.iter().enumerate() {
                    if p.leader == me {
                        leaders
                            .entry(delta::PartitionKey { topic_id: t.id, partition: i as u32 })
                            .or_insert_with(|| (t.name.clone(), p.clone()));
                    }
                }
            }
        }
        for (key, (name, p)) in &leaders {
            let tp = TopicPartition::new(name.clone(), key.partition as i32);
            let Some((part, data)) = self.partition_data(&tp).await else {
                tracing::warn!(partition = %tp, "leader of a partition without a local log");
                continue;
            };
            let leo = data.log.log_end_offset();
            let (cfg, fenced) = (self.isr_config(data.log.config()), ineligible.clone());
            self.replicas.become_leader(&part, key.topic_id, p, me, leo, cfg, fenced, now);
        }
        for (key, (name, p)) in &changes.followers {
            let tp = TopicPartition::new(name.clone(), key.partition as i32);
            let Some((part, data)) = self.partition_data(&tp).await else { continue };
            if p.leader < 0 {
                // No leader (offline partition): stop leading, fetch from nobody.
                self.replicas.stop_partition(&part);
                continue;
            }
            let leo = data.log.log_end_offset();
            self.replicas.become_follower(&part, key.topic_id, p.leader, p.leader_epoch, leo);
        }
        for key in &changes.stopped {
            if let Some(t) = old.topics.get(&key.topic_id) {
                let tp = TopicPartition::new(t.name.clone(), key.partition as i32);
                // The name may already hold a new incarnation (its role set above): only the
                // stopped topic's role ends.
                if let Some((part, _data)) = self.partition_data(&tp).await {
                    self.replicas.stop_partition_of(&part, key.topic_id);
                }
            }
        }
        // Roles changed: waiting fetches and produces re-check.
        self.appended.notify_waiters();
        // Group coordination follows the offsets partitions' leadership.
        for (key, (name, _)) in &leaders {
            if name == crate::group::OFFSETS_TOPIC
                && self
                    .replicas
                    .leading_epoch(&TopicPartition::new(name.clone(), key.partition as i32))
                    .is_some()
            {
                self.groups.load_partition(self, key.partition as i32).await;
            }
        }
        for (key, (name, _)) in &changes.followers {
            if name == crate::group::OFFSETS_TOPIC
                && self.groups.owns_partition(key.partition as i32).await
            {
                tracing::info!(
                    partition = key.partition,
                    "no longer the group coordinator of this offsets partition"
                );
                self.groups.unload_partition(key.partition as i32).await;
            }
        }
        for key in &changes.stopped {
            if old.topics.get(&key.topic_id).is_some_and(|t| t.name == crate::group::OFFSETS_TOPIC)
            {
                self.groups.unload_partition(key.partition as i32).await;
            }
        }
    }

    /// This broker's logs of the partitions `image` shows awaiting unclean recovery (KIP-966)
    /// with this broker as a candidate: last epoch and log end, for the controller to pick the
    /// longest. Taken after `apply_roles`, so this broker no longer follows anyone there.
    pub(crate) async fn recovery_reports(
        &self,
        image: &MetadataImage,
    ) -> Vec<cluster::metadata::ReplicaLogInfo> {
        let me: BrokerId = self.config.node_id;
        let wanted: Vec<(String, cluster::metadata::TopicId, u32, i32)> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        p.recovering && cluster::metadata::recovery_candidates(p).contains(&me)
                    })
                    .map(|(i, p)| (t.name.clone(), t.id, i as u32, p.partition_epoch))
            })
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (name, topic_id, partition, partition_epoch) in wanted {
            let tp = TopicPartition::new(name, partition as i32);
            let Some((_, data)) = self.partition_data(&tp).await else { continue };
            let log = &data.log;
            let last_epoch = log.epochs().latest().map(|e| e.epoch).unwrap_or(-1);
            out.push(cluster::metadata::ReplicaLogInfo {
                topic_id,
                partition,
                partition_epoch,
                last_epoch,
                log_end_offset: log.log_end_offset(),
            });
        }
        out
    }

    /// `tp`'s partition with its data locked, if it has an open log here.
    pub(crate) async fn partition_data(
        &self,
        tp: &TopicPartition,
    ) -> Option<(Arc<Partition>, OwnedData)> {
        self.partitions.locked(tp).await
    }

    /// What a replica fetcher works with (it never sees the broker itself).
    fn fetcher_env(&self) -> fetcher::FetcherEnv {
        fetcher::FetcherEnv {
            node_id: self.config.node_id,
            config: self.config.replication.clone(),
            partitions: self.partitions.clone(),
            replicas: self.replicas.clone(),
            cost: self.cost_hook(),
            appended: self.appended.clone(),
        }
    }

    async fn load_hw_checkpoint(&self) {
        let path = self.root.join(HW_CHECKPOINT);
        let read = async {
            if !self.storage.exists(&path).await? {
                return Ok(None);
            }
            let file = self.storage.open(&path, disk_model::OpenMode::Existing).await?;
            let len =
                usize::try_from(file.len()).unwrap_or(usize::MAX).min(HW_CHECKPOINT_BYTES_MAX);
            file.read_at(0, len).await.map(Some)
        };
        let read: std::io::Result<Option<bytes::Bytes>> = read.await;
        match read {
            Ok(None) => {}
            Ok(Some(bytes)) => match decode_offsets(&String::from_utf8_lossy(&bytes)) {
                Ok(hws) => self.replicas.set_checkpoint(hws),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed {HW_CHECKPOINT}"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot read {HW_CHECKPOINT}"),
        }
    }

    /// Writes every partition's HW (atomically: temp file, fsync, rename).
    pub async fn checkpoint_hws(&self) {
        let hws = self.replicas.hw_snapshot();
        if hws.is_empty() {
            return;
        }
        let text = encode_offsets(&hws);
        if let Err(e) = crate::log::epoch::write_atomically(
            self.storage.as_ref(),
            Path::new(&self.root),
            HW_CHECKPOINT,
            text.as_bytes(),
        )
        .await
        {
            tracing::warn!(error = %e, "writing {HW_CHECKPOINT} failed");
        }
    }
}

/// Partition leader elections between two images: partitions whose leader epoch rose.
/// Topic names `old` has that `new` lacks or holds under another id (deleted, maybe created again).
fn deleted_between(old: &MetadataImage, new: &MetadataImage) -> Vec<String> {
    old.topic_ids
        .iter()
        .filter(|(name, id)| new.topic_ids.get(*name) != Some(*id))
        .map(|(name, _)| name.clone())
        .collect()
}

fn elections_between(old: &MetadataImage, new: &MetadataImage) -> u64 {
    let mut n = 0;
    for t in new.topics.values() {
        let Some(o) = old.topics.get(&t.id) else { continue };
        for (p, q) in t.partitions.iter().zip(&o.partitions) {
            if p.leader_epoch > q.leader_epoch && p.leader >= 0 {
                n += 1;
            }
        }
    }
    n
}

/// Sends one ISR change to the controller and feeds the answer back.
async fn send_alter(broker: Arc<Broker>, link: Arc<dyn ControllerLink>, a: state::AlterIsr) {
    let req = AlterPartitionRequest {
        broker_id: broker.config.node_id,
        broker_epoch: link.broker_epoch(),
        topic_id: a.topic_id,
        partition: a.tp.partition as u32,
        leader_epoch: a.change.leader_epoch,
        partition_epoch: a.change.partition_epoch,
        new_isr: a.change.new_isr.clone(),
    };
    let response = match link.alter_partition(req).await {
        Ok(p) => {
            tracing::info!(partition = %a.tp, isr = ?p.isr, partition_epoch = p.partition_epoch, "ISR changed");
            AlterPartitionResponse::Committed { isr: p.isr, partition_epoch: p.partition_epoch }
        }
        Err(e) => {
            let level_warn = matches!(e, LinkError::Unavailable(_));
            if level_warn {
                tracing::warn!(partition = %a.tp, proposed = ?a.change.new_isr, error = %e, "AlterPartition failed");
            } else {
                tracing::info!(partition = %a.tp, proposed = ?a.change.new_isr, error = %e, "AlterPartition rejected");
            }
            AlterPartitionResponse::Rejected
        }
    };
    if broker.replicas.on_alter_response(&a.tp, a.change.leader_epoch, response) {
        broker.appended.notify_waiters();
    }
}

/// The replica manager: follows the controller's image until `shutdown` (see the module doc).
pub async fn run(
    broker: Arc<Broker>,
    link: Arc<dyn ControllerLink>,
    net: Arc<dyn Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    broker.load_hw_checkpoint().await;
    let mut rx = link.metadata();
    let mut applied = Arc::new(MetadataImage::default());
    let mut fetchers: BTreeMap<BrokerId, JoinHandle<()>> = BTreeMap::new();
    let cfg = broker.config.replication.clone();
    let shrink_every = Duration::from_millis((cfg.replica_lag_time_max_ms / 2).clamp(10, 5_000));
    let checkpoint_every = Duration::from_millis(cfg.hw_checkpoint_interval_ms.max(1));
    let mut next_shrink = tokio::time::Instant::now() + shrink_every;
    let mut next_checkpoint = tokio::time::Instant::now() + checkpoint_every;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let image = rx.borrow_and_update().clone();
        if !Arc::ptr_eq(&image, &applied) {
            broker.reconcile_topics(&image).await;
            for topic in deleted_between(&applied, &image) {
                broker.groups.forget_topic(&broker, &topic).await;
            }
            if broker.is_active_controller() {
                crate::metrics::Metrics::add(
                    &broker.metrics.leader_elections,
                    elections_between(&applied, &image),
                );
            }
            broker.apply_roles(&applied, &image).await;
            link.report_logs(broker.recovery_reports(&image).await);
            // Roles applied and deleted topics retired: the controller may now create a name
            // this image deleted (no old leader here can acknowledge into it any more).
            link.report_acted(image.applied);
            applied = image;
            for leader in broker.replicas.followed_leaders() {
                if fetchers.get(&leader).is_none_or(|h| h.is_finished()) {
                    let h = tokio::spawn(fetcher::run(
                        broker.fetcher_env(),
                        link.clone(),
                        leader,
                        net.clone(),
                        shutdown.clone(),
                    ));
                    fetchers.insert(leader, h);
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= next_shrink {
            broker.replicas.maybe_shrink_all(now_ms().max(0) as u64);
            next_shrink = now + shrink_every;
        }
        for a in broker.replicas.take_alters() {
            tokio::spawn(send_alter(broker.clone(), link.clone(), a));
        }
        if now >= next_checkpoint {
            broker.checkpoint_hws().await;
            next_checkpoint = now + checkpoint_every;
        }
        tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() { break },
            r = rx.changed() => if r.is_err() { break },
            _ = broker.replicas.alter_ready.notified() => {}
            _ = tokio::time::sleep_until(next_shrink.min(next_checkpoint)) => {}
        }
    }
    for (_, h) in fetchers {
        let _ = h.await;
    }
    broker.checkpoint_hws().await;
    broker.replicas.stop_all();
}
