#!/usr/bin/env bash
# The affordable depth gate on a 2-core machine: both seeds' lanes side by side, one per core; each lane holds
# regular N = 2 and 4 of one seed, taking turns. Run folders and checkpoints go to $HF_RESERVOIR_RUNS (outside the
# repository); each finished run's record is copied into results/depth_gate_cpu/d256/runs/ as it finishes.
# Run from anywhere; run it again after an interruption: finished runs are skipped, the others
# resume from their last checkpoints, still taking turns in their lanes (a resume with a changed recipe is
# refused by each run).
set -eu
cd "$(dirname "$0")/../../.."
: "${HF_RESERVOIR_RUNS:?set HF_RESERVOIR_RUNS to a folder outside the repository, e.g. \$HOME/hf-reservoir-runs}"
mkdir -p "$HF_RESERVOIR_RUNS"
[ -f "$HF_RESERVOIR_RUNS/data/de-en/stats.json" ] || hf-reservoir prepare --output_dir "$HF_RESERVOIR_RUNS/data/de-en"
exec hf-reservoir sweep results/depth_gate_cpu/d256/sweep.yaml >> "$HF_RESERVOIR_RUNS/depth_gate_d256_cpu.log" 2>&1
