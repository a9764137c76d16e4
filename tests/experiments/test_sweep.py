import json
import os

import pytest
import yaml

from hf_reservoir.experiments.report_render import build_report
from hf_reservoir.experiments.sweep import SweepConfig, cell_arguments, cells
from tests.conftest import REPO_ROOT, tiny_training_config


def test_cells_and_arguments():
    config = SweepConfig(
        train_config="base.yaml",
        output_dir="out",
        models=["regular", "ffn", "layerdrop", "transformer-identity"],
        updatable_layers=[2, 4],
        seeds=[1, 2],
        reservoir_layers=2,
        budget_seconds=60,
    )
    grid = cells(config)
    assert len(grid) == 16 and grid[0].name == "regular-N2-seed1"
    args = dict(zip(cell_arguments(config, grid[2])[1::2], cell_arguments(config, grid[2])[2::2]))
    assert args["--encoder_layers"] == "4" and args["--num_encoder_reservoir_layers"] == "2"
    assert args["--reservoir_type"] == "ffn" and args["--budget_seconds"] == "60"
    layerdrop = next(c for c in grid if c.model == "layerdrop" and c.updatable == 4)
    args = dict(zip(cell_arguments(config, layerdrop)[1::2], cell_arguments(config, layerdrop)[2::2]))
    assert args["--encoder_layers"] == "6" and args["--encoder_layerdrop"] == str(round(2 / 6, 4))
    backskip = next(c for c in grid if c.model == "transformer-identity")
    assert "--backskip_mode" in cell_arguments(config, backskip)
    with pytest.raises(ValueError, match="lstm"):
        SweepConfig(train_config="b", output_dir="o", models=["lstm"])


def test_a_lanes_mapping_groups_runs_as_written(monkeypatch):
    """Each lane holds exactly the models its mapping names, for one N and seed, and every cell is in one lane."""
    import hf_reservoir.experiments.sweep as sweep

    mapping = {"a": ["regular", "ffn"], "b": ["transformer", "layerdrop"]}
    values = dict(train_config="base.yaml", output_dir="out", updatable_layers=[2, 4], seeds=[1, 2], lanes=mapping)
    config = SweepConfig(**values, models=["regular", "transformer", "ffn", "layerdrop"], sharing="lanes")
    started = []
    monkeypatch.setattr(
        sweep, "run_lane_cells", lambda cfg, lane, slot=0: started.append(lane) or {cell: "done" for cell in lane}
    )
    assert sweep.run_sweep(config, cells(config), report=lambda line: None) == []
    groups = {sweep.lane_of(config, lane[0]): sorted(c.name for c in lane) for lane in started}
    assert groups == {
        f"{name}-N{n}-seed{seed}": sorted(f"{m}-N{n}-seed{seed}" for m in members)
        for n in (2, 4)
        for seed in (1, 2)
        for name, members in mapping.items()
    }
    assert len(started) == 8  # every cell in exactly one lane


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    from hf_reservoir.experiments.sweep import train_command

    config = SweepConfig(train_config="base.yaml", output_dir=str(tmp_path), models=["regular"], seeds=[1])
    cell = cells(config)[0]
    assert "--resume_from_checkpoint" not in train_command(config, cell)
    checkpoint = tmp_path / cell.name / "checkpoint-200"
    checkpoint.mkdir(parents=True)
    for name, text in (("trainer_state.json", "{}"), ("config.json", "{}"), ("model.safetensors", "x")):
        (checkpoint / name).write_text(text)
    command = train_command(config, cell)
    assert command[command.index("--resume_from_checkpoint") + 1] == "last"


def test_a_resumed_run_keeps_its_earlier_log_and_a_fresh_one_starts_empty(tmp_path):
    from hf_reservoir.experiments.sweep import open_log

    config = SweepConfig(train_config="base.yaml", output_dir=str(tmp_path), models=["regular"], seeds=[1])
    cell = cells(config)[0]
    (tmp_path / cell.name).mkdir()
    log_path = tmp_path / cell.name / "train.log"
    log_path.write_text("step 200 of the first part\n")
    with open_log(config, cell, ["train", "--resume_from_checkpoint", "last"]) as log:
        log.write("step 400 after resuming\n")
    text = log_path.read_text()
    assert text.startswith("step 200 of the first part\n")
    assert f"resuming {cell.name} from its last checkpoint" in text
    assert text.endswith("step 400 after resuming\n")
    with open_log(config, cell, ["train"]) as log:  # starting over: the old log would mislead
        log.write("fresh\n")
    assert log_path.read_text() == "fresh\n"


@pytest.mark.slow
def test_miniature_grid_end_to_end(corpus_dir, tokenizer_dir, tmp_path):
    import subprocess
    import sys

    train_config = tmp_path / "base.yaml"
    train_config.write_text(yaml.safe_dump(tiny_training_config(corpus_dir, tokenizer_dir, evaluate_test=True)))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "train_config": str(train_config),
                "output_dir": str(tmp_path / "runs"),
                "models": ["regular", "ffn"],
                "updatable_layers": [1],
                "seeds": [1],
                "reservoir_layers": 1,
                "budget_seconds": 30,
            }
        )
    )
    script = os.path.join(REPO_ROOT, "training", "sweep.py")
    result = subprocess.run([sys.executable, script, str(sweep)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "[1/2] regular-N1-seed1: done" in result.stdout
    table = (tmp_path / "table.md").read_text()
    assert "| regular | 1 | 0 |" in table and "| ffn | 1 | 1 |" in table
    assert (tmp_path / "bleu_vs_time.png").exists() and (tmp_path / "aucc_vs_layers.png").exists()
    assert (tmp_path / "bleu_vs_steps.png").exists()
    # Every number comes from the run files: rebuild the report and compare with the runs' own summaries.
    summary = json.loads((tmp_path / "summary.json").read_text())["rows"]
    run = json.loads((tmp_path / "runs" / "ffn-N1-seed1" / "convergence.json").read_text())["summary"]
    assert summary["ffn/N1"]["peak_bleu"][0] == pytest.approx(run["peak_bleu"])
    assert summary["ffn/N1"]["aucc_normalized"][0] == pytest.approx(run["aucc_normalized"])
    # A second invocation skips finished cells (resume).
    again = subprocess.run([sys.executable, script, str(sweep)], capture_output=True, text=True, timeout=600)
    assert "regular-N1-seed1: skipped" in again.stdout
    assert build_report(SweepConfig.load(str(sweep)), str(tmp_path / "again")) == table


def _tiny_base(path, corpus_dir, tokenizer_dir, **extra):
    values = {"train_sample_seed": 1, "max_steps": 40, "evaluate_test": False, **extra}
    path.write_text(yaml.safe_dump(tiny_training_config(corpus_dir, tokenizer_dir, **values)))
    return path


def _run_sweep(sweep_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "hf_reservoir.cli", "sweep", str(sweep_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_paired_lane_runs_both_arms_in_turns_and_reports_from_files(corpus_dir, tokenizer_dir, tmp_path):
    base = _tiny_base(tmp_path / "base.yaml", corpus_dir, tokenizer_dir)
    sweep = tmp_path / "sweep.yaml"
    config = {
        "train_config": str(base),
        "output_dir": str(tmp_path / "runs"),
        "models": ["regular", "ffn"],
        "updatable_layers": [1],
        "seeds": [1],
        "reservoir_layers": 1,
        "budget_seconds": None,
        "sharing": "lanes",
        "slice_seconds": 0.5,
    }
    sweep.write_text(yaml.safe_dump(config))
    _run_sweep(sweep)
    for name in ("regular-N1-seed1", "ffn-N1-seed1"):
        results = json.loads((tmp_path / "runs" / name / "results.json").read_text())
        sharing = results["sharing"]
        assert sharing["scheme"] == "lane" and sharing["torch_threads"] == 1 and sharing["turns"] >= 2
        conv = json.loads((tmp_path / "runs" / name / "convergence.json").read_text())
        assert conv["summary"]["steps_trained"] == 40 and conv["summary"]["seconds_per_step"] > 0
        assert conv["summary"]["stopped_by"] == "max_steps"
        # the clock leaves the waits out: training seconds are well below the run's wall-clock
        assert conv["summary"]["train_seconds"] < results["train_runtime_including_evaluation"]
    waits = [
        json.loads((tmp_path / "runs" / n / "results.json").read_text())["sharing"]["waited_seconds"]
        for n in ("regular-N1-seed1", "ffn-N1-seed1")
    ]
    assert min(waits) > 0  # each waited while the other trained
    # The lane's history: the two arms' training turns never overlap in wall-clock time, and both trained in it.
    runs = [
        json.loads((tmp_path / "runs" / n / "results.json").read_text()) for n in ("regular-N1-seed1", "ffn-N1-seed1")
    ]
    turns = sorted(
        (start, end, index) for index, run in enumerate(runs) for start, end in run["sharing"]["turn_intervals"]
    )
    assert {index for _, _, index in turns} == {0, 1} and all(end is not None for _, end, _ in turns)
    for (_, end, _), (start, _, _) in zip(turns, turns[1:]):
        assert end <= start, turns  # the next turn starts only after the previous one ended
    for run in runs:
        (part,) = run["history"]  # one process, in this lane, over the run's wall-clock interval
        assert part["lane"] == runs[0]["sharing"]["lane"] and part["started"] < part["ended"]
    summary = json.loads((tmp_path / "summary.json").read_text())["rows"]
    ffn, regular = summary["ffn/N1"], summary["regular/N1"]
    assert set(regular["to_target"]) == {"50%", "75%", "90%"}
    run = json.loads((tmp_path / "runs" / "ffn-N1-seed1" / "convergence.json").read_text())["summary"]
    assert ffn["seconds_per_step"][0] == pytest.approx(run["seconds_per_step"])
    assert ffn["paired"]["seeds"] == 1
    assert set(ffn["paired"]["time_to_target_ratio"]) == {"50%", "75%", "90%"}
    # the report is a function of the run files alone
    assert build_report(SweepConfig.load(str(sweep)), str(tmp_path / "again")) == (tmp_path / "table.md").read_text()


@pytest.mark.slow
def test_a_a_lane_measures_a_slowed_copy_as_slower(corpus_dir, tokenizer_dir, tmp_path):
    base = _tiny_base(tmp_path / "base.yaml", corpus_dir, tokenizer_dir, max_steps=30)
    sweep = tmp_path / "sweep.yaml"
    config = {
        "train_config": str(base),
        "output_dir": str(tmp_path / "runs"),
        "models": ["regular@a", "regular@b"],
        # 0.2 s per step: the check below keeps half of it as margin, which no load on a tiny model's step
        # (20-50 ms) can take away, since both arms take turns on the same core.
        "model_overrides": {"regular@b": {"step_delay_seconds": 0.2}},
        "updatable_layers": [1],
        "seeds": [1],
        "budget_seconds": None,
        "sharing": "lanes",
        "slice_seconds": 0.5,
    }
    sweep.write_text(yaml.safe_dump(config))
    _run_sweep(sweep)
    summary = json.loads((tmp_path / "summary.json").read_text())["rows"]
    a, b = summary["regular@a/N1"], summary["regular@b/N1"]
    # the same model and seed: the same curve by steps, and b's 30 sleeps of 0.2 s show in its clock
    assert a["peak_bleu"][0] == pytest.approx(b["peak_bleu"][0])
    assert b["seconds_per_step"][0] - a["seconds_per_step"][0] > 0.1
    assert b["paired"]["seconds_per_step_ratio"][0] > 1.0


def test_a_sweep_file_with_a_misspelt_key_names_it_and_the_closest_key(tmp_path, capsys):
    """`sedes: [2]` used to be "SweepConfig.__init__() got an unexpected keyword argument 'sedes'"."""
    from tests.test_reliability import run_cli

    path = tmp_path / "sw.yaml"
    path.write_text("train_config: base.yaml\noutput_dir: out\nmodels: [regular]\nsedes: [2]\n")
    line = run_cli(["sweep", str(path), "--list"], capsys)
    assert f"{path}: unknown key 'sedes'; did you mean 'seeds'?" in line
    path.write_text("output_dir: out\nmodels: [regular]\n")
    assert "lacks the required key(s) train_config" in run_cli(["sweep", str(path), "--list"], capsys)
    path.write_text("- a list\n")
    assert "must hold a mapping" in run_cli(["sweep", str(path), "--list"], capsys)


def test_lanes_side_by_side_are_pinned_to_different_cores(monkeypatch):
    """Two concurrent lanes of two arms on 4 cores: the second lane's arms get cores 2 and 3, not 0 and 1 again;
    lanes that run at once always hold different slots."""
    import threading
    import time

    import hf_reservoir.experiments.sweep as sweep

    config = SweepConfig(
        train_config="base.yaml", output_dir="out", models=["regular", "transformer"], updatable_layers=[2],
        seeds=[1, 2, 3, 4], sharing="concurrent", parallel_lanes=2, threads_per_lane=1,
    )  # fmt: skip
    names = ["regular", "transformer"]
    assert sweep.pinned_cores(names, config, 0, [0, 1, 2, 3]) == {"regular": {0}, "transformer": {1}}
    assert sweep.pinned_cores(names, config, 1, [0, 1, 2, 3]) == {"regular": {2}, "transformer": {3}}
    assert sweep.pinned_cores(names, config, 1, [0, 1]) is None  # too few cores: no pinning rather than sharing
    running, seen, lock = {}, [], threading.Lock()

    def fake_lane(cfg, lane, slot=0):
        with lock:
            seen.append(sorted(running.values()) + [slot])
            running[id(lane)] = slot
        time.sleep(0.05)
        with lock:
            del running[id(lane)]
        return {cell: "done" for cell in lane}

    monkeypatch.setattr(sweep, "run_lane_cells", fake_lane)
    assert sweep.run_sweep(config, cells(config), report=lambda line: None) == []
    assert len(seen) == 4 and all(len(set(slots)) == len(slots) for slots in seen)
