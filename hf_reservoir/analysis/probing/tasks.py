"""Probe tasks built from corpus sentences (SentEval's design; see [`hf_reservoir.analysis.probing.probe`])."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

TASKS = ("length", "word_content", "bigram_shift", "bigram_shift_pair", "source", "token_identity")


WORD = re.compile(r"^[^\W\d_]+$")  # letters only, any alphabet (German: a-z, äöüß)


@dataclass
class ProbeTask:
    """One probing data set: a sentence (or token position) per example, a label, and the fixed splits."""

    name: str
    sentences: list[str]
    labels: list[int]
    num_classes: int
    split: list[str]  # "train", "validation" or "test", per example
    # Token-level tasks: the position in the tokenized sentence, or a pair of positions whose states are concatenated.
    positions: list[int] | list[tuple[int, int]] | None = None
    description: str = ""


@dataclass
class ProbeSettings:
    # None: every task the data supports (a task the data cannot support is skipped, with a note); a task
    # named here that the data cannot support is an error.
    tasks: list[str] | None = None
    limit: int = 6000
    seed: int = 1
    word_content_words: int = 100
    word_content_min_train: int = 40
    token_identity_classes: int = 100
    batch_size: int = 64
    splits: int = 3  # train/validation/test splits per probe; accuracy is their mean, with a bootstrap interval

    def __post_init__(self):
        unknown = sorted(set(self.tasks or ()) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown probing task(s) {unknown}; choose from {', '.join(TASKS)}.")
        if self.splits < 1:
            raise ValueError(
                f"--splits {self.splits} must be at least 1 (3 gives intervals that hold for differences)."
            )
        if self.limit < 50:
            raise ValueError(
                f"--limit {self.limit} leaves too few sentences for a train/validation/test split; use 50+."
            )


def _splits(count: int, rng: random.Random) -> list[str]:
    order = list(range(count))
    rng.shuffle(order)
    split = ["train"] * count
    for rank, index in enumerate(order):
        split[index] = "test" if rank < count // 10 else "validation" if rank < count // 5 else "train"
    return split


def _words(sentence: str) -> list[str]:
    return sentence.split()


def length_task(sentences: list[str], rng: random.Random) -> ProbeTask:
    split = _splits(len(sentences), rng)
    counts = [len(_words(s)) for s in sentences]
    train_counts = sorted(c for c, part in zip(counts, split) if part == "train")
    edges = sorted({train_counts[len(train_counts) * q // 6] for q in range(1, 6)})
    labels = [sum(c >= e for e in edges) for c in counts]
    description = f"word count in {len(edges) + 1} bins, edges {edges} (equal-frequency on the probe's train split)"
    return ProbeTask("length", sentences, labels, len(edges) + 1, split, description=description)


def word_content_task(sentences: list[str], rng: random.Random, words: int, min_train: int = 40) -> ProbeTask:
    tokens = [{w.lower().strip(".,;:!?()\"'") for w in _words(s)} for s in sentences]
    frequency = Counter(w for sentence in tokens for w in sentence if WORD.match(w))
    vocabulary = set([w for w, n in frequency.most_common() if n >= 10][50 : 50 + words])  # past the function words
    # A class needs min_train probe-training sentences (80% of its sentences): drop the rarest word, one at a time,
    # until all have them. A dropped word can make a sentence hold exactly one of the rest, so the others' counts
    # only grow; dropping every rare word at once instead can empty the task of words that would have qualified.
    while vocabulary:
        alone = Counter(next(iter(t & vocabulary)) for t in tokens if len(t & vocabulary) == 1)
        rarest = min(vocabulary, key=lambda w: (alone[w], w))
        if alone[rarest] * 0.8 >= min_train:
            break
        vocabulary.discard(rarest)
    index = {w: i for i, w in enumerate(sorted(vocabulary))}
    kept = [(s, (sentence & vocabulary)) for s, sentence in zip(sentences, tokens)]
    kept = [(s, hits.pop()) for s, hits in kept if len(hits) == 1]
    description = (
        f"which of {len(index)} mid-frequency words the sentence holds (sentences with exactly one; every word in "
        f"at least {min_train} probe-training sentences)"
    )
    return ProbeTask(
        "word_content", [s for s, _ in kept], [index[w] for _, w in kept], len(index), _splits(len(kept), rng),
        description=description,
    )  # fmt: skip


def bigram_shift_task(sentences: list[str], rng: random.Random) -> ProbeTask:
    kept = [s for s in sentences if len(_words(s)) >= 4]
    shifted, labels = [], []
    for sentence in kept:
        words = _words(sentence)
        if rng.random() < 0.5:
            at = rng.randrange(len(words) - 1)
            words[at], words[at + 1] = words[at + 1], words[at]
            labels.append(1)
        else:
            labels.append(0)
        shifted.append(" ".join(words))
    description = "were two adjacent words swapped (half of the sentences of 4+ words, at a random position)?"
    return ProbeTask("bigram_shift", shifted, labels, 2, _splits(len(kept), rng), description=description)


def word_starts(tokenizer, words: list[str]) -> list[int] | None:
    """The position of each word's first piece in the tokenized sentence ``" ".join(words)``, or None when the
    word-by-word pieces do not add up to the sentence's (SentencePiece pieces never cross a space, so they do)."""
    pieces = [len(tokenizer.tokenize(word)) for word in words]
    if sum(pieces) != len(tokenizer.tokenize(" ".join(words))):
        return None
    starts, at = [], 0
    for count in pieces:
        starts.append(at)
        at += count
    return starts


def bigram_shift_pair_task(sentences: list[str], tokenizer, rng: random.Random) -> ProbeTask:
    """Bigram shift read where the order is: the states at the first pieces of the two words concerned."""
    examples, unaligned = [], 0
    for sentence in sentences:
        words = _words(sentence)
        if len(words) < 4:
            continue
        at, label = rng.randrange(len(words) - 1), int(rng.random() < 0.5)
        if label:
            words[at], words[at + 1] = words[at + 1], words[at]
        starts = word_starts(tokenizer, words)
        if starts is None:
            unaligned += 1
            continue
        examples.append((" ".join(words), (starts[at], starts[at + 1]), label))
    description = (
        "were two adjacent words swapped? read from the states at the two words' first pieces, concatenated "
        f"(half of the sentences of 4+ words; {unaligned} whose pieces did not align with their words left out)"
    )
    return ProbeTask(
        "bigram_shift_pair", [s for s, _, _ in examples], [y for _, _, y in examples], 2, _splits(len(examples), rng),
        positions=[p for _, p, _ in examples], description=description,
    )  # fmt: skip


def source_task(sentences: list[str], sources: list[str] | None, rng: random.Random) -> ProbeTask:
    if sources is None:
        raise ValueError("the task 'source' needs a corpus that records each pair's source (a built corpus).")
    names = sorted(set(sources))
    description = f"the corpus source: {', '.join(names)}"
    labels = [names.index(s) for s in sources]
    return ProbeTask("source", sentences, labels, len(names), _splits(len(sentences), rng), description=description)


def token_identity_task(sentences: list[str], tokenizer, rng: random.Random, classes: int) -> ProbeTask:
    ids = tokenizer(sentences)["input_ids"]
    special = set(tokenizer.all_special_ids)
    frequency = Counter(t for row in ids for t in row if t not in special)
    vocabulary = {token: i for i, (token, _) in enumerate(frequency.most_common(classes))}
    examples = []
    for sentence, row in zip(sentences, ids):
        positions = [p for p, t in enumerate(row) if t in vocabulary]
        for p in sorted(rng.sample(positions, min(4, len(positions)))):
            examples.append((sentence, p, vocabulary[row[p]]))
    description = f"the token id at a position, among the {len(vocabulary)} most frequent pieces (<= 4 per sentence)"
    return ProbeTask(
        "token_identity",
        [s for s, _, _ in examples],
        [label for _, _, label in examples],
        len(vocabulary),
        _splits(len(examples), rng),
        positions=[p for _, p, _ in examples],
        description=description,
    )


def task_problem(task: ProbeTask) -> str | None:
    """Why a probing data set cannot give a probe (fewer than 2 classes, or a split without examples), or None."""
    counts = Counter(task.split)
    empty = [part for part in ("train", "validation", "test") if not counts[part]]
    if task.num_classes < 2:
        return f"these sentences give it {task.num_classes} class(es) ({task.description})"
    if empty:
        return f"these sentences give it {len(task.labels)} examples, none in the {'/'.join(empty)} split"
    return None


def build_tasks(sentences: list[str], sources: list[str] | None, tokenizer, settings: ProbeSettings) -> list:
    """The probing tasks named in ``settings.tasks``, each from its own seeded generator."""
    builders = {
        "length": lambda rng: length_task(sentences, rng),
        "word_content": lambda rng: word_content_task(
            sentences, rng, settings.word_content_words, settings.word_content_min_train
        ),
        "bigram_shift": lambda rng: bigram_shift_task(sentences, rng),
        "bigram_shift_pair": lambda rng: bigram_shift_pair_task(sentences, tokenizer, rng),
        "source": lambda rng: source_task(sentences, sources, rng),
        "token_identity": lambda rng: token_identity_task(sentences, tokenizer, rng, settings.token_identity_classes),
    }
    return [builders[name](random.Random(f"{settings.seed}-{name}")) for name in settings.tasks]
