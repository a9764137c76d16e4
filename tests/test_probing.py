"""`hf-reservoir probe`: layer extraction, linear probes that learn what is learnable (only that), the layers' updates,
the order task, intervals, bad input."""

import json
import random

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import main
from hf_reservoir.probing import (
    ProbeSettings,
    bigram_shift_pair_task,
    difference,
    fit_probe,
    layer_outputs,
    length_task,
    linear_cka,
    probe_cell,
    probe_model,
    task_splits,
)

from .conftest import WORDS_DE, save_tiny_model_with_tokenizer, tiny_config
from .test_reliability import run_cli

WORDS = "Haus Baum Wasser gehen sehen klein groß rot schnell Tisch Fenster öffnen schließen Datei Ordner".split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))) + "."


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    """A text corpus of 1,200 made-up German sentences and a tiny untrained `LLRLRLL` model with its tokenizer."""
    rng = random.Random(0)
    german = [sentence(rng) for _ in range(1200)]
    corpus = tmp_path_factory.mktemp("corpus")
    for split, rows in (("train", german), ("validation", german[:20]), ("test", german[20:40])):
        (corpus / f"{split}.de").write_text("\n".join(rows) + "\n")
        (corpus / f"{split}.en").write_text("\n".join(r.upper() for r in rows) + "\n")
    folder = tmp_path_factory.mktemp("run") / "model"
    save_tiny_model_with_tokenizer(folder, german, num_encoder_reservoir_layers=2)
    return corpus, folder, german


def test_every_layer_is_extracted_with_padding_left_out(corpus_and_model):
    from hf_reservoir.inference import load_for_inference

    _, folder, german = corpus_and_model
    model, tokenizer = load_for_inference(str(folder))
    batch = [german[0], "Haus.", german[2]]
    together = layer_outputs(model, tokenizer, batch, batch_size=3)
    assert together.shape == (len(model.config.encoder_layout) + 1, 3, model.config.d_model)  # E + 7 layers
    alone = layer_outputs(model, tokenizer, ["Haus."], batch_size=1)
    torch.testing.assert_close(together[:, 1], alone[:, 0], atol=1e-5, rtol=1e-4)  # its padding did not count
    # Token positions: position 0 of a sentence at every layer equals that row of the unpooled states.
    at_zero = layer_outputs(model, tokenizer, batch, batch_size=3, positions=[0, 0, 0])
    assert at_zero.shape == together.shape and not torch.allclose(at_zero, together)


def test_a_probe_learns_length_from_the_embeddings_and_not_shuffled_labels(corpus_and_model):
    from hf_reservoir.inference import load_for_inference

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


@pytest.mark.slow
def test_probe_command_writes_json_table_and_heatmap_with_a_control(corpus_and_model, tmp_path, capsys):
    corpus, folder, _ = corpus_and_model
    out = tmp_path / "probing"
    argv = ["probe", str(folder), "--output_dir", str(out), "--data_path", str(corpus), "--limit", "300"]
    assert main([*argv, "--tasks", "length", "token_identity", "--control_seeds", "0", "1", "--splits", "2"]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert list(report["models"]) == ["run0", "run0 (random init)", "run0 (random init, seed 1)"]
    layers = report["models"]["run0"]["layers"]
    assert [layer["mark"] for layer in layers] == ["E", "L", "L", "R", "L", "R", "L", "L"]
    assert set(layers[3]["tasks"]) == set(layers[3]["update"]) == {"length", "token_identity"}
    cell = layers[3]["update"]["length"]
    assert len(cell["split_accuracies"]) == 2 and cell["interval"][0] <= cell["accuracy"] <= cell["interval"][1]
    assert 0 < layers[3]["cka_previous"] <= 1 + 1e-9 and "cka_previous" not in layers[0]
    assert "correct" not in cell and all(set(d) >= {"a", "b", "interval", "real"} for d in report["differences"])
    # The control is the architecture drawn again from the same seed (torch seed 0, as the fixture drew this
    # untrained model): it must probe exactly alike, which also shows that the probes are deterministic.
    assert report["models"]["run0 (random init)"]["layers"] == layers
    # Another seed draws other trainable layers (the reservoirs are the same: they come from reservoir_seed).
    assert report["models"]["run0 (random init, seed 1)"]["layers"] != layers
    assert (out / "probe_heatmap.png").stat().st_size > 0
    table = (out / "probe.md").read_text()
    assert "### run0 (`LLRLRLL`)" in table and "| 3 R |" in table and "| baseline |" in table
    assert "Update (output minus input):" in table and "### Differences" in table
    # Every difference tested is in the table, real or not, so that prose can quote any of their intervals.
    rows = [line for line in table.split("### Differences")[1].splitlines() if line.endswith(("| yes |", "| no |"))]
    assert len(rows) == len(report["differences"])
    assert sum(row.endswith("| yes |") for row in rows) == sum(d["real"] for d in report["differences"])


def test_bad_input_is_one_error_line(corpus_and_model, tmp_path, capsys):
    corpus, folder, _ = corpus_and_model
    out = ["--output_dir", str(tmp_path / "o"), "--data_path", str(corpus)]
    assert "holds no complete model" in run_cli(["probe", str(tmp_path), *out], capsys)
    no_tokenizer = tmp_path / "no_tokenizer"
    ReservoirMarianMTModel(tiny_config()).save_pretrained(no_tokenizer)
    assert "the tokenizer" in run_cli(["probe", str(no_tokenizer), *out], capsys)
    assert "unknown probing task(s) ['syntax']" in run_cli(["probe", str(folder), *out, "--tasks", "syntax"], capsys)


def test_probe_without_tasks_runs_what_the_data_supports_and_names_what_it_skipped(corpus_and_model, tmp_path, capsys):
    corpus, folder, _ = corpus_and_model  # plain text: no per-pair source
    out = tmp_path / "probing"
    capsys.readouterr()
    argv = ["probe", str(folder), "--output_dir", str(out), "--data_path", str(corpus), "--limit", "300"]
    assert main([*argv, "--splits", "1"]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Skipped")]
    assert len(skipped) == 1 and "'source'" in skipped[0] and "records no source" in skipped[0]
    report = json.loads((out / "probe.json").read_text())
    assert "source" not in report["tasks"] and "length" in report["tasks"] and "source" in report["skipped_tasks"]
    # Asked for explicitly, the task the data cannot support stays an error.
    argv = ["probe", str(folder), "--output_dir", str(tmp_path / "o"), "--data_path", str(corpus), "--tasks", "source"]
    assert "needs a corpus that records each pair's source" in run_cli(argv, capsys)


# Sentences with a strict word order (article, noun, verb, adverb): swapping two adjacent words is visible from the
# two words themselves, so the order task can succeed wherever the states keep the words apart.
ARTICLES, NOUNS = "der die das".split(), "Haus Baum Wasser Tisch Fenster Datei Ordner".split()
VERBS, ADVERBS = "öffnet schließt sieht geht".split(), "schnell langsam gern oft".split()


@pytest.fixture(scope="module")
def ordered_model(tmp_path_factory):
    rng = random.Random(3)
    sentences = [
        " ".join([rng.choice(ARTICLES), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(ADVERBS)]) + "."
        for _ in range(800)
    ]
    folder = tmp_path_factory.mktemp("ordered") / "model"
    filler = [" ".join(rng.sample(WORDS_DE, 8)) for _ in range(400)]  # text enough for a 300-piece tokenizer
    save_tiny_model_with_tokenizer(folder, sentences + filler, num_encoder_reservoir_layers=2)
    from hf_reservoir.inference import load_for_inference

    model, tokenizer = load_for_inference(str(folder))
    return model, tokenizer, sentences


def bag_of_words(module, args, output):
    """A forward hook that makes a layer's output its input's mean over the sentence at every position: a bag of the
    embedded words (their positions added in, summed alike in either order), so word order is gone."""
    states = output[0] if isinstance(output, tuple) else output
    pooled = args[0].mean(dim=1, keepdim=True).expand_as(states)
    return (pooled, *output[1:]) if isinstance(output, tuple) else pooled


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


def test_the_update_of_an_identity_layer_is_at_the_majority_baseline(ordered_model):
    """A layer that returns its input adds nothing: its update probe predicts the majority class, its stream does
    not (it carries everything below)."""
    from tqdm.auto import tqdm

    model, tokenizer, sentences = ordered_model
    settings = ProbeSettings(tasks=["length"], splits=2)
    task = length_task(sentences + [s.replace(".", " heute.") for s in sentences[:300]], random.Random(2))
    hook = model.get_encoder().layers[2].register_forward_hook(lambda module, args, output: args[0])
    try:
        with tqdm(disable=True) as progress:
            layers = probe_model(model, tokenizer, [task], settings, progress)
    finally:
        hook.remove()
    identity = layers[3]  # encoder layer index 2 is row 3 (row 0: the embeddings)
    assert identity["update"]["length"]["accuracy"] == pytest.approx(identity["update"]["length"]["baseline"])
    assert identity["tasks"]["length"]["accuracy"] > identity["tasks"]["length"]["baseline"] + 0.2
    assert identity["cka_previous"] == pytest.approx(1.0)
    assert layers[2]["update"]["length"]["accuracy"] > layers[2]["update"]["length"]["baseline"]


def test_intervals_widen_when_the_test_set_shrinks_and_differences_are_paired(corpus_and_model):
    from hf_reservoir.inference import load_for_inference

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


def test_linear_cka():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(400, 16, generator=torch.Generator().manual_seed(2))) < 0.2


def test_word_content_drops_the_rarest_word_one_at_a_time_and_keeps_the_classes_it_can():
    from collections import Counter

    from hf_reservoir.probing import word_content_task

    fillers = " ".join(f"füller{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(50))  # ranks 0-49: skipped
    # Alone, only "cc" (60) qualifies at first; "dd" shares its sentences with "aa" and "bb". Dropping every rare
    # word at once keeps "cc" alone (one class: no task); dropping the rarest first frees "dd" (10 + 60 + 60).
    rows = [f"{fillers} aa dd"] * 60 + [f"{fillers} bb dd"] * 60 + [f"{fillers} cc"] * 60 + [f"{fillers} dd"] * 10
    task = word_content_task(rows, random.Random(0), words=4, min_train=40)
    assert task.num_classes == 2
    counts = Counter(task.labels)
    assert sorted(counts.values()) == [60, 130] and all(n * 0.8 >= 40 for n in counts.values())
