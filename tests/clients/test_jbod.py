"""JBOD: `broker serve --override log.dirs=d0,d1` with real clients. confluent-kafka creates a
topic and produces to and consumes from every partition; kafka-python's DescribeLogDirs shows
both directories, each with its own half of the partitions; the files are where it says."""
import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from conftest import Broker

TIMEOUT = 30
PARTITIONS = 4
PER_PARTITION = 50


def test_log_dirs_spread_partitions_and_real_clients_see_both(data_dir):
    dirs = [os.path.join(data_dir, "d0"), os.path.join(data_dir, "d1")]
    b = Broker(data_dir, ["--override", "log.dirs=" + ",".join(dirs)], data_dir_flag=False).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.addr})
        admin.create_topics([NewTopic("jbod", PARTITIONS, 1)])["jbod"].result(TIMEOUT)
        p = Producer({"bootstrap.servers": b.addr, "acks": "all", "linger.ms": 5})
        for part in range(PARTITIONS):
            for i in range(PER_PARTITION):
                p.produce("jbod", value=b"p%d-%d" % (part, i), partition=part)
        assert p.flush(TIMEOUT) == 0
        c = Consumer({"bootstrap.servers": b.addr, "group.id": "jbod", "enable.auto.commit": False})
        c.assign([TopicPartition("jbod", part, OFFSET_BEGINNING) for part in range(PARTITIONS)])
        got, deadline = set(), time.time() + TIMEOUT
        while len(got) < PARTITIONS * PER_PARTITION and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.add(m.value())
        c.close()
        assert got == {b"p%d-%d" % (part, i) for part in range(PARTITIONS) for i in range(PER_PARTITION)}
        kp = KafkaAdminClient(bootstrap_servers=b.addr)
        described = kp.describe_log_dirs()
        kp.close()
        # One broker; its log dirs in order, each with the partitions it holds and their sizes.
        [only] = described
        layout = [(d["log_dir"], sorted(p["partition_index"] for t in d["topics"] for p in t["partitions"]))
                  for d in only["log_dirs"]]
        assert layout == [(os.path.realpath(dirs[0]), [0, 2]), (os.path.realpath(dirs[1]), [1, 3])], described
        sizes = [p["partition_size"] for d in only["log_dirs"] for t in d["topics"] for p in t["partitions"]]
        assert all(s > 0 for s in sizes), sizes
        assert os.path.isdir(os.path.join(dirs[0], "jbod-0")) and os.path.isdir(os.path.join(dirs[0], "jbod-2"))
        assert os.path.isdir(os.path.join(dirs[1], "jbod-1")) and os.path.isdir(os.path.join(dirs[1], "jbod-3"))
        assert not os.path.exists(os.path.join(dirs[1], "jbod-0"))
    finally:
        assert b.stop() == 0
    for d in dirs:
        assert os.path.exists(os.path.join(d, ".kafka_cleanshutdown")), d
