"""`hf-reservoir probe` (#24): layer extraction, linear probes that learn what is learnable (only that), bad input."""

import json
import random

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import main
from hf_reservoir.probing import fit_probe, layer_outputs, length_task

from .conftest import save_tiny_model_with_tokenizer, tiny_config
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
    assert main([*argv, "--tasks", "length", "token_identity", "--control"]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert list(report["models"]) == ["run0", "run0 (random init)"]
    layers = report["models"]["run0"]["layers"]
    assert [layer["mark"] for layer in layers] == ["E", "L", "L", "R", "L", "R", "L", "L"]
    assert set(layers[3]["tasks"]) == {"length", "token_identity"}
    # The control is the architecture drawn again from the same seed (torch seed 0, as the fixture drew this
    # untrained model): it must probe exactly alike, which also shows that the probes are deterministic.
    assert report["models"]["run0 (random init)"]["layers"] == layers
    assert (out / "probe_heatmap.png").stat().st_size > 0
    table = (out / "probe.md").read_text()
    assert "### run0 (`LLRLRLL`)" in table and "| 3 R |" in table and "| baseline |" in table


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
    assert main(["probe", str(folder), "--output_dir", str(out), "--data_path", str(corpus), "--limit", "300"]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Skipped")]
    assert len(skipped) == 1 and "'source'" in skipped[0] and "records no source" in skipped[0]
    report = json.loads((out / "probe.json").read_text())
    assert "source" not in report["tasks"] and "length" in report["tasks"] and "source" in report["skipped_tasks"]
    # Asked for explicitly, the task the data cannot support stays an error.
    argv = ["probe", str(folder), "--output_dir", str(tmp_path / "o"), "--data_path", str(corpus), "--tasks", "source"]
    assert "needs a corpus that records each pair's source" in run_cli(argv, capsys)
