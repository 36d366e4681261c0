"""Request-level fault injection with a real client (confluent-kafka / librdkafka): rules given to
`broker serve --fault-plan FILE`, or pushed at run time with `broker faults push` to
`broker serve --admin-listen` (issue 19).

- NOT_LEADER_OR_FOLLOWER x3 on Produce: librdkafka retries and the record is delivered once; the
  broker's log shows the rule fired three times.
- REQUEST_TIMED_OUT after handling, once: the write happened but the client was told it did not.
  With idempotence off the retry writes the record twice (the classic duplicate); with it on, the
  broker recognises the retried batch and the record is in the log once.
- A JoinGroup delayed by a pushed rule shows in the consumer's rebalance time: from subscribe to
  its first assignment takes at least the delay, and without the rule well under it.
"""
import json
import os
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BROKER, Broker

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


# --- the same through the admin API: `broker faults push|list|clear --admin URL`

def with_admin(data_dir, extra=()):
    return Broker(data_dir, ["--admin-listen", "127.0.0.1:0"] + list(extra)).start()


def faults(broker, *args):
    """`broker faults CMD --admin URL ARGS...`; its stdout as JSON (the command must succeed)."""
    cmd, rest = args[0], list(args[1:])
    r = subprocess.run([BROKER, "faults", cmd, "--admin", broker.admin_url] + rest,
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_pushed_not_leader_three_times_is_retried_and_delivered_once(data_dir):
    b = with_admin(data_dir)
    try:
        make_topic(b.addr, "nl")
        assert faults(b, "push", "--api", "Produce", "--topic", "nl",
                      "--error", "NOT_LEADER_OR_FOLLOWER", "--times", "3") == {"ids": [1]}
        delivered, errors = produce_one(b.addr, "nl", b"once", idempotence=True)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "nl") == [b"once"]
        rules = faults(b, "list")
        assert [(r["id"], r["fired"]) for r in rules] == [(1, 3)]
        assert faults(b, "clear") == {"removed": 1}
        assert faults(b, "list") == []
    finally:
        b.stop()


def test_pushed_timeout_after_handling_duplicates_without_idempotence_only(data_dir):
    b = with_admin(data_dir)
    try:
        for t in ("dup", "idem"):
            make_topic(b.addr, t)
            faults(b, "push", "--api", "Produce", "--topic", t, "--error", "REQUEST_TIMED_OUT",
                   "--after-handling", "--once")
        delivered, errors = produce_one(b.addr, "dup", b"v", idempotence=False)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "dup") == [b"v", b"v"], "without idempotence the retry is a duplicate"
        delivered, errors = produce_one(b.addr, "idem", b"v", idempotence=True)
        assert not errors and len(delivered) == 1, errors
        assert values_in(b.addr, "idem") == [b"v"], "with idempotence the retried batch is recognised"
        assert [r["fired"] for r in faults(b, "list")] == [1, 1]
    finally:
        b.stop()


def seconds_to_first_assignment(addr, group, topic):
    assigned = []
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "session.timeout.ms": 10000,
                  "auto.offset.reset": "earliest"})
    t0 = time.time()
    c.subscribe([topic], on_assign=lambda consumer, parts: assigned.append(time.time()))
    try:
        deadline = t0 + WAIT
        while not assigned and time.time() < deadline:
            c.poll(0.1)
        assert assigned, "no assignment in time"
        return assigned[0] - t0
    finally:
        c.close()


def test_delayed_join_group_shows_in_rebalance_time(data_dir):
    delay_ms = 3000
    b = with_admin(data_dir, ["--override", "group.initial.rebalance.delay.ms=0"])
    try:
        make_topic(b.addr, "jg")
        plain = seconds_to_first_assignment(b.addr, "g-plain", "jg")
        faults(b, "push", "--api", "JoinGroup", "--group", "g-slow", "--delay-ms", str(delay_ms))
        slow = seconds_to_first_assignment(b.addr, "g-slow", "jg")
        assert slow >= delay_ms / 1000, (plain, slow)
        # The delay, not the join itself, makes the slow group slow. Compared side by side rather
        # than against a fixed bound: on a loaded 2-core machine a plain join took 2.0 s.
        assert slow - plain >= delay_ms / 1000 / 2, (plain, slow)
        rules = faults(b, "list")
        assert rules[0]["fired"] >= 1 and rules[0]["group"] == "g-slow"
    finally:
        b.stop()


def test_faults_command_exits_non_zero_with_the_servers_message(data_dir):
    b = with_admin(data_dir, ["--override", "loglab.admin.token=s3cret"])
    try:
        run = lambda *a, env=None: subprocess.run([BROKER, "faults"] + list(a), capture_output=True,
                                                  text=True, timeout=WAIT, env=env)
        r = run("push", "--admin", b.admin_url, "--token", "s3cret", "--api", "Produce",
                "--error", "NOT_AN_ERROR")
        assert r.returncode == 1 and "`error`" in r.stderr, r.stderr
        r = run("list", "--admin", b.admin_url, env={**os.environ, "LOGLAB_ADMIN_TOKEN": ""})
        assert r.returncode == 1 and "401" in r.stderr, r.stderr
        r = run("list", "--admin", b.admin_url, env={**os.environ, "LOGLAB_ADMIN_TOKEN": "s3cret"})
        assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr
    finally:
        b.stop()
