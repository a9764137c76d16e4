"""Training-step cost, memory and generation speed of reservoir models, as ratios measured side by side.

    hf-reservoir bench step-cost                      # CPU, the committed shapes
    hf-reservoir bench step-cost --device cuda --dtype bf16
    hf-reservoir bench step-cost --device cuda --dtype bf16 --shapes gpu --compile   # IWSLT sizes, torch.compile
    hf-reservoir bench step-cost --tiny               # smoke test shapes

Every number is a median over interleaved repeats after a warm-up: the candidates take turns
inside each repeat, so drift in machine speed hits them alike. Reported as ratios to a baseline
measured in the same run. Writes JSON and a markdown table (``--output-dir``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from transformers import MarianConfig, MarianMTModel

from ..configuration_reservoir import RESERVOIR_TYPES as TYPES
from ..configuration_reservoir import ReservoirMarianConfig
from ..modeling_reservoir import (
    BackskipPredictor,
    ReservoirMarianMTModel,
    build_encoder_layer,
    skipped_reservoir_forward,
)


def shapes(name: str) -> dict:
    """Benchmark shapes: ``cpu`` (committed CPU table), ``gpu`` (the paper's IWSLT'14 sizes) or ``tiny``."""
    if name == "gpu":
        # transformer_iwslt_de_en: d_model 512, FFN 1024, 4 heads, N = 6, k = 2; ~4,096 tokens per batch.
        return dict(
            d_model=512,
            ffn=1024,
            heads=4,
            batch=128,
            length=32,
            vocab=8000,
            layers=6,
            k=2,
            repeats=30,
            warmup=5,
            gen_batch=64,
            gen_tokens=32,
        )
    if name == "tiny":
        return dict(
            d_model=32,
            ffn=64,
            heads=2,
            batch=4,
            length=8,
            vocab=100,
            layers=3,
            k=1,
            repeats=3,
            warmup=1,
            gen_batch=2,
            gen_tokens=4,
        )
    # The CPU demo's width and the paper's layer counts, at a batch the CPU handles in ~0.1 s/step.
    return dict(
        d_model=256,
        ffn=1024,
        heads=4,
        batch=32,
        length=24,
        vocab=8000,
        layers=6,
        k=2,
        repeats=15,
        warmup=3,
        gen_batch=16,
        gen_tokens=24,
    )


def base_config(s: dict, **overrides) -> dict:
    config = dict(
        vocab_size=s["vocab"],
        d_model=s["d_model"],
        encoder_ffn_dim=s["ffn"],
        decoder_ffn_dim=s["ffn"],
        encoder_attention_heads=s["heads"],
        decoder_attention_heads=s["heads"],
        decoder_layers=2,
        max_position_embeddings=128,
        pad_token_id=s["vocab"] - 1,
        decoder_start_token_id=s["vocab"] - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
        dropout=0.0,
        scale_embedding=True,
    )
    config.update(overrides)
    return config


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(candidates: dict[str, Callable[[], None]], repeats: int, warmup: int, device: str) -> dict:
    """Median seconds per candidate; each repeat runs every candidate once, in rotating order."""
    times = {name: [] for name in candidates}
    names = list(candidates)
    for repeat in range(warmup + repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            if repeat >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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
    times = interleaved(candidates, s["repeats"] * 2, s["warmup"], device)
    base = times["trainable transformer layer"]
    return {name: {"seconds": t, "ratio": t / base} for name, t in times.items()}


# ---------------------------------------------------------------------------------------------
# Whole model
# ---------------------------------------------------------------------------------------------


def model_variants(s: dict) -> dict[str, torch.nn.Module]:
    n, k = s["layers"], s["k"]
    common = base_config(s)
    torch.manual_seed(0)
    variants: dict[str, torch.nn.Module] = {
        "vanilla MarianMTModel (N)": MarianMTModel(MarianConfig(**common, encoder_layers=n))
    }
    variants["ours, no reservoirs (N)"] = ReservoirMarianMTModel(ReservoirMarianConfig(**common, encoder_layers=n))
    variants["ours, N + k trainable"] = ReservoirMarianMTModel(ReservoirMarianConfig(**common, encoder_layers=n + k))
    for reservoir_type in TYPES:
        variants[f"ours, N + k {reservoir_type} reservoirs"] = ReservoirMarianMTModel(
            ReservoirMarianConfig(
                **common, encoder_layers=n + k, num_encoder_reservoir_layers=k, reservoir_type=reservoir_type
            )
        )
    for mode in ("identity", "learned"):
        variants[f"ours, N + k transformer reservoirs, backskip {mode}"] = ReservoirMarianMTModel(
            ReservoirMarianConfig(
                **common,
                encoder_layers=n + k,
                num_encoder_reservoir_layers=k,
                reservoir_type="transformer",
                backskip_mode=mode,
                backskip_warmup_steps=0,
                backskip_anneal_factor=0.0,
            )
        )
    return variants


def batch_for(s: dict, device: str) -> dict:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, s["vocab"] - 1, (s["batch"], s["length"]), generator=generator)
    labels = torch.randint(1, s["vocab"] - 1, (s["batch"], s["length"]), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
    }


def whole_model(s: dict, device: str, dtype: torch.dtype) -> dict:
    batch = batch_for(s, device)
    variants = {name: m.to(device, dtype).train() for name, m in model_variants(s).items()}

    def step(model):
        def run():
            model(**batch).loss.backward()
            model.zero_grad(set_to_none=True)

        return run

    times = interleaved({name: step(m) for name, m in variants.items()}, s["repeats"], s["warmup"], device)
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
        results[name] = {
            "seconds": times[name],
            "ratio_to_vanilla": times[name] / base,
            "ratio_to_N_plus_k_trainable": times[name] / trainable_base,
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


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------

COMPILE_VARIANTS = (
    "ours, no reservoirs (N)",
    "ours, N + k transformer reservoirs",
    "ours, N + k ffn reservoirs",
    "ours, N + k bigru reservoirs",
    "ours, N + k cnn reservoirs",
    "ours, N + k transformer reservoirs, backskip identity",
)


def compiled(s: dict, device: str, dtype: torch.dtype, backend: str) -> dict:
    """Graph breaks (``torch._dynamo.explain``) and the compiled/eager step-time ratio of each model.

    A model that fails to compile is reported with its error instead of stopping the benchmark.
    """
    import torch._dynamo

    batch = batch_for(s, device)
    all_variants = model_variants(s)
    results = {}
    for name in COMPILE_VARIANTS:
        model = all_variants[name].to(device, dtype).train()
        torch._dynamo.reset()
        row: dict = {}
        try:
            explanation = torch._dynamo.explain(model)(**batch)
            row["graph_breaks"] = explanation.graph_break_count
            row["break_reasons"] = sorted({str(b.reason).splitlines()[0][:160] for b in explanation.break_reasons})
            torch._dynamo.reset()
            fast = torch.compile(model, backend=backend)

            def step(m):
                def run():
                    m(**batch).loss.backward()
                    m.zero_grad(set_to_none=True)

                return run

            start = time.perf_counter()
            step(fast)()  # compile before timing
            synchronize(device)
            row["compile_seconds"] = time.perf_counter() - start
            times = interleaved({"eager": step(model), "compiled": step(fast)}, s["repeats"], s["warmup"], device)
            row.update(eager_seconds=times["eager"], compiled_seconds=times["compiled"])
            row["ratio"] = times["compiled"] / times["eager"]
        except Exception as error:  # noqa: BLE001 - a benchmark reports what failed and goes on
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        results[name] = row
        del model
        gc.collect()
    return results


# ---------------------------------------------------------------------------------------------


def machine(device: str) -> dict:
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _compile_table(report: dict) -> list[str]:
    lines = [
        "",
        f"## torch.compile (backend {report['compile_backend']}): training step, compiled vs eager",
        "",
        "| model | graph breaks | compile s | eager ms | compiled ms | ratio | break reasons or error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["compile"].items():
        if "error" in row and "ratio" not in row:
            lines.append(f"| {name} | {row.get('graph_breaks', '?')} | | | | | {row['error']} |")
            continue
        lines.append(
            f"| {name} | {row['graph_breaks']} | {row['compile_seconds']:.1f} | {row['eager_seconds'] * 1000:.2f} "
            f"| {row['compiled_seconds'] * 1000:.2f} | {row['ratio']:.3f} | {'; '.join(row['break_reasons'])} |"
        )
    return lines


def markdown(report: dict) -> str:
    s, m = report["shapes"], report["machine"]
    lines = [
        f"# Step cost, memory and generation ({report['device']}, {report['dtype']})",
        "",
        f"Machine: {m.get('gpu') or m['processor']}, {m['threads']} torch threads, torch {m['torch']}. "
        f"Shapes: batch {s['batch']} x length {s['length']}, d_model {s['d_model']}, FFN {s['ffn']}, "
        f"{s['heads']} heads, vocab {s['vocab']}, N = {s['layers']} encoder layers, k = {s['k']}, 2 decoder layers. "
        f"Medians of {s['repeats']} interleaved repeats after {s['warmup']} warm-up rounds.",
        "",
        "## One layer: training step (forward + backward, no optimizer) relative to a trainable layer",
        "",
        "| layer | ms | ratio | target |",
        "|---|---|---|---|",
    ]
    targets = {
        "transformer reservoir": "<= 0.72 (limit 2/3)",
        "ffn reservoir": "below the transformer reservoir",
        "transformer reservoir, forward only": "limit ~1/3",
        "transformer reservoir, backskip identity": "<= 0.40",
    }
    for name, row in report["per_layer"].items():
        lines.append(f"| {name} | {row['seconds'] * 1000:.2f} | {row['ratio']:.3f} | {targets.get(name, '')} |")
    lines += [
        "",
        "## Whole model: training step (forward + backward)",
        "",
        "| model | ms | vs vanilla Marian | vs N + k trainable | trainable params | frozen params | "
        "Adam state (MB) | peak step memory (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["whole_model"].items():
        lines.append(
            f"| {name} | {row['seconds'] * 1000:.1f} | {row['ratio_to_vanilla']:.3f} | "
            f"{row['ratio_to_N_plus_k_trainable']:.3f} | {row['trainable_parameters']:,} | "
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
        lines += _compile_table(report)
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
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--shapes", default="cpu", choices=["cpu", "gpu", "tiny"], help="benchmark sizes")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes for the smoke test (--shapes tiny)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile and count graph breaks")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--output-dir", default="results")
    parser.add_argument("--name", default=None, help="file stem (default: step_cost_<device>)")
    args = parser.parse_args(argv)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    s = shapes("tiny" if args.tiny else args.shapes)
    report = {"device": args.device, "dtype": args.dtype, "shapes": s, "machine": machine(args.device)}
    report["per_layer"] = per_layer(s, args.device, dtype)
    report["whole_model"] = whole_model(s, args.device, dtype)
    report["generation"] = generation(s, args.device, dtype)
    if args.compile:
        report["compile_backend"] = args.compile_backend
        report["compile"] = compiled(s, args.device, dtype, args.compile_backend)
    report["checks"] = checks(report)
    write_report(args.output_dir, args.name or f"step_cost_{args.device}", report, markdown(report))
    return report


def write_report(output_dir: str, stem: str, report: dict, text: str) -> None:
    """Write ``STEM.json`` and ``STEM.md`` into ``output_dir`` and print the markdown (every benchmark's output)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{stem}.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(output_dir, f"{stem}.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
