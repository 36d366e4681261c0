"""kafka-python 3.0: the default (idempotent) producer, and a consumer by partition."""
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def test_kafka_python_round_trip(broker):
    p = KafkaProducer(bootstrap_servers=broker.addr, linger_ms=5)
    futures = [p.send("kp", key=b"k%d" % i, value=b"value-%d" % i, partition=0) for i in range(500)]
    p.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    assert offsets == list(range(500))
    p.close(timeout=10)
    c = KafkaConsumer(bootstrap_servers=broker.addr, enable_auto_commit=False, consumer_timeout_ms=10_000)
    tp = TopicPartition("kp", 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got, deadline = [], time.time() + 30
    for m in c:
        got.append((m.offset, m.key, m.value))
        if len(got) == 500 or time.time() > deadline:
            break
    c.close()
    assert got == [(i, b"k%d" % i, b"value-%d" % i) for i in range(500)]
    # The default producer is idempotent: it asked for a producer id.
    assert 'kafka_network_requestmetrics_requests_total{request="InitProducerId"} 0' not in broker.metrics()
