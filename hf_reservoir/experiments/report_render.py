"""The sweep report's tables and plots, rendered from the aggregate ([`report_aggregate.summarise`])."""

from __future__ import annotations

import json
import math
import os

from ..utils.intervals import (
    INTERVAL,
    PLUS_MINUS,
    describe_interval,
    describe_sign,
    ratio_words,
)
from .report_aggregate import FIXED_TARGET, _pm, backskip_comparison, backskip_table, load_runs, summarise
from .sweep import Cell, SweepConfig, cells, reference_model


def markdown_tables(summary: dict, targets: dict, reference: str, sharing: str = "lanes") -> str:
    """Table 1 (with steps and seconds per step), time to targets, and the paired comparison."""
    lines = [
        f"Per model and N, mean ± sd over its seeds ({PLUS_MINUS}).",
        "",
        "| model | updatable layers | reservoir layers | encoder | max valid BLEU | time to max (s) | ratio to "
        f"{reference} (paired) | steps to max | s/step | AUCC (BLEU, /T̂) | time per epoch (s) | trainable (total) "
        "parameters | test BLEU at best checkpoint | stopped by | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        ratio = row["time_to_peak_ratio_to_reference"]
        ratio = "n/a" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}"
        if row["reference"] != reference and ratio != "n/a":
            ratio += f" (vs {row['reference']})"
        lines.append(
            f"| {row['model']} | {row['updatable_layers']} | {row['reservoir_layers']} | {row['encoder_layout']} | "
            f"{_pm(row['peak_bleu'])} | {_pm(row['time_to_peak_seconds'], 0)} | {ratio} | "
            f"{_pm(row['steps_to_peak'], 0)} | {_pm(row['seconds_per_step'], 3)} | {_pm(row['aucc_normalized'])} | "
            f"{_pm(row['seconds_per_epoch'], 0)} | {row['trainable_parameters']:,} ({row['total_parameters']:,}) | "
            f"{_pm(row['test_bleu'])} | {', '.join(row['stopped_by'])} | {row['seeds']} |"
        )
    tables = lines + _target_tables(summary, targets, reference) + _paired_table(summary, reference, sharing)
    return "\n".join(tables + _interval_table(summary, reference)) + "\n"


def _interval_table(summary: dict, reference: str) -> list[str]:
    """Per model and measure: the paired ratio's mean, 95% interval and sign test, and words that match them."""
    lines = [
        "",
        f"How sure: each paired time ratio (model / {reference}, same N and seed) over its seeds. {INTERVAL}. "
        "Seeds faster: seeds whose ratio is below 1, with the one-sided sign-test p of the larger side. "
        "Reads as: faster or slower only where the interval excludes 1.",
        "",
        "| model | N | measure | seeds | ratio (mean) | 95% interval | seeds faster (sign test) | reads as |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        for measure, entry in (row.get("paired") or {}).get("ratio_intervals", {}).items():
            if not entry["seeds"]:
                continue
            interval = entry["interval_95"]
            lines.append(
                f"| {row['model']} | {row['updatable_layers']} | {measure} | {entry['seeds']} | {entry['mean']:.2f} | "
                f"{describe_interval(interval)} | {describe_sign(entry['seeds_faster'], entry['seeds'])} | "
                f"{ratio_words(interval, entry['seeds'])} |"
            )
    return lines


def _target_names(target: dict, reference: str) -> str:
    """``50% = 7.10, 90% = 12.78 of regular's mean peak (14.20), and BLEU 24``: the fractions, then the fixed."""
    fixed = [name for name in target["targets"] if name.startswith(FIXED_TARGET)]
    fractions = [f"{name} = {value:.2f}" for name, value in target["targets"].items() if name not in fixed]
    text = f"{', '.join(fractions)} of {reference}'s mean peak ({target['reference_peak']:.2f})" if fractions else ""
    return text + (", and " if text and fixed else "") + ", ".join(fixed)


def _target_tables(summary: dict, targets: dict, reference: str) -> list[str]:
    """Per N: training seconds (steps) to each BLEU target, per model."""
    lines = []
    for n, target in targets.items():
        names = list(target["targets"])
        lines += [
            "",
            f"Time to quality at {n}: training seconds (steps) until validation BLEU first reaches "
            + _target_names(target, reference)
            + "; seeds that reached it.",
            "",
            "| model | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for row in summary.values():
            if f"N{row['updatable_layers']}" != n:
                continue
            cells_ = [
                f"{_pm(hit['seconds'], 0)} s ({_pm(hit['steps'], 0)}) [{hit['reached']}]"
                if not math.isnan(hit["seconds"][0])
                else f"not reached [{hit['reached']}]"
                for hit in row["to_target"].values()
            ]
            lines.append(f"| {row['model']} | " + " | ".join(cells_) + " |")
    return lines


def _paired_table(summary: dict, reference: str, sharing: str = "lanes") -> list[str]:
    """Same-seed ratios and differences with the reference model, and whether each pair shared a lane."""
    # Turn-taking lanes keep the sentence their committed reports were built with; concurrent runs say what they did.
    shared = (
        "trained at the same time in one concurrent lane (clocks started together)"
        if sharing == "concurrent"
        else "took turns in one lane over the same hours"
    )
    lines = [
        "",
        f"Paired with {reference} (same N and seed): model / {reference} and model - {reference}, mean ± sd over "
        f"seeds ({PLUS_MINUS}). Paired in one lane: seeds whose two runs {shared}, read from the "
        "runs' recorded lane history (a ratio of unpaired runs also measures the machine's drift).",
        "",
        "| model | N | seeds | paired in one lane | time to max, ratio | time to max, difference (s) | seeds faster "
        "to max | s/step, ratio | steps to max, difference | max BLEU, difference | time to each target, ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        p = row.get("paired")
        if p:
            against = "" if row["reference"] == reference else f" (vs {row['reference']}, its lane's copy)"
            lines.append(
                f"| {row['model']}{against} | {row['updatable_layers']} | {p['seeds']} | {p['paired_in_lane']} | "
                f"{_pm(p['time_to_peak_ratio'])} | "
                f"{_pm(p['time_to_peak_difference_seconds'], 0)} | {p['seeds_faster_to_peak']} | "
                f"{_pm(p['seconds_per_step_ratio'], 3)} | {_pm(p['steps_to_peak_difference'], 0)} | "
                f"{_pm(p['peak_bleu_difference'])} | "
                + "; ".join(f"{name}: {_pm(value)}" for name, value in p["time_to_target_ratio"].items())
                + " |"
            )
    return lines


def check_report_dir(config: SweepConfig, report_dir: str) -> None:
    """Refuse a folder that holds another sweep's report: its ``summary.json`` lists runs that are not among this
    sweep's cells (two sweep configs in one folder would otherwise overwrite each other's table and plots). A
    report of this sweep's own cells, or of some of them, is rebuilt in place."""
    try:
        with open(os.path.join(report_dir, "summary.json"), encoding="utf-8") as handle:
            existing = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return
    ours = {os.path.normpath(os.path.join(config.record_dir, cell.name)) for cell in cells(config)}
    rows = existing.get("rows", {}) if isinstance(existing, dict) else {}
    theirs = [run for row in rows.values() for run in row.get("runs", []) if os.path.normpath(run) not in ours]
    if theirs:
        raise ValueError(
            f"{report_dir} holds the report of another sweep (its runs include {theirs[0]}, which is not a cell of "
            f"this one); writing here would overwrite it. Set report_dir in the sweep's config or pass "
            "--report_dir; if it is this sweep's own older report (before cells were removed), delete its "
            "summary.json."
        )


def build_report(config: SweepConfig, report_dir: str) -> str:
    """Write ``table.md``, ``summary.json`` and the plots; returns the tables."""
    check_report_dir(config, report_dir)
    runs = load_runs(config)
    if not runs:
        raise ValueError(f"No finished runs under {config.record_dir}; run the sweep first.")
    os.makedirs(report_dir, exist_ok=True)
    summary, targets = summarise(config, runs)
    table = markdown_tables(summary, targets, reference_model(config), config.sharing)
    backskip = backskip_comparison(config, runs)
    if backskip:  # a grid without backskipping keeps its report as it was
        table += "\n".join(backskip_table(backskip)) + "\n"
    resumed = resumed_runs(runs)
    if resumed:  # a grid whose runs never resumed keeps its report as it was
        table += "\n".join(resumed_table(resumed)) + "\n"
    with open(os.path.join(report_dir, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(report_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(
            {
                "rows": summary,
                "targets": targets,
                **({"backskip": backskip} if backskip else {}),
                **({"resumed": resumed} if resumed else {}),
            },
            handle,
            indent=2,
        )
    for axis, name in (("seconds", "time"), ("steps", "steps")):
        plot_mean_curves(config, runs, os.path.join(report_dir, f"bleu_vs_{name}.png"), axis)
    _plot_aucc(summary, os.path.join(report_dir, "aucc_vs_layers.png"))
    _plot_paired_ratios(summary, os.path.join(report_dir, "paired_ratio_vs_layers.png"), reference_model(config))
    return table


def resumed_runs(runs: dict[Cell, dict]) -> dict[str, list[dict]]:
    """The runs that trained in more than one process (a resume after an interruption): for each, where every
    later process took over (its step and clock, the UTC time and the lane it resumed in)."""
    import time

    resumed = {}
    for cell, run in sorted(runs.items(), key=lambda item: item[0].name):
        history = run["results"].get("history") or []
        if len(history) > 1:
            resumed[cell.name] = [
                {
                    "from_step": part["from_step"],
                    "clock_seconds": round(part["clock"], 1),
                    "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(part["started"])),
                    "lane": os.path.basename(part.get("lane") or "") or None,
                }
                for part in history[1:]
            ]
    return resumed


def resumed_table(resumed: dict[str, list[dict]]) -> list[str]:
    lines = [
        "",
        "Resumed runs: a run cut short (e.g. by the machine's end) resumed from its last checkpoint, in its lane; "
        "the steps after that checkpoint were trained again and their time is off the clock.",
        "",
        "| run | resumed at step (training s), UTC, lane |",
        "|---|---|",
    ]
    for name, parts in resumed.items():
        where = "; ".join(
            f"{p['from_step']} ({p['clock_seconds']:.0f} s), {p['utc']}, {p['lane'] or 'no lane'}" for p in parts
        )
        lines.append(f"| {name} | {where} |")
    return lines


def mean_curve(curves: list[list[tuple[float, float]]], grid: list[float]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation over runs of BLEU on ``grid``: each curve starts at (0, 0), is joined
    linearly between evaluations and holds its last value after it stopped."""
    import numpy as np

    values = np.array([np.interp(grid, [0.0, *(x for x, _ in c)], [0.0, *(y for _, y in c)]) for c in curves])
    return values.mean(axis=0).tolist(), values.std(axis=0, ddof=1 if len(curves) > 1 else 0).tolist()


def plot_mean_curves(config: SweepConfig, runs: dict[Cell, dict], path: str, axis_name: str) -> None:
    """Mean validation BLEU over seeds with a ±1 std band, one panel per N, one y-range for all panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key, scale = ("train_seconds", 60.0) if axis_name == "seconds" else ("step", 1.0)
    ns = sorted({cell.updatable for cell in runs})
    figure, axes = plt.subplots(1, len(ns), figsize=(6 * len(ns), 4), squeeze=False)
    top = max(e["bleu"] for run in runs.values() for e in run["convergence"]["evaluations"] or [{"bleu": 1.0}])
    for panel, n in zip(axes[0], ns):
        for model in config.models:
            curves = [
                [(e[key] / scale, e["bleu"]) for e in run["convergence"]["evaluations"]]
                for cell, run in runs.items()
                if cell.model == model and cell.updatable == n and run["convergence"]["evaluations"]
            ]
            if not curves:
                continue
            grid = np.linspace(0.0, max(c[-1][0] for c in curves), 200)
            mean, std = mean_curve(curves, grid)
            line = panel.plot(grid, mean, label=f"{model} ({len(curves)} seeds)")[0]
            panel.fill_between(grid, np.subtract(mean, std), np.add(mean, std), color=line.get_color(), alpha=0.2)
        panel.set_title(f"N = {n} updatable encoder layers")
        panel.set_xlabel("training wall-clock (minutes)" if axis_name == "seconds" else "training steps")
        panel.set_ylabel("validation BLEU (mean ± std over seeds)")
        panel.set_ylim(0, top * 1.05 + 0.5)
        panel.grid(alpha=0.3)
        panel.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_aucc(summary: dict, path: str) -> None:
    from ..trainer.convergence import line_plot

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
        axis.set_xticks(sorted({row["updatable_layers"] for row in summary.values()}))  # N is a count: no 2.25


def _plot_paired_ratios(summary: dict, path: str, reference: str) -> None:
    """The paired ratio to the reference of time to peak and time to the highest target, against N, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in summary.values() if row.get("paired")]
    if not rows:
        return
    targets = list(rows[0]["paired"]["time_to_target_ratio"])
    keys = [("time_to_peak_ratio", "time to peak")]
    keys += [(targets[-1], f"time to {targets[-1]} of {reference}'s peak")] if targets else []
    figure, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    for panel, (key, title) in zip(axes[0], keys):
        for model in sorted({row["model"] for row in rows}):
            points = sorted((r for r in rows if r["model"] == model), key=lambda r: r["updatable_layers"])
            values = [r["paired"].get(key) or r["paired"]["time_to_target_ratio"].get(key) for r in points]
            panel.errorbar(
                [r["updatable_layers"] for r in points],
                [v[0] if v else float("nan") for v in values],
                yerr=[v[1] if v else float("nan") for v in values],
                marker="o",
                capsize=3,
                label=model,
            )
        panel.axhline(1.0, color="gray", linewidth=1, linestyle="--")
        panel.set_xticks(sorted({row["updatable_layers"] for row in rows}))  # N is a count: no 2.25
        panel.set_title(f"{title}: model / {reference} (paired by seed)")
        panel.set_xlabel("updatable encoder layers (N)")
        panel.set_ylabel("ratio (mean ± std over seeds; < 1: faster)")
        panel.grid(alpha=0.3)
        panel.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
