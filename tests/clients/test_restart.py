"""Restart: after a clean stop (SIGTERM) and after kill -9, every acknowledged record is readable."""
import os
import signal
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING

from conftest import Broker


def produce_acked(addr, topic, start, n):
    acked = []

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.offset(), msg.value()))

    p = Producer({"bootstrap.servers": addr, "acks": "all", "linger.ms": 2, "compression.type": "lz4"})
    for i in range(start, start + n):
        p.produce(topic, value=b"record-%d" % i, partition=0, on_delivery=on_delivery)
        p.poll(0)
    p.flush(30)
    return acked


def read_all(addr, topic, want, timeout=30):
    c = Consumer({"bootstrap.servers": addr, "group.id": "loglab-restart", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got, deadline = [], time.time() + timeout
    try:
        while len(got) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
    finally:
        c.close()
    return got


def test_restart_clean_and_kill9(data_dir):
    b = Broker(data_dir).start()
    acked = produce_acked(b.addr, "rs", 0, 2000)
    assert len(acked) == 2000
    assert b.stop(signal.SIGTERM) == 0
    assert os.path.exists(os.path.join(data_dir, ".kafka_cleanshutdown"))

    b = Broker(data_dir).start()
    assert not os.path.exists(os.path.join(data_dir, ".kafka_cleanshutdown"))
    got = read_all(b.addr, "rs", len(acked))
    assert sorted(got) == sorted(acked)
    acked += produce_acked(b.addr, "rs", 2000, 3000)
    assert len(acked) == 5000
    b.stop(signal.SIGKILL)

    b = Broker(data_dir).start()
    try:
        got = read_all(b.addr, "rs", len(acked))
        assert sorted(got) == sorted(acked), "acknowledged records lost after kill -9"
        assert "kafka_server_brokertopicmetrics_bytesout_total" in b.metrics()
    finally:
        assert b.stop() == 0
