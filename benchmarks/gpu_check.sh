#!/usr/bin/env bash
# The GPU check: one script for a machine with one CUDA GPU and no network, in about 8 minutes.
#
#   bash benchmarks/gpu_check.sh OUT_DIR              # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR    # here, on the CPU: tiny shapes, a few steps
#
# Before going to the GPU machine (here, with network):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
#       -r benchmarks/gpu_requirements.txt -d .wheels
#   hf-reservoir prepare / python training/prepare_data.py --output-dir data/de-en   (the corpus, 32 MB)
# and carry .wheels/ and data/de-en/ (both gitignored) with the tree.
#
# Steps: 1. install offline from .wheels (transformers pinned to the tested version); 2. the device tests
# (tests/test_device.py with HF_RESERVOIR_TEST_DEVICE=cuda); 3. the step-cost benchmark in bf16 at the
# paper's IWSLT sizes, with torch.compile; 4. a paired training run, regular N = 6 against FFN 6 + 2
# (benchmarks/gpu_pair.py). Everything it reports goes into OUT_DIR (at most 8 files, no subfolders).
set -uo pipefail
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
out="${1:?usage: bash benchmarks/gpu_check.sh [--dry-run] OUT_DIR}"
cd "$(dirname "$0")/.."
mkdir -p "$out"
log="$out/gpu_check.log"
: > "$log"
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure, go on with the next step
    local name=$1; shift
    echo "=== $name: $*" | tee -a "$log"
    local start=$SECONDS
    if "$@" >> "$log" 2>&1; then
        echo "=== $name: ok ($((SECONDS - start)) s)" | tee -a "$log"
    else
        echo "=== $name: FAILED ($((SECONDS - start)) s), see $log" | tee -a "$log"
        status=1
    fi
}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python=${PYTHON:-python3}

if [[ $dry_run == 0 ]]; then
    site=/tmp/hf_reservoir_site
    step install "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .wheels/*.whl
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    device=cuda
    compile_backend=inductor
    bench_shapes=(--shapes gpu --dtype bf16)
    pair=(--seconds "${PAIR_SECONDS:-80}" --warmup_seconds "${PAIR_WARMUP_SECONDS:-30}")
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    device=cpu
    compile_backend=eager  # graph breaks are found the same way; inductor's C++ build would take minutes
    bench_shapes=(--tiny --dtype fp32)
    pair=(--dry-run)
fi
step versions "$python" -c "import torch, transformers, accelerate, datasets, sentencepiece, sacrebleu, hf_reservoir
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')
print('transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__)"
step device_tests env HF_RESERVOIR_TEST_DEVICE=$device "$python" -m pytest -q -p no:cacheprovider tests/test_device.py
step step_cost "$python" -m benchmarks.step_cost --device $device "${bench_shapes[@]}" --compile \
    --compile-backend $compile_backend --output-dir "$out" --name step_cost
data=${DATA_PATH:-data/de-en}  # the built corpus, carried with the tree
tokenizer=()
if [[ -f "$data/tokenizer/vocab.json" ]]; then tokenizer=(--tokenizer_path "$data/tokenizer"); fi
step paired_training "$python" -m benchmarks.gpu_pair --output-dir "$out" --work-dir "${WORK_DIR:-/tmp/hf_reservoir_pair}" \
    --data_path "$data" "${tokenizer[@]}" "${pair[@]}"
grep "^===" "$log"
exit $status
