"""The paper's IWSLT'14 cell on one GPU, to convergence, in one command (issue #25, item 3).

    python -m benchmarks.gpu_cell --output_dir OUT                  # one CUDA GPU, bf16 (about 8 minutes)
    python -m benchmarks.gpu_cell --output_dir OUT --dry_run        # the CPU, tiny shapes, a few seconds per arm

It runs the sweep ``benchmarks/gpu_cell.yaml`` (regular N = 6 twice, the A/A pair; transformer, FFN and
transformer-learned 6 + 2; regular_deep 8) as one concurrent lane, each arm patience-stopped (capped by the
sweep's budget), with one tokenizer for every arm (trained once here unless ``--tokenizer_path``), then writes
the sweep report (the CPU grid's tables and plots) and the sweep file it ran (``gpu_cell.yaml``, for
``hf-reservoir sweep OUT/gpu_cell.yaml --report_only``) into ``--output_dir``. Only the sweep file's paths and,
with ``--dry_run``, the sizes are changed here; the recipe is the file's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import yaml

from hf_reservoir.trainer.arguments import FlagParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, "benchmarks", "gpu_cell.yaml")
# The dry run: the same arms, lane and protocol, at sizes the CPU trains in seconds.
DRY_RUN = dict(
    d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
    max_train_samples=2000, max_eval_samples=40, max_tokens=512, length_buckets=[16, 32], max_source_length=32,
    max_target_length=32, vocab_size=1000, warmup_steps=10, eval_steps=10, patience=2, clock_warmup_steps=3,
    bf16=False, torch_compile=False, use_cpu=True, per_device_eval_batch_size=40,
)  # fmt: skip


def cell_config(args):
    from hf_reservoir.experiments.sweep import SweepConfig

    config = SweepConfig.load(CONFIG)
    overrides = {**config.train_overrides, "data_path": args.data_path}
    if args.dry_run:
        overrides.update(DRY_RUN)
    overrides["tokenizer_path"] = args.tokenizer_path or shared_tokenizer(args, overrides)
    changes = {"output_dir": os.path.join(args.work_dir, "runs"), "train_overrides": overrides}
    if args.dry_run:
        changes.update(budget_seconds=20.0, threads_per_lane=1)
    return dataclasses.replace(config, train_config=os.path.join(REPO_ROOT, config.train_config), **changes)


def shared_tokenizer(args, overrides: dict) -> str:
    """One tokenizer for every arm, trained once on the corpus's training split (as a run would train it)."""
    from hf_reservoir.corpus.loading import load_parallel_corpus
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    path = os.path.join(args.work_dir, "tokenizer")
    if not os.path.exists(os.path.join(path, "vocab.json")):
        corpus = load_parallel_corpus(args.data_path)
        train_marian_tokenizer(corpus["train"], "de", "en", path, vocab_size=overrides["vocab_size"])
    return path


def main(argv: list[str] | None = None) -> int:
    from hf_reservoir.experiments.report_render import build_report
    from hf_reservoir.experiments.sweep import cells, run_sweep

    parser = FlagParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="the report and the sweep file it ran")
    parser.add_argument("--work_dir", default="runs/gpu_cell", help="run folders and the shared tokenizer")
    parser.add_argument("--data_path", default="data/de-en", help="the built Debian corpus")
    parser.add_argument("--tokenizer_path", default=None, help="a saved tokenizer (default: trained once here)")
    parser.add_argument("--dry_run", action="store_true", help="the CPU, tiny shapes")
    args = parser.parse_args(argv)
    config = cell_config(args)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "gpu_cell.yaml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(dataclasses.asdict(config), handle, sort_keys=False)
    failed = run_sweep(config, cells(config), report=lambda line: print(line, flush=True))
    print(build_report(config, args.output_dir))
    if failed:
        print(f"error: failed arms {failed}; see their train.log under {config.output_dir}.")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
