//! The controller quorum under madsim on the simulated network and disks
//! (`cargo sim-test -p broker --test controller_sim -- --nocapture` prints the measured times):
//! three controllers elect a leader; brokers register, are unfenced, and one is fenced once its
//! heartbeats stop; CreateTopics with RF 3 yields partitions of 3 replicas with live leaders; a
//! killed leader (host crash + power loss) is replaced, the brokers follow the new leader, and the
//! old one restarts from its disk and catches up.
#![cfg(madsim)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::controller::link::{ControllerLink, LinkConfig, RpcLink};
use broker::controller::node::{self, ControllerHandle};
use broker::controller::rpc::QuorumConfig;
use cluster::metadata::{Endpoint, MetadataImage};
use cluster::raft::{NodeId, Role};
use disk_model::clock::Clock;
use disk_model::{DeviceProfile, SimDisk, SimDiskConfig};
use net_model::sim::SimNetConfig;
use net_model::SimNet;
use tokio::sync::watch;
use tokio::time::Instant;

const SESSION_MS: u64 = 1_000;

fn voters() -> BTreeMap<NodeId, String> {
    (0..3).map(|i| (i, format!("c{i}:9093"))).collect()
}

fn quorum(id: NodeId) -> QuorumConfig {
    let mut q = QuorumConfig::new(id, voters());
    q.tick_ms = 10;
    q.fetch_timeout_ms = 300;
    q.election_timeout_ms = 300;
    q.controller_tick_ms = 100;
    q.broker_session_timeout_ms = SESSION_MS;
    q.request_timeout_ms = 2_000;
    q.seed = 42;
    q
}

struct Ctl {
    handle: ControllerHandle,
    stop: watch::Sender<bool>,
}

async fn start(net: &SimNet, disk: &SimDisk, id: NodeId) -> Ctl {
    start_with(net, disk, quorum(id)).await
}

async fn start_with(net: &SimNet, disk: &SimDisk, q: QuorumConfig) -> Ctl {
    let (stop, rx) = watch::channel(false);
    let host = format!("c{}", q.node_id);
    let handle = node::start(
        q,
        net.host(&host),
        Arc::new(disk.clone()),
        Path::new(""),
        &format!("{host}:9093"),
        rx,
    )
    .await
    .expect("controller starts");
    Ctl { handle, stop }
}

/// Waits until the running controllers agree on one leader; returns it and the time it took.
async fn wait_leader(ctls: &BTreeMap<NodeId, Ctl>, within: Duration) -> (NodeId, Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        let st: Vec<_> = ctls.values().map(|c| c.handle.status.borrow().clone()).collect();
        let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
        if let [l] = leaders[..] {
            if st.iter().all(|s| s.term == l.term && s.leader == l.leader) && l.commit > 0 {
                return (l.leader.expect("a leader knows itself"), t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "no agreed leader within {within:?}: {:?}",
        ctls.values().map(|c| c.handle.status.borrow().clone()).collect::<Vec<_>>()
    );
}

async fn wait_image(
    link: &RpcLink,
    what: &str,
    within: Duration,
    ok: impl Fn(&MetadataImage) -> bool,
) -> Duration {
    let t0 = Instant::now();
    let mut rx = link.metadata();
    while t0.elapsed() < within {
        if ok(&rx.borrow_and_update()) {
            return t0.elapsed();
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), rx.changed()).await;
    }
    panic!("{what}: not within {within:?}; image {:?}", link.metadata().borrow());
}

/// Starts the links of brokers b0..b2 (each config tuned by `tune`); returns them and the
/// senders that stop them.
fn spawn_links(
    net: &SimNet,
    tune: impl Fn(&mut LinkConfig),
) -> (Vec<Arc<RpcLink>>, Vec<watch::Sender<bool>>) {
    (0..3i32)
        .map(|b| {
            let mut cfg =
                LinkConfig::new(b, Endpoint { host: format!("b{b}"), port: 9092 }, voters());
            tune(&mut cfg);
            let link = RpcLink::new(cfg, net.host(&format!("b{b}")));
            let (tx, rx) = watch::channel(false);
            link.spawn(rx);
            (link, tx)
        })
        .unzip()
}

fn disk(seed: u64) -> SimDisk {
    SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), seed), Clock::runtime())
}

#[test]
fn quorum_elects_fences_creates_topics_and_fails_over() {
    let first = scenario(7);
    // Same seed, same story to the nanosecond: the quorum's IO is deterministic.
    assert_eq!(scenario(7), first);
    println!("{first}");
}

/// Runs the story; returns the measured times (to compare runs).
fn scenario(seed: u64) -> String {
    support::block_on(seed, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(disk).collect();
        let mut ctls = BTreeMap::new();
        for id in 0..3u64 {
            ctls.insert(id, start(&net, &disks[id as usize], id).await);
        }
        let (first, took) = wait_leader(&ctls, Duration::from_secs(5)).await;
        println!("initial election: leader {first} after {} ms (simulated)", took.as_millis());
        assert!(took < Duration::from_millis(1_500), "election took {took:?}");

        // Three brokers register and are unfenced by their first heartbeat.
        let (links, link_stops) = spawn_links(&net, |cfg| {
            cfg.heartbeat_interval_ms = 100;
            cfg.request_timeout_ms = 3_000;
        });
        for l in &links {
            wait_image(l, "3 live brokers", Duration::from_secs(5), |i| {
                i.live_brokers() == vec![0, 1, 2]
            })
            .await;
            assert!(l.broker_epoch() > 0);
        }
        assert_eq!(
            links[1].metadata().borrow().brokers[&1].endpoint,
            Endpoint { host: "b1".into(), port: 9092 }
        );

        // CreateTopics with RF 3: every partition has 3 distinct replicas, a live leader in the
        // ISR, and leadership spreads over the brokers.
        let id = links[0].create_topic("orders", 6, 3).await.expect("topic created");
        let img = links[0].metadata().borrow().clone();
        let t = &img.topics[&id];
        assert_eq!((t.name.as_str(), t.partitions.len()), ("orders", 6));
        for p in &t.partitions {
            assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{p:?}");
            assert_eq!(p.isr, p.replicas);
            assert!(img.is_live(p.leader) && p.leader == p.replicas[0], "{p:?}");
        }
        assert_eq!(
            t.partitions.iter().map(|p| p.leader).collect::<BTreeSet<_>>(),
            BTreeSet::from([0, 1, 2])
        );
        assert!(matches!(
            links[1].create_topic("orders", 1, 1).await,
            Err(broker::controller::link::LinkError::Controller(
                cluster::metadata::ControllerError::TopicAlreadyExists
            ))
        ));
        assert!(links[1].create_topic("too-wide", 1, 4).await.is_err(), "RF 4 with 3 brokers");

        // Kill the leader: host crash and power loss. The other two elect a new one.
        let old = ctls.remove(&first).expect("leader is running");
        let _ = old.stop.send(true);
        net.crash(&format!("c{first}"));
        disks[first as usize].power_loss();
        let old_term = old.handle.status.borrow().term;
        let (second, failover) = wait_leader(&ctls, Duration::from_secs(5)).await;
        println!(
            "failover: leader {first} killed, leader {second} elected after {} ms (simulated)",
            failover.as_millis()
        );
        assert_ne!(second, first);
        assert!(ctls[&second].handle.status.borrow().term > old_term);
        // fetch timeout (300) + spread (300) + a pre-vote and a vote round trip.
        assert!(failover < Duration::from_millis(1_000), "failover took {failover:?}");

        // The brokers follow the new leader: a request succeeds, and heartbeats keep them live.
        let id2 = links[2]
            .create_topic("after-failover", 2, 3)
            .await
            .expect("created via the new leader");
        wait_image(&links[0], "new topic seen by broker 0", Duration::from_secs(3), |i| {
            i.topics.contains_key(&id2)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2 * SESSION_MS)).await;
        assert_eq!(
            links[0].metadata().borrow().live_brokers(),
            vec![0, 1, 2],
            "nobody fenced across the failover"
        );

        // Broker 2 stops heartbeating: fenced after its session; it leads nothing afterwards and
        // leaves every ISR (it is never the last member here).
        let _ = link_stops[2].send(true);
        let fenced_after = wait_image(&links[0], "broker 2 fenced", Duration::from_secs(5), |i| {
            i.brokers[&2].fenced
        })
        .await;
        println!(
            "broker 2 fenced {} ms after its heartbeats stopped (session {SESSION_MS} ms)",
            fenced_after.as_millis()
        );
        assert!(
            fenced_after >= Duration::from_millis(SESSION_MS) - Duration::from_millis(200),
            "fenced too early: {fenced_after:?}"
        );
        let img = links[0].metadata().borrow().clone();
        for t in img.topics.values() {
            for p in &t.partitions {
                assert!(p.leader != 2 && !p.isr.contains(&2) && img.is_live(p.leader), "{p:?}");
            }
        }

        // The killed controller restarts from its disk and catches up with the quorum.
        net.restart(&format!("c{first}"));
        ctls.insert(first, start(&net, &disks[first as usize], first).await);
        // It recovered its term (and vote) from its disk despite the power loss.
        assert!(
            ctls[&first].handle.status.borrow().term >= old_term,
            "restarted controller forgot its term"
        );
        let t0 = Instant::now();
        loop {
            let leader_img = ctls[&second].handle.image.borrow().clone();
            let back_img = ctls[&first].handle.image.borrow().clone();
            let (ls, bs) = (
                ctls[&second].handle.status.borrow().clone(),
                ctls[&first].handle.status.borrow().clone(),
            );
            if bs.applied == ls.applied && leader_img == back_img && bs.leader == Some(second) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "restarted controller did not catch up: {bs:?} vs {ls:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("restarted controller {first} caught up in {} ms", t0.elapsed().as_millis());
        let caught_up = t0.elapsed();
        for c in ctls.values() {
            let _ = c.stop.send(true);
        }
        format!("leaders {first}->{second}, election {took:?}, failover {failover:?}, fenced after {fenced_after:?}, caught up {caught_up:?}")
    })
}

/// Waits until the controllers in `ids` agree on a leader among them.
async fn wait_leader_among(
    ctls: &BTreeMap<NodeId, Ctl>,
    ids: &[NodeId],
    within: Duration,
) -> (NodeId, u64, Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        let st: Vec<_> = ids.iter().map(|i| ctls[i].handle.status.borrow().clone()).collect();
        if let Some(l) = st.iter().find(|s| s.role == Role::Leader) {
            if st.iter().all(|s| s.term == l.term && s.leader == l.leader) {
                return (l.leader.expect("a leader knows itself"), l.term, t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{ids:?} agreed on no leader within {within:?}");
}

#[test]
fn alter_partition_epochs_and_an_isolated_leader() {
    support::block_on(11, async {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(disk).collect();
        let mut ctls = BTreeMap::new();
        for id in 0..3u64 {
            ctls.insert(id, start(&net, &disks[id as usize], id).await);
        }
        let (leader, _) = wait_leader(&ctls, Duration::from_secs(5)).await;
        // Slow heartbeats, fast metadata pulls: propagation must not wait for a heartbeat.
        let (links, stops) = spawn_links(&net, |cfg| {
            cfg.heartbeat_interval_ms = 400;
            cfg.metadata_poll_ms = 20;
            cfg.request_timeout_ms = 3_000;
        });
        wait_image(&links[0], "3 live brokers", Duration::from_secs(5), |i| {
            i.live_brokers() == vec![0, 1, 2]
        })
        .await;
        let id = links[0].create_topic("t", 1, 3).await.unwrap();
        let seen = wait_image(&links[1], "topic reaches broker 1", Duration::from_secs(2), |i| {
            i.topics.contains_key(&id)
        })
        .await;
        assert!(seen <= Duration::from_millis(60), "metadata took {seen:?} to propagate");
        let p = links[0].metadata().borrow().partition(id, 0).cloned().unwrap();
        let l = p.leader as usize;
        let follower = *p.replicas.iter().find(|r| **r != p.leader).unwrap();

        // The partition leader shrinks the ISR (KIP-497): partition epoch +1, leader epoch kept.
        let req = cluster::metadata::AlterPartitionRequest {
            broker_id: p.leader,
            broker_epoch: links[l].broker_epoch(),
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: p.isr.iter().copied().filter(|r| *r != follower).collect(),
        };
        let after = links[l].alter_partition(req.clone()).await.unwrap();
        assert_eq!(
            (after.partition_epoch, after.leader_epoch, after.isr.len()),
            (p.partition_epoch + 1, p.leader_epoch, 2)
        );
        assert_eq!(links[l].metadata().borrow().partition(id, 0), Some(&after));
        // A stale partition epoch, and a request from a non-leader, are refused.
        let stale = links[l].alter_partition(req.clone()).await;
        assert_eq!(
            stale,
            Err(broker::controller::link::LinkError::Controller(
                cluster::metadata::ControllerError::InvalidUpdateVersion
            ))
        );
        let f = follower as usize;
        let not_leader = cluster::metadata::AlterPartitionRequest {
            broker_id: follower,
            broker_epoch: links[f].broker_epoch(),
            partition_epoch: after.partition_epoch,
            ..req
        };
        assert_eq!(
            links[f].alter_partition(not_leader).await,
            Err(broker::controller::link::LinkError::Controller(
                cluster::metadata::ControllerError::FencedLeaderEpoch
            ))
        );

        // Isolate the controller leader from everyone: the majority elects another; the old one
        // steps down (check-quorum). Healed, it rejoins as a follower without forcing a new term
        // (pre-vote), and nobody was fenced meanwhile.
        let others: Vec<NodeId> = (0..3).filter(|i| *i != leader).collect();
        let isolated = format!("c{leader}");
        let rest: Vec<String> =
            others.iter().map(|i| format!("c{i}")).chain((0..3).map(|b| format!("b{b}"))).collect();
        let rest_refs: Vec<&str> = rest.iter().map(String::as_str).collect();
        net.partition_groups(&[&[isolated.as_str()], &rest_refs]);
        let (new, term, took) = wait_leader_among(&ctls, &others, Duration::from_secs(5)).await;
        println!(
            "isolated leader {leader}: {new} leads term {term} after {} ms (simulated)",
            took.as_millis()
        );
        assert_ne!(new, leader);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_ne!(
            ctls[&leader].handle.status.borrow().role,
            Role::Leader,
            "an isolated leader steps down"
        );
        net.heal();
        let (back, term_after, _) =
            wait_leader_among(&ctls, &[0, 1, 2], Duration::from_secs(5)).await;
        assert_eq!((back, term_after), (new, term), "the healed node disrupted the leader");
        tokio::time::sleep(Duration::from_millis(2 * SESSION_MS)).await;
        assert_eq!(links[0].metadata().borrow().live_brokers(), vec![0, 1, 2]);

        // Controlled shutdown fences at once (well within a session) and moves leadership.
        let t0 = Instant::now();
        links[l].controlled_shutdown().await.unwrap();
        let took = wait_image(
            &links[(l + 1) % 3],
            "controlled shutdown fences",
            Duration::from_secs(2),
            |i| i.brokers[&(l as i32)].fenced,
        )
        .await;
        assert!(
            t0.elapsed() < Duration::from_millis(SESSION_MS / 2),
            "fencing took {:?}",
            t0.elapsed()
        );
        let p = links[(l + 1) % 3].metadata().borrow().partition(id, 0).cloned().unwrap();
        assert!(p.leader != l as i32 && p.leader_epoch > after.leader_epoch, "{p:?}");
        tokio::time::sleep(Duration::from_millis(SESSION_MS)).await;
        assert!(
            links[(l + 1) % 3].metadata().borrow().brokers[&(l as i32)].fenced,
            "a stopped broker stays fenced"
        );
        println!("controlled shutdown fenced broker {l} in {} ms", took.as_millis());
        for c in ctls.values() {
            let _ = c.stop.send(true);
        }
        for s in stops {
            let _ = s.send(true);
        }
    });
}

/// `loglab.unsafe.controller.epoch.fencing.disable` (the museum's zombie controller): the
/// controller leader and the partition leader's broker are cut off together from the rest; the
/// partition leader shrinks the ISR to itself at once. Safe, the zombie cannot commit that, so the
/// broker gets no answer but an error, and the real quorum's ISR keeps all three. Unsafe, the
/// zombie answers the shrink it merely appended: the broker is told its ISR is itself alone,
/// which no quorum agreed to. Red if the switch did nothing (the unsafe run would get an error).
#[test]
fn a_zombie_controller_answers_an_isr_shrink_only_with_the_switch() {
    for unsafe_on in [false, true] {
        let (answer, isr_committed) = zombie_shrink(unsafe_on);
        assert_eq!(isr_committed, 3, "unsafe {unsafe_on}: the quorum never shrank the ISR");
        match answer {
            Ok(isr) => assert!(unsafe_on && isr == 1, "unsafe {unsafe_on}: answered ISR {isr}"),
            Err(e) => assert!(!unsafe_on, "unsafe {unsafe_on}: the zombie refused: {e}"),
        }
    }
}

/// Runs the cut; returns the zombie's answer to the ISR shrink (the ISR size it names) and the
/// ISR size the majority's brokers see afterwards.
fn zombie_shrink(unsafe_on: bool) -> (Result<usize, String>, usize) {
    support::block_on(13, async move {
        let net = SimNet::new(SimNetConfig::default());
        let disks: Vec<SimDisk> = (0..3).map(disk).collect();
        let mut ctls = BTreeMap::new();
        for id in 0..3u64 {
            let mut q = quorum(id);
            q.unsafe_answer_uncommitted = unsafe_on;
            // Nobody is fenced during the test: the ISR changes only by the shrink asked for.
            q.broker_session_timeout_ms = 10_000;
            ctls.insert(id, start_with(&net, &disks[id as usize], q).await);
        }
        let (leader, _) = wait_leader(&ctls, Duration::from_secs(5)).await;
        let (links, stops) = spawn_links(&net, |cfg| {
            cfg.heartbeat_interval_ms = 100;
            cfg.metadata_poll_ms = 20;
            cfg.request_timeout_ms = 1_500;
        });
        wait_image(&links[0], "3 live brokers", Duration::from_secs(5), |i| {
            i.live_brokers() == vec![0, 1, 2]
        })
        .await;
        let id = links[0].create_topic("t", 1, 3).await.unwrap();
        wait_image(&links[1], "topic reaches broker 1", Duration::from_secs(2), |i| {
            i.topics.contains_key(&id)
        })
        .await;
        let p = links[0].metadata().borrow().partition(id, 0).cloned().unwrap();
        let l = p.leader as usize;
        // The controller leader and the partition leader's broker on one side, the rest apart.
        let zombie_side = [format!("c{leader}"), format!("b{l}")];
        let rest: Vec<String> = (0..3u64)
            .filter(|i| *i != leader)
            .map(|i| format!("c{i}"))
            .chain((0..3).filter(|b| *b != l).map(|b| format!("b{b}")))
            .collect();
        let side: Vec<&str> = zombie_side.iter().map(String::as_str).collect();
        let rest_refs: Vec<&str> = rest.iter().map(String::as_str).collect();
        net.partition_groups(&[&side, &rest_refs]);
        let req = cluster::metadata::AlterPartitionRequest {
            broker_id: p.leader,
            broker_epoch: links[l].broker_epoch(),
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![p.leader],
        };
        let answer =
            links[l].alter_partition(req).await.map(|a| a.isr.len()).map_err(|e| e.to_string());
        let others: Vec<NodeId> = (0..3).filter(|i| *i != leader).collect();
        wait_leader_among(&ctls, &others, Duration::from_secs(5)).await;
        let watcher = &links[(l + 1) % 3];
        tokio::time::sleep(Duration::from_millis(500)).await;
        let isr = watcher.metadata().borrow().partition(id, 0).map_or(0, |q| q.isr.len());
        for c in ctls.values() {
            let _ = c.stop.send(true);
        }
        for s in stops {
            let _ = s.send(true);
        }
        (answer, isr)
    })
}
