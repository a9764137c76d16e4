"""Issue #15's acceptance: a plain (non-editable) ``pip install .`` into a fresh venv, then the CLI from a
folder outside the repository: train, evaluate, translate and a two-cell sweep."""

import json
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO_ROOT, tiny_training_config


def _run(command, cwd, stdin=None, timeout=900):
    done = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_non_editable_install_runs_the_whole_workflow_outside_the_repository(corpus_dir, tokenizer_dir, tmp_path):
    import torch

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip, cli = str(venv / "bin" / "pip"), str(venv / "bin" / "hf-reservoir")
    torch_spec = f"torch=={torch.__version__.split('+')[0]}"  # the CPU build this machine installs from disk
    _run([pip, "install", "-q", torch_spec, REPO_ROOT], cwd=tmp_path, timeout=1800)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    site = _run([str(venv / "bin" / "python"), "-c", "import hf_reservoir; print(hf_reservoir.__file__)"], outside)
    assert str(venv) in site.stdout and REPO_ROOT not in site.stdout  # the installed copy, not the checkout

    config = tiny_training_config(
        corpus_dir, tokenizer_dir, train_sample_seed=1, encoder_layers=3, num_encoder_reservoir_layers=1, max_steps=20
    )
    config["output_dir"] = "run"
    (outside / "tiny.yaml").write_text(yaml.safe_dump(config))
    _run([cli, "train", "tiny.yaml"], outside)
    model = outside / "run" / "model"
    evaluate = [cli, "evaluate", str(model), "--data_path", str(corpus_dir), "--split", "test"]
    _run([*evaluate, "--output_dir", "scores"], outside)
    test_pairs = (corpus_dir / "test.de").read_text().count("\n")
    assert (outside / "scores" / "generated_predictions.txt").read_text().count("\n") == test_pairs
    assert "bleu" in json.loads((outside / "scores" / "results.json").read_text())
    translated = _run([cli, "translate", str(model)], outside, stdin="Wählen Sie Extras\n")
    assert len(translated.stdout.splitlines()) == 1

    config.pop("output_dir")
    (outside / "base.yaml").write_text(yaml.safe_dump(config))
    sweep = {
        "train_config": "base.yaml",
        "output_dir": "grid",
        "models": ["regular", "ffn"],
        "updatable_layers": [1],
        "seeds": [1],
        "reservoir_layers": 1,
        "budget_seconds": None,
        "sharing": "lanes",
        "slice_seconds": 1,
    }
    (outside / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    done = _run([cli, "sweep", "sweep.yaml"], outside)
    assert "regular-N1-seed1: done" in done.stdout and "ffn-N1-seed1: done" in done.stdout
    assert (outside / "table.md").exists()
