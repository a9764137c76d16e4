"""The probe report: probe.json rendered as tables (probe.md) and a heatmap."""

from __future__ import annotations

import json
import os

from .fit import BOOTSTRAP


def _cell(cell: dict) -> str:
    low, high = cell["interval"]
    return f"{100 * cell['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown(report: dict) -> str:
    """Per model, two tables (the stream, the layers' updates): rows the layers (E, then L/R), columns the tasks, each
    cell the mean test accuracy (%) over the splits with its 95% bootstrap interval; then every paired difference
    with its interval, the real ones (their interval excludes 0) first."""
    tasks = list(report["tasks"])
    splits = report["settings"].get("splits", 1)
    lines = [
        f"Linear probes on {report['sentences']:,} source sentences of {report['data']} (seed "
        f"{report['settings']['seed']}): test accuracy (%) per encoder layer, the mean over {splits} random "
        f"train/validation/test split(s) with its 95% bootstrap interval ({BOOTSTRAP} resamples of the test "
        "examples); layer 0 (E) is the embeddings, L a trainable layer, R a reservoir. Baseline: the majority class. "
        "**Stream**: the layer's output. **Update**: its output minus its input, what the layer itself adds. CKA: "
        "linear CKA between the layer's token states and the layer below's (1: the same up to rotation and scale).",
        "",
        *[f"- `{name}`: {task['description']} ({task['classes']} classes)" for name, task in report["tasks"].items()],
        *[f"- `{name}` skipped: {why}" for name, why in report.get("skipped_tasks", {}).items()],
    ]
    for name, entry in report["models"].items():
        layers = entry["layers"]
        first = layers[0]["tasks"]
        lines += [
            "",
            f"### {name} (`{entry['encoder_layout']}`)",
            "",
            "Stream:",
            "",
            "| layer | " + " | ".join(tasks) + " | CKA with the layer below |",
            "|---|" + "---|" * (len(tasks) + 1),
            "| baseline | " + " | ".join(f"{100 * first[t]['baseline']:.1f}" for t in tasks) + " | |",
        ]
        for layer in layers:
            cka = layer.get("cka_previous")
            cells = [_cell(layer["tasks"][t]) for t in tasks] + ["" if cka is None else f"{cka:.3f}"]
            lines.append(f"| {layer['index']} {layer['mark']} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Update (output minus input):",
            "",
            "| layer | " + " | ".join(tasks) + " |",
            "|---|" + "---|" * len(tasks),
        ]
        for layer in layers[1:]:
            lines.append(
                f"| {layer['index']} {layer['mark']} | " + " | ".join(_cell(layer["update"][t]) for t in tasks) + " |"
            )
        collapsed = [
            f"{layer['index']} {t}" for layer in layers for kind in ("tasks", "update") for t, c in layer[kind].items()
            if c.get("optimizer") != "lbfgs"
        ]  # fmt: skip
        if collapsed:
            lines.append(f"\nRefitted with Adam where L-BFGS failed: {', '.join(collapsed)}.")
    found = report.get("differences", [])
    real = [d for d in found if d["real"]]
    lines += [
        "",
        "### Differences",
        "",
        f"{len(real)} of {len(found)} differences tested are real (their paired 95% bootstrap interval excludes 0): "
        "consecutive layers of each model (stream), and each model against the first at the same layer (stream "
        "and update). A difference whose interval holds 0 is not evidence of no difference: its interval says how "
        "large a difference the data still allow. Every difference tested is listed, the real ones first.",
        "",
        "| task | kind | a | b | a - b (points) | 95% interval | real |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {d['task']} | {d['kind']} | {d['a']} | {d['b']} | {100 * d['difference']:+.1f} | "
            f"[{100 * d['interval'][0]:+.1f}, {100 * d['interval'][1]:+.1f}] | {'yes' if d['real'] else 'no'} |"
            for d in [*real, *(d for d in found if not d["real"])]
        ],
    ]
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict, path: str) -> None:
    """Accuracy above the majority baseline (percentage points): per model, the stream and the layers' updates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, models = list(report["tasks"]), list(report["models"])
    panels = [(name, kind) for name in models for kind in ("tasks", "update")]
    columns = min(len(panels), 4)  # two models (stream, update) per row
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 + 1.1 * len(tasks) * columns, 4.4 * rows), squeeze=False,
        gridspec_kw={"hspace": 0.6},  # room for the task names above the next row's titles
    )  # fmt: skip
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    image = None
    for axis, (name, kind) in zip(axes.flat, panels):
        layers = [x for x in report["models"][name]["layers"] if kind == "tasks" or x["index"] > 0]
        grid = [[100 * (x[kind][t]["accuracy"] - x[kind][t]["baseline"]) for t in tasks] for x in layers]
        image = axis.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for row, values in enumerate(grid):
            for column, value in enumerate(values):
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", color="white", fontsize=8)
        axis.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(layers)), [f"{x['index']} {x['mark']}" for x in layers])
        axis.set_title(f"{name}: {'stream' if kind == 'tasks' else 'update'}", fontsize=9)
    figure.colorbar(image, ax=axes.ravel().tolist(), label="test accuracy - majority baseline (points)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_report(report: dict, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "probe.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(output_dir, "probe.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    plot_heatmap(report, os.path.join(output_dir, "probe_heatmap.png"))
