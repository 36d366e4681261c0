#!/usr/bin/env python3
"""Splits a simulator run's instructions by who owns the code (issue 13): the simulator's own
harness (`sim` and `reports`: workload driver, history, checkers, figures, oracle, trace,
report), the product crates that run in both worlds (`client`, `broker`, `cluster`), the models
(`net_model`, `disk_model`) and the runtime (madsim, async-task, its timer heap, tokio's sync
primitives).

Input: a callgrind output file (e.g. from `scripts/cost-ab.sh`, out/cost-ab/N.callgrind).
Each function's self instructions (callgrind counts code inlined into a function as that
function's) go to the first crate of ours named in the function's symbol, so a generic
`BTreeMap::get_mut` instantiated for the client's accumulator counts as `client`. A function
that names none of ours — libc's `memcpy` and `malloc`, crc32c, hdrhistogram, a std collection
— worked for its callers: its instructions are shared among them in proportion to what each
call cost (inclusive), up the call graph until a function of ours. The shares are a model
(a caller whose calls were bigger gets more of a callee's cost), exact only for callees
with one caller.

`scripts/perf-components.py` splits a `perf` profile by finer components (the client's producer
and consumer, the simulator's subsystems, `records` on its own) by each sample's innermost frame;
this script counts instructions (the same on every run) and asks whose work they were, so
`records` and the libraries go to their callers.

Usage: scripts/cost-split.py CALLGRIND_FILE [SUMMARY_JSON] [--top N]
  With the run's summary.json, also prints instructions per record sent; with --top N, each
  owner crate's N costliest functions (their own instructions and their share of the library
  code they called).
"""
import json
import re
import sys
from collections import Counter

# `records` (the log format) and `kafka_types` are libraries of ours that the product and the
# harness both call (the broker validates batches, the oracle reads the final logs): like any
# library their costs go to their callers, so each side's use of them counts as that side's.
OURS = {
    "sim": "harness",
    "reports": "harness",
    "client": "product",
    "broker": "product",
    "cluster": "product",
    "net_model": "models",
    "disk_model": "models",
    "cpu_model": "models",
    "madsim": "runtime",
    "async_task": "runtime",
    "naive_timer": "runtime",
    "tokio": "runtime",
}
CRATE = re.compile(r"\b(" + "|".join(OURS) + r"|[a-z_][a-z0-9_]*)::")
STD = {"core", "alloc", "std", "__rustc"}


def owner(symbol: str) -> str:
    """The first crate of ours the symbol names, else its first non-std crate, else libc."""
    names = CRATE.findall(symbol)
    for n in names:
        if n in OURS:
            return n
    for n in names:
        if n not in STD:
            return n
    if names:
        return "std"
    return "libc" if re.match(r"_*(mem|str|malloc|free|realloc|_int_|cfree|calloc)", symbol) else "other"


def read_callgrind(path: str):
    """Each function's self Ir, and each call edge's inclusive Ir (caller, callee)."""
    names, self_ir, edges = {}, Counter(), Counter()
    fn = callee = None
    after_calls = False

    def name(ref: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", ref)
        if not m:
            return ref
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]

    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn, after_calls = name(line[3:].rstrip("\n")), False
            elif line.startswith("cfn="):
                callee = name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                after_calls = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                cols = line.split()
                ir = int(cols[1]) if len(cols) > 1 else 0
                if after_calls:
                    edges[(fn, callee)] += ir
                    after_calls = False
                else:
                    self_ir[fn] += ir
    return self_ir, edges


def owner_shares(self_ir: Counter, edges: Counter, rounds: int = 40) -> Counter:
    """Instructions by owning function. A function naming one of our crates owns its self
    cost; any other's is shared among its callers' owners, weighted by what each call cost (a
    library routine works for its callers), found by repeated passes over the call graph (a
    chain of library calls needs one pass a link; cycles settle after a few). A function
    without callers keeps its own cost."""
    callers = {}
    for (a, b), ir in edges.items():
        if a != b and ir > 0:
            callers.setdefault(b, []).append((a, ir))
    fixed = {f: {f: 1.0} for f in set(self_ir) | set(callers) if owner(f) in OURS}
    shares = {f: {f: 1.0} for f in set(self_ir) | set(callers) if f not in fixed}
    shares.update(fixed)
    for _ in range(rounds):
        changed = 0.0
        for f in shares:
            if f in fixed or f not in callers:
                continue
            total = sum(ir for _, ir in callers[f])
            mixed = Counter()
            for a, ir in callers[f]:
                for k, v in shares[a].items():
                    mixed[k] += v * ir / total
            changed = max(changed, sum(abs(mixed[k] - shares[f].get(k, 0.0)) for k in mixed))
            shares[f] = dict(mixed)
        if changed < 1e-6:
            break
    costs = Counter()
    for f, ir in self_ir.items():
        for k, v in shares[f].items():
            costs[k] += ir * v
    return costs


def main() -> None:
    args = sys.argv[1:]
    top = 0
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i : i + 2]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    self_ir, edges = read_callgrind(args[0])
    by_fn = owner_shares(self_ir, edges)
    total = sum(by_fn.values())
    assert total > 0, "no instructions read: is this a callgrind file?"
    records = json.load(open(args[1]))["throughput"]["sends"] if len(args) == 2 else None
    crates, groups = Counter(), Counter()
    for f, ir in by_fn.items():
        crates[owner(f)] += ir
        groups[OURS.get(owner(f), "libraries (no caller of ours)")] += ir

    def row(name: str, ir: float, indent: str = "") -> str:
        per = f"{ir / records:10.0f}" if records else ""
        return f"{indent}{name:<{34 - len(indent)}}{ir / 1e6:10.1f}{100 * ir / total:7.1f}%{per}"

    print(f"{'owner':<34}{'Ir (M)':>10}{'share':>8}" + (f"{'Ir/record':>10}" if records else ""))
    for name, ir in groups.most_common():
        print(row(name, ir))
    print()
    for crate, ir in crates.most_common():
        if ir < total / 1000:
            break
        print(row(crate, ir, "  "))
        if top:
            fns = Counter({f: v for f, v in by_fn.items() if owner(f) == crate})
            for f, v in fns.most_common(top):
                print(row("", v, "      ") + "  " + f[:110])
    print(f"total {total / 1e6:.1f}M instructions" + (f", {records} records sent" if records else ""))


if __name__ == "__main__":
    main()
