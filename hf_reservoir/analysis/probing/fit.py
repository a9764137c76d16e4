"""Fitting a linear probe, and its statistics: splits, bootstrap intervals and paired differences."""

from __future__ import annotations

import functools
import math
import random
import zlib
from collections import Counter

import torch

from .tasks import ProbeSettings, ProbeTask, _splits

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


BOOTSTRAP = 1000  # resamples for every interval


def fit_probe(features: torch.Tensor, labels: list[int], split: list[str], num_classes: int) -> dict:
    """A linear probe (logistic regression, full-batch L-BFGS) per L2 penalty in ``WEIGHT_DECAYS``; the penalty
    with the best validation accuracy is kept and scored on test, beside the majority-class baseline.

    Fitted on one thread: at these sizes (a few thousand examples, d_model features) more threads only wait on each
    other (measured: 9x slower on 2 threads of a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_probe(features, labels, split, num_classes)
    finally:
        torch.set_num_threads(threads)


def _train_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, decay: float) -> tuple[torch.nn.Linear, str]:
    """Fit ``Linear(d, classes)`` by L-BFGS from zeros; when L-BFGS ends with a non-finite loss or above where it
    started (its line search can fail on badly scaled features, leaving every logit equal: a probe that predicts one
    class and looks collapsed), fit again with Adam. Returns the map and the optimizer that fitted it."""

    def objective(linear):
        loss = torch.nn.functional.cross_entropy(linear(x), y)
        return loss + decay * linear.weight.pow(2).sum()

    start = math.log(num_classes)  # the loss at zero weights
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = objective(linear)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = objective(linear).item()
    if math.isfinite(final) and final <= start + 1e-6:
        return linear, "lbfgs"
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    adam = torch.optim.Adam(linear.parameters(), lr=0.01)
    for _ in range(500):
        adam.zero_grad()
        objective(linear).backward()
        adam.step()
    return linear, "adam (L-BFGS failed)"


def _fit_probe(features: torch.Tensor, labels: list[int], split: list[str], num_classes: int) -> dict:
    y = torch.tensor(labels)
    parts = {name: torch.tensor([s == name for s in split]) for name in ("train", "validation", "test")}
    train = features[parts["train"]]
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    x = (features - mean) / std  # standardised on the probe's train split only
    best = None
    for decay in WEIGHT_DECAYS:
        linear, fitted_by = _train_linear(x[parts["train"]], y[parts["train"]], num_classes, decay)
        with torch.no_grad():
            predicted = linear(x).argmax(1)
        correct = predicted == y
        accuracy = {name: correct[mask].float().mean().item() for name, mask in parts.items()}
        if best is None or accuracy["validation"] > best["validation_accuracy"]:
            best = {
                "validation_accuracy": accuracy["validation"],
                "accuracy": accuracy["test"],
                "weight_decay": decay,
                "optimizer": fitted_by,
                "predicted_classes": len(set(predicted[parts["test"]].tolist())),
                "correct": correct[parts["test"]],
            }
    majority = Counter(y[parts["train"]].tolist()).most_common(1)[0][0]
    best["baseline"] = (y[parts["test"]] == majority).float().mean().item()
    best["n_train"], best["n_test"] = int(parts["train"].sum()), int(parts["test"].sum())
    return best


def task_splits(task: ProbeTask, settings: ProbeSettings) -> list[list[str]]:
    """The task's own split, then ``settings.splits - 1`` more drawn from seeds of their own."""
    extra = [
        _splits(len(task.labels), random.Random(f"{settings.seed}-{task.name}-split{k}"))
        for k in range(1, settings.splits)
    ]
    return [task.split, *extra]


@functools.lru_cache(maxsize=64)
def _resamples(n: int, key: str) -> torch.Tensor:
    """``BOOTSTRAP`` resamples (with replacement) of ``n`` test examples, the same for every cell with this key
    (drawn once per key: every layer and model of a task reuses them; read only)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    return torch.randint(n, (BOOTSTRAP, n), generator=generator)


def _bootstrap(corrects: list[torch.Tensor], key: str) -> torch.Tensor:
    """Accuracy (or, for a difference, its mean) over the splits, per bootstrap resample: ``[BOOTSTRAP]``."""
    per_split = [c.float()[_resamples(len(c), f"{key}-{k}")].mean(1) for k, c in enumerate(corrects)]
    return torch.stack(per_split).mean(0)


def _interval(samples: torch.Tensor) -> list[float]:
    low, high = torch.quantile(samples, torch.tensor([0.025, 0.975])).tolist()
    return [low, high]


def probe_cell(features: torch.Tensor, task: ProbeTask, splits: list[list[str]]) -> dict:
    """One (layer, task) probe over every split: mean test accuracy with its 95% bootstrap interval, the mean
    majority baseline, each split's accuracy and penalty; ``correct`` (per split, the test examples' hits) is kept
    for paired differences and left out of probe.json."""
    fits = [fit_probe(features, task.labels, split, task.num_classes) for split in splits]
    corrects = [fit.pop("correct") for fit in fits]
    mean = lambda key: sum(fit[key] for fit in fits) / len(fits)  # noqa: E731
    optimizers = sorted({fit["optimizer"] for fit in fits})
    return {
        "accuracy": mean("accuracy"),
        "interval": _interval(_bootstrap(corrects, task.name)),
        "baseline": mean("baseline"),
        "split_accuracies": [fit["accuracy"] for fit in fits],
        "weight_decay": [fit["weight_decay"] for fit in fits],
        "optimizer": optimizers[0] if len(optimizers) == 1 else optimizers,
        "predicted_classes": min(fit["predicted_classes"] for fit in fits),
        "n_train": fits[0]["n_train"],
        "n_test": fits[0]["n_test"],
        "correct": corrects,
    }


def difference(a: dict, b: dict, task_name: str) -> dict:
    """``a - b`` in accuracy, two cells on the same test examples: the paired bootstrap's 95% interval, and
    ``real`` when it excludes 0."""
    corrects = [ca.float() - cb.float() for ca, cb in zip(a["correct"], b["correct"])]
    interval = _interval(_bootstrap(corrects, task_name))
    return {
        "difference": a["accuracy"] - b["accuracy"],
        "interval": interval,
        "real": interval[0] > 0 or interval[1] < 0,
    }
