"""/metrics as a Prometheus server reads it: prometheus_client's own text parser, after
confluent-kafka produced to two topics and a group committed an offset."""
import urllib.error
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_with_prometheus_client(broker):
    p = Producer({"bootstrap.servers": broker.addr, "linger.ms": 5})
    for i in range(30):
        p.produce("m-one", value=b"v%d" % i, partition=0)
    for i in range(12):
        p.produce("m-two", value=b"w%d" % i, partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": "mg", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("m-one", 0, 10)], asynchronous=False)
    c.close()

    m = samples(broker.metrics())
    assert m[("kafka_server_brokertopicmetrics_messagesin_total", (("topic", "m-one"),))] == 30
    assert m[("kafka_server_brokertopicmetrics_messagesin_total", (("topic", "m-two"),))] == 12
    assert m[("kafka_log_log_logendoffset", (("partition", "0"), ("topic", "m-two")))] == 12
    lag = ("kafka_consumergroup_lag", (("consumergroup", "mg"), ("partition", "0"), ("topic", "m-one")))
    assert m[lag] == 30 - 10
    assert m[("kafka_controller_kafkacontroller_offlinepartitionscount", ())] == 0
    assert m[("kafka_network_requestmetrics_totaltimems_count", (("request", "Produce"),))] >= 1

    url = "http://%s/other" % broker.metrics_addr
    try:
        urllib.request.urlopen(url, timeout=10)
        raise AssertionError("/other answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404
