"""Request-level fault injection with a real client (confluent-kafka / librdkafka): rules given to
`broker serve --fault-plan FILE` (issue 19).

- NOT_LEADER_OR_FOLLOWER x3 on Produce: librdkafka retries and the record is delivered once; the
  broker's log shows the rule fired three times.
- REQUEST_TIMED_OUT after handling, once: the write happened but the client was told it did not.
  With idempotence off the retry writes the record twice (the classic duplicate); with it on, the
  broker recognises the retried batch and the record is in the log once.
"""
import json
import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

WAIT = 30


def with_plan(data_dir, rules):
    plan = os.path.join(os.path.dirname(data_dir), "plan.json")
    with open(plan, "w") as f:
        json.dump(rules, f)
    return Broker(data_dir, ["--fault-plan", plan]).start()


def make_topic(addr, topic):
    admin = AdminClient({"bootstrap.servers": addr})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(timeout=WAIT)


def produce_one(addr, topic, value, idempotence):
    errors, delivered = [], []
    p = Producer({"bootstrap.servers": addr, "acks": "all", "linger.ms": 0,
                  "enable.idempotence": idempotence, "retry.backoff.ms": 50})
    p.produce(topic, value=value, partition=0,
              on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg))
    assert p.flush(WAIT) == 0, "the record is still in flight"
    return delivered, errors


def values_in(addr, topic):
    c = Consumer({"bootstrap.servers": addr, "group.id": "faults-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got, deadline = [], time.time() + WAIT
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF: read to the end
                    break
                continue
            got.append(m.value())
    finally:
        c.close()
    return got


def fired(broker):
    with open(broker.log_path) as f:
        return sum(1 for line in f if "fault rule fired" in line)


def test_not_leader_three_times_is_retried_and_delivered_once(data_dir):
    b = with_plan(data_dir, [{"api": "Produce", "topic": "nl", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}])
    try:
        make_topic(b.addr, "nl")
        delivered, errors = produce_one(b.addr, "nl", b"once", idempotence=True)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "nl") == [b"once"]
        assert fired(b) == 3, "the rule fired on the first three Produce requests"
    finally:
        b.stop()


def test_timeout_after_handling_duplicates_without_idempotence_only(data_dir):
    rules = [{"api": "Produce", "topic": t, "error": "REQUEST_TIMED_OUT", "after_handling": True, "once": True}
             for t in ("dup", "idem")]
    b = with_plan(data_dir, rules)
    try:
        for t in ("dup", "idem"):
            make_topic(b.addr, t)
        delivered, errors = produce_one(b.addr, "dup", b"v", idempotence=False)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "dup") == [b"v", b"v"], "without idempotence the retry is a duplicate"
        delivered, errors = produce_one(b.addr, "idem", b"v", idempotence=True)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "idem") == [b"v"], "with idempotence the retried batch is recognised"
        assert fired(b) == 2
    finally:
        b.stop()
