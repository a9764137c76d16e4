"""A short paired training comparison at the paper's IWSLT'14 sizes: regular N = 6 against FFN reservoirs 6 + 2.

    python -m benchmarks.gpu_pair --output-dir results/gpu --seconds 150          # one CUDA GPU, bf16
    python -m benchmarks.gpu_pair --output-dir /tmp/pair --dry-run                # CPU, tiny shapes, a few steps

Both arms train with ``training/configs/iwslt14_{regular,ffn}.yaml`` on the Debian corpus (``--data_path``),
with the same overrides: a wall-clock budget of ``--seconds`` training seconds each, greedy evaluation
every ``--eval_steps`` steps, and a shorter warm-up (1,000 steps to a peak rate of 1e-3) so that a few
minutes show learning; convergence does not fit, so the report gives time and steps to fixed BLEU targets
(50, 75 and 90% of the regular model's peak), AUCC up to the common budget, steps per second and seconds
per epoch, from each run's ``convergence.json``.

The arms run **one after the other** in one process, each alone on the GPU: two processes sharing one
GPU interleave their kernels unpredictably. The first H100 run (results/gpu/README.md) showed that the
first arm also pays CUDA's one-time costs (context, cuBLAS handles, kernel selection and allocator growth
for each new batch shape): about 40 s over its first 250 steps, whichever arm ran first. So an untimed
warm-up run (``--warmup_seconds``, the first arm's model, discarded) now goes before the timed arms.
Writes ``pair.json`` and ``pair.md`` into ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import os

from hf_reservoir.run_folder import CONVERGENCE_FILE, MODEL_DIR

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = {"regular": "iwslt14_regular.yaml", "ffn": "iwslt14_ffn.yaml"}
TARGET_FRACTIONS = (0.5, 0.75, 0.9)

# The same for both arms. The paper's 4,000-step warm-up at 5e-4 would not end inside a few minutes.
COMMON = [
    "--build_corpus", "false", "--data_format", "corpus", "--max_steps", "-1", "--num_train_epochs", "1000",
    "--warmup_steps", "1000", "--learning_rate", "0.001", "--dropout", "0.1",
    "--eval_strategy", "steps", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--generation_num_beams", "1", "--final_num_beams", "1", "--evaluate_test", "false",
    "--max_source_length", "128", "--max_target_length", "128", "--per_device_eval_batch_size", "128",
    "--disable_tqdm", "true", "--logging_steps", "100", "--dataloader_num_workers", "0",
]  # fmt: skip
DRY_RUN = [
    "--d_model", "32", "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--encoder_attention_heads", "2",
    "--decoder_attention_heads", "2", "--max_train_samples", "2000", "--max_eval_samples", "40",
    "--max_tokens", "1024", "--vocab_size", "1000", "--warmup_steps", "10", "--max_source_length", "32",
    "--max_target_length", "32",
]  # fmt: skip


def arm_argv(arm: str, args, name: str | None = None) -> list[str]:
    argv = [os.path.join(REPO_ROOT, "training", "configs", ARMS[arm]), *COMMON]
    argv += ["--output_dir", os.path.join(args.work_dir, name or arm), "--data_path", args.data_path]
    argv += ["--overwrite_output_dir", "true"]
    argv += ["--budget_seconds", str(args.seconds), "--eval_steps", str(args.eval_steps), "--seed", str(args.seed)]
    if args.tokenizer_path:
        argv += ["--tokenizer_path", args.tokenizer_path]
    if args.dry_run:
        argv += [*DRY_RUN, "--use_cpu", "true"]
    else:
        argv += ["--bf16", "true"]
    return argv


def run_arm(arm: str, args, name: str | None = None) -> dict:
    """Train one arm in this process (into ``work_dir/name``); return its record (``convergence.json``)."""
    from hf_reservoir.cli import parse_training_argv
    from hf_reservoir.training import run_training

    model_args, data_args, training_args, convergence_args = parse_training_argv(arm_argv(arm, args, name))
    report = run_training(model_args, data_args, training_args, convergence_args)
    with open(os.path.join(args.work_dir, name or arm, CONVERGENCE_FILE), encoding="utf-8") as handle:
        record = json.load(handle)
    record["encoder_layout"] = report["encoder_layout"]
    record["parameters"] = report["parameters"]
    return record


def compare(records: dict[str, dict], budget_seconds: float) -> dict:
    """Targets from the regular arm's peak; time and steps to each, AUCC and speed for every arm (the sweep
    report's per-run measures, :func:`hf_reservoir.sweep_report.run_measures`)."""
    from hf_reservoir.sweep_report import run_measures

    peak = max((e["bleu"] for e in records["regular"]["evaluations"]), default=0.0)
    targets = {f"{fraction:.0%}": fraction * peak for fraction in TARGET_FRACTIONS}
    rows = {
        arm: {
            "encoder_layout": record["encoder_layout"],
            "trainable_parameters": record["parameters"]["trainable"],
            "total_parameters": record["parameters"]["total"],
            "steps_trained": record["summary"]["steps_trained"],
            **run_measures({"convergence": record, "results": {}}, targets, budget_seconds),
        }
        for arm, record in records.items()
    }
    return {"budget_seconds": budget_seconds, "targets": targets, "arms": rows}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# Paired GPU run: regular N = 6 against FFN reservoirs 6 + 2 ({m.get('gpu') or m['processor']})",
        "",
        f"torch {m['torch']}, transformers {m['transformers']}, {report['precision']}; "
        f"{report['budget_seconds']:.0f} training seconds per arm, one after the other "
        f"({', '.join(report.get('order', report['arms']))}; untimed warm-up first: "
        f"{report.get('warmup_seconds', 0):.0f} s); greedy validation BLEU. "
        "Targets are fractions of the regular model's peak: "
        + ", ".join(f"{k} = {v:.2f} BLEU" for k, v in report["targets"].items())
        + ".",
        "",
        "| arm | layout | trainable (total) params | peak BLEU | steps | s/step | s/epoch | AUCC (BLEU) | "
        + " | ".join(f"time (steps) to {k}" for k in report["targets"])
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(report["targets"]),
    ]
    for arm, row in report["arms"].items():
        reached = [
            f"{hit['train_seconds']:.0f} s ({hit['step']})" if hit else "not reached"
            for hit in row["to_target"].values()
        ]
        lines.append(
            f"| {arm} | {row['encoder_layout']} | {row['trainable_parameters']:,} ({row['total_parameters']:,}) | "
            f"{row['peak_bleu']:.2f} | {row['steps_trained']} | {row['seconds_per_step']:.4f} | "
            f"{row['seconds_per_epoch']:.0f} | {row['aucc_normalized']:.2f} | " + " | ".join(reached) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--work-dir", default="runs/gpu_pair", help="run folders (checkpoint-free)")
    parser.add_argument("--data_path", default="data/de-en")
    parser.add_argument("--tokenizer_path", default=None, help="a saved tokenizer (else trained per arm)")
    parser.add_argument("--seconds", type=float, default=150.0, help="training seconds per arm")
    parser.add_argument("--eval_steps", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup_seconds", type=float, default=60.0, help="an untimed run first, so no timed arm pays CUDA's start"
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few seconds per arm")
    parser.add_argument(
        "--order", default=",".join(ARMS), help="the arms in the order they run (the first pays CUDA's warm-up)"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        args.seconds, args.eval_steps = min(args.seconds, 8.0), min(args.eval_steps, 10)
        args.warmup_seconds = min(args.warmup_seconds, 2.0)
    order = args.order.split(",")
    if sorted(order) != sorted(ARMS):
        parser.error(f"--order {args.order!r} must name each of {', '.join(ARMS)} once")
    if args.warmup_seconds > 0:
        timed = args.seconds
        args.seconds = args.warmup_seconds
        run_arm(order[0], args, name="warmup")  # discarded
        args.seconds = timed
        if args.tokenizer_path is None:
            args.tokenizer_path = os.path.join(args.work_dir, "warmup", MODEL_DIR)
    records = {}
    for arm in order:
        records[arm] = run_arm(arm, args)
        if args.tokenizer_path is None:  # the first arm trained it; the second uses the same
            args.tokenizer_path = os.path.join(args.work_dir, arm, MODEL_DIR)
    report = compare(records, args.seconds)
    import transformers

    from benchmarks.step_cost import machine, write_report

    device = "cpu" if args.dry_run else "cuda"
    report["machine"] = {**machine(device), "transformers": transformers.__version__}
    report["precision"] = "fp32" if args.dry_run else "bf16"
    report["curves"] = {arm: record["evaluations"] for arm, record in records.items()}
    report["order"], report["warmup_seconds"] = order, args.warmup_seconds
    write_report(args.output_dir, "pair", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
