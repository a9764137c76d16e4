"""A run records its whole recipe, and a resume refuses a changed one (unless told to change it on purpose)."""

import hashlib
import json
import os

import pytest

from hf_reservoir.cli import main as cli_main
from hf_reservoir.trainer.recipe import recipe_differences


def train_argv(data, out, *extra) -> list[str]:
    return [
        "train",
        "--data_path", str(data), "--output_dir", str(out), "--vocab_size", "300",
        "--d_model", "32", "--encoder_layers", "3", "--decoder_layers", "1", "--encoder_ffn_dim", "64",
        "--decoder_ffn_dim", "64", "--num_encoder_reservoir_layers", "1", "--max_position_embeddings", "32",
        "--max_source_length", "24", "--max_target_length", "24", "--dropout", "0.1", "--attention_dropout", "0.05",
        "--per_device_train_batch_size", "16", "--max_steps", "6", "--eval_strategy", "steps", "--eval_steps", "3",
        "--save_strategy", "steps", "--save_steps", "3", "--predict_with_generate", "true", "--report_to", "none",
        "--use_cpu", "true", "--disable_tqdm", "true", "--evaluate_test", "false", "--learning_rate", "3e-3",
        *extra,
    ]  # fmt: skip


def folder_digest(folder) -> dict[str, str]:
    digests = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def one_error_line(argv, capsys) -> str:
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def cut_run(text_corpus, tmp_path_factory):
    """A run stopped after its first checkpoint (step 3 of 6): its folder, to copy for each resume."""
    out = tmp_path_factory.mktemp("cut") / "run"
    assert cli_main(train_argv(text_corpus, out, "--max_train_samples", "200", "--train_sample_seed", "7")) == 0
    # Cut it back to the state of a run interrupted after step 3: the later checkpoint and the results go.
    import shutil

    for name in ("checkpoint-6", "model", "results.json", "convergence.json", "convergence.png"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    assert (out / "checkpoint-3").is_dir() and (out / "recipe.json").is_file()
    return out


def copy_run(cut_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(cut_run, out)
    return out


def test_results_record_the_training_pairs_used_and_the_dropouts(text_corpus, tmp_path):
    out = tmp_path / "run"
    assert cli_main(train_argv(text_corpus, out, "--max_train_samples", "120", "--train_sample_seed", "5")) == 0
    results = json.loads((out / "results.json").read_text())
    data = results["data"]
    assert data["corpus_splits"]["train"] == 400  # the corpus's
    assert data["run_splits"]["train"] == 120  # the run's
    assert data["train_pairs"]["used"] == 120 and data["train_pairs"]["train_sample_seed"] == 5
    assert "seed 5" in data["train_pairs"]["how"]
    recipe = results["recipe"]["recipe"]
    assert recipe["model"]["dropout"] == 0.1 and recipe["model"]["attention_dropout"] == 0.05
    assert recipe["model"]["d_model"] == 32 and recipe["model"]["num_encoder_reservoir_layers"] == 1
    assert recipe["data"]["max_train_samples"] == 120 and recipe["data"]["train_sample_seed"] == 5
    assert recipe["optimizer"]["learning_rate"] == 3e-3 and recipe["seed"]["seed"] == 42
    assert recipe["batching"]["per_device_train_batch_size"] == 16 and recipe["batching"]["max_tokens"] is None
    assert results["recipe"]["changes"] == []
    assert json.loads((out / "recipe.json").read_text()) == results["recipe"]


def test_resume_with_a_changed_model_shape_is_one_error_and_touches_nothing(cut_run, text_corpus, tmp_path, capsys):
    out = copy_run(cut_run, tmp_path)
    before = folder_digest(out)
    argv = train_argv(text_corpus, out, "--max_train_samples", "200", "--train_sample_seed", "7")
    line = one_error_line([*argv, "--d_model", "64", "--resume_from_checkpoint", "last"], capsys)
    assert "d_model (32 -> 64)" in line and "new output_dir" in line and "--allow_recipe_change" in line
    assert folder_digest(out) == before


def test_resume_with_batching_added_is_refused_unless_allowed_and_then_recorded(
    cut_run, text_corpus, tmp_path, capsys
):
    out = copy_run(cut_run, tmp_path)
    before = folder_digest(out)
    argv = [
        *train_argv(text_corpus, out, "--max_train_samples", "200", "--train_sample_seed", "7"),
        "--max_tokens", "300", "--resume_from_checkpoint", "last",
    ]  # fmt: skip
    line = one_error_line(argv, capsys)
    assert "max_tokens (unset -> 300)" in line and "d_model" not in line
    assert folder_digest(out) == before
    # The same change on purpose: the run resumes at step 3 and records the change and its step.
    assert cli_main([*argv, "--allow_recipe_change", "true"]) == 0
    results = json.loads((out / "results.json").read_text())
    (change,) = results["recipe"]["changes"]
    assert change["field"] == "max_tokens" and change["step"] == 3
    assert change["before"] is None and change["after"] == 300
    assert results["recipe"]["recipe"]["batching"]["max_tokens"] == 300  # the recipe now in force
    resumed = [part for part in results["history"] if part["from_step"] == 3]
    assert resumed and resumed[0]["recipe_changes"][0]["field"] == "max_tokens"
    assert results["convergence"]["steps_trained"] == 6


def test_settings_outside_the_recipe_may_change_on_resume(cut_run, text_corpus, tmp_path):
    out = copy_run(cut_run, tmp_path)
    argv = train_argv(text_corpus, out, "--max_train_samples", "200", "--train_sample_seed", "7")
    extra = ["--per_device_eval_batch_size", "5", "--logging_steps", "2", "--resume_from_checkpoint", "last"]
    assert cli_main([*argv, *extra]) == 0
    assert json.loads((out / "results.json").read_text())["recipe"]["changes"] == []


def test_recipe_differences_compare_every_section_and_numbers_by_value():
    recorded = {"model": {"d_model": 32}, "optimizer": {"learning_rate": 0.002}}
    given = {"model": {"d_model": 32}, "optimizer": {"learning_rate": 2e-3}, "data": {"vocab_size": 300}}
    assert recipe_differences(recorded, given) == []  # a field an older record lacks is not a change
    given["optimizer"]["learning_rate"] = 3e-3
    assert recipe_differences(recorded, given) == [("optimizer", "learning_rate", 0.002, 0.003)]


def test_recipe_differences_compare_reservoir_types_per_layer():
    # Recipes recorded before the config stored one type per reservoir layer hold the type as given: the same
    # model must not read as a change (a running sweep resumes), a different type must.
    regular = {"model": {"encoder_reservoir_layers": [], "reservoir_type": "transformer"}}
    assert recipe_differences(regular, {"model": {"encoder_reservoir_layers": [], "reservoir_type": []}}) == []
    two = {"model": {"encoder_reservoir_layers": [2, 4], "reservoir_type": "ffn"}}
    assert (
        recipe_differences(two, {"model": {"encoder_reservoir_layers": [2, 4], "reservoir_type": ["ffn"] * 2}}) == []
    )
    changed = {"model": {"encoder_reservoir_layers": [2, 4], "reservoir_type": ["ffn", "cnn"]}}
    assert recipe_differences(two, changed) == [("model", "reservoir_type", ["ffn", "ffn"], ["ffn", "cnn"])]
