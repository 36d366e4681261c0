#!/usr/bin/env bash
# Compares simulator builds by process CPU time, alternated in rounds (issue 13): on a shared
# machine a binary's speed moves by ±15 % within minutes, so one binary timed after another
# compares the minutes, not the binaries. Each round runs every binary once, in the order given.
#
# Usage: scripts/cpu-ab.sh ROUNDS SCENARIO BINARY...
#   e.g. cargo sim-build -p sim --release && cp target/sim/release/sim /tmp/sim-new
#        scripts/cpu-ab.sh 5 scenarios/bench-100k-cluster.json /tmp/sim-old /tmp/sim-new
# Release builds of the simulator are profile-guided with the committed profile
# (scripts/rustc-sim), which was recorded on the code before a change: to compare a change and
# not also the profile's age, build both binaries without it (a target dir of their own, since
# cargo cannot see the wrapper's flags):
#   LOGLAB_PGO=0 cargo sim-build -p sim --release --config "build.target-dir='target/sim-plain'"
# Prints, per binary, each round's user + system CPU seconds (`/usr/bin/time`) and their
# median. Every run is seed 1 with its output in out/cpu-ab/ (the last run's stays: its
# summary.json has the trace hash and `speed`). Give the load (`uptime`) with the figures.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: scripts/cpu-ab.sh ROUNDS SCENARIO BINARY..." >&2; exit 64; }
rounds=$1
scenario=$2
shift 2
out=out/cpu-ab
mkdir -p "$out"
uptime
declare -A times
for _ in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        /usr/bin/time -o "$out/time" -f "%U %S" "$bin" "$scenario" --seed 1 --out "$out/run" \
            >/dev/null 2>&1
        times[$bin]="${times[$bin]:-} $(awk '{print $1 + $2}' "$out/time")"
    done
done
for bin in "$@"; do
    median=$(printf '%s\n' ${times[$bin]} | sort -n |
        awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    echo "$bin:${times[$bin]} median $median"
done
uptime
