"""How every benchmark measures and reports: interleaved repeats with medians, the machine, the report files.

Candidates take turns inside each repeat, so drift in machine speed hits them alike; a benchmark reports
ratios to a baseline measured in the same run, never against a timing taken at another time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from ..utils.intervals import t_interval


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def training_step(model, batch: dict, cuda_graphs: bool = False) -> Callable[[], None]:
    """One training step of ``model`` on ``batch`` (forward + backward, gradients dropped), as a callable to time.

    ``cuda_graphs``: mark each call as a new step for a model compiled with ``mode="reduce-overhead"``, so that
    the graphs may reuse the previous step's outputs.
    """

    def run():
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def interleaved(
    candidates: dict[str, Callable[[], None]], repeats: int, warmup: int, device: str, samples: dict | None = None
) -> dict:
    """Median seconds per candidate; each repeat runs every candidate once, in rotating order. ``samples``, if given,
    receives every candidate's seconds per repeat (for paired per-repeat ratios and their intervals)."""
    times = {name: [] for name in candidates}
    if samples is not None:
        samples.update(times)  # the same lists, filled below
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


def write_report(output_dir: str, stem: str, report: dict, text: str) -> None:
    """Write ``STEM.json`` and ``STEM.md`` into ``output_dir`` and print the markdown (every benchmark's output)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{stem}.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(output_dir, f"{stem}.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


def ratio_interval(samples: dict[str, list[float]], name: str, base: str) -> tuple[float, float] | None:
    """The 95% t interval over repeats of ``name``'s time over ``base``'s in the same repeat (paired, since every
    repeat runs every candidate once)."""
    return t_interval([mine / theirs for mine, theirs in zip(samples[name], samples[base])])
