#!/usr/bin/env python3
"""Where a simulator run's CPU goes, by component: each `perf` sample is given to the innermost
frame on its stack that belongs to one of our crates or to madsim (libc, std, tokio, `bytes`,
`kafka-protocol` and the like count for their caller: a `memcpy` under the network model is the
network model's). Prints each component's share of the samples and how much of it was the
kernel's (page faults, mostly). Issue 13; the README's "Simulator speed and memory" quotes it.

Usage:
  perf record -F 999 --call-graph dwarf,16384 -o /tmp/p.data \\
      target/sim/release/sim scenarios/bench-100k-cluster.json --seed 1 --out /tmp/p
  perf script -i /tmp/p.data -F ip,sym > /tmp/p.txt          # about a minute
  scripts/perf-components.py /tmp/p.txt                      # the shares
  scripts/perf-components.py /tmp/p.txt "disk model"         # that component's hottest frames

Async bodies that perf shows only as `{async_fn#0}` give no crate: their samples go to the next
named frame out, often madsim's task wrapper, so madsim's share is an upper bound.
"""
import collections
import re
import sys

# First match wins: more specific prefixes before the crate's catch-all.
RULES = [
    ("crc32c::", "CRC32C"),
    ("records::", "records crate: batch building and parsing"),
    ("disk_model::", "disk model"),
    ("net_model::cpu", "CPU model"),
    ("net_model::", "network model"),
    ("madsim::", "madsim runtime (executor, timers)"),
    ("naive_timer::", "madsim runtime (executor, timers)"),
    ("async_task::", "madsim runtime (executor, timers)"),
    ("broker::", "broker"),
    ("client::consumer", "client consumer"),
    ("client::", "client producer (and connections)"),
    ("sim::clientload", "simulator: workload driver"),
    ("sim::workload", "simulator: workload driver"),
    ("sim::member", "simulator: workload driver"),
    ("sim::sends", "simulator: send history"),
    ("sim::history", "simulator: send history"),
    ("sim::seen", "simulator: send history"),
    ("sim::oracle", "simulator: oracle and checks"),
    ("sim::checks", "simulator: oracle and checks"),
    ("sim::cluster", "simulator: oracle and checks"),
    ("sim::invariant", "simulator: oracle and checks"),
    ("sim::metrics", "simulator: figures and report"),
    ("sim::report", "simulator: figures and report"),
    ("sim::plot", "simulator: figures and report"),
    ("plotters", "simulator: figures and report"),
    ("sim::trace", "simulator: trace and samplers"),
    ("sim::sampler", "simulator: trace and samplers"),
    ("sim::", "simulator: other (set-up, supervisor)"),
]
UNNAMED = "other (start-up, unresolved)"


def component(symbol):
    s = symbol.replace(" (inlined)", "").strip().lstrip("<")
    for prefix, name in RULES:
        if s.startswith(prefix):
            return name
    return None


def frames(sample):
    """The sample's symbols, innermost first (`perf script -F ip,sym`: "ADDR SYMBOL" lines)."""
    lines = [line.strip() for line in sample.strip().split("\n") if line.strip()]
    return [line.split(" ", 1)[1] if " " in line else "" for line in lines]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    samples = [s for s in open(sys.argv[1]).read().split("\n\n") if s.strip()]
    shares, kernel, hottest = collections.Counter(), collections.Counter(), collections.Counter()
    for sample in samples:
        syms = frames(sample)
        owner, at = UNNAMED, ""
        for sym in syms:
            found = component(sym)
            if found:
                owner, at = found, sym.replace(" (inlined)", "")
                break
        shares[owner] += 1
        first = sample.strip().split("\n")[0].strip()
        if first.startswith("ffffffff"):
            kernel[owner] += 1
        if len(sys.argv) == 3 and owner == sys.argv[2]:
            hottest[(syms[0][:70] if syms else "", at[:90])] += 1
    total = len(samples)
    if total == 0:
        sys.exit("no samples in " + sys.argv[1])
    if len(sys.argv) == 3:
        for (inner, at), n in hottest.most_common(25):
            print(f"{100 * n / total:5.1f} %  {inner}  <  {at}")
        return
    print(f"samples {total}")
    for name, n in shares.most_common():
        print(f"{100 * n / total:5.1f} %  {name}  (kernel {100 * kernel[name] / total:.1f} %)")


if __name__ == "__main__":
    main()
