"""Training-step cost, memory and generation speed of reservoir models, as ratios measured side by side.

    hf-reservoir bench step-cost                      # CPU, the committed shapes
    hf-reservoir bench step-cost --device cuda --dtype bf16
    hf-reservoir bench step-cost --device cuda --dtype bf16 --shapes gpu --compile   # IWSLT sizes, torch.compile
    hf-reservoir bench step-cost --tiny               # smoke test shapes

Every number is a median over interleaved repeats after a warm-up: the candidates take turns
inside each repeat, so drift in machine speed hits them alike. Reported as ratios to a baseline
measured in the same run. Writes JSON and a markdown table (``--output_dir``).
"""

from __future__ import annotations

import argparse
import gc

import torch
from transformers import MarianConfig, MarianMTModel

from ..models.reservoir_marian.configuration_reservoir import RESERVOIR_TYPES as TYPES
from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
from ..models.reservoir_marian.modeling_reservoir import (
    BackskipPredictor,
    ReservoirMarianMTModel,
    build_encoder_layer,
    skipped_reservoir_forward,
)
from ..trainer.arguments import FlagParser
from ..utils.intervals import describe_interval
from .compile_cost import compile_table, compiled
from .flops import peak_flops, step_flops
from .measure import interleaved, machine, ratio_interval, training_step, write_report
from .variants import base_config, batch_for, model_variants, shapes

# ---------------------------------------------------------------------------------------------
# Per layer
# ---------------------------------------------------------------------------------------------


def layer_step(layer, hidden: torch.Tensor, mask2d: torch.Tensor, backskip: str | None = None, predictor=None):
    """Forward + backward of one layer (no optimizer step); the input requires grad, as in a stack.

    ``backskip="forward_only"`` times the forward alone (the physical limit of skipping);
    ``"skipped"`` runs the model's own skipped-step path: forward without a graph, then the
    identity or ``predictor`` gradient estimate in backward.
    """

    def run():
        x = hidden.detach().requires_grad_(True)
        if backskip == "forward_only":
            with torch.no_grad():
                y = layer(x, None, padding_mask=mask2d)
            return y
        if backskip == "skipped":
            y = skipped_reservoir_forward(layer, x, None, predictor, padding_mask=mask2d)
        else:
            y = layer(x, None, padding_mask=mask2d)
        y.float().sum().backward()
        layer.zero_grad(set_to_none=True)

    return run


def per_layer(s: dict, device: str, dtype: torch.dtype) -> dict:
    torch.manual_seed(0)
    cfg = ReservoirMarianConfig(
        **base_config(s, encoder_layers=1 + len(TYPES)),
        layernorm_position="pre",
        encoder_reservoir_layers=list(range(1, 1 + len(TYPES))),
        reservoir_type=list(TYPES),
    )
    cfg._attn_implementation = "sdpa"  # what the models use; standalone layers would fall back to eager
    hidden = torch.randn(s["batch"], s["length"], s["d_model"], device=device, dtype=dtype)
    mask = torch.ones(s["batch"], s["length"], dtype=torch.bool, device=device)
    trainable = build_encoder_layer(cfg, 0).to(device, dtype).train()
    candidates = {"trainable transformer layer": layer_step(trainable, hidden, mask)}
    for i, reservoir_type in enumerate(TYPES, start=1):
        layer = build_encoder_layer(cfg, i).to(device, dtype).train()
        candidates[f"{reservoir_type} reservoir"] = layer_step(layer, hidden, mask)
    reservoir = build_encoder_layer(cfg, 1).to(device, dtype).train()
    candidates["transformer reservoir, forward only"] = layer_step(reservoir, hidden, mask, backskip="forward_only")
    candidates["transformer reservoir, backskip identity"] = layer_step(reservoir, hidden, mask, backskip="skipped")
    predictor = BackskipPredictor(s["d_model"]).to(device, dtype)
    candidates["transformer reservoir, backskip learned (skipped step)"] = layer_step(
        reservoir, hidden, mask, backskip="skipped", predictor=predictor
    )
    samples: dict = {}
    times = interleaved(candidates, s["repeats"] * 2, s["warmup"], device, samples)
    base = times["trainable transformer layer"]
    return {
        name: {
            "seconds": t,
            "ratio": t / base,
            "ratio_interval_95": ratio_interval(samples, name, "trainable transformer layer"),
        }
        for name, t in times.items()
    }


# ---------------------------------------------------------------------------------------------
# Whole model
# ---------------------------------------------------------------------------------------------


def whole_model(s: dict, device: str, dtype: torch.dtype, peak: float) -> dict:
    """Each model's training step: seconds (interleaved medians), ratios, FLOPs and MFU against ``peak``."""
    batch = batch_for(s, device)
    variants = {name: m.to(device, dtype).train() for name, m in model_variants(s).items()}

    samples: dict = {}
    times = interleaved(
        {name: training_step(m, batch) for name, m in variants.items()}, s["repeats"], s["warmup"], device, samples
    )
    results = {}
    base = times["vanilla MarianMTModel (N)"]
    trainable_base = times["ours, N + k trainable"]
    for name, model in variants.items():
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=1e-4)
        model(**batch).loss.backward()
        optimizer.step()  # materialise Adam's state
        state_bytes = sum(
            t.numel() * t.element_size()
            for st in optimizer.state.values()
            for t in st.values()
            if torch.is_tensor(t) and t.dim() > 0
        )
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        flops = step_flops(model, batch)
        results[name] = {
            "seconds": times[name],
            "flops_per_step": flops,
            "tflops_per_second": flops / times[name] / 1e12,
            "mfu": flops / times[name] / peak,
            "ratio_to_vanilla": times[name] / base,
            "ratio_to_N_plus_k_trainable": times[name] / trainable_base,
            "ratio_to_N_plus_k_trainable_interval_95": ratio_interval(samples, name, "ours, N + k trainable"),
            "trainable_parameters": sum(p.numel() for p in trainable),
            "frozen_parameters": frozen,
            "adam_state_bytes": state_bytes,
            "peak_memory_bytes": peak_memory(model, batch, device),
        }
        del optimizer
        model.zero_grad(set_to_none=True)
    return results


def peak_memory(model, batch, device: str) -> int | None:
    """Peak bytes of one training step (CUDA allocator; on CPU, the autograd-saved tensors)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated()
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def generation(s: dict, device: str, dtype: torch.dtype) -> dict:
    common = base_config(s, encoder_layers=s["layers"])
    torch.manual_seed(0)
    marian = MarianMTModel(MarianConfig(**common)).to(device, dtype).eval()
    ours = ReservoirMarianMTModel(ReservoirMarianConfig(**common)).to(device, dtype).eval()
    ours.load_state_dict(marian.state_dict())
    batch = batch_for({**s, "batch": s["gen_batch"]}, device)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    results = {}
    for beams in (1, 5):
        kwargs = dict(max_new_tokens=s["gen_tokens"], min_new_tokens=s["gen_tokens"], num_beams=beams, do_sample=False)

        def run(model, kwargs=kwargs):
            def go():
                with torch.no_grad():
                    model.generate(**inputs, **kwargs)

            return go

        times = interleaved({"marian": run(marian), "ours": run(ours)}, s["repeats"], s["warmup"], device)
        with torch.no_grad():
            same = torch.equal(marian.generate(**inputs, **kwargs), ours.generate(**inputs, **kwargs))
        results[f"beam {beams}"] = {
            "marian_sentences_per_second": s["gen_batch"] / times["marian"],
            "ours_sentences_per_second": s["gen_batch"] / times["ours"],
            "ratio": times["ours"] / times["marian"],
            "identical_tokens": same,
        }
    return results


def markdown(report: dict) -> str:
    s, m = report["shapes"], report["machine"]
    lines = [
        f"# Step cost, memory and generation ({report['device']}, {report['dtype']})",
        "",
        f"Machine: {m.get('gpu') or m['processor']}, {m['threads']} torch threads, torch {m['torch']}. "
        f"Shapes: batch {s['batch']} x length {s['length']}, d_model {s['d_model']}, FFN {s['ffn']}, "
        f"{s['heads']} heads, vocab {s['vocab']}, N = {s['layers']} encoder layers, k = {s['k']}, 2 decoder layers. "
        f"Medians of {s['repeats']} interleaved repeats after {s['warmup']} warm-up rounds. Intervals: each repeat's "
        "ratio (every candidate runs once per repeat, so each repeat's ratio is paired), Student's t 95% interval of "
        "the mean over repeats.",
        "",
        "## One layer: training step (forward + backward, no optimizer) relative to a trainable layer",
        "",
        "| layer | ms | ratio | 95% interval | target |",
        "|---|---|---|---|---|",
    ]
    targets = {
        "transformer reservoir": "<= 0.72 (limit 2/3)",
        "ffn reservoir": "below the transformer reservoir",
        "transformer reservoir, forward only": "limit ~1/3",
        "transformer reservoir, backskip identity": "<= 0.40",
    }
    for name, row in report["per_layer"].items():
        interval = describe_interval(row.get("ratio_interval_95"), 3)
        lines.append(
            f"| {name} | {row['seconds'] * 1000:.2f} | {row['ratio']:.3f} | {interval} | {targets.get(name, '')} |"
        )
    lines += [
        "",
        "## Whole model: training step (forward + backward)",
        "",
        f"MFU: FLOPs per step (counted from the shapes of the ops the step runs) / seconds / peak "
        f"{report['peak_flops']['flops_per_second'] / 1e12:.1f} TFLOP/s ({report['peak_flops']['source']}).",
        "",
        "| model | ms | GFLOP/step | TFLOP/s | MFU | vs vanilla Marian | vs N + k trainable [95% interval] | "
        "trainable params | frozen params | Adam state (MB) | peak step memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["whole_model"].items():
        lines.append(
            f"| {name} | {row['seconds'] * 1000:.1f} | {row['flops_per_step'] / 1e9:.2f} | "
            f"{row['tflops_per_second']:.3f} | {row['mfu']:.1%} | {row['ratio_to_vanilla']:.3f} | "
            f"{row['ratio_to_N_plus_k_trainable']:.3f} "
            f"{describe_interval(row.get('ratio_to_N_plus_k_trainable_interval_95'), 3)} | "
            f"{row['trainable_parameters']:,} | "
            f"{row['frozen_parameters']:,} | {row['adam_state_bytes'] / 2**20:.2f} | "
            f"{(row['peak_memory_bytes'] or 0) / 2**20:.1f} |"
        )
    lines += [
        "",
        "## Generation throughput (same weights)",
        "",
        "| decoding | Marian sent/s | ours sent/s | time ratio (ours / Marian) | identical tokens |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["generation"].items():
        lines.append(
            f"| {name} | {row['marian_sentences_per_second']:.1f} | {row['ours_sentences_per_second']:.1f} | "
            f"{row['ratio']:.3f} | {row['identical_tokens']} |"
        )
    if report.get("compile"):
        lines += compile_table(report)
    lines += ["", "## Checks against the targets", ""]
    lines += [f"- {check}" for check in report["checks"]]
    return "\n".join(lines) + "\n"


def checks(report: dict) -> list[str]:
    layer, whole, gen = report["per_layer"], report["whole_model"], report["generation"]
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    r = layer["transformer reservoir"]["ratio"]
    out.append(f"transformer reservoir layer {r:.3f}x a trainable layer (target <= 0.72): {verdict(r <= 0.72)}")
    f = layer["ffn reservoir"]["ratio"]
    out.append(f"FFN reservoir {f:.3f}x (target: below the transformer reservoir): {verdict(f < r)}")
    i = layer["transformer reservoir, backskip identity"]["ratio"]
    out.append(f"backskip identity {i:.3f}x a trainable layer (target <= 0.40): {verdict(i <= 0.40)}")
    o = whole["ours, no reservoirs (N)"]["ratio_to_vanilla"]
    out.append(f"no-reservoir overhead {o:.3f}x vanilla Marian (target <= 1.02): {verdict(o <= 1.02)}")
    for name, row in gen.items():
        out.append(
            f"generation {name}: {row['ratio']:.3f}x Marian's time (target parity within 3%): "
            f"{verdict(abs(row['ratio'] - 1) <= 0.03)}"
        )
    n_k = whole["ours, N + k trainable"]
    res = whole["ours, N + k transformer reservoirs"]
    saved = n_k["adam_state_bytes"] - res["adam_state_bytes"]
    frozen_reservoir = n_k["trainable_parameters"] - res["trainable_parameters"]
    per_parameter = 2 * (2 if report["dtype"] == "bf16" else 4)  # Adam's two moments, in the parameters' dtype
    out.append(
        f"Adam state shrinks by {saved:,} bytes for {frozen_reservoir:,} frozen {report['dtype']} parameters: "
        f"{saved / max(frozen_reservoir, 1):.1f} bytes each (expected {per_parameter}): "
        f"{verdict(saved == per_parameter * frozen_reservoir)}"
    )
    b = whole["ours, N + k transformer reservoirs, backskip identity"]
    out.append(
        f"backskip identity whole step {b['ratio_to_N_plus_k_trainable']:.3f}x vs exact reservoirs "
        f"{res['ratio_to_N_plus_k_trainable']:.3f}x (both relative to N + k trainable)"
    )
    return out


PROG = "hf-reservoir bench step-cost"


def main(argv: list[str] | None = None) -> dict:
    parser = FlagParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--shapes", default="cpu", choices=["cpu", "gpu", "tiny"], help="benchmark sizes")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes for the smoke test (--shapes tiny)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile and count graph breaks")
    parser.add_argument("--compile_backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--name", default=None, help="file stem (default: step_cost_<device>)")
    args = parser.parse_args(argv)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    s = shapes("tiny" if args.tiny else args.shapes)
    report = {"device": args.device, "dtype": args.dtype, "shapes": s, "machine": machine(args.device)}
    report["per_layer"] = per_layer(s, args.device, dtype)
    peak, source = peak_flops(args.device, args.dtype)
    report["peak_flops"] = {"flops_per_second": peak, "source": source}
    report["whole_model"] = whole_model(s, args.device, dtype, peak)
    report["generation"] = generation(s, args.device, dtype)
    if args.compile:
        report["compile_backend"] = args.compile_backend
        report["compile"] = compiled(s, args.device, dtype, args.compile_backend, peak)
    report["checks"] = checks(report)
    write_report(args.output_dir, args.name or f"step_cost_{args.device}", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
