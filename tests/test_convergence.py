import json
import time

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_reservoir.convergence import ConvergenceCallback, aucc


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drive(callback, clock, script, args, progress=None, max_steps=0):
    """Run the callback (and a progress callback after it) through steps.

    `script` items: ("step", seconds), ("eval", seconds, bleu) or ("epoch",).
    """
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    state.is_world_process_zero = True
    followers = [c for c in (progress,) if c is not None]
    for c in (callback, *followers):
        c.on_train_begin(args, state, control)
    callback.on_epoch_begin(args, state, control)
    for item in script:
        if item[0] == "step":
            callback.on_step_begin(args, state, control)
            clock.now += item[1]
            state.global_step += 1
            state.epoch = state.global_step / 3  # three steps per epoch
            for c in (callback, *followers):
                c.on_step_end(args, state, control)
        elif item[0] == "eval":
            clock.now += item[1]  # evaluation time, which must not count
            for c in (callback, *followers):
                c.on_evaluate(args, state, control, metrics={"eval_bleu": item[2], "eval_chrf": 1.0})
        elif item[0] == "epoch":
            callback.on_epoch_end(args, state, control)
            callback.on_epoch_begin(args, state, control)
        if control.should_training_stop:
            break
    return state, control


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none")


def test_aucc_by_hand():
    # (0,0) -> (10,5) -> (20,15) -> (30,12), held to 40: 25 + 100 + 135 + 120 = 380 BLEU-seconds.
    assert aucc([(10, 5), (20, 15), (30, 12)], 40) == pytest.approx(380)
    # A budget inside the curve interpolates: up to 25 s the last segment adds 5 * (15 + 13.5) / 2.
    assert aucc([(10, 5), (20, 15), (30, 12)], 25) == pytest.approx(25 + 100 + 71.25)
    with pytest.raises(ValueError, match="budget_seconds"):
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
    assert callback.record.epoch_seconds == [pytest.approx(20)]  # the one full epoch (steps 1-3)
    assert summary["epochs_trained"] == pytest.approx(4 / 3)
    assert summary["seconds_per_epoch"] == pytest.approx(30 / (4 / 3))


def test_budget_stop(args):
    clock = FakeClock()
    callback = ConvergenceCallback(budget_seconds=25, clock=clock)
    state, control = drive(callback, clock, [("step", 10)] * 10, args)
    assert control.should_training_stop and control.should_evaluate
    assert state.global_step == 3 and callback.record.stopped_by == "budget"
    state.epoch = 2.5  # the Trainer calls on_epoch_end after a stop mid-epoch: that is not an epoch
    callback.on_epoch_end(args, state, control)
    assert callback.record.epoch_seconds == []


def test_budget_stop_saves_the_last_state_unless_saving_is_off(args, tmp_path):
    # The last state can be the best model: the stop must checkpoint it (it was once lost).
    clock = FakeClock()
    _, control = drive(ConvergenceCallback(budget_seconds=25, clock=clock), clock, [("step", 10)] * 4, args)
    assert control.should_training_stop and control.should_save
    no_save = TrainingArguments(output_dir=str(tmp_path / "x"), report_to="none", save_strategy="no")
    clock = FakeClock()
    _, control = drive(ConvergenceCallback(budget_seconds=25, clock=clock), clock, [("step", 10)] * 4, no_save)
    assert control.should_training_stop and not control.should_save


def test_patience_stop(args):
    clock = FakeClock()
    callback = ConvergenceCallback(patience=2, clock=clock)
    script = [
        ("step", 1),
        ("eval", 1, 5.0),
        ("step", 1),
        ("eval", 1, 7.0),
        ("step", 1),
        ("eval", 1, 6.0),
        ("step", 1),
        ("eval", 1, 7.0),
        ("step", 1),
        ("eval", 1, 9.0),
    ]
    state, control = drive(callback, clock, script, args)
    assert control.should_training_stop and callback.record.stopped_by == "patience"
    assert [e["bleu"] for e in callback.record.evaluations] == [5.0, 7.0, 6.0, 7.0]  # a tie is not a new peak


def test_bad_callback_arguments():
    with pytest.raises(ValueError, match="budget_seconds"):
        ConvergenceCallback(budget_seconds=0)
    with pytest.raises(ValueError, match="patience"):
        ConvergenceCallback(patience=0)
    for fraction in (0, 1.5):
        with pytest.raises(ValueError, match=f"lr_cooldown={fraction} must be a fraction"):
            ConvergenceCallback(budget_seconds=10, lr_cooldown=fraction)
    no_end = ConvergenceCallback(lr_cooldown=0.3)  # neither a budget nor max_steps: nothing to cool down to
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(ValueError, match="neither budget_seconds nor max_steps"):
        no_end.on_train_begin(TrainingArguments(output_dir="unused"), TrainerState(), TrainerControl(), scheduler)


def test_lr_cooldown_falls_linearly_to_zero_at_the_budget(args, tmp_path):
    """The schedule (here constant) is multiplied by 1 until 60 s, then by (100 - t) / 40."""
    clock = FakeClock()
    callback = ConvergenceCallback(budget_seconds=100, lr_cooldown=0.4, clock=clock)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control, lr_scheduler=scheduler)
    callback.on_train_begin(args, state, control, lr_scheduler=scheduler)  # a second train() does not compound
    seen = []
    for _ in range(10):
        callback.on_step_begin(args, state, control)
        clock.now += 10
        seen.append(optimizer.param_groups[0]["lr"])  # the rate this step trains with
        optimizer.step()
        scheduler.step()
        state.global_step += 1
        callback.on_step_end(args, state, control)
    assert seen == pytest.approx([0.5] * 7 + [0.375, 0.25, 0.125])
    assert control.should_training_stop and callback.lr_factor() == 0.0
    assert scheduler.get_last_lr() == [0.0]
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")  # the scheduler still checkpoints


def test_lr_cooldown_on_steps_falls_linearly_to_zero_at_max_steps(args):
    """Without a budget the window is the last 40% of max_steps = 10: the clock plays no part."""
    clock = FakeClock()
    callback = ConvergenceCallback(lr_cooldown=0.4, clock=clock)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state, control = TrainerState(max_steps=10), TrainerControl()
    callback.on_train_begin(args, state, control, lr_scheduler=scheduler)
    seen = []
    for step in range(10):
        callback.on_step_begin(args, state, control)
        clock.now += 10 * (step + 1)  # an erratic machine
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        state.global_step += 1
        callback.on_step_end(args, state, control)
    assert seen == pytest.approx([0.5] * 6 + [0.5, 0.375, 0.25, 0.125])
    assert not control.should_training_stop  # the Trainer itself stops at max_steps
    # A run resumed at step 8 trains its next step at the cool-down's rate, not the schedule's.
    resumed = ConvergenceCallback(lr_cooldown=0.4, clock=clock)
    scheduler.last_epoch = 8
    optimizer.param_groups[0]["lr"] = 0.5
    resumed.on_train_begin(args, TrainerState(max_steps=10, global_step=8), control, lr_scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


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


def test_progress_shows_steps_clock_and_best_bleu(args, capsys):
    from hf_reservoir.progress import ConvergenceProgressCallback

    clock = FakeClock()
    callback = ConvergenceCallback(clock=clock)
    progress = ConvergenceProgressCallback(callback, show_bar=False)
    script = [("step", 2.0), ("step", 2.0), ("eval", 5.0, 3.5), ("step", 2.0), ("step", 2.0), ("eval", 5.0, 2.5)]
    drive(callback, clock, script, args, progress=progress, max_steps=40)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "[hf-reservoir] step 2/40, training 4 s, 0.50 steps/s, BLEU 3.50 (best 3.50 at step 2)"
    assert lines[1] == "[hf-reservoir] step 4/40, training 8 s, 0.50 steps/s, BLEU 2.50 (best 3.50 at step 2)"
    # The best model's final scoring evaluates again (other metric names): no curve point, so no second line.
    final = {"final_validation_bleu": 3.5}
    callback.on_evaluate(args, TrainerState(global_step=4, max_steps=40), TrainerControl(), metrics=final)
    progress.on_evaluate(args, TrainerState(global_step=4, max_steps=40), TrainerControl(), metrics=final)
    assert capsys.readouterr().out == ""


def test_lr_cooldown_refuses_a_schedule_it_cannot_multiply(args):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    callback = ConvergenceCallback(budget_seconds=100, lr_cooldown=0.4)
    with pytest.raises(ValueError, match="ReduceLROnPlateau; choose another lr_scheduler_type"):
        callback.on_train_begin(args, TrainerState(), TrainerControl(), lr_scheduler=plateau)


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


def test_lr_cooldown_in_a_real_trainer_checkpoints_and_resumes(tmp_path):
    from transformers import Trainer

    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(40)]

    def train(output_dir, resume=None):
        args = TrainingArguments(
            output_dir=str(output_dir),
            max_steps=10,
            per_device_train_batch_size=4,
            learning_rate=0.1,
            lr_scheduler_type="constant",
            logging_steps=1,
            save_steps=5,
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        callback = ConvergenceCallback(budget_seconds=40, lr_cooldown=1.0, clock=TickingClock())
        trainer = Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[callback])
        trainer.train(resume_from_checkpoint=resume)
        return [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e], callback

    rates, callback = train(tmp_path / "run")
    assert rates[0] == pytest.approx(0.1, rel=0.1)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))  # falls with the clock
    assert rates[-1] == pytest.approx(0.1 * callback.lr_factor(), rel=0.2)
    assert (tmp_path / "run" / "checkpoint-5" / "scheduler.pt").exists()  # the scheduler saved
    resumed, _ = train(tmp_path / "run", resume=str(tmp_path / "run" / "checkpoint-5"))
    assert resumed[:5] == rates[:5]  # the checkpoint's log history, then the resumed steps
    # The resumed run continues the cool-down from the checkpoint's clock instead of starting it over.
    assert resumed[5] < rates[4] and resumed[5:] == pytest.approx(rates[5:], abs=0.01)


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

    from hf_reservoir.trainer import ReservoirSeq2SeqTrainer

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
    from hf_reservoir import convergence

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
    from hf_reservoir import convergence

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
