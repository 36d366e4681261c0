//! CreateTopics with a manual replica assignment (the `assignments` field): checked here as Kafka
//! does — partition indexes 0..n, each once; every partition with the same number of replicas,
//! no broker twice in one; `num_partitions` and `replication_factor` left at -1 — then the
//! broker ids: a single node accepts only itself, the controller only registered brokers.

use kafka_protocol::messages::create_topics_request::CreatableTopic;

use crate::protocol::error_code;

/// A manual assignment: the replicas (broker ids) of partition 0, 1, ...
pub(crate) type Assignment = Vec<Vec<i32>>;

/// The topic's manual assignment (`None` without one), or why it is invalid.
pub(crate) fn parse(t: &CreatableTopic) -> Result<Option<Assignment>, (i16, String)> {
    if t.assignments.is_empty() {
        return Ok(None);
    }
    let bad = |msg: String| Err((error_code::INVALID_REPLICA_ASSIGNMENT, msg));
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err((
            error_code::INVALID_REQUEST,
            "both numPartitions or replicationFactor and replicasAssignments were set; both cannot be used at the same time".to_string(),
        ));
    }
    let n = t.assignments.len();
    let mut out: Vec<Option<Vec<i32>>> = vec![None; n];
    for a in &t.assignments {
        let Some(slot) = usize::try_from(a.partition_index).ok().and_then(|i| out.get_mut(i))
        else {
            return bad(format!(
                "partition index {} is not in 0..{n} (indexes must be consecutive from 0)",
                a.partition_index
            ));
        };
        if slot.is_some() {
            return bad(format!("partition {} is assigned twice", a.partition_index));
        }
        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if ids.is_empty() {
            return bad(format!("partition {} has no replicas", a.partition_index));
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != ids.len() {
            return bad(format!("partition {} lists a broker twice: {ids:?}", a.partition_index));
        }
        *slot = Some(ids);
    }
    let out: Assignment = out.into_iter().flatten().collect();
    assert_eq!(out.len(), n, "every index in 0..n was filled once");
    let rf = out[0].len();
    if let Some((p, r)) = out.iter().enumerate().find(|(_, r)| r.len() != rf) {
        return bad(format!(
            "partition {p} has {} replicas, partition 0 has {rf}: all must have the same number",
            r.len()
        ));
    }
    Ok(Some(out))
}

/// A single node: every replica must be this broker.
pub(crate) fn check_single(a: &Assignment, node_id: i32) -> Result<(), (i16, String)> {
    match a.iter().flatten().find(|b| **b != node_id) {
        Some(b) => Err((
            error_code::INVALID_REPLICA_ASSIGNMENT,
            format!("broker {b} does not exist (the only broker is {node_id})"),
        )),
        None => Ok(()),
    }
}
