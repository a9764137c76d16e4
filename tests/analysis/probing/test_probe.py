"""`hf-reservoir probe`: layer extraction, linear probes that learn what is learnable (only that), the layers' updates,
the order task, intervals, bad input."""

import json
import random

import pytest

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.analysis.probing.probe import probe_model
from hf_reservoir.analysis.probing.tasks import ProbeSettings, length_task
from hf_reservoir.cli import main
from tests.conftest import tiny_config
from tests.test_reliability import run_cli


@pytest.mark.slow
def test_probe_command_writes_json_table_and_heatmap_with_a_control(corpus_and_model, tmp_path, capsys):
    corpus, folder, _ = corpus_and_model
    out = tmp_path / "probing"
    argv = ["probe", str(folder), "--output_dir", str(out), "--data_path", str(corpus), "--limit", "300"]
    assert main([*argv, "--tasks", "length", "token_identity", "--control_seeds", "0", "1", "--splits", "2"]) == 0
    report = json.loads((out / "probe.json").read_text())
    name = folder.parent.name  # the run folder's name: tmp_path_factory numbers it (run0, run1, ...)
    assert list(report["models"]) == [name, f"{name} (random init)", f"{name} (random init, seed 1)"]
    layers = report["models"][name]["layers"]
    assert [layer["mark"] for layer in layers] == ["E", "L", "L", "R", "L", "R", "L", "L"]
    assert set(layers[3]["tasks"]) == set(layers[3]["update"]) == {"length", "token_identity"}
    cell = layers[3]["update"]["length"]
    assert len(cell["split_accuracies"]) == 2 and cell["interval"][0] <= cell["accuracy"] <= cell["interval"][1]
    assert 0 < layers[3]["cka_previous"] <= 1 + 1e-9 and "cka_previous" not in layers[0]
    assert "correct" not in cell and all(set(d) >= {"a", "b", "interval", "real"} for d in report["differences"])
    # The control is the architecture drawn again from the same seed (torch seed 0, as the fixture drew this
    # untrained model): it must probe exactly alike, which also shows that the probes are deterministic.
    assert report["models"][f"{name} (random init)"]["layers"] == layers
    # Another seed draws other trainable layers (the reservoirs are the same: they come from reservoir_seed).
    assert report["models"][f"{name} (random init, seed 1)"]["layers"] != layers
    assert (out / "probe_heatmap.png").stat().st_size > 0
    table = (out / "probe.md").read_text()
    assert f"### {name} (`LLRLRLL`)" in table and "| 3 R |" in table and "| baseline |" in table
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


def test_sentences_longer_than_the_position_table_are_truncated_and_counted(corpus_and_model, tmp_path, capsys):
    """A model with 64 positions and corpus sentences of ~300 words: the probe truncates them, as translate does,
    says how many it cut, and records it (it used to end in an IndexError from the position embedding)."""
    corpus, folder, _ = corpus_and_model
    long_corpus = tmp_path / "long"
    long_corpus.mkdir()
    rows = [" ".join([line.rstrip(".")] * 25) + "." for line in (corpus / "train.de").read_text().splitlines()]
    for split in ("train", "validation", "test"):
        (long_corpus / f"{split}.de").write_text("\n".join(rows) + "\n")
        (long_corpus / f"{split}.en").write_text("\n".join(r.upper() for r in rows) + "\n")
    out = tmp_path / "probe"
    argv = ["probe", str(folder), "--output_dir", str(out), "--data_path", str(long_corpus), "--tasks", "length"]
    assert main([*argv, "--splits", "1", "--limit", "300"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "probe.json").read_text())
    cut = report["truncated_sentences"]
    assert cut["to_tokens"] == 64 and 0 < cut["count"] <= 300
    assert f"Truncated {cut['count']} of 300 sentences to 64 tokens" in printed
