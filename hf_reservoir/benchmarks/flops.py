"""Arithmetic per training step and the device's peak, for the model FLOPs utilisation (MFU) of a step.

FLOPs are counted from the shapes of the operations a step actually runs (``torch.utils.flop_counter``: a
matmul of (m, k) by (k, n) is 2·m·n·k, attention likewise per head), so a frozen reservoir counts its forward
and the input-gradient half of its backward but no weight gradient, and a backskipped reservoir no backward at
all: the count is the arithmetic the step needs, and MFU = FLOPs per step / seconds per step / peak FLOP/s.
"""

from __future__ import annotations

import time

import torch

# Dense (no sparsity) peak FLOP/s of known accelerators by dtype, from the vendors' data sheets.
PEAK_FLOPS = {
    "H100": {"bf16": 989.4e12, "fp32": 66.9e12},  # SXM; tf32 tensor cores give 494.7e12 for fp32 matmuls
    "H200": {"bf16": 989.4e12, "fp32": 66.9e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}


def step_flops(model: torch.nn.Module, batch: dict) -> int:
    """FLOPs of one training step (forward + backward) of ``model`` on ``batch``, counted from op shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def peak_flops(device: str, dtype: str) -> tuple[float, str]:
    """``(FLOP/s, source)``: the data-sheet peak of a known GPU, else a measured matmul ceiling.

    The measured ceiling (the best of large square matmuls in ``dtype``) is what this device reaches on the
    kindest workload; an MFU against it reads higher than against a data-sheet peak, and says so in its source.
    """
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for model, peaks in PEAK_FLOPS.items():
            if model in name and dtype in peaks:
                return peaks[dtype], f"data sheet ({model}, {dtype}, dense)"
    return _matmul_ceiling(device, torch.bfloat16 if dtype == "bf16" else torch.float32), "measured matmul ceiling"


def _matmul_ceiling(device: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
