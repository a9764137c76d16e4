"""``torch.compile`` in the step-cost benchmark: graph breaks and the compiled/eager step-time ratio per model."""

from __future__ import annotations

import gc
import time

import torch

from .measure import interleaved, synchronize
from .variants import batch_for, model_variants

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


def compile_table(report: dict) -> list[str]:
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
