#!/usr/bin/env bash
# Profile-guided builds of the simulator (issue 13).
#
#   scripts/pgo-sim.sh            # a fresh profile and a fat-LTO build with it, for long benchmarks
#                                 # and big sweeps; prints the binary's path: target/sim-pgo/use/release/sim
#   scripts/pgo-sim.sh --refresh  # a fresh profile, recorded as the committed one (below); no build
#   scripts/pgo-sim.sh --check    # the committed profile's stamp and rustc agree with it (CI's lint step)
#
#   target/sim-pgo/use/release/sim scenarios/bench-100k-cluster.json --seed 1 --out out/bench
#   target/sim-pgo/use/release/sim sweep scenarios/cluster-nemesis.json --seeds 1..2001 --jobs 2 --out out/sweep
#
# Same source, same traces (a run's trace hash does not depend on how the binary was optimized):
# only faster.
#
# The committed profile. Every optimized build of the simulated world (`cargo simulate`, `cargo
# sim-build --release`) is profile-guided with sim/pgo/sim.profdata, which `--refresh` records
# (scripts/rustc-sim adds it to the build; sim/pgo/rustc-version names the rustc that recorded
# it, the only one that uses it; the sim aliases in .cargo/config.toml carry its stamp, `--cfg
# pgo_<first 12 hex digits of its sha256>`, so that cargo rebuilds when it changes). A function
# changed after the profile was recorded is compiled without profile data, so the gain fades as
# the code moves on: refresh after large changes to hot code. bench-100k-cluster seed 1
# (2026-12-08, six alternated rounds): 0.88 of the build without a profile (median 4.53 against
# 5.17 CPU s), 3 s cut instructions −5.5 %, instruction-cache misses −39 %.
#
# This script's own build adds fat link-time optimization (the hot paths cross crates: workload →
# client → records, broker → log → disk model), which the release profile leaves out because it
# doubles every incremental release build: 2026-12-06, five alternated rounds, 0.71-0.86 of the
# plain release build's CPU, median 0.82 (PGO without LTO 0.90; README, "Simulator speed and
# memory"). It costs two release builds of the simulator (instrumented, then optimized with the
# profile; ~4-5 min each on 2 cores) and ~15 s of training runs.
#
# Training: the per-record path (bench-100k-cluster cut to 10 s), many partitions (bench-20x75 cut
# to 5 s) and the fault paths (cluster-nemesis, three seeds). Needs rustup's llvm-tools component
# (installed here when missing: llvm-profdata must match rustc's LLVM); `--check` needs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

committed=sim/pgo/sim.profdata
stamp_of() { echo "pgo_$(sha256sum "$1" | cut -c1-12)"; }

# The committed profile, its rustc and its stamp in every sim alias, checked; prints what it read.
check() {
  local want n_aliases n_stamped
  [[ -s $committed ]] || { echo "pgo-sim --check: $committed missing" >&2; return 1; }
  [[ -s sim/pgo/rustc-version ]] || { echo "pgo-sim --check: sim/pgo/rustc-version missing" >&2; return 1; }
  want=$(stamp_of "$committed")
  n_aliases=$(grep -c "'--cfg','madsim'" .cargo/config.toml)
  n_stamped=$(grep -c "'--cfg','madsim','--cfg','$want'" .cargo/config.toml)
  echo "pgo-sim --check: $committed $(wc -c <"$committed") bytes, stamp $want; recorded by $(cat sim/pgo/rustc-version), this rustc: $(rustc -V)"
  if [[ $n_aliases -lt 4 || $n_stamped -ne $n_aliases ]]; then
    echo "pgo-sim --check: $n_stamped of $n_aliases sim aliases in .cargo/config.toml carry the stamp $want (--refresh writes it)" >&2
    return 1
  fi
  echo "pgo-sim --check: $n_stamped of $n_aliases sim aliases carry the stamp"
}

mode=${1-}
case "$mode" in
  "" | --refresh) ;;
  --check) check; exit ;;
  *) echo "usage: scripts/pgo-sim.sh [--refresh | --check]" >&2; exit 64 ;;
esac

rustup component add llvm-tools >/dev/null 2>&1 || true
profdata=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -1)
if [[ -z "$profdata" ]]; then
  echo "pgo-sim: no llvm-profdata in $(rustc --print sysroot) (rustup component add llvm-tools)" >&2
  exit 2
fi

work="$PWD/target/sim-pgo/profile"
rm -rf "$work"
mkdir -p "$work/raw"

build() { # build TARGET_DIR RUSTFLAG [CARGO ARG...]: scripts/rustc-sim leaves builds with their own profile flag alone
  local dir=$1 flag=$2
  shift 2
  cargo build --release -p sim --config "build.rustflags=['--cfg','madsim','$flag']" \
    --config "build.target-dir='target/sim-pgo/$dir'" "$@" >&2
}

# The instrumented build is made as the build that will use its profile is: with fat LTO for this
# script's binary, without for the committed profile. (Measured 2026-12-08: this script's LTO
# build with a profile recorded without LTO ran slower than the plain build with it, median 4.83
# against 4.51 CPU s over four alternated rounds of bench-100k-cluster; LLVM instruments a
# function after its pre-link simplification, which differs between the two.)
if [[ $mode == --refresh ]]; then
  build gen "-Cprofile-generate=$work/raw"
  gen=target/sim-pgo/gen/release/sim
else
  build gen-lto "-Cprofile-generate=$work/raw" --config 'profile.release.lto="fat"'
  gen=target/sim-pgo/gen-lto/release/sim
fi

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
# Sparse: functions the training never ran are left out (3.2 MB instead of 22).
"$profdata" merge --sparse -o "$work/merged.profdata" "${raw[@]}"

if [[ $mode == --refresh ]]; then
  old=$(stamp_of "$committed" 2>/dev/null || echo pgo_none)
  cp "$work/merged.profdata" "$committed"
  rustc -V >sim/pgo/rustc-version
  new=$(stamp_of "$committed")
  sed -i "s/'--cfg','madsim','--cfg','pgo_[0-9a-f]*'/'--cfg','madsim','--cfg','$new'/g" .cargo/config.toml
  echo "pgo-sim: recorded $committed ($old -> $new) for $(cat sim/pgo/rustc-version)" >&2
  check
  exit
fi

build use "-Cprofile-use=$work/merged.profdata" --config 'profile.release.lto="fat"'
echo target/sim-pgo/use/release/sim
