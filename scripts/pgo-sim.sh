#!/usr/bin/env bash
# A profile-guided build of the simulator, for long benchmarks and big sweeps (issue 13).
#
#   scripts/pgo-sim.sh            # prints the binary's path: target/sim-pgo/use/release/sim
#   target/sim-pgo/use/release/sim scenarios/bench-100k-cluster.json --seed 1 --out out/bench
#   target/sim-pgo/use/release/sim sweep scenarios/cluster-nemesis.json --seeds 1..2001 --jobs 2 --out out/sweep
#
# Same source, same traces (a run's trace hash does not depend on how the binary was optimized):
# only faster. Both builds also use fat link-time optimization (the hot paths cross crates:
# workload → client → records, broker → log → disk model), which the plain release profile
# leaves out because it doubles every incremental release build. bench-100k-cluster seed 1
# (2026-12-06, five alternated rounds): 0.71-0.86 of the plain release build's CPU, median 0.82
# (PGO without LTO 0.90; README, "Simulator speed and memory"). It costs two release builds
# of the simulator (instrumented, then optimized with the profile; ~4-5 min each on 2 cores,
# the link step optimizing the whole program) and ~15 s of training runs, so `cargo simulate`
# (the README's command) stays the plain release build.
#
# Training: the per-record path (bench-100k-cluster cut to 10 s), many partitions (bench-20x75 cut
# to 5 s) and the fault paths (cluster-nemesis, three seeds). Needs rustup's llvm-tools component
# (installed here when missing: llvm-profdata must match rustc's LLVM).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add llvm-tools >/dev/null 2>&1 || true
profdata=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -1)
if [[ -z "$profdata" ]]; then
  echo "pgo-sim: no llvm-profdata in $(rustc --print sysroot) (rustup component add llvm-tools)" >&2
  exit 2
fi

work="$PWD/target/sim-pgo/profile"
rm -rf "$work"
mkdir -p "$work/raw"

build() { # build TARGET_DIR RUSTFLAG
  cargo build --release -p sim --config "build.rustflags=['--cfg','madsim','$2']" \
    --config 'profile.release.lto="fat"' --config "build.target-dir='target/sim-pgo/$1'" >&2
}

build gen "-Cprofile-generate=$work/raw"
gen=target/sim-pgo/gen/release/sim

sed 's/"duration_s": 60/"duration_s": 10/' scenarios/bench-100k-cluster.json >"$work/bench-10s.json"
sed 's/"duration_s": 30/"duration_s": 5/' scenarios/bench-20x75.json >"$work/bench-20x75-5s.json"
for cut in bench-10s:10 bench-20x75-5s:5; do
  grep -q "\"duration_s\": ${cut#*:}," "$work/${cut%:*}.json" ||
    { echo "pgo-sim: could not cut ${cut%:*} (duration_s moved?)" >&2; exit 1; }
done
train() { # train NAME SCENARIO SEED
  LLVM_PROFILE_FILE="$work/raw/sim-%p-%m.profraw" "$gen" "$2" --seed "$3" --out "$work/out-$1" \
    >"$work/out-$1.log" 2>&1 || echo "pgo-sim: training run $1 exited $? (its profile still counts)" >&2
}
train bench "$work/bench-10s.json" 1
train wide "$work/bench-20x75-5s.json" 1
for seed in 1 2 3; do
  train "nemesis-$seed" scenarios/cluster-nemesis.json "$seed"
done
shopt -s nullglob
raw=("$work"/raw/sim-*.profraw)
if ((${#raw[@]} < 5)); then
  echo "pgo-sim: expected 5 profiles from the training runs, found ${#raw[@]}" >&2
  exit 1
fi
"$profdata" merge -o "$work/merged.profdata" "${raw[@]}"

build use "-Cprofile-use=$work/merged.profdata"
echo target/sim-pgo/use/release/sim
