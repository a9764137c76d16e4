"""The report of a sweep (Table 1 and more), built from the run folders' files alone.

For every model and N, over seeds (mean ± standard deviation):

* the paper's Table 1: peak validation BLEU, training seconds to it (under patience: ``stopped_by``),
  the ratio to the reference model (regular N), AUCC, seconds per epoch, parameters, test BLEU;
* what separates speed from learning: steps to the peak and seconds per step (time = steps x s/step);
* time to quality (MLPerf): training seconds and steps until the curve first reaches fixed BLEU targets,
  fractions of the reference model's mean peak at that N (``target_fractions``) and fixed values
  (``target_bleu``, named "BLEU <value>");
* for each model, the **paired** comparison with the reference over the seeds both have (same seed and
  N): the ratio and difference of time to peak, the ratio of seconds per step, the difference in steps
  to peak, how many seeds favour the model, and the ratio of time to each target (over the seeds where
  both reached it).

AUCC integrates every run of one N up to the same T̂ (``aucc_seconds``, else ``budget_seconds``, else the
shortest run of that N), holding a stopped run's last value.
"""

from __future__ import annotations

import math
import os
import statistics

from ..evaluation.metrics import format_value
from ..trainer.convergence import aucc, time_to_target
from ..utils.intervals import (
    PLUS_MINUS,
    describe_interval,
    sign_test,
    t_interval,
)
from ..utils.run_folder import CONVERGENCE_FILE, RESULTS_FILE, read_run_file
from .sweep import Cell, SweepConfig, cells, lane_reference, reference_model, split_model

# How a fixed BLEU target (``target_bleu``) is named in the report, beside the fractions ("50%").
FIXED_TARGET = "BLEU "


def _mean_std(values: list) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(pair: tuple[float, float], digits: int = 2) -> str:
    """``mean ± std`` over seeds."""
    mean, std = pair
    return "n/a" if math.isnan(mean) else f"{format_value(mean, digits)} ± {format_value(std, digits)}"


def load_runs(config: SweepConfig) -> dict[Cell, dict]:
    """Every finished run: ``{cell: {"results": ..., "convergence": ...}}``."""
    runs = {}
    for cell in cells(config):
        run_dir = os.path.join(config.record_dir, cell.name)
        try:
            results, convergence = read_run_file(run_dir, RESULTS_FILE), read_run_file(run_dir, CONVERGENCE_FILE)
        except FileNotFoundError:
            continue
        runs[cell] = {"results": results, "convergence": convergence}
    return runs


def run_measures(run: dict, targets: dict[str, float], horizon: float) -> dict:
    """One run's figures: the clock's summary plus AUCC up to ``horizon`` and time/steps to ``targets``."""
    summary, evaluations = run["convergence"]["summary"], run["convergence"]["evaluations"]
    curve = [(e["train_seconds"], e["bleu"]) for e in evaluations]
    return {
        "peak_bleu": summary["peak_bleu"],
        "time_to_peak_seconds": summary["time_to_peak_seconds"],
        "steps_to_peak": summary["step_at_peak"],
        "seconds_per_step": summary.get("seconds_per_step"),  # None in runs from before it was recorded
        "seconds_per_epoch": summary["seconds_per_epoch"],
        "train_seconds": summary["train_seconds"],
        "aucc_normalized": aucc(curve, horizon) / horizon if curve else 0.0,
        "stopped_by": summary["stopped_by"],
        "test_bleu": (run["results"].get("test") or {}).get("bleu"),
        "to_target": {name: time_to_target(evaluations, value) for name, value in targets.items()},
    }


def _group_row(config: SweepConfig, model: str, n: int, members: dict[int, dict], runs: dict) -> dict:
    base, _ = split_model(model)
    first = next(iter(members.values()))
    results = runs[first["cell"]]["results"]
    row = {
        "model": model,
        "updatable_layers": n,
        "reservoir_layers": 0 if base in ("regular", "regular_deep", "layerdrop") else config.reservoir_layers,
        "encoder_layout": results.get("encoder_layout"),
        "seeds": len(members),
        "stopped_by": sorted({m["stopped_by"] or "unknown" for m in members.values()}),
        "trainable_parameters": results["parameters"]["trainable"],
        "total_parameters": results["parameters"]["total"],
        "runs": sorted(os.path.join(config.record_dir, m["cell"].name) for m in members.values()),
    }
    # The run's names (convergence.json's summary), averaged over seeds: one name from the run files to the table.
    for key in (
        "peak_bleu",
        "time_to_peak_seconds",
        "steps_to_peak",
        "seconds_per_step",
        "seconds_per_epoch",
        "aucc_normalized",
        "test_bleu",
    ):
        row[key] = _mean_std([m[key] for m in members.values()])
    row["to_target"] = {}
    for target in next(iter(members.values()))["to_target"]:
        hits = [m["to_target"][target] for m in members.values()]
        reached = [hit for hit in hits if hit]
        row["to_target"][target] = {
            "seconds": _mean_std([hit["train_seconds"] for hit in reached]),
            "steps": _mean_std([hit["step"] for hit in reached]),
            "reached": f"{len(reached)}/{len(hits)}",
        }
    return row


def _lane_intervals(results: dict) -> list[tuple[str, float, float]] | None:
    """``[(lane, start, end)]`` of a run's training processes (``results.json`` ``history``), or None without a
    complete history (runs from before it was recorded, or a process outside a lane). An interrupted process ends,
    at the latest, where the next one started."""
    history = results.get("history")
    if not history or any("lane" not in part for part in history):
        return None
    intervals = []
    for index, part in enumerate(history):
        end = part["ended"]
        if end is None and index + 1 < len(history):
            end = history[index + 1]["started"]
        if end is None:
            return None
        intervals.append((part["lane"], part["started"], end))
    return intervals


def pairing(results: dict, reference: dict) -> str:
    """How two runs of one seed were paired in time, from what they recorded (not from the sweep's intent).

    ``lane``: both trained in the same lane, taking turns, over the same hours: their intervals in a shared lane
    overlap for at least half of the shorter run's time (one arm may go on alone after the other stopped).
    ``lane name``: both name the same lane, but a history is missing (runs from before it was recorded), so the
    overlap cannot be checked. ``unpaired``: anything else, e.g. runs one after another, or in different lanes.
    """
    ours, theirs = _lane_intervals(results), _lane_intervals(reference)
    if ours is None or theirs is None:
        lane = (results.get("sharing") or {}).get("lane")
        return "lane name" if lane and lane == (reference.get("sharing") or {}).get("lane") else "unpaired"
    overlap = sum(
        max(0.0, min(a_end, b_end) - max(a_start, b_start))
        for a_lane, a_start, a_end in ours
        for b_lane, b_start, b_end in theirs
        if a_lane == b_lane
    )
    shorter = min(sum(end - start for _, start, end in ours), sum(end - start for _, start, end in theirs))
    return "lane" if shorter > 0 and overlap >= 0.5 * shorter else "unpaired"


def _pairing_text(pairings: dict[int, str]) -> str:
    """``3/3``, or which seeds were not checked or not paired."""
    text = f"{sum(p == 'lane' for p in pairings.values())}/{len(pairings)}"
    for kind, label in (("lane name", "same lane, no history"), ("unpaired", "unpaired")):
        seeds = [str(seed) for seed, p in pairings.items() if p == kind]
        if seeds:
            text += f"; seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}: {label}"
    return text


def _paired(members: dict[int, dict], reference: dict[int, dict], runs: dict) -> dict:
    """Same-seed comparisons with the reference model: ratios and differences, and seeds that favour the model."""
    seeds = sorted(set(members) & set(reference))
    pairs = [(members[s], reference[s]) for s in seeds]

    def ratio(a, b):
        return a / b if a is not None and b else None

    faster = [m["time_to_peak_seconds"] < r["time_to_peak_seconds"] for m, r in pairs]
    target_ratios = {  # seeds where both reached the target; a target one of them missed is not a ratio
        target: [
            ratio(m["to_target"][target]["train_seconds"], r["to_target"][target]["train_seconds"])
            for m, r in pairs
            if m["to_target"][target] and r["to_target"][target]
        ]
        for target in (pairs[0][0]["to_target"] if pairs else {})
    }
    to_target = {target: _mean_std(values) for target, values in target_ratios.items()}
    peak_ratios = [ratio(m["time_to_peak_seconds"], r["time_to_peak_seconds"]) for m, r in pairs]
    intervals = {"time to max": _interval_entry(peak_ratios)}
    intervals.update({f"time to {target}": _interval_entry(values) for target, values in target_ratios.items()})
    pairings = {
        seed: pairing(runs[members[seed]["cell"]]["results"], runs[reference[seed]["cell"]]["results"])
        for seed in seeds
    }
    return {
        "seeds": len(seeds),
        "paired_in_lane": _pairing_text(pairings),
        "time_to_peak_ratio": _mean_std(
            [ratio(m["time_to_peak_seconds"], r["time_to_peak_seconds"]) for m, r in pairs]
        ),
        "time_to_peak_difference_seconds": _mean_std(
            [m["time_to_peak_seconds"] - r["time_to_peak_seconds"] for m, r in pairs]
        ),
        "seconds_per_step_ratio": _mean_std([ratio(m["seconds_per_step"], r["seconds_per_step"]) for m, r in pairs]),
        "steps_to_peak_difference": _mean_std([m["steps_to_peak"] - r["steps_to_peak"] for m, r in pairs]),
        "peak_bleu_difference": _mean_std([m["peak_bleu"] - r["peak_bleu"] for m, r in pairs]),
        "seeds_faster_to_peak": f"{sum(faster)}/{len(pairs)}",
        "time_to_target_ratio": to_target,
        "ratio_intervals": intervals,
    }


def _interval_entry(ratios: list) -> dict:
    """One paired time ratio over seeds: n, mean, its 95% t interval, seeds below 1 and the sign test's p."""
    values = [v for v in ratios if v is not None]
    faster = sum(v < 1 for v in values)
    return {
        "seeds": len(values),
        "mean": statistics.fmean(values) if values else None,
        "interval_95": t_interval(values),
        "seeds_faster": faster,
        "sign_test_p": sign_test(faster, len(values)),
    }


def summarise(config: SweepConfig, runs: dict[Cell, dict]) -> tuple[dict, dict]:
    """``(summary, targets)``: one row per model and N (``"model/N"``), and the BLEU targets per N."""
    reference = reference_model(config)
    summary, all_targets = {}, {}
    for n in config.updatable_layers:
        at_n = {cell: run for cell, run in runs.items() if cell.updatable == n}
        if not at_n:
            continue
        horizon = config.aucc_seconds or config.budget_seconds
        horizon = horizon or min(run["convergence"]["summary"]["train_seconds"] for run in at_n.values())
        peaks = [run["convergence"]["summary"]["peak_bleu"] for c, run in at_n.items() if c.model == reference]
        mean_peak = statistics.fmean(peaks) if peaks else float("nan")
        targets = {f"{f:.0%}": f * mean_peak for f in config.target_fractions} if peaks else {}
        targets.update({f"{FIXED_TARGET}{value:g}": float(value) for value in config.target_bleu})
        all_targets[f"N{n}"] = {"reference_peak": mean_peak, "targets": targets, "aucc_seconds": horizon}
        measured: dict[str, dict[int, dict]] = {}
        for cell, run in at_n.items():
            measured.setdefault(cell.model, {})[cell.seed] = {**run_measures(run, targets, horizon), "cell": cell}
        for model in config.models:
            if model not in measured:
                continue
            row = _group_row(config, model, n, measured[model], runs)
            # The model every ratio of this row is taken against (not always regular; in a lane without the
            # reference model, its copy there).
            own_reference = lane_reference(config, model)
            row["reference"] = own_reference
            if model != own_reference and own_reference in measured:
                row["paired"] = _paired(measured[model], measured[own_reference], runs)
                row["time_to_peak_ratio_to_reference"] = row["paired"]["time_to_peak_ratio"][0]
            else:
                row["time_to_peak_ratio_to_reference"] = 1.0 if model == own_reference else None
            summary[f"{model}/N{n}"] = row
    return summary, all_targets


def backskip_comparison(config: SweepConfig, runs: dict[Cell, dict]) -> dict:
    """Each backskipping model beside its exact twin (the same reservoirs, every backward computed), same N and
    seed: the step-cost ratio, steps to the peak, and whether the skipped steps still learned: BLEU minus the
    twin's at the evaluation steps both have after the backskip warm-up (where skipping starts), and the BLEU
    each gained over those steps. Empty without backskipping models."""
    comparison = {}
    for model in config.models:
        base, backskip = split_model(model)
        if backskip is None:
            continue
        for n in config.updatable_layers:
            own = {c.seed: run for c, run in runs.items() if c.model == model and c.updatable == n}
            twin = {c.seed: run for c, run in runs.items() if c.model == base and c.updatable == n}
            seeds = sorted(set(own) & set(twin))
            if not seeds:
                continue
            # The backskip warm-up: from the run's record; runs from before it was recorded ran the sweep's setting.
            warmup = {**config.train_overrides, **config.model_overrides.get(model, {})}.get("backskip_warmup_steps")
            if warmup is None:
                from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig

                warmup = ReservoirMarianConfig().backskip_warmup_steps
            # Each twin's ratios also go through its own lane's reference copy (see _backskip_seed).
            references = (lane_reference(config, model), lane_reference(config, base))
            per_seed = [
                _backskip_seed(own[s], twin[s], warmup, *(runs.get(Cell(r, n, s)) for r in references)) for s in seeds
            ]
            pairings = {s: pairing(own[s]["results"], twin[s]["results"]) for s in seeds}
            comparison[f"{model}/N{n}"] = {
                "model": model,
                "exact_model": base,
                "updatable_layers": n,
                "seeds": len(seeds),
                "paired_in_lane": _pairing_text(pairings),
                "lane_references": list(references),
                **{key: _mean_std([p[key] for p in per_seed]) for key in per_seed[0]},
                "skipped_range": _range([p["skipped_fraction"] for p in per_seed]),
                "skipped_after_warmup_range": _range([p["skipped_after_warmup_fraction"] for p in per_seed]),
                "seconds_per_step_ratio_through_lanes_interval_95": t_interval(
                    [p["seconds_per_step_ratio_through_lanes"] for p in per_seed]
                ),
            }
    return comparison


def _backskip_seed(own: dict, twin: dict, warmup: int, own_reference: dict | None, twin_reference: dict | None):
    """One seed's figures. The twins may sit in different lanes (the series: lane b holds the backskipping models,
    lane a the exact ones), and then their direct s/step ratio also measures how the two lanes' cores differed.
    Each twin's ratio to its own lane's reference copy is paired; their quotient is the step-cost ratio with the
    lanes' difference divided out (the direct ratio when both share a lane)."""
    record = own["results"].get("backskip") or {}
    skipped, exact = record.get("skipped"), record.get("exact")
    warmup = record.get("warmup_steps", warmup)
    curves = [{e["step"]: e["bleu"] for e in run["convergence"]["evaluations"]} for run in (own, twin)]
    common = sorted(step for step in set(curves[0]) & set(curves[1]) if step > warmup)
    mine, theirs = own["convergence"]["summary"], twin["convergence"]["summary"]
    step_costs = [  # None in runs from before it was recorded, or without a lane reference
        run["convergence"]["summary"].get("seconds_per_step") if run else None
        for run in (own, twin, own_reference, twin_reference)
    ]
    direct = step_costs[0] / step_costs[1] if all(step_costs[:2]) else None
    return {
        "skipped_fraction": skipped / (skipped + exact) if skipped is not None and skipped + exact else None,
        # After the warm-up, where skipping is allowed: every reservoir forward of the warm-up's steps was exact (one
        # forward per reservoir per step: the series trains without gradient accumulation).
        "skipped_after_warmup_fraction": _after_warmup(
            skipped, exact, warmup * own["results"]["encoder_layout"].count("R")
        ),
        "seconds_per_step_ratio": direct,
        "steps_to_peak": mine["step_at_peak"],
        "exact_steps_to_peak": theirs["step_at_peak"],
        "peak_bleu_difference": mine["peak_bleu"] - theirs["peak_bleu"],
        "bleu_difference_at_equal_steps": (
            statistics.fmean(curves[0][s] - curves[1][s] for s in common) if common else None
        ),
        "bleu_gain_after_warmup": curves[0][common[-1]] - curves[0][common[0]] if len(common) > 1 else None,
        "exact_bleu_gain_after_warmup": curves[1][common[-1]] - curves[1][common[0]] if len(common) > 1 else None,
        "seconds_per_step_ratio_through_lanes": (
            (step_costs[0] / step_costs[2]) / (step_costs[1] / step_costs[3]) if all(step_costs) else None
        ),
    }


def _range(values: list) -> list[float] | None:
    values = [v for v in values if v is not None]
    return [min(values), max(values)] if values else None


def _after_warmup(skipped: int | None, exact: int | None, warmup_forwards: int) -> float | None:
    if skipped is None or exact is None or skipped + exact - warmup_forwards <= 0:
        return None
    return skipped / (skipped + exact - warmup_forwards)


def backskip_table(comparison: dict) -> list[str]:
    if not comparison:
        return []
    lines = [
        "",
        "Backskipping beside its exact twin (the same reservoirs with every backward computed), same N and seed, "
        f"mean ± sd over seeds ({PLUS_MINUS}). Skipped: the share of the reservoirs' training forwards whose "
        "backward was skipped, over the whole run and after the backskip warm-up (when skipping is allowed), with "
        "the seeds' range. s/step ratio through each lane's reference: with its 95% interval over seeds "
        "(Student's t). "
        "Learned while skipping: BLEU minus the twin's at the evaluations both have after the backskip warm-up, and "
        "the BLEU each gained from the first to the last of those evaluations. Paired in one lane: seeds whose "
        "two runs took turns in one lane, from the runs' recorded lane history; an unpaired s/step ratio also "
        "measures how the lanes' cores differed, and the column after it divides that out: each model's s/step "
        "ratio to its own lane's reference copy (paired), the model's over the exact twin's.",
        "",
        "| model | N | seeds | paired in one lane | skipped, whole run [range] | skipped after warm-up [range] | "
        "s/step, ratio to exact | s/step ratio to exact, "
        "through each lane's reference | steps to max (exact) | max BLEU, difference | "
        "BLEU difference at equal steps | BLEU gained after warm-up (exact) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.values():
        through = _pm(row["seconds_per_step_ratio_through_lanes"], 3)
        if through != "n/a" and row["seconds_per_step_ratio_through_lanes_interval_95"]:
            through += f" {describe_interval(row['seconds_per_step_ratio_through_lanes_interval_95'], 3)}"
        if through != "n/a" and row["lane_references"][0] != row["lane_references"][1]:
            through += f" (via {' / '.join(row['lane_references'])})"
        skipped = [
            f"{_pm(row[key])} {describe_interval(row[span])}" if row[span] else _pm(row[key])
            for key, span in (
                ("skipped_fraction", "skipped_range"),
                ("skipped_after_warmup_fraction", "skipped_after_warmup_range"),
            )
        ]
        lines.append(
            f"| {row['model']} | {row['updatable_layers']} | {row['seeds']} | {row['paired_in_lane']} | "
            f"{skipped[0]} | {skipped[1]} | {_pm(row['seconds_per_step_ratio'], 3)} | {through} | "
            f"{_pm(row['steps_to_peak'], 0)} "
            f"({_pm(row['exact_steps_to_peak'], 0)}) | {_pm(row['peak_bleu_difference'])} | "
            f"{_pm(row['bleu_difference_at_equal_steps'])} | {_pm(row['bleu_gain_after_warmup'])} "
            f"({_pm(row['exact_bleu_gain_after_warmup'])}) |"
        )
    return lines
