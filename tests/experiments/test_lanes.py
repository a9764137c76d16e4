"""Lanes (hf_reservoir/experiments/lanes.py, hf_reservoir/trainer/turn_taking.py): the arms of a comparison take turns
on one core, and a lane cut short resumes
as a lane, from each arm's last checkpoint, with the same steps and evaluations as a lane that was never cut."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO_ROOT

MODELS = ("regular", "transformer")
NAMES = [f"{model}-N1-seed1" for model in MODELS]


def _lane_sweep(folder, corpus) -> str:
    """A two-arm lane (regular and transformer reservoirs, N = 1, seed 1) of 40 steps, a checkpoint and an
    evaluation every 10; each step sleeps 20 ms on the clock so that the 0.3-second turns change hands often."""
    base = {
        "data_path": str(corpus), "vocab_size": 300, "max_source_length": 24, "max_target_length": 24,
        "d_model": 32, "decoder_layers": 1, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "max_position_embeddings": 32, "dropout": 0.0,
        "per_device_train_batch_size": 16, "learning_rate": 3e-3, "max_steps": 40, "eval_strategy": "steps",
        "eval_steps": 10, "save_strategy": "steps", "save_steps": 10, "save_total_limit": 2,
        "predict_with_generate": True, "report_to": "none", "use_cpu": True, "disable_tqdm": True,
        "evaluate_test": False, "step_delay_seconds": 0.02, "metric_for_best_model": "bleu",
    }  # fmt: skip
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "base.yaml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(base, handle)
    sweep = {
        "train_config": os.path.join(folder, "base.yaml"),
        "output_dir": os.path.join(folder, "runs"),
        "models": list(MODELS),
        "updatable_layers": [1],
        "reservoir_layers": 1,
        "seeds": [1],
        "budget_seconds": None,
        "sharing": "lanes",
        "parallel_lanes": 1,
        "slice_seconds": 0.3,
    }
    path = os.path.join(folder, "sweep.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(sweep, handle)
    return path


def _sweep_command(path) -> list[str]:
    return [sys.executable, "-m", "hf_reservoir.cli", "sweep", path]


def _complete_checkpoints(run_dir) -> list[int]:
    from hf_reservoir.utils.run_folder import last_checkpoint

    found = last_checkpoint(run_dir)
    return [int(found.rsplit("-", 1)[1])] if found else []


def _run(folder) -> dict:
    runs = {}
    for name in NAMES:
        with open(os.path.join(folder, "runs", name, "results.json"), encoding="utf-8") as handle:
            results = json.load(handle)
        with open(os.path.join(folder, "runs", name, "convergence.json"), encoding="utf-8") as handle:
            convergence = json.load(handle)
        runs[name] = {"results": results, "convergence": convergence}
    return runs


def _curve(run) -> list[tuple[int, float]]:
    return [(e["step"], round(e["bleu"], 6)) for e in run["convergence"]["evaluations"]]


def _alternate(runs) -> bool:
    """In the last process of each arm, the turns alternate between the arms (while both were training) and
    never overlap."""
    turns = sorted(
        (start, end, name) for name, run in runs.items() for start, end in run["results"]["sharing"]["turn_intervals"]
    )
    if {name for _, _, name in turns} != set(runs):
        return False  # an arm that never took a turn
    first_end = min(max(end for _, end, n in turns if n == name) for name in runs)
    while_both = [t for t in turns if t[0] < first_end]
    overlap_free = all(a[1] <= b[0] for a, b in zip(turns, turns[1:]))
    alternating = all(a[2] != b[2] for a, b in zip(while_both, while_both[1:]))
    return overlap_free and alternating and len({n for _, _, n in while_both}) == 2


@pytest.mark.slow
def test_a_lane_cut_mid_way_resumes_as_the_uncut_lane(text_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = _lane_sweep(str(tmp_path / "whole"), text_corpus)
    subprocess.run(_sweep_command(whole), cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)

    cut = _lane_sweep(str(tmp_path / "cut"), text_corpus)
    process = subprocess.Popen(
        _sweep_command(cut), cwd=REPO_ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    run_dirs = [os.path.join(tmp_path, "cut", "runs", name) for name in NAMES]
    # Cut the lane (the sweep and both training processes, as a machine's end does) once each arm has a complete
    # checkpoint at step 20 or later, before either finished.
    while not all(any(step >= 20 for step in _complete_checkpoints(d)) for d in run_dirs):
        assert process.poll() is None and time.time() < deadline, "the lane ended or stalled before the cut"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not any(os.path.exists(os.path.join(d, "results.json")) for d in run_dirs), "cut too late: a run ended"

    again = subprocess.run(_sweep_command(cut), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]

    uncut, resumed = _run(str(tmp_path / "whole")), _run(str(tmp_path / "cut"))
    for name in NAMES:
        # The same steps and evaluations (BLEU at every evaluation step) as the lane that was never cut.
        assert resumed[name]["convergence"]["summary"]["steps_trained"] == 40
        assert _curve(resumed[name]) == _curve(uncut[name])
        # It resumed from its checkpoint, not from step 0, in the same lane.
        first, second = resumed[name]["results"]["history"]
        assert first["from_step"] == 0 and second["from_step"] >= 20
        assert second["lane"] == first["lane"]
    # After the resume, the arms still take turns.
    assert _alternate(resumed) and _alternate(uncut)
    # The report marks the lane as resumed, and where.
    table = (tmp_path / "cut" / "table.md").read_text()
    assert "Resumed runs" in table and all(name in table.split("Resumed runs")[1] for name in NAMES)
    assert "Resumed runs" not in (tmp_path / "whole" / "table.md").read_text()


@pytest.mark.slow
def test_a_paused_lane_trains_no_arm_until_the_pause_is_lifted(text_corpus, tmp_path):
    """``touch LANE/pause``: at the next turn change no arm gets the turn, and none trains (no turn interval meets
    the pause) until the file is removed; then the lane finishes as usual."""
    from hf_reservoir.trainer.turn_taking import PAUSE_FILE

    sweep = _lane_sweep(str(tmp_path), text_corpus)
    process = subprocess.Popen(
        _sweep_command(sweep), cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lane = os.path.join(tmp_path, "runs", "lanes", "N1-seed1")
    turn = os.path.join(lane, "turn")
    deadline = time.time() + 300

    def read_turn() -> str:
        try:
            with open(turn, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    try:
        while not any(os.path.isdir(os.path.join(tmp_path, "runs", n, "checkpoint-10")) for n in NAMES):
            assert process.poll() is None and time.time() < deadline, "the lane ended or stalled"
            time.sleep(0.05)
        open(os.path.join(lane, PAUSE_FILE), "w").close()
        while read_turn() != "":  # the pause takes effect at the next turn change
            assert time.time() < deadline
            time.sleep(0.02)
        paused_at = time.time()
        time.sleep(2.0)
        assert read_turn() == "" and process.poll() is None
        lifted_at = time.time()
        os.remove(os.path.join(lane, PAUSE_FILE))
        assert process.wait(timeout=300) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    runs = _run(str(tmp_path))
    for name, run in runs.items():
        assert run["convergence"]["summary"]["steps_trained"] == 40, name
        for start, end in run["results"]["sharing"]["turn_intervals"]:
            assert end <= paused_at or start >= lifted_at, (name, start, end, paused_at, lifted_at)
    assert _alternate(runs)
