"""Partition, record and group admin APIs (issue 15) from real admin clients.

- CreatePartitions: confluent-kafka's and kafka-python's create_partitions grow a topic (a
  validate_only request changes nothing, a decrease is refused with INVALID_PARTITIONS); a
  producer writes to the new partition. On a 3-node cluster the new partitions get three replicas.
- DeleteRecords: delete_records moves the low watermark; a consumer from the beginning starts
  there; beyond the high watermark is OFFSET_OUT_OF_RANGE. On a 3-node cluster every replica's
  log start follows the leader's (seen after the leader moves).
- DeleteGroups: only empty groups go (NON_EMPTY_GROUP while a consumer is in it, then
  GROUP_ID_NOT_FOUND once deleted).
- DeleteTopics: the deleted topic's committed offsets go from every group (one node and a
  3-node cluster); another topic's stay, and a topic created again starts without them.
"""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from test_cluster import cluster, wait_for  # noqa: F401 (the fixture)


def name(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def admin(addr):
    return AdminClient({"bootstrap.servers": addr})


def create(a, topic, partitions, rf=1):
    a.create_topics([NewTopic(topic, partitions, rf)])[topic].result(15)


def partition_count(a, topic):
    return len(a.list_topics(topic, timeout=10).topics[topic].partitions)


def produce(addr, topic, n, partition=None, value=b"v"):
    p = Producer({"bootstrap.servers": addr, "linger.ms": 0, "acks": "all"})
    delivered = []
    for i in range(n):
        kw = {} if partition is None else {"partition": partition}
        p.produce(topic, value=value + b"-%d" % i, on_delivery=lambda e, m: delivered.append((e, m)), **kw)
        p.flush(15)
    assert all(e is None for e, _ in delivered), delivered
    return [m.offset() for _, m in delivered]


def first_offset_consumed(addr, topic, partition=0, timeout_s=20):
    c = Consumer({"bootstrap.servers": addr, "group.id": name("first"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, -2)])  # OFFSET_BEGINNING
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m.offset()
        raise AssertionError("nothing consumed from %s-%d" % (topic, partition))
    finally:
        c.close()


def test_confluent_create_partitions(broker):
    a = admin(broker.addr)
    t = name("grow")
    create(a, t, 2)
    a.create_partitions([NewPartitions(t, 4)], validate_only=True)[t].result(15)
    assert partition_count(a, t) == 2, "validate_only changed the topic"
    a.create_partitions([NewPartitions(t, 4)])[t].result(15)
    wait_for("4 partitions", 10, lambda: partition_count(a, t) == 4 or None)
    produce(broker.addr, t, 1, partition=3)
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions(t, 3)])[t].result(15)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_kafka_python_create_partitions_and_delete_records(broker):
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions as KpNewPartitions
    from kafka.errors import InvalidPartitionsError
    from kafka.structs import TopicPartition as KpTopicPartition

    t = name("kp")
    create(admin(broker.addr), t, 1)
    produce(broker.addr, t, 5, partition=0)
    kp = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=15000)
    try:
        kp.create_partitions({t: KpNewPartitions(total_count=3)})
        assert partition_count(admin(broker.addr), t) == 3
        with pytest.raises(InvalidPartitionsError):
            kp.create_partitions({t: KpNewPartitions(total_count=2)})
        out = kp.delete_records({KpTopicPartition(t, 0): 3})
        assert list(out.values())[0]["low_watermark"] == 3, out
        # DescribeLogDirs: one dir per broker; partition 0 holds the 5 records' bytes.
        [b] = kp.describe_log_dirs()
        [d] = b["log_dirs"]
        assert d["error_code"] == 0 and d["log_dir"].endswith("data"), d
        [topic] = [x for x in d["topics"] if x["name"] == t]
        sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
        assert sizes[0] > 0 and sizes[1] == 0 and sizes[2] == 0, sizes
        assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in topic["partitions"])
    finally:
        kp.close()
    assert first_offset_consumed(broker.addr, t) == 3


def test_kafka_python_group_admin(broker):
    from kafka import KafkaAdminClient
    from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError
    from kafka.structs import TopicPartition as KpTopicPartition

    a = admin(broker.addr)
    t, other = name("sub"), name("other")
    create(a, t, 1)
    create(a, other, 1)
    produce(broker.addr, t, 1, partition=0)
    g = name("g")
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": g, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    c.subscribe([t])
    wait_for("a record", 30, lambda: (lambda m: m is not None and not m.error())(c.poll(0.5)) or None)
    c.commit(asynchronous=False)
    c.commit(offsets=[TopicPartition(other, 0, 1)], asynchronous=False)
    kp = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=15000)
    try:
        out = kp.delete_group_offsets(g, [KpTopicPartition(t, 0), KpTopicPartition(other, 0)])
        assert out[KpTopicPartition(t, 0)] is GroupSubscribedToTopicError, out
        assert out[KpTopicPartition(other, 0)] is NoError, out
        c.close()
        assert kp.delete_groups([g]) == {g: "OK"}
        try:
            again = kp.delete_groups([g])
        except GroupIdNotFoundError:
            again = {g: "GroupIdNotFoundError"}
        assert "GroupIdNotFound" in repr(again[g]), again
    finally:
        kp.close()


def test_elect_leaders_on_one_broker(broker):
    from confluent_kafka import ElectionType

    a = admin(broker.addr)
    t = name("elect")
    create(a, t, 2)
    res = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(t, 0)]).result(15)
    err = res[TopicPartition(t, 0)]
    assert err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED, res


def test_confluent_delete_records(broker):
    a = admin(broker.addr)
    t = name("records")
    create(a, t, 1)
    produce(broker.addr, t, 10, partition=0)
    res = a.delete_records([TopicPartition(t, 0, 4)])
    deleted = list(res.values())[0].result(15)
    assert deleted.low_watermark == 4
    lo, hi = Consumer({"bootstrap.servers": broker.addr, "group.id": name("wm")}).get_watermark_offsets(
        TopicPartition(t, 0), timeout=10)
    assert (lo, hi) == (4, 10)
    assert first_offset_consumed(broker.addr, t) == 4
    with pytest.raises(KafkaException) as e:
        list(a.delete_records([TopicPartition(t, 0, 11)]).values())[0].result(15)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # -1: up to the high watermark.
    assert list(a.delete_records([TopicPartition(t, 0, -1)]).values())[0].result(15).low_watermark == 10


def test_delete_groups_only_when_empty(broker):
    a = admin(broker.addr)
    t = name("groups")
    create(a, t, 1)
    produce(broker.addr, t, 2, partition=0)
    g = name("g")
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": g, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    c.subscribe([t])
    wait_for("a record", 30, lambda: (lambda m: m is not None and not m.error())(c.poll(0.5)) or None)
    c.commit(asynchronous=False)
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([g])[g].result(15)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.close()
    a.delete_consumer_groups([g])[g].result(15)
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([g])[g].result(15)
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND


def test_cluster_create_partitions_and_delete_records(cluster):  # noqa: F811
    t = name("ct")
    cluster.create(t, 1)
    a = cluster.admin
    a.create_partitions([NewPartitions(t, 3)])[t].result(15)
    wait_for("3 partitions, each with 3 replicas in sync", 30, lambda: (
        partition_count(a, t) == 3
        and all((cluster.partition(t, p) or (-1, []))[1] == [0, 1, 2] for p in range(3))) or None)
    # Every broker serves the new count before a fresh producer asks one of them (metadata
    # reaches each broker on its own pull; a CI run once saw _UNKNOWN_PARTITION here).
    wait_for("every broker shows 3 partitions", 30, lambda: all(
        partition_count(admin(n.addr), t) == 3 for n in cluster.nodes) or None)
    md = a.list_topics(t, timeout=10).topics[t]
    assert all(sorted(md.partitions[p].replicas) == [0, 1, 2] for p in range(3))
    produce(cluster.bootstrap, t, 1, partition=2)
    produce(cluster.bootstrap, t, 10, partition=0)
    deleted = list(a.delete_records([TopicPartition(t, 0, 6)]).values())[0].result(15)
    assert deleted.low_watermark == 6
    # The followers follow the leader's log start from its fetch responses: an acks=all write
    # after the deletion completes only once both followers fetched past a response carrying it.
    # Then the leader stops, and the new one starts at 6 too.
    produce(cluster.bootstrap, t, 1, partition=0)
    leader = cluster.partition(t, 0)[0]
    cluster.nodes[leader].stop()
    wait_for("a new leader", 30, lambda: (cluster.partition(t, 0) or (leader,))[0] not in (leader, -1) or None)
    assert first_offset_consumed(cluster.bootstrap, t) == 6


def committed(a, group, topic):
    """The group's committed offsets of `topic` as {partition: offset} (ListConsumerGroupOffsets)."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(15)
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic and tp.offset >= 0}


def commit_offsets(addr, group, offsets):
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=offsets, asynchronous=False)
    finally:
        c.close()


def check_offsets_go_with_their_topic(addr, a, create_topic):
    """A deleted topic's committed offsets go from every group (Kafka removes them); another
    topic's stay."""
    t, keep, g = name("gone"), name("kept"), name("g")
    create_topic(t, 2)
    create_topic(keep, 1)
    commit_offsets(addr, g, [TopicPartition(t, 0, 5), TopicPartition(t, 1, 7), TopicPartition(keep, 0, 3)])
    assert committed(a, g, t) == {0: 5, 1: 7}
    a.delete_topics([t])[t].result(30)
    wait_for("the deleted topic's offsets removed", 30, lambda: committed(a, g, t) == {} or None)
    assert committed(a, g, keep) == {0: 3}
    # A topic created again under the name starts with no committed offset either.
    create_topic(t, 2)
    assert committed(a, g, t) == {}


def test_deleting_a_topic_removes_its_committed_offsets(broker):
    a = admin(broker.addr)
    check_offsets_go_with_their_topic(broker.addr, a, lambda t, n: create(a, t, n))


def test_cluster_deleting_a_topic_removes_its_committed_offsets(cluster):  # noqa: F811
    check_offsets_go_with_their_topic(cluster.bootstrap, cluster.admin, lambda t, n: cluster.create(t, n))
