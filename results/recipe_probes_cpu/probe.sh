#!/bin/bash
# One recipe probe, as run for results/recipe_probes_cpu (from the repository root):
#   results/recipe_probes_cpu/probe.sh NAME THREADS BUDGET_SECONDS [flag value ...]
# The demo recipe with BUDGET_SECONDS of training, one evaluation (greedy, full validation split) at
# the budget stop, no checkpoints. TOKENIZER defaults to the demo run's 4,000-piece tokenizer; a
# --vocab_size probe passes its own --tokenizer_path (trained on first use, before the clock starts).
name=$1; threads=$2; budget=$3; shift 3
OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads python training/train.py training/configs/demo_cpu.yaml \
  --output_dir "probes/$name" --build_corpus false --tokenizer_path "${TOKENIZER:-runs/demo/tokenizer}" \
  --budget_seconds "$budget" --eval_steps 100000 --save_strategy no --load_best_model_at_end false \
  --evaluate_test false --final_num_beams 1 --disable_tqdm true --logging_steps 200 "$@" > "probes/$name.log" 2>&1
