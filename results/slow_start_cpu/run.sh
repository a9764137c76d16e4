#!/usr/bin/env bash
# The slow-start check's order on a 2-core machine: one queue per core, the newest candidate (peak lr 2e-3) first,
# N = 4 on one core and N = 2 on the other, then the remaining seeds of the other two recipes.
# Each sweep resumes where it stopped (finished runs skipped, unfinished ones from their last checkpoint).
# Run from the repository root: bash results/slow_start_cpu/run.sh
set -u
cd "$(dirname "$0")/../.."
queue() {
  for n in "$@"; do
    hf-reservoir sweep "results/slow_start_cpu/sweep_${n}.yaml" --report-dir "results/slow_start_cpu/report_${n}"
  done
}
queue lr2e-3_N4 lr3e-3_N4 lr3e-3_N2 > results/slow_start_cpu/queue_a.log 2>&1 &
queue lr2e-3_N2 lr5e-3_N2 lr5e-3_N4 > results/slow_start_cpu/queue_b.log 2>&1 &
wait
