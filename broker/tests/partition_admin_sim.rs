//! The controller's side of issue 15's partition APIs, under madsim on the simulated network and
//! disks (deterministic): a 3-controller quorum with three registered brokers. CreatePartitions
//! appends partitions with three replicas and refuses a decrease; CreateTopics with a manual
//! assignment places replicas as asked and refuses unknown brokers; a preferred election is not
//! needed while the first replica leads, not available while it is out of the ISR, and moves
//! leadership back (a new leader epoch) once it is in sync again.
#![cfg(madsim)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::controller::link::{ControllerLink, LinkConfig, LinkError, RpcLink};
use broker::controller::node::{self, ControllerHandle};
use broker::controller::rpc::QuorumConfig;
use cluster::metadata::{AlterPartitionRequest, ControllerError, Endpoint, MetadataImage};
use cluster::raft::NodeId;
use disk_model::clock::Clock;
use disk_model::{DeviceProfile, SimDisk, SimDiskConfig};
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use tokio::sync::watch;
use tokio::time::Instant;

const NONE: i16 = 0;
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
const ELECTION_NOT_NEEDED: i16 = 84;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn voters() -> BTreeMap<NodeId, String> {
    (0..3).map(|i| (i, format!("c{i}:9093"))).collect()
}

fn quorum(id: NodeId) -> QuorumConfig {
    let mut q = QuorumConfig::new(id, voters());
    q.tick_ms = 10;
    q.fetch_timeout_ms = 300;
    q.election_timeout_ms = 300;
    q.controller_tick_ms = 100;
    q.broker_session_timeout_ms = 1_000;
    q.request_timeout_ms = 2_000;
    q.seed = 42;
    q
}

async fn start(
    net: &SimNet,
    disk: &SimDisk,
    id: NodeId,
) -> (ControllerHandle, watch::Sender<bool>) {
    let (stop, rx) = watch::channel(false);
    let host = format!("c{id}");
    let handle = node::start(
        quorum(id),
        net.host(&host),
        Arc::new(disk.clone()),
        Path::new(""),
        &format!("{host}:9093"),
        rx,
    )
    .await
    .expect("controller starts");
    (handle, stop)
}

fn link(net: &SimNet, b: i32, incarnation: u64) -> (Arc<RpcLink>, watch::Sender<bool>) {
    let mut cfg = LinkConfig::new(b, Endpoint { host: format!("b{b}"), port: 9092 }, voters());
    cfg.heartbeat_interval_ms = 100;
    cfg.request_timeout_ms = 3_000;
    cfg.incarnation = incarnation;
    let link = RpcLink::new(cfg, net.host(&format!("b{b}")));
    let (tx, rx) = watch::channel(false);
    link.spawn(rx);
    (link, tx)
}

async fn wait_image(link: &RpcLink, what: &str, ok: impl Fn(&MetadataImage) -> bool) {
    let t0 = Instant::now();
    let mut rx = link.metadata();
    while t0.elapsed() < Duration::from_secs(10) {
        if ok(&rx.borrow_and_update()) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), rx.changed()).await;
    }
    panic!("{what}: not within 10 s; image {:?}", link.metadata().borrow());
}

fn disk(seed: u64) -> SimDisk {
    SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), seed), Clock::runtime())
}

/// The story; returns what the image said at each step (compared across runs).
fn scenario(seed: u64) -> String {
    support::block_on(seed, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(disk).collect();
        let mut ctls = Vec::new();
        for id in 0..3u64 {
            ctls.push(start(&net, &disks[id as usize], id).await);
        }
        let mut links = Vec::new();
        let mut stops = Vec::new();
        for b in 0..3 {
            let (l, s) = link(&net, b, 0);
            links.push(l);
            stops.push(s);
        }
        wait_image(&links[0], "3 live brokers", |i| i.live_brokers() == vec![0, 1, 2]).await;
        let mut story = Vec::new();

        // CreatePartitions: 2 -> 5, every new partition with 3 distinct replicas in sync.
        let id = links[0].create_topic("grow", 2, 3).await.expect("created");
        assert_eq!(links[1].create_partitions("grow", 5).await, Ok(id));
        let img = links[1].metadata().borrow().clone();
        let t = &img.topics[&id];
        assert_eq!(t.partitions.len(), 5);
        for p in &t.partitions {
            assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{p:?}");
            assert_eq!((p.isr.clone(), p.leader), (p.replicas.clone(), p.replicas[0]));
        }
        story
            .push(format!("grown {:?}", t.partitions.iter().map(|p| p.leader).collect::<Vec<_>>()));
        assert!(matches!(
            links[1].create_partitions("grow", 4).await,
            Err(LinkError::Controller(ControllerError::InvalidPartitions(_)))
        ));
        assert!(matches!(
            links[1].create_partitions("nope", 4).await,
            Err(LinkError::Controller(ControllerError::UnknownTopicOrPartition))
        ));

        // A manual assignment: partition 0 on [1, 0, 2], partition 1 on [2, 1, 0].
        let id = links[2]
            .create_topic_assigned("placed", vec![vec![1, 0, 2], vec![2, 1, 0]], BTreeMap::new())
            .await
            .expect("created as assigned");
        let img = links[2].metadata().borrow().clone();
        let placed: Vec<_> =
            img.topics[&id].partitions.iter().map(|p| (p.replicas.clone(), p.leader)).collect();
        assert_eq!(placed, vec![(vec![1, 0, 2], 1), (vec![2, 1, 0], 2)]);
        // With topic configs: they commit with the topic.
        let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        links[2]
            .create_topic_assigned("placed-cfg", vec![vec![2, 0, 1]], configs.clone())
            .await
            .expect("created as assigned, with configs");
        let img = links[2].metadata().borrow().clone();
        assert_eq!(img.topic_config_map("placed-cfg"), configs);
        assert!(matches!(
            links[2].create_topic_assigned("bad", vec![vec![0, 7]], BTreeMap::new()).await,
            Err(LinkError::Controller(ControllerError::InvalidReplicaAssignment(_)))
        ));

        // Preferred elections of placed-0 (preferred: broker 1).
        let ask = vec![("placed".to_string(), 0), ("placed".to_string(), 9)];
        assert_eq!(
            links[0].elect_preferred(ask.clone()).await,
            Ok(vec![ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION])
        );
        // Broker 1 stops heartbeating: fenced, broker 0 leads placed-0 and 1 leaves the ISR.
        let _ = stops[1].send(true);
        wait_image(&links[0], "broker 1 fenced", |i| i.brokers[&1].fenced).await;
        let p = links[0].metadata().borrow().partition(id, 0).cloned().unwrap();
        assert_eq!((p.leader, p.isr.clone()), (0, vec![0, 2]));
        // Broker 1 comes back (a new process): live, but out of the ISR until the leader adds it.
        let (l1, s1) = link(&net, 1, 1);
        links[1] = l1;
        stops[1] = s1;
        wait_image(&links[0], "broker 1 back", |i| i.is_live(1)).await;
        assert_eq!(
            links[0].elect_preferred(ask[..1].to_vec()).await,
            Ok(vec![PREFERRED_LEADER_NOT_AVAILABLE])
        );
        let p = links[0].metadata().borrow().partition(id, 0).cloned().unwrap();
        let req = AlterPartitionRequest {
            broker_id: 0,
            broker_epoch: links[0].broker_epoch(),
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![0, 1, 2],
        };
        links[0].alter_partition(req).await.expect("broker 1 back in sync");
        assert_eq!(links[2].elect_preferred(ask[..1].to_vec()).await, Ok(vec![NONE]));
        let after = links[2].metadata().borrow().partition(id, 0).cloned().unwrap();
        assert_eq!(after.leader, 1, "the preferred replica leads again");
        assert!(after.leader_epoch > p.leader_epoch, "{p:?} -> {after:?}");
        assert_eq!(after.isr, vec![1, 0, 2]);
        assert_eq!(
            links[2].elect_preferred(ask[..1].to_vec()).await,
            Ok(vec![ELECTION_NOT_NEEDED])
        );
        story.push(format!("elected {after:?}"));
        for (_, s) in &ctls {
            let _ = s.send(true);
        }
        story.join("; ")
    })
}

#[test]
fn partitions_assignments_and_preferred_elections() {
    let first = scenario(13);
    assert_eq!(scenario(13), first, "same seed, same story");
}
