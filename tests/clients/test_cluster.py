"""A three-node combined-mode cluster (`broker serve --node-id N --controller-quorum ...`) on
loopback, driven by confluent-kafka (librdkafka) and kafka-python.

- A topic with replication factor 3 has three replicas, all in sync.
- confluent-kafka produces with acks=all and idempotence while the partition leader is killed with
  SIGKILL and restarted, three times; every acknowledged record is consumed afterwards, and after
  a clean stop of all three nodes the replicas' logs hold the same record batches, byte for byte.
  The time from each kill to the first Metadata naming a new leader is printed (`pytest -s`).
- kafka-python's acks=all producer rides out a leader kill too.
- With min.insync.replicas=3 and one replica down, acks=all is refused with NOT_ENOUGH_REPLICAS
  (once the leader itself knows the ISR shrank) while acks=1 is still accepted.
"""
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BROKER, START_TIMEOUT

# Fast failure detection, as an operator of a small cluster would set it.
SETTINGS = [
    "broker.heartbeat.interval.ms=200",
    "broker.session.timeout.ms=2000",
    "controller.quorum.fetch.timeout.ms=500",
    "controller.quorum.election.timeout.ms=500",
    "replica.lag.time.max.ms=5000",
    "replica.fetch.backoff.ms=200",
    "offsets.topic.num.partitions=3",
]


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, node_id, data_dir, port, cport, quorum, extra):
        self.node_id = node_id
        self.data_dir = data_dir
        self.addr = "127.0.0.1:%d" % port
        self.cport = cport
        self.quorum = quorum
        self.extra = extra
        self.proc = None
        self.log_path = data_dir + ".log"

    def start(self):
        cmd = [BROKER, "serve", "--node-id", str(self.node_id), "--listen", self.addr,
               "--data-dir", self.data_dir, "--controller-listen", "127.0.0.1:%d" % self.cport,
               "--controller-quorum", self.quorum]
        for kv in SETTINGS + self.extra:
            cmd += ["--override", kv]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"))
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("node %d exited; see %s" % (self.node_id, self.log_path))
            if re.search(r"loglab broker listening on", line):
                return self
        raise RuntimeError("node %d did not start in time" % self.node_id)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc = None


class Cluster:
    def __init__(self, root, extra=()):
        ports = free_ports(6)
        quorum = ",".join("%d@127.0.0.1:%d" % (i, ports[3 + i]) for i in range(3))
        self.nodes = [Node(i, os.path.join(root, "node-%d" % i), ports[i], ports[3 + i], quorum, list(extra)) for i in range(3)]
        for n in self.nodes:
            os.makedirs(n.data_dir)
        self.bootstrap = ",".join(n.addr for n in self.nodes)

    def start(self):
        for n in self.nodes:
            n.start()
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        wait_for("3 brokers in Metadata", 30, lambda: self.broker_count() == 3 or None)
        return self

    def broker_count(self):
        try:
            return len(self.admin.list_topics(timeout=5).brokers)
        except Exception:  # before the quorum forms: a partial answer
            return 0

    def partition(self, topic, p=0):
        """(leader, isr) as the cluster reports them now, or None."""
        try:
            md = self.admin.list_topics(topic, timeout=5)
        except Exception:
            return None
        t = md.topics.get(topic)
        if t is None or t.error is not None or p not in t.partitions:
            return None
        part = t.partitions[p]
        return part.leader, sorted(part.isrs)

    def create(self, topic, partitions=1):
        for _ in range(20):
            fs = self.admin.create_topics([NewTopic(topic, partitions, 3)])
            try:
                fs[topic].result(10)
                break
            except Exception as e:  # a retry after a controller change may find it created
                if "already exists" in str(e).lower():
                    break
                time.sleep(0.5)
        for p in range(partitions):
            wait_for("ISR of 3 for %s-%d" % (topic, p), 30, lambda: (self.partition(topic, p) or (-1, []))[1] == [0, 1, 2] or None)

    def stop(self):
        for n in self.nodes:
            n.stop()


def wait_for(what, timeout_s, f, every=0.05):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("%s: not within %ss" % (what, timeout_s))


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory(prefix="loglab-cluster-") as d:
        c = Cluster(d).start()
        try:
            yield c
        finally:
            c.stop()


def read_batches(data_dir, topic, partition):
    """Every record batch in a partition's segment files, in offset order: [(base offset, bytes)]."""
    pdir = os.path.join(data_dir, "%s-%d" % (topic, partition))
    out = []
    for name in sorted(f for f in os.listdir(pdir) if f.endswith(".log")):
        data = open(os.path.join(pdir, name), "rb").read()
        pos = 0
        while pos + 12 <= len(data):
            base, length = struct.unpack(">qi", data[pos:pos + 12])
            if length <= 0 or pos + 12 + length > len(data):
                break
            out.append((base, data[pos:pos + 12 + length]))
            pos += 12 + length
    return out


def consume_all(bootstrap, topic, partitions, want, timeout_s=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-%d" % time.time_ns(), "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = set()
    deadline = time.time() + timeout_s
    while time.time() < deadline and not want <= seen:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.add(m.value())
    c.close()
    return seen


def test_rf3_topic_has_three_replicas_in_sync(cluster):
    cluster.create("three")
    md = cluster.admin.list_topics("three", timeout=5)
    p = md.topics["three"].partitions[0]
    assert sorted(p.replicas) == [0, 1, 2] and sorted(p.isrs) == [0, 1, 2] and p.leader in (0, 1, 2)


def test_acks_all_survives_leader_kills_and_replicas_agree(cluster):
    topic = "orders"
    cluster.create(topic)
    acked, errors = set(), []

    def on_delivery(err, msg):
        if err is None:
            acked.add(msg.value())
        else:
            errors.append(err)

    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 60000})
    sent = 0

    def produce_for(seconds):
        nonlocal sent
        end = time.time() + seconds
        while time.time() < end:
            p.produce(topic, value=b"v%08d" % sent, on_delivery=on_delivery)
            sent += 1
            p.poll(0)
            time.sleep(0.002)

    elections = []
    produce_for(1.5)
    for _ in range(3):
        leader, _ = cluster.partition(topic)
        victim = cluster.nodes[leader]
        killed_at = time.time()
        victim.stop(signal.SIGKILL)
        # Keep producing while the cluster elects a new leader.
        new = None
        while new is None:
            produce_for(0.05)
            st = cluster.partition(topic)
            if st and st[0] not in (-1, leader):
                new = st[0]
            assert time.time() - killed_at < 30, "no new leader"
        elections.append(time.time() - killed_at)
        produce_for(1.0)
        victim.start()
        # It truncates by epoch, catches up, and rejoins the ISR.
        wait_for("killed leader back in the ISR", 60, lambda: (cluster.partition(topic) or (-1, []))[1] == [0, 1, 2] or (produce_for(0.05) and None))
    produce_for(1.0)
    assert p.flush(60) == 0, "undelivered records"
    print("\nleader kill -> new leader in Metadata: %s s" % ", ".join("%.2f" % e for e in elections))
    assert not errors, errors[:3]
    assert len(acked) == sent, "acks=all with idempotence: every record acknowledged (%d of %d)" % (len(acked), sent)

    seen = consume_all(cluster.bootstrap, topic, 1, acked)
    missing = acked - seen
    assert not missing, "%d acknowledged records not consumed, e.g. %s" % (len(missing), sorted(missing)[:5])

    # The replicas agree: stop every node cleanly and compare the batches on disk.
    wait_for("ISR of 3", 30, lambda: (cluster.partition(topic) or (-1, []))[1] == [0, 1, 2] or None)
    # Every follower has fetched up to the leader's log end: the running nodes' segment files (the
    # brokers write them with write(2), so a reader sees them before any fsync) hold the same
    # batches. Bounded; then the clean stop below must not change that.
    def logs_agree():
        logs = [read_batches(n.data_dir, topic, 0) for n in cluster.nodes]
        return logs[0] and all(log == logs[0] for log in logs[1:])
    wait_for("followers' logs equal to the leader's", 30, logs_agree)
    leader, _ = cluster.partition(topic)
    for n in cluster.nodes:
        if n.node_id != leader:
            n.stop()
    cluster.nodes[leader].stop()
    logs = [read_batches(n.data_dir, topic, 0) for n in cluster.nodes]
    assert logs[0], "empty log"
    for n, log in zip(cluster.nodes[1:], logs[1:]):
        assert [b for b, _ in log] == [b for b, _ in logs[0]], "node %d has other batch offsets" % n.node_id
        assert log == logs[0], "node %d's batches differ from node 0's" % n.node_id


def test_kafka_python_acks_all_across_a_leader_kill(cluster):
    from kafka import KafkaProducer
    topic = "kp"
    cluster.create(topic)
    prod = KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all", retries=20,
                         retry_backoff_ms=200, request_timeout_ms=10000, max_in_flight_requests_per_connection=1)
    futures = [prod.send(topic, b"k%05d" % i) for i in range(200)]
    leader, _ = cluster.partition(topic)
    cluster.nodes[leader].stop(signal.SIGKILL)
    futures += [prod.send(topic, b"k%05d" % i) for i in range(200, 400)]
    prod.flush(60)
    acked = {b"k%05d" % i for i, f in enumerate(futures) if f.succeeded()}
    assert len(acked) == 400, "kafka-python: %d of 400 acknowledged" % len(acked)
    prod.close()
    cluster.nodes[leader].start()
    seen = consume_all(cluster.bootstrap, topic, 1, acked)
    assert acked <= seen


def test_min_insync_replicas_refuses_acks_all():
    with tempfile.TemporaryDirectory(prefix="loglab-cluster-") as d:
        c = Cluster(d, extra=["min.insync.replicas=3"]).start()
        try:
            topic = "strict"
            c.create(topic)
            leader, _ = c.partition(topic)
            follower = next(n for n in c.nodes if n.node_id != leader)
            follower.stop(signal.SIGKILL)
            wait_for("ISR of 2", 30, lambda: len((c.partition(topic) or (-1, [0, 1, 2]))[1]) == 2 or None)
            results = {}

            def cb(name):
                def f(err, msg):
                    results[name] = err
                return f

            # The Metadata above may come from a broker that learned of the shrink before the
            # leader did: until the leader's own ISR has shrunk it appends and then refuses
            # (NOT_ENOUGH_REPLICAS_AFTER_APPEND once the shrink reaches it). Retry until it refuses
            # before the append (bounded); no attempt may be acknowledged.
            strict = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "message.timeout.ms": 3000, "retries": 0})
            refusals = (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError._MSG_TIMED_OUT)
            codes, deadline = [], time.time() + 30
            while not codes or (codes[-1] != KafkaError.NOT_ENOUGH_REPLICAS and time.time() < deadline):
                results.pop("all", None)
                strict.produce(topic, b"x", on_delivery=cb("all"))
                strict.flush(10)
                assert "all" in results, "acks=all: no delivery report within 10 s"
                assert results["all"] is not None, "acks=all acknowledged with 2 of min.insync.replicas=3 in sync"
                assert results["all"].code() in refusals, results["all"]
                codes.append(results["all"].code())
            loose = Producer({"bootstrap.servers": c.bootstrap, "acks": 1, "message.timeout.ms": 10000})
            loose.produce(topic, b"y", on_delivery=cb("one"))
            loose.flush(15)
            assert results["all"].code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT), codes
            if results["all"].code() == KafkaError._MSG_TIMED_OUT:
                log = open(c.nodes[leader].log_path).read()
                assert "NOT_ENOUGH_REPLICAS" in log or "not enough" in log.lower()
            assert results["one"] is None, results["one"]
        finally:
            c.stop()
