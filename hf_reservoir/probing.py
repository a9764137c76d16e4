"""Probing: what each encoder layer of a (reservoir) model represents (``hf-reservoir probe``).

The plan behind Reservoir Transformers ends with a probing analysis; the paper backs its claim that random layers
"represent linguistic phenomena" with probing. Here every encoder layer's output (layer 0: the embeddings, then
each layer, marked ``L`` trainable or ``R`` reservoir from the saved config) is read for German source sentences of
the corpus, with the model frozen and in eval mode, and a **linear probe** (multinomial logistic regression, in
torch: a dependency-free fit of a 128-wide linear map needs no scikit-learn) is trained per (layer, task).

Tasks (SentEval's design, Conneau et al. 2018, built from our corpus without outside tools; each deterministic
from ``seed``):

* ``length``: the sentence's word count in 6 equal-frequency bins (bin edges from the probe's training split);
* ``word_content``: which of ``word_content_words`` mid-frequency words (frequency ranks 50 onward, lowercased,
  letters only, in at least 10 sentences) the sentence holds, among sentences that hold exactly one of them;
* ``bigram_shift``: were two adjacent words swapped (at a random position, in a random half of the sentences of
  four words or more)?
* ``source``: the corpus source (LibreOffice help, UI strings, Ding dictionary), for corpora that record it;
* ``token_identity`` (token-level): the token id at a position, from that position's vector, for the
  ``token_identity_classes`` most frequent pieces (up to 4 positions per sentence): does a token's identity survive
  the random layers?

Sentence tasks use the mean of the layer's vectors over the sentence's tokens (padding excluded). Sentences come
from the corpus's training split (the models saw them in training, as SentEval-style probes of an MT encoder
usually do) and are split 80/10/10 into the probe's train, validation and test sets; the L2 penalty is chosen on
validation (never on test) from ``WEIGHT_DECAYS``, and test accuracy is reported beside the majority-class
baseline (the most frequent class of the probe's training set, scored on test).

A **control** (``--control``) adds the first model's architecture at its random initialisation: nothing trained,
its reservoirs the same as the trained model's (they come from ``reservoir_seed``), so a reader can tell what
training added.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, replace

import torch

from .run_folder import MODEL_DIR

TASKS = ("length", "word_content", "bigram_shift", "source", "token_identity")
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
WORD = re.compile(r"^[a-zäöüß]+$")


@dataclass
class ProbeTask:
    """One probing data set: a sentence (or token position) per example, a label, and the fixed splits."""

    name: str
    sentences: list[str]
    labels: list[int]
    num_classes: int
    split: list[str]  # "train", "validation" or "test", per example
    positions: list[int] | None = None  # token-level tasks: the position in the tokenized sentence
    description: str = ""


@dataclass
class ProbeSettings:
    # None: every task the data supports (a task the data cannot support is skipped, with a note); a task
    # named here that the data cannot support is an error.
    tasks: list[str] | None = None
    limit: int = 6000
    seed: int = 1
    word_content_words: int = 100
    token_identity_classes: int = 100
    batch_size: int = 64

    def __post_init__(self):
        unknown = sorted(set(self.tasks or ()) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown probing task(s) {unknown}; choose from {', '.join(TASKS)}.")
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


def word_content_task(sentences: list[str], rng: random.Random, words: int) -> ProbeTask:
    tokens = [{w.lower().strip(".,;:!?()\"'") for w in _words(s)} for s in sentences]
    frequency = Counter(w for sentence in tokens for w in sentence if WORD.match(w))
    ranked = [w for w, n in frequency.most_common() if n >= 10][50:]  # skip the 50 most frequent (function words)
    vocabulary = {w: i for i, w in enumerate(sorted(ranked[:words]))}
    kept = [(s, (sentence & vocabulary.keys())) for s, sentence in zip(sentences, tokens)]
    kept = [(s, hits.pop()) for s, hits in kept if len(hits) == 1]
    description = f"which of {len(vocabulary)} mid-frequency words the sentence holds (sentences with exactly one)"
    return ProbeTask(
        "word_content",
        [s for s, _ in kept],
        [vocabulary[w] for _, w in kept],
        len(vocabulary),
        _splits(len(kept), rng),
        description=description,
    )


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
        "word_content": lambda rng: word_content_task(sentences, rng, settings.word_content_words),
        "bigram_shift": lambda rng: bigram_shift_task(sentences, rng),
        "source": lambda rng: source_task(sentences, sources, rng),
        "token_identity": lambda rng: token_identity_task(sentences, tokenizer, rng, settings.token_identity_classes),
    }
    return [builders[name](random.Random(f"{settings.seed}-{name}")) for name in settings.tasks]


@torch.no_grad()
def layer_outputs(model, tokenizer, sentences: list[str], batch_size: int = 64, positions=None) -> torch.Tensor:
    """Every encoder layer's output per sentence: ``[layers + 1, sentences, d_model]``.

    Index 0 is the embeddings (token embedding, scaled, plus positions: the input of the first layer), then each
    layer's output. Without ``positions``, each sentence's vectors are averaged over its tokens (padding excluded);
    with them, the vector at ``positions[i]`` of sentence ``i`` is taken.
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


def _fit_probe(features: torch.Tensor, labels: list[int], split: list[str], num_classes: int) -> dict:
    y = torch.tensor(labels)
    parts = {name: torch.tensor([s == name for s in split]) for name in ("train", "validation", "test")}
    train = features[parts["train"]]
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    x = (features - mean) / std  # standardised on the probe's train split only
    best = None
    for decay in WEIGHT_DECAYS:
        linear = torch.nn.Linear(x.shape[1], num_classes)
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

        def closure(linear=linear, optimizer=optimizer, decay=decay):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(x[parts["train"]]), y[parts["train"]])
            loss = loss + decay * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            predicted = linear(x).argmax(1)
        accuracy = {name: (predicted[mask] == y[mask]).float().mean().item() for name, mask in parts.items()}
        if best is None or accuracy["validation"] > best["validation_accuracy"]:
            best = {"validation_accuracy": accuracy["validation"], "accuracy": accuracy["test"], "weight_decay": decay}
    majority = Counter(y[parts["train"]].tolist()).most_common(1)[0][0]
    best["baseline"] = (y[parts["test"]] == majority).float().mean().item()
    best["n_train"], best["n_test"] = int(parts["train"].sum()), int(parts["test"].sum())
    return best


def load_probe_model(path: str, device: str = "cpu"):
    """A saved model and its tokenizer ([`~hf_reservoir.inference.load_for_inference`]), frozen."""
    from .inference import load_for_inference

    model, tokenizer = load_for_inference(path, device)
    model.requires_grad_(False)
    return model, tokenizer


def random_init_twin(model):
    """The same architecture at its random initialisation: trained layers re-drawn, reservoirs from the same
    ``reservoir_seed`` (so equal to the trained model's)."""
    from .modeling_reservoir import ReservoirMarianMTModel

    torch.manual_seed(0)
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
    """Every (layer, task) probe of one model: ``[{"index", "mark", "tasks": {task: result}}]``."""
    layout = model.config.encoder_layout
    layers = [{"index": i, "mark": "E" if i == 0 else layout[i - 1], "tasks": {}} for i in range(len(layout) + 1)]
    for task in tasks:
        features = layer_outputs(model, tokenizer, task.sentences, settings.batch_size, task.positions)
        for layer, layer_features in zip(layers, features):
            layer["tasks"][task.name] = fit_probe(layer_features, task.labels, task.split, task.num_classes)
            progress.update(1)
    return layers


def run_probes(
    model_dirs: list[str],
    output_dir: str,
    data_path: str = "data/de-en",
    settings: ProbeSettings | None = None,
    control: bool = False,
    source_lang: str = "de",
    target_lang: str = "en",
    device: str = "cpu",
) -> dict:
    """Probe every model (and the random-init control of the first); write ``probe.json``, ``probe.md`` and
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
    if control:
        path, model, tokenizer = next(iter(loaded.values()))
        loaded[f"{model_name(path)} (random init)"] = (
            f"{path} at random initialisation",
            random_init_twin(model),
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
    with tqdm(total=total, desc="probes (model, layer, task)") as progress:
        for name, (path, model, tokenizer) in loaded.items():
            tasks = [task for task in tasks_of[name] if task.name not in skipped]
            report["tasks"].update({t.name: {"description": t.description, "classes": t.num_classes} for t in tasks})
            layers = probe_model(model, tokenizer, tasks, settings, progress)
            report["models"][name] = {"path": path, "encoder_layout": model.config.encoder_layout, "layers": layers}
    write_report(report, output_dir)
    return report


def markdown(report: dict) -> str:
    """One table per model: rows the layers (E, then L/R), columns the tasks; test accuracy, baseline on top."""
    tasks = list(report["tasks"])
    lines = [
        f"Linear probes on {report['sentences']:,} source sentences of {report['data']} (seed "
        f"{report['settings']['seed']}): test accuracy (%) per encoder layer; layer 0 (E) is the embeddings, "
        "L a trainable layer, R a reservoir. Baseline: the majority class.",
        "",
        *[f"- `{name}`: {task['description']} ({task['classes']} classes)" for name, task in report["tasks"].items()],
        *[f"- `{name}` skipped: {why}" for name, why in report.get("skipped_tasks", {}).items()],
    ]
    for name, entry in report["models"].items():
        first = entry["layers"][0]["tasks"]
        lines += [
            "",
            f"### {name} (`{entry['encoder_layout']}`)",
            "",
            "| layer | " + " | ".join(tasks) + " |",
            "|---|" + "---|" * len(tasks),
            "| baseline | " + " | ".join(f"{100 * first[t]['baseline']:.1f}" for t in tasks) + " |",
        ]
        for layer in entry["layers"]:
            cells = [f"{100 * layer['tasks'][t]['accuracy']:.1f}" for t in tasks]
            lines.append(f"| {layer['index']} {layer['mark']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict, path: str) -> None:
    """Accuracy above the majority baseline (percentage points), models side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, models = list(report["tasks"]), list(report["models"])
    figure, axes = plt.subplots(1, len(models), figsize=(3.2 + 1.1 * len(tasks) * len(models), 4), squeeze=False)
    for axis, name in zip(axes[0], models):
        layers = report["models"][name]["layers"]
        grid = [[100 * (x["tasks"][t]["accuracy"] - x["tasks"][t]["baseline"]) for t in tasks] for x in layers]
        image = axis.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for row, values in enumerate(grid):
            for column, value in enumerate(values):
                axis.text(column, row, f"{value:.0f}", ha="center", va="center", color="white", fontsize=8)
        axis.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(layers)), [f"{x['index']} {x['mark']}" for x in layers])
        axis.set_title(name, fontsize=9)
    figure.colorbar(image, ax=axes[0].tolist(), label="test accuracy - majority baseline (points)")
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
