#!/usr/bin/env bash
# OpenMessaging Benchmark workloads both ways, side by side: each workload against the real
# broker on this machine (`perf omb`, one broker on loopback) and in the simulator
# (`cargo simulate omb`, one broker), then a table of publish rate, consume rate, p99 publish
# latency and p99 end-to-end latency.
#
# Usage: [WINDOW_S=10] scripts/bench-omb.sh [WARMUP_MIN] [TEST_MIN] [WORKLOAD.yaml ...]
#   default: 0.1 and 0.5 minutes; the three workloads under scenarios/omb/workloads that fit one
#   machine (16 partitions at 50k msg/s, the same at max rate, 100 partitions 4p/4c at 100k msg/s).
# Output: out/bench-omb/<workload>/{real,sim}/omb-result.json and the table on stdout.
# Not a test: figures depend on the machine (and on what else runs on it).
set -euo pipefail
cd "$(dirname "$0")/.."
warmup=${1:-0.1}
window=${WINDOW_S:-10}
test_min=${2:-0.5}
shift $(( $# > 2 ? 2 : $# )) || true
workloads=("$@")
if [ ${#workloads[@]} -eq 0 ]; then
  workloads=(scenarios/omb/workloads/1-topic-16-partitions-1kb.yaml
             scenarios/omb/workloads/1-topic-16-partitions-1kb-max-rate.yaml
             scenarios/omb/workloads/1-topic-100-partitions-1kb-4p-4c-100k.yaml)
fi
driver=scenarios/omb/drivers/kafka-local.yaml
out=out/bench-omb
cargo build --release -p broker -p client
cargo sim-build --release -p sim
mkdir -p "$out"
for w in "${workloads[@]}"; do
  name=$(basename "$w" .yaml)
  data=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  target/release/broker serve --listen "127.0.0.1:$port" --data-dir "$data/data" >"$data/broker.log" 2>&1 &
  broker=$!
  sleep 1
  target/release/perf omb "$w" --driver "$driver" --bootstrap-server "127.0.0.1:$port" \
    --warmup-minutes "$warmup" --test-minutes "$test_min" --window-s "$window" --out "$out/$name/real" | tail -n 2
  kill "$broker"; wait "$broker" || true
  rm -rf "$data"
  target/sim/release/sim omb "$w" --driver "$driver" --brokers 1 \
    --warmup-minutes "$warmup" --test-minutes "$test_min" --window-s "$window" --out "$out/$name/sim" | tail -n 2
done
python3 - "$out" "${workloads[@]}" <<'EOF'
import json, os, sys
out, workloads = sys.argv[1], sys.argv[2:]
print("| workload | publish msg/s real / sim | consume msg/s real / sim | p99 publish ms real / sim | p99 end-to-end ms real / sim |")
print("|---|---|---|---|---|")
for w in workloads:
    n = os.path.basename(w)[:-5]
    r = json.load(open(f"{out}/{n}/real/omb-result.json"))
    s = json.load(open(f"{out}/{n}/sim/omb-result.json"))
    f = lambda d, k: d["loglab"][k]
    print(f"| {n} | {f(r,'publish_rate_mean'):,.0f} / {f(s,'publish_rate_mean'):,.0f} "
          f"| {f(r,'consume_rate_mean'):,.0f} / {f(s,'consume_rate_mean'):,.0f} "
          f"| {r['aggregatedPublishLatency99pct']:.1f} / {s['aggregatedPublishLatency99pct']:.1f} "
          f"| {r['aggregatedEndToEndLatency99pct']:.1f} / {s['aggregatedEndToEndLatency99pct']:.1f} |")
EOF
