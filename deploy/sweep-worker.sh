#!/bin/sh
# One shard of a sharded sweep: maps the batch engine's index variable to `sim sweep --shard`.
#
# The shard index comes from, in this order: SHARD_INDEX (set it by hand), JOB_COMPLETION_INDEX
# (a Kubernetes Indexed Job), SLURM_ARRAY_TASK_ID (a Slurm job array; SLURM_ARRAY_TASK_MIN is
# subtracted, so --array=1-16 works as well as --array=0-15). The shard count comes from SHARDS,
# else SLURM_ARRAY_TASK_COUNT.
#
# Settings (environment):
#   SCENARIO  scenario file (required)
#   SEEDS     seed range, e.g. 1..10001 (required; every shard must be given the same range)
#   SHARDS    number of shards n (required outside a Slurm array)
#   OUT       shared directory; this shard writes OUT/shard-<i> (default: out/sweep)
#   JOBS      simulator processes at once on this machine (default: 1)
#   SIM       the simulator binary (default: sim on PATH, else ./target/sim/release/sim)
#
# Exit status: 0 when the shard ran to the end (failing seeds are results, listed in
# OUT/shard-<i>/sweep.json, not errors of the worker: a Job is not retried for them); the
# sweep's own status otherwise (64 bad settings, 3 the sweep could not run or write). A worker
# that is killed and started again resumes: the seeds it finished are skipped.
set -u

index="${SHARD_INDEX:-${JOB_COMPLETION_INDEX:-}}"
if [ -z "$index" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    index=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))
fi
shards="${SHARDS:-${SLURM_ARRAY_TASK_COUNT:-}}"
if [ -z "$index" ] || [ -z "$shards" ]; then
    echo "sweep-worker: no shard index (SHARD_INDEX, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID) or no SHARDS" >&2
    exit 64
fi
if [ -z "${SCENARIO:-}" ] || [ -z "${SEEDS:-}" ]; then
    echo "sweep-worker: set SCENARIO and SEEDS" >&2
    exit 64
fi
sim="${SIM:-}"
if [ -z "$sim" ]; then
    if command -v sim >/dev/null 2>&1; then sim=sim; else sim=./target/sim/release/sim; fi
fi
out="${OUT:-out/sweep}/shard-$index"
echo "sweep-worker: shard $index/$shards of $SCENARIO seeds $SEEDS -> $out"
"$sim" sweep "$SCENARIO" --seeds "$SEEDS" --shard "$index/$shards" --jobs "${JOBS:-1}" --out "$out"
rc=$?
case $rc in
    0|1|2) exit 0 ;;
    *) exit $rc ;;
esac
