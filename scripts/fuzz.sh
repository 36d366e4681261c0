#!/usr/bin/env bash
# Coverage-guided fuzzing of the broker's input paths with cargo-fuzz (libFuzzer) on the stable
# toolchain (`--sanitizer none`: no nightly can be installed on these machines). A benchmark, not
# a test: figures go in notes. See fuzz/README.md for the targets and their oracles.
#
# Usage: scripts/fuzz.sh [TARGET...]     targets: request batch recovery (default: all three)
#   env RUNS=N        executions per target (default 4000000); SECONDS_MAX=S caps each target's time
#       JOBS=J        parallel fuzzing processes per target (default 1)
# Prints per target: executions, coverage (libFuzzer's cov/ft), corpus size, crashes. A crash
# leaves its input in fuzz/artifacts/TARGET/; replay it with
#   cargo fuzz run -s none -O TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS
RUNS=${RUNS:-4000000}
SECONDS_MAX=${SECONDS_MAX:-0}
JOBS=${JOBS:-1}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request batch recovery)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -s none -O
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/artifacts/$t" "fuzz/corpus/$t"
  log="fuzz/target/fuzz-$t.log"
  t0=$(date +%s)
  set +e
  # libFuzzer's parallel mode only when asked: it moves each job's output to fuzz-N.log.
  par=()
  [ "$JOBS" -le 1 ] || par=(-jobs="$JOBS" -workers="$JOBS")
  LOGLAB_FUZZ_SEED_DIR="fuzz/corpus/$t" cargo fuzz run -s none -O "$t" "fuzz/corpus/$t" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_MAX" "${par[@]+"${par[@]}"}" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | awk '{ s += $1 } END { print s + 0 }')
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' || true)
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "$t: $execs executions in $(( $(date +%s) - t0 )) s wall; $last; crashes: $crashes (exit $rc; log $log)"
  [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || status=1
done
exit $status
