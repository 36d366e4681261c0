"""kcat (Debian's, librdkafka 2.0.2): 10,000 lz4-compressed messages produced and consumed back
byte-equal, on the sendfile path and on the copy path."""
import os
import struct
import subprocess

import pytest

from conftest import Broker

N = 10_000


def stored_codecs(data_dir, topic):
    """(compression codec id, record count) of every batch stored for topic-0."""
    part = os.path.join(data_dir, topic + "-0")
    codecs = []
    for name in sorted(os.listdir(part)):
        if not name.endswith(".log"):
            continue
        data = open(os.path.join(part, name), "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            length = struct.unpack(">i", data[pos + 8:pos + 12])[0]
            codec = struct.unpack(">h", data[pos + 21:pos + 23])[0] & 7
            count = struct.unpack(">i", data[pos + 57:pos + 61])[0]
            codecs.append((codec, count))
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("copy_path", [False, True])
def test_kcat_lz4_round_trip(data_dir, copy_path):
    extra = ["--no-zero-copy"] if copy_path else []
    b = Broker(data_dir, extra).start()
    try:
        payload = b"".join(b"message-%05d-%s\n" % (i, b"x" * (i % 50)) for i in range(N))
        subprocess.run(["kcat", "-P", "-b", b.addr, "-t", "kc", "-z", "lz4", "-X", "linger.ms=20"],
                       input=payload, check=True, timeout=60)
        codecs = stored_codecs(data_dir, "kc")
        # librdkafka sends a batch uncompressed when lz4 would not shrink it (seen: a first batch
        # of one message, read from stdin before the rest arrived), so not every batch is lz4 —
        # but lz4 batches must carry nearly all records, and nothing else may appear.
        lz4_records = sum(n for c, n in codecs if c == 3)
        assert sum(n for _, n in codecs) == N
        assert all(c in (0, 3) for c, _ in codecs), "codecs: %r" % codecs[:5]
        assert lz4_records >= 0.99 * N, "stored (codec, records): %r" % codecs[:5]
        out = subprocess.run(["kcat", "-C", "-b", b.addr, "-t", "kc", "-p", "0", "-o", "beginning", "-e", "-q"],
                             capture_output=True, check=True, timeout=60).stdout
        assert out == payload
        m = b.metrics()
        assert 'kafka_server_brokertopicmetrics_messagesin_total{topic="kc"} %d' % N in m
        assert 'kafka_network_requestmetrics_requests_total{request="Fetch"}' in m
    finally:
        assert b.stop() == 0
