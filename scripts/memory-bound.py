#!/usr/bin/env python3
"""Which functions of a simulator run wait on memory: each function's share of `perf` samples
(CPU time) set against its share of instructions (`cachegrind` or `callgrind` of the same run).
A ratio well above 1 means the function takes more time than its instructions explain: cache
misses, page faults, a growing map. Issue 13: the page cache's ordered maps were 0.8 % of a short
cut's instructions and 14 % of the full bench's CPU; README, "Simulator speed and memory".

Usage (the same scenario and seed for both; a 10 s cut of the bench takes ~45 s under cachegrind):
  perf record -F 4000 -o /tmp/p.data target/sim/release/sim CUT.json --seed 1 --out /tmp/p
  perf report -i /tmp/p.data --no-children --sort sym --stdio > /tmp/perf.txt
  valgrind --tool=cachegrind --cachegrind-out-file=/tmp/cg.out \\
      target/sim/release/sim CUT.json --seed 1 --out /tmp/c
  cg_annotate /tmp/cg.out > /tmp/cg.txt
  scripts/memory-bound.py /tmp/perf.txt /tmp/cg.txt [TOP]

perf names a function by its symbol, cachegrind by file:symbol, and inlining differs between
the two, so a function's instructions are summed over every cachegrind row whose symbol starts
with the perf symbol's first 60 characters (or the reverse); libc's string functions differ by
name (`__memmove_avx512…` in perf, `__memcpy_avx…` under valgrind's CPU model) and show no match.
Valgrind counts glibc's `rep movsb` copies (more than ~2 KiB) one instruction a byte: give the
cachegrind run the `GLIBC_TUNABLES` that `scripts/cost-ab.sh` sets, or large copies read as ten
times the instructions they are.
"""
import collections
import re
import sys


def perf_shares(path):
    """(percent of samples, symbol) per `[.]` row of `perf report --sort sym --stdio`."""
    rows = []
    for line in open(path):
        m = re.match(r"\s+([\d.]+)%\s+\[[.k]\]\s+(.*)$", line.rstrip())
        if m:
            rows.append((float(m.group(1)), m.group(2).strip()))
    return rows


def instruction_shares(path):
    """Percent of instructions per symbol, from `cg_annotate` or `callgrind_annotate` output."""
    shares = collections.Counter()
    for line in open(path):
        m = re.match(r"\s*[\d,]+\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line.rstrip())
        if not m or "PROGRAM TOTALS" in line:
            continue
        symbol = re.sub(r"\s*\[.*\]$", "", m.group(2).split(":", 1)[-1])
        shares[symbol] += float(m.group(1))
    return shares


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    top = int(sys.argv[3]) if len(sys.argv) == 4 else 40
    perf, instructions = perf_shares(sys.argv[1]), instruction_shares(sys.argv[2])
    if not perf or not instructions:
        sys.exit("no rows read: give `perf report --stdio` and `cg_annotate` output")
    print(f"{'time':>7} {'instr':>7} {'ratio':>6}  function")
    for share, symbol in perf[:top]:
        key = symbol[:60]
        ir = sum(v for s, v in instructions.items() if s.startswith(key) or symbol.startswith(s[:60]))
        ratio = f"{share / ir:6.1f}" if ir > 0 else "     -"
        print(f"{share:6.2f}% {ir:6.2f}% {ratio}  {symbol[:100]}")


if __name__ == "__main__":
    main()
