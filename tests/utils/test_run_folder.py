"""The names of a run folder's files (hf_reservoir/utils/run_folder.py): what counts as an earlier run, JSON round
trips."""

from hf_reservoir.utils.run_folder import RECIPE_FILE, RESULTS_FILE, earlier_run_files, read_run_file, write_run_file


def test_an_earlier_run_is_its_records_checkpoints_model_and_tokenizer_and_nothing_else(tmp_path):
    assert earlier_run_files(str(tmp_path / "missing")) == []
    for name in ("checkpoint-200", "checkpoint-1000", "model", "tokenizer", "lanes", "checkpoint-final"):
        (tmp_path / name).mkdir()
    for name in (RESULTS_FILE, RECIPE_FILE, "convergence.json", "train.log", "notes.txt"):
        (tmp_path / name).write_text("{}")
    # train.log (the sweep's log, appended to on resume), a user's notes and other folders are not the run's records.
    assert earlier_run_files(str(tmp_path)) == sorted(
        ["checkpoint-1000", "checkpoint-200", "convergence.json", "model", RECIPE_FILE, RESULTS_FILE, "tokenizer"]
    )


def test_run_files_round_trip_as_indented_json(tmp_path):
    path = write_run_file(str(tmp_path), RESULTS_FILE, {"bleu": 25.5, "steps": [1, 2]})
    assert read_run_file(str(tmp_path), RESULTS_FILE) == {"bleu": 25.5, "steps": [1, 2]}
    assert open(path, encoding="utf-8").read().startswith('{\n  "bleu"') and path.endswith(RESULTS_FILE)
