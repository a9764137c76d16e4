"""The CTranslate2 engine (hf_reservoir/evaluation/ctranslate2_engine.py): the export computes what the model computes
(greedy output identical, token log-probabilities within float rounding), for pre- and post-LN, tied and untied
output embeddings, transformer and FFN reservoirs, seed-only folders; what it cannot express is refused by layer."""

import io
import json
import os
import sys

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import main
from tests.conftest import save_tiny_model_with_tokenizer
from tests.test_reliability import run_cli

ctranslate2 = pytest.importorskip("ctranslate2", reason="pip install -e '.[ctranslate2]' (CI installs it)")

GERMAN = [f"Satz {i} wählen Sie Extras Optionen {'Datei ' * (i % 5)}" for i in range(200)]
SOURCES = ["Satz 5 wählen Sie", "Extras Optionen Satz 17", "Satz", "Datei Datei Satz 3 Optionen", "Wählen Sie"]


def _model(tmp_path, name: str, **overrides) -> str:
    folder = tmp_path / name
    save_tiny_model_with_tokenizer(folder, GERMAN, **overrides)
    return str(folder)


def _hf(folder: str, sentences: list[str], beams: int = 1) -> tuple[list[str], list[list[int]]]:
    from hf_reservoir.evaluation.inference import load_for_inference

    model, tokenizer = load_for_inference(folder)
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**batch, num_beams=beams, max_length=24, do_sample=False)
    return tokenizer.batch_decode(generated, skip_special_tokens=True), generated.tolist()


def _ct2(export: str, sentences: list[str], beams: int = 1) -> list[str]:
    from hf_reservoir.evaluation.ctranslate2_engine import iter_translations_ct2, load_ctranslate2

    translator, tokenizer, record = load_ctranslate2(export)
    return next(iter_translations_ct2(translator, tokenizer, sentences, record, num_beams=beams, max_length=24))


def _log_probs(folder: str, export: str, sentences: list[str]) -> tuple[list[float], list[float]]:
    """Per-token log-probabilities of HF's greedy output, scored by HF and by CTranslate2."""
    from hf_reservoir.evaluation.inference import load_for_inference

    model, tokenizer = load_for_inference(folder)
    _, generated = _hf(folder, sentences)
    translator = ctranslate2.Translator(export, device="cpu")
    hf_scores, ct2_scores = [], []
    for sentence, row in zip(sentences, generated):
        target = [t for t in row[1:] if t != tokenizer.pad_token_id]
        source = tokenizer([sentence], return_tensors="pt")
        with torch.no_grad():
            logits = model(**source, decoder_input_ids=torch.tensor([row[: len(target) + 1]])).logits[0]
        hf_scores += torch.log_softmax(logits, -1)[range(len(target)), target].tolist()
        pieces = tokenizer.convert_ids_to_tokens(source["input_ids"][0].tolist())
        scored = translator.score_batch([pieces], [tokenizer.convert_ids_to_tokens(target[:-1])])[0]
        ct2_scores += scored.log_probs
    return hf_scores, ct2_scores


@pytest.mark.parametrize(
    "overrides",
    [
        {"layernorm_position": "pre", "num_encoder_reservoir_layers": 2},
        {"layernorm_position": "post", "num_encoder_reservoir_layers": 2},
        {"layernorm_position": "pre", "num_encoder_reservoir_layers": 2, "reservoir_type": "ffn"},
        {"layernorm_position": "pre", "num_encoder_reservoir_layers": 2, "tie_word_embeddings": False},
    ],
    ids=["pre-LN", "post-LN", "ffn-reservoirs", "untied"],
)
def test_the_export_is_exact(tmp_path, overrides):
    from hf_reservoir.evaluation.ctranslate2_engine import export_ctranslate2

    folder = _model(tmp_path, "model", **overrides)
    export = export_ctranslate2(folder, str(tmp_path / "ct2"))
    hf_text, _ = _hf(folder, SOURCES)
    assert _ct2(export, SOURCES) == hf_text
    hf_scores, ct2_scores = _log_probs(folder, export, SOURCES)
    assert len(hf_scores) == len(ct2_scores) > len(SOURCES)
    assert max(abs(a - b) for a, b in zip(hf_scores, ct2_scores)) < 1e-4
    # Beam search: both engines keep 4 beams, length penalty 1; CTranslate2 with patience 2 (see the engine).
    assert _ct2(export, SOURCES, beams=4) == _hf(folder, SOURCES, beams=4)[0]


def test_a_seed_only_folder_exports_after_its_reservoirs_are_rebuilt(tmp_path):
    from hf_reservoir.evaluation.ctranslate2_engine import export_ctranslate2

    folder = _model(tmp_path, "model", layernorm_position="pre", num_encoder_reservoir_layers=2)
    seed_only = tmp_path / "seed_only"
    model = ReservoirMarianMTModel.from_pretrained(folder)
    model.config.reservoir_storage = "seed"
    model.save_pretrained(seed_only)
    for name in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(folder, name)):
            (seed_only / name).write_bytes(open(os.path.join(folder, name), "rb").read())
    export = export_ctranslate2(str(seed_only), str(tmp_path / "ct2"))
    assert _ct2(export, SOURCES) == _hf(folder, SOURCES)[0]


def test_bigru_reservoirs_are_refused_by_layer(tmp_path, capsys):
    folder = _model(tmp_path, "model", num_encoder_reservoir_layers=2, reservoir_type="bigru")
    line = run_cli(["export", folder, "--output_dir", str(tmp_path / "ct2")], capsys)
    assert "encoder layer 2 is a bigru reservoir" in line and "HF engine" in line
    assert not (tmp_path / "ct2").exists()


def test_translate_with_ctranslate2_keeps_every_line(tmp_path, monkeypatch, capsys):
    folder = _model(tmp_path, "model", layernorm_position="pre", num_encoder_reservoir_layers=2)
    assert main(["export", folder, "--output_dir", str(tmp_path / "ct2")]) == 0
    record = json.loads((tmp_path / "ct2" / "hf_reservoir_export.json").read_text())
    assert record["quantization"] == "float32" and record["max_position_embeddings"] == 64
    text = "Satz 5 wählen Sie\n\n" + "Satz " * 300 + "\nWählen Sie\n"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the on-the-fly export's cache
    outputs = {}
    # An exported folder, a model folder exported on the fly, and the HF engine on the same lines and settings.
    for model, engine in ((str(tmp_path / "ct2"), "ctranslate2"), (folder, "ctranslate2"), (folder, "hf")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        capsys.readouterr()
        assert main(["translate", model, "--engine", engine, "--num_beams", "1"]) == 0
        captured = capsys.readouterr()
        lines = captured.out.split("\n")[:-1]
        assert len(lines) == 4 and lines[1] == "" and all(lines[i] for i in (0, 2, 3))
        assert "line 3 of stdin is longer than 64 tokens" in captured.err
        outputs[(model, engine)] = lines
    assert len({tuple(lines) for lines in outputs.values()}) == 1, outputs


def test_without_the_package_the_engine_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    folder = _model(tmp_path, "model")
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Satz 1\n")))
    line = run_cli(["translate", folder, "--engine", "ctranslate2"], capsys)
    assert 'pip install -e ".[ctranslate2]"' in line


def test_evaluate_with_ctranslate2_scores_as_the_hf_engine(tmp_path, monkeypatch, capsys):
    folder = _model(tmp_path, "model", layernorm_position="pre", num_encoder_reservoir_layers=2)
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.de").write_text("\n".join(SOURCES) + "\n")
    (data / "test.en").write_text("\n".join(s.replace("Satz", "sentence") for s in SOURCES) + "\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    results = {}
    for engine in ("hf", "ctranslate2"):
        out = tmp_path / engine
        argv = ["evaluate", folder, "--split", "test", "--data_path", str(data), "--output_dir", str(out)]
        assert main([*argv, "--engine", engine, "--num_beams", "1"]) == 0
        results[engine] = json.loads((out / "results.json").read_text())
        results[engine]["lines"] = (out / "generated_predictions.txt").read_text()
    assert results["ctranslate2"]["engine"] == "ctranslate2"
    assert results["ctranslate2"]["lines"] == results["hf"]["lines"]
    assert results["ctranslate2"]["bleu"] == results["hf"]["bleu"]
