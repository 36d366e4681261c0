"""Kafka's own KRaft server.properties (3.7's config/kraft/server.properties, 4.x's
config/server.properties; copies in broker/tests/data) start `broker serve --config FILE` as they
are, edited only as a user would for this machine (its ports, its log.dirs): kcat produces and
consumes on the file's port, the data lands in the file's log.dirs. And a transactional producer
gets a clear, fatal error at once instead of a timeout."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from conftest import BROKER, ROOT, START_TIMEOUT

STOCK = ["kafka-3.7-kraft-server.properties", "kafka-4.x-server.properties"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edited_copy(name, work):
    """The stock file with its ports and log.dirs changed, the way Homebrew's test edits it."""
    text = open(os.path.join(ROOT, "broker", "tests", "data", name)).read()
    assert "listeners=PLAINTEXT://:9092,CONTROLLER://:9093" in text
    port, controller_port = free_port(), free_port()
    log_dir = os.path.join(work, "kraft-combined-logs")
    text = (text.replace("9092", str(port)).replace("9093", str(controller_port))
            .replace("log.dirs=/tmp/kraft-combined-logs", "log.dirs=" + log_dir))
    path = os.path.join(work, "server.properties")
    with open(path, "w") as f:
        f.write(text)
    return path, port, log_dir


def start(config, cwd, log_path):
    """`broker serve --config FILE` and nothing else; returns (process, the printed line)."""
    log = open(log_path, "ab")
    proc = subprocess.Popen([BROKER, "serve", "--config", config], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=log)
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError("broker exited before listening; see " + log_path)
        if re.search(r"broker listening on \S+", line):
            return proc, line
    proc.kill()
    raise RuntimeError("broker did not print its address in time")


@pytest.mark.parametrize("name", STOCK)
def test_stock_server_properties_serves_on_its_port_and_log_dirs(tmp_path, name):
    work = str(tmp_path)
    config, port, log_dir = edited_copy(name, work)
    proc, line = start(config, work, os.path.join(work, "broker.log"))
    try:
        assert "advertised localhost:%d" % port in line, line
        bootstrap = "localhost:%d" % port
        md = subprocess.run(["kcat", "-L", "-b", bootstrap, "-m", "30"], capture_output=True,
                            check=True, timeout=60).stdout.decode()
        assert "at localhost:%d" % port in md, md
        records = b"".join(b"stock-%d\n" % i for i in range(100))
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "stock", "-m", "30"], input=records,
                       check=True, timeout=60)
        out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", "stock", "-e", "-q",
                              "-m", "30"], capture_output=True, check=True, timeout=60).stdout
        assert out == records
        segment = os.path.join(log_dir, "stock-0", "00000000000000000000.log")
        assert os.path.getsize(segment) > len(records)
        # Not the built-in default: log.dirs was honoured.
        assert not os.path.exists(os.path.join(work, "data"))
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        proc.stdout.close()
    assert rc == 0


def test_transactional_producer_fails_at_once_with_a_clear_error(broker):
    # Before: FindCoordinator(key_type=1) answered COORDINATOR_NOT_AVAILABLE, which librdkafka
    # retries until init_transactions' timeout (_TIMED_OUT, retriable).
    p = Producer({"bootstrap.servers": broker.addr, "transactional.id": "tx-stock"})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(30)
    err = e.value.args[0]
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, err
    assert err.fatal() and not err.retriable(), err
    assert "transactions are not supported" in err.str(), err.str()


def test_transactional_kafka_python_producer_fails_at_once(broker):
    from kafka import KafkaProducer
    from kafka.errors import TransactionalIdAuthorizationFailedError
    with pytest.raises(TransactionalIdAuthorizationFailedError):
        p = KafkaProducer(bootstrap_servers=broker.addr, transactional_id="tx-kp",
                          max_block_ms=30000)
        try:
            p.init_transactions()
        finally:
            p.close(timeout=5)
