#!/usr/bin/env bash
# The slow-start check's order on a 2-core machine: one queue per core (N = 4 on one, N = 2 on the other), the
# chosen candidate (peak lr 2e-3) first, then the current recipe (5e-3), then the first candidate (3e-3).
# Runs go one at a time per queue, seed by seed, so that a session that ends mid-queue leaves finished runs behind
# (steps, not seconds, are compared here: the lanes only pin one core per run). Finished runs are skipped; an
# unfinished one starts again (from its last checkpoint if the machine still has it).
# Run from the repository root: bash results/slow_start_cpu/run.sh
set -u
cd "$(dirname "$0")/../.."
queue() {
  local n=$1
  shift
  for recipe in "$@"; do
    local sweep="results/slow_start_cpu/sweep_${recipe}_N${n}.yaml" cells
    cells=$(hf-reservoir sweep "$sweep" --list)
    for seed in 1 2 3 4 5; do
      for model in regular transformer ffn; do
        local cell="${model}-N${n}-seed${seed}"
        if grep -qx "$cell" <<< "$cells"; then
          hf-reservoir sweep "$sweep" --cell "$cell" --report-dir "results/slow_start_cpu/report_${recipe}_N${n}"
        fi
      done
    done
  done
}
queue 4 lr2e-3 lr5e-3 lr3e-3 > results/slow_start_cpu/queue_a.log 2>&1 &
queue 2 lr2e-3 lr5e-3 lr3e-3 > results/slow_start_cpu/queue_b.log 2>&1 &
wait
