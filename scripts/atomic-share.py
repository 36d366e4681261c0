#!/usr/bin/env python3
"""The share of a run's CPU samples that land right after an atomic instruction, by function.

A timer-sampled profile (`perf record`, cpu-clock: this VM has no hardware counters) charges a
sample to the instruction about to run, so time spent in a slow instruction shows up on the one
after it. An uncontended atomic read-modify-write (`lock`-prefixed, or `xchg` with memory, which
`Mutex` lock/unlock, `Arc` and `Bytes` reference counts compile to) costs ~6 ns on the 2-core
machine against ~0.5 ns for a plain add (issue 13's note), and waits for earlier stores to drain:
this script found 27 % of `bench-100k-cluster`'s samples after atomics (the client producer's five
locks a send among them), which no instruction count shows.

    cargo sim-build -p sim --release && cp target/sim/release/sim /tmp/sim
    perf record -F 1999 -o /tmp/p.data /tmp/sim scenarios/bench-100k-cluster.json --seed 1 --out /tmp/o
    scripts/atomic-share.py /tmp/sim /tmp/p.data [TOP]

Prints the total, the samples in shared libraries (not examined), the samples after an atomic
and the TOP (default 30) functions by those samples. Needs `perf`, `objdump` and `readelf`.
"""
import bisect
import collections
import re
import subprocess
import sys


def text_segments(binary):
    """(file offset, virtual address, size) of each LOAD segment."""
    out = subprocess.check_output(["readelf", "-lW", binary], text=True)
    segs = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    return segs


def mapping(perf_data, binary):
    """(start address, file offset) of the binary's executable mapping in the recorded run."""
    out = subprocess.check_output(
        ["perf", "script", "-i", perf_data, "--show-mmap-events"], text=True,
        stderr=subprocess.DEVNULL)
    name = binary.rsplit("/", 1)[-1]
    for line in out.splitlines():
        m = re.search(r"MMAP2? .*\[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+) .*r-xp (\S+)", line)
        if m and m.group(4).endswith("/" + name):
            return int(m.group(1), 16), int(m.group(3), 16)
    sys.exit(f"no executable mapping of {binary} in {perf_data}")


def disassembly(binary):
    """Instruction text by address, the previous instruction's address, and sorted symbols."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    text, order, syms = {}, [], []
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
        if m:
            a = int(m.group(1), 16)
            text[a] = m.group(2)
            order.append(a)
            continue
        m = re.match(r"([0-9a-f]+) <(.*)>:", line)
        if m:
            syms.append((int(m.group(1), 16), m.group(2)))
    prev = {order[i]: order[i - 1] for i in range(1, len(order))}
    syms.sort()
    return text, prev, syms


def is_atomic(insn):
    return insn.startswith("lock") or re.match(r"xchg\s+\S*,\S*\(", insn) is not None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, perf_data = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    start, offset = mapping(perf_data, binary)
    segs = text_segments(binary)
    text, prev, syms = disassembly(binary)
    starts = [s[0] for s in syms]

    def vaddr(ip):
        o = ip - start + offset
        for fo, va, size in segs:
            if fo <= o < fo + size:
                return o - fo + va
        return None

    samples = subprocess.check_output(
        ["perf", "script", "-i", perf_data, "-F", "ip,dso"], text=True, stderr=subprocess.DEVNULL)
    total = in_libs = after = 0
    by_fn = collections.Counter()
    name = binary.rsplit("/", 1)[-1]
    for line in samples.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        total += 1
        if not f[1].endswith(name + ")"):
            in_libs += 1
            continue
        a = vaddr(int(f[0], 16))
        p = prev.get(a) if a is not None else None
        if p is not None and is_atomic(text[p]):
            after += 1
            by_fn[syms[bisect.bisect_right(starts, a) - 1][1]] += 1
    print(f"samples {total}, in shared libraries (not examined) {in_libs}, "
          f"right after an atomic {after} ({100 * after / max(total, 1):.1f} %)")
    for fn, n in by_fn.most_common(top):
        print(f"{n:7d} {100 * n / total:5.2f} %  {fn[:110]}")


if __name__ == "__main__":
    main()
