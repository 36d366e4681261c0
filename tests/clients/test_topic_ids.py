"""Delete and recreate with topic ids (issue 15), three `broker serve` processes driven by
confluent-kafka: a topic with 10 partitions takes records, is deleted, and is created again with
3 partitions. A consumer of the new topic gets exactly the new topic's records, each partition's
offsets start at 0, the topic id is new, and every broker's old partition directories are gone
(renamed `…-delete`, then removed; `log.segment.delete.delay.ms=500` here).
Before topic ids the brokers kept the old directories, led the new partitions at the old log end
offset, and the consumer waited forever.
"""
import os
import time

from confluent_kafka import Consumer, Producer, TopicCollection, TopicPartition, OFFSET_BEGINNING

from test_cluster import Cluster, wait_for

TOPIC = "recycled"


def produce(bootstrap, values, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i, v in enumerate(values):
        p.produce(TOPIC, v, partition=i % partitions)
    assert p.flush(30) == 0


def on_new_incarnation(cluster):
    """Every node holds exactly the new topic's 3 partition directories, all with one topic id."""
    ids = set()
    for n in cluster.nodes:
        dirs = sorted(f for f in os.listdir(n.data_dir) if f.startswith(TOPIC + "-") and not f.endswith("-delete"))
        if dirs != ["%s-%d" % (TOPIC, p) for p in range(3)]:
            return False
        for d in dirs:
            try:
                with open(os.path.join(n.data_dir, d, "partition.metadata")) as f:
                    ids.add(f.read())
            except FileNotFoundError:
                return False
    return len(ids) == 1


def topic_id(cluster):
    d = cluster.admin.describe_topics(TopicCollection([TOPIC]))[TOPIC].result(30)
    return str(d.topic_id)


def consume(bootstrap, partitions, want):
    """Everything the topic's partitions hold from offset 0 (polls 2 s past the last record),
    and each partition's (low, high) watermarks."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "recycled-reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(partitions)])
    got, deadline = [], time.time() + 30
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.partition(), m.offset(), m.value()))
                if len(got) == want:
                    deadline = min(deadline, time.time() + 2)
        marks = [c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10) for p in range(partitions)]
    finally:
        c.close()
    return got, marks


def test_a_recreated_topic_starts_empty(tmp_path):
    c = Cluster(str(tmp_path), extra=["log.segment.delete.delay.ms=500"]).start()
    try:
        c.create(TOPIC, 10)
        old_id = topic_id(c)
        produce(c.bootstrap, [b"old-%d" % i for i in range(40)], 10)
        c.admin.delete_topics([TOPIC])[TOPIC].result(30)
        # DeleteTopics answers once every live broker acted on the deletion: none lists it.
        assert TOPIC not in c.admin.list_topics(timeout=5).topics
        c.create(TOPIC, 3)
        assert topic_id(c) != old_id
        # Produce at once. This used to lose acknowledged writes: a broker that had not yet acted
        # on the delete still led the old partition under the same name and acknowledged into the
        # old log, which it then retired. Now the name is created again only once every live
        # broker acted on the deletion (README "Topic ids").
        new = [b"new-%d" % i for i in range(9)]
        produce(c.bootstrap, new, 3)
        got, marks = consume(c.bootstrap, 3, len(new))
        assert sorted(v for _, _, v in got) == sorted(new), got
        assert sorted((p, o) for p, o, _ in got) == [(p, o) for p in range(3) for o in range(3)]
        assert marks == [(0, 3)] * 3, marks
        assert on_new_incarnation(c), "every node holds the new topic's 3 directories, one id"

        def old_dirs_gone():
            left = [f for n in c.nodes for f in os.listdir(n.data_dir) if f.startswith(TOPIC)]
            return sorted(left) == sorted(["%s-%d" % (TOPIC, p) for p in range(3)] * 3) or None
        wait_for("old partition directories removed", 30, old_dirs_gone)
    finally:
        c.stop()
