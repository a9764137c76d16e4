"""Token batches: at most ``max_tokens`` padded tokens per batch, grouped by length, padded to length buckets."""

from __future__ import annotations

import random

import torch


class TokenBatchSampler(torch.utils.data.Sampler):
    """Batches of at most ``max_tokens`` padded tokens, grouped by length (fairseq's ``--max-tokens``).

    Pairs are sorted by length inside shuffled chunks, packed greedily, and the batches are
    shuffled; the order depends only on ``seed`` and the epoch (``set_epoch``), so resuming works.

    With ``buckets`` (ascending lengths), every pair goes to the shortest bucket that holds it and a batch takes
    ``max_tokens // bucket`` pairs of one bucket; [`BucketPadding`] then pads it to exactly that shape, so a
    compiled step sees ``len(buckets)`` shapes and never recompiles. A bucket's last batch may be short (no pair
    is dropped); the padding fills it with rows that carry no loss.
    """

    def __init__(
        self,
        lengths: list[int],
        max_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        buckets: list[int] | None = None,
    ):
        too_long = [i for i, n in enumerate(lengths) if n > max_tokens]
        if too_long:
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than {len(too_long)} examples (the longest has "
                f"{max(lengths)} tokens); raise max_tokens or lower max_source_length/max_target_length."
            )
        if buckets is not None:
            check_buckets(buckets, max_tokens, max(lengths, default=0), "the longest example")
        self.lengths, self.max_tokens, self.seed, self.shuffle = lengths, max_tokens, seed, shuffle
        self.buckets = list(buckets) if buckets is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        batches = self._bucketed(order) if self.buckets is not None else self._packed(order)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _packed(self, order: list[int]) -> list[list[int]]:
        chunk = 100 * max(1, self.max_tokens // max(1, max(self.lengths)))
        batches, batch, longest = [], [], 0
        for start in range(0, len(order), chunk):
            for index in sorted(order[start : start + chunk], key=lambda i: self.lengths[i]):
                longest_if_added = max(longest, self.lengths[index])
                if batch and longest_if_added * (len(batch) + 1) > self.max_tokens:
                    batches.append(batch)
                    batch, longest_if_added = [], self.lengths[index]
                batch.append(index)
                longest = longest_if_added
        if batch:
            batches.append(batch)
        return batches

    def _bucketed(self, order: list[int]) -> list[list[int]]:
        members: dict[int, list[int]] = {bucket: [] for bucket in self.buckets}
        for index in order:
            members[bucket_of(self.lengths[index], self.buckets)].append(index)
        batches = []
        for bucket, indices in members.items():
            rows = self.max_tokens // bucket
            batches.extend(indices[start : start + rows] for start in range(0, len(indices), rows))
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def check_buckets(buckets: list[int], max_tokens: int | None, longest: int, longest_name: str) -> None:
    """Refuse length buckets that cannot work, saying which value and what to use instead (``longest``: the
    longest sequence they must hold, named ``longest_name`` in the message)."""
    if max_tokens is None:
        raise ValueError(f"length_buckets={buckets} needs max_tokens (the token budget that sets each bucket's rows).")
    if not buckets or any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError(f"length_buckets={buckets} must be positive lengths in ascending order, each once.")
    if buckets[-1] > max_tokens:
        raise ValueError(f"length_buckets ends at {buckets[-1]}, above max_tokens={max_tokens}; lower it.")
    if longest > buckets[-1]:
        raise ValueError(
            f"length_buckets={buckets} ends below {longest_name} ({longest} tokens); add a bucket of at least "
            f"{longest}, or lower max_source_length/max_target_length to {buckets[-1]}."
        )


def bucket_of(length: int, buckets: list[int]) -> int:
    """The shortest bucket that holds ``length`` tokens."""
    return next(bucket for bucket in buckets if bucket >= length)


class BucketPadding:
    """A collator wrapper that pads a batch of one length bucket to its fixed shape.

    ``collator`` (e.g. ``DataCollatorForSeq2Seq``) pads to the batch's longest pair; this pads every sequence on
    to the bucket's length and adds rows up to ``max_tokens // bucket``. Added positions are padding: the
    attention mask is 0 there, labels are -100 (no loss), token ids are ``pad_token_id``. An added row attends to
    its first position only (a row with no key would give NaN attention) and has no label, so the loss, the
    token count and the gradients are those of the real rows.
    """

    def __init__(self, collator, buckets: list[int], max_tokens: int, pad_token_id: int):
        self.collator, self.buckets, self.max_tokens, self.pad_token_id = (
            collator,
            list(buckets),
            max_tokens,
            pad_token_id,
        )

    def __call__(self, features):
        batch = self.collator(features)
        longest = max(batch[key].shape[1] for key in ("input_ids", "labels") if key in batch)
        bucket = bucket_of(longest, self.buckets)
        rows = self.max_tokens // bucket
        if batch["input_ids"].shape[0] > rows:
            raise ValueError(
                f"a batch of {batch['input_ids'].shape[0]} pairs for the {bucket}-token bucket, which holds {rows} "
                f"(max_tokens={self.max_tokens}); batch it with TokenBatchSampler(..., buckets={self.buckets})."
            )
        fills = {"labels": -100, "attention_mask": 0}
        padded = {}
        for key, value in batch.items():
            fill = fills.get(key, self.pad_token_id)
            out = value.new_full((rows, bucket), fill)
            out[: value.shape[0], : value.shape[1]] = value
            if key == "attention_mask":
                out[value.shape[0] :, 0] = 1
            padded[key] = out
        return padded
