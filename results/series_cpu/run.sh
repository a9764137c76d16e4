#!/usr/bin/env bash
# The convergence series (issue #23) on a 2-core machine, in the order that leaves finished runs at the end of
# each session (an unfinished run resumes from its checkpoint only while the machine keeps it): the short checks
# first (the lr check at N = 4: 1,000 steps of two models per rate, one per core; done 2026-12-02: every model at 2e-3), then the series one seed and
# N at a time (both lanes together, one per core), N = 2 before N = 4, then the data-limit run.
# Run from the repository root: bash results/series_cpu/run.sh   (finished runs are skipped)
set -u
cd "$(dirname "$0")/../.."
log=results/series_cpu/run.log
declare -A models=(
  [2]="regular transformer ffn regular@b transformer-identity transformer-learned"
  [4]="regular transformer ffn regular@b transformer-learned regular_deep"
)
for lr in 2e-3 1e-3 3e-3; do  # 3e-3: transformer-learned only (its twin was ahead there on seed 1)
  hf-reservoir sweep "results/series_cpu/lr_check_N4_lr${lr}.yaml" >> "$log" 2>&1
done
# Transformer at N = 4 did better at 3e-3 than at 2e-3 on seed 1 of the slow-start check: a second seed at 3e-3
# (its 2e-3 seed 2 exists) decides its rate in the series.
hf-reservoir sweep results/slow_start_cpu/sweep_lr3e-3_N4.yaml --cell transformer-N4-seed2 >> "$log" 2>&1
for seed in 1 2 3; do
  for n in 2 4; do
    cells=()
    for model in ${models[$n]}; do cells+=(--cell "${model}-N${n}-seed${seed}"); done
    hf-reservoir sweep results/series_cpu/sweep.yaml "${cells[@]}" >> "$log" 2>&1
  done
done
hf-reservoir sweep results/series_cpu/sweep_data_limit.yaml >> "$log" 2>&1
