#!/usr/bin/env bash
# Loglab's one test command: installs what the tests need (idempotently), then runs every test in
# both worlds. CI (.ci/run) calls exactly this. Usage: scripts/test.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A RUSTFLAGS in the environment would silently override the simulated build's --cfg madsim.
unset RUSTFLAGS
mkdir -p target
failures=0

step() { printf '\n=== %s\n' "$*"; }

# Runs a cargo test command, keeps its full output in target/<name>.log, prints the summary lines.
cargo_tests() {
  local name=$1; shift
  step "$name: cargo $*"
  cargo "$@" >"target/$name.log" 2>&1
  local rc=$?
  grep -E '^(test result|     Running)|panicked|FAILED|^error' "target/$name.log" | grep -v '^test result: ok. 0 passed' || true
  if [ $rc -ne 0 ]; then
    echo "--- $name failed (exit $rc); tail of target/$name.log:"; tail -n 60 "target/$name.log"
    failures=$((failures + 1))
  fi
}

cargo_tests test-real test --workspace --no-fail-fast
cargo_tests test-sim sim-test --workspace --no-fail-fast

# Nemesis sweep: 200 seeds, each drawing its own fault schedule (broker kills, pauses, partitions,
# slow disk and NIC; group members killed, paused, partitioned, leaving); every check must hold.
step "nemesis sweep: cargo simulate sweep scenarios/nemesis-single.json --seeds 1..201"
cargo simulate sweep scenarios/nemesis-single.json --seeds 1..201 --jobs 2 --out target/nemesis-sweep >target/nemesis-sweep.log 2>&1
rc=$?
tr '\r' '\n' <target/nemesis-sweep.log | grep -E '^FAILED|seeds, [0-9]+ passed' || true
if [ $rc -ne 0 ]; then
  echo "--- nemesis sweep failed (exit $rc); tail of target/nemesis-sweep.log:"; tr '\r' '\n' <target/nemesis-sweep.log | tail -n 30
  failures=$((failures + 1))
fi

# Cluster nemesis sweep: 200 seeds on a three-broker combined-mode cluster with safe settings
# (RF 3, acks=all, min.insync.replicas=2, idempotence): kills, power losses, pauses, partitions and
# disk faults of a minority; every check (lost-write, replicas-agree, hw-monotonic, ...) must hold.
step "cluster nemesis sweep: cargo simulate sweep scenarios/cluster-nemesis.json --seeds 1..201"
timeout 1200 cargo simulate sweep scenarios/cluster-nemesis.json --seeds 1..201 --jobs 2 --out target/cluster-nemesis-sweep >target/cluster-nemesis-sweep.log 2>&1
rc=$?
tr '\r' '\n' <target/cluster-nemesis-sweep.log | grep -E '^FAILED|seeds, [0-9]+ passed' || true
if [ $rc -ne 0 ]; then
  echo "--- cluster nemesis sweep failed (exit $rc); tail of target/cluster-nemesis-sweep.log:"; tr '\r' '\n' <target/cluster-nemesis-sweep.log | tail -n 30
  failures=$((failures + 1))
fi

# --- real-client tests are added below this line (they install kcat / Python clients idempotently)

# Real clients against `broker serve` (release build): kcat from Debian, confluent-kafka and
# kafka-python from PyPI in .venv. Installs only what is missing.
real_clients() {
  if ! command -v kcat >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat || return 1
  fi
  if ! .venv/bin/python -c 'import confluent_kafka, kafka, pytest' >/dev/null 2>&1; then
    python3 -m venv .venv && .venv/bin/pip install -q confluent-kafka kafka-python pytest || return 1
  fi
  cargo build --release -p broker || return 1
  LOGLAB_BROKER="$PWD/target/release/broker" timeout 900 .venv/bin/python -m pytest -q -p no:cacheprovider \
    -W ignore::DeprecationWarning tests/clients
}
step "real clients: kcat, confluent-kafka, kafka-python (tests/clients)"
real_clients >target/real-clients.log 2>&1
rc=$?
grep -E '^(FAILED|ERROR)|[0-9]+ (passed|failed)' target/real-clients.log || true
if [ $rc -ne 0 ]; then
  echo "--- real clients failed (exit $rc); tail of target/real-clients.log:"; tail -n 60 target/real-clients.log
  failures=$((failures + 1))
fi

step "summary"
passed=$(cat target/test-real.log target/test-sim.log | awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }')
failed=$(cat target/test-real.log target/test-sim.log | awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) f += $i } END { print f + 0 }')
echo "cargo tests: ${passed} passed, ${failed} failed"
[ "$failures" -eq 0 ] || { echo "FAILED: $failures test step(s)"; exit 1; }
