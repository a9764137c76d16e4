#!/usr/bin/env bash
# The GPU check: one script for a machine with one CUDA GPU and no network.
#
#   bash benchmarks/gpu_check.sh OUT_DIR                        # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --only install,bench OUT_DIR   # some steps (a device call is capped at 10 min)
#   bash benchmarks/gpu_check.sh --dry_run OUT_DIR              # here, on the CPU: tiny shapes, a few steps
#
# Before going to the GPU machine (here, with network):
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
#       -r benchmarks/gpu_requirements.txt -d .wheels
#   hf-reservoir prepare / python training/prepare_data.py --output_dir data/de-en   (the corpus, 32 MB)
# and carry .wheels/ and data/de-en/ (both gitignored) with the tree.
#
# Steps (--only picks some, comma-separated; default all): install: offline from .wheels (transformers pinned
# to the tested version); tests: the device tests (tests/test_device.py with HF_RESERVOIR_TEST_DEVICE=cuda);
# bench: the step-cost benchmark in bf16 at the paper's IWSLT sizes, eager, torch.compile and CUDA graphs (MFU,
# whole-step ratios; about 5 minutes, most of it compiling); cell: the paper's cell to convergence, six arms
# concurrently on the GPU with an A/A pair (benchmarks/gpu_cell.py, benchmarks/gpu_cell.yaml; at most 8 minutes).
# Everything it reports goes into OUT_DIR (no subfolders).
set -uo pipefail
dry_run=0
only=install,tests,bench,cell
while [[ "${1:-}" == --* ]]; do
    case "$1" in
        --dry_run|--dry-run) dry_run=1; shift ;;  # both spellings, as every hf-reservoir flag
        --only) [[ $# -ge 2 ]] || { echo "error: --only needs a value, e.g. --only install,tests" >&2; exit 2; }
            only=$2; shift 2 ;;
        *) echo "error: unknown option $1; the options are --dry_run (or --dry-run) and --only STEPS" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }
out="${1:?usage: bash benchmarks/gpu_check.sh [--dry_run] OUT_DIR}"
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
    if wants install; then
        step install "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .wheels/*.whl
    fi
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    device=cuda
    compile_backend=inductor
    bench_shapes=(--shapes gpu --dtype bf16)
    cell=()
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    device=cpu
    compile_backend=eager  # graph breaks are found the same way; inductor's C++ build would take minutes
    bench_shapes=(--tiny --dtype fp32)
    cell=(--dry_run)
fi
step versions "$python" -c "import torch, transformers, accelerate, datasets, sentencepiece, sacrebleu, hf_reservoir
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')
print('transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__)"
if wants tests; then
    step device_tests env HF_RESERVOIR_TEST_DEVICE=$device "$python" -m pytest -q -p no:cacheprovider tests/test_device.py
fi
if wants bench; then
    step step_cost "$python" -m benchmarks.step_cost --device $device "${bench_shapes[@]}" --compile \
        --compile_backend $compile_backend --output_dir "$out" --name step_cost
fi
data=${DATA_PATH:-data/de-en}  # the built corpus, carried with the tree
tokenizer=()
if [[ -f "$data/tokenizer/vocab.json" ]]; then tokenizer=(--tokenizer_path "$data/tokenizer"); fi
if wants cell; then
    step cell "$python" -m benchmarks.gpu_cell --output_dir "$out" --work_dir "${WORK_DIR:-/tmp/hf_reservoir_cell}" \
        --data_path "$data" "${tokenizer[@]}" "${cell[@]}"
fi
grep "^===" "$log"
exit $status
