//! A follower's fetcher: one task per leader broker, replicating every partition this broker
//! follows from it (Kafka's `ReplicaFetcherThread`).
//!
//! Each round:
//! 1. partitions that started following a new leader epoch truncate first, by epoch: ask the
//!    leader where this replica's latest epoch ends (OffsetForLeaderEpoch, KIP-101), cut the log
//!    there, and ask again when the leader answered an epoch this replica lacks (KIP-279). Never
//!    to the HW: a HW can lag what a later leader committed.
//! 2. one Fetch (`replica_id` = this broker) for every truncated partition from its log end; the
//!    leader's answer carries whole batches with offsets and epochs assigned, appended verbatim
//!    (`append_as_follower`), and the leader's HW.
//!
//! Before each append the role is checked again under the partition's data lock: an answer for a
//! leader epoch this broker no longer follows is dropped. Errors back off
//! `replica.fetch.backoff.ms` and drop the connection; a partition the leader refused or this
//! broker failed to append (its log offline after a storage error) is left out of fetches for
//! `replica.fetch.backoff.ms` (Kafka's `delayPartitions`), never refetched at once; leader and
//! epoch changes come from metadata.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster::isr::{truncation_step, EpochCache, LeaderEpochAnswer, Truncation};
use cluster::metadata::BrokerId;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::OffsetForLeaderEpochResponse;
use kafka_protocol::messages::{ApiKey, TopicName};
use net_model::{CostHook, Network, Work};
use records::BatchIter;
use tokio::sync::{watch, Notify};

use super::state::Followed;
use super::state::Replicas;
use super::wire::{KafkaConn, WireError};
use crate::config::ReplicationSettings;
use crate::controller::link::ControllerLink;
use crate::log::{LogError, TopicPartition};
use crate::now_ms;
use crate::partition::{rebuild_partition_producers, OwnedData, Partition, Partitions};
use crate::protocol::error_code;

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;
/// OffsetForLeaderEpoch rounds per partition per truncation (each cuts the log further back).
const TRUNCATION_ROUNDS_MAX: usize = 64;
/// How often an idle fetcher (nothing followed from its leader) looks again.
const IDLE_POLL_MS: u64 = 100;

fn topic_name(s: &str) -> TopicName {
    TopicName(kafka_protocol::protocol::StrBytes::from_string(s.to_string()))
}

/// What a fetcher works with: the partitions and their roles, the replication settings, the CPU
/// seam and the append notification; never the broker itself (nor any broker-wide lock).
#[derive(Clone)]
pub struct FetcherEnv {
    pub node_id: BrokerId,
    pub config: ReplicationSettings,
    pub partitions: Arc<Partitions>,
    pub replicas: Arc<Replicas>,
    pub cost: Arc<dyn CostHook>,
    /// Woken after an append (long-polling fetches at this broker wait on it).
    pub appended: Arc<Notify>,
}

impl FetcherEnv {
    async fn partition_data(&self, tp: &TopicPartition) -> Option<(Arc<Partition>, OwnedData)> {
        self.partitions.locked(tp).await
    }
}

/// Runs the fetcher for `leader` until `shutdown`.
pub async fn run(
    env: FetcherEnv,
    link: Arc<dyn ControllerLink>,
    leader: BrokerId,
    net: Arc<dyn Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<KafkaConn> = None;
    let mut last_error: Option<String> = None;
    // Partitions the leader refused or this broker failed to append, left out of fetches until
    // their backoff passes (one such partition must not make the others spin: refusals are
    // answered at once, and an offline log fails every append at once).
    let mut delayed: BTreeMap<TopicPartition, tokio::time::Instant> = BTreeMap::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let parts = env.replicas.followed_from(leader);
        let pause_ms = if parts.is_empty() {
            conn = None;
            Some(IDLE_POLL_MS)
        } else {
            match round(&env, link.as_ref(), leader, net.as_ref(), &mut conn, parts, &mut delayed)
                .await
            {
                Ok(()) => {
                    last_error = None;
                    None
                }
                Err(why) => {
                    if last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(broker = env.node_id, leader, error = %why, "replica fetcher");
                        last_error = Some(why);
                    }
                    conn = None;
                    Some(env.config.replica_fetch_backoff_ms.max(1))
                }
            }
        };
        if let Some(ms) = pause_ms {
            tokio::select! {
                biased;
                r = shutdown.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            }
        }
    }
}

async fn round(
    env: &FetcherEnv,
    link: &dyn ControllerLink,
    leader: BrokerId,
    net: &dyn Network,
    conn: &mut Option<KafkaConn>,
    parts: Vec<Followed>,
    delayed: &mut BTreeMap<TopicPartition, tokio::time::Instant>,
) -> Result<(), String> {
    let cfg = &env.config;
    let timeout = Duration::from_millis(cfg.replica_socket_timeout_ms);
    let addr = {
        let img = link.metadata().borrow().clone();
        let b =
            img.brokers.get(&leader).ok_or_else(|| format!("leader {leader} is not registered"))?;
        format!("{}:{}", b.endpoint.host, b.endpoint.port)
    };
    if conn.as_ref().is_none_or(|c| c.addr != addr) {
        let client_id = format!("replica-fetcher-{}", env.node_id);
        *conn = Some(
            KafkaConn::connect(net, &addr, &client_id, timeout)
                .await
                .map_err(|e| format!("connect to leader {leader} at {addr}: {e}"))?,
        );
    }
    let c = conn.as_mut().expect("connected above");
    let untruncated: Vec<Followed> = parts.iter().filter(|p| !p.truncated).cloned().collect();
    if !untruncated.is_empty() {
        truncate(env, leader, c, untruncated)
            .await
            .map_err(|e| format!("OffsetForLeaderEpoch to {leader}: {e}"))?;
    }
    let now = tokio::time::Instant::now();
    delayed.retain(|_, until| *until > now);
    let backoff = Duration::from_millis(cfg.replica_fetch_backoff_ms.max(1));
    let parts: Vec<Followed> = env
        .replicas
        .followed_from(leader)
        .into_iter()
        .filter(|p| p.truncated && !delayed.contains_key(&p.tp))
        .collect();
    if parts.is_empty() {
        // Waiting for metadata (fenced or unknown epoch at the leader) or for backoffs to pass:
        // do not spin.
        let wake = delayed.values().min().copied().unwrap_or(now + backoff).min(now + backoff);
        tokio::time::sleep_until(wake).await;
        return Ok(());
    }
    let refused =
        fetch(env, leader, c, parts).await.map_err(|e| format!("Fetch from {leader}: {e}"))?;
    for tp in refused {
        delayed.insert(tp, now + backoff);
    }
    Ok(())
}

/// KIP-101/279 truncation of `parts` against `leader`.
async fn truncate(
    env: &FetcherEnv,
    leader: BrokerId,
    c: &mut KafkaConn,
    parts: Vec<Followed>,
) -> Result<(), WireError> {
    if env.config.unsafe_truncate_to_hw {
        truncate_to_hw(env, parts).await;
        return Ok(());
    }
    let me = env.node_id;
    // (partition, epoch to ask about), refined round by round.
    let mut asking: BTreeMap<TopicPartition, (i32, i32)> = BTreeMap::new();
    for p in parts {
        let Some((_, data)) = env.partition_data(&p.tp).await else { continue };
        let log = &data.log;
        {
            match log.epochs().latest() {
                Some(e) => {
                    asking.insert(p.tp.clone(), (p.leader_epoch, e.epoch));
                }
                // Nothing written under any epoch: nothing to cut.
                None => env.replicas.mark_truncated(&p.tp, p.leader_epoch, log.log_end_offset()),
            }
        }
    }
    for _ in 0..TRUNCATION_ROUNDS_MAX {
        if asking.is_empty() {
            return Ok(());
        }
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(me);
        let mut by_topic: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (tp, (current, epoch)) in &asking {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = tp.partition;
            p.current_leader_epoch = sent_epoch(&env.config, *current);
            p.leader_epoch = *epoch;
            by_topic.entry(tp.topic.as_str()).or_default().push(p);
        }
        for (t, ps) in by_topic {
            let mut ot = OffsetForLeaderTopic::default();
            ot.topic = topic_name(t);
            ot.partitions = ps;
            req.topics.push(ot);
        }
        let timeout = Duration::from_millis(env.config.replica_socket_timeout_ms);
        let resp: OffsetForLeaderEpochResponse =
            c.call(ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, &req, 1 << 20, timeout).await?;
        let mut next = BTreeMap::new();
        for t in resp.topics {
            for r in t.partitions {
                let tp = TopicPartition::new(t.topic.0.as_str().to_string(), r.partition);
                let Some(&(current, _)) = asking.get(&tp) else { continue };
                if !env.replicas.still_following(&tp, leader, current) {
                    continue;
                }
                if r.error_code != error_code::NONE {
                    // FENCED/UNKNOWN_LEADER_EPOCH, NOT_LEADER: metadata will move us on.
                    tracing::debug!(partition = %tp, error = r.error_code, "OffsetForLeaderEpoch refused");
                    continue;
                }
                let Some((_, mut data)) = env.partition_data(&tp).await else { continue };
                let data = &mut *data;
                if !env.replicas.still_following(&tp, leader, current) {
                    continue; // the role changed before the partition's lock was ours
                }
                let log = &mut data.log;
                let leo = log.log_end_offset();
                let mut cache = EpochCache::default();
                for e in log.epochs().entries() {
                    cache.assign(e.epoch, e.start_offset);
                }
                let answer = if r.end_offset < 0 || r.leader_epoch < 0 {
                    LeaderEpochAnswer::Undefined
                } else {
                    LeaderEpochAnswer::Found { epoch: r.leader_epoch, end_offset: r.end_offset }
                };
                let step = if env.config.unsafe_fetch_ignore_epoch {
                    truncation_step_before_kip279(leo, answer)
                } else {
                    truncation_step(&cache, leo, answer)
                };
                let result = match step {
                    Truncation::Done { offset } => log.truncate_to(offset).await,
                    Truncation::AskAgain { offset, epoch } => {
                        next.insert(tp.clone(), (current, epoch));
                        log.truncate_to(offset).await
                    }
                    Truncation::Reset => log.truncate_fully_and_start_at(0, now_ms()).await,
                };
                if let Err(e) = result {
                    tracing::error!(partition = %tp, error = %e, "truncation failed; the partition is offline here");
                    next.remove(&tp);
                    continue;
                }
                let new_leo = log.log_end_offset();
                if new_leo < leo {
                    let log: &crate::log::Log = log;
                    rebuild_partition_producers(&mut data.producers, &tp, log).await;
                    tracing::info!(partition = %tp, from = leo, to = new_leo, leader, leader_epoch = current, "truncated by leader epoch");
                }
                if !next.contains_key(&tp) {
                    env.replicas.mark_truncated(&tp, current, new_leo);
                }
            }
        }
        asking = next;
    }
    Ok(())
}

/// The leader epoch a follower request carries: its own, or -1 (not checked: before KIP-320)
/// under the museum switch `loglab.unsafe.follower.fetch.ignore.epoch`.
fn sent_epoch(cfg: &ReplicationSettings, leader_epoch: i32) -> i32 {
    if cfg.unsafe_fetch_ignore_epoch {
        -1
    } else {
        leader_epoch
    }
}

/// The museum switch `loglab.unsafe.follower.fetch.ignore.epoch` (KIP-101 as first shipped, before
/// KIP-279): truncate to the end offset the leader answered, whatever epoch it says that offset
/// ends. When the leader never saw the follower's latest epoch it answers where its own earlier
/// epoch ends, and the follower keeps its own records below that offset: the logs diverge.
fn truncation_step_before_kip279(leo: i64, answer: LeaderEpochAnswer) -> Truncation {
    match answer {
        LeaderEpochAnswer::Found { end_offset, .. } => {
            Truncation::Done { offset: end_offset.min(leo) }
        }
        LeaderEpochAnswer::Undefined => Truncation::Reset,
    }
}

/// The museum switch `loglab.unsafe.truncate.to.hw` (before KIP-101): cut each log at this
/// replica's own high watermark, without asking the leader. Records between the high watermark
/// and the log end may be acknowledged ones; if this replica is elected before it fetched them
/// again, they are lost.
async fn truncate_to_hw(env: &FetcherEnv, parts: Vec<Followed>) {
    for p in parts {
        let Some((_, mut data)) = env.partition_data(&p.tp).await else { continue };
        let data = &mut *data;
        let log = &mut data.log;
        let leo = log.log_end_offset();
        let hw =
            env.replicas.high_watermark(&p.tp).unwrap_or(leo).clamp(log.log_start_offset(), leo);
        if hw < leo {
            if let Err(e) = log.truncate_to(hw).await {
                tracing::error!(partition = %p.tp, error = %e, "truncation failed; the partition is offline here");
                continue;
            }
            let log: &crate::log::Log = log;
            rebuild_partition_producers(&mut data.producers, &p.tp, log).await;
            tracing::warn!(partition = %p.tp, from = leo, to = hw, "unsafe: truncated to the high watermark (loglab.unsafe.truncate.to.hw)");
        }
        env.replicas.mark_truncated(&p.tp, p.leader_epoch, data.log.log_end_offset());
    }
}

/// One Fetch of `parts` (all truncated) from `leader`; appends what came back. Returns the
/// partitions the leader refused or whose append failed here (to back off).
async fn fetch(
    env: &FetcherEnv,
    leader: BrokerId,
    c: &mut KafkaConn,
    parts: Vec<Followed>,
) -> Result<Vec<TopicPartition>, WireError> {
    let me = env.node_id;
    let cfg = &env.config;
    let mut req = FetchRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(me);
    req.max_wait_ms = i32::try_from(cfg.replica_fetch_wait_max_ms).unwrap_or(i32::MAX);
    req.min_bytes = 1;
    req.max_bytes = cfg.replica_fetch_response_max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    let mut epochs: BTreeMap<TopicPartition, (i32, i64)> = BTreeMap::new();
    {
        let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for p in &parts {
            let Some((_, data)) = env.partition_data(&p.tp).await else { continue };
            let log = &data.log;
            let mut fp = FetchPartition::default();
            fp.partition = p.tp.partition;
            fp.current_leader_epoch = sent_epoch(cfg, p.leader_epoch);
            fp.fetch_offset = log.log_end_offset();
            fp.last_fetched_epoch = -1;
            fp.log_start_offset = log.log_start_offset();
            fp.partition_max_bytes = cfg.replica_fetch_max_bytes;
            epochs.insert(p.tp.clone(), (p.leader_epoch, fp.fetch_offset));
            by_topic.entry(p.tp.topic.as_str()).or_default().push(fp);
        }
        for (t, ps) in by_topic {
            let mut ft = FetchTopic::default();
            ft.topic = topic_name(t);
            ft.partitions = ps;
            req.topics.push(ft);
        }
    }
    if req.topics.is_empty() {
        return Ok(Vec::new());
    }
    let timeout =
        Duration::from_millis(cfg.replica_socket_timeout_ms + cfg.replica_fetch_wait_max_ms);
    let max = usize::try_from(cfg.replica_fetch_response_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    let resp: FetchResponse = c.call(ApiKey::Fetch, FETCH_VERSION, &req, max, timeout).await?;
    if resp.error_code != error_code::NONE {
        return Err(WireError::Malformed(format!("fetch error {}", resp.error_code)));
    }
    // Validating what came (CRC) costs CPU before the lock is taken.
    let fetched_bytes: u64 = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum();
    // Handling the response costs the fixed per-request work (parse, wake-ups, the partition
    // walk) as any request does; with records, the append copies them into the log as a
    // produce does (Memcpy) after checking their CRC. Followers do not decode records, so no
    // per-record cost.
    env.cost.spend(Work::Request, 0).await;
    if fetched_bytes > 0 {
        env.cost.spend(Work::Crc32c, fetched_bytes).await;
        env.cost.spend(Work::Memcpy, fetched_bytes).await;
    }
    let mut appended = false;
    let mut refused = Vec::new();
    for t in resp.responses {
        // The followed partitions' own name of the topic (one allocation-free key per partition,
        // compared by pointer in `epochs` and the partition map); a topic not asked for has no
        // entry in `epochs` either way.
        let name = t.topic.0.as_str();
        let topic = match parts.iter().find(|p| p.tp.topic.as_str() == name) {
            Some(p) => p.tp.topic.clone(),
            None => kafka_types::Topic::from(name),
        };
        for p in t.partitions {
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            let Some(&(epoch, fetch_offset)) = epochs.get(&tp) else { continue };
            if !env.replicas.still_following(&tp, leader, epoch) {
                continue;
            }
            let Some((_, mut data)) = env.partition_data(&tp).await else { continue };
            let data = &mut *data;
            if !env.replicas.still_following(&tp, leader, epoch) {
                continue; // the role changed before the partition's lock was ours
            }
            let log = &mut data.log;
            if log.log_end_offset() != fetch_offset {
                continue; // the log moved while the fetch was out (truncation): ask again
            }
            match p.error_code {
                error_code::NONE => {}
                error_code::OFFSET_OUT_OF_RANGE => {
                    if fetch_offset < p.log_start_offset {
                        // Retention removed what we would need: start over at the leader's start.
                        tracing::warn!(partition = %tp, fetch_offset, leader_start = p.log_start_offset, "behind the leader's log start; restarting the replica there");
                        if let Err(e) =
                            log.truncate_fully_and_start_at(p.log_start_offset, now_ms()).await
                        {
                            tracing::error!(partition = %tp, error = %e, "reset failed");
                        }
                    } else {
                        env.replicas.mark_untruncated(&tp, epoch);
                    }
                    continue;
                }
                error_code::FENCED_LEADER_EPOCH
                | error_code::UNKNOWN_LEADER_EPOCH
                | error_code::NOT_LEADER_OR_FOLLOWER
                | error_code::UNKNOWN_TOPIC_OR_PARTITION => {
                    tracing::debug!(partition = %tp, error = p.error_code, "fetch refused by the leader; waiting for metadata");
                    refused.push(tp);
                    continue;
                }
                code => {
                    tracing::warn!(partition = %tp, error = code, "fetch error at the leader");
                    refused.push(tp);
                    continue;
                }
            }
            let records = p.records.unwrap_or_default();
            let whole = whole_batches(&records);
            if !whole.is_empty() {
                match log.append_as_follower(&whole, now_ms()).await {
                    Ok(_) => {
                        appended = true;
                        // A follower may become leader: it must know the producers' sequences.
                        let headers: Vec<records::BatchHeader> =
                            BatchIter::new(&whole).map(|(_, h)| h).collect();
                        data.producers.record(&tp, &headers);
                    }
                    Err(LogError::NonContiguousAppend { base_offset, log_end_offset }) => {
                        tracing::warn!(partition = %tp, base_offset, log_end_offset, "leader sent a non-contiguous batch; truncating by epoch again");
                        env.replicas.mark_untruncated(&tp, epoch);
                        continue;
                    }
                    Err(e) => {
                        // Its log is offline (a storage error) or refused the batch: fetching
                        // the same records again at once would fail the same way, in a loop as
                        // fast as the leader answers. Wait the backoff, as Kafka's fetcher
                        // delays a partition whose processing failed (`delayPartitions`).
                        tracing::error!(partition = %tp, error = %e, "follower append failed; backing off");
                        refused.push(tp);
                        continue;
                    }
                }
            }
            // DeleteRecords at the leader: follow its log start (within what this log holds).
            if p.log_start_offset > log.log_start_offset() {
                let start = p.log_start_offset.min(log.log_end_offset());
                if let Err(e) = log.advance_log_start(start).await {
                    tracing::error!(partition = %tp, error = %e, "advancing the log start failed");
                }
            }
            env.replicas.update_follower_hw(&tp, epoch, p.high_watermark, log.log_end_offset());
        }
    }
    if appended {
        env.appended.notify_waiters();
    }
    Ok(refused)
}

/// The leading whole batches of a fetched record set (a response may end with a partial batch).
fn whole_batches(records: &Bytes) -> Bytes {
    let mut iter = BatchIter::new(records);
    let mut end = 0;
    for (pos, h) in iter.by_ref() {
        end = pos + h.size();
    }
    records.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KIP-279's example: A leads epoch 1 with offsets 0-1, B holds offset 0; B leads epoch 2 and
    /// writes offset 1 alone; A leads epoch 3 from offset 2. B asks about epoch 2 and A answers
    /// that its epoch 1 ends at 2. With KIP-279 B cuts its log where its own epoch 1 ends (offset 1,
    /// dropping its epoch-2 record); before it, B keeps offset 1 while A holds another record there.
    #[test]
    fn before_kip279_a_follower_keeps_the_epoch_the_leader_never_saw() {
        let mut b = EpochCache::default();
        b.assign(1, 0);
        b.assign(2, 1);
        let answer = LeaderEpochAnswer::Found { epoch: 1, end_offset: 2 };
        assert_eq!(truncation_step(&b, 2, answer), Truncation::Done { offset: 1 });
        assert_eq!(truncation_step_before_kip279(2, answer), Truncation::Done { offset: 2 });
        let mut cfg = ReplicationSettings::default();
        assert_eq!(sent_epoch(&cfg, 7), 7);
        cfg.unsafe_fetch_ignore_epoch = true;
        assert_eq!(sent_epoch(&cfg, 7), -1);
    }
}
