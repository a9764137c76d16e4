"""Our training loop's host overhead per step, against a raw PyTorch loop, on a tiny model.

    hf-reservoir bench host-overhead                    # the committed table (results/host_overhead_cpu.md)
    hf-reservoir bench host-overhead --steps 5 --repeats 1 --warmup 0     # smoke test

A tiny model (so that the arithmetic is small and the loop's own work shows) trains on one fixed batch in
four loops, which take turns inside every repeat (interleaved, in rotating order):

* ``raw``: ``loss = model(**batch).loss; loss.backward(); optimizer.step(); scheduler.step(); zero_grad()``
  on a batch already in memory;
* ``raw + DataLoader``: the same, with each batch read from the same ``datasets.Dataset`` through a
  ``DataLoader`` and ``default_data_collator``, as the Trainer reads it (the data loading's share);
* ``Trainer``: ``Seq2SeqTrainer`` with its default callbacks, on the same data, optimizer and schedule;
* ``ours``: ``ReservoirSeq2SeqTrainer`` with what ``hf-reservoir train`` adds every step: the convergence
  clock, the backskip step callback and our progress callback (no lane, no evaluation, no logging).

A loop's time per step is the time between the first and the last step's begin, divided by the steps between
them: set-up and tear-down are left out, and everything a loop does between steps (data loading, callbacks,
the optimizer) is in. Each overhead is the median over repeats of the difference to ``raw`` in the same repeat
(paired, so that a slow moment of the machine cancels).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel
from ..trainer.arguments import FlagParser
from ..utils.intervals import describe_interval, t_interval
from .measure import machine, write_report

TINY = dict(
    vocab_size=256,
    d_model=32,
    encoder_layers=2,
    decoder_layers=1,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    num_encoder_reservoir_layers=1,
    layernorm_position="pre",
    max_position_embeddings=64,
    pad_token_id=0,
    decoder_start_token_id=0,
    eos_token_id=1,
    dropout=0.0,
)
ARMS = ("raw", "raw + DataLoader", "Trainer", "ours")


class StepTimes:
    """Host time at every step's begin (a Trainer callback, and the raw loop's own record)."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, *args, **kwargs):
        self.times.append(time.perf_counter())

    def per_step(self) -> float:
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1)


def fixed_batch(batch_size: int, length: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, TINY["vocab_size"], (batch_size, length), generator=generator)
    labels = torch.randint(2, TINY["vocab_size"], (batch_size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def training_arguments(output_dir: str, batch_size: int, steps: int):
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=1e-3,
        lr_scheduler_type="inverse_sqrt",
        warmup_steps=10,
        max_grad_norm=0.0,  # the raw loop does not clip either
        optim="adamw_torch",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        seed=1,
    )


def dataset_of(batch: dict, steps: int):
    """``steps`` copies of the batch's rows as a ``datasets.Dataset`` (what the Trainer arms read)."""
    from datasets import Dataset

    return Dataset.from_dict({key: value.repeat(steps, 1).tolist() for key, value in batch.items()})


def raw_loop(model, batch: dict, steps: int, loader: bool = False) -> float:
    from transformers import default_data_collator, get_inverse_sqrt_schedule

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    scheduler = get_inverse_sqrt_schedule(optimizer, num_warmup_steps=10)
    model.train()
    record = StepTimes()
    size = batch["input_ids"].shape[0]
    if loader:
        batches = torch.utils.data.DataLoader(
            dataset_of(batch, steps), batch_size=size, shuffle=True, collate_fn=default_data_collator
        )
    else:
        batches = [batch] * steps
    for step_batch in batches:
        record.on_step_begin()
        loss = model(**step_batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return record.per_step()


def trainer_loop(model, batch: dict, steps: int, output_dir: str, ours: bool) -> float:
    from transformers import Seq2SeqTrainer, TrainerCallback, default_data_collator

    from ..trainer.convergence import ConvergenceCallback
    from ..trainer.reservoir_trainer import BackskipStepCallback, ReservoirSeq2SeqTrainer, use_our_progress

    data = dataset_of(batch, steps)
    record = type("Timing", (StepTimes, TrainerCallback), {})()
    args = training_arguments(output_dir, batch["input_ids"].shape[0], steps)
    common = dict(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    if ours:
        clock = ConvergenceCallback()
        trainer = ReservoirSeq2SeqTrainer(
            **common, callbacks=[clock, BackskipStepCallback(), record], convergence=clock
        )
        use_our_progress(trainer, clock)
    else:
        trainer = Seq2SeqTrainer(**common, callbacks=[record])
    trainer.train()
    return record.per_step()


def measure(args) -> dict:
    import tempfile

    torch.manual_seed(0)
    base = ReservoirMarianMTModel(ReservoirMarianConfig(**TINY))
    models = {arm: copy.deepcopy(base) for arm in ARMS}
    batch = fixed_batch(args.batch_size, args.length)
    times = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as scratch:
        runs = {
            "raw": lambda: raw_loop(models["raw"], batch, args.steps),
            "raw + DataLoader": lambda: raw_loop(models["raw + DataLoader"], batch, args.steps, loader=True),
            "Trainer": lambda: trainer_loop(models["Trainer"], batch, args.steps, scratch, ours=False),
            "ours": lambda: trainer_loop(models["ours"], batch, args.steps, scratch, ours=True),
        }
        for repeat in range(args.warmup + args.repeats):
            order = ARMS[repeat % len(ARMS) :] + ARMS[: repeat % len(ARMS)]  # rotating: drift hits every arm alike
            for arm in order:
                seconds = runs[arm]()
                if repeat >= args.warmup:
                    times[arm].append(seconds)

    def paired(arm: str, base: str) -> float:
        return 1000 * statistics.median(a - b for a, b in zip(times[arm], times[base]))

    def paired_interval(arm: str, base: str) -> list[float] | None:  # of the mean per-repeat difference, in ms
        interval = t_interval([1000 * (a - b) for a, b in zip(times[arm], times[base])])
        return None if interval is None else list(interval)

    rows = {
        arm: {
            "ms_per_step": 1000 * statistics.median(times[arm]),
            "overhead_ms_vs_raw": paired(arm, "raw"),
            "overhead_ms_vs_raw_interval_95": paired_interval(arm, "raw"),
            "ratio_to_raw": statistics.median(a / b for a, b in zip(times[arm], times["raw"])),
            "repeats_ms": [1000 * t for t in times[arm]],
        }
        for arm in ARMS
    }
    return {
        "machine": machine("cpu"),
        "settings": {
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "batch": [args.batch_size, args.length],
            "model": TINY,
        },
        "arms": rows,
        "ours_minus_trainer_ms": paired("ours", "Trainer"),
        "ours_minus_trainer_ms_interval_95": paired_interval("ours", "Trainer"),
        "trainer_minus_loader_ms": paired("Trainer", "raw + DataLoader"),
    }


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Host overhead of the training loop per step (tiny model, CPU)",
        "",
        f"One fixed batch of {s['batch'][0]} x {s['batch'][1]} tokens, a {TINY['d_model']}-wide model; {s['steps']} "
        f"steps per loop, {s['repeats']} interleaved repeats (after {s['warmup']} warm-up), medians. "
        f"Machine: {report['machine']['processor']}, {report['machine']['threads']} torch threads, torch "
        f"{report['machine']['torch']}. Overheads and ratios: medians of the per-repeat differences and ratios; the "
        "interval is Student's t 95% interval of the mean per-repeat difference (each repeat runs every loop once: "
        "paired).",
        "",
        "| loop | ms per step | overhead vs raw (ms) | 95% interval (ms) | ratio to raw |",
        "|---|---|---|---|---|",
    ]
    for arm, row in report["arms"].items():
        interval = describe_interval(row.get("overhead_ms_vs_raw_interval_95"))
        lines.append(
            f"| {arm} | {row['ms_per_step']:.2f} | {row['overhead_ms_vs_raw']:+.2f} | {interval} | "
            f"{row['ratio_to_raw']:.3f} |"
        )
    loading = report["arms"]["raw + DataLoader"]["overhead_ms_vs_raw"]
    lines += [
        "",
        f"Of that: data loading (raw + DataLoader minus raw) {loading:+.2f}"
        f" ms; the Trainer's own loop (Trainer minus raw + DataLoader) {report['trainer_minus_loader_ms']:+.2f} ms; "
        f"our callbacks (ours minus Trainer) {report['ours_minus_trainer_ms']:+.2f} ms per step "
        f"({describe_interval(report.get('ours_minus_trainer_ms_interval_95'))}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = FlagParser(prog="hf-reservoir bench host-overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per loop and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="repeats run first and not counted")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--name", default="host_overhead_cpu")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error(f"--steps {args.steps}: at least 3 (the time per step is taken between step begins)")
    report = measure(args)
    write_report(args.output_dir, args.name, report, markdown(report))
    return report
