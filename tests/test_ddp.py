"""Real 2-process DDP on CPU (gloo) through `accelerate launch`."""

import json
import os
import subprocess
import sys

import pytest
import torch

from .conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "tests", "ddp_check.py")


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}


def launch_two_processes(out_dir, port, *script_args):
    out_dir.mkdir()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            SCRIPT,
            str(out_dir),
            *script_args,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_cpu_ddp_matches_one_process(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    single_dir.mkdir()
    launched = launch_two_processes(ddp_dir, 29517, "4")
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, SCRIPT, str(single_dir), "8"], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert single.returncode == 0, single.stderr[-3000:]

    records = [json.loads((ddp_dir / f"record_rank{r}.json").read_text()) for r in (0, 1)]
    reference = json.loads((single_dir / "record_rank0.json").read_text())
    assert records[0]["world_size"] == 2 and reference["world_size"] == 1
    for record in records:
        assert record["reservoir_unchanged"] and record["layer0_changed"]
    # Same global batch (2 x 4 vs 1 x 8), SGD: the losses agree only if nothing is scaled by the process count.
    assert len(records[0]["losses"]) == 3
    assert len(reference["losses"]) == 3  # else zip() below would compare nothing
    for ddp_loss, single_loss in zip(records[0]["losses"], reference["losses"]):
        assert ddp_loss == pytest.approx(single_loss, rel=1e-4)
    weights = [torch.load(ddp_dir / f"weights_rank{r}.pt") for r in (0, 1)]
    for name, tensor in weights[0]["reservoir"].items():
        assert torch.equal(tensor, weights[1]["reservoir"][name])
    torch.testing.assert_close(weights[0]["layer0"], weights[1]["layer0"])


@pytest.mark.ddp
@pytest.mark.slow
def test_lr_cooldown_keeps_ranks_on_one_learning_rate(tmp_path):
    """Each rank's clock runs at its own speed (a counter: the same on any machine); the cool-down must still follow
    rank 0's clock everywhere."""
    launched = launch_two_processes(tmp_path / "ddp", 29518, "4", "cooldown")
    assert launched.returncode == 0, launched.stderr[-3000:]
    records = [json.loads((tmp_path / "ddp" / f"record_rank{r}.json").read_text()) for r in (0, 1)]
    rates = records[0]["learning_rates"]
    assert len(rates) == 12 and rates == records[1]["learning_rates"]  # no budget stop, one rate on both ranks
    assert rates[-1] < 0.5 * rates[0] and rates[0] == pytest.approx(0.5, rel=0.2)  # the cool-down is on and decays
    weights = [torch.load(tmp_path / "ddp" / f"weights_rank{r}.pt") for r in (0, 1)]
    torch.testing.assert_close(weights[0]["layer0"], weights[1]["layer0"])


@pytest.mark.ddp
@pytest.mark.slow
def test_timed_saves_follow_rank_zeros_clock_on_every_rank(tmp_path):
    """The wall-clock checkpoint interval under DDP: rank 1's clock runs ten times faster than rank 0's (counters,
    the same on any machine) and would ask for a save at every step; every rank must save when rank 0's clock says,
    at steps 3, 6 and 9 (step 12, the last, is the Trainer's own save at the end), and the run must end (a save on
    one rank only would hang or write a partial checkpoint)."""
    launched = launch_two_processes(tmp_path / "ddp", 29519, "4", "timed_save")
    assert launched.returncode == 0, launched.stderr[-3000:]
    records = [json.loads((tmp_path / "ddp" / f"record_rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["timed_saves"] == records[1]["timed_saves"] == 3
    assert records[0]["checkpoints"] == ["checkpoint-12", "checkpoint-3", "checkpoint-6", "checkpoint-9"]
    assert (tmp_path / "ddp" / "checkpoint-12" / "model.safetensors").exists()
