#!/usr/bin/env bash
# The slow-start check's order on a 2-core machine: one queue per core, N = 4 first (the new depth), then N = 2.
# Each sweep resumes where it stopped (finished runs skipped, unfinished ones from their last checkpoint).
# Run from the repository root: bash results/slow_start_cpu/run.sh
set -u
cd "$(dirname "$0")/../.."
queue() {
  for n in "$@"; do
    hf-reservoir sweep "results/slow_start_cpu/sweep_${n}.yaml" --report-dir "results/slow_start_cpu/report_${n}"
  done
}
queue lr3e-3_N4 lr3e-3_N2 > results/slow_start_cpu/queue_lr3e-3.log 2>&1 &
queue lr5e-3_N4 lr5e-3_N2 > results/slow_start_cpu/queue_lr5e-3.log 2>&1 &
wait
