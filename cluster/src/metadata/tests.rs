// Mutation probes, 2026-12-02 (issue 20): fencing and stale-epoch rejection. Each rule was
// broken on purpose in a scratch worktree, `cargo test -p cluster` run, the failure seen, the
// code restored. Lines are cluster/src/metadata.rs's at the time; "→" names the failing tests.
//
// - :344 a new leader in the same leader epoch is applied (drop the `leader_changed && ==`
//   clause) → apply_rejects_stale_records_without_change.
// - :344 a leader epoch that goes back is applied (`leader_epoch < current` → `false`)
//   → apply_rejects_stale_records_without_change.
// - :337 a partition epoch may skip ahead (`!= current + 1` → `<= current`)
//   → apply_rejects_stale_records_without_change.
// - :265 Fence/UnfenceBroker of another incarnation's broker epoch applied
//   → apply_rejects_stale_records_without_change, apply_is_total_and_atomic.
// - :229 a replayed registration epoch accepted (`<=` → `<`)
//   → apply_rejects_stale_records_without_change, apply_is_total_and_atomic.
// - :630 AlterPartition with a stale leader epoch accepted → controller_keeps_partition_invariants.
// - :630 AlterPartition from a replica that is not the leader accepted
//   → controller_keeps_partition_invariants.
// - :633 AlterPartition with an older partition epoch accepted (`!=` → `>`)
//   → controller_keeps_partition_invariants, session_timeout_fences_and_moves_leadership.
// - :624 AlterPartition with a stale broker epoch accepted → controller_keeps_partition_invariants.
// - :578 heartbeat with a stale broker epoch renews the session (drop the check)
//   → heartbeat_with_a_stale_broker_epoch_is_refused, controller_keeps_partition_invariants
//   (Op::StaleHeartbeat).
// - :649 a fenced broker joins the ISR (KIP-841 check off)
//   → controller_keeps_partition_invariants, session_timeout_fences_and_moves_leadership.
// - :770 a leader elected from outside the ISR (clean election) → controller_keeps_…,
//   session_timeout_…, unclean_election_…, unclean_restart_of_the_sole_isr_member_….
// - :790 a fenced leader keeps leading → controller_keeps_…, session_timeout_…,
//   unclean_election_…, unclean_restart_of_the_sole_isr_member_….
// - :843 a broker restarted uncleanly stays in the ELR
//   → unclean_restart_of_the_sole_isr_member_hands_leadership_to_the_elr.
// - :786 the last ISR member is removed when fenced → controller_keeps_…, session_timeout_…,
//   unclean_restart_of_the_sole_isr_member_….
// - :633 the other way round: a valid shrink refused → controller_keeps_partition_invariants
//   ("current AlterPartition … refused"), session_timeout_…, unclean_election_…, unclean_restart_….
//
// Issue 14 (second loss, unclean recovery), 2026-12: lines are cluster/src/metadata.rs's now.
// - :997 the sole ISR member back from an unclean restart is elected as the last ISR member
//   although last-known-ELR members may hold more (the recovery branch off: `if false && …`)
//   → new_leaders_hold_every_committed_record, unclean_recovery_elects_the_longest_log_….
// - :991 a sole ISR member that hands the ISR to the ELR does not join the last known ELR
//   → new_leaders_hold_every_committed_record (crash of the leader, power loss of the ELR member).
// - (seen while writing it) recovery putting the other last-known-ELR members into the ELR, as if
//   they held every acknowledged write → new_leaders_hold_every_committed_record.
// - (a real bug, found by CI's 5,000-case run, 2026-12-03) recovery keeping only the old last
//   known ELR, dropping the old sole ISR member: the elected replica then loses power, and the
//   one replica left with the acknowledged writes is no candidate any more → new_leaders_hold_…
//   (case in proptest-regressions), unclean_recovery_elects_the_longest_log_….

use proptest::prelude::*;

use super::*;

fn ep(port: u16) -> Endpoint {
    Endpoint { host: "127.0.0.1".into(), port }
}

fn tid(n: u8) -> TopicId {
    TopicId([n; 16])
}

/// Applies a decision's records; every record a decision makes must be accepted.
fn apply_all(image: &mut MetadataImage, log: &mut Vec<Record>, records: Vec<Record>) {
    for r in records {
        image.apply(&r).unwrap_or_else(|e| panic!("decision made a rejected record {r:?}: {e}"));
        log.push(r);
    }
}

/// Registers and unfences brokers 0..n.
fn cluster(c: &mut Controller, n: i32) -> (MetadataImage, Vec<Record>) {
    let mut image = MetadataImage::default();
    let mut log = Vec::new();
    for b in 0..n {
        let d = c.register_broker(&image, b, 1, ep(9092 + b as u16), true, 0).unwrap();
        apply_all(&mut image, &mut log, d.records);
        let epoch = d.reply;
        let d = c.heartbeat(&image, b, epoch, false, 0).unwrap();
        assert!(!d.reply.fenced);
        apply_all(&mut image, &mut log, d.records);
    }
    (image, log)
}

#[test]
fn create_assigns_round_robin_and_checks_replication_factor() {
    let mut c = Controller::new(ControllerConfig::default());
    let (mut image, mut log) = cluster(&mut c, 3);
    assert_eq!(
        c.create_topic(&image, "t", tid(1), 2, 4, 0),
        Err(ControllerError::InvalidReplicationFactor("4 with 3 live brokers".into()))
    );
    assert!(matches!(
        c.create_topic(&image, "bad/name", tid(1), 1, 1, 0),
        Err(ControllerError::InvalidTopic(_))
    ));
    assert!(matches!(
        c.create_topic(&image, "t", tid(1), 0, 1, 0),
        Err(ControllerError::InvalidPartitions(_))
    ));
    let d = c.create_topic(&image, "t", tid(1), 3, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let t = &image.topics[&tid(1)];
    let assigned: Vec<_> = t.partitions.iter().map(|p| (p.replicas.clone(), p.leader)).collect();
    assert_eq!(assigned, vec![(vec![0, 1], 0), (vec![1, 2], 1), (vec![2, 0], 2)]);
    assert_eq!(
        c.create_topic(&image, "t", tid(2), 1, 1, 0),
        Err(ControllerError::TopicAlreadyExists)
    );
}

/// Delete and recreate (issue 15): a name is created again only once every live broker acted on
/// its deletion; before, a broker still leading the old partitions by name could acknowledge a
/// write a producer meant for the new topic, then retire it with the old log.
#[test]
fn recreating_a_name_waits_until_every_live_broker_acted_on_its_deletion() {
    let mut c = Controller::new(ControllerConfig::default());
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 3, 3, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(c.deletion_pending(&image, "t").is_empty(), "never deleted");
    let d = c.delete_topic(&image, "t").unwrap();
    apply_all(&mut image, &mut log, d.records);
    let deleted_at = image.deleted_at["t"];
    assert_eq!(deleted_at, image.applied, "the deletion is the last record applied");

    // Broker 2 acted on an image from before the deletion; 0 and 1 on the deletion.
    c.note_acted(0, deleted_at);
    c.note_acted(1, deleted_at + 5);
    c.note_acted(2, deleted_at - 1);
    c.note_acted(1, 1); // never moves back
    let pending = ControllerError::TopicDeletionPending { name: "t".into(), brokers: vec![2] };
    assert_eq!(c.create_topic(&image, "t", tid(2), 1, 1, 0), Err(pending));
    assert_eq!(c.deletion_pending(&image, "u"), Vec::<BrokerId>::new(), "another name is free");

    // A fenced broker does not hold the name (it leads nothing once fenced).
    let epoch = image.brokers[&2].broker_epoch;
    let d = c.heartbeat(&image, 2, epoch, true, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(c.deletion_pending(&image, "t").is_empty());
    let d = c.create_topic(&image, "t", tid(2), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(!image.deleted_at.contains_key("t"), "created again: no longer deleted");
}

/// Deleted names are bounded by `topics_max`: the oldest deletion is forgotten first.
#[test]
fn deleted_names_are_bounded() {
    let mut image = MetadataImage::new(Limits { topics_max: 2, ..Limits::default() });
    for i in 0..4u8 {
        let one = PartitionRecord { replicas: vec![0], isr: vec![0], leader: 0 };
        let name = format!("t{i}");
        image
            .apply(&Record::CreateTopic { name, topic_id: tid(i), partitions: vec![one] })
            .unwrap();
        image.apply(&Record::DeleteTopic { topic_id: tid(i) }).unwrap();
    }
    assert_eq!(image.deleted_at.keys().collect::<Vec<_>>(), vec!["t2", "t3"]);
}

#[test]
fn create_partitions_appends_and_manual_assignment_places() {
    let mut c = Controller::new(ControllerConfig::default());
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 2, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(matches!(
        c.create_partitions(&image, "t", 2, 0),
        Err(ControllerError::InvalidPartitions(_))
    ));
    assert_eq!(
        c.create_partitions(&image, "u", 3, 0).map(|d| d.reply),
        Err(ControllerError::UnknownTopicOrPartition)
    );
    let d = c.create_partitions(&image, "t", 4, 2).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let placed: Vec<_> =
        image.topics[&tid(1)].partitions.iter().map(|p| (p.replicas.clone(), p.leader)).collect();
    // The old two untouched; the new ones round-robin from `start` + their index, RF 2.
    assert_eq!(placed[2..], [(vec![1, 2], 1), (vec![2, 0], 2)]);

    let d = c.create_topic_assigned(&image, "m", tid(2), &[vec![2, 0], vec![1, 2]]).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let placed: Vec<_> =
        image.topics[&tid(2)].partitions.iter().map(|p| (p.replicas.clone(), p.leader)).collect();
    assert_eq!(placed, vec![(vec![2, 0], 2), (vec![1, 2], 1)]);
    assert!(matches!(
        c.create_topic_assigned(&image, "x", tid(3), &[vec![0, 5]]),
        Err(ControllerError::InvalidReplicaAssignment(_))
    ));
    assert_eq!(
        c.create_topic_assigned(&image, "m", tid(3), &[vec![0]]).map(|d| d.reply),
        Err(ControllerError::TopicAlreadyExists)
    );
    // Preferred elections: every partition here is led by its first replica.
    let ask = [("m".to_string(), 0), ("m".to_string(), 7)];
    let d = c.elect_preferred(&image, &ask);
    assert!(d.records.is_empty());
    assert_eq!(
        d.reply,
        vec![
            kafka_types::error_code::ELECTION_NOT_NEEDED,
            kafka_types::error_code::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
}

#[test]
fn rebalance_gives_preferred_replicas_their_leadership_back() {
    let mut c = Controller::new(ControllerConfig::default());
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 3, 3, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(c.rebalance_leaders(&image, 10).is_empty(), "balanced from the start");
    // Broker 0 shuts down (fenced) and comes back: live, out of the ISR, leading nothing.
    let e0 = image.brokers[&0].broker_epoch;
    let d = c.heartbeat(&image, 0, e0, true, 10).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let d = c.heartbeat(&image, 0, e0, false, 20).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));
    assert!(c.rebalance_leaders(&image, 10).is_empty(), "not in the ISR: not electable");
    // The leader takes it back into the ISR.
    let req = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: image.brokers[&1].broker_epoch,
        topic_id: tid(1),
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![0, 1, 2],
    };
    let d = c.alter_partition(&image, &req).unwrap();
    apply_all(&mut image, &mut log, d.records);
    // Broker 0 leads none of its one preferred partition: 100% > 100% is false, > 10% true.
    assert!(c.rebalance_leaders(&image, 100).is_empty());
    let records = c.rebalance_leaders(&image, 10);
    assert_eq!(records.len(), 1, "{records:?}");
    apply_all(&mut image, &mut log, records);
    let q = image.partition(tid(1), 0).unwrap();
    assert_eq!(q.leader, 0);
    assert!(q.leader_epoch > p.leader_epoch);
    let leaders: Vec<_> = image.topics[&tid(1)].partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, vec![0, 1, 2]);
    assert!(c.rebalance_leaders(&image, 10).is_empty());
}

#[test]
fn session_timeout_fences_and_moves_leadership() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 1,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 1, 3, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    // Brokers 1 and 2 keep heartbeating; 0 (the leader) goes silent.
    for b in [1, 2] {
        let e = image.brokers[&b].broker_epoch;
        assert!(c.heartbeat(&image, b, e, false, 90).unwrap().records.is_empty());
    }
    assert!(c.tick(&image, 100).is_empty(), "exactly the timeout is still alive");
    let records = c.tick(&image, 101);
    apply_all(&mut image, &mut log, records);
    let p = image.partition(tid(1), 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (1, vec![1, 2], 1, 1));
    assert!(image.brokers[&0].fenced);
    // A stale AlterPartition from the old leader is fenced.
    let req = AlterPartitionRequest {
        broker_id: 0,
        broker_epoch: image.brokers[&0].broker_epoch,
        topic_id: tid(1),
        partition: 0,
        leader_epoch: 0,
        partition_epoch: 0,
        new_isr: vec![0],
    };
    assert_eq!(c.alter_partition(&image, &req), Err(ControllerError::FencedLeaderEpoch));
    let req = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: image.brokers[&1].broker_epoch,
        leader_epoch: 1,
        new_isr: vec![1, 2, 0],
        ..req
    };
    assert_eq!(c.alter_partition(&image, &req), Err(ControllerError::InvalidUpdateVersion));
    let req = AlterPartitionRequest { partition_epoch: 1, ..req };
    assert_eq!(
        c.alter_partition(&image, &req),
        Err(ControllerError::IneligibleReplica(0)),
        "KIP-841: fenced cannot join"
    );
    let req = AlterPartitionRequest { new_isr: vec![2], ..req };
    assert!(
        matches!(c.alter_partition(&image, &req), Err(ControllerError::InvalidRequest(_))),
        "leader must stay"
    );
    let req = AlterPartitionRequest { new_isr: vec![1], ..req };
    let d = c.alter_partition(&image, &req).unwrap();
    assert_eq!((d.reply.isr.clone(), d.reply.partition_epoch), (vec![1], 2));
    apply_all(&mut image, &mut log, d.records);
    // Everyone but 1 is fenced: 1 leads alone. Then 1 dies too: offline, ISR keeps 1 (KIP-841).
    let records = c.tick(&image, 300);
    apply_all(&mut image, &mut log, records);
    let p = image.partition(tid(1), 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![1]));
    // 2 comes back: not in the ISR, stays offline (unclean off). Then 1 comes back and leads.
    let d = c.heartbeat(&image, 2, image.brokers[&2].broker_epoch, false, 400).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert_eq!(image.partition(tid(1), 0).unwrap().leader, NO_LEADER);
    let d = c.heartbeat(&image, 1, image.brokers[&1].broker_epoch, false, 400).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (1, vec![1], 3));
}

#[test]
fn unclean_election_takes_a_live_replica_outside_the_isr() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: true,
        min_insync_replicas: 1,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 2);
    let d = c.create_topic(&image, "t", tid(1), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let req = AlterPartitionRequest {
        broker_id: 0,
        broker_epoch: image.brokers[&0].broker_epoch,
        topic_id: tid(1),
        partition: 0,
        leader_epoch: 0,
        partition_epoch: 0,
        new_isr: vec![0],
    };
    let d = c.alter_partition(&image, &req).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let d = c.heartbeat(&image, 0, image.brokers[&0].broker_epoch, true, 10).unwrap();
    assert!(d.reply.fenced);
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (1, vec![1], 1));
}

#[test]
fn apply_rejects_stale_records_without_change() {
    let mut c = Controller::new(ControllerConfig::default());
    let (mut image, mut log) = cluster(&mut c, 2);
    let d = c.create_topic(&image, "t", tid(1), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let before = image.clone();
    let change = |leader, leader_epoch, isr: Vec<i32>, partition_epoch| Record::PartitionChange {
        topic_id: tid(1),
        partition: 0,
        leader,
        leader_epoch,
        isr,
        partition_epoch,
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        recovering: false,
    };
    let last_broker_epoch = image.last_broker_epoch;
    for bad in [
        change(1, 0, vec![0, 1], 1),  // leader changed without a new leader epoch
        change(0, -1, vec![0, 1], 1), // leader epoch went back
        change(1, -1, vec![1], 1),    // new leader with an older leader epoch
        change(0, 0, vec![0], 2),     // skipped a partition epoch
        change(0, 0, vec![0], 0),     // replayed partition epoch
        change(0, 0, vec![1], 1),     // leader outside the ISR
        change(0, 0, vec![], 1),      // empty ISR
        change(0, 0, vec![0, 5], 1),  // ISR outside the replicas
        Record::FenceBroker { broker_id: 0, broker_epoch: 99 },
        Record::UnfenceBroker { broker_id: 1, broker_epoch: image.brokers[&1].broker_epoch - 1 },
        Record::RegisterBroker { broker_id: 0, incarnation: 2, broker_epoch: 1, endpoint: ep(1) },
        Record::RegisterBroker {
            broker_id: 0,
            incarnation: 2,
            broker_epoch: last_broker_epoch, // a replayed registration
            endpoint: ep(1),
        },
        Record::DeleteTopic { topic_id: tid(9) },
    ] {
        assert!(image.apply(&bad).is_err(), "{bad:?} accepted");
        assert_eq!(image, before);
    }
    // The same records with current epochs go through.
    image.apply(&change(0, 0, vec![0], 1)).unwrap();
    image.apply(&change(1, 1, vec![1], 2)).unwrap();
    assert!(
        image.apply(&change(0, 1, vec![0, 1], 3)).is_err(),
        "leader changed back within epoch 1"
    );
    image.apply(&change(1, 1, vec![0, 1], 3)).unwrap();
    let fence = Record::FenceBroker { broker_id: 0, broker_epoch: image.brokers[&0].broker_epoch };
    image.apply(&fence).unwrap();
    assert!(image.brokers[&0].fenced);
    let register = Record::RegisterBroker {
        broker_id: 0,
        incarnation: 2,
        broker_epoch: last_broker_epoch + 1,
        endpoint: ep(1),
    };
    image.apply(&register).unwrap();
    assert_eq!(
        (image.brokers[&0].broker_epoch, image.last_broker_epoch),
        (last_broker_epoch + 1, last_broker_epoch + 1)
    );
}

/// A zombie (the previous incarnation of a re-registered broker) heartbeats with its old broker
/// epoch: refused, and it does not keep the new incarnation's session alive.
#[test]
fn heartbeat_with_a_stale_broker_epoch_is_refused() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 1,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 2);
    let old = image.brokers[&1].broker_epoch;
    let d = c.register_broker(&image, 1, 2, ep(9093), true, 10).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let new = d.reply;
    assert!(new > old);
    assert_eq!(c.heartbeat(&image, 1, old, false, 50), Err(ControllerError::StaleBrokerEpoch));
    let d = c.heartbeat(&image, 1, new, false, 60).unwrap();
    assert!(!d.reply.fenced, "the current incarnation is unfenced");
    apply_all(&mut image, &mut log, d.records);
    assert_eq!(c.heartbeat(&image, 1, old, true, 150), Err(ControllerError::StaleBrokerEpoch));
    assert!(!image.brokers[&1].fenced, "a zombie cannot fence the current incarnation");
    let e0 = image.brokers[&0].broker_epoch;
    let records = c.heartbeat(&image, 0, e0, false, 150).unwrap().records;
    apply_all(&mut image, &mut log, records);
    let records = c.tick(&image, 161);
    apply_all(&mut image, &mut log, records);
    assert!(image.brokers[&1].fenced, "only the current incarnation's heartbeats count");
    assert!(!image.brokers[&0].fenced);
}

/// What broker `b` reports with a heartbeat for unclean recovery: arbitrary logs (derived from
/// the broker and partition) for the partitions awaiting it with `b` as a candidate.
fn recovery_reports(image: &MetadataImage, b: BrokerId) -> Vec<ReplicaLogInfo> {
    let mut out = Vec::new();
    for (id, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.recovering && recovery_candidates(p).contains(&b) {
                let k = b as i64 * 7 + i as i64 * 3;
                out.push(ReplicaLogInfo {
                    topic_id: *id,
                    partition: i as u32,
                    partition_epoch: p.partition_epoch,
                    last_epoch: (k % 3) as i32 - 1,
                    log_end_offset: k % 5,
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Heartbeat(i32, bool),
    /// A heartbeat carrying a broker epoch other than the current one (a zombie incarnation).
    StaleHeartbeat(i32, i64),
    Time(u64),
    Register(i32, bool),
    Alter {
        topic: usize,
        partition: usize,
        requester: Option<i32>,
        leader_epoch_delta: i32,
        partition_epoch_delta: i32,
        stale_broker: bool,
        isr_mask: u8,
    },
    Create(u32, u16),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![6 => Just(0), 1 => Just(-1), 1 => Just(1)];
    prop_oneof![
        6 => (0i32..5, prop::bool::weighted(0.15)).prop_map(|(b, f)| Op::Heartbeat(b, f)),
        1 => (0i32..5, prop_oneof![3 => Just(-1i64), 1 => Just(1i64)]).prop_map(|(b, d)| Op::StaleHeartbeat(b, d)),
        3 => (0u64..120).prop_map(Op::Time),
        1 => (0i32..5, any::<bool>()).prop_map(|(b, clean)| Op::Register(b, clean)),
        6 => (0usize..4, 0usize..4, prop::option::weighted(0.2, 0i32..5), delta.clone(), delta, prop::bool::weighted(0.1), any::<u8>())
            .prop_map(|(topic, partition, requester, l, p, stale_broker, isr_mask)| Op::Alter {
                topic, partition, requester, leader_epoch_delta: l, partition_epoch_delta: p, stale_broker, isr_mask
            }),
        1 => (1u32..4, 1u16..5).prop_map(|(p, rf)| Op::Create(p, rf)),
        1 => (0usize..4).prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: crate::proptest_cases(256), ..ProptestConfig::default() })]

    #[test]
    fn controller_keeps_partition_invariants(unclean in any::<bool>(), min_insync in 1usize..=3, ops in proptest::collection::vec(op(), 1..150)) {
        let config = ControllerConfig { broker_session_timeout_ms: 100, unclean_leader_election_enable: unclean, min_insync_replicas: min_insync, unsafe_elr_disabled: false };
        let mut c = Controller::new(config.clone());
        let (mut image, mut log) = cluster(&mut c, 5);
        let d = c.create_topic(&image, "t0", tid(0), 3, 3, 0).unwrap();
        apply_all(&mut image, &mut log, d.records);
        let mut now = 0u64;
        let mut next_topic = 1u8;
        for op in ops {
            let before = image.clone();
            let records = match op {
                Op::Heartbeat(b, fence) => {
                    let e = image.brokers[&b].broker_epoch;
                    let logs = recovery_reports(&image, b);
                    c.heartbeat_with_logs(&image, b, e, fence, &logs, now).unwrap().records
                }
                Op::StaleHeartbeat(b, delta) => {
                    let e = image.brokers[&b].broker_epoch + delta;
                    prop_assert_eq!(c.heartbeat(&image, b, e, delta > 0, now).map(|d| d.records), Err(ControllerError::StaleBrokerEpoch));
                    continue;
                }
                Op::Time(dt) => { now += dt; c.tick(&image, now) }
                Op::Register(b, clean) => c.register_broker(&image, b, now, ep(1), clean, now).unwrap().records,
                Op::Alter { topic, partition, requester, leader_epoch_delta, partition_epoch_delta, stale_broker, isr_mask } => {
                    let Some((id, t)) = image.topics.iter().nth(topic % image.topics.len().max(1)) else { continue };
                    let partition = partition % t.partitions.len();
                    let p = &t.partitions[partition];
                    let broker_id = requester.unwrap_or(p.leader);
                    let Some(b) = image.brokers.get(&broker_id) else { continue };
                    let req = AlterPartitionRequest {
                        broker_id,
                        broker_epoch: b.broker_epoch - i64::from(stale_broker),
                        topic_id: *id,
                        partition: partition as u32,
                        leader_epoch: p.leader_epoch + leader_epoch_delta,
                        partition_epoch: p.partition_epoch + partition_epoch_delta,
                        new_isr: p.replicas.iter().enumerate().filter(|(i, _)| isr_mask & (1 << i) != 0).map(|(_, r)| *r).collect(),
                    };
                    let stale = stale_broker || broker_id != p.leader || leader_epoch_delta != 0 || partition_epoch_delta != 0;
                    match c.alter_partition(&image, &req) {
                        Ok(d) => {
                            prop_assert!(!stale, "stale AlterPartition accepted: {:?} for {:?}", req, p);
                            prop_assert!(d.reply.isr.contains(&p.leader));
                            for r in d.reply.isr.iter().filter(|r| !p.isr.contains(r)) {
                                prop_assert!(image.is_live(*r), "fenced {} joined the ISR", r);
                            }
                            d.records
                        }
                        Err(e) => {
                            // The other way round: a current request from the leader for a valid
                            // ISR (it keeps the leader; whoever joins is live) goes through.
                            let valid = req.new_isr.contains(&p.leader) && req.new_isr.iter().all(|r| p.isr.contains(r) || image.is_live(*r));
                            prop_assert!(stale || !valid, "current AlterPartition {:?} for {:?} refused: {:?}", req, p, e);
                            continue;
                        }
                    }
                }
                Op::Create(parts, rf) => {
                    let start = image.topics.values().map(|t| t.partitions.len()).sum();
                    let live = image.live_brokers().len();
                    match c.create_topic(&image, &format!("t{next_topic}"), tid(next_topic), parts, rf, start) {
                        Ok(d) => { next_topic += 1; d.records }
                        Err(e) => {
                            prop_assert!(matches!(e, ControllerError::InvalidReplicationFactor(_)) && usize::from(rf) > live);
                            continue;
                        }
                    }
                }
                Op::Delete(i) => {
                    let Some(name) = image.topic_ids.keys().nth(i % image.topic_ids.len().max(1)).cloned() else { continue };
                    c.delete_topic(&image, &name).unwrap().records
                }
            };
            apply_all(&mut image, &mut log, records);
            for (id, t) in &image.topics {
                for (i, p) in t.partitions.iter().enumerate() {
                    prop_assert!(check_partition(p).is_ok(), "{:?}", p);
                    prop_assert!(p.leader == NO_LEADER || image.is_live(p.leader), "fenced leader {:?}", p);
                    if p.isr.len() > 1 {
                        prop_assert!(p.isr.iter().all(|r| image.is_live(*r)), "fenced broker in a shared ISR {:?}", p);
                    }
                    let Some(old) = before.partition(*id, i as u32) else { continue };
                    prop_assert!(p.leader_epoch >= old.leader_epoch && p.partition_epoch >= old.partition_epoch);
                    if p.leader != old.leader {
                        prop_assert!(p.leader_epoch > old.leader_epoch, "leader changed without an epoch bump");
                        if !unclean && p.leader != NO_LEADER {
                            let recovered = old.recovering && old.last_known_elr.contains(&p.leader);
                            prop_assert!(old.isr.contains(&p.leader) || old.elr.contains(&p.leader) || recovered, "leader {} not from previous ISR {:?}, ELR {:?} or recovery", p.leader, old.isr, old.elr);
                        }
                    }
                    // An offline partition with a live ISR member is a missed election.
                    if p.leader == NO_LEADER {
                        prop_assert!(p.recovering || p.isr.iter().all(|r| !image.is_live(*r)), "offline with live ISR {:?}", p);
                        prop_assert!(p.elr.iter().all(|r| !image.is_live(*r)), "offline with live ELR {:?}", p);
                    }
                    // The ELR exists only while the ISR is below min.insync.replicas.
                    prop_assert!(p.elr.is_empty() || p.isr.len() < min_insync, "ELR with a full ISR {:?}", p);
                }
            }
        }
        // Every broker back (and, for unclean recovery, every candidate's log reported once its
        // unfencing is in the image): every partition has a leader again.
        for _ in 0..2 {
            for b in 0..5 {
                let e = image.brokers[&b].broker_epoch;
                let logs = recovery_reports(&image, b);
                let d = c.heartbeat_with_logs(&image, b, e, false, &logs, now).unwrap();
                apply_all(&mut image, &mut log, d.records);
            }
        }
        for t in image.topics.values() {
            for p in &t.partitions {
                prop_assert!(p.leader != NO_LEADER, "still offline: {:?}", p);
            }
        }
        // Deterministic replay, also through the serialized form.
        let json = serde_json::to_string(&log).unwrap();
        let decoded: Vec<Record> = serde_json::from_str(&json).unwrap();
        let mut replay = MetadataImage::default();
        for r in &decoded {
            replay.apply(r).unwrap();
        }
        prop_assert_eq!(replay, image);
    }
}

fn any_record() -> impl Strategy<Value = Record> {
    let ids = || proptest::collection::vec(-1i32..4, 0..4);
    prop_oneof![
        (-1i32..4, 0u64..3, -1i64..8).prop_map(|(broker_id, incarnation, broker_epoch)| {
            Record::RegisterBroker { broker_id, incarnation, broker_epoch, endpoint: ep(1) }
        }),
        (-1i32..4, -1i64..8)
            .prop_map(|(broker_id, broker_epoch)| Record::FenceBroker { broker_id, broker_epoch }),
        (-1i32..4, -1i64..8).prop_map(|(broker_id, broker_epoch)| Record::UnfenceBroker {
            broker_id,
            broker_epoch
        }),
        ("[a-c.]{0,3}", 0u8..3, proptest::collection::vec((ids(), ids(), -1i32..4), 0..3))
            .prop_map(|(name, id, parts)| {
                Record::CreateTopic {
                    name,
                    topic_id: tid(id),
                    partitions: parts
                        .into_iter()
                        .map(|(replicas, isr, leader)| PartitionRecord { replicas, isr, leader })
                        .collect(),
                }
            }),
        (0u8..3, 0u32..3, -1i32..4, -1i32..3, ids(), -1i32..3).prop_map(
            |(id, partition, leader, leader_epoch, isr, partition_epoch)| Record::PartitionChange {
                topic_id: tid(id),
                partition,
                leader,
                leader_epoch,
                isr,
                partition_epoch,
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                recovering: false,
            }
        ),
        (0u8..3).prop_map(|id| Record::DeleteTopic { topic_id: tid(id) }),
        ("[a-c.]{0,3}", "[a-c. ]{0,3}", proptest::option::of("[0-9]{0,2}")).prop_map(
            |(topic, name, value)| Record::Config(ConfigChange {
                resource: ConfigResource::Topic(topic),
                name,
                value
            })
        ),
        (0u8..3, proptest::collection::vec((ids(), ids(), -1i32..4), 0..3)).prop_map(
            |(id, parts)| Record::CreatePartitions {
                topic_id: tid(id),
                partitions: parts
                    .into_iter()
                    .map(|(replicas, isr, leader)| PartitionRecord { replicas, isr, leader })
                    .collect(),
            }
        ),
    ]
}

proptest! {
    /// Arbitrary (corrupt, replayed, reordered) records never panic `apply`; a rejected one
    /// leaves the image as it was, and an accepted image always keeps the partition invariants.
    #[test]
    fn apply_is_total_and_atomic(records in proptest::collection::vec(any_record(), 0..60)) {
        let mut image = MetadataImage::default();
        for r in &records {
            let before = image.clone();
            match image.apply(r) {
                Ok(()) => prop_assert_eq!(image.applied, before.applied + 1),
                Err(_) => prop_assert_eq!(&image, &before),
            }
            // Whatever was accepted kept the epochs' rules.
            for (id, t) in &image.topics {
                for (i, p) in t.partitions.iter().enumerate() {
                    let Some(old) = before.partition(*id, i as u32) else { continue };
                    if p == old {
                        continue;
                    }
                    prop_assert_eq!(p.partition_epoch, old.partition_epoch + 1, "{:?} after {:?}", p, old);
                    prop_assert!(p.leader_epoch >= old.leader_epoch, "leader epoch went back: {:?} after {:?}", p, old);
                    if p.leader != old.leader {
                        prop_assert!(p.leader_epoch > old.leader_epoch, "new leader in the same epoch: {:?} after {:?}", p, old);
                    }
                }
            }
            for (b, reg) in &image.brokers {
                if let Some(old) = before.brokers.get(b) {
                    prop_assert!(reg.broker_epoch >= old.broker_epoch);
                }
            }
            prop_assert!(image.last_broker_epoch >= before.last_broker_epoch);
            if image != before {
                match r {
                    Record::RegisterBroker { broker_epoch, .. } => {
                        prop_assert!(*broker_epoch > before.last_broker_epoch, "broker epoch {} reused (last {})", broker_epoch, before.last_broker_epoch);
                    }
                    Record::FenceBroker { broker_id, broker_epoch } | Record::UnfenceBroker { broker_id, broker_epoch } => {
                        prop_assert_eq!(before.brokers.get(broker_id).map(|b| b.broker_epoch), Some(*broker_epoch), "(un)fenced by a record of another incarnation");
                    }
                    _ => {}
                }
            }
            for t in image.topics.values() {
                for p in &t.partitions {
                    prop_assert!(check_partition(p).is_ok());
                }
            }
        }
    }
}

/// The data-loss story KIP-966 closes: RF 3, min.insync.replicas 2. The ISR shrinks to the leader
/// alone (the others lagged); they join the ELR, holding every acks=all write. The leader loses
/// power and restarts uncleanly: it must not be elected from its truncated log — an ELR member is.
#[test]
fn unclean_restart_of_the_sole_isr_member_hands_leadership_to_the_elr() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 2,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 1, 3, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (0, vec![0, 1, 2]));
    // {0,1,2} → {0,1}: still at min.insync, no ELR.
    let alter = |image: &MetadataImage, isr: Vec<i32>| {
        let p = image.partition(tid(1), 0).unwrap();
        AlterPartitionRequest {
            broker_id: 0,
            broker_epoch: image.brokers[&0].broker_epoch,
            topic_id: tid(1),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
        }
    };
    let d = c.alter_partition(&image, &alter(&image, vec![0, 1])).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert!(image.partition(tid(1), 0).unwrap().elr.is_empty());
    // {0,1} → {0}: below min.insync; 1 joins the ELR (2 left while the ISR was still full).
    let d = c.alter_partition(&image, &alter(&image, vec![0])).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert_eq!(image.partition(tid(1), 0).unwrap().elr, vec![1]);
    // Broker 0 goes silent and is fenced: the live ELR member 1 is elected (clean).
    for b in [1, 2] {
        let e = image.brokers[&b].broker_epoch;
        let recs = c.heartbeat(&image, b, e, false, 150).unwrap().records;
        apply_all(&mut image, &mut log, recs);
    }
    let recs = c.tick(&image, 200);
    apply_all(&mut image, &mut log, recs);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]), "{p:?}");
    assert_eq!(p.elr, vec![0], "the old leader held everything until it failed");
    // It restarts after a power loss: out of the ELR, never elected from its truncated log.
    let d = c.register_broker(&image, 0, 99, ep(9092), false, 300).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert!(p.elr.is_empty() && p.leader == 1, "{p:?}");

    // Two replicas, both lost: the partition waits for the one that holds every acknowledged
    // write instead of electing the one that restarted after a power loss.
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 2,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 2);
    let d = c.create_topic(&image, "u", tid(2), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(2), 0).unwrap().clone();
    let req = AlterPartitionRequest {
        broker_id: p.leader,
        broker_epoch: image.brokers[&p.leader].broker_epoch,
        topic_id: tid(2),
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![p.leader],
    };
    let recs = c.alter_partition(&image, &req).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let other = 1 - p.leader;
    assert_eq!(image.partition(tid(2), 0).unwrap().elr, vec![other]);
    // Both go silent. The leader is fenced first, while the ELR member is still live: it takes
    // over (ISR = it, the old leader joins the ELR); then it is fenced too, as the last member.
    let recs = c.tick(&image, 1_000);
    apply_all(&mut image, &mut log, recs);
    let q = image.partition(tid(2), 0).unwrap().clone();
    assert_eq!(
        (q.leader, q.isr.clone(), q.elr.clone()),
        (NO_LEADER, vec![other], vec![p.leader]),
        "{q:?}"
    );
    // The old leader restarts uncleanly: out of the ELR; it is not elected from its truncated log.
    let d = c.register_broker(&image, p.leader, 7, ep(1), false, 1_100).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let e = image.brokers[&p.leader].broker_epoch;
    let recs = c.heartbeat(&image, p.leader, e, false, 1_100).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let q = image.partition(tid(2), 0).unwrap().clone();
    assert_eq!((q.leader, q.isr.clone(), q.elr.clone()), (NO_LEADER, vec![other], vec![]), "{q:?}");
    // The ELR member comes back and is elected.
    let e = image.brokers[&other].broker_epoch;
    let recs = c.heartbeat(&image, other, e, false, 1_200).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    assert_eq!(image.partition(tid(2), 0).unwrap().leader, other);
}

/// Issue 14's second loss, step by step: RF 2, min.insync.replicas 2. The follower crashes (its
/// log survives) and restarts uncleanly: it leaves the ELR for the last known ELR. The leader, the
/// last ISR member, loses power and restarts with an empty log: it is not elected again; the
/// partition waits for both logs and elects the follower's, the longer.
#[test]
fn unclean_recovery_elects_the_longest_log_over_the_last_isr_member() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 2,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    let (leader, follower) = (p.replicas[0], p.replicas[1]);
    assert_eq!((p.leader, p.isr.clone()), (leader, vec![leader, follower]));
    // The follower's process crashes and restarts: fenced by its new registration, into the ELR,
    // and out of it for the last known ELR (unclean shutdown).
    let d = c.register_broker(&image, follower, 2, ep(1), false, 10).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let e = image.brokers[&follower].broker_epoch;
    let recs = c.heartbeat(&image, follower, e, false, 10).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.elr.clone(), p.last_known_elr.clone(), p.recovering),
        (leader, vec![leader], vec![], vec![follower], false),
        "{p:?}"
    );
    // The leader loses power and restarts uncleanly: not elected as the last ISR member.
    let d = c.register_broker(&image, leader, 3, ep(1), false, 20).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone(), p.recovering), (NO_LEADER, vec![leader], true), "{p:?}");
    let report = |image: &MetadataImage, last_epoch, leo| {
        let p = image.partition(tid(1), 0).unwrap();
        vec![ReplicaLogInfo {
            topic_id: tid(1),
            partition: 0,
            partition_epoch: p.partition_epoch,
            last_epoch,
            log_end_offset: leo,
        }]
    };
    let e = image.brokers[&leader].broker_epoch;
    let recs = c
        .heartbeat_with_logs(&image, leader, e, false, &report(&image, -1, 0), 30)
        .unwrap()
        .records;
    apply_all(&mut image, &mut log, recs);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!(p.leader, NO_LEADER, "elected before every candidate reported: {p:?}");
    // A report for an older partition state does not count.
    let stale = vec![ReplicaLogInfo {
        partition_epoch: p.partition_epoch - 1,
        ..report(&image, 0, 5_000)[0]
    }];
    let e = image.brokers[&follower].broker_epoch;
    let recs = c.heartbeat_with_logs(&image, follower, e, false, &stale, 40).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    assert_eq!(image.partition(tid(1), 0).unwrap().leader, NO_LEADER);
    let recs = c
        .heartbeat_with_logs(&image, follower, e, false, &report(&image, 0, 5_000), 50)
        .unwrap()
        .records;
    apply_all(&mut image, &mut log, recs);
    let q = image.partition(tid(1), 0).unwrap().clone();
    // The old leader stays a candidate of a later recovery (the controller cannot tell its power
    // loss from a crash; should the new leader lose its log next, it may be all that is left).
    assert_eq!(
        (q.leader, q.isr.clone(), q.recovering, q.last_known_elr.clone()),
        (follower, vec![follower], false, vec![leader]),
        "{q:?}"
    );
    assert!(q.leader_epoch > p.leader_epoch);
    // The old leader catches up and rejoins: the ISR is whole again.
    let req = AlterPartitionRequest {
        broker_id: follower,
        broker_epoch: e,
        topic_id: tid(1),
        partition: 0,
        leader_epoch: q.leader_epoch,
        partition_epoch: q.partition_epoch,
        new_isr: vec![leader, follower],
    };
    let recs = c.alter_partition(&image, &req).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let q = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!(
        (q.isr.clone(), q.elr.clone(), q.last_known_elr.clone()),
        (vec![leader, follower], vec![], vec![])
    );

    // The same, but the old leader's log is the longer one (it only crashed): it is elected.
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 2,
        unsafe_elr_disabled: false,
    });
    let (mut image, mut log) = cluster(&mut c, 2);
    let d = c.create_topic(&image, "t", tid(1), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    for (b, inc) in [(1, 2), (0, 3)] {
        let d = c.register_broker(&image, b, inc, ep(1), false, 10).unwrap();
        apply_all(&mut image, &mut log, d.records);
    }
    for (b, last_epoch, leo) in [(1, 0, 10), (0, 0, 12)] {
        let e = image.brokers[&b].broker_epoch;
        let recs = c
            .heartbeat_with_logs(&image, b, e, false, &report(&image, last_epoch, leo), 20)
            .unwrap()
            .records;
        apply_all(&mut image, &mut log, recs);
    }
    // Broker 0's report was sent before broker 1's unfencing... both are in: 0 leads.
    let q = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!(
        (q.leader, q.isr.clone(), q.elr.clone(), q.last_known_elr.clone()),
        (0, vec![0], vec![], vec![1]),
        "{q:?}"
    );
}

/// A replica-log model of one partition (3 brokers, RF 2 or 3, min.insync.replicas 2, unclean
/// off): writes, replication, ISR changes, process crashes (the log survives), at most one power
/// loss (the log keeps a prefix), restarts (unclean registrations), heartbeats with log reports,
/// session expiry. Whenever the partition gets a new leader, that leader's log holds every
/// committed (acks=all) record. One power loss is what safe settings promise to survive.
#[derive(Debug, Clone)]
enum Step {
    Write,
    Replicate(usize),
    Shrink(usize),
    Expand(usize),
    Crash(usize),
    PowerLoss(usize, u8),
    Restart(usize),
    Beat(usize),
    Time(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Write),
        4 => (0usize..3).prop_map(Step::Replicate),
        1 => (0usize..3).prop_map(Step::Shrink),
        2 => (0usize..3).prop_map(Step::Expand),
        1 => (0usize..3).prop_map(Step::Crash),
        1 => (0usize..3, any::<u8>()).prop_map(|(b, k)| Step::PowerLoss(b, k)),
        2 => (0usize..3).prop_map(Step::Restart),
        5 => (0usize..3).prop_map(Step::Beat),
        2 => (0u64..80).prop_map(Step::Time),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: crate::proptest_cases(512), ..ProptestConfig::default() })]

    #[test]
    fn new_leaders_hold_every_committed_record(rf in 2u16..=3, steps in proptest::collection::vec(step(), 1..120)) {
        let mut c = Controller::new(ControllerConfig { broker_session_timeout_ms: 100, unclean_leader_election_enable: false, min_insync_replicas: 2, unsafe_elr_disabled: false });
        let (mut image, mut log) = cluster(&mut c, 3);
        let d = c.create_topic(&image, "t", tid(1), 1, rf, 0).unwrap();
        apply_all(&mut image, &mut log, d.records);
        let mut logs: Vec<Vec<(i32, u32)>> = vec![Vec::new(); 3];
        let mut up = [true; 3];
        let mut committed: Vec<(i32, u32)> = Vec::new();
        let mut power_losses = 0;
        let mut next_id = 0u32;
        let mut now = 0u64;
        let mut incarnation = 10u64;
        let mut served_epoch = 0;
        for s in steps {
            let before = image.partition(tid(1), 0).unwrap().clone();
            let p = before.clone();
            let leader = usize::try_from(p.leader).ok().filter(|l| up[*l]);
            let records = match s {
                Step::Write => {
                    if let Some(l) = leader.filter(|_| p.isr.len() >= 2) {
                        logs[l].push((p.leader_epoch, next_id));
                        next_id += 1;
                    }
                    Vec::new()
                }
                Step::Replicate(f) => {
                    if let Some(l) = leader.filter(|l| *l != f && up[f] && image.is_live(f as i32) && p.replicas.contains(&(f as i32))) {
                        logs[f] = logs[l].clone();
                        // The HW: what every ISR member holds, while the ISR is at min.insync.
                        if p.isr.len() >= 2 {
                            let n = p.isr.iter().map(|r| logs[*r as usize].iter().zip(&logs[l]).take_while(|(a, b)| a == b).count()).min().unwrap_or(0);
                            if n > committed.len() {
                                prop_assert!(logs[l].starts_with(&committed), "committed records rewritten");
                                committed = logs[l][..n].to_vec();
                            }
                        }
                    }
                    Vec::new()
                }
                Step::Shrink(f) | Step::Expand(f) => {
                    let Some(l) = leader else { continue };
                    let f = f as i32;
                    let mut isr = p.isr.clone();
                    if matches!(s, Step::Shrink(_)) {
                        isr.retain(|r| *r != f);
                    } else if p.replicas.contains(&f) && !isr.contains(&f) && up[f as usize] && logs[f as usize] == logs[l] {
                        isr.push(f);
                    }
                    if isr == p.isr || !isr.contains(&p.leader) {
                        continue;
                    }
                    let req = AlterPartitionRequest { broker_id: p.leader, broker_epoch: image.brokers[&p.leader].broker_epoch, topic_id: tid(1), partition: 0, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch, new_isr: isr };
                    match c.alter_partition(&image, &req) { Ok(d) => d.records, Err(_) => continue }
                }
                Step::Crash(b) => { up[b] = false; continue }
                Step::PowerLoss(b, keep) => {
                    if power_losses > 0 { continue }
                    power_losses += 1;
                    up[b] = false;
                    let keep = keep as usize % (logs[b].len() + 1);
                    logs[b].truncate(keep);
                    continue;
                }
                Step::Restart(b) => {
                    if up[b] { continue }
                    up[b] = true;
                    incarnation += 1;
                    c.register_broker(&image, b as i32, incarnation, ep(1), false, now).unwrap().records
                }
                Step::Beat(b) => {
                    if !up[b] { continue }
                    let e = image.brokers[&(b as i32)].broker_epoch;
                    let reports: Vec<ReplicaLogInfo> = if p.recovering && recovery_candidates(&p).contains(&(b as i32)) {
                        vec![ReplicaLogInfo { topic_id: tid(1), partition: 0, partition_epoch: p.partition_epoch, last_epoch: logs[b].last().map_or(-1, |r| r.0), log_end_offset: logs[b].len() as i64 }]
                    } else { Vec::new() };
                    c.heartbeat_with_logs(&image, b as i32, e, false, &reports, now).unwrap().records
                }
                Step::Time(dt) => { now += dt; c.tick(&image, now) }
            };
            apply_all(&mut image, &mut log, records);
            let q = image.partition(tid(1), 0).unwrap();
            // A leader acts (takes writes, followers truncate to it) once its process is up in
            // that leader epoch; one elected while its process is down re-registers (and is
            // fenced) before it serves.
            if q.leader != NO_LEADER && up[q.leader as usize] && q.leader_epoch != served_epoch {
                served_epoch = q.leader_epoch;
                let l = q.leader as usize;
                prop_assert!(logs[l].starts_with(&committed), "new leader {} (epoch {}) lacks committed records: its log {:?}, committed {:?}; {:?} from {:?}", l, q.leader_epoch, logs[l].len(), committed.len(), q, before);
            }
        }
    }
}

/// `loglab.unsafe.elr.disable` (before KIP-966): the same crash-then-power-loss sequence as
/// `unclean_recovery_elects_the_longest_log_over_the_last_isr_member`, but the controller keeps no
/// ELR and no last known ELR, even when a topic sets `min.insync.replicas`: the sole ISR member back
/// from its power loss is elected again at once, and the follower's longer log is never asked.
#[test]
fn with_the_elr_disabled_the_sole_isr_member_is_elected_again_after_an_unclean_restart() {
    let mut c = Controller::new(ControllerConfig {
        broker_session_timeout_ms: 100,
        unclean_leader_election_enable: false,
        min_insync_replicas: 2,
        unsafe_elr_disabled: true,
    });
    let (mut image, mut log) = cluster(&mut c, 3);
    let d = c.create_topic(&image, "t", tid(1), 1, 2, 0).unwrap();
    apply_all(&mut image, &mut log, d.records);
    assert_eq!(c.config.for_topic(&image, "t").min_insync_replicas, 1);
    let p = image.partition(tid(1), 0).unwrap().clone();
    let (leader, follower) = (p.replicas[0], p.replicas[1]);
    let d = c.register_broker(&image, follower, 2, ep(1), false, 10).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let e = image.brokers[&follower].broker_epoch;
    let recs = c.heartbeat(&image, follower, e, false, 10).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!(
        (p.isr.clone(), p.elr.clone(), p.last_known_elr.clone()),
        (vec![leader], vec![], vec![])
    );
    let d = c.register_broker(&image, leader, 3, ep(1), false, 20).unwrap();
    apply_all(&mut image, &mut log, d.records);
    let p = image.partition(tid(1), 0).unwrap().clone();
    // Offline while it registers (no recovery awaited), then elected as soon as it heartbeats.
    assert_eq!((p.leader, p.isr.clone(), p.recovering), (NO_LEADER, vec![leader], false), "{p:?}");
    let e = image.brokers[&leader].broker_epoch;
    let recs = c.heartbeat(&image, leader, e, false, 30).unwrap().records;
    apply_all(&mut image, &mut log, recs);
    let p = image.partition(tid(1), 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone(), p.recovering), (leader, vec![leader], false), "{p:?}");
}
