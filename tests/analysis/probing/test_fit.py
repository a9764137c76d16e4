"""Fitting probes and their statistics (hf_reservoir/analysis/probing/fit.py): learning, intervals, paired
differences."""

import random

from hf_reservoir.analysis.probing.features import layer_outputs
from hf_reservoir.analysis.probing.fit import difference, fit_probe, probe_cell, task_splits
from hf_reservoir.analysis.probing.tasks import ProbeSettings, length_task


def test_a_probe_learns_length_from_the_embeddings_and_not_shuffled_labels(corpus_and_model):
    from hf_reservoir.evaluation.inference import load_for_inference

    _, folder, german = corpus_and_model
    model, tokenizer = load_for_inference(str(folder))
    task = length_task(german, random.Random(1))
    embeddings = layer_outputs(model, tokenizer, task.sentences)[0]
    learned = fit_probe(embeddings, task.labels, task.split, task.num_classes)
    assert learned["accuracy"] > learned["baseline"] + 0.25, learned
    shuffled = task.labels[:]
    random.Random(2).shuffle(shuffled)
    chance = fit_probe(embeddings, shuffled, task.split, task.num_classes)
    assert chance["accuracy"] < chance["baseline"] + 0.12, chance
    assert learned["n_test"] == 120 and learned["weight_decay"] in (1e-4, 1e-3, 1e-2, 1e-1)


def test_intervals_widen_when_the_test_set_shrinks_and_differences_are_paired(corpus_and_model):
    from hf_reservoir.evaluation.inference import load_for_inference

    _, folder, german = corpus_and_model
    model, tokenizer = load_for_inference(str(folder))
    settings = ProbeSettings(splits=3)
    widths = []
    for count in (1200, 300):
        task = length_task(german[:count], random.Random(1))
        cell = probe_cell(layer_outputs(model, tokenizer, task.sentences)[0], task, task_splits(task, settings))
        assert len(cell["split_accuracies"]) == 3 and cell["interval"][0] <= cell["accuracy"] <= cell["interval"][1]
        widths.append(cell["interval"][1] - cell["interval"][0])
    assert widths[1] > 1.5 * widths[0], widths  # a quarter of the test examples: about twice the width
    # A cell against itself differs by exactly 0 (not real); against a probe of shuffled labels, really.
    shuffled = task.labels[:]
    random.Random(5).shuffle(shuffled)
    noise = probe_cell(
        layer_outputs(model, tokenizer, task.sentences)[0],
        length_task(german[:count], random.Random(1)).__class__(**{**vars(task), "labels": shuffled}),
        task_splits(task, settings),
    )
    same = difference(cell, cell, "length")
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0] and not same["real"]
    assert difference(cell, noise, "length")["real"]
