#!/usr/bin/env python3
"""The floor under any broker's produce CPU on this machine: a sink that only receives bytes over
loopback TCP (recv_into a 1 MiB buffer) and pwrites them to a file in DIR, as a broker's produce
path must, with nothing else (no protocol, no validation, no index). Prints its CPU s per GB.

Usage: scripts/sink-floor.py BYTES DIR     (scripts/bench-wire.sh produce-cpu runs it beside each
broker run, so the two figures share the machine's state: the kernel's page-cache copy dominates
both and varies with the VM's memory state)
"""
import os
import resource
import socket
import subprocess
import sys
import tempfile

CHUNK = 256 * 1024


def main():
    total, d = int(sys.argv[1]), sys.argv[2]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    sender = subprocess.Popen([sys.executable, "-c", f"""
import os, socket
c = socket.create_connection(('127.0.0.1', {port})); buf = os.urandom({CHUNK}); sent = 0
while sent < {total}:
    c.sendall(buf[:min({CHUNK}, {total} - sent)]); sent += min({CHUNK}, {total} - sent)
c.close()"""])
    conn, _ = srv.accept()
    fd, path = tempfile.mkstemp(dir=d)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    buf = memoryview(bytearray(1 << 20))
    off = 0
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        os.pwrite(fd, buf[:n], off)
        off += n
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    sender.wait()
    os.close(fd)
    os.unlink(path)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"{cpu / (off / 1e9):.3f}")


if __name__ == "__main__":
    main()
