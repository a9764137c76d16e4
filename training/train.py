"""Train a reservoir translation model with Seq2SeqTrainer.

    python training/train.py training/configs/demo_cpu.yaml
    python training/train.py training/configs/demo_cpu.yaml --num_encoder_reservoir_layers 0 --output_dir runs/x
    accelerate launch --multi_gpu --num_processes 2 training/train.py CONFIG --use_cpu true   # CPU DDP (gloo)
    accelerate launch training/train.py training/configs/iwslt14_transformer.yaml --bf16 true   # one GPU
    accelerate launch --multi_gpu --num_processes 8 training/train.py CONFIG                     # several GPUs

The first argument may be a YAML or JSON file; flags after it override its values.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.cli import config_file_to_argv, parse_training_argv, train_main  # noqa: E402

parse = parse_training_argv  # the name the tests and older scripts use

__all__ = ["config_file_to_argv", "main", "parse"]


def main(argv: list[str] | None = None) -> int:
    return train_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
