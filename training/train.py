"""Train a reservoir translation model with Seq2SeqTrainer.

    python training/train.py training/configs/demo_cpu.yaml
    python training/train.py training/configs/demo_cpu.yaml --num_encoder_reservoir_layers 0 --output_dir runs/x
    accelerate launch --multi_gpu --num_processes 2 training/train.py CONFIG --use_cpu true   # CPU DDP (gloo)
    accelerate launch training/train.py training/configs/iwslt14_transformer.yaml --bf16 true   # one GPU
    accelerate launch --multi_gpu --num_processes 8 training/train.py CONFIG                     # several GPUs

The first argument may be a YAML or JSON file; flags after it override its values.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import HfArgumentParser, Seq2SeqTrainingArguments  # noqa: E402

from hf_reservoir.training import ConvergenceArguments, DataArguments, ModelArguments, run_training  # noqa: E402


def config_file_to_argv(path: str) -> list[str]:
    """Turn a YAML/JSON mapping into ``--key value`` flags, so that later flags override it."""
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".json"):
            values = json.load(handle)
        else:
            import yaml

            values = yaml.safe_load(handle)
    if not isinstance(values, dict):
        raise SystemExit(f"error: {path} must hold a mapping of argument names to values.")
    argv = []
    for key, value in values.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        argv.extend(str(v) for v in value) if isinstance(value, list) else argv.append(str(value))
    return argv


def parse(argv: list[str]):
    parser = HfArgumentParser((ModelArguments, DataArguments, ConvergenceArguments, Seq2SeqTrainingArguments))
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_to_argv(argv[0]) + argv[1:]
    model_args, data_args, convergence_args, training_args, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if unknown:
        raise SystemExit(f"error: unknown arguments {unknown}; see `python training/train.py --help`.")
    return model_args, data_args, training_args, convergence_args


def main(argv: list[str] | None = None) -> int:
    try:
        model_args, data_args, training_args, convergence_args = parse(sys.argv[1:] if argv is None else argv)
        run_training(model_args, data_args, training_args, convergence_args)
    except ValueError as error:  # bad settings or data: one clear line, before any training
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
