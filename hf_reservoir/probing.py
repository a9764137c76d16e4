"""Probing: what each encoder layer of a (reservoir) model represents (``hf-reservoir probe``).

The plan behind Reservoir Transformers ends with a probing analysis; the paper backs its claim that random layers
"represent linguistic phenomena" with probing. Here every encoder layer's output (layer 0: the embeddings, then
each layer, marked ``L`` trainable or ``R`` reservoir from the saved config) is read for German source sentences of
the corpus, with the model frozen and in eval mode, and a **linear probe** (multinomial logistic regression, in
torch: a dependency-free fit of a 128-wide linear map needs no scikit-learn) is trained per (layer, task).

Tasks (SentEval's design, Conneau et al. 2018, built from our corpus without outside tools; each deterministic
from ``seed``):

* ``length``: the sentence's word count in 6 equal-frequency bins (bin edges from the probe's training split);
* ``word_content``: which of up to ``word_content_words`` mid-frequency words (frequency ranks 50 onward,
  lowercased, letters only) the sentence holds, among sentences that hold exactly one of them; a word is a class only
  if at least ``word_content_min_train`` probe-training sentences hold it alone;
* ``bigram_shift``: were two adjacent words swapped (at a random position, in a random half of the sentences of
  four words or more)? Read from the sentence mean, which erases word order: it stays at chance by design;
* ``bigram_shift_pair`` (token-level, order kept): the same question read from the states at the two positions
  concerned (the first piece of each of the two words, concatenated; in unswapped sentences a random adjacent pair);
* ``source``: the corpus source (LibreOffice help, UI strings, Ding dictionary), for corpora that record it;
* ``token_identity`` (token-level): the token id at a position, from that position's vector, for the
  ``token_identity_classes`` most frequent pieces (up to 4 positions per sentence): does a token's identity survive
  the random layers?

Every task is probed twice per layer: on the **stream** (the layer's output, what the next layer reads) and on the
layer's **update** (its output minus its input: what its sublayers add before the residual sum). The residual
stream carries the embeddings through, so a task the embeddings solve (token identity) is solved by every layer's
stream; the update shows what the layer itself contributes, and a reservoir that adds little shows it there. Linear
CKA (Kornblith et al. 2019) between consecutive layers' token states, on the same sentences, measures how much a
layer changes the representation as a whole.

Sentence tasks use the mean of the layer's vectors over the sentence's tokens (padding excluded). Sentences come
from the corpus's training split (the models saw them in training, as SentEval-style probes of an MT encoder
usually do) and are split 80/10/10 into the probe's train, validation and test sets; the L2 penalty is chosen on
validation (never on test) from ``WEIGHT_DECAYS``, and test accuracy is reported beside the majority-class
baseline (the most frequent class of the probe's training set, scored on test).

**Noise**: each probe is fitted on ``splits`` (default 3) random train/validation/test splits of the same examples,
and its accuracy is the mean over them, with a 95% percentile-bootstrap interval (test examples resampled within
each split, ``BOOTSTRAP`` times). A difference between two cells (consecutive layers of a model; a model against the
first model at the same layer) gets a paired bootstrap interval on the same resampled test examples, and the report
calls it real only when that interval excludes 0.

A **control** (``--control``) adds the first model's architecture at its random initialisation: nothing trained,
its reservoirs the same as the trained model's (they come from ``reservoir_seed``), so a reader can tell what
training added. ``--control_seeds 0 1`` draws the trainable layers of several controls from those torch seeds, so
that a difference between the trained model and the control can be told from the draw of one control.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, replace

import torch

from .run_folder import MODEL_DIR

TASKS = ("length", "word_content", "bigram_shift", "bigram_shift_pair", "source", "token_identity")
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
BOOTSTRAP = 1000  # resamples for every interval
CKA_SENTENCES = 500  # sentences whose token states linear CKA compares
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


@torch.no_grad()
def layer_outputs(model, tokenizer, sentences: list[str], batch_size: int = 64, positions=None) -> torch.Tensor:
    """Every encoder layer's output per sentence: ``[layers + 1, sentences, d_model]``.

    Index 0 is the embeddings (token embedding, scaled, plus positions: the input of the first layer), then each
    layer's output. Without ``positions``, each sentence's vectors are averaged over its tokens (padding excluded);
    with them, the vector at ``positions[i]`` of sentence ``i`` is taken (for a pair ``(p, q)``, the vectors at both,
    concatenated: ``2 * d_model`` wide); ``positions="all"`` gives every token of every sentence, padding left out:
    ``[layers + 1, tokens, d_model]``.
    """
    encoder = model.get_encoder()
    model.eval()
    captured: list[torch.Tensor] = []
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))]
    hooks += [layer.register_forward_hook(lambda m, a, out: captured.append(out)) for layer in encoder.layers]
    device = next(model.parameters()).device
    out = []
    try:
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[start : start + batch_size], return_tensors="pt", padding=True).to(device)
            captured.clear()
            encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            states = torch.stack([c[0] if isinstance(c, tuple) else c for c in captured])  # [L+1, B, T, D]
            if positions is None:
                mask = batch["attention_mask"].to(states.dtype)[None, :, :, None]
                out.append((states * mask).sum(2) / mask.sum(2))
            elif isinstance(positions, str):
                out.append(states[:, batch["attention_mask"].bool()])
            elif isinstance(positions[0], tuple):
                pairs = torch.tensor(positions[start : start + batch_size], device=device)
                rows = torch.arange(len(pairs), device=device)
                out.append(torch.cat([states[:, rows, pairs[:, 0]], states[:, rows, pairs[:, 1]]], dim=-1))
            else:
                rows = torch.tensor(positions[start : start + batch_size], device=device)
                out.append(states[:, torch.arange(len(rows), device=device), rows])
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(out, dim=1).float().cpu()


def fit_probe(features: torch.Tensor, labels: list[int], split: list[str], num_classes: int) -> dict:
    """A linear probe (logistic regression, full-batch L-BFGS) per L2 penalty in ``WEIGHT_DECAYS``; the penalty
    with the best validation accuracy is kept and scored on test, beside the majority-class baseline.

    Fitted on one thread: at these sizes (a few thousand examples, d_model features) more threads only wait on each
    other (measured: 9x slower on 2 threads of a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_probe(features, labels, split, num_classes)
    finally:
        torch.set_num_threads(threads)


def _train_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, decay: float) -> tuple[torch.nn.Linear, str]:
    """Fit ``Linear(d, classes)`` by L-BFGS from zeros; when L-BFGS ends with a non-finite loss or above where it
    started (its line search can fail on badly scaled features, leaving every logit equal: a probe that predicts one
    class and looks collapsed), fit again with Adam. Returns the map and the optimizer that fitted it."""

    def objective(linear):
        loss = torch.nn.functional.cross_entropy(linear(x), y)
        return loss + decay * linear.weight.pow(2).sum()

    start = math.log(num_classes)  # the loss at zero weights
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = objective(linear)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = objective(linear).item()
    if math.isfinite(final) and final <= start + 1e-6:
        return linear, "lbfgs"
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    adam = torch.optim.Adam(linear.parameters(), lr=0.01)
    for _ in range(500):
        adam.zero_grad()
        objective(linear).backward()
        adam.step()
    return linear, "adam (L-BFGS failed)"


def _fit_probe(features: torch.Tensor, labels: list[int], split: list[str], num_classes: int) -> dict:
    y = torch.tensor(labels)
    parts = {name: torch.tensor([s == name for s in split]) for name in ("train", "validation", "test")}
    train = features[parts["train"]]
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    x = (features - mean) / std  # standardised on the probe's train split only
    best = None
    for decay in WEIGHT_DECAYS:
        linear, fitted_by = _train_linear(x[parts["train"]], y[parts["train"]], num_classes, decay)
        with torch.no_grad():
            predicted = linear(x).argmax(1)
        correct = predicted == y
        accuracy = {name: correct[mask].float().mean().item() for name, mask in parts.items()}
        if best is None or accuracy["validation"] > best["validation_accuracy"]:
            best = {
                "validation_accuracy": accuracy["validation"],
                "accuracy": accuracy["test"],
                "weight_decay": decay,
                "optimizer": fitted_by,
                "predicted_classes": len(set(predicted[parts["test"]].tolist())),
                "correct": correct[parts["test"]],
            }
    majority = Counter(y[parts["train"]].tolist()).most_common(1)[0][0]
    best["baseline"] = (y[parts["test"]] == majority).float().mean().item()
    best["n_train"], best["n_test"] = int(parts["train"].sum()), int(parts["test"].sum())
    return best


# --------------------------------------------------------------------------------------------
# Intervals: several splits, bootstrap over test examples, paired differences
# --------------------------------------------------------------------------------------------


def task_splits(task: ProbeTask, settings: ProbeSettings) -> list[list[str]]:
    """The task's own split, then ``settings.splits - 1`` more drawn from seeds of their own."""
    extra = [
        _splits(len(task.labels), random.Random(f"{settings.seed}-{task.name}-split{k}"))
        for k in range(1, settings.splits)
    ]
    return [task.split, *extra]


@functools.lru_cache(maxsize=64)
def _resamples(n: int, key: str) -> torch.Tensor:
    """``BOOTSTRAP`` resamples (with replacement) of ``n`` test examples, the same for every cell with this key
    (drawn once per key: every layer and model of a task reuses them; read only)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    return torch.randint(n, (BOOTSTRAP, n), generator=generator)


def _bootstrap(corrects: list[torch.Tensor], key: str) -> torch.Tensor:
    """Accuracy (or, for a difference, its mean) over the splits, per bootstrap resample: ``[BOOTSTRAP]``."""
    per_split = [c.float()[_resamples(len(c), f"{key}-{k}")].mean(1) for k, c in enumerate(corrects)]
    return torch.stack(per_split).mean(0)


def _interval(samples: torch.Tensor) -> list[float]:
    low, high = torch.quantile(samples, torch.tensor([0.025, 0.975])).tolist()
    return [low, high]


def probe_cell(features: torch.Tensor, task: ProbeTask, splits: list[list[str]]) -> dict:
    """One (layer, task) probe over every split: mean test accuracy with its 95% bootstrap interval, the mean
    majority baseline, each split's accuracy and penalty; ``correct`` (per split, the test examples' hits) is kept
    for paired differences and left out of probe.json."""
    fits = [fit_probe(features, task.labels, split, task.num_classes) for split in splits]
    corrects = [fit.pop("correct") for fit in fits]
    mean = lambda key: sum(fit[key] for fit in fits) / len(fits)  # noqa: E731
    optimizers = sorted({fit["optimizer"] for fit in fits})
    return {
        "accuracy": mean("accuracy"),
        "interval": _interval(_bootstrap(corrects, task.name)),
        "baseline": mean("baseline"),
        "split_accuracies": [fit["accuracy"] for fit in fits],
        "weight_decay": [fit["weight_decay"] for fit in fits],
        "optimizer": optimizers[0] if len(optimizers) == 1 else optimizers,
        "predicted_classes": min(fit["predicted_classes"] for fit in fits),
        "n_train": fits[0]["n_train"],
        "n_test": fits[0]["n_test"],
        "correct": corrects,
    }


def difference(a: dict, b: dict, task_name: str) -> dict:
    """``a - b`` in accuracy, two cells on the same test examples: the paired bootstrap's 95% interval, and
    ``real`` when it excludes 0."""
    corrects = [ca.float() - cb.float() for ca, cb in zip(a["correct"], b["correct"])]
    interval = _interval(_bootstrap(corrects, task_name))
    return {
        "difference": a["accuracy"] - b["accuracy"],
        "interval": interval,
        "real": interval[0] > 0 or interval[1] < 0,
    }


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two ``[examples, features]`` matrices: 1 for representations equal up to
    a rotation and scale, near 0 for unrelated ones."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).pow(2).sum()
    norms = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return (cross / norms).item() if norms > 0 else float("nan")


def load_probe_model(path: str, device: str = "cpu"):
    """A saved model and its tokenizer ([`~hf_reservoir.inference.load_for_inference`]), frozen."""
    from .inference import load_for_inference

    model, tokenizer = load_for_inference(path, device)
    model.requires_grad_(False)
    return model, tokenizer


def random_init_twin(model, seed: int = 0):
    """The same architecture at its random initialisation: trained layers re-drawn from torch seed ``seed``,
    reservoirs from the same ``reservoir_seed`` (so equal to the trained model's)."""
    from .modeling_reservoir import ReservoirMarianMTModel

    torch.manual_seed(seed)
    twin = ReservoirMarianMTModel(model.config).to(next(model.parameters()).device).eval()
    return twin.requires_grad_(False)


def model_name(path: str) -> str:
    """``runs/demo/model`` -> ``demo``; any other folder by its own name."""
    path = os.path.normpath(path)
    return os.path.basename(os.path.dirname(path)) if os.path.basename(path) == MODEL_DIR else os.path.basename(path)


def probe_sentences(data_path: str, source_lang: str, target_lang: str, settings: ProbeSettings):
    """``limit`` source sentences of the corpus's training split (a seeded sample, in corpus order) and, where the
    corpus records it, each one's source."""
    from .data import load_parallel_corpus

    train = load_parallel_corpus(data_path, source_lang, target_lang)["train"]
    rows = sorted(random.Random(settings.seed).sample(range(len(train)), min(settings.limit, len(train))))
    train = train.select(rows)
    sentences = [pair[source_lang] for pair in train["translation"]]
    sources = list(train["source"]) if "source" in train.column_names else None
    return sentences, sources


def probe_model(model, tokenizer, tasks: list[ProbeTask], settings: ProbeSettings, progress) -> list[dict]:
    """Every (layer, task) probe of one model, on the stream and on the layer's update, and linear CKA between
    consecutive layers: ``[{"index", "mark", "tasks": {task: cell}, "update": {task: cell}, "cka_previous"}]``."""
    layout = model.config.encoder_layout
    layers = [
        {"index": i, "mark": "E" if i == 0 else layout[i - 1], "tasks": {}, "update": {}}
        for i in range(len(layout) + 1)
    ]
    for task in tasks:
        features = layer_outputs(model, tokenizer, task.sentences, settings.batch_size, task.positions)
        splits = task_splits(task, settings)
        for layer in layers:
            i = layer["index"]
            layer["tasks"][task.name] = probe_cell(features[i], task, splits)
            if i > 0:  # what the layer adds: its output minus its input (the previous layer's output)
                layer["update"][task.name] = probe_cell(features[i] - features[i - 1], task, splits)
            progress.update(1)
    sentences = tasks[0].sentences[:CKA_SENTENCES] if tasks else []
    if sentences:
        states = layer_outputs(model, tokenizer, sentences, settings.batch_size, positions="all")
        for layer in layers[1:]:
            layer["cka_previous"] = linear_cka(states[layer["index"] - 1], states[layer["index"]])
    return layers


def _task_key(task: ProbeTask) -> str:
    """Two models' tasks hold the same examples when their keys match (token-level tasks depend on the tokenizer)."""
    content = json.dumps([task.sentences, task.labels, task.positions, task.split], ensure_ascii=False)
    return f"{task.name}:{zlib.crc32(content.encode('utf-8'))}"


def differences(report_models: dict, task_keys: dict) -> list[dict]:
    """Paired differences: consecutive layers of each model (stream), and each model against the first at the same
    layer (stream and update) where both probed the same examples."""
    found = []
    names = list(report_models)
    for name in names:
        layers = report_models[name]["layers"]
        for layer in layers[1:]:
            for task, cell in layer["tasks"].items():
                below = layers[layer["index"] - 1]["tasks"][task]
                found.append({"model": name, "task": task, "kind": "stream", "a": f"{name} layer {layer['index']}",
                              "b": f"{name} layer {layer['index'] - 1}", **difference(cell, below, task)})  # fmt: skip
    first = names[0] if names else None
    for name in names[1:]:
        for layer, reference in zip(report_models[name]["layers"], report_models[first]["layers"]):
            for kind in ("tasks", "update"):
                for task, cell in layer[kind].items():
                    if task not in reference[kind] or task_keys[name].get(task) != task_keys[first].get(task):
                        continue
                    found.append({"model": name, "task": task, "kind": "stream" if kind == "tasks" else "update",
                                  "a": f"{name} layer {layer['index']}", "b": f"{first} layer {layer['index']}",
                                  **difference(cell, reference[kind][task], task)})  # fmt: skip
    return found


def _drop_hits(report_models: dict) -> None:
    for entry in report_models.values():
        for layer in entry["layers"]:
            for kind in ("tasks", "update"):
                for cell in layer[kind].values():
                    cell.pop("correct", None)


def run_probes(
    model_dirs: list[str],
    output_dir: str,
    data_path: str = "data/de-en",
    settings: ProbeSettings | None = None,
    control: bool | list[int] = False,
    source_lang: str = "de",
    target_lang: str = "en",
    device: str = "cpu",
) -> dict:
    """Probe every model (and the random-init controls of the first: ``control`` True for torch seed 0, or a list of
    seeds); write ``probe.json``, ``probe.md`` and
    ``probe_heatmap.png`` into ``output_dir``; return the report."""
    from tqdm.auto import tqdm

    from .inference import check_model_dir

    settings = settings or ProbeSettings()
    for path in model_dirs:  # every folder first: a wrong one is named before minutes of work
        check_model_dir(path)
    sentences, sources = probe_sentences(data_path, source_lang, target_lang, settings)
    explicit = settings.tasks is not None
    skipped = {}
    if not explicit:  # every task the data supports
        if sources is None:
            skipped["source"] = "the data records no source per pair (only a built corpus does)"
        settings = replace(settings, tasks=[task for task in TASKS if task not in skipped])
    loaded = {model_name(path): (path, *load_probe_model(path, device)) for path in model_dirs}
    control_seeds = [0] if control is True else list(control or [])
    if control_seeds:
        path, model, tokenizer = next(iter(loaded.values()))
        for seed in control_seeds:
            suffix = " (random init)" if seed == 0 else f" (random init, seed {seed})"
            loaded[model_name(path) + suffix] = (
                f"{path} at random initialisation (torch seed {seed})",
                random_init_twin(model, seed),
                tokenizer,
            )
    tasks_of = {}  # per model (token identity depends on the tokenizer): the tasks the sentences can support
    for name, (_, _, tokenizer) in loaded.items():
        tasks_of[name] = []
        for task in build_tasks(sentences, sources, tokenizer, settings):
            problem = task_problem(task)
            if problem is None:
                tasks_of[name].append(task)
            elif explicit:
                raise ValueError(
                    f"the task {task.name!r} cannot be probed on {data_path}: {problem}. Drop it from --tasks, or "
                    "probe more sentences (--limit) of a larger corpus."
                )
            else:
                skipped[task.name] = problem
    if skipped:
        print("Skipped " + "; ".join(f"the task {task!r}: {why}" for task, why in skipped.items()) + ".")
    settings = replace(settings, tasks=[task for task in settings.tasks if task not in skipped])
    report = {"settings": vars(settings), "data": data_path, "sentences": len(sentences), "tasks": {}, "models": {}}
    if skipped:
        report["skipped_tasks"] = skipped
    total = sum(len(model.config.encoder_layout) + 1 for _, model, _ in loaded.values()) * len(settings.tasks)
    task_keys = {}
    with tqdm(total=total, desc="probes (model, layer, task)") as progress:
        for name, (path, model, tokenizer) in loaded.items():
            tasks = [task for task in tasks_of[name] if task.name not in skipped]
            report["tasks"].update({t.name: {"description": t.description, "classes": t.num_classes} for t in tasks})
            task_keys[name] = {task.name: _task_key(task) for task in tasks}
            layers = probe_model(model, tokenizer, tasks, settings, progress)
            report["models"][name] = {"path": path, "encoder_layout": model.config.encoder_layout, "layers": layers}
    report["differences"] = differences(report["models"], task_keys)
    _drop_hits(report["models"])
    write_report(report, output_dir)
    return report


def _cell(cell: dict) -> str:
    low, high = cell["interval"]
    return f"{100 * cell['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown(report: dict) -> str:
    """Per model, two tables (the stream, the layers' updates): rows the layers (E, then L/R), columns the tasks, each
    cell the mean test accuracy (%) over the splits with its 95% bootstrap interval; then every paired difference
    with its interval, the real ones (their interval excludes 0) first."""
    tasks = list(report["tasks"])
    splits = report["settings"].get("splits", 1)
    lines = [
        f"Linear probes on {report['sentences']:,} source sentences of {report['data']} (seed "
        f"{report['settings']['seed']}): test accuracy (%) per encoder layer, the mean over {splits} random "
        f"train/validation/test split(s) with its 95% bootstrap interval ({BOOTSTRAP} resamples of the test "
        "examples); layer 0 (E) is the embeddings, L a trainable layer, R a reservoir. Baseline: the majority class. "
        "**Stream**: the layer's output. **Update**: its output minus its input, what the layer itself adds. CKA: "
        "linear CKA between the layer's token states and the layer below's (1: the same up to rotation and scale).",
        "",
        *[f"- `{name}`: {task['description']} ({task['classes']} classes)" for name, task in report["tasks"].items()],
        *[f"- `{name}` skipped: {why}" for name, why in report.get("skipped_tasks", {}).items()],
    ]
    for name, entry in report["models"].items():
        layers = entry["layers"]
        first = layers[0]["tasks"]
        lines += [
            "",
            f"### {name} (`{entry['encoder_layout']}`)",
            "",
            "Stream:",
            "",
            "| layer | " + " | ".join(tasks) + " | CKA with the layer below |",
            "|---|" + "---|" * (len(tasks) + 1),
            "| baseline | " + " | ".join(f"{100 * first[t]['baseline']:.1f}" for t in tasks) + " | |",
        ]
        for layer in layers:
            cka = layer.get("cka_previous")
            cells = [_cell(layer["tasks"][t]) for t in tasks] + ["" if cka is None else f"{cka:.3f}"]
            lines.append(f"| {layer['index']} {layer['mark']} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Update (output minus input):",
            "",
            "| layer | " + " | ".join(tasks) + " |",
            "|---|" + "---|" * len(tasks),
        ]
        for layer in layers[1:]:
            lines.append(
                f"| {layer['index']} {layer['mark']} | " + " | ".join(_cell(layer["update"][t]) for t in tasks) + " |"
            )
        collapsed = [
            f"{layer['index']} {t}" for layer in layers for kind in ("tasks", "update") for t, c in layer[kind].items()
            if c.get("optimizer") != "lbfgs"
        ]  # fmt: skip
        if collapsed:
            lines.append(f"\nRefitted with Adam where L-BFGS failed: {', '.join(collapsed)}.")
    found = report.get("differences", [])
    real = [d for d in found if d["real"]]
    lines += [
        "",
        "### Differences",
        "",
        f"{len(real)} of {len(found)} differences tested are real (their paired 95% bootstrap interval excludes 0): "
        "consecutive layers of each model (stream), and each model against the first at the same layer (stream "
        "and update). A difference whose interval holds 0 is not evidence of no difference: its interval says how "
        "large a difference the data still allow. Every difference tested is listed, the real ones first.",
        "",
        "| task | kind | a | b | a - b (points) | 95% interval | real |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {d['task']} | {d['kind']} | {d['a']} | {d['b']} | {100 * d['difference']:+.1f} | "
            f"[{100 * d['interval'][0]:+.1f}, {100 * d['interval'][1]:+.1f}] | {'yes' if d['real'] else 'no'} |"
            for d in [*real, *(d for d in found if not d["real"])]
        ],
    ]
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict, path: str) -> None:
    """Accuracy above the majority baseline (percentage points): per model, the stream and the layers' updates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, models = list(report["tasks"]), list(report["models"])
    panels = [(name, kind) for name in models for kind in ("tasks", "update")]
    columns = min(len(panels), 4)  # two models (stream, update) per row
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 + 1.1 * len(tasks) * columns, 4.4 * rows), squeeze=False,
        gridspec_kw={"hspace": 0.6},  # room for the task names above the next row's titles
    )  # fmt: skip
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    image = None
    for axis, (name, kind) in zip(axes.flat, panels):
        layers = [x for x in report["models"][name]["layers"] if kind == "tasks" or x["index"] > 0]
        grid = [[100 * (x[kind][t]["accuracy"] - x[kind][t]["baseline"]) for t in tasks] for x in layers]
        image = axis.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for row, values in enumerate(grid):
            for column, value in enumerate(values):
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", color="white", fontsize=8)
        axis.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(layers)), [f"{x['index']} {x['mark']}" for x in layers])
        axis.set_title(f"{name}: {'stream' if kind == 'tasks' else 'update'}", fontsize=9)
    figure.colorbar(image, ax=axes.ravel().tolist(), label="test accuracy - majority baseline (points)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_report(report: dict, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "probe.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(output_dir, "probe.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    plot_heatmap(report, os.path.join(output_dir, "probe_heatmap.png"))
