"""Training throughput of CPU-demo recipe variants on real corpus batches, measured side by side.

    hf-reservoir bench recipe-speed                     # the committed table (results/recipe_speed_cpu.md)
    hf-reservoir bench recipe-speed --tiny              # smoke test

Each variant is the demo model with one change. All variants train in one process on batches of
the real training split, taking turns inside every repeat (interleaved), so drift in machine speed
hits them alike; a step is forward + backward + the optimizer step. Reported: median seconds per
step, pairs and (padded) tokens per second, and each ratio to the first variant (96 pairs grouped by
source length, the demo's batching before token batches).
The batches of a variant are the same in every repeat; variants that batch by pairs see the same pairs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from transformers import DataCollatorForSeq2Seq

from ..corpus.batching import TokenBatchSampler
from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel
from ..trainer.arguments import FlagParser
from ..utils.intervals import describe_interval
from .measure import ratio_interval

BASE = dict(
    d_model=128,
    encoder_layers=5,
    decoder_layers=2,
    encoder_ffn_dim=512,
    decoder_ffn_dim=512,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    layernorm_position="pre",
    scale_embedding=True,
    num_encoder_reservoir_layers=2,
    reservoir_type="transformer",
    dropout=0.0,
    max_position_embeddings=256,
)

WIDE = {"d_model": 256, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024}
# name -> (model overrides, batching, optimizer[, precision "fp32" or "bf16" (CPU autocast), torch.compile])
VARIANTS = {
    "96 pairs by source length (the earlier demo; 2 decoder layers, FFN 512, fused AdamW)": (
        {}, ("pairs", 96), "fused"
    ),
    "for-loop AdamW (adamw_torch)": ({}, ("pairs", 96), "foreach_off"),
    "max_tokens 2000 instead of 96 pairs": ({}, ("tokens", 2000), "fused"),
    "FFN 256": ({"encoder_ffn_dim": 256, "decoder_ffn_dim": 256}, ("pairs", 96), "fused"),
    "1 decoder layer": ({"decoder_layers": 1}, ("pairs", 96), "fused"),
    "1 decoder layer, FFN 256": (
        {"decoder_layers": 1, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256}, ("pairs", 96), "fused"
    ),
    # Precision and compilation at the demo's batching, and at the full-corpus gate's width (d_model 256): each
    # beside its fp32 eager twin (TWINS), since bf16 pays only on CPUs with AVX512-BF16 or AMX, and more at 256.
    "max_tokens 2000, bf16 autocast": ({}, ("tokens", 2000), "fused", "bf16"),
    "max_tokens 2000, torch.compile": ({}, ("tokens", 2000), "fused", "fp32", True),
    "max_tokens 2000, torch.compile, bf16 autocast": ({}, ("tokens", 2000), "fused", "bf16", True),
    "max_tokens 2000, d_model 256 (FFN 1024)": (WIDE, ("tokens", 2000), "fused"),
    "max_tokens 2000, d_model 256 (FFN 1024), bf16 autocast": (WIDE, ("tokens", 2000), "fused", "bf16"),
}  # fmt: skip
# Each variant that changes only precision or compilation, beside the fp32 eager variant it is compared with.
TWINS = {
    "max_tokens 2000, bf16 autocast": "max_tokens 2000 instead of 96 pairs",
    "max_tokens 2000, torch.compile": "max_tokens 2000 instead of 96 pairs",
    "max_tokens 2000, torch.compile, bf16 autocast": "max_tokens 2000 instead of 96 pairs",
    "max_tokens 2000, d_model 256 (FFN 1024), bf16 autocast": "max_tokens 2000, d_model 256 (FFN 1024)",
}


def encode(tokenizer, corpus, max_length: int) -> dict:
    pairs = corpus["translation"]
    return tokenizer(
        [p["de"] for p in pairs], text_target=[p["en"] for p in pairs], max_length=max_length, truncation=True
    )


def real_batches(tokenizer, encoded, batching, count: int, seed: int) -> list[dict]:
    """``count`` length-grouped batches of the tokenised training split, as the Trainer would build them."""
    lengths = [max(len(s), len(t)) for s, t in zip(encoded["input_ids"], encoded["labels"])]
    kind, size = batching
    if kind == "tokens":
        groups = TokenBatchSampler(lengths, size, seed=seed)._batches()
    else:  # group_by_length: sorted within shuffled mega-batches of 50 batches
        order = list(range(len(lengths)))
        random.Random(seed).shuffle(order)
        mega = size * 50
        groups = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
            groups += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        random.Random(seed + 1).shuffle(groups)
    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    batches = []
    for group in groups[:count]:
        features = [
            {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": encoded["labels"][i]}
            for i in group
        ]  # fmt: skip
        batches.append(collate(features))
    return batches


def build(tokenizer, overrides: dict, optimizer: str, tiny: bool):
    config = dict(BASE, **overrides)
    if tiny:
        config.update(d_model=32, encoder_ffn_dim=min(config["encoder_ffn_dim"], 64), decoder_ffn_dim=64)
    torch.manual_seed(0)
    model = ReservoirMarianMTModel(
        ReservoirMarianConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
            **config,
        )
    ).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "fused":
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)
    return model, opt


def measure(args) -> dict:
    from ..corpus.loading import load_parallel_corpus
    from ..corpus.tokenization import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer_path)
    corpus = load_parallel_corpus(args.data_path)["train"]
    if args.tiny:
        corpus = corpus.select(range(2000))
    variants = {name: VARIANTS[name] for name in VARIANTS if not args.only or name in args.only}
    setups = {}
    encoded = encode(tokenizer, corpus, 96)  # the demo's maximum lengths
    for name, (overrides, batching, optimizer, *how) in variants.items():
        precision = how[0] if how else "fp32"
        compiled = len(how) > 1 and how[1]
        batches = real_batches(tokenizer, encoded, batching, args.steps, args.seed)
        model, opt = build(tokenizer, overrides, optimizer, args.tiny)
        step_model = torch.compile(model) if compiled else model
        setups[name] = (step_model, opt, batches, precision == "bf16")
    times: dict[str, list[float]] = {name: [] for name in setups}
    for repeat in range(args.repeats + 1):  # the first round warms up (and compiles)
        for name, (model, opt, batches, bf16) in setups.items():
            start = time.perf_counter()
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(**batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            if repeat:
                times[name].append((time.perf_counter() - start) / len(batches))
    base = next(iter(setups))
    rows = {}
    for name, (_, _, batches, _) in setups.items():
        seconds = statistics.median(times[name])
        pairs = sum(len(b["input_ids"]) for b in batches) / len(batches)
        tokens = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches) / len(batches)
        rows[name] = {"seconds_per_step": seconds, "pairs_per_second": pairs / seconds,
                      "padded_tokens_per_second": tokens / seconds}  # fmt: skip
    for name, row in rows.items():
        row["step_time_ratio"] = row["seconds_per_step"] / rows[base]["seconds_per_step"]
        if name != base:  # interleaved repeats: each repeat's ratio to the first row is paired
            row["step_time_ratio_interval_95"] = ratio_interval(times, name, base)
        row["pairs_per_second_ratio"] = row["pairs_per_second"] / rows[base]["pairs_per_second"]
        twin = TWINS.get(name)
        if twin in rows:  # the repeats are interleaved, so each repeat's ratio is paired: an interval over repeats
            row["twin"] = twin
            row["step_time_ratio_to_twin"] = statistics.median(a / b for a, b in zip(times[name], times[twin]))
            row["step_time_ratio_to_twin_interval_95"] = ratio_interval(times, name, twin)
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Throughput of the CPU demo's recipe variants (side by side)",
        "",
        f"Machine: {m['processor']}, {m['threads']} torch threads, torch {m['torch']}. "
        f"{report['steps']} real training batches per variant per repeat, median of {report['repeats']} interleaved "
        "repeats after one warm-up round. A step is forward, backward and the optimizer step.",
        "",
        "| variant | s/step | step time vs the first row [95% interval over repeats] | pairs/s | pairs/s vs the first "
        "row | padded tokens/s | step time vs its fp32 eager twin, median [95% interval over repeats] |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        twin = ""
        if "twin" in row:
            interval = describe_interval(row["step_time_ratio_to_twin_interval_95"], 3)
            twin = f"{row['step_time_ratio_to_twin']:.3f} {interval}"
        against_first = f"{row['step_time_ratio']:.3f}"
        if "step_time_ratio_interval_95" in row:
            against_first += f" {describe_interval(row['step_time_ratio_interval_95'], 3)}"
        lines.append(
            f"| {name} | {row['seconds_per_step']:.4f} | {against_first} | "
            f"{row['pairs_per_second']:.0f} | {row['pairs_per_second_ratio']:.3f} | "
            f"{row['padded_tokens_per_second']:.0f} | {twin} |"
        )
    lines += [
        "",
        "Ratios to the first row: the ratio of the medians, with Student's t 95% interval of the mean of each "
        "repeat's ratio (interleaved, so paired). Twin ratios: each repeat's step time over the twin's in the same "
        "repeat; the median and Student's t 95% interval of the mean over repeats. bf16 autocast pays only on CPUs "
        "with AVX512-BF16 or AMX; torch.compile's first round (the compilation) is the warm-up round, not timed.",
    ]
    return "\n".join(lines) + "\n"


PROG = "hf-reservoir bench recipe-speed"


def main(argv: list[str] | None = None) -> dict:
    from .measure import machine, write_report

    parser = FlagParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default="data/de-en")
    parser.add_argument("--tokenizer_path", default="runs/demo/tokenizer")
    parser.add_argument("--steps", type=int, default=30, help="batches per variant per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", help="measure only this variant (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="a smoke test: tiny model, few steps")
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--name", default="recipe_speed_cpu")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.repeats = 2, 1
    report = {"steps": args.steps, "repeats": args.repeats, "machine": machine("cpu"), "variants": measure(args)}
    write_report(args.output_dir, args.name, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
