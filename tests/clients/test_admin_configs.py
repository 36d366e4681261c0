"""Topic and broker configs from the admin clients (issue 15): confluent-kafka's AdminClient
(describe_configs, alter_configs, incremental_alter_configs) and kafka-python's KafkaAdminClient
(describe_configs, alter_configs), against one `broker serve`. kafkajs: kafkajs/configs.test.js.
Dynamic broker configs (the log defaults: `message.max.bytes`, `log.retention.ms`, ...),
cluster-wide and per broker, on one node (stored across a restart) and a 3-node cluster.
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


def test_acks_all_below_min_insync_replicas_on_one_node(broker):
    """One node is its partition's whole ISR: a topic's min.insync.replicas=2 refuses acks=all with
    NOT_ENOUGH_REPLICAS (as Kafka's one broker does) and still takes acks=1."""
    from confluent_kafka import KafkaError
    create(broker.addr, "cfg-min-isr", {"min.insync.replicas": "2"})
    errors = []

    def produce(acks):
        p = Producer({"bootstrap.servers": broker.addr, "acks": acks, "retries": 0, "linger.ms": 0})
        p.produce("cfg-min-isr", value=b"x", partition=0,
                  on_delivery=lambda err, msg: errors.append((acks, err and err.code())))
        assert p.flush(TIMEOUT) == 0

    produce("all")
    produce("1")
    assert errors == [("all", KafkaError.NOT_ENOUGH_REPLICAS), ("1", None)], errors


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


def produce_one(addr, topic, size):
    """One record of `size` bytes, acks=1, no retries: the delivery error (None when stored)."""
    out = {}
    p = Producer({"bootstrap.servers": addr, "message.timeout.ms": 5000, "retries": 0,
                  "message.max.bytes": 10_000_000})
    p.produce(topic, b"x" * size, partition=0, on_delivery=lambda err, msg: out.setdefault("err", err))
    p.flush(TIMEOUT)
    assert "err" in out, "no delivery report"
    return out["err"]


def set_broker_config(addr, node_id, key, value):
    """One dynamic config of broker `node_id` set (or deleted, `value` None). (Both Python clients
    refuse the empty resource name of the cluster-wide default: kafkajs/configs.test.js covers
    that one.)"""
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(ConfigResource.Type.BROKER, str(node_id), incremental_configs=[
        ConfigEntry(key, value, incremental_operation=op)])
    call(addr, "incremental_alter_configs", res)


def check_dynamic_message_max_bytes(addr, a, topic, node_id, one_node=True):
    """Broker `node_id` (the partition's leader) gets `message.max.bytes` 2000: a topic without
    its own `max.message.bytes` shows it (DYNAMIC_BROKER_CONFIG) and the leader refuses a
    5000-byte record; the topic's own override wins; deleting the broker's value lets the record
    through again. A broker config that is not dynamic is refused naming it."""
    from confluent_kafka import KafkaError
    assert produce_one(addr, topic, 5000) is None
    set_broker_config(addr, node_id, "message.max.bytes", "2000")
    bres = ConfigResource(ConfigResource.Type.BROKER, str(node_id))
    got = call(addr, "describe_configs", bres)["message.max.bytes"]
    assert (got.value, got.source, got.is_read_only) == ("2000", ConfigSource.DYNAMIC_BROKER_CONFIG.value, False)
    if one_node:
        # (In a cluster any broker may answer, each with its own per-broker defaults.)
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        got = a.describe_configs([res])[res].result(TIMEOUT)["max.message.bytes"]
        assert (got.value, got.source) == ("2000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    err = wait_for_value(lambda: produce_one(addr, topic, 5000), lambda e: e is not None)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    own = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "9000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([own])[own].result(TIMEOUT)
    assert wait_for_value(lambda: produce_one(addr, topic, 5000), lambda e: e is None) is None
    own = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([own])[own].result(TIMEOUT)
    assert wait_for_value(lambda: produce_one(addr, topic, 5000), lambda e: e is not None) is not None
    set_broker_config(addr, node_id, "message.max.bytes", None)
    assert wait_for_value(lambda: produce_one(addr, topic, 5000), lambda e: e is None) is None
    with pytest.raises(KafkaException, match="num.partitions"):
        set_broker_config(addr, node_id, "num.partitions", "3")


def wait_for_value(f, ok, timeout_s=30):
    deadline = time.time() + timeout_s
    while True:
        v = f()
        if ok(v) or time.time() > deadline:
            return v
        time.sleep(0.3)


def test_confluent_dynamic_broker_configs(broker):
    a = admin(broker.addr)
    create(broker.addr, "cfg-dyn")
    check_dynamic_message_max_bytes(broker.addr, a, "cfg-dyn", 0)
    # Stored: a dynamic value survives a restart (and applies to topics created later).
    set_broker_config(broker.addr, 0, "log.retention.ms", "123456")
    broker.stop()
    broker.start()
    a = admin(broker.addr)
    create(broker.addr, "cfg-dyn-later")
    for t in ("cfg-dyn", "cfg-dyn-later"):
        got = describe(broker.addr, t)["retention.ms"]
        assert (got.value, got.source) == ("123456", ConfigSource.DYNAMIC_BROKER_CONFIG.value), t


def test_cluster_dynamic_broker_configs():
    """Three `broker serve` processes: the dynamic configs go through the controller and every
    broker applies them; the leader of the topic's partition refuses the large record."""
    import tempfile
    from test_cluster import Cluster, wait_for
    with tempfile.TemporaryDirectory(prefix="loglab-cluster-") as d:
        c = Cluster(d).start()
        try:
            c.create("dyn", 1)
            leader, _ = c.partition("dyn")
            check_dynamic_message_max_bytes(c.bootstrap, c.admin, "dyn", leader, one_node=False)
        finally:
            c.stop()
