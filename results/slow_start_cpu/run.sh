#!/usr/bin/env bash
# The slow-start check's order on a 2-core machine: one queue per core (N = 4 on one, N = 2 on the other), the
# leading candidate (peak lr 2e-3) first, then the current recipe (5e-3). The first candidate (3e-3) stops at its
# seed 1: at N = 4 its regular model learned no faster than at 5e-3 (0.7 BLEU at step 800 against 9.2 at 2e-3), so
# it cannot be the series' recipe whatever its other seeds show.
# Runs go one at a time per queue, seed by seed, so that a working stretch that ends mid-queue leaves finished runs behind
# (steps, not seconds, are compared here: the lanes only pin one core per run). Finished runs are skipped; an
# unfinished one starts again (from its last checkpoint if the machine still has it).
# Run from the repository root: bash results/slow_start_cpu/run.sh [a|b ...]   (default: both queues, one per core;
# one queue leaves the other core to something else, e.g. the series' data-limit run)
set -u
cd "$(dirname "$0")/../.."
queue() {  # queue RECIPE_N... : every cell of those sweeps, seed by seed; a cell another queue holds is skipped
  for sweep_name in "$@"; do
    local sweep="results/slow_start_cpu/sweep_${sweep_name}.yaml" cells
    cells=$(hf-reservoir sweep "$sweep" --list)
    for seed in 1 2 3 4 5; do
      for model in regular transformer ffn; do
        local cell="${model}-N${sweep_name##*_N}-seed${seed}"
        if grep -qx "$cell" <<< "$cells"; then
          flock -n "$locks/${sweep_name}-${cell}.lock" \
            hf-reservoir sweep "$sweep" --cell "$cell"
        fi
      done
    done
  done
}
locks=results/slow_start_cpu/locks
mkdir -p "$locks"
# Each queue ends with the other's sweeps, so that the core whose queue is shorter takes over the other's last
# cells (one process per cell: the lock); each model has a lane of its own (the sweeps' lanes mapping).
declare -A order=([a]="lr2e-3_N4 lr5e-3_N4 lr2e-3_N2 lr5e-3_N2" [b]="lr2e-3_N2 lr5e-3_N2 lr2e-3_N4 lr5e-3_N4")
queues=("$@")
[ ${#queues[@]} -gt 0 ] || queues=(a b)
for name in "${queues[@]}"; do
  [ -n "${order[$name]:-}" ] || { echo "run.sh: no queue '$name'; the queues are a and b" >&2; exit 2; }
  # shellcheck disable=SC2086
  queue ${order[$name]} > "results/slow_start_cpu/queue_${name}.log" 2>&1 &
done
wait
