#!/usr/bin/env bash
# The convergence series (issue #23) on a 2-core machine, in the order that leaves finished runs at the end of
# each working stretch of the machine (an unfinished run resumes from its checkpoint only while the machine keeps it): the short checks
# first (the lr check at N = 4: 1,000 steps of two models per rate, one per core; done 2026-12-02: every model at
# 2e-3), then the series one
# group (N, seed) at a time (both lanes together, one per core), every N = 2 group before N = 4, then the data-limit
# run (with --until: as soon as no group fits, if it does).
# Run from the repository root: bash results/series_cpu/run.sh [--until HH:MM]   (finished runs are skipped)
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
# --until HH:MM (UTC; when the stretch ends): a (seed, N) group starts only if its lanes are expected to end before then
# (the minutes below), else it is skipped for a later stretch, and when no group fits any more the slow-start
# check's remainder fills the cores (1,000-step runs, one cut at the end at most), so that no lane is cut by the
# stretch's end: its runs would restart from scratch, and a lane resumed on another machine is no longer paired.
# The data-limit run (one run on one core, nothing paired: it is compared by steps, so a run cut by the stretch's
# end loses only time, and resumes from its checkpoint where the machine keeps it) starts when no group fits any
# more but it does (45 minutes: regular N = 2 alone on a core, about 30 minutes if it peaks by step 4,000), with
# one queue of the slow-start remainder on the other core and the second queue after it. Without --until every
# group runs, then the data-limit run.
declare -A minutes=([2]=75 [4]=110 [data_limit]=45)  # wall-clock minutes: a group's two lanes (README "Cost")
deadline=""
if [ "${1:-}" = "--until" ]; then deadline=$(date -u -d "$2" +%s) || exit 2; fi
fits() {  # fits N|data_limit: the group's lanes (or the data-limit run) end before the deadline
  [ -z "$deadline" ] || [ $(( $(date -u +%s) + ${minutes[$1]} * 60 )) -le "$deadline" ]
}
data_limit_done() { [ -f results/series_cpu/data_limit/regular-N2-seed1/results.json ]; }
mkdir -p results/series_cpu/locks
data_limit() {  # one process at a time (it may also have been started by hand on a core a lane left idle)
  flock -n results/series_cpu/locks/data_limit.lock hf-reservoir sweep results/series_cpu/data_limit/sweep.yaml
}
finished() {  # finished N SEED: every run of the group has its results
  local model
  for model in ${models[$1]}; do
    [ -f "results/series_cpu/runs/${model}-N$1-seed$2/results.json" ] || return 1
  done
}
# N = 2 for every seed, then N = 4 (the order matters only for which groups a short stretch can still fit).
for n in 2 4; do
  for seed in 1 2 3; do
    finished "$n" "$seed" && continue
    if ! fits "$n"; then
      echo "$(date -u +%H:%M) N = $n, seed $seed needs ${minutes[$n]} min, past $2: skipped" >> "$log"
      continue
    fi
    cells=()
    for model in ${models[$n]}; do cells+=(--cell "${model}-N${n}-seed${seed}"); done
    hf-reservoir sweep results/series_cpu/sweep.yaml "${cells[@]}" >> "$log" 2>&1
  done
done
if [ -n "$deadline" ]; then  # what remains of the stretch: the slow-start check's remainder (1,000-step runs)
  if ! data_limit_done && fits data_limit; then
    echo "$(date -u +%H:%M) no series group fits before $2: the data-limit run, and the slow-start remainder" >> "$log"
    (data_limit >> "$log" 2>&1; bash results/slow_start_cpu/run.sh b) &
    exec bash results/slow_start_cpu/run.sh a
  fi
  echo "$(date -u +%H:%M) no series group fits before $2: the slow-start remainder" >> "$log"
  exec bash results/slow_start_cpu/run.sh
fi
data_limit_done || data_limit >> "$log" 2>&1
