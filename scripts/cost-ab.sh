#!/usr/bin/env bash
# Compares simulator builds by what they execute, not by the clock (issue 13): each binary runs
# the scenario once under valgrind's callgrind with its cache simulation, which counts
# instructions (Ir), first-level instruction and data cache misses (I1mr, D1mr + D1mw) and
# last-level misses (LLm) — the same numbers on every run of a binary, whatever else the machine
# is doing (a binary against itself: misses equal, instructions within ~2,000 of 1.45 billion,
# the report's wall-clock figures). CPU-time A/B (`scripts/cpu-ab.sh`) moves by a few per cent between rounds on this
# shared VM and cannot separate changes smaller than that; these counts can.
#
# Usage: scripts/cost-ab.sh [--duration-s N] SCENARIO BINARY...
#   e.g. scripts/cost-ab.sh --duration-s 3 scenarios/bench-100k-cluster.json /tmp/sim-old /tmp/sim-new
# (binaries of two versions of the code built without the committed profile, as scripts/cpu-ab.sh
# says: the profile knows the older code's functions only)
# `--duration-s N` runs the scenario cut to N simulated seconds (its `duration_s`): callgrind is
# 50-100x slower than native, so the full bench takes ~10 minutes a binary, its 3 s cut ~15 s.
# Binaries run two at a time, seed 1, output in out/cost-ab/. Prints per binary: Ir, I1mr, D1m,
# LLm and `est_cycles` = Ir + 12 I1mr + 10 D1m + 150 LLm — a rough weighting (an L1 miss served by L2 ~10-12 cycles, a last-level miss ~150),
# for ranking, not a cycle count: the CPU overlaps misses, predicts branches and pipelines
# stores, none of which this models. Give the change in each column, not only the estimate.
set -euo pipefail
usage() { echo "usage: scripts/cost-ab.sh [--duration-s N] SCENARIO BINARY..." >&2; exit 64; }
command -v valgrind >/dev/null || { echo "cost-ab: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
out=out/cost-ab
mkdir -p "$out"
cut=""
if [ "${1:-}" = --duration-s ]; then
  [ $# -ge 2 ] || usage
  cut=$2
  shift 2
fi
[ $# -ge 2 ] || usage
scenario=$1
shift
if [ -n "$cut" ]; then
  python3 - "$scenario" "$cut" "$out/scenario.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["duration_s"] = float(sys.argv[2]) if "." in sys.argv[2] else int(sys.argv[2])
json.dump(s, open(sys.argv[3], "w"))
PY
  scenario=$out/scenario.json
fi
# glibc copies and fills of more than ~2 KiB with `rep movsb` / `rep stosb`, which callgrind
# counts as one instruction per byte: a 40 KiB copy weighed 1.0 Ir a byte against 0.094 for the
# vector loop glibc uses below that size, and a change that removed a large copy looked ten
# times as good as it was (a CPU runs `rep movsb` at vector speed). The thresholds raised here
# keep every copy in the vector loop, so copies count as the work they are; the program's
# output does not change.
tunables="glibc.cpu.x86_rep_movsb_threshold=1073741824:glibc.cpu.x86_rep_stosb_threshold=1073741824"
export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}$tunables"
run() { # run INDEX BINARY
  valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file="$out/$1.callgrind" \
    "$2" "$scenario" --seed 1 --out "$out/run-$1" >"$out/$1.log" 2>&1
}
i=0
for bin in "$@"; do
  run "$i" "$bin" &
  i=$((i + 1))
  if (( i % 2 == 0 )); then wait; fi
done
wait
i=0
printf '%-28s %15s %12s %12s %10s %15s\n' binary Ir I1mr D1m LLm est_cycles
for bin in "$@"; do
  # "Collected : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw"
  counts=$(sed -n 's/.*Collected : //p' "$out/$i.log")
  [ -n "$counts" ] || { echo "cost-ab: $bin did not finish under callgrind (see $out/$i.log)" >&2; exit 1; }
  read -r ir _ _ i1 d1r d1w ilm dlr dlw <<<"$counts"
  d1=$((d1r + d1w)); llm=$((ilm + dlr + dlw))
  printf '%-28s %15d %12d %12d %10d %15d\n' "$bin" "$ir" "$i1" "$d1" "$llm" \
    $((ir + 12 * i1 + 10 * d1 + 150 * llm))
  i=$((i + 1))
done
