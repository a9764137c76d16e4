import json
import time

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_reservoir.trainer.convergence import ConvergenceCallback, aucc
from tests.conftest import FakeClock, drive


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none")


def test_aucc_by_hand():
    # (0,0) -> (10,5) -> (20,15) -> (30,12), held to 40: 25 + 100 + 135 + 120 = 380 BLEU-seconds.
    assert aucc([(10, 5), (20, 15), (30, 12)], 40) == pytest.approx(380)
    # A budget inside the curve interpolates: up to 25 s the last segment adds 5 * (15 + 13.5) / 2.
    assert aucc([(10, 5), (20, 15), (30, 12)], 25) == pytest.approx(25 + 100 + 71.25)
    with pytest.raises(ValueError, match="horizon_seconds"):
        aucc([(1, 1)], 0)


def test_time_to_peak_and_aucc_from_the_callback(args):
    clock = FakeClock()
    callback = ConvergenceCallback(budget_seconds=40, clock=clock)
    script = [
        ("step", 5),
        ("step", 5),
        ("eval", 100, 5.0),
        ("step", 10),
        ("eval", 100, 15.0),
        ("epoch",),
        ("step", 10),
        ("eval", 100, 12.0),
    ]
    drive(callback, clock, script, args)
    summary = callback.summary()
    assert summary["peak_bleu"] == 15.0
    assert summary["time_to_peak_seconds"] == pytest.approx(20)
    assert summary["step_at_peak"] == 3
    assert summary["train_seconds"] == pytest.approx(30)  # 300 s of evaluation excluded
    assert summary["aucc_bleu_hours"] == pytest.approx(380 / 3600)
    assert summary["aucc_normalized"] == pytest.approx(380 / 40)
    assert (summary["aucc_horizon_seconds"], summary["aucc_horizon"]) == (40, "budget")
    # Without a budget, T-hat is the training time, and the summary says so.
    unbudgeted = callback.record.summary()
    assert (unbudgeted["aucc_horizon_seconds"], unbudgeted["aucc_horizon"]) == (pytest.approx(30), "training time")
    assert unbudgeted["aucc_normalized"] == pytest.approx(aucc([(10, 5), (20, 15), (30, 12)], 30) / 30)
    assert callback.record.epoch_seconds == [pytest.approx(20)]  # the one full epoch (steps 1-3)
    assert summary["epochs_trained"] == pytest.approx(4 / 3)
    assert summary["seconds_per_epoch"] == pytest.approx(30 / (4 / 3))


def test_stopped_by_names_the_trainers_own_end(tmp_path):
    state, control = TrainerState(max_steps=6, global_step=6), TrainerControl()
    for max_steps, expected in ((6, "max_steps"), (-1, "num_train_epochs")):
        callback = ConvergenceCallback(output_dir=str(tmp_path))
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=max_steps, report_to="none")
        callback.on_train_end(args, state, control)
        assert callback.summary()["stopped_by"] == expected
    interrupted = ConvergenceCallback(output_dir=str(tmp_path))
    interrupted.on_train_end(args, TrainerState(max_steps=6, global_step=4), control)
    assert interrupted.summary()["stopped_by"] is None


def test_state_round_trips_through_trainer_state(args, tmp_path):
    clock = FakeClock()
    callback = ConvergenceCallback(clock=clock)
    state, _ = drive(callback, clock, [("step", 4), ("eval", 50, 3.0), ("step", 4)], args)
    state.stateful_callbacks["ConvergenceCallback"] = callback.state()
    state.save_to_json(str(tmp_path / "trainer_state.json"))
    restored_state = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    resumed = ConvergenceCallback(clock=clock)
    resumed.on_train_begin(args, restored_state, TrainerControl())
    assert resumed.record.train_seconds == pytest.approx(8)
    assert resumed.record.evaluations == callback.record.evaluations
    # A checkpoint written when the record held its own copy of the budget still resumes.
    restored_state.stateful_callbacks["ConvergenceCallback"]["attributes"]["record"]["budget_seconds"] = None
    older = ConvergenceCallback(clock=clock)
    older.on_train_begin(args, restored_state, TrainerControl())
    assert older.record.evaluations == callback.record.evaluations


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, labels=None):
        loss = ((self.linear(x).squeeze(-1) - labels) ** 2).mean()
        return {"loss": loss, "logits": self.linear(x)}


class TickingClock:
    """Every reading is one second after the last: the clock advances with the callback's own calls."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_evaluation_time_is_excluded_in_a_real_trainer(tmp_path):
    """A slow evaluation (0.4 s each, 5 times) must not enter the training clock."""
    from transformers import Trainer

    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(40)]

    def slow_metrics(_):
        time.sleep(0.4)
        return {"bleu": 1.0}

    callback = ConvergenceCallback()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=10,
        per_device_train_batch_size=4,
        eval_strategy="steps",
        eval_steps=2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=Tiny(),
        args=args,
        train_dataset=data,
        eval_dataset=data[:4],
        compute_metrics=slow_metrics,
        callbacks=[callback],
    )
    output = trainer.train()
    summary = callback.summary()
    assert summary["num_evaluations"] == 5
    assert output.metrics["train_runtime"] > 2.0  # the Trainer's own runtime includes evaluation
    assert summary["train_seconds"] < output.metrics["train_runtime"] - 1.8
    written = json.loads((tmp_path / "convergence.json").read_text())
    assert written["summary"]["num_evaluations"] == 5 and (tmp_path / "convergence.png").exists()


def test_convergence_figures_reach_tensorboard(tmp_path):
    """The clock's figures are logged with each evaluation, so report_to integrations show them."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(40)]
    scores = iter([1.0, 3.0, 2.0])
    callback = ConvergenceCallback(clock=TickingClock())
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=4,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        report_to=["tensorboard"],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = ReservoirSeq2SeqTrainer(
        model=Tiny(),
        args=args,
        train_dataset=data,
        eval_dataset=data[:4],
        compute_metrics=lambda _: {"bleu": next(scores)},
        callbacks=[callback],
        convergence=callback,
    )
    trainer.train()
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    peak = [e.value for e in events.Scalars("eval/convergence/peak_bleu")]
    time_to_peak = [e.value for e in events.Scalars("eval/convergence/time_to_peak_seconds")]
    clock = [e.value for e in events.Scalars("eval/convergence/train_seconds")]
    assert peak == [1.0, 3.0, 3.0]
    assert time_to_peak[1] == time_to_peak[2] == pytest.approx(clock[1])  # the peak stays at the second evaluation
    assert clock == pytest.approx([e["train_seconds"] for e in callback.record.evaluations])


def test_under_ddp_the_clock_communicates_only_at_readings(args, monkeypatch):
    """No per-step broadcast or device wait: only steps that end in a log (here every 4th), an evaluation, a
    save or the stop read the clock across ranks; the budget acts at the first reading past it."""
    from hf_reservoir.trainer import convergence

    waits, syncs = [], []
    monkeypatch.setattr(convergence, "synchronize_device", lambda: waits.append(1))
    monkeypatch.setattr(convergence.TrainingClock, "distributed", staticmethod(lambda: True))
    monkeypatch.setattr(convergence.TrainingClock, "sync", lambda self: syncs.append(1) or self.seconds)
    clock = FakeClock()
    callback = ConvergenceCallback(budget_seconds=25, clock=clock)
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control)
    steps = 0
    while not control.should_training_stop and steps < 20:
        callback.on_step_begin(args, state, control)
        clock.now += 10
        state.global_step = steps = steps + 1
        control.should_log = steps % 4 == 0  # what the Trainer's flow callback sets before ours runs
        callback.on_step_end(args, state, control)
    assert steps == 4  # 30 s was past the budget at step 3, but step 3 was no reading
    assert len(syncs) == 1 and len(waits) == 1
    assert callback.record.stopped_by == "budget" and callback.record.train_seconds == 40


def test_a_single_process_checks_the_budget_at_every_step_without_waiting_for_the_device(args, monkeypatch):
    from hf_reservoir.trainer import convergence

    waits = []
    monkeypatch.setattr(convergence, "synchronize_device", lambda: waits.append(1))
    clock = FakeClock()
    callback = ConvergenceCallback(budget_seconds=25, clock=clock)
    _, control = drive(callback, clock, [("step", 10)] * 10, args)
    assert callback.record.steps == 3 and control.should_training_stop
    assert len(waits) == 1  # the stop is a reading: its step waits for the device; steps 1-2 did not


def test_warm_up_steps_train_off_the_clock(args):
    """The first warmup_steps (compilation, CUDA graph capture) train but do not count; the clock starts after."""
    clock = FakeClock()
    callback = ConvergenceCallback(clock=clock, warmup_steps=2)
    drive(callback, clock, [("step", 50), ("step", 50), ("step", 10), ("step", 10), ("eval", 5, 3.0)], args)
    assert callback.record.steps == 4
    assert callback.record.train_seconds == 20
    assert callback.record.evaluations[0]["train_seconds"] == 20 and callback.state()["args"]["warmup_steps"] == 2
