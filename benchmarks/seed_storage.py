"""Bytes saved by seed-only reservoir storage, for the demo model and the paper's IWSLT'14 setup.

python -m benchmarks.seed_storage            # writes results/seed_storage.{json,md}
"""

from __future__ import annotations

import json
import os
import tempfile

import yaml

from hf_reservoir import ReservoirMarianConfig, ReservoirMarianMTModel
from hf_reservoir.trainer.arguments import FlagParser, ModelArguments

CONFIGS = {
    "demo (training/configs/demo_cpu.yaml, vocab 4000)": ("training/configs/demo_cpu.yaml", 4000),
    "IWSLT'14 transformer reservoirs (iwslt14_transformer.yaml, vocab 10000)": (
        "training/configs/iwslt14_transformer.yaml",
        10000,
    ),
    "IWSLT'14 FFN reservoirs (iwslt14_ffn.yaml, vocab 10000)": ("training/configs/iwslt14_ffn.yaml", 10000),
}


def model_from_yaml(path: str, vocab: int) -> ReservoirMarianMTModel:
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    fields = {k: v for k, v in values.items() if k in ModelArguments.__dataclass_fields__}
    fields["reservoir_type"] = (
        [fields["reservoir_type"]]
        if isinstance(fields.get("reservoir_type"), str)
        else fields.get("reservoir_type", ["transformer"])
    )
    args = ModelArguments(**fields)
    config = ReservoirMarianConfig(
        vocab_size=vocab,
        pad_token_id=2,
        decoder_start_token_id=2,
        eos_token_id=0,
        forced_eos_token_id=0,
        **args.config_kwargs(),
    )
    return ReservoirMarianMTModel(config)


def main(argv=None) -> dict:
    parser = FlagParser(description=__doc__)
    parser.add_argument("--output_dir", default="results")
    args = parser.parse_args(argv)
    report = {}
    for name, (path, vocab) in CONFIGS.items():
        model = model_from_yaml(path, vocab)
        with tempfile.TemporaryDirectory() as scratch:
            model.save_pretrained(f"{scratch}/full")
            model.save_pretrained(f"{scratch}/seed", reservoir_storage="seed")
            full = os.path.getsize(f"{scratch}/full/model.safetensors")
            seed = os.path.getsize(f"{scratch}/seed/model.safetensors")
        report[name] = {
            "layout": model.config.encoder_layout,
            "full_bytes": full,
            "seed_only_bytes": seed,
            "saved_bytes": full - seed,
            "saved_fraction": (full - seed) / full,
        }
    lines = [
        "# Seed-only reservoir storage",
        "",
        '`save_pretrained(reservoir_storage="seed")` against the '
        "default, float32 weights (`python -m benchmarks.seed_storage`).",
        "",
        "| model | layout | model.safetensors | seed-only | saved |",
        "|---|---|---|---|---|",
    ]
    for name, row in report.items():
        lines.append(
            f"| {name} | `{row['layout']}` | {row['full_bytes'] / 2**20:.2f} MiB | "
            f"{row['seed_only_bytes'] / 2**20:.2f} MiB | {row['saved_bytes'] / 2**20:.2f} MiB "
            f"({100 * row['saved_fraction']:.1f}%) |"
        )
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "seed_storage.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.output_dir, "seed_storage.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
