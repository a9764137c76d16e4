"""The paper's comparison (Table 1, Figure 1): a grid of runs and a report built from their files.

A grid has models x updatable-layer counts N x seeds. Every run gets the same data, tokenizer,
optimizer, schedule and wall-clock budget T-hat; only the encoder differs:

* ``regular``: N updatable encoder layers;
* ``transformer``, ``ffn``, ``bigru``, ``cnn``: N updatable + k reservoir layers (alternating rule);
* ``layerdrop``: N + k updatable layers with LayerDrop ``k / (N + k)`` (the paper's baseline),
  so that N layers are active on average;
* ``<type>-identity`` / ``<type>-learned``: reservoirs with backskipping.

Each run is ``python -m hf_reservoir.cli train`` in its own process; a run whose ``results.json`` exists is
skipped, so an interrupted sweep resumes. The report reads only the run folders.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from .configuration_reservoir import RESERVOIR_TYPES as RESERVOIR_MODELS  # every reservoir type is a model


def split_model(model: str) -> tuple[str, str | None]:
    """``"transformer-identity"`` -> ``("transformer", "identity")``; ``"ffn"`` -> ``("ffn", None)``."""
    base, dash, backskip = model.partition("-")
    return base, backskip if dash else None


@dataclass
class SweepConfig:
    """A grid. ``train_config`` is a training YAML/JSON; ``train_overrides`` apply to every run."""

    train_config: str
    output_dir: str
    models: list[str] = field(default_factory=lambda: ["regular", "transformer", "ffn", "layerdrop"])
    updatable_layers: list[int] = field(default_factory=lambda: [2, 4])
    reservoir_layers: int = 2
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    budget_seconds: float = 600.0
    train_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        for model in self.models:
            base, backskip = split_model(model)
            if base not in ("regular", "layerdrop", *RESERVOIR_MODELS) or (
                backskip is not None and (base not in RESERVOIR_MODELS or backskip not in ("identity", "learned"))
            ):
                raise ValueError(
                    f"models contains {model!r}; use regular, layerdrop, {', '.join(RESERVOIR_MODELS)}, or a "
                    "reservoir type with -identity/-learned for backskipping."
                )
        if self.budget_seconds <= 0:
            raise ValueError(f"budget_seconds={self.budget_seconds} must be positive.")

    @classmethod
    def load(cls, path: str) -> SweepConfig:
        import yaml

        with open(path, encoding="utf-8") as handle:
            return cls(**yaml.safe_load(handle))


@dataclass(frozen=True)
class Cell:
    model: str
    updatable: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-N{self.updatable}-seed{self.seed}"


def cells(config: SweepConfig) -> list[Cell]:
    return [Cell(m, n, s) for n in config.updatable_layers for m in config.models for s in config.seeds]


def cell_arguments(config: SweepConfig, cell: Cell) -> list[str]:
    """The ``train.py`` flags of one run."""
    k = config.reservoir_layers
    overrides = dict(config.train_overrides)
    overrides.update(
        output_dir=os.path.join(config.output_dir, cell.name),
        seed=cell.seed,
        budget_seconds=config.budget_seconds,
        reservoir_seed=cell.seed,
        overwrite_output_dir=True,  # a cell without results.json starts over
    )
    base, backskip = split_model(cell.model)
    if cell.model == "regular":
        overrides.update(encoder_layers=cell.updatable, num_encoder_reservoir_layers=0)
    elif cell.model == "layerdrop":
        overrides.update(
            encoder_layers=cell.updatable + k,
            num_encoder_reservoir_layers=0,
            encoder_layerdrop=round(k / (cell.updatable + k), 4),
        )
    else:
        overrides.update(encoder_layers=cell.updatable + k, num_encoder_reservoir_layers=k, reservoir_type=base)
        if backskip is not None:
            overrides["backskip_mode"] = backskip
    argv = [config.train_config]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return argv


def run_cell(config: SweepConfig, cell: Cell, python: str = sys.executable) -> str:
    """Run one cell unless its ``results.json`` exists; returns ``done``, ``skipped`` or ``failed``."""
    run_dir = os.path.join(config.output_dir, cell.name)
    if os.path.exists(os.path.join(run_dir, "results.json")):
        return "skipped"
    os.makedirs(run_dir, exist_ok=True)
    command = [python, "-m", "hf_reservoir.cli", "train", *cell_arguments(config, cell)]
    with open(os.path.join(run_dir, "train.log"), "w", encoding="utf-8") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    return "done" if process.returncode == 0 else "failed"


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(pair: tuple[float, float], digits: int = 2) -> str:
    mean, std = pair
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def load_runs(config: SweepConfig) -> dict[Cell, dict]:
    """Every finished run: ``{cell: {"results": ..., "convergence": ...}}``."""
    runs = {}
    for cell in cells(config):
        run_dir = os.path.join(config.output_dir, cell.name)
        try:
            with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as handle:
                results = json.load(handle)
            with open(os.path.join(run_dir, "convergence.json"), encoding="utf-8") as handle:
                convergence = json.load(handle)
        except FileNotFoundError:
            continue
        runs[cell] = {"results": results, "convergence": convergence}
    return runs


def build_report(config: SweepConfig, report_dir: str) -> str:
    """Write ``table.md``, ``bleu_vs_time.png``, ``aucc_vs_layers.png`` and ``summary.json``."""
    from .convergence import plot_curves

    runs = load_runs(config)
    if not runs:
        raise ValueError(f"No finished runs under {config.output_dir}; run the sweep first.")
    os.makedirs(report_dir, exist_ok=True)
    groups: dict[tuple[str, int], list[dict]] = {}
    for cell, run in runs.items():
        groups.setdefault((cell.model, cell.updatable), []).append(run)
    k = config.reservoir_layers
    summary = {}
    for (model, n), members in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        conv = [m["convergence"]["summary"] for m in members]
        res = [m["results"] for m in members]
        summary[f"{model}/N{n}"] = {
            "model": model,
            "updatable_layers": n,
            "reservoir_layers": 0 if model in ("regular", "layerdrop") else k,
            "seeds": len(members),
            "max_valid_bleu": _mean_std([c["peak_bleu"] for c in conv]),
            "time_to_max_seconds": _mean_std([c["time_to_peak_seconds"] for c in conv]),
            "aucc_normalized": _mean_std([c["aucc_normalized"] for c in conv]),
            "aucc_bleu_hours": _mean_std([c["aucc_bleu_hours"] for c in conv]),
            # training seconds over fractional epochs trained (results.json), the same for every run
            "seconds_per_epoch": _mean_std(
                [c["train_seconds"] / r["training"]["epochs"] for c, r in zip(conv, res) if r["training"]["epochs"]]
            ),
            "test_bleu": _mean_std([(r.get("test") or {}).get("bleu") for r in res]),
            "trainable_parameters": res[0]["parameters"]["trainable"],
            "total_parameters": res[0]["parameters"]["total"],
            "runs": sorted(
                os.path.join(config.output_dir, c.name) for c in runs if (c.model, c.updatable) == (model, n)
            ),
        }
    for row in summary.values():
        regular = summary.get(f"regular/N{row['updatable_layers']}")
        if regular and not math.isnan(regular["time_to_max_seconds"][0]) and regular["time_to_max_seconds"][0] > 0:
            row["ratio_to_regular"] = row["time_to_max_seconds"][0] / regular["time_to_max_seconds"][0]
        else:
            row["ratio_to_regular"] = None
    lines = [
        "| model | updatable layers | reservoir layers | max valid BLEU | time to max (s) | ratio to regular "
        "(same updatable layers) | AUCC (BLEU, /T̂) | time per epoch (s) | trainable (total) parameters | "
        "test BLEU at best checkpoint | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        ratio = "n/a" if row["ratio_to_regular"] is None else f"{row['ratio_to_regular']:.2f}"
        lines.append(
            f"| {row['model']} | {row['updatable_layers']} | {row['reservoir_layers']} | "
            f"{_fmt(row['max_valid_bleu'])} | {_fmt(row['time_to_max_seconds'], 0)} | {ratio} | "
            f"{_fmt(row['aucc_normalized'])} | "
            f"{_fmt(row['seconds_per_epoch'], 0)} | {row['trainable_parameters']:,} ({row['total_parameters']:,}) | "
            f"{_fmt(row['test_bleu'])} | {row['seeds']} |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(report_dir, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(report_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    curves = {
        f"{cell.model} N={cell.updatable}": run["convergence"]["evaluations"]
        for cell, run in sorted(runs.items(), key=lambda item: (item[0].updatable, item[0].model))
        if cell.seed == min(c.seed for c in runs if (c.model, c.updatable) == (cell.model, cell.updatable))
    }
    plot_curves(curves, os.path.join(report_dir, "bleu_vs_time.png"), budget_seconds=config.budget_seconds)
    _plot_aucc(summary, os.path.join(report_dir, "aucc_vs_layers.png"))
    return table


def _plot_aucc(summary: dict, path: str) -> None:
    from .convergence import line_plot

    with line_plot(path, "updatable encoder layers (N)", "AUCC / T̂ (BLEU)") as axis:
        for model in sorted({row["model"] for row in summary.values()}):
            rows = sorted((r for r in summary.values() if r["model"] == model), key=lambda r: r["updatable_layers"])
            axis.errorbar(
                [r["updatable_layers"] for r in rows],
                [r["aucc_normalized"][0] for r in rows],
                yerr=[r["aucc_normalized"][1] for r in rows],
                marker="o",
                capsize=3,
                label=model,
            )
