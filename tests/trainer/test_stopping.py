"""The stopping rules (a budget, patience, a target) and the learning-rate cool-down tied to the stop
(hf_reservoir/trainer/stopping.py), as the convergence callback composes them."""

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_reservoir.trainer.convergence import ConvergenceCallback
from tests.conftest import FakeClock, drive

from .test_convergence import TickingClock, Tiny


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none")


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


def test_target_stop_at_the_first_evaluation_that_reaches_it(args, tmp_path):
    """--target_bleu 7: 6.99 is not the target, 7.0 is; the stop keeps a checkpoint of that state (the run's
    answer is its time to target) unless saving is off, and wins over a patience stop at the same evaluation."""
    script = [("step", 1), ("eval", 1, 5.0), ("step", 1), ("eval", 1, 6.99), ("step", 1), ("eval", 1, 4.0)]
    script += [("step", 1), ("eval", 1, 7.0), ("step", 1), ("eval", 1, 9.0)]
    clock = FakeClock()
    callback = ConvergenceCallback(target=7.0, patience=2, clock=clock)
    state, control = drive(callback, clock, script[:6], args)
    assert not control.should_training_stop  # one evaluation since the peak: patience 2 not spent, 7 not reached
    clock = FakeClock()
    callback = ConvergenceCallback(target=7.0, patience=3, clock=clock)
    state, control = drive(callback, clock, script, args)
    assert control.should_training_stop and control.should_save and callback.record.stopped_by == "target"
    assert [e["bleu"] for e in callback.record.evaluations] == [5.0, 6.99, 4.0, 7.0] and state.global_step == 4
    assert callback.state()["args"]["target"] == 7.0
    no_save = TrainingArguments(output_dir=str(tmp_path / "x"), report_to="none", save_strategy="no")
    clock = FakeClock()
    _, control = drive(ConvergenceCallback(target=7.0, clock=clock), clock, script, no_save)
    assert control.should_training_stop and not control.should_save


def test_a_target_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="target=nan must be a finite score"):
        ConvergenceCallback(target=float("nan"))


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


def test_lr_cooldown_refuses_a_schedule_it_cannot_multiply(args):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    callback = ConvergenceCallback(budget_seconds=100, lr_cooldown=0.4)
    with pytest.raises(ValueError, match="ReduceLROnPlateau; choose another lr_scheduler_type"):
        callback.on_train_begin(args, TrainerState(), TrainerControl(), lr_scheduler=plateau)


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
