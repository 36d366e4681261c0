#!/usr/bin/env bash
# Loglab's one test command: installs what the tests need (idempotently), then runs every test in
# both worlds. CI (.ci/run) calls exactly this.
#
# Usage:
#   scripts/test.sh          the full command, what CI runs (about 22 min of steps on 2 quiet cores):
#                              1. tools, each skipped when present: kcat (apt), and .venv with
#                                 confluent-kafka, kafka-python and pytest (pip)
#                              1b. lints: cargo fmt --check, cargo clippy -D warnings in both
#                                 worlds, the committed simulator profile's stamp
#                                 (scripts/pgo-sim.sh --check; each counted as one test)
#                              2. cargo test --workspace            (real world, default proptest cases)
#                              3. deep properties: the property tests that guard data (log model,
#                                 compaction, codecs, ISR/HW, Raft, group state, the producer's
#                                 accumulator, the assignors) again with PROPTEST_CASES raised
#                              4. cargo sim-test --workspace        (simulated world)
#                              5. the nemesis sweeps (single broker, cluster), 200 seeds each
#                              6. real clients (kcat, confluent-kafka, kafka-python, kafkajs)
#                                 against `broker serve` (tests/clients)
#   scripts/test.sh quick    the quick tier for daily work (also `--quick`): kcat (which
#                            `cargo test` needs), the lints, then both worlds' cargo tests
#                            (`cargo test --workspace`, `cargo sim-test --workspace`, default
#                            proptest cases); no deep properties, sweeps or real clients
#
# A test that needs a tool fails, naming it, when the tool is missing: the tools are installed
# before the first step that needs them. Each step's full output is in target/<step>.log. The last
# line is `tests: N passed, M failed`: every test each step ran (the deep step's re-runs and each
# sweep as one test included); a step that fails without naming a failed test (a build error, a
# timeout, an install) counts as one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A RUSTFLAGS in the environment would silently override the simulated build's --cfg madsim.
unset RUSTFLAGS
# On CI every build starts from nothing: incremental caches (several GiB per world) buy nothing
# there and fill small disks.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

quick=0
case "${1-}" in
  "") ;;
  quick|--quick) quick=1 ;;
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/test.sh [quick]" >&2; exit 64 ;;
esac

mkdir -p target
failures=0      # failed steps
passed_total=0  # tests passed, over every step
failed_total=0  # tests failed, over every step (a failed step without a failed test counts one)

step() { printf '\n=== %s\n' "$*"; }

# Adds a step's counts to the totals: record <rc> <passed> <failed>.
record() {
  local rc=$1 p=$2 f=$3
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed_total=$((passed_total + p))
  failed_total=$((failed_total + f))
  if [ "$rc" -ne 0 ]; then failures=$((failures + 1)); fi
}

# Sums libtest's `test result:` lines in a log: prints "<passed> <failed>".
cargo_counts() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { print p + 0, f + 0 }' "$1"
}

# Runs a cargo test command, keeps its full output in target/<name>.log, prints the summary lines.
# Extra environment for the command goes before `--`: cargo_tests <name> [VAR=value ...] -- <cargo args>.
cargo_tests() {
  local name=$1; shift
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  step "$name: ${env[*]+${env[*]} }cargo $*"
  local t0=$SECONDS
  env "${env[@]+"${env[@]}"}" cargo "$@" >"target/$name.log" 2>&1
  local rc=$?
  grep -E '^(test result|     Running)|panicked|FAILED|^error' "target/$name.log" | grep -v '^test result: ok. 0 passed' || true
  echo "($name: $((SECONDS - t0)) s)"
  if [ $rc -ne 0 ]; then
    echo "--- $name failed (exit $rc); tail of target/$name.log:"; tail -n 60 "target/$name.log"
  fi
  # shellcheck disable=SC2046
  record $rc $(cargo_counts "target/$name.log")
}

# --- 1. tools, each installed only when missing, before the first step that needs it

# kcat: client/tests/groups.rs (a group shared with librdkafka) and tests/clients need it.
install_kcat() {
  command -v kcat >/dev/null 2>&1 && { echo "kcat: present ($(command -v kcat))"; return 0; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat || return 1
  command -v kcat >/dev/null 2>&1
}
# The Python clients for tests/clients, in .venv.
# The versions are pinned in tests/clients/requirements.txt; .venv/requirements.installed records
# what was installed, so a changed pin reinstalls.
install_venv() {
  local req=tests/clients/requirements.txt
  if .venv/bin/python -c 'import confluent_kafka, kafka, pytest' >/dev/null 2>&1 \
     && cmp -s "$req" .venv/requirements.installed; then
    echo ".venv: present"; return 0
  fi
  { [ -x .venv/bin/pip ] || python3 -m venv .venv; } && .venv/bin/pip install -q -r "$req" || return 1
  .venv/bin/python -c 'import confluent_kafka, kafka, pytest' && cp "$req" .venv/requirements.installed
}
# kafkajs for tests/clients/kafkajs (node's own test runner), pinned by its package-lock.json;
# node_modules/.package-lock.installed records what was installed, so a changed lock reinstalls.
install_node_modules() {
  local dir=tests/clients/kafkajs
  command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } || return 1
  if [ -d "$dir/node_modules/kafkajs" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.installed"; then
    echo "kafkajs: present"; return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  cp "$dir/package-lock.json" "$dir/node_modules/.package-lock.installed"
}
install_tools() {
  install_kcat || { echo "--- could not install kcat"; return 1; }
  [ "$quick" -eq 1 ] && return 0
  install_venv || { echo "--- could not install the Python clients in .venv"; return 1; }
  install_node_modules || { echo "--- could not install kafkajs (tests/clients/kafkajs)"; return 1; }
}
step "tools: kcat$([ "$quick" -eq 1 ] || echo ', .venv (confluent-kafka, kafka-python, pytest), kafkajs (npm)')"
install_tools >target/tools.log 2>&1
rc=$?
cat target/tools.log
record $rc 0 0

# --- 1b. lints, each counted as one test: formatting (rustfmt.toml) and clippy with warnings as
# errors, in the real world and in the simulated one (`--cfg madsim` compiles other code paths).
lint() {
  local name=$1; shift
  step "$name: $*"
  local t0=$SECONDS
  "$@" >"target/$name.log" 2>&1
  local rc=$?
  echo "($name: $((SECONDS - t0)) s)"
  if [ $rc -ne 0 ]; then
    echo "--- $name failed (exit $rc); head of target/$name.log:"; head -n 60 "target/$name.log"
    record $rc 0 1
  else
    record 0 1 0
  fi
}
lint fmt cargo fmt --all --check
lint clippy-real cargo clippy --workspace --all-targets -- -D warnings
lint clippy-sim cargo sim-clippy --workspace --all-targets -- -D warnings
# The committed profile of the simulator's optimized builds: its stamp in every sim alias.
lint pgo-profile scripts/pgo-sim.sh --check

# --- 2. the real world

cargo_tests test-real -- test --workspace --no-fail-fast

# --- 3. deep properties: the property tests that guard data again, with PROPTEST_CASES raised.
# Each property's config reads PROPTEST_CASES when set (its default keeps step 2 quick). Every
# invocation selects the same packages and features as step 2 (--workspace), so it reuses step 2's
# test binaries instead of building others; the name filters pick the properties. Two depths,
# measured on this project's 2-core machine (while other builds ran):
# - DEEP_CASES for the pure and in-memory properties (codecs, ISR/HW, Raft, controller metadata,
#   group state, offset index, Raft log, accumulator, assignors, and the log and compaction models
#   on the simulated disk): 5000 cases, 17-125x their defaults, take about 60 s together;
# - DEEP_CASES_OS for the log and compaction models on real files (`os_backend_matches_model`),
#   bound by fsync latency: 500 cases, 10x their defaults, take 15 s on a quiet disk and up to
#   3.5 min on a disk busy with other builds.
DEEP_CASES=5000
DEEP_CASES_OS=500
deep_properties() {
  # records' codecs, varints and batch header; cluster's ISR/HW rules, Raft and controller
  # metadata; the broker's group state machine, offset index, Raft log and replica deltas.
  cargo_tests deep-props-lib PROPTEST_CASES=$DEEP_CASES -- test --workspace --no-fail-fast --lib -- \
    compression:: varint:: header:: isr:: raft:: metadata:: group::state:: log::index:: controller::raft_log:: replica::delta::
  # The producer's accumulator and the assignors (every test of both targets is cheap).
  cargo_tests deep-props-client PROPTEST_CASES=$DEEP_CASES -- test --workspace --no-fail-fast \
    --test accumulator --test assignors
  # records/tests/roundtrip.rs's properties (the filters match none of client/tests/roundtrip.rs,
  # whose round trips run against a broker process), and the log and compaction models on the
  # simulated disk.
  cargo_tests deep-props-codecs-models PROPTEST_CASES=$DEEP_CASES -- test --workspace --no-fail-fast \
    --test roundtrip --test log_model --test log_compaction -- \
    encode_decode_roundtrip _batches never_panic disk_model_matches_model
  # The log and compaction models on real files.
  cargo_tests deep-props-os-models PROPTEST_CASES=$DEEP_CASES_OS -- test --workspace --no-fail-fast \
    --test log_model --test log_compaction -- os_backend_matches_model
}

[ "$quick" -eq 0 ] && deep_properties

# --- 4. the simulated world
cargo_tests test-sim -- sim-test --workspace --no-fail-fast

if [ "$quick" -eq 0 ]; then

  # --- 5. sweeps: each passes when every seed passes; counted as one test each.
  # They run the simulator step 4 already built (the `test` profile, opt-level 1, workspace
  # features): a release build of it would take ~4 minutes of CI for runs ~1.4x faster (0.30 vs
  # 0.43 CPU s a nemesis seed), so it never pays for 400 seeds. `sim-build --bins` is a no-op after
  # step 4 and builds what is missing when step 4 failed to build.
  sim_bin=target/sim/debug/sim
  # sweep <name> <timeout s, 0: none> <scenario>
  sweep() {
    local name=$1 limit=$2 scenario=$3
    step "$name: sim sweep $scenario --seeds 1..201 (target/sim/debug/sim)"
    local t0=$SECONDS
    { cargo sim-build --workspace --profile test --bins &&
      timeout "$limit" "$sim_bin" sweep "$scenario" --seeds 1..201 --jobs 2 --out "target/$name"
    } >"target/$name.log" 2>&1
    local rc=$?
    tr '\r' '\n' <"target/$name.log" | grep -E '^FAILED|seeds, [0-9]+ passed' || true
    echo "($name: $((SECONDS - t0)) s)"
    if [ $rc -ne 0 ]; then
      echo "--- $name failed (exit $rc); tail of target/$name.log:"; tr '\r' '\n' <"target/$name.log" | tail -n 30
      record $rc 0 1
    else
      record 0 1 0
    fi
  }
  # Nemesis sweep: 200 seeds, each drawing its own fault schedule (broker kills, pauses,
  # partitions, slow disk and NIC; group members killed, paused, partitioned, leaving); every
  # check must hold.
  sweep nemesis-sweep 0 scenarios/nemesis-single.json
  # Cluster nemesis sweep: 200 seeds on a three-broker combined-mode cluster with safe settings
  # (RF 3, acks=all, min.insync.replicas=2, idempotence): kills, power losses, pauses, partitions
  # and disk faults of a minority; every check (lost-write, replicas-agree, hw-monotonic, ...)
  # must hold.
  sweep cluster-nemesis-sweep 1200 scenarios/cluster-nemesis.json

  # --- 6. real clients against `broker serve`: kcat, confluent-kafka and kafka-python (installed
  # in step 1), then kafkajs. The broker is the one step 2 built (the `test` profile, opt-level 1):
  # these tests judge the wire protocol, not speed, and a release build would add ~3 minutes.
  broker_bin="$PWD/target/debug/broker"
  real_clients() {
    cargo build --workspace --profile test --bins || return 1
    LOGLAB_BROKER="$broker_bin" timeout 900 .venv/bin/python -m pytest -q -p no:cacheprovider \
      -W ignore::DeprecationWarning tests/clients
  }
  step "real clients: kcat, confluent-kafka, kafka-python (tests/clients)"
  t0=$SECONDS
  real_clients >target/real-clients.log 2>&1
  rc=$?
  grep -E '^(FAILED|ERROR)|[0-9]+ (passed|failed)' target/real-clients.log || true
  echo "(real-clients: $((SECONDS - t0)) s)"
  if [ $rc -ne 0 ]; then
    echo "--- real clients failed (exit $rc); tail of target/real-clients.log:"; tail -n 60 target/real-clients.log
  fi
  # pytest's last line: "3 failed, 14 passed in 95.2s" (either part may be absent).
  summary=$(grep -E '[0-9]+ (passed|failed|errors?)\b' target/real-clients.log | tail -n 1)
  p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
  e=$(echo "$summary" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+' || echo 0)
  record $rc "${p:-0}" $(( ${f:-0} + ${e:-0} ))

  # kafkajs (tests/clients/kafkajs) with node's test runner, TAP output: "# pass N", "# fail N".
  step "real clients: kafkajs (tests/clients/kafkajs)"
  t0=$SECONDS
  (cd tests/clients/kafkajs && LOGLAB_BROKER="$broker_bin" timeout 600 \
    node --test --test-reporter=tap) >target/real-clients-kafkajs.log 2>&1
  rc=$?
  grep -E '^not ok|^# (pass|fail) ' target/real-clients-kafkajs.log || true
  echo "(real-clients-kafkajs: $((SECONDS - t0)) s)"
  if [ $rc -ne 0 ]; then
    echo "--- kafkajs tests failed (exit $rc); tail of target/real-clients-kafkajs.log:"; tail -n 60 target/real-clients-kafkajs.log
  fi
  p=$(grep -oE '^# pass [0-9]+' target/real-clients-kafkajs.log | grep -oE '[0-9]+' | tail -n 1)
  f=$(grep -oE '^# fail [0-9]+' target/real-clients-kafkajs.log | grep -oE '[0-9]+' | tail -n 1)
  record $rc "${p:-0}" "${f:-0}"
fi

step "summary$([ "$quick" -eq 1 ] && echo ' (quick tier)')"
[ "$failures" -eq 0 ] || echo "FAILED: $failures step(s)"
echo "tests: ${passed_total} passed, ${failed_total} failed"
[ "$failures" -eq 0 ]
