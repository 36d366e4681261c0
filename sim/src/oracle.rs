//! The oracle: once the run settled, read every partition back in full through the broker's
//! request path (each from its current leader in cluster runs), and, in cluster runs, every
//! replica's log through debugging Fetches (replica id -2) for `replicas-agree`.
//!
//! Promises: a partition that cannot be read back by its deadline is `None` (the checkers see
//! an unreadable log, never a silently short one); reads only, nothing is written.

use std::collections::BTreeMap;
use std::time::Duration;

use broker::log::TopicPartition;

use crate::api::{ApiError, BrokerApi};
use crate::history::{FinalLog, SeenRecords};
use crate::trace::Tracer;
use crate::workload::decode_value;
use crate::world::World;

/// Every partition of the scenario, in topic then partition order.
pub fn partitions(sc: &crate::scenario::Scenario) -> Vec<TopicPartition> {
    sc.topics
        .iter()
        .flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p)))
        .collect()
}

/// Each partition's final log, by `topic-partition`.
pub async fn final_logs(
    api: &dyn BrokerApi,
    tps: &[TopicPartition],
    tracer: &Tracer,
    give_up_ns: u64,
) -> BTreeMap<TopicPartition, Option<FinalLog>> {
    let mut finals = BTreeMap::new();
    for tp in tps {
        finals.insert(tp.clone(), read_all(api, tp, tracer, give_up_ns).await);
    }
    finals
}

/// Every replica's log per partition, and the (leader, epoch, ISR) the oracle read against.
pub type ReplicaLogs = BTreeMap<TopicPartition, BTreeMap<u32, Option<crate::history::ReplicaLog>>>;
pub type FinalPartitions = BTreeMap<TopicPartition, (i32, i32, Vec<i32>)>;

/// Cluster runs: every replica's log, read back through debugging Fetches.
pub async fn replica_logs(
    world: &World,
    tps: &[TopicPartition],
    tracer: &Tracer,
) -> (ReplicaLogs, FinalPartitions) {
    let mut logs = BTreeMap::new();
    let mut states = BTreeMap::new();
    let readers: Vec<_> =
        (0..world.hosts.len()).map(|b| world.conn(b, "replica-reader", tracer)).collect();
    for tp in tps {
        let Some(st) = crate::cluster::partition_state(&world.hosts, &tp.topic, tp.partition)
        else {
            continue;
        };
        let mut per = BTreeMap::new();
        for &r in &st.replicas {
            let Some(c) = usize::try_from(r).ok().and_then(|r| readers.get(r)) else { continue };
            per.insert(r as u32, crate::cluster::read_replica(c, tp, tracer).await);
        }
        let described: Vec<String> = per
            .iter()
            .map(|(b, l)| match l {
                Some(l) => format!(
                    "broker-{b}:hw={},leo={},batches={}",
                    l.high_watermark,
                    l.log_end_offset,
                    l.batches.len()
                ),
                None => format!("broker-{b}:unreadable"),
            })
            .collect();
        let line = format!(
            "{tp} leader={} epoch={} isr={:?} {}",
            st.leader,
            st.leader_epoch,
            st.isr,
            described.join(" ")
        );
        tracer.event("replica-logs", &line);
        logs.insert(tp.clone(), per);
        states.insert(tp.clone(), (st.leader, st.leader_epoch, st.isr.clone()));
    }
    (logs, states)
}

/// One partition from its log start to its log end (as ListOffsets said when the read began).
async fn read_all(
    api: &dyn BrokerApi,
    tp: &TopicPartition,
    tracer: &Tracer,
    give_up_ns: u64,
) -> Option<FinalLog> {
    let timeout = Duration::from_secs(5);
    let backoff = 100_000_000;
    let (mut start, end) = loop {
        match api.list_offsets(tp, timeout).await {
            Ok(r) => break r,
            Err(e) => {
                if tracer.now_ns() > give_up_ns {
                    tracer.event("final-read-failed", &format!("{tp} {e}"));
                    return None;
                }
                tracer.sleep_until_ns(tracer.now_ns() + backoff).await;
            }
        }
    };
    // Kept as runs of values (a batch of one producer's records is one), so a log of millions
    // of records costs no more than its batches.
    let mut records = SeenRecords::new();
    let mut pos = start;
    while pos < end {
        let failed =
            |pos: i64, why: String| tracer.event("final-read-failed", &format!("{tp}@{pos} {why}"));
        let resp = match api.fetch(tp, pos, 1 << 20, Duration::ZERO, timeout).await {
            Ok(resp) => resp,
            // Retention moved the log's start past `pos` while the log was read: the final log
            // starts there (records read below it stay observed).
            Err(ApiError::OffsetOutOfRange { log_start_offset, .. })
                if log_start_offset > pos && log_start_offset <= end =>
            {
                (start, pos) = (log_start_offset, log_start_offset);
                continue;
            }
            Err(e) => {
                failed(pos, e.to_string());
                return None;
            }
        };
        let before = pos;
        for b in resp.batches {
            let Ok(mut iter) = records::decode_batch(b, 256 << 20) else {
                failed(pos, "undecodable batch".into());
                return None;
            };
            // Each record's value id read in place (no record built: a final log is millions).
            while let Some(Ok(r)) = iter.next_meta() {
                if r.offset >= pos && r.offset < end {
                    let value = r.value.map(|v| &iter.uncompressed_records()[v]);
                    records.push(r.offset, value.and_then(decode_value).unwrap_or(u64::MAX));
                }
            }
        }
        if let Some(last) = records.last() {
            pos = pos.max(last.0 + 1);
        }
        if pos == before {
            failed(pos, "no progress".into());
            return None;
        }
    }
    tracer.event("final-log", &format!("{tp} start={start} end={end} records={}", records.len()));
    Some(FinalLog { log_start_offset: start, log_end_offset: end, records })
}
