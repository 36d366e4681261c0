//! The group coordinator. `wire` (real mode): over loopback TCP, the classic protocol end to end
//! (KIP-394 member ids, rebalances, fencing, offsets, every version), persistence across a
//! restart, partition load/unload, bad input. `both_worlds`: the coordinator's own API on the
//! simulated disk, in real time and under madsim's virtual time (deterministic there).

mod support;

#[cfg(not(madsim))]
mod wire {
    use super::support::client::{Client, TIMEOUT};
    use super::support::kafka::sb as s;
    use super::support::server::start_in;
    use std::time::Duration;

    use broker::BrokerConfig;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::*;

    use kafka_types::error_code::{
        COORDINATOR_NOT_AVAILABLE, ILLEGAL_GENERATION, INVALID_GROUP_ID, INVALID_REQUEST,
        INVALID_TOPIC_EXCEPTION, MEMBER_ID_REQUIRED, NONE, NOT_COORDINATOR, REBALANCE_IN_PROGRESS,
        UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_OR_PARTITION,
    };

    fn config() -> BrokerConfig {
        let mut c = BrokerConfig::default();
        c.apply_override("group.initial.rebalance.delay.ms=0").unwrap();
        c.apply_override("group.min.session.timeout.ms=10").unwrap();
        c.apply_override("offsets.topic.num.partitions=5").unwrap();
        c
    }

    fn join_req(group: &str, member: &str, session_ms: i32, meta: &[u8]) -> JoinGroupRequest {
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = s("range");
        p.metadata = Bytes::copy_from_slice(meta);
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(s(group));
        r.session_timeout_ms = session_ms;
        r.rebalance_timeout_ms = 5000;
        r.member_id = s(member);
        r.protocol_type = s("consumer");
        r.protocols = vec![p];
        r
    }

    async fn join(c: &mut Client, v: i16, group: &str, member: &str) -> JoinGroupResponse {
        c.call(ApiKey::JoinGroup, v, &join_req(group, member, 10_000, b"sub")).await
    }

    /// JoinGroup v4+ the KIP-394 way: get an id, join with it.
    async fn join_new(c: &mut Client, group: &str) -> JoinGroupResponse {
        let first = join(c, 7, group, "").await;
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        assert!(!first.member_id.is_empty());
        join(c, 7, group, first.member_id.as_str()).await
    }

    fn sync_req(
        group: &str,
        generation: i32,
        member: &str,
        assignments: &[(&str, &[u8])],
    ) -> SyncGroupRequest {
        let mut r = SyncGroupRequest::default();
        r.group_id = GroupId(s(group));
        r.generation_id = generation;
        r.member_id = s(member);
        r.assignments = assignments
            .iter()
            .map(|(m, a)| {
                let mut x = sync_group_request::SyncGroupRequestAssignment::default();
                x.member_id = s(m);
                x.assignment = Bytes::copy_from_slice(a);
                x
            })
            .collect();
        r
    }

    async fn heartbeat(c: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s(group));
        r.generation_id = generation;
        r.member_id = s(member);
        let resp: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &r).await;
        resp.error_code
    }

    fn commit_req(
        group: &str,
        generation: i32,
        member: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> OffsetCommitRequest {
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partitions = offsets
            .iter()
            .map(|(p, o)| {
                let mut x = offset_commit_request::OffsetCommitRequestPartition::default();
                x.partition_index = *p;
                x.committed_offset = *o;
                x.committed_metadata = Some(s("md"));
                x
            })
            .collect();
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(s(group));
        r.generation_id_or_member_epoch = generation;
        r.member_id = s(member);
        r.retention_time_ms = -1;
        r.topics = vec![t];
        r
    }

    async fn commit(
        c: &mut Client,
        v: i16,
        group: &str,
        generation: i32,
        member: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Vec<i16> {
        let r: OffsetCommitResponse = c
            .call(ApiKey::OffsetCommit, v, &commit_req(group, generation, member, topic, offsets))
            .await;
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }

    /// OffsetFetch v1-7 (topic asked) or v8: (group error, [(partition, offset, metadata)]).
    async fn fetch_offsets(
        c: &mut Client,
        v: i16,
        group: &str,
        topic: &str,
        parts: &[i32],
    ) -> (i16, Vec<(i32, i64, String)>) {
        let mut r = OffsetFetchRequest::default();
        if v >= 8 {
            let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
            t.name = TopicName(s(topic));
            t.partition_indexes = parts.to_vec();
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s(group));
            g.topics = Some(vec![t]);
            r.groups = vec![g];
            let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &r).await;
            let g = &resp.groups[0];
            let ps = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            p.metadata.as_deref().unwrap_or("").to_string(),
                        )
                    })
                })
                .collect();
            return (g.error_code, ps);
        }
        let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = parts.to_vec();
        r.group_id = GroupId(s(group));
        r.topics = Some(vec![t]);
        let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &r).await;
        let ps = resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.metadata.as_deref().unwrap_or("").to_string(),
                    )
                })
            })
            .collect();
        (resp.error_code, ps)
    }

    /// Creates topic `t` with 4 partitions (offsets are only committed for existing partitions).
    async fn create_t(c: &mut Client) {
        let mut ct = create_topics_request::CreatableTopic::default();
        ct.name = TopicName(s("t"));
        ct.num_partitions = 4;
        ct.replication_factor = 1;
        let mut cr = CreateTopicsRequest::default();
        cr.topics = vec![ct];
        cr.timeout_ms = 5000;
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &cr).await;
        assert_eq!(r.topics[0].error_code, NONE);
    }

    async fn describe(c: &mut Client, group: &str) -> describe_groups_response::DescribedGroup {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![GroupId(s(group))];
        let resp: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &r).await;
        resp.groups.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn two_members_rebalance_commit_and_leave() {
        let srv = start_in(config(), tempfile::tempdir().unwrap()).await;
        let mut a = Client::connect(&srv.addr).await;
        create_t(&mut a).await;
        let mut b = Client::connect(&srv.addr).await;

        // FindCoordinator v0 and v4 name this broker.
        let mut fc = FindCoordinatorRequest::default();
        fc.key = s("g1");
        let r: FindCoordinatorResponse = a.call(ApiKey::FindCoordinator, 0, &fc).await;
        assert_eq!(
            (r.error_code, r.port),
            (NONE, srv.addr.rsplit_once(':').unwrap().1.parse().unwrap())
        );
        let mut fc4 = FindCoordinatorRequest::default();
        fc4.coordinator_keys = vec![s("g1"), s("g2")];
        let r: FindCoordinatorResponse = a.call(ApiKey::FindCoordinator, 4, &fc4).await;
        assert!(r.coordinators.iter().all(|c| c.error_code == NONE && c.node_id.0 == 0));

        // A alone: generation 1, leader.
        let ja = join_new(&mut a, "g1").await;
        assert_eq!(
            (ja.error_code, ja.generation_id, ja.leader.as_str()),
            (NONE, 1, ja.member_id.as_str())
        );
        assert_eq!(ja.members.len(), 1);
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        let ida = ja.member_id.to_string();
        let sa: SyncGroupResponse =
            a.call(ApiKey::SyncGroup, 5, &sync_req("g1", 1, &ida, &[(&ida, b"all")])).await;
        assert_eq!((sa.error_code, &sa.assignment[..]), (NONE, &b"all"[..]));
        assert_eq!(
            commit(&mut a, 8, "g1", 1, &ida, "t", &[(0, 5), (1, 6)]).await,
            vec![NONE, NONE]
        );

        // B joins (its JoinGroup waits); A learns of the rebalance by heartbeat and rejoins.
        let first = join(&mut b, 7, "g1", "").await;
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        let corr_b = b
            .send(ApiKey::JoinGroup, 7, &join_req("g1", first.member_id.as_str(), 10_000, b"sub"))
            .await;
        let mut hb = NONE;
        for _ in 0..100 {
            hb = heartbeat(&mut a, "g1", 1, &ida).await;
            if hb != NONE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hb, REBALANCE_IN_PROGRESS);
        let ja2 = join(&mut a, 7, "g1", &ida).await;
        let jb: JoinGroupResponse = b.recv(ApiKey::JoinGroup, 7, corr_b).await;
        assert_eq!(
            (ja2.error_code, jb.error_code, ja2.generation_id, jb.generation_id),
            (NONE, NONE, 2, 2)
        );
        assert_eq!(ja2.leader, ja2.member_id, "the old leader stays leader");
        assert_eq!(
            (ja2.members.len(), jb.members.len()),
            (2, 0),
            "only the leader gets the members"
        );
        let idb = jb.member_id.to_string();

        // Stale generation: refused everywhere.
        assert_eq!(
            commit(&mut a, 8, "g1", 1, &ida, "t", &[(0, 7)]).await,
            vec![ILLEGAL_GENERATION]
        );
        let stale: SyncGroupResponse =
            a.call(ApiKey::SyncGroup, 5, &sync_req("g1", 1, &ida, &[])).await;
        assert_eq!(stale.error_code, ILLEGAL_GENERATION);
        // Before the leader syncs: commits wait for the assignment.
        assert_eq!(
            commit(&mut b, 8, "g1", 2, &idb, "t", &[(0, 7)]).await,
            vec![REBALANCE_IN_PROGRESS]
        );

        let corr_sb = b.send(ApiKey::SyncGroup, 3, &sync_req("g1", 2, &idb, &[])).await;
        let sa: SyncGroupResponse = a
            .call(ApiKey::SyncGroup, 3, &sync_req("g1", 2, &ida, &[(&ida, b"p0"), (&idb, b"p1")]))
            .await;
        let sb: SyncGroupResponse = b.recv(ApiKey::SyncGroup, 3, corr_sb).await;
        assert_eq!((&sa.assignment[..], &sb.assignment[..]), (&b"p0"[..], &b"p1"[..]));
        assert_eq!(commit(&mut b, 8, "g1", 2, &idb, "t", &[(1, 9)]).await, vec![NONE]);
        assert_eq!(commit(&mut a, 3, "g1", 2, &ida, "t", &[(0, 8)]).await, vec![NONE]);

        // Offsets by every OffsetFetch version.
        for v in [1, 2, 5, 7, 8] {
            let (err, ps) = fetch_offsets(&mut a, v, "g1", "t", &[0, 1, 2]).await;
            assert_eq!(err, NONE, "v{v}");
            assert_eq!(
                ps,
                vec![(0, 8, "md".into()), (1, 9, "md".into()), (2, -1, "".into())],
                "OffsetFetch v{v}"
            );
        }

        // ListGroups / DescribeGroups.
        let lg: ListGroupsResponse =
            a.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default()).await;
        assert!(lg.groups.iter().any(|g| g.group_id.as_str() == "g1"
            && g.group_state.as_str() == "Stable"
            && g.protocol_type.as_str() == "consumer"));
        let d = describe(&mut a, "g1").await;
        assert_eq!(
            (d.error_code, d.group_state.as_str(), d.protocol_data.as_str(), d.members.len()),
            (NONE, "Stable", "range", 2)
        );
        assert_eq!(describe(&mut a, "nope").await.group_state.as_str(), "Dead");

        // B leaves (v5 batch form); A must rejoin, alone, in generation 3.
        let mut lr = LeaveGroupRequest::default();
        lr.group_id = GroupId(s("g1"));
        let mut m = leave_group_request::MemberIdentity::default();
        m.member_id = s(&idb);
        let mut ghost = leave_group_request::MemberIdentity::default();
        ghost.member_id = s("ghost");
        lr.members = vec![m, ghost];
        let l: LeaveGroupResponse = b.call(ApiKey::LeaveGroup, 5, &lr).await;
        assert_eq!(
            l.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
            vec![NONE, UNKNOWN_MEMBER_ID]
        );
        assert_eq!(heartbeat(&mut a, "g1", 2, &ida).await, REBALANCE_IN_PROGRESS);
        let ja3 = join(&mut a, 7, "g1", &ida).await;
        assert_eq!((ja3.generation_id, ja3.members.len()), (3, 1));

        // Old join versions still work (v0: no KIP-394, no rebalance timeout).
        let j0 = join(&mut b, 0, "g-old", "").await;
        assert_eq!((j0.error_code, j0.generation_id), (NONE, 1));
        srv.stop().await;
    }

    #[tokio::test]
    async fn offsets_and_groups_survive_a_restart() {
        let srv = start_in(config(), tempfile::tempdir().unwrap()).await;
        let mut c = Client::connect(&srv.addr).await;
        create_t(&mut c).await;
        // Simple (generation -1) commits through v2, v8 and the hand-parsed v0 and v1.
        assert_eq!(commit(&mut c, 2, "simple", -1, "", "t", &[(0, 11)]).await, vec![NONE]);
        assert_eq!(commit(&mut c, 8, "simple", -1, "", "t", &[(1, 12)]).await, vec![NONE]);
        for v in [0i16, 1] {
            let mut body = BytesMut::new();
            body.put_i16(6);
            body.put_slice(b"simple");
            if v == 1 {
                body.put_i32(-1);
                body.put_i16(0);
            }
            body.put_i32(1);
            body.put_i16(1);
            body.put_slice(b"t");
            body.put_i32(1);
            body.put_i32(2 + v as i32);
            body.put_i64(13 + v as i64);
            if v == 1 {
                body.put_i64(-1);
            }
            body.put_i16(-1);
            let corr = c.send_body(ApiKey::OffsetCommit, v, &body).await;
            let r: OffsetCommitResponse = c.recv(ApiKey::OffsetCommit, 2, corr).await;
            assert_eq!(r.topics[0].partitions[0].error_code, NONE, "OffsetCommit v{v}");
        }
        // A group with a member, Stable at generation 1.
        let j = join_new(&mut c, "live").await;
        let id = j.member_id.to_string();
        let _: SyncGroupResponse =
            c.call(ApiKey::SyncGroup, 5, &sync_req("live", 1, &id, &[(&id, b"mine")])).await;
        assert_eq!(commit(&mut c, 8, "live", 1, &id, "t", &[(0, 42)]).await, vec![NONE]);
        // A group member cannot make a simple commit.
        assert_eq!(
            commit(&mut c, 8, "live", -1, "", "t", &[(0, 1)]).await,
            vec![UNKNOWN_MEMBER_ID]
        );
        drop(c);
        let dir = srv.stop().await;

        let srv = start_in(config(), dir).await;
        let mut c = Client::connect(&srv.addr).await;
        let (_, ps) = fetch_offsets(&mut c, 7, "simple", "t", &[0, 1, 2, 3]).await;
        assert_eq!(ps.iter().map(|p| p.1).collect::<Vec<_>>(), vec![11, 12, 13, 14]);
        let (_, ps) = fetch_offsets(&mut c, 8, "live", "t", &[0]).await;
        assert_eq!(ps[0].1, 42);
        let d = describe(&mut c, "live").await;
        assert_eq!(
            (d.group_state.as_str(), d.members.len(), &d.members[0].member_assignment[..]),
            ("Stable", 1, &b"mine"[..])
        );
        // The reloaded member carries on in its generation.
        assert_eq!(heartbeat(&mut c, "live", 1, &id).await, NONE);
        // The offsets topic is internal, compacted, and closed to producers.
        let mut mt = metadata_request::MetadataRequestTopic::default();
        mt.name = Some(TopicName(s("__consumer_offsets")));
        let mut mr = MetadataRequest::default();
        mr.topics = Some(vec![mt]);
        let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &mr).await;
        assert!(m.topics[0].is_internal);
        assert_eq!(m.topics[0].partitions.len(), 5);
        let mut p = produce_request::PartitionProduceData::default();
        p.index = 0;
        p.records = Some(Bytes::new());
        let mut t = produce_request::TopicProduceData::default();
        t.name = TopicName(s("__consumer_offsets"));
        t.partition_data = vec![p];
        let mut pr = ProduceRequest::default();
        pr.acks = 1;
        pr.timeout_ms = 1000;
        pr.topic_data = vec![t];
        let r: ProduceResponse = c.call(ApiKey::Produce, 9, &pr).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, INVALID_TOPIC_EXCEPTION);
        let mut ct = create_topics_request::CreatableTopic::default();
        ct.name = TopicName(s("__consumer_offsets"));
        ct.num_partitions = 1;
        ct.replication_factor = 1;
        let mut cr = CreateTopicsRequest::default();
        cr.topics = vec![ct];
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &cr).await;
        assert_ne!(r.topics[0].error_code, NONE);
        srv.stop().await;
    }

    #[tokio::test]
    async fn session_timeout_evicts_and_unload_moves_groups() {
        let srv = start_in(config(), tempfile::tempdir().unwrap()).await;
        let mut a = Client::connect(&srv.addr).await;
        create_t(&mut a).await;
        let mut b = Client::connect(&srv.addr).await;
        let ja = join_new(&mut a, "g").await;
        let ida = ja.member_id.to_string();
        let _: SyncGroupResponse =
            a.call(ApiKey::SyncGroup, 5, &sync_req("g", 1, &ida, &[(&ida, b"x")])).await;
        // B joins with a 200 ms session and then goes silent; A keeps heartbeating and rejoins.
        let jb0 = join(&mut b, 7, "g", "").await;
        let corr_b =
            b.send(ApiKey::JoinGroup, 7, &join_req("g", jb0.member_id.as_str(), 200, b"sub")).await;
        while heartbeat(&mut a, "g", 1, &ida).await == NONE {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ja2 = join(&mut a, 7, "g", &ida).await;
        let jb: JoinGroupResponse = b.recv(ApiKey::JoinGroup, 7, corr_b).await;
        assert_eq!((ja2.generation_id, jb.generation_id), (2, 2));
        let corr_b =
            b.send(ApiKey::SyncGroup, 5, &sync_req("g", 2, jb.member_id.as_str(), &[])).await;
        let _: SyncGroupResponse = a.call(ApiKey::SyncGroup, 5, &sync_req("g", 2, &ida, &[])).await;
        let _: SyncGroupResponse = b.recv(ApiKey::SyncGroup, 5, corr_b).await;
        // B never heartbeats: evicted after its session timeout, A sees the rebalance.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut code = NONE;
        while code == NONE && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            code = heartbeat(&mut a, "g", 2, &ida).await;
        }
        assert_eq!(code, REBALANCE_IN_PROGRESS, "the silent member was evicted");
        let ja3 = join(&mut a, 7, "g", &ida).await;
        assert_eq!((ja3.generation_id, ja3.members.len()), (3, 1));
        let _: SyncGroupResponse =
            a.call(ApiKey::SyncGroup, 5, &sync_req("g", 3, &ida, &[(&ida, b"x")])).await;
        assert_eq!(commit(&mut a, 8, "g", 3, &ida, "t", &[(0, 77)]).await, vec![NONE]);

        // The partition moves away: NOT_COORDINATOR; FindCoordinator has no answer. Back: reloaded.
        let p = srv.broker.groups.partition_of("g").await.unwrap();
        srv.broker.groups.unload_partition(p).await;
        assert_eq!(heartbeat(&mut a, "g", 3, &ida).await, NOT_COORDINATOR);
        let mut fc = FindCoordinatorRequest::default();
        fc.key = s("g");
        let r: FindCoordinatorResponse = a.call(ApiKey::FindCoordinator, 3, &fc).await;
        assert_eq!(r.error_code, COORDINATOR_NOT_AVAILABLE);
        let (err, _) = fetch_offsets(&mut a, 7, "g", "t", &[0]).await;
        assert_eq!(err, NOT_COORDINATOR);
        srv.broker.groups.load_partition(&srv.broker, p).await;
        let (_, ps) = fetch_offsets(&mut a, 7, "g", "t", &[0]).await;
        assert_eq!(ps[0].1, 77);
        assert_eq!(heartbeat(&mut a, "g", 3, &ida).await, NONE);
        srv.stop().await;
    }

    #[tokio::test]
    async fn bad_input_gets_error_codes_or_a_closed_connection() {
        let srv = start_in(config(), tempfile::tempdir().unwrap()).await;
        let mut c = Client::connect(&srv.addr).await;
        create_t(&mut c).await;
        // Empty group id, metadata over the cap, unknown group.
        assert_eq!(join(&mut c, 5, "", "").await.error_code, INVALID_GROUP_ID);
        let big = vec![7u8; (1 << 20) + 1];
        let r: JoinGroupResponse =
            c.call(ApiKey::JoinGroup, 5, &join_req("g", "", 10_000, &big)).await;
        assert_eq!(r.error_code, INVALID_REQUEST);
        assert_eq!(heartbeat(&mut c, "nope", 1, "m").await, UNKNOWN_MEMBER_ID);
        let s0: SyncGroupResponse =
            c.call(ApiKey::SyncGroup, 5, &sync_req("nope", 1, "m", &[])).await;
        assert_eq!(s0.error_code, UNKNOWN_MEMBER_ID);
        assert_eq!(
            commit(&mut c, 8, "nope", 3, "m", "t", &[(0, 1)]).await,
            vec![ILLEGAL_GENERATION]
        );
        // Offsets only for partitions that exist.
        assert_eq!(
            commit(&mut c, 8, "simple", -1, "", "t", &[(0, 1), (4, 1), (-1, 1)]).await,
            vec![NONE, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]
        );
        assert_eq!(
            commit(&mut c, 8, "simple", -1, "", "no-such-topic", &[(0, 1)]).await,
            vec![UNKNOWN_TOPIC_OR_PARTITION]
        );

        // JoinGroup v5 claiming 2^31-1 protocols in a few bytes: closed, nothing allocated.
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_slice(b"g");
        body.put_i32(10_000);
        body.put_i32(10_000);
        body.put_i16(0);
        body.put_i16(-1);
        body.put_i16(8);
        body.put_slice(b"consumer");
        body.put_i32(i32::MAX);
        c.send_body(ApiKey::JoinGroup, 5, &body).await;
        assert!(c.closed().await);

        // OffsetCommit v0 with a lying topic count: closed.
        let mut c = Client::connect(&srv.addr).await;
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_slice(b"g");
        body.put_i32(1 << 30);
        c.send_body(ApiKey::OffsetCommit, 0, &body).await;
        assert!(c.closed().await);
        srv.stop().await;
    }

    /// The log cleaner compacts `__consumer_offsets` (cleanup.policy=compact): many commits of the
    /// same partitions shrink to about one record each, and a restart still finds the last ones.
    #[tokio::test]
    async fn the_cleaner_compacts_the_offsets_topic() {
        let mut cfg = config();
        for kv in [
            "offsets.topic.num.partitions=1",
            "offsets.topic.segment.bytes=4096",
            "log.cleaner.backoff.ms=20",
            "log.flush.scheduler.interval.ms=10",
        ] {
            cfg.apply_override(kv).unwrap();
        }
        let srv = start_in(cfg.clone(), tempfile::tempdir().unwrap()).await;
        let mut c = Client::connect(&srv.addr).await;
        create_t(&mut c).await;
        for i in 0..300 {
            let offs: Vec<(i32, i64)> = (0..4).map(|p| (p, i)).collect();
            assert_eq!(commit(&mut c, 8, "busy", -1, "", "t", &offs).await, vec![NONE; 4]);
        }
        // Each commit appended one batch of 4 records: at least 200 bytes (61-byte batch header,
        // ~40-byte key + value per record), so at least 60 KB went into the log.
        let written = 300 * 200;
        let mut size = srv.broker.log_stats().await.1;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while size * 4 > written && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            size = srv.broker.log_stats().await.1;
        }
        assert!(size * 4 <= written, "compaction left {size} of {written} bytes");
        drop(c);
        let dir = srv.stop().await;
        let srv = start_in(cfg, dir).await;
        let mut c = Client::connect(&srv.addr).await;
        let (_, ps) = fetch_offsets(&mut c, 8, "busy", "t", &[0, 1, 2, 3]).await;
        assert_eq!(ps.iter().map(|p| p.1).collect::<Vec<_>>(), vec![299; 4]);
        srv.stop().await;
    }

    /// Every advertised version of every group API: the response decodes completely and says NONE.
    #[tokio::test]
    async fn every_advertised_version_round_trips() {
        let srv = start_in(config(), tempfile::tempdir().unwrap()).await;
        let mut c = Client::connect(&srv.addr).await;
        create_t(&mut c).await;
        for v in 0..=7i16 {
            let g = format!("v{v}");
            let mut r = join(&mut c, v, &g, "").await;
            if v >= 4 {
                assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "JoinGroup v{v}");
                r = join(&mut c, v, &g, r.member_id.as_str()).await;
            }
            assert_eq!(
                (r.error_code, r.generation_id, r.members.len()),
                (NONE, 1, 1),
                "JoinGroup v{v}"
            );
            assert_eq!(r.protocol_name.as_deref(), Some("range"));
            let id = r.member_id.to_string();
            let sv = v.min(5);
            let s1: SyncGroupResponse =
                c.call(ApiKey::SyncGroup, sv, &sync_req(&g, 1, &id, &[(&id, b"a")])).await;
            assert_eq!((s1.error_code, &s1.assignment[..]), (NONE, &b"a"[..]), "SyncGroup v{sv}");
            // Stable: the same JoinGroup again answers at once with the current generation.
            let again = join(&mut c, v, &g, &id).await;
            assert_eq!(
                (again.error_code, again.generation_id),
                (NONE, 2),
                "a leader's JoinGroup in Stable rebalances"
            );
            let s2: SyncGroupResponse =
                c.call(ApiKey::SyncGroup, sv, &sync_req(&g, 2, &id, &[(&id, b"b")])).await;
            assert_eq!(&s2.assignment[..], b"b");
        }
        // One Stable group for the other APIs.
        let j = join_new(&mut c, "all").await;
        let id = j.member_id.to_string();
        let _: SyncGroupResponse =
            c.call(ApiKey::SyncGroup, 0, &sync_req("all", 1, &id, &[(&id, b"x")])).await;
        for v in 0..=4 {
            let mut r = HeartbeatRequest::default();
            r.group_id = GroupId(s("all"));
            r.generation_id = 1;
            r.member_id = s(&id);
            let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, v, &r).await;
            assert_eq!(h.error_code, NONE, "Heartbeat v{v}");
        }
        for v in 2..=8 {
            assert_eq!(
                commit(&mut c, v, "all", 1, &id, "t", &[(0, v as i64)]).await,
                vec![NONE],
                "OffsetCommit v{v}"
            );
        }
        for v in 1..=8 {
            let (err, ps) = fetch_offsets(&mut c, v, "all", "t", &[0]).await;
            assert_eq!((err, ps[0].1), (NONE, 8), "OffsetFetch v{v}");
        }
        // OffsetFetch v2+ with null topics: every committed offset of the group.
        let mut all = OffsetFetchRequest::default();
        all.group_id = GroupId(s("all"));
        all.topics = None;
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &all).await;
        assert_eq!(r.topics.len(), 1);
        for v in 0..=4 {
            let r: ListGroupsResponse =
                c.call(ApiKey::ListGroups, v, &ListGroupsRequest::default()).await;
            assert!(r.groups.iter().any(|g| g.group_id.as_str() == "all"), "ListGroups v{v}");
        }
        let mut only_empty = ListGroupsRequest::default();
        only_empty.states_filter = vec![s("Empty")];
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &only_empty).await;
        assert!(r.groups.iter().all(|g| g.group_state.as_str() == "Empty"));
        for v in 0..=5 {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![GroupId(s("all"))];
            let d: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, v, &r).await;
            assert_eq!(
                (
                    d.groups[0].error_code,
                    d.groups[0].group_state.as_str(),
                    d.groups[0].members.len()
                ),
                (NONE, "Stable", 1),
                "DescribeGroups v{v}"
            );
        }
        for v in 0..=5i16 {
            let g = format!("leave{v}");
            let j = join_new(&mut c, &g).await;
            let mut r = LeaveGroupRequest::default();
            r.group_id = GroupId(s(&g));
            if v >= 3 {
                let mut m = leave_group_request::MemberIdentity::default();
                m.member_id = j.member_id.clone();
                r.members = vec![m];
            } else {
                r.member_id = j.member_id.clone();
            }
            let l: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, v, &r).await;
            assert_eq!(l.error_code, NONE, "LeaveGroup v{v}");
            assert_eq!(
                describe(&mut c, &g).await.group_state.as_str(),
                "Empty",
                "LeaveGroup v{v} emptied the group"
            );
        }
        srv.stop().await;
    }
}

mod both_worlds {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use broker::group::coordinator::OffsetToCommit;
    use broker::group::state::{JoinRequest, Leaver};
    use broker::{Broker, BrokerConfig};
    use bytes::Bytes;
    use disk_model::clock::Clock;
    use disk_model::sim::{DeviceProfile, PageCacheConfig, SimDisk, SimDiskConfig};
    use disk_model::Storage;
    use tokio::sync::watch;

    use super::support;

    fn join_req(member: &str, session_ms: i32) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: 2000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"s"))],
            require_known_member_id: false,
        }
    }

    async fn open(storage: Arc<dyn Storage>) -> (Arc<Broker>, watch::Sender<bool>) {
        open_with(storage, |_| {}).await
    }

    async fn open_with(
        storage: Arc<dyn Storage>,
        tweak: impl FnOnce(&mut BrokerConfig),
    ) -> (Arc<Broker>, watch::Sender<bool>) {
        let mut c = BrokerConfig::default();
        tweak(&mut c);
        c.apply_override("group.initial.rebalance.delay.ms=0").unwrap();
        c.apply_override("group.min.session.timeout.ms=10").unwrap();
        c.apply_override("offsets.topic.num.partitions=3").unwrap();
        let b = Arc::new(Broker::open(c, storage, Path::new("")).await.unwrap());
        let (tx, rx) = watch::channel(false);
        tokio::spawn(broker::tasks::run(b.clone(), rx));
        (b, tx)
    }

    /// Two members, one goes silent: it is evicted no sooner than its session timeout, the other
    /// carries on alone; offsets and the group survive a restart. Returns what happened, with
    /// times relative to the start (virtual under madsim).
    async fn scenario(seed: u64) -> Vec<String> {
        let storage = sim_disk(seed);
        let (b, stop) = open(storage.clone()).await;
        let start = tokio::time::Instant::now();
        let ms = move || start.elapsed().as_millis();
        let mut log = Vec::new();

        let a = b.groups.join(&b, "g", join_req("", 1000)).await;
        assert_eq!((a.error, a.generation), (0, 1));
        let sa = b
            .groups
            .sync(
                &b,
                "g",
                1,
                &a.member_id,
                None,
                None,
                None,
                vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
            )
            .await;
        assert_eq!(&sa.assignment[..], b"all");
        // B joins (waits); A sees the rebalance on its heartbeat and rejoins.
        let b2 = b.clone();
        let joining =
            tokio::spawn(async move { b2.groups.join(&b2, "g", join_req("", 1000)).await });
        while b.groups.heartbeat("g", 1, &a.member_id, None).await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let a2 = b.groups.join(&b, "g", join_req(&a.member_id, 1000)).await;
        let jb = joining.await.unwrap();
        assert_eq!((a2.generation, jb.generation), (2, 2));
        let b3 = b.clone();
        let idb = jb.member_id.clone();
        let syncing = tokio::spawn(async move {
            b3.groups.sync(&b3, "g", 2, &idb, None, None, None, vec![]).await
        });
        let asg = vec![
            (a.member_id.clone(), Bytes::from_static(b"p0")),
            (jb.member_id.clone(), Bytes::from_static(b"p1")),
        ];
        let sa = b.groups.sync(&b, "g", 2, &a.member_id, None, None, None, asg).await;
        let sb = syncing.await.unwrap();
        assert_eq!((&sa.assignment[..], &sb.assignment[..]), (&b"p0"[..], &b"p1"[..]));
        let b_last_seen = ms();
        log.push(format!("{} gen2 stable", b_last_seen));
        // B goes silent; A heartbeats every 200 ms until it is told to rebalance.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let code = b.groups.heartbeat("g", 2, &a.member_id, None).await;
            if code != 0 {
                let at = ms();
                assert!(
                    at >= b_last_seen + 1000,
                    "B evicted after {} ms, before its 1000 ms session",
                    at - b_last_seen
                );
                log.push(format!("{at} heartbeat error {code}"));
                break;
            }
        }
        let a3 = b.groups.join(&b, "g", join_req(&a.member_id, 1000)).await;
        assert_eq!((a3.generation, a3.members.len()), (3, 1));
        let _ = b
            .groups
            .sync(
                &b,
                "g",
                3,
                &a.member_id,
                None,
                None,
                None,
                vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
            )
            .await;
        let offs = [OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset: 99,
            leader_epoch: -1,
            metadata: None,
        }];
        assert_eq!(b.groups.commit(&b, "g", 3, &a.member_id, None, &offs).await, Ok(vec![0]));
        assert_eq!(
            b.groups.commit(&b, "g", 2, &a.member_id, None, &offs).await,
            Err(22),
            "stale generation"
        );
        log.push(format!("{} committed", ms()));
        let _ = stop.send(true);
        b.shutdown().await.unwrap();
        drop(b);

        let (b, stop) = open(storage).await;
        let got = b.groups.fetch_offsets("g", Some(&[("t".to_string(), vec![0])])).await.unwrap();
        assert_eq!(got[0].1[0].1.as_ref().map(|c| c.offset), Some(99));
        let d = b.groups.describe("g").await.unwrap();
        assert_eq!((d.state, d.members.len()), ("Stable", 1));
        let left = b
            .groups
            .leave(&b, "g", &[Leaver { member_id: a.member_id.clone(), instance_id: None }])
            .await;
        assert_eq!(left, Ok(vec![0]));
        assert_eq!(b.groups.describe("g").await.unwrap().state, "Empty");
        log.push(format!("{} reloaded and left", ms()));
        let _ = stop.send(true);
        b.shutdown().await.unwrap();
        log
    }

    fn sim_disk(seed: u64) -> Arc<dyn Storage> {
        let page_cache = PageCacheConfig { capacity_bytes: 1 << 20, ..PageCacheConfig::default() };
        Arc::new(SimDisk::new(
            SimDiskConfig { device: DeviceProfile::nvme(), page_cache, seed, mounts: Vec::new() },
            Clock::runtime(),
        ))
    }

    /// Expired offsets and emptied groups are purged with tombstones: gone after a restart too.
    #[test]
    fn expired_offsets_and_empty_groups_are_tombstoned() {
        support::block_on(9, async {
            let storage = sim_disk(9);
            let short = |c: &mut BrokerConfig| {
                c.group.offsets_retention_ms = 300;
                c.group.offsets_retention_check_interval_ms = 50;
            };
            let (b, stop) = open_with(storage.clone(), short).await;
            let offs = [OffsetToCommit {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            }];
            assert_eq!(b.groups.commit(&b, "simple", -1, "", None, &offs).await, Ok(vec![0]));
            // A consumer group that empties (its member leaves) and has no offsets: deleted.
            let j = b.groups.join(&b, "gone", join_req("", 1000)).await;
            let _ = b
                .groups
                .leave(&b, "gone", &[Leaver { member_id: j.member_id.clone(), instance_id: None }])
                .await;
            assert_eq!(b.groups.describe("gone").await.unwrap().state, "Empty");
            let asked = [("t".to_string(), vec![0])];
            let mut rounds = 0;
            while b.groups.fetch_offsets("simple", Some(&asked)).await.unwrap()[0].1[0].1.is_some()
            {
                rounds += 1;
                assert!(rounds < 400, "offsets never expired");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while b.groups.describe("gone").await.unwrap().state != "Dead" {
                rounds += 1;
                assert!(rounds < 400, "empty group never removed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = stop.send(true);
            b.shutdown().await.unwrap();
            drop(b);
            // Reloaded from the log (long retention now): the tombstones won.
            let (b, stop) = open(storage).await;
            assert_eq!(
                b.groups.fetch_offsets("simple", Some(&asked)).await.unwrap()[0].1[0].1,
                None
            );
            assert_eq!(b.groups.describe("gone").await.unwrap().state, "Dead");
            assert!(b.groups.list().await.unwrap().is_empty());
            let _ = stop.send(true);
            b.shutdown().await.unwrap();
        });
    }

    #[test]
    fn eviction_offsets_and_restart() {
        let first = support::block_on(5, scenario(5));
        assert_eq!(first.len(), 4);
        #[cfg(madsim)]
        assert_eq!(first, support::block_on(5, scenario(5)), "same seed, same history");
    }
}
