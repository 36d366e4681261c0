//! Consumer groups end to end. `real`: against the broker binary over loopback TCP — three
//! members split six partitions, a member leaving hands its partitions over without losing or
//! repeating a record (commit before revoke), commits survive a restart, stale generations cannot
//! commit, a member that stops polling is dropped and its partitions are lost, static membership,
//! the cooperative protocol, a group shared with kcat (librdkafka; the test fails, naming kcat,
//! when kcat is not installed: `scripts/test.sh` installs it). `inproc`: the broker in-process
//! over an in-memory transport, in both worlds (under madsim: virtual time), with a
//! group-exclusive-per-generation check. Rebalance times are bounded, not just printed: a member
//! that leaves (LeaveGroup) is replaced well before the session timeout that would otherwise
//! evict it (`--nocapture` prints the times).

#[cfg(not(madsim))]
mod common;

#[cfg(not(madsim))]
mod real {
    use super::common;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use client::{
        Admin, AdminConfig, Conn, ConnConfig, Consumer, ConsumerConfig, ConsumerError, GroupError,
        NewTopic, Producer, ProducerConfig, ProducerRecord, RebalanceEvent, TopicPartition,
    };
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use net_model::tcp::TcpNetwork;
    use tokio::sync::{mpsc, watch};
    use tokio::time::Instant;

    /// Broker overrides: no initial rebalance delay (tests would wait 3 s per new group).
    const BROKER: &[&str] = &["group.initial.rebalance.delay.ms=0"];

    fn net() -> Arc<dyn net_model::Network> {
        Arc::new(TcpNetwork::default())
    }

    async fn create(addr: &str, topic: &str, partitions: i32) {
        Admin::new(
            AdminConfig { bootstrap_servers: vec![addr.to_string()], ..AdminConfig::default() },
            net(),
        )
        .create_topic(NewTopic::new(topic, partitions, 1))
        .await
        .unwrap();
    }

    /// `per_partition` records into every partition of `topic`, values `"{partition}-{i}"`.
    async fn produce(addr: &str, topic: &str, partitions: i32, per_partition: usize, first: usize) {
        let p = Producer::new(
            ProducerConfig::from_pairs([("bootstrap.servers", addr), ("linger.ms", "1")]).unwrap(),
            net(),
            7,
        );
        let mut futs = Vec::new();
        for part in 0..partitions {
            for i in first..first + per_partition {
                let mut r = ProducerRecord::new(topic, Bytes::from(format!("{part}-{i}")));
                r.partition = Some(part);
                futs.push(p.send(r).await.unwrap());
            }
        }
        p.flush().await;
        for f in futs {
            f.await.unwrap();
        }
        p.close().await;
    }

    fn consumer(addr: &str, group: &str, props: &[(&str, &str)]) -> Consumer {
        let mut pairs: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), addr.into()),
            ("group.id".into(), group.into()),
            ("fetch.max.wait.ms".into(), "50".into()),
            ("auto.offset.reset".into(), "earliest".into()),
            ("heartbeat.interval.ms".into(), "100".into()),
            ("session.timeout.ms".into(), "6000".into()),
        ];
        pairs.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Consumer::new(ConsumerConfig::from_pairs(pairs).unwrap(), net())
    }

    /// What every member task reports.
    #[derive(Debug, Default)]
    struct Seen {
        /// (partition, offset) → every member that read it.
        reads: BTreeMap<(i32, i64), Vec<usize>>,
        /// member → (generation, assignment) after its latest poll.
        state: BTreeMap<usize, (i32, Vec<TopicPartition>)>,
    }

    /// A member polling in its own task until told to stop, then closing (auto commit + leave).
    fn spawn_member(
        idx: usize,
        mut c: Consumer,
        topic: &str,
        seen: Arc<Mutex<Seen>>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Consumer> {
        c.subscribe([topic]).unwrap();
        tokio::spawn(async move {
            while !*stop.borrow_and_update() {
                let records = c.poll(Duration::from_millis(50)).await.unwrap();
                let mut s = seen.lock().unwrap();
                for r in &records {
                    s.reads.entry((r.partition, r.offset)).or_default().push(idx);
                }
                let g = c.group_metadata().unwrap();
                s.state.insert(idx, (g.generation_id, c.assignment()));
            }
            c.close().await;
            seen.lock().unwrap().state.remove(&idx);
            c
        })
    }

    /// Waits (bounded) until `ok` holds over the reports.
    async fn wait_for(seen: &Arc<Mutex<Seen>>, what: &str, ok: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ok(&seen.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                seen.lock().unwrap().state
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every live member in the same generation, `sizes` partitions each, together all `n`.
    fn settled(s: &Seen, members: &[usize], size: usize, n: i32) -> bool {
        let gens: BTreeSet<i32> =
            members.iter().filter_map(|m| s.state.get(m).map(|x| x.0)).collect();
        let all: BTreeSet<&TopicPartition> =
            members.iter().filter_map(|m| s.state.get(m)).flat_map(|x| x.1.iter()).collect();
        gens.len() == 1
            && members.iter().all(|m| s.state.get(m).is_some_and(|x| x.1.len() == size))
            && all.len() == n as usize
    }

    fn read_count(s: &Seen) -> usize {
        s.reads.len()
    }

    /// Slack for a JoinGroup/SyncGroup round over loopback on a loaded 2-core machine.
    const REJOIN_SLACK: Duration = Duration::from_secs(3);

    /// Three members share six partitions; member 2 leaves (close: commit, revoke, LeaveGroup) and
    /// the other two take three each without a record read twice or skipped. Returns the time from
    /// the leave to the settled two-member generation, which is bounded twice:
    /// - below `session - heartbeat`, the earliest a member that sent no LeaveGroup could be evicted
    ///   (its last heartbeat at most one interval before it stopped): a client that did not send the
    ///   LeaveGroup, or a broker that ignored it, fails here;
    /// - below `heartbeat` + [`REJOIN_SLACK`]: the survivors learn of the rebalance at their next
    ///   heartbeat (or poll) and rejoin at once.
    async fn three_members_then_one_leaves(
        strategy: &str,
        heartbeat_ms: u64,
        session_ms: u64,
    ) -> Duration {
        let b = common::start_broker(BROKER);
        let topic = format!("g6-{strategy}");
        create(&b.addr, &topic, 6).await;
        produce(&b.addr, &topic, 6, 50, 0).await;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for idx in 0..3 {
            let (tx, rx) = watch::channel(false);
            // Auto commit only at revocation and close: exactly what the hand-over relies on.
            let c = consumer(
                &b.addr,
                &format!("grp-{strategy}"),
                &[
                    ("partition.assignment.strategy", strategy),
                    ("enable.auto.commit", "true"),
                    ("auto.commit.interval.ms", "600000"),
                    ("heartbeat.interval.ms", &heartbeat_ms.to_string()),
                    ("session.timeout.ms", &session_ms.to_string()),
                ],
            );
            tasks.push(spawn_member(idx, c, &topic, Arc::clone(&seen), rx));
            stops.push(tx);
        }
        wait_for(&seen, "3 members with 2 partitions each", |s| settled(s, &[0, 1, 2], 2, 6)).await;
        wait_for(&seen, "the first 300 records", |s| read_count(s) == 300).await;

        // Member 2 leaves: it commits, revokes, sends LeaveGroup; the others take 3 each.
        let t0 = Instant::now();
        stops[2].send(true).unwrap();
        let c2 = tasks.pop().unwrap().await.unwrap();
        assert_eq!(c2.assignment(), vec![], "closed member owns nothing");
        wait_for(&seen, "2 members with 3 partitions each", |s| settled(s, &[0, 1], 3, 6)).await;
        let rebalance = t0.elapsed();
        let (heartbeat, session) =
            (Duration::from_millis(heartbeat_ms), Duration::from_millis(session_ms));
        assert!(
        rebalance < session - heartbeat,
        "{strategy}: the rebalance after a LeaveGroup took {rebalance:?}, as long as evicting a silent member \
         (session.timeout.ms {session:?}, heartbeat.interval.ms {heartbeat:?})"
    );
        assert!(
        rebalance < heartbeat + REJOIN_SLACK,
        "{strategy}: the rebalance after a LeaveGroup took {rebalance:?}, more than a heartbeat ({heartbeat:?}) plus {REJOIN_SLACK:?}"
    );

        produce(&b.addr, &topic, 6, 50, 50).await;
        wait_for(&seen, "all 600 records", |s| read_count(s) == 600).await;
        // A short quiet period: nothing is read twice later either.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for tx in &stops[..2] {
            tx.send(true).unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
        let s = seen.lock().unwrap();
        let dups: Vec<_> = s.reads.iter().filter(|(_, who)| who.len() > 1).collect();
        assert!(
            dups.is_empty(),
            "{strategy}: records read twice: {:?}",
            &dups[..dups.len().min(5)]
        );
        for p in 0..6 {
            for o in 0..100 {
                assert!(s.reads.contains_key(&(p, o)), "{strategy}: {p}/{o} never read");
            }
        }
        assert_eq!(s.reads.len(), 600);
        rebalance
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_three_members_share_six_partitions_and_hand_over_exactly_once() {
        let t = three_members_then_one_leaves("range", 100, 6000).await;
        eprintln!(
            "range: rebalance after a member left: {} ms (heartbeat.interval.ms=100)",
            t.as_millis()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cooperative_sticky_hands_over_exactly_once() {
        let t = three_members_then_one_leaves("cooperative-sticky", 100, 6000).await;
        eprintln!(
            "cooperative-sticky: rebalance after a member left: {} ms (heartbeat.interval.ms=100)",
            t.as_millis()
        );
    }

    /// With Kafka's defaults (`heartbeat.interval.ms` 3 s, `session.timeout.ms` 45 s) the survivors
    /// learn of the rebalance at their next heartbeat, long before a session timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebalance_after_a_leave_with_default_heartbeat_beats_the_session_timeout() {
        let t = three_members_then_one_leaves("roundrobin", 3000, 45_000).await;
        eprintln!(
            "roundrobin: rebalance after a member left: {} ms (heartbeat.interval.ms=3000)",
            t.as_millis()
        );
    }

    /// Polls until `n` records arrived (bounded).
    async fn consume_n(c: &mut Consumer, n: usize) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.len() < n && Instant::now() < deadline {
            for r in c.poll(Duration::from_millis(100)).await.unwrap() {
                out.push((r.partition, r.offset));
            }
        }
        out
    }

    #[tokio::test]
    async fn commits_survive_a_consumer_restart() {
        let b = common::start_broker(BROKER);
        create(&b.addr, "restart", 2).await;
        produce(&b.addr, "restart", 2, 10, 0).await;
        let props = [("enable.auto.commit", "false")];
        let mut a = consumer(&b.addr, "restart-g", &props);
        a.subscribe(["restart"]).unwrap();
        let got = consume_n(&mut a, 20).await;
        assert_eq!(got.len(), 20);
        a.commit_sync(None).await.unwrap();
        let committed = a
            .committed(&[TopicPartition::new("restart", 0), TopicPartition::new("restart", 1)])
            .await
            .unwrap();
        assert_eq!(committed.values().copied().collect::<Vec<_>>(), vec![Some(10), Some(10)]);
        a.close().await;

        produce(&b.addr, "restart", 2, 5, 10).await;
        let mut b2 = consumer(&b.addr, "restart-g", &props);
        b2.subscribe(["restart"]).unwrap();
        let mut got = consume_n(&mut b2, 10).await;
        got.sort();
        let want: Vec<(i32, i64)> = (0..2).flat_map(|p| (10..15).map(move |o| (p, o))).collect();
        assert_eq!(got, want, "the restarted member starts at the committed offsets");
        // Explicit offsets, async.
        let rx = b2
            .commit_async(Some([(TopicPartition::new("restart", 0), 12)].into_iter().collect()))
            .unwrap();
        rx.await.unwrap().unwrap();
        let c = b2.committed(&[TopicPartition::new("restart", 0)]).await.unwrap();
        assert_eq!(c[&TopicPartition::new("restart", 0)], Some(12));
        b2.close().await;
    }

    #[tokio::test]
    async fn stale_generation_commit_is_rejected() {
        let b = common::start_broker(BROKER);
        create(&b.addr, "stale", 1).await;
        produce(&b.addr, "stale", 1, 3, 0).await;
        // A dies from poll starvation (max.poll.interval.ms) while its heartbeats still run.
        let mut a = consumer(
            &b.addr,
            "stale-g",
            &[("enable.auto.commit", "false"), ("max.poll.interval.ms", "1000")],
        );
        let (tx, mut events) = mpsc::unbounded_channel();
        a.set_rebalance_listener(Box::new(tx));
        a.subscribe(["stale"]).unwrap();
        assert_eq!(consume_n(&mut a, 3).await.len(), 3);
        let g1 = a.group_metadata().unwrap();
        assert!(g1.generation_id >= 1 && !g1.member_id.is_empty(), "{g1:?}");
        assert_eq!(
            events.try_recv().unwrap(),
            RebalanceEvent::Assigned(vec![TopicPartition::new("stale", 0)])
        );

        // The broker refuses a commit in an older generation (raw request: the client never sends one).
        let conn = Conn::connect(net().as_ref(), &b.addr, ConnConfig::default()).await.unwrap();
        let stale = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("stale-g")))
            .with_generation_id_or_member_epoch(g1.generation_id - 1)
            .with_member_id(StrBytes::from_string(g1.member_id.clone()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("stale")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])]);
        let resp = conn.request(&stale).await.unwrap();
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            client::errors::ErrorCode::ILLEGAL_GENERATION
        );

        // Starve: after max.poll.interval.ms without a poll the heartbeat task leaves the group
        // (LeaveGroup). Wait for the broker to drop the member, bounded; not before the interval.
        let max_poll_interval = Duration::from_millis(1000);
        assert!(
            member_ids(&b.addr, "stale-g").await.contains(&g1.member_id),
            "a polling member is in the group"
        );
        let last_poll = Instant::now();
        a.poll(Duration::from_millis(10)).await.unwrap();
        let deadline = last_poll + max_poll_interval + Duration::from_secs(15);
        while member_ids(&b.addr, "stale-g").await.contains(&g1.member_id) {
            assert!(
                Instant::now() < deadline,
                "a member that stopped polling was never dropped from the group"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone_after = last_poll.elapsed();
        assert!(
        gone_after >= max_poll_interval,
        "the member left {gone_after:?} after its last poll, before max.poll.interval.ms ({max_poll_interval:?})"
    );
        // A commit now fails as CommitFailed.
        let e =
            a.commit_sync(Some([(TopicPartition::new("stale", 0), 3)].into_iter().collect())).await;
        assert!(matches!(e, Err(ConsumerError::Group(GroupError::CommitFailed { .. }))), "{e:?}");
        assert_eq!(
            a.committed(&[TopicPartition::new("stale", 0)]).await.unwrap()
                [&TopicPartition::new("stale", 0)],
            None,
            "nothing was stored"
        );
        // Polling again: the partitions are reported lost, then the member rejoins as a new member.
        a.poll(Duration::from_millis(10)).await.unwrap();
        assert_eq!(
            events.try_recv().unwrap(),
            RebalanceEvent::Lost(vec![TopicPartition::new("stale", 0)])
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.assignment().is_empty() && Instant::now() < deadline {
            a.poll(Duration::from_millis(100)).await.unwrap();
        }
        assert_eq!(
            events.try_recv().unwrap(),
            RebalanceEvent::Assigned(vec![TopicPartition::new("stale", 0)])
        );
        let g2 = a.group_metadata().unwrap();
        assert_ne!(g2.member_id, g1.member_id, "a dynamic member comes back with a new id");
        assert!(g2.generation_id > g1.generation_id);
        a.close().await;
    }

    #[tokio::test]
    async fn subscribe_needs_a_group_id() {
        let mut c = Consumer::new(ConsumerConfig::default(), net());
        assert_eq!(c.subscribe(["t"]).unwrap_err(), ConsumerError::Group(GroupError::NoGroupId));
    }

    /// DescribeGroups (raw request) for one group.
    async fn describe_group(
        addr: &str,
        group: &str,
    ) -> kafka_protocol::messages::describe_groups_response::DescribedGroup {
        use kafka_protocol::messages::DescribeGroupsRequest;
        let conn = Conn::connect(net().as_ref(), addr, ConnConfig::default()).await.unwrap();
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let mut resp = conn.request_at(&req, 4).await.unwrap();
        let g = resp.groups.remove(0);
        assert_eq!(g.error_code, client::errors::ErrorCode::NONE);
        g
    }

    /// The group's state and its members' instance ids.
    async fn describe(addr: &str, group: &str) -> (String, Vec<Option<String>>) {
        let g = describe_group(addr, group).await;
        let members =
            g.members.iter().map(|m| m.group_instance_id.as_ref().map(|s| s.to_string())).collect();
        (g.group_state.to_string(), members)
    }

    /// The member ids the coordinator holds for the group now.
    async fn member_ids(addr: &str, group: &str) -> Vec<String> {
        describe_group(addr, group).await.members.iter().map(|m| m.member_id.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_member_keeps_its_partitions_across_a_restart() {
        let b = common::start_broker(BROKER);
        create(&b.addr, "static", 4).await;
        let props = |id: &'static str| {
            [
                ("group.instance.id", id),
                ("partition.assignment.strategy", "range"),
                ("enable.auto.commit", "false"),
            ]
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop0, rx0) = watch::channel(false);
        let (stop1, rx1) = watch::channel(false);
        let t0 = spawn_member(
            0,
            consumer(&b.addr, "static-g", &props("i-0")),
            "static",
            Arc::clone(&seen),
            rx0,
        );
        let t1 = spawn_member(
            1,
            consumer(&b.addr, "static-g", &props("i-1")),
            "static",
            Arc::clone(&seen),
            rx1,
        );
        wait_for(&seen, "2 static members with 2 partitions each", |s| settled(s, &[0, 1], 2, 4))
            .await;
        let (_, mine_before) = seen.lock().unwrap().state[&1].clone();
        // Member 1 closes: a static member sends no LeaveGroup, so the broker still counts it (until
        // its session times out) and the group stays Stable.
        stop1.send(true).unwrap();
        t1.await.unwrap();
        let (state, members) = describe(&b.addr, "static-g").await;
        assert_eq!((state.as_str(), members.len()), ("Stable", 2), "{members:?}");
        assert!(members.contains(&Some("i-1".to_string())));
        // It comes back under the same group.instance.id: range orders static members by instance
        // id, so it gets the same partitions.
        let (_stop1b, rx1b) = watch::channel(false);
        let t1b = spawn_member(
            1,
            consumer(&b.addr, "static-g", &props("i-1")),
            "static",
            Arc::clone(&seen),
            rx1b,
        );
        wait_for(&seen, "the static member back", |s| {
            s.state.get(&1).is_some_and(|x| !x.1.is_empty())
        })
        .await;
        let (_, mine_after) = seen.lock().unwrap().state[&1].clone();
        assert_eq!(mine_after, mine_before, "same partitions for the same group.instance.id");
        stop0.send(true).unwrap();
        _stop1b.send(true).unwrap();
        t0.await.unwrap();
        t1b.await.unwrap();
    }

    #[tokio::test]
    async fn auto_commit_runs_on_its_interval() {
        let b = common::start_broker(BROKER);
        create(&b.addr, "auto", 1).await;
        produce(&b.addr, "auto", 1, 7, 0).await;
        let mut c = consumer(&b.addr, "auto-g", &[("auto.commit.interval.ms", "100")]);
        c.subscribe(["auto"]).unwrap();
        assert_eq!(consume_n(&mut c, 7).await.len(), 7);
        let tp = TopicPartition::new("auto", 0);
        // No explicit commit: polling past the interval commits the position.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.poll(Duration::from_millis(50)).await.unwrap();
            if c.committed(std::slice::from_ref(&tp)).await.unwrap()[&tp] == Some(7) {
                break;
            }
            assert!(Instant::now() < deadline, "auto commit never stored offset 7");
        }
        // Dropped without close: the next member of the group starts where auto commit left off.
        drop(c);
        produce(&b.addr, "auto", 1, 2, 7).await;
        let mut d = consumer(&b.addr, "auto-g", &[("enable.auto.commit", "false")]);
        d.subscribe(["auto"]).unwrap();
        let got = consume_n(&mut d, 2).await;
        assert_eq!(got, vec![(0, 7), (0, 8)]);
        d.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_created_after_subscribe_is_assigned() {
        let b = common::start_broker(&[
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
        ]);
        let mut c = consumer(&b.addr, "later-g", &[]);
        c.subscribe(["later"]).unwrap();
        poll_until(&mut c, "a generation without the topic", |c| {
            c.group_metadata().unwrap().generation_id >= 1
        })
        .await;
        assert!(c.assignment().is_empty());
        create(&b.addr, "later", 3).await;
        produce(&b.addr, "later", 3, 2, 0).await;
        // The member notices the new topic (within a second while a subscribed topic is missing),
        // rejoins, and the leader assigns it.
        let mut got = consume_n(&mut c, 6).await;
        got.sort();
        assert_eq!(got, vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(c.assignment().len(), 3);
        c.close().await;
    }

    #[tokio::test]
    async fn heartbeat_must_be_below_session_timeout() {
        let mut c = consumer("127.0.0.1:1", "g", &[("heartbeat.interval.ms", "6000")]);
        let e = c.subscribe(["t"]).unwrap_err();
        assert!(e.to_string().contains("heartbeat.interval.ms"), "{e}");
    }

    /// kcat (librdkafka) in the same group as a Loglab member, which leads depending on who joins
    /// first: each side must read the other's subscription and assignment bytes.
    struct Kcat {
        child: std::process::Child,
        assigned: Arc<Mutex<Vec<BTreeSet<i32>>>>,
    }

    impl Kcat {
        /// Starts kcat; a missing kcat fails the test (naming it) rather than skipping it.
        fn start(addr: &str, group: &str, topic: &str) -> Kcat {
            use std::io::BufRead;
            use std::process::{Command, Stdio};
            let mut child = Command::new("kcat")
            .args(["-b", addr, "-G", group, "-X", "heartbeat.interval.ms=100", "-X", "session.timeout.ms=6000"])
            .args(["-X", "auto.offset.reset=earliest", "-f", "%p %o\\n", topic])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs kcat (librdkafka's CLI) on PATH and could not run it: {e}; install it (`apt-get install kcat`; scripts/test.sh does)")
            });
            let assigned = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&assigned);
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    // "% Group g rebalanced (memberid m): assigned: t [0], t [1]" / "revoked: ..."
                    if let Some(rest) = line.split("assigned: ").nth(1) {
                        let parts = rest
                            .split('[')
                            .skip(1)
                            .filter_map(|x| x.split(']').next()?.parse().ok())
                            .collect();
                        log.lock().unwrap().push(parts);
                    } else if line.contains("revoked:") {
                        log.lock().unwrap().push(BTreeSet::new());
                    }
                }
            });
            Kcat { child, assigned }
        }

        fn current(&self) -> BTreeSet<i32> {
            self.assigned.lock().unwrap().last().cloned().unwrap_or_default()
        }

        /// SIGTERM: kcat closes its consumer (LeaveGroup) and exits.
        fn stop(mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }

    impl Drop for Kcat {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn poll_until(c: &mut Consumer, what: &str, ok: impl Fn(&Consumer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(c) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                c.assignment()
            );
            c.poll(Duration::from_millis(50)).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shares_a_group_with_librdkafka() {
        let b = common::start_broker(BROKER);
        create(&b.addr, "mixed", 4).await;
        for kcat_first in [true, false] {
            let group = format!("mixed-{kcat_first}");
            let mut c = consumer(&b.addr, &group, &[]);
            let k = if kcat_first {
                let k = Kcat::start(&b.addr, &group, "mixed");
                let deadline = Instant::now() + Duration::from_secs(30);
                while k.current().len() != 4 {
                    assert!(Instant::now() < deadline, "kcat alone never got 4 partitions");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                c.subscribe(["mixed"]).unwrap();
                k
            } else {
                c.subscribe(["mixed"]).unwrap();
                poll_until(&mut c, "the Loglab member alone", |c| c.assignment().len() == 4).await;
                Kcat::start(&b.addr, &group, "mixed")
            };
            // Both in one generation: range gives each two, disjoint. The Loglab member keeps polling
            // (its heartbeats and rejoins run from poll) while kcat rebalances.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                c.poll(Duration::from_millis(50)).await.unwrap();
                let ours: BTreeSet<i32> = c.assignment().iter().map(|tp| tp.partition).collect();
                let theirs = k.current();
                if ours.len() == 2 && theirs.len() == 2 && ours.is_disjoint(&theirs) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "kcat_first={kcat_first}: ours {ours:?}, kcat {theirs:?}"
                );
            }
            // kcat leaves: the Loglab member takes everything.
            k.stop();
            poll_until(&mut c, "all 4 back after kcat left", |c| c.assignment().len() == 4).await;
            c.close().await;
        }
    }
}

#[test]
fn group_config_keys() {
    use client::{ConsumerConfig, Strategy};
    let c = ConsumerConfig::default();
    assert_eq!(c.partition_assignment_strategy, vec![Strategy::Range, Strategy::CooperativeSticky]);
    assert_eq!(
        (c.session_timeout_ms, c.heartbeat_interval_ms, c.max_poll_interval_ms),
        (45_000, 3_000, 300_000)
    );
    assert!(c.enable_auto_commit && c.group_id.is_none());
    let c = ConsumerConfig::from_pairs([
        ("group.id", "g"),
        ("group.instance.id", "i"),
        (
            "partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.StickyAssignor, roundrobin",
        ),
        ("enable.auto.commit", "false"),
        ("auto.commit.interval.ms", "100"),
    ])
    .unwrap();
    assert_eq!(c.partition_assignment_strategy, vec![Strategy::Sticky, Strategy::RoundRobin]);
    assert_eq!((c.group_id.as_deref(), c.group_instance_id.as_deref()), (Some("g"), Some("i")));
    assert!(!c.enable_auto_commit);
    for (k, v) in [
        ("partition.assignment.strategy", "fair"),
        ("partition.assignment.strategy", ""),
        ("heartbeat.interval.ms", "0"),
    ] {
        let e = ConsumerConfig::from_pairs([(k, v)]).unwrap_err();
        assert!(e.to_string().contains(k), "{e}");
    }
}

/// The broker in-process over `tokio::io::duplex` streams: runs in both worlds.
mod inproc {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use client::conn::StreamWriter;
    use client::{
        Admin, AdminConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
        ProducerRecord, TopicPartition,
    };
    use net_model::{Connection, Listener, Network};
    use tokio::sync::{mpsc, watch};
    use tokio::time::Instant;

    #[derive(Debug, Default)]
    struct MemNetwork {
        listeners: Mutex<BTreeMap<String, mpsc::UnboundedSender<Connection>>>,
    }

    struct MemListener {
        addr: String,
        rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Connection>>,
    }

    fn conn(stream: tokio::io::DuplexStream, peer: &str, local: &str) -> Connection {
        let (r, w) = tokio::io::split(stream);
        Connection {
            reader: Box::new(r),
            writer: Box::new(StreamWriter::new(w)),
            peer: peer.into(),
            local: local.into(),
        }
    }

    #[async_trait]
    impl Listener for MemListener {
        async fn accept(&self) -> io::Result<Connection> {
            self.rx
                .lock()
                .await
                .recv()
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
        }
        fn local_addr(&self) -> io::Result<String> {
            Ok(self.addr.clone())
        }
    }

    #[async_trait]
    impl Network for MemNetwork {
        async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
            let (tx, rx) = mpsc::unbounded_channel();
            self.listeners.lock().unwrap().insert(addr.to_string(), tx);
            Ok(Box::new(MemListener { addr: addr.to_string(), rx: tokio::sync::Mutex::new(rx) }))
        }
        async fn connect(&self, addr: &str) -> io::Result<Connection> {
            let tx = self.listeners.lock().unwrap().get(addr).cloned();
            let tx = tx.ok_or_else(|| {
                io::Error::new(io::ErrorKind::ConnectionRefused, addr.to_string())
            })?;
            let (a, b) = tokio::io::duplex(256 * 1024);
            tx.send(conn(b, "client", addr))
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, addr.to_string()))?;
            Ok(conn(a, addr, "client"))
        }
    }

    const ADDR: &str = "broker:9092";

    struct InProc {
        net: Arc<dyn Network>,
        node: broker::node::NodeHandle,
        _dir: tempfile::TempDir,
    }

    /// A broker node on the in-memory network, started as `broker serve` starts one.
    async fn start() -> InProc {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn disk_model::Storage> =
            Arc::new(disk_model::OsStorage::new(dir.path()).unwrap());
        let mut cfg = broker::BrokerConfig::default();
        cfg.group.initial_rebalance_delay_ms = 0;
        let mem: Arc<dyn Network> = Arc::new(MemNetwork::default());
        let mut opts = broker::node::NodeOptions::new(cfg, storage, mem.clone(), ADDR, 0);
        opts.data_dir = "data".into();
        opts.advertised = Some(("broker".into(), 9092));
        let node = broker::node::start(opts).await.expect("the node starts");
        InProc { net: mem, node, _dir: dir }
    }

    /// One poll's view of a member: (member index, generation, member id, assignment).
    type Snapshot = (usize, i32, String, Vec<TopicPartition>);

    #[derive(Default)]
    struct Log {
        reads: BTreeMap<(i32, i64), usize>,
        dups: Vec<(i32, i64)>,
        history: Vec<Snapshot>,
        latest: BTreeMap<usize, (i32, usize)>,
    }

    fn member(
        net: &Arc<dyn Network>,
        idx: usize,
        strategy: &str,
        log: Arc<Mutex<Log>>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut c = Consumer::new(
            ConsumerConfig::from_pairs([
                ("bootstrap.servers", ADDR),
                ("group.id", "inproc-g"),
                ("auto.offset.reset", "earliest"),
                ("fetch.max.wait.ms", "50"),
                ("heartbeat.interval.ms", "100"),
                ("session.timeout.ms", "6000"),
                ("auto.commit.interval.ms", "600000"),
                ("partition.assignment.strategy", strategy),
            ])
            .unwrap(),
            Arc::clone(net),
        );
        c.subscribe(["events"]).unwrap();
        tokio::spawn(async move {
            while !*stop.borrow_and_update() {
                let records = c.poll(Duration::from_millis(50)).await.unwrap();
                let g = c.group_metadata().unwrap();
                let mut l = log.lock().unwrap();
                for r in records {
                    if l.reads.insert((r.partition, r.offset), idx).is_some() {
                        l.dups.push((r.partition, r.offset));
                    }
                }
                l.history.push((idx, g.generation_id, g.member_id, c.assignment()));
                l.latest.insert(idx, (g.generation_id, c.assignment().len()));
            }
            c.close().await;
            log.lock().unwrap().latest.remove(&idx);
        })
    }

    async fn produce(net: &Arc<dyn Network>, first: usize) {
        let p = Producer::new(
            ProducerConfig::from_pairs([("bootstrap.servers", ADDR), ("linger.ms", "1")]).unwrap(),
            Arc::clone(net),
            3,
        );
        let mut futs = Vec::new();
        for part in 0..6 {
            for i in first..first + 20 {
                let mut r = ProducerRecord::new("events", Bytes::from(format!("{part}-{i}")));
                r.partition = Some(part);
                futs.push(p.send(r).await.unwrap());
            }
        }
        for f in futs {
            f.await.unwrap();
        }
        p.close().await;
    }

    async fn wait_for(log: &Arc<Mutex<Log>>, what: &str, ok: impl Fn(&Log) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok(&log.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                log.lock().unwrap().latest
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn settled(l: &Log, members: &[usize], size: usize) -> bool {
        let gens: BTreeSet<i32> =
            members.iter().filter_map(|m| l.latest.get(m).map(|x| x.0)).collect();
        gens.len() == 1 && members.iter().all(|m| l.latest.get(m).is_some_and(|x| x.1 == size))
    }

    async fn hand_over(strategy: &str) {
        let b = start().await;
        Admin::new(
            AdminConfig { bootstrap_servers: vec![ADDR.into()], ..AdminConfig::default() },
            Arc::clone(&b.net),
        )
        .create_topic(NewTopic::new("events", 6, 1))
        .await
        .unwrap();
        produce(&b.net, 0).await;
        let log = Arc::new(Mutex::new(Log::default()));
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for idx in 0..3 {
            let (tx, rx) = watch::channel(false);
            tasks.push(member(&b.net, idx, strategy, Arc::clone(&log), rx));
            stops.push(tx);
        }
        wait_for(&log, "2 partitions each", |l| settled(l, &[0, 1, 2], 2)).await;
        wait_for(&log, "120 records", |l| l.reads.len() == 120).await;
        let t0 = Instant::now();
        stops[2].send(true).unwrap();
        tasks.pop().unwrap().await.unwrap();
        wait_for(&log, "3 partitions each", |l| settled(l, &[0, 1], 3)).await;
        let rebalance = t0.elapsed();
        eprintln!("inproc {strategy}: rebalance after a member left: {} ms", rebalance.as_millis());
        // The leave (LeaveGroup) triggers the rebalance; without it only the session timeout
        // (6 s, heartbeats every 100 ms) would: the hand-over beats that by a wide margin. Under
        // madsim this is virtual time.
        assert!(
            rebalance < Duration::from_millis(6000 - 100),
            "{strategy}: rebalance after a leave took {rebalance:?}"
        );
        produce(&b.net, 20).await;
        wait_for(&log, "240 records", |l| l.reads.len() == 240).await;
        for tx in &stops[..2] {
            tx.send(true).unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
        let l = log.lock().unwrap();
        assert!(l.dups.is_empty(), "{strategy}: read twice: {:?}", l.dups);
        // group-exclusive: within one generation no partition has two owners.
        let mut owners: BTreeMap<(i32, TopicPartition), BTreeSet<String>> = BTreeMap::new();
        for (_, generation, member_id, assignment) in &l.history {
            for tp in assignment {
                owners.entry((*generation, tp.clone())).or_default().insert(member_id.clone());
            }
        }
        for ((generation, tp), who) in &owners {
            assert!(*generation >= 1, "owned {tp:?} outside a generation");
            assert_eq!(
                who.len(),
                1,
                "{strategy}: {tp:?} owned by {who:?} in generation {generation}"
            );
        }
        b.node.halt();
    }

    #[tokio::test]
    async fn eager_hand_over_in_both_worlds() {
        hand_over("range").await;
    }

    #[tokio::test]
    async fn cooperative_hand_over_in_both_worlds() {
        hand_over("cooperative-sticky").await;
    }
}
