"""``torch.compile`` in the step-cost benchmark: per model, graph breaks and the training step's time, TFLOP/s
and MFU in eager mode, compiled (``torch.compile``), and compiled with CUDA graphs (``mode="reduce-overhead"``,
on a GPU with the inductor backend only), plus each reservoir model's whole-step ratio to the model without
reservoirs under the same mode. All modes of all models are timed in one interleaved run (medians)."""

from __future__ import annotations

import gc
import time

import torch

from .flops import step_flops
from .measure import interleaved, synchronize, training_step
from .variants import batch_for, model_variants

REFERENCE = "ours, no reservoirs (N)"
COMPILE_VARIANTS = (
    REFERENCE,
    "ours, N + k transformer reservoirs",
    "ours, N + k ffn reservoirs",
    "ours, N + k bigru reservoirs",
    "ours, N + k cnn reservoirs",
    "ours, N + k transformer reservoirs, backskip identity",
    "ours, N + k transformer reservoirs, backskip learned",
)
# A backskipping model compiles one graph per skip pattern and shape (backskip_plan); dynamo's default limit of
# 8 graphs per function would then silently fall back to eager, so the benchmark (and a compiled run) raises it.
RECOMPILE_LIMIT = 64


def compile_modes(device: str, backend: str) -> dict[str, dict]:
    """The compiled modes to time: ``torch.compile`` as is, and with CUDA graphs where they exist."""
    modes = {"compiled": {}}
    if device == "cuda" and backend == "inductor":
        modes["CUDA graphs"] = {"mode": "reduce-overhead"}
    return modes


def compiled(s: dict, device: str, dtype: torch.dtype, backend: str, peak: float) -> dict:
    """Graph breaks (``torch._dynamo.explain``), and the step time, TFLOP/s and MFU (against ``peak``) of each
    model eager and under every mode of [`compile_modes`]. A model or mode that fails to compile is reported
    with its error instead of stopping the benchmark."""
    import torch._dynamo

    batch = batch_for(s, device)
    all_variants = model_variants(s)
    modes = compile_modes(device, backend)
    results, candidates = {}, {}
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        for name in COMPILE_VARIANTS:
            model = all_variants[name].to(device, dtype).train()
            row: dict = {"flops_per_step": step_flops(model, batch), "compile_seconds": {}}
            results[name] = row
            try:
                torch._dynamo.reset()
                explanation = torch._dynamo.explain(model)(**batch)
                row["graph_breaks"] = explanation.graph_break_count
                reasons = {str(b.reason).splitlines()[0][:160] for b in explanation.break_reasons}
                row["break_reasons"] = sorted(reasons)
            except Exception as error:  # noqa: BLE001 - a benchmark reports what failed and goes on
                row["error"] = f"explain: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
                continue
            candidates[(name, "eager")] = training_step(model, batch)
            for mode, options in modes.items():
                try:
                    fast = torch.compile(model, backend=backend, **options)
                    step = training_step(fast, batch, cuda_graphs=mode == "CUDA graphs")
                    start = time.perf_counter()
                    step()  # compile (and record the graphs) before timing
                    step()
                    synchronize(device)
                    row["compile_seconds"][mode] = time.perf_counter() - start
                    candidates[(name, mode)] = step
                except Exception as error:  # noqa: BLE001
                    row.setdefault("mode_errors", {})[mode] = (
                        f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    )
        times = interleaved(candidates, s["repeats"], s["warmup"], device)
    for (name, mode), seconds in times.items():
        row = results[name]
        row.setdefault("modes", {})[mode] = {
            "seconds": seconds,
            "tflops_per_second": row["flops_per_step"] / seconds / 1e12,
            "mfu": row["flops_per_step"] / seconds / peak,
        }
    for row in results.values():
        for mode, cell in row.get("modes", {}).items():
            reference = results[REFERENCE].get("modes", {}).get(mode)
            if reference:
                cell["ratio_to_no_reservoirs"] = cell["seconds"] / reference["seconds"]
        if "compiled" in row.get("modes", {}):
            row["ratio"] = row["modes"]["compiled"]["seconds"] / row["modes"]["eager"]["seconds"]
    gc.collect()
    return results


# ---------------------------------------------------------------------------------------------


def compile_table(report: dict) -> list[str]:
    modes = ["eager", *compile_modes(report["device"], report["compile_backend"])]
    header = " | ".join(f"{mode} ms / MFU / x no-res." for mode in modes)
    lines = [
        "",
        f"## torch.compile (backend {report['compile_backend']}): the training step per mode",
        "",
        "Per mode: milliseconds per step, MFU (against the peak above), and the step time as a multiple of the "
        "model without reservoirs under the same mode. Compiled/eager: the `compiled` column over `eager`.",
        "",
        f"| model | graph breaks | {header} | compiled / eager | compile s | break reasons or errors |",
        "|---|---|" + "---|" * len(modes) + "---|---|---|",
    ]
    for name, row in report["compile"].items():
        cells = []
        for mode in modes:
            cell = row.get("modes", {}).get(mode)
            if cell is None:
                cells.append("-")
                continue
            ratio = cell.get("ratio_to_no_reservoirs", float("nan"))
            cells.append(f"{cell['seconds'] * 1000:.2f} / {cell['mfu']:.1%} / {ratio:.3f}")
        notes = [*row.get("break_reasons", []), *(f"{m}: {e}" for m, e in row.get("mode_errors", {}).items())]
        if "error" in row:
            notes.append(row["error"])
        seconds = ", ".join(f"{m} {t:.1f}" for m, t in row.get("compile_seconds", {}).items())
        ratio = f"{row['ratio']:.3f}" if "ratio" in row else "-"
        breaks = row.get("graph_breaks", "?")
        lines.append(f"| {name} | {breaks} | {' | '.join(cells)} | {ratio} | {seconds} | {'; '.join(notes)} |")
    return lines
