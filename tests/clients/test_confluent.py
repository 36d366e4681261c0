"""confluent-kafka: acks 0/1/all x every compression type; consume by partition from earliest,
from a timestamp, from latest."""
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING, OFFSET_END

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["0", "1", "all"]


def produce(addr, topic, msgs, acks="all", codec="none", timestamps=None):
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    p = Producer({"bootstrap.servers": addr, "acks": acks, "compression.type": codec,
                  "linger.ms": 5, "enable.idempotence": False})
    for i, (k, v) in enumerate(msgs):
        kw = {"timestamp": timestamps[i]} if timestamps else {}
        p.produce(topic, key=k, value=v, partition=0, on_delivery=on_delivery, **kw)
        p.poll(0)
    assert p.flush(30) == 0, "messages still in flight"
    assert not errors, errors[:3]
    return delivered


def consume(addr, topic, offset, want, timeout=30):
    c = Consumer({"bootstrap.servers": addr, "group.id": "loglab-test", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, offset)])
    got, deadline = [], time.time() + timeout
    try:
        while len(got) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.offset(), m.key(), m.value(), m.timestamp()[1]))
    finally:
        c.close()
    return got


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_acks_and_codecs(broker, acks, codec):
    topic = "cf-%s-%s" % (codec, acks)
    msgs = [(b"k%d" % i, (b"value-%d-" % i) * 20) for i in range(300)]
    delivered = produce(broker.addr, topic, msgs, acks=acks, codec=codec)
    assert len(delivered) == len(msgs)
    if acks != "0":
        assert [m.offset() for m in delivered] == list(range(len(msgs)))
    got = consume(broker.addr, topic, OFFSET_BEGINNING, len(msgs))
    assert [(k, v) for _, k, v, _ in got] == msgs
    assert [o for o, _, _, _ in got] == list(range(len(msgs)))


def test_consume_from_timestamp_and_latest(broker):
    topic = "cf-time"
    base = int(time.time() * 1000) - 100_000
    msgs = [(b"k%d" % i, b"v%d" % i) for i in range(100)]
    produce(broker.addr, topic, msgs, codec="lz4", timestamps=[base + 1000 * i for i in range(100)])
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": "loglab-test", "enable.auto.commit": False})
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 41_500)], timeout=10)
        assert tp.offset == 42
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 10**9)], timeout=10)
        assert tp.offset in (-1, 100)
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (lo, hi) == (0, 100)
    finally:
        c.close()
    got = consume(broker.addr, topic, 42, 58)
    assert [o for o, _, _, _ in got] == list(range(42, 100))
    assert got[0][3] == base + 42_000

    # From latest: only what is produced after the assignment.
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": "loglab-test", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:  # let the consumer resolve "latest" before producing
            c.poll(0.2)
            pos = c.position([TopicPartition(topic, 0)])[0].offset
            if pos == 100:
                break
        produce(broker.addr, topic, [(b"new", b"after-latest")])
        got, deadline = [], time.time() + 20
        while not got and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
        assert got == [(100, b"after-latest")]
    finally:
        c.close()
