"""The Seq2SeqTrainer subclass and its step callbacks (hf_reservoir/trainer/reservoir_trainer.py): the optimizer, the
FLOP count, timed saves."""

import pytest
import torch

from tests.conftest import tiny_config


def test_the_flop_estimate_counts_the_parameters_once(tmp_path, monkeypatch):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

    model = ReservoirMarianMTModel(tiny_config())
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    ours, theirs = ReservoirSeq2SeqTrainer(model=model, args=args), Seq2SeqTrainer(model=model, args=args)
    inputs = {"input_ids": torch.ones(4, 7, dtype=torch.long)}
    expected = theirs.floating_point_ops(inputs)
    counts = []
    original = type(model).num_parameters
    monkeypatch.setattr(type(model), "num_parameters", lambda self, **kw: counts.append(1) or original(self, **kw))
    assert [ours.floating_point_ops(inputs) for _ in range(3)] == [expected] * 3 and expected > 0
    assert len(counts) == 1


def test_optimizer_holds_trainable_parameters_only(tmp_path):
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2, reservoir_type="bigru"))
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), weight_decay=0.1, report_to="none", use_cpu=True)
    trainer = ReservoirSeq2SeqTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}
    no_decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decay = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all(n.endswith("bias") or "layer_norm" in n for n in no_decay)
    assert all(not n.endswith("bias") and "layer_norm" not in n for n in decay) and decay


class _Advance:
    """A Trainer callback that moves a fake wall clock by ``seconds`` in every training step (after the clock
    started the step: the step's work)."""

    def __init__(self, clock, seconds):
        self.clock, self.seconds = clock, seconds

    def __getattr__(self, name):  # every other event: nothing to do
        return lambda *args, **kwargs: None

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.now += self.seconds


def test_timed_saves_checkpoint_on_the_wall_clock_and_the_clock_treats_them_as_readings(tmp_path):
    from transformers import Trainer, TrainingArguments

    from hf_reservoir.trainer.convergence import ConvergenceCallback
    from hf_reservoir.trainer.reservoir_trainer import TimedSaveCallback
    from tests.conftest import FakeClock

    from .test_convergence import Tiny

    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(40)]
    wall = FakeClock()
    timed = TimedSaveCallback(25, time_source=wall)
    clock = ConvergenceCallback(clock=wall)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=4, save_steps=7, logging_steps=100,
        report_to="none", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[timed, clock, _Advance(wall, 10)])
    trainer.train()
    # 10 s a step: 25 s have passed at step 3; save_steps saves at 7 (restarting the interval), then 10.
    saved = sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*"))
    assert saved == [3, 6, 7, 10] and timed.saves == 2
    # The timed saves are off the training clock like any other save: 10 steps of 10 s, none of it lost.
    assert clock.record.train_seconds == pytest.approx(100)


def test_timed_saves_without_checkpoints_or_with_a_bad_interval_are_refused():
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir.trainer.arguments import ConvergenceArguments
    from hf_reservoir.trainer.checks import check_timed_saves
    from hf_reservoir.trainer.reservoir_trainer import TimedSaveCallback

    args = Seq2SeqTrainingArguments(output_dir="unused", save_strategy="no", report_to="none")
    with pytest.raises(ValueError, match="save_interval_seconds=600 asks for checkpoints, but save_strategy is 'no'"):
        check_timed_saves(600, args.save_strategy)
    check_timed_saves(None, args.save_strategy)  # nothing asked, nothing to refuse
    with pytest.raises(ValueError, match="save_interval_seconds=0 must be positive"):
        ConvergenceArguments(save_interval_seconds=0)
    with pytest.raises(ValueError, match="must be positive"):
        TimedSaveCallback(-5)
