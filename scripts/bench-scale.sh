#!/usr/bin/env bash
# Simulator cost against cluster size (issue 13): bench-20x75's workload (one topic, RF 3,
# acks=all, min.insync.replicas=2, 100k records/s of 100 bytes) at the issue's points
# brokers/partitions 3/75, 9/675, 20/1500 (25, 75 and 75 partitions per broker).
#
# Usage: scripts/bench-scale.sh [DURATION_S] [POINTS...]     (default 10 s; points "3/75 9/675 20/1500")
#        SIM=target/sim/release/sim (built by `cargo sim-build -p sim --release`)
# Prints one row per point: process CPU seconds (user+sys), peak RSS, simulated s per CPU s,
# records per CPU s (from summary.json's speed.process: getrusage of the whole process) and
# the verdict. Scenarios and outputs go to out/bench-scale/. On a shared machine CPU seconds
# inflate with contention (seen: ±15 % between identical runs at load 16 on 2 cores): give the
# load (`uptime`) with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
shift || true
points=${*:-"3/75 9/675 20/1500"}
sim=${SIM:-target/sim/release/sim}
out=out/bench-scale
mkdir -p "$out"
[ -x "$sim" ] || { echo "build the simulator first: cargo sim-build -p sim --release" >&2; exit 64; }
uptime
printf '%-10s %8s %10s %12s %14s %s\n' point cpu_s rss_mib sim_s/cpu_s records/cpu_s verdict
for point in $points; do
    brokers=${point%/*}
    partitions=${point#*/}
    name="scale-${brokers}x${partitions}"
    python3 - "$brokers" "$partitions" "$duration" "$name" > "$out/$name.json" <<'EOF'
import json, sys
brokers, partitions, duration, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = json.load(open("scenarios/bench-20x75.json"))
s["name"] = name
s["duration_s"] = duration
s["cluster"]["brokers"] = brokers
s["topics"][0]["partitions"] = partitions
print(json.dumps(s, indent=1))
EOF
    rm -f "$out/$name/summary.json"
    "$sim" run "$out/$name.json" --seed 1 --out "$out/$name" --quiet > "$out/$name.out" 2>&1 || true
    python3 - "$out/$name/summary.json" "$point" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except OSError:
    print(f"{sys.argv[2]:<10} (no summary: see the .out file)")
    sys.exit(0)
p = s["speed"]["process"]
print(f'{sys.argv[2]:<10} {p["cpu_s"]:8.1f} {p["peak_rss_bytes"] / 2**20:10.0f} '
      f'{p["simulated_s_per_cpu_s"]:12.2f} {p["records_per_cpu_s"]:14.0f} {s["verdict"]}')
EOF
done
