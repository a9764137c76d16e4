"""Slow starts: how often a recipe lets a run learn much more slowly than its siblings from the start.

A paired ratio over a few seeds measures the model only if no arm draws a slow start: a recipe can let a seed decide
whether a run learns slowly from its first steps (``results/slow_start_cpu/`` has a measured case). This module
counts them from the run folders of a sweep that trains the first steps of many seeds under each recipe.

**Definition** (configurable): a run *starts slowly* when its validation BLEU at ``step`` (default 800) is below
``fraction`` (default 0.5) of the median BLEU at that step of its group, the runs of the same recipe, N and model
(the seeds). The median of the same model, not of every model, so that a model that is slower for every seed is not
counted as a slow start: the question is whether the seed decides how fast a run starts.

``hf-reservoir slow-starts CONFIG.yaml`` writes ``slow_starts.md`` and ``slow_starts.json`` next to the config::

    step: 800
    fraction: 0.5
    models: [regular, transformer, ffn]
    recipes:                     # name: the folders that hold its runs (<model>-N<n>-seed<s>)
      lr5e-3: [results/slow_start_cpu/lr5e-3/runs, results/convergence_cpu/runs]
      lr3e-3: [results/slow_start_cpu/lr3e-3/runs]
    compare: lr2e-3              # also each recipe against this one per model (a learning-rate check)

With ``compare``, the same runs answer the learning-rate check of a series (results/series_cpu): per N and model,
each recipe's mean BLEU at the shown steps over the seeds it shares with the reference recipe, beside the
reference's mean on the same seeds (so that a rate is never judged on a seed the other did not draw), and the
better recipe at ``step``: the model's better rate, compared by steps (machine speed plays no part).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import dataclass, field

from ..utils.config_keys import dataclass_from_yaml
from ..utils.intervals import describe_interval, rate_interval
from ..utils.run_folder import CONVERGENCE_FILE, read_run_file

RUN_NAME = re.compile(r"^(?P<model>.+)-N(?P<n>\d+)-seed(?P<seed>\d+)$")


@dataclass
class SlowStartConfig:
    recipes: dict[str, list[str]]
    models: list[str] = field(default_factory=lambda: ["regular", "transformer", "ffn"])
    step: int = 800
    fraction: float = 0.5
    # Steps whose BLEU the table shows beside the verdict.
    shown_steps: list[int] = field(default_factory=lambda: [400, 800, 1000])
    # A recipe's name: also compare every recipe with it per N and model (the learning-rate check of a series).
    compare: str | None = None
    # Only these N (updatable layers); None: every N found.
    updatable_layers: list[int] | None = None

    def __post_init__(self):
        if not self.recipes or not all(isinstance(v, list) and v for v in self.recipes.values()):
            raise ValueError(f"recipes={self.recipes!r} must map each recipe's name to a list of run folders.")
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction={self.fraction} must lie between 0 and 1, e.g. 0.5.")
        if self.compare is not None and self.compare not in self.recipes:
            raise ValueError(f"compare={self.compare!r} is not one of the recipes {list(self.recipes)}; name one.")
        if self.step < 1:
            raise ValueError(f"step={self.step} must be a positive evaluation step, e.g. 800.")

    @classmethod
    def load(cls, path: str) -> SlowStartConfig:
        return dataclass_from_yaml(
            cls, path, "The keys are SlowStartConfig's fields (hf_reservoir/experiments/slow_start.py)."
        )


def bleu_at(evaluations: list[dict], step: int) -> float | None:
    """Validation BLEU of the evaluation at ``step``, or None if the run has none there."""
    return next((e["bleu"] for e in evaluations if e["step"] == step), None)


def load_recipe_runs(
    folders: list[str], models: list[str], layers: list[int] | None = None
) -> dict[tuple[int, str], dict[int, list[dict]]]:
    """``{(N, model): {seed: evaluations}}`` of the finished runs (``convergence.json`` written) in ``folders``.

    A seed found in two folders is an error: a recipe must not count one run twice.
    """
    runs: dict[tuple[int, str], dict[int, list[dict]]] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder of runs; check the recipe's folders in the config.")
        for name in sorted(os.listdir(folder)):
            match = RUN_NAME.match(name)
            run_dir = os.path.join(folder, name)
            finished = os.path.isfile(os.path.join(run_dir, CONVERGENCE_FILE))
            if not match or match["model"] not in models or not finished:
                continue
            if layers is not None and int(match["n"]) not in layers:
                continue
            evaluations = read_run_file(run_dir, CONVERGENCE_FILE)["evaluations"]
            group = runs.setdefault((int(match["n"]), match["model"]), {})
            seed = int(match["seed"])
            if seed in group:
                raise ValueError(f"{name} appears in two of the folders {folders}; list each run once.")
            group[seed] = evaluations
    return runs


def classify(config: SlowStartConfig) -> dict:
    """Per recipe, N and model: each seed's BLEU at the shown steps and whether it started slowly."""
    report = {"definition": {"step": config.step, "fraction": config.fraction}, "recipes": {}}
    for recipe, folders in config.recipes.items():
        groups = {}
        for (n, model), seeds in sorted(load_recipe_runs(folders, config.models, config.updatable_layers).items()):
            at_step = {seed: bleu_at(evaluations, config.step) for seed, evaluations in seeds.items()}
            measured = [value for value in at_step.values() if value is not None]
            median = statistics.median(measured) if measured else None
            groups[f"{model}/N{n}"] = {
                "model": model,
                "updatable_layers": n,
                "median_bleu_at_step": median,
                "seeds": {
                    seed: {
                        "bleu": {step: bleu_at(seeds[seed], step) for step in config.shown_steps},
                        # The comparison's measure (kept out of reports without one, which stay as built).
                        **({"bleu_at_step": value} if config.compare is not None else {}),
                        "slow": None if value is None else value < config.fraction * median,
                    }
                    for seed, value in sorted(at_step.items())
                },
            }
        report["recipes"][recipe] = groups
    return report


def compare_recipes(report: dict, config: SlowStartConfig) -> dict:
    """Per N and model: each recipe against the reference recipe (``compare``) on the seeds both ran, and the better.

    A recipe beats the reference when its mean BLEU at ``step`` over the seeds both ran is higher than the
    reference's over the same seeds; the better recipe is the one that beats it by most, else the reference. Pairs,
    not one intersection of all recipes, so that a rate run on one seed does not shrink every other comparison.
    """
    reference = config.compare
    rows = {}
    every = {name: group for groups in report["recipes"].values() for name, group in groups.items()}
    for name in sorted(every, key=lambda n: (every[n]["updatable_layers"], every[n]["model"])):
        held = {r: groups[name] for r, groups in report["recipes"].items() if name in groups}
        row = {"model": every[name]["model"], "updatable_layers": every[name]["updatable_layers"]}
        row.update(recipes={}, better=None)
        base = held.get(reference)
        base_seeds = _judged(base) if base is not None else set()
        if base is not None:
            row["recipes"][reference] = {"seeds": sorted(base_seeds), "mean_bleu": _means(base, base_seeds, config)}
        margins = {}
        for recipe, other in held.items():
            if recipe == reference:
                continue
            seeds = _judged(other) & base_seeds
            row["recipes"][recipe] = {"seeds": sorted(seeds), "mean_bleu": _means(other, seeds, config)}
            if seeds:
                row["recipes"][recipe]["reference_mean_bleu"] = _means(base, seeds, config)
                margins[recipe] = statistics.mean(
                    other["seeds"][s]["bleu_at_step"] - base["seeds"][s]["bleu_at_step"] for s in seeds
                )
                row["recipes"][recipe][f"difference_at_step_{config.step}"] = margins[recipe]
        if base is not None and margins:
            best = max(margins, key=margins.get)
            row["better"] = best if margins[best] > 0 else reference
        rows[name] = row
    return rows


def _judged(group: dict) -> set[int]:
    """The seeds of a group that reached the comparison's step."""
    return {seed for seed, s in group["seeds"].items() if s["slow"] is not None}


def _means(group: dict, seeds: set[int], config: SlowStartConfig) -> dict[int, float | None]:
    """Mean BLEU at each shown step over ``seeds`` (None where a seed has no evaluation there)."""
    return {
        step: statistics.mean(group["seeds"][s]["bleu"][step] for s in seeds)
        if seeds and all(group["seeds"][s]["bleu"][step] is not None for s in seeds)
        else None
        for step in config.shown_steps
    }


def markdown(report: dict, config: SlowStartConfig) -> str:
    step, fraction = config.step, config.fraction
    lines = [
        f"Slow starts: validation BLEU (greedy) at step {step} below {fraction:g} x the median of the same recipe, N "
        "and model. Per seed: BLEU at steps " + "/".join(str(s) for s in config.shown_steps) + ", a slow start "
        "marked **slow**; runs that have not reached the step are not counted.",
        "",
        "| recipe | N | model | runs | slow starts | median BLEU at step "
        f"{step} | seeds: BLEU at steps {'/'.join(str(s) for s in config.shown_steps)} |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = {}
    for recipe, groups in report["recipes"].items():
        for group in groups.values():
            judged = [s for s in group["seeds"].values() if s["slow"] is not None]
            slow = sum(s["slow"] for s in judged)
            total = totals.setdefault((recipe, group["updatable_layers"]), [0, 0])
            total[0], total[1] = total[0] + slow, total[1] + len(judged)
            seeds = "; ".join(
                f"{seed}: "
                + "/".join("-" if v is None else f"{v:.1f}" for v in s["bleu"].values())
                + (" **slow**" if s["slow"] else "")
                for seed, s in group["seeds"].items()
            )
            median = group["median_bleu_at_step"]
            lines.append(
                f"| {recipe} | {group['updatable_layers']} | {group['model']} | {len(judged)} | {slow} | "
                f"{'n/a' if median is None else f'{median:.2f}'} | {seeds} |"
            )
    lines += [
        "",
        "Per recipe and N: the share of runs that started slowly, with its 95% interval (Clopper-Pearson, exact).",
        "",
        "| recipe | N | runs | slow starts | slow-start rate [95% interval] |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {recipe} | {n} | {runs} | {slow} | "
        + (f"{slow / runs:.2f} {describe_interval(rate_interval(slow, runs))}" if runs else "n/a")
        + " |"
        for (recipe, n), (slow, runs) in totals.items()
    ]
    if config.compare is not None:
        lines += _comparison_table(report["comparison"], config, list(report["recipes"]))
    return "\n".join(lines) + "\n"


def _comparison_table(rows: dict, config: SlowStartConfig, recipes: list[str]) -> list[str]:
    reference = config.compare
    others = [r for r in recipes if r != reference]
    steps = "/".join(str(s) for s in config.shown_steps)

    def values(means):
        return "/".join("-" if v is None else f"{v:.1f}" for v in means.values())

    lines = [
        "",
        f"Recipes side by side: mean validation BLEU at steps {steps}; {reference} over its seeds, each other recipe "
        f"over the seeds both it and {reference} ran, beside {reference}'s mean on those seeds. Better: the recipe "
        f"that beats {reference} at step {config.step} by most on the shared seeds, else {reference}.",
        "",
        f"| N | model | {reference} (seeds) | "
        + " | ".join(f"{r} vs {reference} (shared seeds)" for r in others)
        + " | better |",
        "|---|---|---|" + "---|" * len(others) + "---|",
    ]
    for row in rows.values():
        base = row["recipes"].get(reference)
        cells = [f"{values(base['mean_bleu'])} ({_seeds(base['seeds'])})" if base else "not run"]
        for recipe in others:
            entry = row["recipes"].get(recipe)
            if entry is None:
                cells.append("not run")
            elif not entry["seeds"]:
                cells.append(f"no shared seed with {reference}")
            else:
                shared = values(entry["reference_mean_bleu"])
                cells.append(f"{values(entry['mean_bleu'])} vs {shared} ({_seeds(entry['seeds'])})")
        lines.append(
            f"| {row['updatable_layers']} | {row['model']} | " + " | ".join(cells) + f" | {row['better'] or 'n/a'} |"
        )
    return lines


def _seeds(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def build_slow_start_report(config_path: str, report_dir: str | None = None) -> str:
    """Write ``slow_starts.md`` and ``slow_starts.json`` (next to the config by default); return the table."""
    config = SlowStartConfig.load(config_path)
    report = classify(config)
    if config.compare is not None:
        report["comparison"] = compare_recipes(report, config)
    report_dir = report_dir or os.path.dirname(os.path.abspath(config_path))
    os.makedirs(report_dir, exist_ok=True)
    table = markdown(report, config)
    with open(os.path.join(report_dir, "slow_starts.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    with open(os.path.join(report_dir, "slow_starts.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return table
