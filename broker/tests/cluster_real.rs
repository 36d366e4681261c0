//! Three `broker serve` processes in combined mode (broker + controller) on loopback: they form
//! a controller quorum, Metadata shows 3 brokers, CreateTopics with RF 3 gives 3 replicas and a
//! leader per partition, Produce at a non-leader answers NOT_LEADER_OR_FOLLOWER, and a killed
//! active controller is replaced (the time is printed with `--nocapture`). Real mode only.
#![cfg(not(madsim))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod support;
use support::client::call_blocking as call;
use support::kafka::produce_req;
use support::process::{free_ports, wait_for, BIN};

struct Node {
    child: Child,
    addr: String,
    /// stderr lines with the time they were read.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Set once stderr reached its end (the process exited): `log` holds every line it wrote.
    log_done: Arc<AtomicBool>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metadata(addr: &str) -> std::io::Result<MetadataResponse> {
    let mut r = MetadataRequest::default();
    r.topics = None;
    call(addr, ApiKey::Metadata, 12, &r)
}

/// The node whose latest quorum-state line says it leads, with that line's term.
fn leader_of(nodes: &[Option<Node>]) -> Option<(usize, u64)> {
    let mut best = None;
    for (i, n) in nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        let log = n.log.lock().unwrap();
        let Some((_, line)) = log.iter().rev().find(|(_, l)| l.contains("controller quorum state"))
        else {
            continue;
        };
        if line.contains("role=Leader") {
            let term = line
                .split("term=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if best.is_none_or(|(_, t)| term > t) {
                best = Some((i, term));
            }
        }
    }
    best
}

fn produce(addr: &str, topic: &str, partition: i32) -> i16 {
    let mut b = records::BatchBuilder::new(BytesMut::new(), records::Compression::None, 1 << 20);
    b.append(1, Some(b"k"), Some(b"v"), &[]).unwrap();
    let r = produce_req(topic, partition, b.finish().unwrap().freeze(), 1);
    let resp: ProduceResponse = call(addr, ApiKey::Produce, 9, &r).unwrap();
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn three_processes_form_a_quorum_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6);
    let quorum =
        (0..3).map(|i| format!("{i}@127.0.0.1:{}", ports[3 + i])).collect::<Vec<_>>().join(",");
    let spawn = |i: usize| -> Node {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", ports[i]), "--data-dir"])
            .arg(dir.path().join(format!("n{i}")))
            .args([
                "--node-id",
                &i.to_string(),
                "--controller-listen",
                &format!("127.0.0.1:{}", ports[3 + i]),
                "--controller-quorum",
                &quorum,
            ])
            .args([
                "--override",
                "broker.heartbeat.interval.ms=200",
                "--override",
                "broker.session.timeout.ms=2000",
            ])
            .args([
                "--override",
                "controller.quorum.fetch.timeout.ms=500",
                "--override",
                "controller.quorum.election.timeout.ms=500",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_done = Arc::new(AtomicBool::new(false));
        let (err, l2, done) = (child.stderr.take().unwrap(), log.clone(), log_done.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push((Instant::now(), line));
            }
            done.store(true, Ordering::Release);
        });
        Node { child, addr: format!("127.0.0.1:{}", ports[i]), log, log_done }
    };
    let t0 = Instant::now();
    let mut nodes: Vec<Option<Node>> = (0..3).map(|i| Some(spawn(i))).collect();

    // The quorum forms and every broker registers: Metadata from any node lists all three.
    for n in nodes.iter().flatten() {
        let md = wait_for("3 brokers in Metadata", Duration::from_secs(30), || {
            metadata(&n.addr).ok().filter(|m| m.brokers.len() == 3)
        });
        let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2]);
        assert!(md
            .brokers
            .iter()
            .all(|b| b.host.as_str() == "127.0.0.1" && ports[..3].contains(&(b.port as u16))));
    }
    println!("quorum formed and 3 brokers registered after {} ms", t0.elapsed().as_millis());

    // CreateTopics with RF 3 at broker 1 (forwarded to the active controller).
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = TopicName(StrBytes::from_static_str("orders"));
    ct.num_partitions = 3;
    ct.replication_factor = 3;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![ct];
    req.timeout_ms = 10_000;
    let addr1 = nodes[1].as_ref().unwrap().addr.clone();
    let resp: CreateTopicsResponse = call(&addr1, ApiKey::CreateTopics, 7, &req).unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    assert_eq!(resp.topics[0].replication_factor, 3);
    let again: CreateTopicsResponse = call(&addr1, ApiKey::CreateTopics, 7, &req).unwrap();
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    let addr0 = nodes[0].as_ref().unwrap().addr.clone();
    let md = wait_for("orders in broker 0's Metadata", Duration::from_secs(10), || {
        metadata(&addr0).ok().filter(|m| !m.topics.is_empty())
    });
    let t = &md.topics[0];
    assert_eq!(t.partitions.len(), 3);
    for p in &t.partitions {
        let mut r: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
        r.sort();
        assert_eq!(r, vec![0, 1, 2]);
        assert_eq!(p.isr_nodes.len(), 3);
        assert!((0..3).contains(&p.leader_id.0));
    }
    // The leader takes the write; another broker refuses it with NOT_LEADER_OR_FOLLOWER.
    // Metadata may name the leader before that broker has applied the change from the metadata
    // log: until then it answers UNKNOWN_TOPIC_OR_PARTITION (3) or NOT_LEADER_OR_FOLLOWER (6),
    // which clients retry; the wait ends at the first other answer, which must be 0.
    let p0_leader =
        t.partitions.iter().find(|p| p.partition_index == 0).unwrap().leader_id.0 as usize;
    let leader_addr = nodes[p0_leader].as_ref().unwrap().addr.clone();
    let other_addr = nodes[(p0_leader + 1) % 3].as_ref().unwrap().addr.clone();
    assert_eq!(
        wait_for("produce at the leader", Duration::from_secs(10), || Some(produce(
            &leader_addr,
            "orders",
            0
        ))
        .filter(|c| *c != 3 && *c != 6)),
        0
    );
    assert_eq!(produce(&other_addr, "orders", 0), 6);

    let before: Vec<(i32, i32, i32)> =
        t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch)).collect();
    // Kill the active controller (SIGKILL); the other two elect a new one.
    let (old, old_term) =
        wait_for("a controller leader", Duration::from_secs(10), || leader_of(&nodes));
    let killed_at = Instant::now();
    nodes[old] = None;
    let (new, new_term) = wait_for("a new controller leader", Duration::from_secs(20), || {
        leader_of(&nodes).filter(|(i, t)| *i != old && *t > old_term)
    });
    let line_at = nodes[new]
        .as_ref()
        .unwrap()
        .log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, l)| l.contains("role=Leader"))
        .map(|(t, _)| *t)
        .unwrap();
    println!(
        "real failover: controller {old} killed, {new} leads term {new_term} after {} ms",
        line_at.saturating_duration_since(killed_at).as_millis()
    );
    // The killed broker is fenced after its session and the survivors still create topics.
    let survivor = nodes[new].as_ref().unwrap().addr.clone();
    wait_for("2 live brokers", Duration::from_secs(20), || {
        metadata(&survivor).ok().filter(|m| m.brokers.len() == 2)
    });
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = TopicName(StrBytes::from_static_str("after-failover"));
    ct.num_partitions = 1;
    ct.replication_factor = 2;
    req.topics = vec![ct];
    let resp: CreateTopicsResponse = call(&survivor, ApiKey::CreateTopics, 7, &req).unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    let md = metadata(&survivor).unwrap();
    for p in md.topics.iter().flat_map(|t| t.partitions.iter()) {
        assert_ne!(p.leader_id.0, old as i32, "a fenced broker still leads {p:?}");
    }
    // Partitions the killed broker led moved to a survivor with a higher leader epoch; the
    // others kept leader and epoch.
    let orders =
        md.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "orders")).unwrap();
    for (index, leader, epoch) in before {
        let p = orders.partitions.iter().find(|p| p.partition_index == index).unwrap();
        if leader == old as i32 {
            assert!(p.leader_epoch > epoch && p.leader_id.0 != leader, "{p:?}");
        } else {
            assert_eq!((p.leader_id.0, p.leader_epoch), (leader, epoch));
        }
        assert!(
            !p.isr_nodes.iter().any(|b| b.0 == old as i32),
            "the fenced broker left the ISR: {p:?}"
        );
    }

    // SIGTERM a survivor: a controlled shutdown (fenced by the controller at once, while its own
    // controller still votes), then a clean exit.
    let other = (0..3).find(|i| *i != old && *i != new).unwrap();
    let n = nodes[other].as_mut().unwrap();
    assert!(Command::new("kill")
        .args(["-TERM", &n.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status =
        wait_for("exit after SIGTERM", Duration::from_secs(30), || n.child.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    // Every line it wrote before exiting has been read once its stderr reaches its end.
    wait_for("the end of the exited node's stderr", Duration::from_secs(10), || {
        n.log_done.load(Ordering::Acquire).then_some(())
    });
    assert!(
        n.log.lock().unwrap().iter().any(|(_, l)| l.contains("controlled shutdown: fenced")),
        "no controlled shutdown"
    );
}

/// A stock KRaft `server.properties` (one voter, `process.roles=broker,controller`, a
/// CONTROLLER listener) runs a one-node quorum: the broker registers with itself, creates
/// topics through its controller and takes writes as the leader.
#[test]
fn single_voter_from_a_kraft_properties_file() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{c}\nlisteners=PLAINTEXT://:{p},CONTROLLER://127.0.0.1:{c}\ncontroller.listener.names=CONTROLLER\nbroker.heartbeat.interval.ms=100\n",
            p = ports[0],
            c = ports[1]
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", ports[0]), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&props)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node {
        child,
        addr: format!("127.0.0.1:{}", ports[0]),
        log: Arc::new(Mutex::new(Vec::new())),
        log_done: Arc::new(AtomicBool::new(true)),
    };
    let md = wait_for("1 broker", Duration::from_secs(30), || {
        metadata(&node.addr).ok().filter(|m| m.brokers.len() == 1)
    });
    assert_eq!(md.brokers[0].node_id.0, 1);
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = TopicName(StrBytes::from_static_str("solo"));
    ct.num_partitions = 2;
    ct.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![ct];
    req.timeout_ms = 10_000;
    let resp: CreateTopicsResponse = call(&node.addr, ApiKey::CreateTopics, 7, &req).unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    // CreateTopics answers once the controller has committed the topic; the broker side learns
    // its leadership from the metadata log a moment later (NOT_LEADER_OR_FOLLOWER until then,
    // which clients retry, as with Kafka). Anything else is a failure.
    wait_for("a produce to solo-1", Duration::from_secs(10), || {
        match produce(&node.addr, "solo", 1) {
            0 => Some(()),
            6 => None,
            e => panic!("produce to solo-1: error {e}"),
        }
    });
    let md = metadata(&node.addr).unwrap();
    assert_eq!(md.topics[0].partitions.len(), 2);
    assert!(md.topics[0].partitions.iter().all(|p| p.leader_id.0 == 1 && p.leader_epoch == 0));
}
