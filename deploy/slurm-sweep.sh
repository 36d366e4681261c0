#!/bin/sh
# A sharded sweep as a Slurm job array: one array task per shard; the task's shard is its
# SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN), the shard count SLURM_ARRAY_TASK_COUNT,
# mapped to `sim sweep --shard i/n` by deploy/sweep-worker.sh. Every task writes
# $OUT/shard-<i> on shared storage; a requeued task resumes (finished seeds are skipped).
#
#   sbatch deploy/slurm-sweep.sh                      # from the repository root, on shared storage
#   sbatch --dependency=afterany:<jobid> --wrap "OUT=$PWD/out/cluster-nemesis deploy/merge.sh"
#
# Override the settings with --export, e.g.
#   sbatch --array=0-31 --export=ALL,SCENARIO=scenarios/nemesis-single.json,SEEDS=1..20001 deploy/slurm-sweep.sh
#SBATCH --job-name=loglab-sweep
#SBATCH --array=0-9
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=slurm-sweep-%A_%a.out
set -u
export SCENARIO="${SCENARIO:-scenarios/cluster-nemesis.json}"
export SEEDS="${SEEDS:-5001..15001}"
export OUT="${OUT:-$PWD/out/cluster-nemesis}"
export JOBS="${JOBS:-${SLURM_CPUS_PER_TASK:-1}}"
# sbatch runs a spooled copy of this script: find the worker from the submit directory.
exec "${LOGLAB_DEPLOY:-${SLURM_SUBMIT_DIR:-.}/deploy}/sweep-worker.sh"
