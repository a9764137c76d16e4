"""The sweep's report (hf_reservoir/experiments/report_aggregate.py and report_render.py), built from run files
alone: paired ratios against the reference
model of each lane, the backskip table, a report folder that belongs to one sweep, the plots."""

import dataclasses
import json
import math
import os

import pytest
import yaml

from hf_reservoir.experiments.sweep import SweepConfig
from tests.conftest import REPO_ROOT


def _fake_run(model: str, seed: int, peak_seconds: float, lane: str) -> dict:
    """A finished run's files as the report reads them: a curve that peaks at ``peak_seconds``."""
    evaluations = [
        {"train_seconds": peak_seconds / 2, "step": 100, "epoch": 1.0, "bleu": 5.0},
        {"train_seconds": peak_seconds, "step": 200, "epoch": 2.0, "bleu": 10.0},
        {"train_seconds": peak_seconds * 1.5, "step": 300, "epoch": 3.0, "bleu": 9.0},
    ]
    summary = {
        "peak_bleu": 10.0,
        "time_to_peak_seconds": peak_seconds,
        "step_at_peak": 200,
        "seconds_per_step": peak_seconds * 1.5 / 300,
        "seconds_per_epoch": peak_seconds / 2,
        "train_seconds": peak_seconds * 1.5,
        "stopped_by": "patience",
    }
    results = {
        "encoder_layout": "LRL",
        "parameters": {"trainable": 10, "total": 12},
        "sharing": {"scheme": "lane", "lane": lane},
        "history": [{"from_step": 0, "clock": 0.0, "started": 0.0, "ended": 100.0, "lane": lane}],
    }
    return {"results": results, "convergence": {"summary": summary, "evaluations": evaluations}}


def _two_lane_sweep(seconds: dict[str, float], lane_b: list[str]):
    """A one-seed N = 2 sweep of ``seconds``' models (each run peaking at its seconds): lane b holds ``lane_b``,
    lane a the rest. Returns the config and the runs' files as the report reads them."""
    from hf_reservoir.experiments.sweep import Cell

    lanes = {"a": [m for m in seconds if m not in lane_b], "b": lane_b}
    config = SweepConfig(
        train_config="unused.yaml", output_dir="unused", models=list(seconds), updatable_layers=[2], seeds=[1],
        reservoir_layers=2, lanes=lanes,
    )  # fmt: skip
    runs = {Cell(m, 2, 1): _fake_run(m, 1, t, lane="b" if m in lane_b else "a") for m, t in seconds.items()}
    return config, runs


def test_every_ratio_is_taken_against_the_reference_model_it_names():
    """With reference_model: transformer, regular's ratio is regular / transformer (not 1, not regular / regular)."""
    from hf_reservoir.experiments.report_aggregate import summarise
    from hf_reservoir.experiments.report_render import markdown_tables
    from hf_reservoir.experiments.sweep import Cell

    config = SweepConfig(
        train_config="unused.yaml",
        output_dir="unused",
        models=["regular", "transformer"],
        updatable_layers=[2],
        seeds=[1, 2],
        reservoir_layers=1,
        reference_model="transformer",
    )
    seconds = {("regular", 1): 300.0, ("regular", 2): 600.0, ("transformer", 1): 200.0, ("transformer", 2): 300.0}
    runs = {Cell(m, 2, s): _fake_run(m, s, t, lane=f"lane-{s}") for (m, s), t in seconds.items()}
    summary, _ = summarise(config, runs)
    regular, transformer = summary["regular/N2"], summary["transformer/N2"]
    assert regular["reference"] == transformer["reference"] == "transformer"
    assert regular["time_to_peak_ratio_to_reference"] == pytest.approx((300 / 200 + 600 / 300) / 2)
    assert transformer["time_to_peak_ratio_to_reference"] == 1.0
    assert regular["peak_bleu"][0] == pytest.approx(10.0)  # the run files' own name for the peak
    table = markdown_tables(summary, {}, "transformer")
    assert "ratio to transformer (paired)" in table and "| regular | 2 | 0 | LRL |" in table and "| 1.75 |" in table


def test_the_backskip_table_compares_each_backskip_run_with_its_exact_twin():
    """Same seed, same N: the step-cost ratio, steps to peak, and BLEU at equal steps after the warm-up."""
    from hf_reservoir.experiments.report_aggregate import backskip_comparison, backskip_table
    from hf_reservoir.experiments.sweep import Cell

    config = SweepConfig(
        train_config="unused.yaml",
        output_dir="unused",
        models=["regular", "transformer", "transformer-learned"],
        updatable_layers=[2],
        seeds=[1],
        reservoir_layers=2,
    )
    exact = _fake_run("transformer", 1, 300.0, lane="a")
    learned = _fake_run("transformer-learned", 1, 240.0, lane="a")  # 0.8x the seconds per step
    # 400 forwards of its one reservoir, the first 100 (the warm-up) exact: 300 of the other 300 skipped.
    learned["results"]["backskip"] = {"mode": "learned", "warmup_steps": 100, "skipped": 300, "exact": 100}
    for evaluation in learned["convergence"]["evaluations"]:
        evaluation["bleu"] -= 1.0 if evaluation["step"] > 100 else 0.0  # one BLEU behind once skipping starts
    runs = {Cell("transformer", 2, 1): exact, Cell("transformer-learned", 2, 1): learned}
    runs[Cell("regular", 2, 1)] = _fake_run("regular", 1, 300.0, lane="a")
    row = backskip_comparison(config, runs)["transformer-learned/N2"]
    assert row["exact_model"] == "transformer" and row["seeds"] == 1
    assert row["skipped_fraction"][0] == pytest.approx(0.75)
    assert row["skipped_after_warmup_fraction"][0] == pytest.approx(1.0)
    assert row["seconds_per_step_ratio"][0] == pytest.approx(0.8)
    assert row["bleu_difference_at_equal_steps"][0] == pytest.approx(-1.0)  # steps 200 and 300 only
    assert row["bleu_gain_after_warmup"][0] == pytest.approx(-1.0) and row["exact_bleu_gain_after_warmup"][0] == -1.0
    assert row["paired_in_lane"] == "1/1" and row["seconds_per_step_ratio_through_lanes"][0] == pytest.approx(0.8)
    table = "\n".join(backskip_table({"r": row}))
    row_text = (
        "| transformer-learned | 2 | 1 | 1/1 | 0.75 ± 0.00 [0.75, 0.75] | 1.00 ± 0.00 [1.00, 1.00] | 0.800 ± 0.000 |"
    )
    assert row_text + " 0.800 ± 0.000 |" in table
    assert backskip_comparison(dataclasses.replace(config, models=["regular", "transformer"]), runs) == {}


def test_backskip_twins_in_different_lanes_are_marked_unpaired_and_their_lanes_divided_out():
    """Lane a: regular, transformer; lane b (a core 1.5x slower): regular@b, transformer-learned. The direct s/step
    ratio (0.9 x 1.5) mixes the backskip saving with the cores; through each lane's regular copy it is 0.9."""
    from hf_reservoir.experiments.report_aggregate import backskip_comparison, backskip_table
    from hf_reservoir.experiments.sweep import Cell

    seconds = {"regular": 300.0, "transformer": 330.0, "regular@b": 450.0, "transformer-learned": 330.0 * 0.9 * 1.5}
    config, runs = _two_lane_sweep(seconds, lane_b=["regular@b", "transformer-learned"])
    row = backskip_comparison(config, runs)["transformer-learned/N2"]
    assert row["paired_in_lane"] == "0/1; seed 1: unpaired"
    assert row["seconds_per_step_ratio"][0] == pytest.approx(1.35)
    assert row["seconds_per_step_ratio_through_lanes"][0] == pytest.approx(0.9)
    table = "\n".join(backskip_table({"r": row}))
    assert "| 0/1; seed 1: unpaired |" in table and "| 0.900 ± 0.000 (via regular@b / regular) |" in table
    del runs[Cell("regular@b", 2, 1)]  # without its lane's copy there is nothing to divide the lanes out with
    assert math.isnan(
        backskip_comparison(config, runs)["transformer-learned/N2"]["seconds_per_step_ratio_through_lanes"][0]
    )


def test_a_lane_without_the_reference_model_is_compared_with_the_reference_copy_in_it():
    """lanes a: [regular, transformer], b: [regular@b, ffn]: ffn's ratio is to regular@b, which took turns with
    it, and regular@b's to regular (another lane: an A/A across lanes, marked unpaired)."""
    from hf_reservoir.experiments.report_aggregate import summarise
    from hf_reservoir.experiments.report_render import markdown_tables

    seconds = {"regular": 300.0, "transformer": 330.0, "regular@b": 200.0, "ffn": 180.0}
    config, runs = _two_lane_sweep(seconds, lane_b=["regular@b", "ffn"])
    summary, _ = summarise(config, runs)
    assert summary["ffn/N2"]["reference"] == "regular@b"
    assert summary["ffn/N2"]["time_to_peak_ratio_to_reference"] == pytest.approx(0.9)
    assert summary["transformer/N2"]["time_to_peak_ratio_to_reference"] == pytest.approx(1.1)
    assert summary["regular@b/N2"]["reference"] == "regular"
    assert summary["regular@b/N2"]["paired"]["paired_in_lane"] == "0/1; seed 1: unpaired"
    table = markdown_tables(summary, {}, "regular")
    assert "| 0.90 (vs regular@b) |" in table and "| ffn (vs regular@b, its lane's copy) | 2 |" in table
    assert "took turns in one lane" in table
    concurrent = markdown_tables(summary, {}, "regular", "concurrent")
    assert "took turns" not in concurrent and "trained at the same time" in concurrent


def test_runs_from_before_the_step_cost_was_recorded_still_build_a_report():
    """Old run files (no seconds_per_step in their summary): the report rebuilds, with s/step as n/a."""
    from hf_reservoir.experiments.report_aggregate import backskip_comparison, summarise
    from hf_reservoir.experiments.report_render import markdown_tables
    from hf_reservoir.experiments.sweep import Cell

    config = SweepConfig(
        train_config="unused.yaml", output_dir="unused", models=["transformer", "transformer-identity"],
        updatable_layers=[2], seeds=[1], reservoir_layers=2, train_overrides={"backskip_warmup_steps": 100},
    )  # fmt: skip
    runs = {Cell(m, 2, 1): _fake_run(m, 1, 300.0, lane="a") for m in config.models}
    for run in runs.values():
        del run["convergence"]["summary"]["seconds_per_step"]
    summary, _ = summarise(config, runs)
    assert "| n/a |" in markdown_tables(summary, {}, "transformer")
    row = backskip_comparison(config, runs)["transformer-identity/N2"]
    assert math.isnan(row["seconds_per_step_ratio"][0]) and row["bleu_difference_at_equal_steps"][0] == 0.0


def test_two_sweeps_in_one_folder_cannot_overwrite_each_others_report(tmp_path, monkeypatch, capsys):
    """The report goes beside the sweep's config by default: a second sweep config in that folder (another
    output_dir) is refused with the reason, before any training, and the first report is left as it was;
    report_dir in the config sends it elsewhere, and a sweep's own report is rebuilt in place."""
    from hf_reservoir.cli import main
    from hf_reservoir.utils.run_folder import CONVERGENCE_FILE, RESULTS_FILE, write_run_file

    monkeypatch.chdir(tmp_path)
    for name, output_dir in (("series", "runs"), ("check", "check_runs")):
        for model, seconds in (("regular", 300.0), ("transformer", 330.0)):
            run = _fake_run(model, 1, seconds, lane="a")
            run_dir = tmp_path / output_dir / f"{model}-N2-seed1"
            run_dir.mkdir(parents=True)
            write_run_file(str(run_dir), RESULTS_FILE, run["results"])
            write_run_file(str(run_dir), CONVERGENCE_FILE, run["convergence"])
        sweep = {"train_config": "unused.yaml", "output_dir": output_dir, "models": ["regular", "transformer"]}
        sweep.update(updatable_layers=[2], seeds=[1], reservoir_layers=2)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", "series.yaml", "--report_only"]) == 0
    table = (tmp_path / "table.md").read_text()
    capsys.readouterr()
    # Without --report_only too: refused before run_sweep would start a run.
    monkeypatch.setattr(
        "hf_reservoir.experiments.sweep.run_sweep", lambda *a, **k: pytest.fail("trained before the check")
    )
    assert main(["sweep", "check.yaml"]) == 2
    error = capsys.readouterr().err
    assert "holds the report of another sweep" in error and "runs/regular-N2-seed1" in error
    assert "report_dir" in error and (tmp_path / "table.md").read_text() == table
    check = yaml.safe_load((tmp_path / "check.yaml").read_text())
    (tmp_path / "check.yaml").write_text(yaml.safe_dump({**check, "report_dir": "check_report"}))
    assert main(["sweep", "check.yaml", "--report_only"]) == 0
    assert (tmp_path / "check_report" / "table.md").exists() and (tmp_path / "table.md").read_text() == table
    assert main(["sweep", "series.yaml", "--report_only"]) == 0  # its own report: rebuilt in place


def test_ratio_plots_tick_only_the_measured_depths(tmp_path, monkeypatch):
    """N is a count of layers: the plots against N mark the measured N (2 and 4), not 2.25 or 3.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_reservoir.experiments import report_render

    with open(os.path.join(REPO_ROOT, "results", "series_cpu", "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)["rows"]
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda figure=None: (figures.append(figure), close(figure)))
    report_render._plot_paired_ratios(summary, str(tmp_path / "paired.png"), "regular")
    report_render._plot_aucc(summary, str(tmp_path / "aucc.png"))
    assert (tmp_path / "paired.png").exists() and (tmp_path / "aucc.png").exists()
    axes = [axis for figure in figures for axis in figure.axes]
    assert len(axes) == 3  # two panels of paired ratios, one of AUCC
    for axis in axes:
        assert list(axis.get_xticks()) == [2, 4]


def test_fixed_bleu_targets_are_reported_beside_the_fractions():
    """target_bleu: [9, 11]: every run reaches 9 at its peak evaluation and none reaches 11 (not a ratio, "not
    reached"); the fractions stay fractions of the reference's mean peak."""
    from hf_reservoir.experiments.report_aggregate import summarise
    from hf_reservoir.experiments.report_render import markdown_tables
    from hf_reservoir.experiments.sweep import Cell

    config = SweepConfig(
        train_config="unused.yaml", output_dir="unused", models=["regular", "transformer"], updatable_layers=[2],
        seeds=[1, 2], reservoir_layers=2, target_fractions=[0.5], target_bleu=[9, 11],
    )  # fmt: skip
    seconds = {("regular", 1): 300.0, ("regular", 2): 600.0, ("transformer", 1): 200.0, ("transformer", 2): 300.0}
    runs = {Cell(m, 2, s): _fake_run(m, s, t, lane=f"lane-{s}") for (m, s), t in seconds.items()}
    summary, targets = summarise(config, runs)
    assert targets["N2"]["targets"] == {"50%": 5.0, "BLEU 9": 9.0, "BLEU 11": 11.0}
    transformer = summary["transformer/N2"]
    assert transformer["to_target"]["BLEU 9"]["seconds"][0] == pytest.approx(250.0)
    assert math.isnan(transformer["to_target"]["BLEU 11"]["seconds"][0])
    ratios = transformer["paired"]["time_to_target_ratio"]
    assert ratios["BLEU 9"][0] == pytest.approx((200 / 300 + 300 / 600) / 2)
    assert transformer["paired"]["ratio_intervals"]["time to BLEU 11"]["seeds"] == 0  # no seed reached it
    table = markdown_tables(summary, targets, "regular")
    assert "first reaches 50% = 5.00 of regular's mean peak (10.00), and BLEU 9, BLEU 11; seeds" in table
