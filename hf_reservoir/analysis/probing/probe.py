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

import json
import os
import random
import zlib
from dataclasses import replace

from ...utils.run_folder import MODEL_DIR
from .features import layer_outputs, linear_cka, load_probe_model, random_init_twin
from .fit import difference, probe_cell, task_splits
from .report import write_report
from .tasks import TASKS, ProbeSettings, ProbeTask, build_tasks, task_problem

CKA_SENTENCES = 500  # sentences whose token states linear CKA compares


def model_name(path: str) -> str:
    """``runs/demo/model`` -> ``demo``; any other folder by its own name."""
    path = os.path.normpath(path)
    return os.path.basename(os.path.dirname(path)) if os.path.basename(path) == MODEL_DIR else os.path.basename(path)


def fit_to_models(sentences: list[str], models: list[tuple]) -> tuple[list[str], int, int]:
    """The sentences as every model can read them: one longer than the smallest position table among ``models``
    (``(model, tokenizer)`` pairs) keeps its first pieces, as [`~hf_reservoir.evaluation.inference.source_limit`]
    truncates a source for translation (the end-of-sentence token is the last). All models read the same text, so
    that their probes stay comparable. Returns the sentences, how many were cut, and the limit in tokens."""
    from ...evaluation.inference import source_limit

    limit = min(source_limit(model) for model, _ in models)
    tokenizer = models[0][1]
    fitted, cut = [], 0
    for sentence in sentences:
        pieces = tokenizer.tokenize(sentence)
        if len(pieces) + 1 > limit:  # + </s>
            sentence, cut = tokenizer.convert_tokens_to_string(pieces[: limit - 1]), cut + 1
        fitted.append(sentence)
    return fitted, cut, limit


def probe_sentences(data_path: str, source_lang: str, target_lang: str, settings: ProbeSettings):
    """``limit`` source sentences of the corpus's training split (a seeded sample, in corpus order) and, where the
    corpus records it, each one's source."""
    from ...corpus.loading import load_parallel_corpus

    train = load_parallel_corpus(data_path, source_lang, target_lang, splits=("train",))["train"]
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

    from ...evaluation.inference import check_model_dir

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
    sentences, cut, limit = fit_to_models(sentences, [(m, t) for _, m, t in loaded.values()])
    if cut:
        print(
            f"Truncated {cut} of {len(sentences)} sentences to {limit} tokens, the longest source every model can "
            "encode (its max_position_embeddings); the probes read the truncated sentences, as translate would."
        )
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
    if cut:
        report["truncated_sentences"] = {"count": cut, "to_tokens": limit}
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
