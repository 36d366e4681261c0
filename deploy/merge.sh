#!/bin/sh
# Merges every shard directory of a sharded sweep (OUT/shard-*) into OUT/merged/sweep.json.
#   OUT  the shared directory the workers wrote to (default: out/sweep)
#   SIM  the simulator binary (default: sim on PATH, else ./target/sim/release/sim)
# Exit status: the merged sweep's (0 every seed passed, 1 some failed, 64 the shards do not
# belong together: mixed scenarios or overlapping seeds).
set -u
out="${OUT:-out/sweep}"
sim="${SIM:-}"
if [ -z "$sim" ]; then
    if command -v sim >/dev/null 2>&1; then sim=sim; else sim=./target/sim/release/sim; fi
fi
set -- "$out"/shard-*
if [ ! -d "$1" ]; then
    echo "merge: no shard directories under $out" >&2
    exit 64
fi
exec "$sim" sweep-merge --out "$out/merged" "$@"
