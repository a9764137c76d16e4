"""The Seq2SeqTrainer subclass and its step callbacks (hf_reservoir/trainer.py): the optimizer, the FLOP count, length
buckets."""

import random

import pytest
import torch

from .conftest import tiny_config


def test_length_buckets_batch_every_pair_once_in_fixed_shapes(text_tokenizer_dir):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.tokenization import load_tokenizer
    from hf_reservoir.trainer import ReservoirSeq2SeqTrainer

    tokenizer = load_tokenizer(str(text_tokenizer_dir))
    rng = random.Random(0)
    pairs = [(rng.randint(1, 30), rng.randint(1, 30)) for _ in range(203)]
    data = Dataset.from_dict(
        {"input_ids": [[5 + i % 50] * s for i, (s, _) in enumerate(pairs)], "labels": [[7] * t for _, t in pairs]}
    )
    pad = tokenizer.pad_token_id
    model = ReservoirMarianMTModel(
        tiny_config(vocab_size=len(tokenizer), pad_token_id=pad, decoder_start_token_id=pad)
    )
    args = Seq2SeqTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, seed=4)
    trainer = ReservoirSeq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
        max_tokens=64,
        length_buckets=[8, 16, 32],
    )
    shapes, sources = set(), []
    for batch in trainer.get_train_dataloader():
        shapes.add(tuple(batch["input_ids"].shape))
        assert {tuple(v.shape) for v in batch.values()} == {tuple(batch["input_ids"].shape)}
        real = (batch["labels"] != -100).any(dim=1)
        sources += [
            tuple(row[mask.bool()].tolist())
            for row, mask in zip(batch["input_ids"][real], batch["attention_mask"][real])
        ]
        assert (batch["attention_mask"][~real].sum(dim=1) == 1).all()  # padding rows attend to one position only
    assert shapes <= {(8, 8), (4, 16), (2, 32)}
    assert sorted(sources) == sorted(tuple(ids) for ids in data["input_ids"])  # every pair once, none cut


def test_bucket_padding_changes_neither_the_loss_nor_the_gradients(text_tokenizer_dir):
    from transformers import DataCollatorForSeq2Seq

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.data import BucketPadding
    from hf_reservoir.tokenization import load_tokenizer

    tokenizer = load_tokenizer(str(text_tokenizer_dir))
    pad = tokenizer.pad_token_id
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=pad, decoder_start_token_id=pad, layernorm_position="pre"
    )
    model = ReservoirMarianMTModel(config)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    features = [
        {"input_ids": [9, 10, 11, 12, 0], "labels": [20, 21, 0]},
        {"input_ids": [13, 0], "labels": [22, 23, 24, 25, 0]},
    ]

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = collator(features)
    padded = BucketPadding(collator, [4, 16], max_tokens=64, pad_token_id=pad)(features)
    assert tuple(padded["input_ids"].shape) == (4, 16)
    loss, grads = loss_and_grads(plain)
    padded_loss, padded_grads = loss_and_grads(padded)
    torch.testing.assert_close(padded_loss, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(padded_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_the_flop_estimate_counts_the_parameters_once(tmp_path, monkeypatch):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.trainer import ReservoirSeq2SeqTrainer

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
    from hf_reservoir.trainer import ReservoirSeq2SeqTrainer

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

    from hf_reservoir.convergence import ConvergenceCallback
    from hf_reservoir.trainer import TimedSaveCallback

    from .conftest import FakeClock
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

    from hf_reservoir.arguments import ConvergenceArguments
    from hf_reservoir.checks import check_timed_saves
    from hf_reservoir.trainer import TimedSaveCallback

    args = Seq2SeqTrainingArguments(output_dir="unused", save_strategy="no", report_to="none")
    with pytest.raises(ValueError, match="save_interval_seconds=600 asks for checkpoints, but save_strategy is 'no'"):
        check_timed_saves(600, args.save_strategy)
    check_timed_saves(None, args.save_strategy)  # nothing asked, nothing to refuse
    with pytest.raises(ValueError, match="save_interval_seconds=0 must be positive"):
        ConvergenceArguments(save_interval_seconds=0)
    with pytest.raises(ValueError, match="must be positive"):
        TimedSaveCallback(-5)
