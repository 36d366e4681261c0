#!/usr/bin/env bash
# Wire benchmark on loopback, one run each, side by side:
#   perf produce / perf consume against `broker serve`;
#   consume with sendfile (zero copy) vs the copy path: throughput and broker CPU s per GB;
#   iperf3 over loopback as the physical reference.
# Usage: scripts/bench-wire.sh     (env: RECORDS=2000000 SIZE=1000 PORT=19092)
#        scripts/bench-wire.sh produce-cpu   broker CPU s per GB of produce under librdkafka's
#          rdkafka_performance (RUNS=3 runs, median; RECORDS=1000000 SIZE=1024, acks=1,
#          linger.ms=5, batch.size=262144, no compression; BROKER=path picks the broker binary,
#          BROKER_ARGS="--admin-listen 127.0.0.1:0" adds flags to its command line); after each run
#          the floor: scripts/sink-floor.py receives the same bytes and pwrites them, nothing else
# Figures go in notes, never in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-wire}
RECORDS=${RECORDS:-2000000}
SIZE=${SIZE:-1000}
PORT=${PORT:-19092}
TOPIC=bench
if [ "$MODE" = produce-cpu ]; then
  RECORDS=${RECORDS_PRODUCE:-1000000}; SIZE=${SIZE_PRODUCE:-1024}; RUNS=${RUNS:-3}
  BROKER=${BROKER:-target/release/broker}
  PERF=${PERF:-/work/shared/tools/rdkafka_performance}
  [ -n "${BROKER_BUILT:-}" ] || cargo build -q --release -p broker
  tick=$(getconf CLK_TCK)
  figures=()
  ratios=()
  for run in $(seq "$RUNS"); do
    data=$(mktemp -d)
    # shellcheck disable=SC2086 # BROKER_ARGS is a list of flags
    "$BROKER" serve --listen 127.0.0.1:$PORT --data-dir "$data" ${BROKER_ARGS:-} >"$data.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$data.log" && break; sleep 0.1; done
    c0=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    "$PERF" -P -t $TOPIC -b 127.0.0.1:$PORT -s "$SIZE" -c "$RECORDS" -a 1 \
      -X linger.ms=5 -X batch.size=262144 -X compression.codec=none >"$data.perf" 2>&1
    c1=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
    kill -TERM $pid; wait $pid || true
    f=$(awk -v a="$c0" -v b="$c1" -v t="$tick" -v n="$RECORDS" -v s="$SIZE" \
      'BEGIN { printf "%.3f", (b - a) / t / (n * s / 1e9) }')
    echo "run $run: broker CPU $(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }') s for $RECORDS x $SIZE B = $f CPU s/GB ($(uptime | sed 's/.*load/load/'))"
    figures+=("$f")
    # The floor, right after on the same disk: receive the same bytes over loopback and pwrite
    # them, nothing else. broker/floor is what the broker adds to the kernel's unavoidable copies.
    floor=$(python3 scripts/sink-floor.py $((RECORDS * SIZE)) "$data")
    ratio=$(awk -v a="$f" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')
    echo "run $run: floor (loopback recv + pwrite only): $floor CPU s/GB; broker/floor $ratio"
    ratios+=("$ratio")
    rm -rf "$data" "$data.log" "$data.perf"
  done
  printf '%s\n' "${figures[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median: %s CPU s/GB over %d runs\n", a[int((NR + 1) / 2)], NR }'
  printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median broker/floor: %s\n", a[int((NR + 1) / 2)] }'
  exit 0
fi
cargo build -q --release -p broker -p client
command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
tick=$(getconf CLK_TCK)
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$data"' EXIT

broker_pid=
start_broker() { # $@: extra flags
  target/release/broker serve --listen 127.0.0.1:$PORT --data-dir "$data" "$@" >"$data.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do grep -q listening "$data.log" && return; sleep 0.1; done
  echo "broker did not start"; cat "$data.log"; exit 1
}
stop_broker() { kill -TERM $broker_pid; wait $broker_pid || true; }
cpu_s() { awk -v t="$tick" '{ printf "%.3f", ($14 + $15) / t }' /proc/$broker_pid/stat; }

echo "== produce: $RECORDS records of $SIZE B (acks=1, linger.ms=5, batch.size=262144, no compression)"
start_broker
target/release/perf produce --topic $TOPIC --num-records "$RECORDS" --record-size "$SIZE" --throughput -1 \
  --bootstrap-server 127.0.0.1:$PORT --producer-props acks=1 linger.ms=5 batch.size=262144 | tail -1
stop_broker

consume() { # $1: label, rest: broker flags
  local label=$1; shift
  start_broker "$@"
  local c0; c0=$(cpu_s)
  local out; out=$(target/release/perf consume --topic $TOPIC --messages "$RECORDS" --bootstrap-server 127.0.0.1:$PORT \
    --hide-header --consumer-props check.crcs=false fetch.max.bytes=52428800 | tail -1)
  local c1; c1=$(cpu_s)
  stop_broker
  local gb; gb=$(awk -v n="$RECORDS" -v s="$SIZE" 'BEGIN { printf "%.3f", n * s / 1e9 }')
  echo "$label: $out"
  awk -v a="$c0" -v b="$c1" -v g="$gb" -v l="$label" 'BEGIN { printf "%s: broker CPU %.2f s for %.2f GB of values = %.3f CPU s/GB\n", l, b - a, g, (b - a) / g }'
}
echo "== consume from the page cache"
consume "sendfile" 
consume "copy    " --no-zero-copy
consume "sendfile" 

echo "== loopback reference (iperf3, 5 s, one stream)"
iperf3 -s -p 15201 -1 >/dev/null 2>&1 &
sleep 0.5
iperf3 -c 127.0.0.1 -p 15201 -t 5 -J | python3 -c 'import json,sys; d=json.load(sys.stdin); print("iperf3 loopback: %.0f MB/s" % (d["end"]["sum_received"]["bits_per_second"] / 8e6))'
