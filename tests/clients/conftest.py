"""Real-client tests: a `broker serve` process on an ephemeral 127.0.0.1 port, real Kafka clients.

The broker binary comes from $LOGLAB_BROKER (default: target/release/broker, `cargo build
--release -p broker`; scripts/test.sh passes target/debug/broker, the `test`-profile build its
`cargo test` step already made). Every broker is started with --listen 127.0.0.1:0 and its real address is read
from the line it prints; every wait is bounded.
"""
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROKER = os.environ.get("LOGLAB_BROKER", os.path.join(ROOT, "target", "release", "broker"))
START_TIMEOUT = 30


class Broker:
    def __init__(self, data_dir, extra=(), data_dir_flag=True):
        self.data_dir = data_dir
        self.extra = list(extra)
        # False: no --data-dir (the data directories come from `extra`, e.g. log.dirs).
        self.data_dir_flag = data_dir_flag
        self.proc = None
        self.addr = None
        self.metrics_addr = None
        self.admin_url = None  # with --admin-listen: "http://127.0.0.1:PORT"
        self.log_path = os.path.join(data_dir, "..", os.path.basename(data_dir) + ".broker.log")

    def start(self):
        log = open(self.log_path, "ab")
        data = ["--data-dir", self.data_dir] if self.data_dir_flag else []
        cmd = [BROKER, "serve", "--listen", "127.0.0.1:0"] + data + \
            ["--metrics-listen", "127.0.0.1:0"] + self.extra
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("broker exited before listening; see " + self.log_path)
            m = re.search(r"admin on (http://\S+)", line)
            if m:
                self.admin_url = m.group(1)
            m = re.search(r"metrics on http://(\S+)/metrics", line)
            if m:
                self.metrics_addr = m.group(1)
            m = re.search(r"listening on (\S+)", line)
            if m:
                self.addr = m.group(1)
                return self
        raise RuntimeError("broker did not print its address in time")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc = None
        return rc

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://%s/metrics" % self.metrics_addr, timeout=10) as r:
            return r.read().decode()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="loglab-") as d:
        path = os.path.join(d, "data")
        os.makedirs(path)
        yield path


@pytest.fixture
def broker(data_dir):
    b = Broker(data_dir).start()
    yield b
    b.stop()
