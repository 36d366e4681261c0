//! Partition state in one place: a [`Partition`] holds its log, its idempotent-producer state,
//! its replication role and its `acks=all` waiters; [`Partitions`] maps names to handles.
//! Request handlers, the replica fetcher and the background tasks take an `Arc<Partition>` from
//! the map and lock only that partition.
//!
//! # Lock rules (the only ones in the broker's data path)
//! - [`Partitions`]' map (a std `RwLock`) is held only to find, insert or remove a handle, never
//!   across an `.await`.
//! - [`Partition::data`] (an async mutex: the log and the producer state) may be held across this
//!   partition's own disk IO (append, read, truncate, flush). A task holds at most one
//!   partition's data lock at a time, and never while waiting on the network or a long poll.
//! - A partition's role lock (a std mutex: role and `acks=all` waiters) is never held across an
//!   `.await`. Roles change only with the partition's data lock held, so an append or a
//!   follower's write that holds it sees a stable role.
//! - Topic creation and deletion serialize on `Broker::topic_admin` (before the registry);
//!   partition files are created and deleted under it alone. The topic registry
//!   (`Broker::registry`) is held only to read or update entries (and may be held while taking
//!   data locks); a partition's data lock is never held while taking the registry. The group coordinator's mutex may be held while taking either (commits), never
//!   the other way round.
//! - The checkpoint files (`Broker::dir`) may be taken while holding a partition's data lock
//!   (deleting it), never held while taking one.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{oneshot, Mutex, MutexGuard};

use kafka_types::Topic;

use crate::log::{Log, TopicPartition};
use crate::producer_state::ProducerStates;
use crate::replica::state::Role;

/// What the data lock guards: the log and the producers that wrote it.
#[derive(Debug)]
pub struct PartitionData {
    pub log: Log,
    pub producers: ProducerStates,
    /// Set when the partition is deleted or the broker shut down: the log must not change.
    closed: bool,
}

/// A locked [`PartitionData`] that owns its handle.
pub type OwnedData = tokio::sync::OwnedMutexGuard<PartitionData>;

/// A result for an `acks=all` produce.
pub(crate) type AckSender = oneshot::Sender<Result<(), cluster::isr::ProduceError>>;

/// What the role lock guards.
#[derive(Debug, Default)]
pub(crate) struct RoleSlot {
    /// `None`: no role here (single-node mode, or not yet assigned).
    pub role: Option<Role>,
    /// `acks=all` produces waiting for the HW, by ack id.
    pub waiters: BTreeMap<u64, AckSender>,
    pub next_ack_id: u64,
}

#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    data: Arc<Mutex<PartitionData>>,
    role: std::sync::Mutex<RoleSlot>,
}

impl Partition {
    pub fn new(tp: TopicPartition, log: Log, producers: ProducerStates) -> Arc<Self> {
        Arc::new(Self {
            tp,
            data: Arc::new(Mutex::new(PartitionData { log, producers, closed: false })),
            role: std::sync::Mutex::new(RoleSlot::default()),
        })
    }

    /// Locks the log and producer state; `None` once the partition was closed (deleted, or the
    /// broker shut down), as if it did not exist.
    ///
    /// Takes the lock without awaiting when it is free (what `lock().await` does on its first
    /// poll, without the semaphore's future: a fetch pass takes hundreds of these in a row).
    pub async fn data(&self) -> Option<MutexGuard<'_, PartitionData>> {
        let g = match self.data.try_lock() {
            Ok(g) => g,
            Err(_) => self.data.lock().await,
        };
        (!g.closed).then_some(g)
    }

    /// [`Partition::data`] as a guard that owns its handle (to keep it next to the partition).
    pub async fn owned_data(&self) -> Option<OwnedData> {
        let g = self.data.clone().lock_owned().await;
        (!g.closed).then_some(g)
    }

    /// Locks the data and closes it for good: returns the log one last time (to flush or
    /// delete), `None` if already closed.
    pub(crate) async fn close(&self) -> Option<MutexGuard<'_, PartitionData>> {
        let mut g = self.data.lock().await;
        if g.closed {
            return None;
        }
        g.closed = true;
        Some(g)
    }

    /// The role lock (never held across an `.await`).
    pub(crate) fn role(&self) -> std::sync::MutexGuard<'_, RoleSlot> {
        self.role.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every partition this broker has a log of, by name (ordered: iteration order reaches traces).
/// Kept by topic, then partition: a lookup compares the topic name once per topic on its path,
/// not once per partition (a broker of a 1,500-partition topic holds hundreds of replicas of one
/// name, and the names a request carries are its own copies, so every comparison reads bytes).
#[derive(Debug, Default)]
pub struct Partitions {
    map: RwLock<ByTopic>,
}

type ByTopic = BTreeMap<Topic, BTreeMap<i32, Arc<Partition>>>;

impl Partitions {
    fn read(&self) -> RwLockReadGuard<'_, ByTopic> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, ByTopic> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.read().get(&tp.topic)?.get(&tp.partition).cloned()
    }

    /// The map's own name of topic `name`, when it holds any of its partitions: keys built from it
    /// compare with the map's (and with each other) by pointer, not byte by byte. A request
    /// handler takes it once per topic for the hundreds of partition keys it builds.
    pub fn topic_key(&self, name: &str) -> Option<Topic> {
        self.read().get_key_value(name).map(|(k, _)| k.clone())
    }

    pub fn insert(&self, p: Arc<Partition>) {
        let mut m = self.write();
        m.entry(p.tp.topic.clone()).or_default().insert(p.tp.partition, p);
    }

    pub fn remove(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        let mut m = self.write();
        let parts = m.get_mut(&tp.topic)?;
        let removed = parts.remove(&tp.partition);
        if parts.is_empty() {
            m.remove(&tp.topic);
        }
        removed
    }

    /// Every handle, in name order (a snapshot: the map lock is released on return).
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read().values().flat_map(BTreeMap::values).cloned().collect()
    }

    /// `tp`'s handle with its data locked, if it has an open log.
    pub async fn locked(&self, tp: &TopicPartition) -> Option<(Arc<Partition>, OwnedData)> {
        let part = self.get(tp)?;
        let data = part.owned_data().await?;
        Some((part, data))
    }

    /// Removes every handle (shutdown).
    pub fn take_all(&self) -> Vec<Arc<Partition>> {
        let mut m = self.write();
        std::mem::take(&mut *m).into_values().flat_map(BTreeMap::into_values).collect()
    }
}

/// Bytes of each partition's tail scanned at start to rebuild idempotent-producer state.
const PRODUCER_SCAN_BYTES: usize = 8 << 20;

/// Forgets `tp`'s producer state and rebuilds it from the log's tail: after a replica truncates,
/// sequences it remembered may no longer be in its log (a producer retrying them must append
/// again, not be told "duplicate").
pub(crate) async fn rebuild_partition_producers(
    states: &mut ProducerStates,
    tp: &TopicPartition,
    log: &crate::log::Log,
) {
    states.forget_partition(tp);
    let start = log.segment_bases().last().copied().unwrap_or(0).max(log.log_start_offset());
    let (mut offset, end, mut scanned) = (start, log.log_end_offset(), 0usize);
    while offset < end && scanned < PRODUCER_SCAN_BYTES {
        let batches = match log.read_checked(offset, end, 1 << 20).await {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "producer state scan stopped");
                break;
            }
        };
        for b in &batches {
            let Ok(h) = records::BatchHeader::parse(b) else { break };
            scanned += b.len();
            offset = h.last_offset() + 1;
            states.record(tp, &[h]);
        }
    }
}
