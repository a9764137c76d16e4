"""The generated model card (hf_reservoir/hub/model_card.py and its template)."""

import json
import os
import re
import subprocess
import sys

import pytest

from hf_reservoir.hub.model_card import ModelCardFacts, build_model_card
from hf_reservoir.hub.push import export_for_hub
from tests.hub.test_push import fake_results, reservoir_model, save_model_with_tokenizer


def test_model_card_metadata_parses_back(tmp_path):
    from huggingface_hub import ModelCard

    model = reservoir_model()
    model.save_pretrained(tmp_path)
    facts = ModelCardFacts(
        repo_id="someone/reservoir-test",
        config=json.loads((tmp_path / "config.json").read_text()),
        results=fake_results(),
        corpus_stats=fake_results()["corpus_stats"],
    )
    card = build_model_card(facts)
    card.save(tmp_path / "README.md")
    parsed = ModelCard.load(tmp_path / "README.md")
    data = parsed.data.to_dict()
    assert {"translation", "reservoir-transformer", "marian"} <= set(data["tags"])
    assert data["language"] == ["de", "en"]
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in parsed.data.eval_results}
    assert results == {
        ("validation", "bleu"): 12.25,
        ("validation", "chrf"): 40.5,
        ("test", "bleu"): 11.75,
        ("test", "chrf"): 39.0,
    }
    text = parsed.text
    assert "LLRLRLL" in text and "layer 2: bigru" in text and "1,000 / 1,500" in text
    assert "convergence.png" in text and "GPL-2.0-or-later" in text and "shen-etal-2021-reservoir" in text
    assert "10.0 min (600 s)" in text and "generate(" in text
    assert "beam search (5 beams)" in text and "training): greedy decoding" in text
    assert "github.com" not in text  # no placeholder address


@pytest.mark.slow
def test_card_usage_snippet_runs_against_an_exported_folder(tokenizer_dir, tmp_path):
    model_dir, run_dir = tmp_path / "model", tmp_path / "run"
    save_model_with_tokenizer(tokenizer_dir, model_dir, reservoir_type="cnn")
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(fake_results()))
    from hf_reservoir.hub.model_card import write_model_card

    write_model_card(str(model_dir), str(run_dir), "someone/reservoir-test")
    export = tmp_path / "export"
    files = dict(export_for_hub(str(model_dir), str(export), reservoir_storage="seed"))
    assert {
        "config.json",
        "model.safetensors",
        "modeling_reservoir.py",
        "configuration_reservoir.py",
        "source.spm",
        "target.spm",
        "vocab.json",
        "README.md",
        "LICENSE",
    } <= set(files)
    from huggingface_hub import ModelCard

    # The card's licence link resolves inside the folder, and names the code's and the data's licences.
    card_data = ModelCard.load(export / "README.md").data.to_dict()
    licence = (export / card_data["license_link"]).read_text()
    assert "Apache-2.0" in licence and "GPL-2.0-or-later" in licence and "https://spdx.org/licenses/" in licence
    snippet = re.search(r"```python\n(.*?)```", (export / "README.md").read_text(), re.S).group(1)
    snippet = snippet.replace('"someone/reservoir-test"', repr(str(export)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("[")


@pytest.mark.parametrize("reservoir_type", ["bigru", "transformer"])
def test_the_card_says_how_to_run_the_model_with_ctranslate2_or_why_not(tmp_path, reservoir_type):
    from hf_reservoir import ReservoirMarianConfig

    config = ReservoirMarianConfig.from_dict(json.loads(_saved_config(tmp_path)))
    config.reservoir_type = reservoir_type
    facts = ModelCardFacts(repo_id="someone/reservoir-test", config=config.to_dict(), results=fake_results())
    text = build_model_card(facts).text
    if reservoir_type == "bigru":
        assert "cannot run on CTranslate2: encoder layer 2 is a bigru reservoir" in text
    else:
        assert "hf-reservoir export reservoir-test --format ctranslate2" in text and "--engine ctranslate2" in text


def _saved_config(folder) -> str:
    reservoir_model().save_pretrained(folder)
    return (folder / "config.json").read_text()
