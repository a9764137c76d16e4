"""The checks before training (hf_reservoir/trainer/checks.py): the tokenizer against the model, the output folder,
resume."""

import os

import pytest

from hf_reservoir.corpus.tokenization import check_tokenizer_matches_model
from hf_reservoir.trainer.arguments import DataArguments
from hf_reservoir.trainer.checks import (
    check_output_dir,
    check_resume_layout,
    prepare_output_dir,
    resolve_tokenizer,
)
from hf_reservoir.utils.run_folder import last_checkpoint
from tests.conftest import tiny_config
from tests.test_reliability import pairs, run_cli, save_tokenizer_stub


@pytest.mark.parametrize("size", [50, 500])
def test_a_tokenizer_of_another_size_than_the_model_is_refused(size):
    class FakeTokenizer:
        pad_token_id, eos_token_id = 95, 0

        def __len__(self):
            return size

    with pytest.raises(ValueError, match=f"{size} source tokens but the model's vocab_size is 96"):
        check_tokenizer_matches_model(FakeTokenizer(), tiny_config())


def test_a_model_folder_brings_its_own_tokenizer(tmp_path):
    model_dir = tmp_path / "model"
    save_tokenizer_stub(model_dir)
    path, train = resolve_tokenizer(DataArguments(), str(model_dir), str(tmp_path / "out"))
    assert (path, train) == (str(model_dir), False)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ValueError, match=f"model_name_or_path={bare} holds no tokenizer.*--tokenizer_path"):
        resolve_tokenizer(DataArguments(), str(bare), str(tmp_path / "out"))


def test_an_empty_tokenizer_path_is_refused_not_trained_into(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"tokenizer_path={empty} holds no tokenizer"):
        resolve_tokenizer(DataArguments(tokenizer_path=str(empty)), None, str(tmp_path / "out"))
    assert os.listdir(empty) == []


def test_a_used_output_dir_is_refused_and_keeps_its_bytes(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "results.json").write_text('{"bleu": 12.3}')
    (out / "model" / "model.safetensors").write_bytes(b"weights")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    line = run_cli(["train", "--output_dir", str(out), "--data_path", str(tmp_path / "nowhere")], capsys)
    assert str(out) in line and "--overwrite_output_dir" in line and "--resume_from_checkpoint last" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # Resuming or an explicit overwrite is allowed, and the check itself changes nothing; preparing the folder for an
    # overwrite clears the earlier run's files, for a resume it keeps them.
    for resuming, overwrite in ((True, False), (False, True)):
        check_output_dir(str(out), resuming=resuming, overwrite=overwrite)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    prepare_output_dir(str(out), resuming=True, overwrite=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    prepare_output_dir(str(out), resuming=False, overwrite=True)
    assert os.listdir(out) == []


def test_a_reused_tokenizer_of_another_size_is_refused(tmp_path):
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    train = pairs([f"Satz Nummer {i} mit einigen Wörtern {i * 7}" for i in range(300)])
    train_marian_tokenizer(train, "de", "en", str(tmp_path / "out" / "tokenizer"), vocab_size=300)
    with pytest.raises(ValueError, match="holds a 300-piece tokenizer.*vocab_size=500"):
        resolve_tokenizer(DataArguments(vocab_size=500), None, str(tmp_path / "out"))


def test_resume_skips_an_incomplete_last_checkpoint(tmp_path):
    good, broken = tmp_path / "checkpoint-20", tmp_path / "checkpoint-40"
    for folder in (good, broken):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (good / "trainer_state.json").write_text("{}")
    (good / "model.safetensors").write_bytes(b"x" * 16)
    (broken / "model.safetensors").write_bytes(b"")  # cut short: empty weights, no trainer state
    assert last_checkpoint(str(tmp_path)) == str(good)


def test_an_invalid_config_in_a_checkpoint_is_named(tmp_path):
    from hf_reservoir.trainer.checks import check_resume_layout

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"Cannot resume from {tmp_path}: its {tmp_path / 'config.json'}"):
        check_resume_layout(str(tmp_path), tiny_config())


def test_resume_with_a_changed_layout_is_refused(tmp_path):
    tiny_config(num_encoder_reservoir_layers=2).save_pretrained(tmp_path)
    check_resume_layout(str(tmp_path), tiny_config(num_encoder_reservoir_layers=2))
    with pytest.raises(ValueError, match="Refusing to resume") as excinfo:
        check_resume_layout(str(tmp_path), tiny_config(num_encoder_reservoir_layers=3))
    assert "encoder_reservoir_layers" in str(excinfo.value)
