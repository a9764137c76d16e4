"""Token batches and bucket padding (hf_reservoir/corpus/batching.py): every pair once, fixed shapes, the same loss."""

import random

import pytest
import torch

from hf_reservoir.corpus.batching import TokenBatchSampler
from tests.conftest import tiny_config


def test_length_buckets_batch_every_pair_once_in_fixed_shapes(text_tokenizer_dir):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.corpus.tokenization import load_tokenizer
    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

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
    from hf_reservoir.corpus.batching import BucketPadding
    from hf_reservoir.corpus.tokenization import load_tokenizer

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


def test_token_batch_sampler():
    lengths = [5, 30, 12, 7, 7, 29, 3, 16] * 20
    sampler = TokenBatchSampler(lengths, max_tokens=64, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) * len(b) <= 64 for b in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches and list(TokenBatchSampler(lengths, 64, seed=1)) == batches
    with pytest.raises(ValueError, match="max_tokens=20"):
        TokenBatchSampler(lengths, max_tokens=20)
