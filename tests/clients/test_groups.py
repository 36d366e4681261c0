"""Consumer groups with real clients: confluent-kafka (librdkafka) members in their own processes
(so one can be killed with -9), kafka-python members, kcat's balanced consumer; committed offsets
across a broker restart. Every wait is bounded, and the rebalance and eviction times are asserted
against the members' session timeout and heartbeat interval (printed with `pytest -s`).
"""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

PARTITIONS = 6
WAIT = 30  # seconds: the bound of every wait below
# The members' group timings (MEMBER, KP_MEMBER), in seconds.
SESSION_TIMEOUT = 6.0
HEARTBEAT_INTERVAL = 0.5
# Slack for a JoinGroup/SyncGroup round (and librdkafka's own scheduling) on a loaded 2-core machine.
REJOIN_SLACK = 3.0
BROKER_ARGS = ["--override", "group.initial.rebalance.delay.ms=0",
               "--override", "group.min.session.timeout.ms=1000"]

# One group member per process: prints JSON events (assign/revoke/msg/closed) on stdout, leaves
# the group cleanly on SIGTERM.
MEMBER = r"""
import json, signal, sys, time
from confluent_kafka import Consumer
addr, group, topic, name = sys.argv[1:5]
def out(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)
running = [True]
signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
c = Consumer({"bootstrap.servers": addr, "group.id": group, "client.id": name,
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
              "auto.offset.reset": "earliest", "enable.auto.commit": True,
              "auto.commit.interval.ms": 200})
c.subscribe([topic],
            on_assign=lambda c, ps: out(ev="assign", parts=sorted(p.partition for p in ps)),
            on_revoke=lambda c, ps: out(ev="revoke", parts=sorted(p.partition for p in ps)))
out(ev="started")
while running[0]:
    m = c.poll(0.05)
    if m is not None and not m.error():
        out(ev="msg", p=m.partition(), o=m.offset())
out(ev="closing")
c.close()
out(ev="closed")
"""


# The same with kafka-python (in processes too: two kafka-python consumers in threads of one
# process were seen to stall one of them for longer than its session timeout under CPU load).
KP_MEMBER = r"""
import json, signal, sys, time
from kafka import KafkaConsumer, ConsumerRebalanceListener
addr, group, topic, name = sys.argv[1:5]
def out(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)
running = [True]
signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, ps):
        out(ev="revoke", parts=sorted(p.partition for p in ps))
    def on_partitions_assigned(self, ps):
        out(ev="assign", parts=sorted(p.partition for p in ps))
c = KafkaConsumer(bootstrap_servers=addr, group_id=group, client_id=name,
                  auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500,
                  enable_auto_commit=True, auto_commit_interval_ms=200)
c.subscribe([topic], listener=Listener())
out(ev="started")
while running[0]:
    for tp, msgs in c.poll(timeout_ms=1000).items():
        for m in msgs:
            out(ev="msg", p=tp.partition, o=m.offset, v=m.value.decode())
out(ev="closing")
c.close()
out(ev="closed")
"""


class Member:
    """A group member in its own process (`script`: MEMBER or KP_MEMBER); its events arrive on a
    queue."""

    def __init__(self, addr, group, topic, name, script=MEMBER):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-c", script, addr, group, topic, name],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.events = queue.Queue()
        self.assignment = None
        self.values = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass
        self.events.put({"ev": "exit", "t": time.time()})

    def drain(self):
        """Applies queued events; returns them."""
        out = []
        while True:
            try:
                e = self.events.get_nowait()
            except queue.Empty:
                return out
            if e["ev"] == "assign":
                self.assignment = e["parts"]
            elif e["ev"] == "revoke":
                self.assignment = []
            elif e["ev"] == "msg" and "v" in e:
                self.values.add(e["v"])
            out.append(e)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_spread(members, timeout=WAIT):
    """Waits until the members' assignments are disjoint, non-empty and cover every partition;
    returns the time that became true and the events seen."""
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        for m in members:
            seen += [(m.name, e) for e in m.drain()]
        parts = [m.assignment or [] for m in members]
        flat = sorted(p for ps in parts for p in ps)
        if all(parts) and flat == list(range(PARTITIONS)):
            return time.time(), seen
        time.sleep(0.02)
    raise AssertionError("assignments never spread: %s" % {m.name: m.assignment for m in members})


@pytest.fixture
def gbroker(data_dir):
    b = Broker(data_dir, BROKER_ARGS).start()
    yield b
    b.stop()


def make_topic(addr, topic, records=0):
    admin = AdminClient({"bootstrap.servers": addr})  # must outlive its futures
    fs = admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    for f in fs.values():
        f.result(timeout=WAIT)
    if records:
        p = Producer({"bootstrap.servers": addr, "linger.ms": 5})
        for i in range(records):
            p.produce(topic, value=b"r-%d" % i, partition=i % PARTITIONS)
        assert p.flush(WAIT) == 0


def test_confluent_members_join_leave_and_kill9(gbroker):
    make_topic(gbroker.addr, "gt", 60)
    members = []
    try:
        a = Member(gbroker.addr, "cg", "gt", "a")
        members.append(a)
        wait_spread([a])
        assert a.assignment == list(range(PARTITIONS))
        # A second and third member: each join rebalances; partitions spread over all.
        b = Member(gbroker.addr, "cg", "gt", "b")
        members.append(b)
        wait_spread([a, b])
        c = Member(gbroker.addr, "cg", "gt", "c")
        members.append(c)
        wait_spread([a, b, c])
        assert sorted(len(m.assignment) for m in members) == [2, 2, 2]

        # A clean leave (LeaveGroup): the other two take over every partition. The time from the
        # leaver's close() to the last survivor's new assignment is the rebalance time.
        c.stop(signal.SIGTERM)
        closing = [e for e in c.drain() if e["ev"] in ("closing", "closed")]
        assert closing, "the leaving member reports its close"
        left_at = closing[0]["t"]
        done_at, seen = wait_spread([a, b])
        assigns = [e["t"] for _, e in seen if e["ev"] == "assign"]
        rebalance_s = max(assigns) - left_at
        print("\nREBALANCE 3->2 after LeaveGroup: %.0f ms (heartbeat.interval.ms=500)" % (rebalance_s * 1000))
        # The LeaveGroup starts the rebalance: the survivors hear of it at their next heartbeat.
        # Without it the leaver would be evicted no earlier than a session timeout after its last
        # heartbeat (at most one interval before it left).
        assert rebalance_s < SESSION_TIMEOUT - HEARTBEAT_INTERVAL, \
            "rebalance after a LeaveGroup took %.2f s: as long as evicting a silent member" % rebalance_s
        assert rebalance_s < HEARTBEAT_INTERVAL + REJOIN_SLACK, \
            "rebalance after a LeaveGroup took %.2f s: more than a heartbeat plus %.0f s" % (rebalance_s, REJOIN_SLACK)
        members.remove(c)

        # kill -9: no LeaveGroup; the member is evicted after its session timeout (6 s): not before
        # (its last heartbeat was about one interval before the kill; one more interval allows for
        # a late heartbeat on a loaded machine), and not much after (the broker's session timer,
        # then the survivor's next heartbeat and rejoin).
        killed_at = time.time()
        b.stop(signal.SIGKILL)
        members.remove(b)
        done_at, _ = wait_spread([a], timeout=WAIT)
        eviction_s = done_at - killed_at
        print("EVICTION after kill -9 (session.timeout.ms=6000): %.2f s" % eviction_s)
        assert a.assignment == list(range(PARTITIONS))
        assert eviction_s >= SESSION_TIMEOUT - 2 * HEARTBEAT_INTERVAL, \
            "a killed member was evicted after %.2f s, before its session timeout (%.0f s)" % (eviction_s, SESSION_TIMEOUT)
        assert eviction_s < SESSION_TIMEOUT + HEARTBEAT_INTERVAL + REJOIN_SLACK, \
            "a killed member was evicted after %.2f s, long after its session timeout (%.0f s)" % (eviction_s, SESSION_TIMEOUT)
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


def test_kafka_python_group_spreads_and_consumes_everything(gbroker):
    make_topic(gbroker.addr, "kp", 300)
    # A kafka-python 3.0.12 bug, found 2026-12-02 from its DEBUG log (not the broker's): when a
    # poll() times out while the member's JoinGroup is in flight, and that member is the leader
    # rejoining only because its metadata snapshot changed (the topic appeared after subscribe),
    # the leader's own assignment updates the snapshot inside the join task, so the next poll
    # sees need_rejoin() False and returns without running _on_join_complete: the SyncGroup
    # answer with its partitions is received and dropped, heartbeats stay disabled, and the
    # session timeout evicts it (the broker answered every request correctly). KP_MEMBER polls
    # with timeout_ms=1000, longer than a join here (~0.5 s, one heartbeat interval), which made
    # it 0 of 20 (at 100 ms: about 1 of 5); a second group still gets one more try, with the
    # first attempt's state printed. Two failures fail the test.
    for attempt, group in enumerate(["kpg", "kpg-retry"]):
        members = [Member(gbroker.addr, group, "kp", "kp%d" % i, KP_MEMBER) for i in range(2)]
        try:
            wait_spread(members)
            break
        except AssertionError as e:
            for m in members:
                m.stop()
            if attempt == 1:
                raise
            print("\nFLAKE (kafka-python group, first attempt): %s" % e)
    try:
        want = set("r-%d" % i for i in range(300))
        deadline = time.time() + WAIT
        while time.time() < deadline and set().union(*(m.values for m in members)) != want:
            for m in members:
                m.drain()
            time.sleep(0.05)
        got = set().union(*(m.values for m in members))
        assert got == want, "%d of 300 records consumed by the group" % len(got)
    finally:
        for m in members:
            m.stop()


def test_committed_offsets_survive_restart(data_dir):
    b = Broker(data_dir, BROKER_ARGS).start()
    try:
        make_topic(b.addr, "rs", 600)
        c = Consumer({"bootstrap.servers": b.addr, "group.id": "rg", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": 6000})
        c.subscribe(["rs"])
        first, deadline = [], time.time() + WAIT
        while len(first) < 250 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                first.append((m.partition(), m.offset(), m.value()))
                c.commit(message=m, asynchronous=False)
        assert len(first) >= 250
        c.close()
    finally:
        assert b.stop() == 0

    b = Broker(data_dir, BROKER_ARGS).start()
    try:
        c = Consumer({"bootstrap.servers": b.addr, "group.id": "rg", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": 6000})
        committed = c.committed([TopicPartition("rs", p) for p in range(PARTITIONS)], timeout=WAIT)
        by_part = {}
        for p, o, _ in first:
            by_part[p] = max(by_part.get(p, -1), o + 1)
        assert {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == by_part
        c.subscribe(["rs"])
        rest, deadline = [], time.time() + WAIT
        while len(first) + len(rest) < 600 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                rest.append((m.partition(), m.offset(), m.value()))
        c.close()
        values = sorted(v for _, _, v in first + rest)
        assert values == sorted(b"r-%d" % i for i in range(600)), "records lost or repeated across the restart"
    finally:
        b.stop()


def test_kcat_balanced_consumer_reads_everything(gbroker):
    make_topic(gbroker.addr, "kc", 500)
    out = subprocess.run(["kcat", "-b", gbroker.addr, "-G", "kcg", "kc", "-o", "beginning", "-e", "-q",
                          "-X", "session.timeout.ms=6000", "-f", "%s\n"],
                         capture_output=True, timeout=WAIT)
    lines = sorted(out.stdout.decode().split())
    assert lines == sorted("r-%d" % i for i in range(500))
    # The group committed its position: kcat's group appears in ListGroups (via admin).
    admin = AdminClient({"bootstrap.servers": gbroker.addr})
    groups = admin.list_consumer_groups().result(timeout=WAIT)
    assert "kcg" in [g.group_id for g in groups.valid]
