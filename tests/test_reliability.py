"""A user's mistakes get one clear `error:` line (exit status 2) before training, and nothing they had is lost."""

import json
import os

import pytest

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import main as cli_main
from hf_reservoir.trainer.arguments import DataArguments, ModelArguments

from .conftest import tiny_config


def run_cli(argv, capsys) -> str:
    """Run `hf-reservoir ARGV`, require exit status 2, and return its one `error:` line."""
    capsys.readouterr()  # what the test printed before
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def pairs(german: list[str]):
    from datasets import Dataset

    return Dataset.from_dict({"translation": [{"de": g, "en": g.replace("Satz", "sentence")} for g in german]})


def save_tokenizer_stub(folder) -> None:
    os.makedirs(folder, exist_ok=True)
    (folder / "vocab.json").write_text("{}")


# 1. A tokenizer that does not match the model ------------------------------------------------------


# 2. A used output_dir --------------------------------------------------------------------------------


# 3. Sinusoidal position tables stay frozen after loading ----------------------------------------------


def test_position_tables_stay_frozen_after_from_pretrained(tmp_path):
    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2))
    model.save_pretrained(tmp_path)
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path)
    frozen = {n for n, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"} <= frozen


# 4. A reservoir type without reservoirs ----------------------------------------------------------------


# 5. Shape flags that contradict a loaded model, and an edited config.json ---------------------------------


def test_shape_flags_that_contradict_a_saved_model_are_refused(tmp_path):
    from hf_reservoir.trainer.checks import check_shape_flags

    config = tiny_config(num_encoder_reservoir_layers=2)
    check_shape_flags(ModelArguments(), config)  # nothing set: the saved model decides
    same = ModelArguments(d_model=config.d_model, reservoir_type=["transformer"], num_encoder_reservoir_layers=2)
    check_shape_flags(same, config)
    with pytest.raises(ValueError, match=r"d_model: asked 64, the saved model has 32.*Drop those flags"):
        check_shape_flags(ModelArguments(d_model=64), config)
    with pytest.raises(ValueError, match="num_encoder_reservoir_layers: asked 3, the saved model has 2"):
        check_shape_flags(ModelArguments(num_encoder_reservoir_layers=3), config)


def test_an_edited_config_json_is_refused_on_load(tmp_path):
    ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2)).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["reservoir_type"] = ["ffn", "ffn"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=f"The weights in {tmp_path} do not fit its config.json"):
        ReservoirMarianMTModel.from_pretrained(tmp_path)


# 6. BLEU without generation ------------------------------------------------------------------------------


def test_predict_with_generate_is_turned_on_for_bleu(tmp_path):
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir.trainer.run import ConvergenceArguments, run_training

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    assert not args.predict_with_generate
    with pytest.raises(ValueError, match="does not exist"):  # stops at the missing data, before any training
        run_training(
            ModelArguments(), DataArguments(data_path=str(tmp_path / "nowhere")), args, ConvergenceArguments()
        )
    assert args.predict_with_generate


# 7. Output paths and checkpoints ---------------------------------------------------------------------------


def test_a_file_where_the_model_goes_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model").write_text("not a folder")
    line = run_cli(["train", "--output_dir", str(out), "--data_path", str(tmp_path / "nowhere")], capsys)
    assert f"{out / 'model'} is a file" in line


def test_an_output_dir_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = run_cli(["train", "--output_dir", str(blocker / "run"), "--data_path", str(tmp_path / "nowhere")], capsys)
    assert f"output_dir={blocker / 'run'} cannot be written" in line


# 8. Settings checked before training -------------------------------------------------------------------------


def test_sequences_longer_than_the_position_table_are_refused_before_training(tmp_path, capsys):
    line = run_cli(
        [
            "train",
            "--output_dir",
            str(tmp_path / "out"),
            "--max_position_embeddings",
            "64",
            "--max_source_length",
            "96",
        ],
        capsys,
    )
    assert "max_source_length=96 exceeds the model's max_position_embeddings=64" in line


def test_a_vocabulary_too_large_for_the_data_is_a_clear_error(tmp_path):
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    with pytest.raises(ValueError, match="could not train a 4000-piece vocabulary.*Lower vocab_size"):
        train_marian_tokenizer(pairs(["ein kleiner Satz", "noch einer"]), "de", "en", str(tmp_path / "tok"), 4000)
    assert not (tmp_path / "tok").exists()


# 9. Tracebacks for ordinary mistakes ------------------------------------------------------------------------------


def test_a_missing_or_invalid_config_file_is_one_error_line(tmp_path, capsys):
    line = run_cli(["train", str(tmp_path / "missing.yaml")], capsys)
    assert "missing.yaml does not exist" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("d_model: [128\n")
    assert "is not valid YAML" in run_cli(["train", str(broken)], capsys)
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["d_model", 64]))
    assert "must hold a mapping" in run_cli(["train", str(listed)], capsys)


def test_unknown_flags_exit_with_status_2(tmp_path, capsys):
    line = run_cli(["train", "--output_dir", str(tmp_path), "--reservoir_flavour", "x"], capsys)
    assert "unknown flag 'reservoir_flavour'" in line


def test_push_without_a_token_stops_before_the_network(tmp_path, capsys, monkeypatch):
    from unittest import mock

    model_dir = tmp_path / "model"
    model = ReservoirMarianMTModel(tiny_config())
    model.save_pretrained(model_dir)
    save_tokenizer_stub(model_dir)  # a complete folder: the token check is what stops it
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no saved login
    with mock.patch("huggingface_hub.HfApi", side_effect=AssertionError("no network call without a token")):
        line = run_cli(["push", str(model_dir), "someone/model"], capsys)
    assert "no Hub token" in line and "hf auth login" in line


# 10. Clear messages for bad data and files --------------------------------------------------------------------


def write_splits(folder, suffix: str, make) -> None:
    folder.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        make(folder, split, suffix)


def test_an_all_blank_validation_split_is_named(tmp_path):
    from hf_reservoir.corpus.loading import DataError, load_parallel_corpus

    def make(folder, split, _):
        rows = "   \n\n" if split == "validation" else "ein Satz\nnoch einer\n"
        (folder / f"{split}.de").write_text(rows)
        (folder / f"{split}.en").write_text(rows.replace("ein Satz", "a sentence"))

    write_splits(tmp_path / "d", "", make)
    with pytest.raises(DataError, match="Every pair of the validation split of .* is blank"):
        load_parallel_corpus(str(tmp_path / "d"), data_format="text")


def test_empty_split_files_are_named(tmp_path):
    from hf_reservoir.corpus.loading import DataError, load_parallel_corpus

    def make(folder, split, _):
        (folder / f"{split}.de").write_text("" if split == "test" else "ein Satz\n")
        (folder / f"{split}.en").write_text("" if split == "test" else "a sentence\n")

    write_splits(tmp_path / "d", "", make)
    with pytest.raises(DataError, match=r"\[test\] holds no pairs"):
        load_parallel_corpus(str(tmp_path / "d"), data_format="text")


def test_a_non_string_jsonl_value_names_its_line(tmp_path):
    from hf_reservoir.corpus.loading import DataError, load_parallel_corpus

    def make(folder, split, _):
        rows = [{"de": "ein Satz", "en": "a sentence"}, {"de": "zwei", "en": 2}]
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    write_splits(tmp_path / "d", "", make)
    with pytest.raises(DataError, match=r"train.jsonl line 2: the values of \['en'\] are \[2\], not text"):
        load_parallel_corpus(str(tmp_path / "d"), data_format="jsonl")


def test_a_byte_order_mark_is_not_part_of_the_first_sentence(tmp_path):
    from hf_reservoir.corpus.loading import load_parallel_corpus

    def make(folder, split, _):
        (folder / f"{split}.de").write_bytes("\ufeffein Satz\n".encode())
        (folder / f"{split}.en").write_text("a sentence\n")

    write_splits(tmp_path / "d", "", make)
    corpus = load_parallel_corpus(str(tmp_path / "d"), data_format="text")
    assert corpus["train"][0]["translation"]["de"] == "ein Satz"


def test_a_list_where_one_value_belongs_is_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path}/out\nd_model: [64, 128]\n")
    line = run_cli(["train", str(config)], capsys)
    assert "d_model takes one value, but the file gives the list [64, 128]" in line
