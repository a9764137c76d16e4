"""Probe tasks (hf_reservoir/analysis/probing/tasks.py): order decodable where it is kept, word-content classes."""

import random

from hf_reservoir.analysis.probing.features import layer_outputs
from hf_reservoir.analysis.probing.fit import fit_probe
from hf_reservoir.analysis.probing.tasks import bigram_shift_pair_task
from tests.analysis.probing.conftest import bag_of_words


def test_the_order_task_succeeds_where_order_is_kept_and_not_where_it_is_gone(ordered_model):
    model, tokenizer, sentences = ordered_model
    task = bigram_shift_pair_task(sentences, tokenizer, random.Random(1))
    assert len(task.labels) > 700 and set(task.labels) == {0, 1}
    kept = layer_outputs(model, tokenizer, task.sentences, positions=task.positions)
    embeddings = fit_probe(kept[0], task.labels, task.split, 2)  # embeddings plus positions
    assert embeddings["accuracy"] > 0.8, embeddings
    # The same sentences read through a model whose first layer pools its input into the sentence's mean.
    hook = model.get_encoder().layers[0].register_forward_hook(bag_of_words)
    try:
        pooled = layer_outputs(model, tokenizer, task.sentences, positions=task.positions)
    finally:
        hook.remove()
    gone = fit_probe(pooled[1], task.labels, task.split, 2)  # the pooling layer's output
    assert gone["accuracy"] < 0.62 and gone["accuracy"] < embeddings["accuracy"] - 0.25, gone  # chance: 80 test pairs
    # The sentence-mean task erases order the same way: the pair task exists because of it.
    mean_pooled = layer_outputs(model, tokenizer, task.sentences)[0]
    assert fit_probe(mean_pooled, task.labels, task.split, 2)["accuracy"] < 0.62


def test_word_content_drops_the_rarest_word_one_at_a_time_and_keeps_the_classes_it_can():
    from collections import Counter

    from hf_reservoir.analysis.probing.tasks import word_content_task

    fillers = " ".join(f"füller{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(50))  # ranks 0-49: skipped
    # Alone, only "cc" (60) qualifies at first; "dd" shares its sentences with "aa" and "bb". Dropping every rare
    # word at once keeps "cc" alone (one class: no task); dropping the rarest first frees "dd" (10 + 60 + 60).
    rows = [f"{fillers} aa dd"] * 60 + [f"{fillers} bb dd"] * 60 + [f"{fillers} cc"] * 60 + [f"{fillers} dd"] * 10
    task = word_content_task(rows, random.Random(0), words=4, min_train=40)
    assert task.num_classes == 2
    counts = Counter(task.labels)
    assert sorted(counts.values()) == [60, 130] and all(n * 0.8 >= 40 for n in counts.values())
