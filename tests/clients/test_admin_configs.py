"""Topic and broker configs from the admin clients (issue 15): confluent-kafka's AdminClient
(describe_configs, alter_configs, incremental_alter_configs) and kafka-python's KafkaAdminClient
(describe_configs, alter_configs), against one `broker serve`. kafkajs: kafkajs/configs.test.js.
"""
import time

import pytest
from confluent_kafka import KafkaException, Producer, Consumer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic)

TIMEOUT = 30


def admin(addr):
    return AdminClient({"bootstrap.servers": addr})


def call(addr, method, res, **kw):
    """One admin call on one resource; the client stays alive until its answer."""
    a = admin(addr)
    return getattr(a, method)([res], **kw)[res].result(TIMEOUT)


def create(addr, topic, config=None):
    a = admin(addr)
    a.create_topics([NewTopic(topic, 1, 1, config=config or {})])[topic].result(TIMEOUT)


def describe(addr, topic):
    return call(addr, "describe_configs", ConfigResource(ConfigResource.Type.TOPIC, topic))


def test_confluent_describe_shows_values_sources_and_synonyms(broker):
    create(broker.addr, "cfg-describe", {"retention.ms": "3600000", "cleanup.policy": "compact"})
    configs = describe(broker.addr, "cfg-describe")
    for key in ["retention.ms", "cleanup.policy", "segment.bytes", "min.insync.replicas",
                "compression.type", "message.timestamp.type", "unclean.leader.election.enable"]:
        assert key in configs, key
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == str(1 << 30)
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["compression.type"].value == "producer"
    assert not configs["retention.ms"].is_read_only
    # Synonyms: the topic's own value, then the broker's default under the broker's name.
    syn = configs["retention.ms"].synonyms
    assert "retention.ms" in syn and "log.retention.ms" in syn, syn
    # Unknown topic: an error for that resource.
    with pytest.raises(KafkaException):
        describe(broker.addr, "cfg-no-such-topic")


def test_confluent_incremental_alter_takes_effect_and_survives_restart(broker):
    create(broker.addr, "cfg-inc")
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg-inc", incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    call(broker.addr, "incremental_alter_configs", res)
    configs = describe(broker.addr, "cfg-inc")
    assert configs["retention.ms"].value == "60000"
    assert configs["cleanup.policy"].value == "delete,compact"
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg-inc", incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
    ])
    call(broker.addr, "incremental_alter_configs", res)
    configs = describe(broker.addr, "cfg-inc")
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    # Bad values and keys are refused naming the key; validate_only changes nothing.
    bad = ConfigResource(ConfigResource.Type.TOPIC, "cfg-inc", incremental_configs=[
        ConfigEntry("min.insync.replicas", "0", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="min.insync.replicas"):
        call(broker.addr, "incremental_alter_configs", bad)
    dry = ConfigResource(ConfigResource.Type.TOPIC, "cfg-inc", incremental_configs=[
        ConfigEntry("segment.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    call(broker.addr, "incremental_alter_configs", dry, validate_only=True)
    assert describe(broker.addr, "cfg-inc")["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    broker.stop()
    broker.start()
    assert describe(broker.addr, "cfg-inc")["cleanup.policy"].value == "compact"


def test_confluent_alter_configs_replaces_the_set(broker):
    create(broker.addr, "cfg-legacy", {"retention.ms": "1000", "segment.ms": "2000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg-legacy", set_config={"retention.bytes": "4096"})
    call(broker.addr, "alter_configs", res)
    configs = describe(broker.addr, "cfg-legacy")
    assert configs["retention.bytes"].value == "4096"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_confluent_broker_resource(broker):
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = call(broker.addr, "describe_configs", res)
    assert configs["num.partitions"].value == "1"
    assert configs["num.partitions"].is_read_only
    res = ConfigResource(ConfigResource.Type.BROKER, "0", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="num.partitions"):
        call(broker.addr, "incremental_alter_configs", res)


def test_log_append_time_rewrites_timestamps(broker):
    create(broker.addr, "cfg-lat", {"message.timestamp.type": "LogAppendTime"})
    p = Producer({"bootstrap.servers": broker.addr, "linger.ms": 5})
    for i in range(10):
        p.produce("cfg-lat", value=b"v%d" % i, partition=0, timestamp=1_000_000 + i)
    assert p.flush(TIMEOUT) == 0
    before = int(time.time() * 1000)
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": "cfg-lat", "enable.auto.commit": False})
    c.assign([TopicPartition("cfg-lat", 0, OFFSET_BEGINNING)])
    got, deadline = [], time.time() + TIMEOUT
    try:
        while len(got) < 10 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.timestamp())
    finally:
        c.close()
    assert len(got) == 10
    # (type 2 = LogAppendTime, the broker's clock), not the producer's 1_000_000 + i.
    for ts_type, ts in got:
        assert ts_type == 2, got
        assert abs(ts - before) < 120_000, got


def test_kafka_python_describe_and_alter(broker):
    from kafka.admin import KafkaAdminClient, ConfigResource as KConfigResource, ConfigResourceType
    create(broker.addr, "cfg-kp", {"retention.ms": "5000"})
    a = KafkaAdminClient(bootstrap_servers=broker.addr, request_timeout_ms=30000)
    res = lambda **kw: KConfigResource(ConfigResourceType.TOPIC, "cfg-kp", **kw)  # noqa: E731
    try:
        every = a.describe_configs([res()], config_filter="all")["topic"]["cfg-kp"]
        assert every["retention.ms"]["value"] == "5000"
        assert every["min.insync.replicas"]["value"] == "1"
        # "modified" (kafka-python's default filter) is what the topic overrides.
        assert set(a.describe_configs([res()])["topic"]["cfg-kp"]) == {"retention.ms"}
        a.alter_configs([res(configs={"retention.ms": "7000"})])
    finally:
        a.close()
    assert describe(broker.addr, "cfg-kp")["retention.ms"].value == "7000"


@pytest.mark.parametrize("codec", ["zstd", "uncompressed"])
def test_topic_compression_type_recompresses(broker, codec):
    topic = "cfg-codec-" + codec
    create(broker.addr, topic, {"compression.type": codec})
    p = Producer({"bootstrap.servers": broker.addr, "linger.ms": 5, "compression.type": "gzip"})
    values = [(b"value-%d-" % i) * 30 for i in range(200)]
    for v in values:
        p.produce(topic, value=v, partition=0)
    assert p.flush(TIMEOUT) == 0
    c = Consumer({"bootstrap.servers": broker.addr, "group.id": topic, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got, deadline = [], time.time() + TIMEOUT
    try:
        while len(got) < len(values) and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
    finally:
        c.close()
    assert got == values


def test_cluster_topic_min_insync_replicas_by_create_and_incremental_alter():
    """Three `broker serve` processes: a topic's own min.insync.replicas=3 (the brokers' is 1),
    set at CreateTopics, refuses acks=all with one replica down; IncrementalAlterConfigs to 2
    (through the controller) lets it through."""
    import signal
    import tempfile
    from confluent_kafka import KafkaError
    from test_cluster import Cluster, wait_for
    with tempfile.TemporaryDirectory(prefix="loglab-cluster-") as d:
        c = Cluster(d).start()
        try:
            topic = "hardened"
            for _ in range(20):
                try:
                    c.admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "3"})])[topic].result(10)
                    break
                except Exception as e:  # a controller change: retried, may find it created
                    if "already exists" in str(e).lower():
                        break
                    time.sleep(0.5)
            wait_for("ISR of 3", 30, lambda: (c.partition(topic) or (-1, []))[1] == [0, 1, 2] or None)
            res = ConfigResource(ConfigResource.Type.TOPIC, topic)
            got = c.admin.describe_configs([res])[res].result(TIMEOUT)["min.insync.replicas"]
            assert (got.value, got.source) == ("3", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
            leader, _ = c.partition(topic)
            next(n for n in c.nodes if n.node_id != leader).stop(signal.SIGKILL)
            wait_for("ISR of 2", 30, lambda: len((c.partition(topic) or (-1, [0, 1, 2]))[1]) == 2 or None)

            def send():
                out = {}
                p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "message.timeout.ms": 3000, "retries": 0})
                p.produce(topic, b"x", on_delivery=lambda err, msg: out.setdefault("err", err))
                p.flush(10)
                assert "err" in out, "no delivery report within 10 s"
                return out["err"]

            # Until the leader itself saw the ISR shrink it may append first (…_AFTER_APPEND).
            refused = wait_for("NOT_ENOUGH_REPLICAS", 30, lambda: (lambda e: e is not None and e.code() == KafkaError.NOT_ENOUGH_REPLICAS)(send()) or None)
            assert refused
            alter = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
                ConfigEntry("min.insync.replicas", "2", incremental_operation=AlterConfigOpType.SET)])
            c.admin.incremental_alter_configs([alter])[alter].result(TIMEOUT)
            wait_for("acks=all accepted with min.insync.replicas=2", 30, lambda: send() is None or None)
        finally:
            c.stop()
