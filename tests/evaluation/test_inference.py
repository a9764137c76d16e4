"""`translate` and `evaluate` never lose a line, and the main job prints no warning a user cannot act on (#26)."""

import io
import json
import logging
import sys

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import main
from tests.conftest import save_tiny_model_with_tokenizer, tiny_config
from tests.test_reliability import run_cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained model with a real 300-piece tokenizer; its position table holds 64 tokens."""
    folder = tmp_path_factory.mktemp("model")
    save_tiny_model_with_tokenizer(folder, [f"Satz {i} wählen Sie Extras" for i in range(200)])
    return folder


LONG = " ".join(["Wählen Sie Extras"] * 200)  # ~600 words, far beyond the 64 positions


def translate_stdin(model_dir, text, monkeypatch, capsys, *flags) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text if isinstance(text, bytes) else text.encode())))
    capsys.readouterr()
    code = main(["translate", str(model_dir), "--max_length", "6", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_line_longer_than_the_model_is_truncated_with_one_warning(model_dir, monkeypatch, capsys):
    code, out, err = translate_stdin(model_dir, f"Satz 3\n{LONG}\n\nWählen Sie Extras\n", monkeypatch, capsys)
    assert code == 0
    assert out.count("\n") == 4 and out.split("\n")[2] == ""  # four lines in, four out, the blank one kept
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "line 2 of stdin" in warnings[0] and "64 tokens" in warnings[0], err


def test_translate_output_equals_generate_line_by_line(model_dir, monkeypatch, capsys):
    from hf_reservoir.evaluation.inference import load_for_inference

    lines = ["Satz 3 wählen Sie", "Extras", "Satz 12 wählen Sie Extras Satz 4"]
    code, out, _ = translate_stdin(model_dir, "\n".join(lines) + "\n", monkeypatch, capsys, "--batch_size", "2")
    assert code == 0
    model, tokenizer = load_for_inference(str(model_dir))
    expected = []
    for line in lines:  # one sentence at a time: no padding, no reordering
        generated = model.generate(**tokenizer([line], return_tensors="pt"), max_length=6)
        expected.append(tokenizer.decode(generated[0], skip_special_tokens=True).strip())
    assert out.split("\n")[:-1] == expected


def test_output_is_written_as_chunks_finish(model_dir, monkeypatch, capsys):
    """An interrupted run keeps what it translated: the first chunk is on stdout before the second starts."""
    import hf_reservoir.evaluation.inference as inference

    written_before_second_chunk = []
    real = inference.iter_translations

    def watch(*args, **kwargs):
        for index, chunk in enumerate(real(*args, **kwargs)):
            if index == 1:
                written_before_second_chunk.append(capsys.readouterr().out)
            yield chunk

    monkeypatch.setattr(inference, "iter_translations", watch)
    code, out, _ = translate_stdin(model_dir, "Satz 1\n\nSatz 2\nSatz 3\n", monkeypatch, capsys, "--batch_size", "1")
    assert code == 0
    # Chunks of 16 batches of one line: the first chunk (lines 1-3 of 4, a blank one among them) arrives alone.
    lines = ["Satz 1", "", "Satz 2", "Satz 3"] + ["Satz 9"] * 16
    code, _, _ = translate_stdin(model_dir, "\n".join(lines) + "\n", monkeypatch, capsys, "--batch_size", "1")
    assert code == 0
    assert written_before_second_chunk and written_before_second_chunk[-1].count("\n") == 17


@pytest.mark.parametrize("where", ["stdin", "file"])
def test_latin1_input_names_the_line(model_dir, monkeypatch, capsys, tmp_path, where):
    data = "Satz 1\nSatz 2\nGrüße aus Köln\n".encode("latin-1")
    if where == "stdin":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        error = run_cli(["translate", str(model_dir)], capsys)
        assert "standard input line 3 is not valid utf-8" in error
    else:
        path = tmp_path / "latin1.txt"
        path.write_bytes(data)
        error = run_cli(["translate", str(model_dir), str(path)], capsys)
        assert f"{path} line 3 is not valid utf-8" in error
    assert "--encoding" in error
    # The flag the message names reads it.
    path = tmp_path / "again.txt"
    path.write_bytes(data)
    capsys.readouterr()
    assert main(["translate", str(model_dir), str(path), "--encoding", "latin-1", "--max_length", "6"]) == 0
    assert capsys.readouterr().out.count("\n") == 3


def test_read_lines_keeps_one_line_per_input_line():
    from hf_reservoir.evaluation.inference import read_lines

    # A form feed or a Unicode line separator is not a line break for us (str.splitlines would split there).
    assert read_lines("\ufeffa\r\nb\x0cc\u2028d\n\n".encode(), "x") == ["a", "b\x0cc\u2028d", ""]
    assert read_lines(b"no newline at the end", "x") == ["no newline at the end"]
    assert read_lines(b"", "x") == []


@pytest.mark.parametrize("command", ["evaluate", "translate", "push"])
def test_an_empty_folder_is_named_as_the_missing_model(command, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {
        "evaluate": ["evaluate", str(empty), "--output_dir", str(tmp_path / "out"), "--data_path", "nowhere"],
        "translate": ["translate", str(empty)],
        "push": ["push", str(empty), "someone/x", "--dry_run"],
    }[command]
    error = run_cli(argv, capsys)
    assert str(empty) in error and "config.json" in error and "model.safetensors" in error, error
    assert "nowhere" not in error  # the model is checked before the data


def test_a_model_without_weights_or_of_another_kind_is_named(model_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "model.safetensors").unlink()
    error = run_cli(["translate", str(copy)], capsys)
    assert "lacks model.safetensors" in error and "config.json" not in error.split("lacks")[1]
    shutil.copyfile(model_dir / "model.safetensors", copy / "model.safetensors")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    assert "holds a 'bert' model" in run_cli(["translate", str(copy)], capsys)


def test_loading_the_best_checkpoint_warns_only_about_keys_really_missing(tmp_path, caplog):
    from safetensors.torch import load_file
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2))
    model.save_pretrained(tmp_path / "checkpoint")
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True)
    trainer = ReservoirSeq2SeqTrainer(model=model, args=args)
    saved = load_file(tmp_path / "checkpoint" / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        trainer._issue_warnings_after_load(model.load_state_dict(saved, strict=False))
    assert "missing keys" not in caplog.text  # tied embeddings and sinusoidal tables are missing by design
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()
    del saved["model.decoder.layers.0.fc1.weight"]  # a real loss must still be reported, and only it
    with caplog.at_level(logging.WARNING):
        trainer._issue_warnings_after_load(model.load_state_dict(saved, strict=False))
    assert "missing keys" in caplog.text and "fc1" in caplog.text and "embed_tokens" not in caplog.text


def test_no_pin_memory_on_a_machine_without_an_accelerator():
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir.trainer.checks import settle_training_arguments

    args = Seq2SeqTrainingArguments(output_dir="unused", report_to="none")  # the main job's: no use_cpu
    assert args.dataloader_pin_memory  # the Trainer's default, which warns on the CPU
    settle_training_arguments(args)
    assert args.dataloader_pin_memory is torch.cuda.is_available()


def test_a_folder_of_other_languages_says_which_flags_read_it(tmp_path):
    from hf_reservoir.corpus.loading import DataError, load_parallel_corpus

    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.fr").write_text("Bonjour.\n")
        (tmp_path / f"{split}.en").write_text("Hello.\n")
    with pytest.raises(DataError, match="--source_lang fr --target_lang en"):
        load_parallel_corpus(str(tmp_path), "de", "en")


def test_evaluate_scores_the_pair_the_tokenizer_was_trained_for():
    """A fr-en model evaluated without --source_lang is scored on fr-en (it once read the de-en default, a BLEU of
    2 instead of 43, without a word); a language other than the tokenizer's is refused by name."""
    from types import SimpleNamespace

    from hf_reservoir.evaluation.inference import model_language_pair

    french = SimpleNamespace(source_lang="fr", target_lang="en")
    assert model_language_pair(french, None, None, "m") == ("fr", "en")
    assert model_language_pair(french, "fr", "en", "m") == ("fr", "en")
    with pytest.raises(ValueError, match="--source_lang de does not match m: its tokenizer was trained with "):
        model_language_pair(french, "de", None, "m")
    assert model_language_pair(SimpleNamespace(), None, None, "m") == ("de", "en")  # a tokenizer that records none
    assert model_language_pair(SimpleNamespace(), "ja", "en", "m") == ("ja", "en")


def test_evaluate_refuses_another_language_before_reading_data(model_dir, tmp_path, capsys):
    argv = ["evaluate", str(model_dir), "--source_lang", "fr", "--output_dir", str(tmp_path / "out")]
    error = run_cli([*argv, "--data_path", "nowhere"], capsys)
    assert "--source_lang fr does not match" in error and "source_lang de (a de-en model)" in error, error
    assert "nowhere" not in error


def test_evaluate_reads_only_the_split_it_scores(model_dir, tmp_path, capsys):
    """A user's own test set: a folder with test.* and validation.* and no train.* is scored (it used to be refused
    for the missing train.de); asking for a split the folder lacks names that split and its files."""
    data = tmp_path / "own"
    data.mkdir()
    for split in ("test", "validation"):
        (data / f"{split}.de").write_text("Satz 1 wählen Sie Extras\nSatz 2\n")
        (data / f"{split}.en").write_text("sentence 1\nsentence 2\n")
    out = tmp_path / "eval"
    argv = ["evaluate", str(model_dir), "--split", "test", "--data_path", str(data), "--output_dir", str(out)]
    assert main([*argv, "--num_beams", "1"]) == 0
    assert len((out / "generated_predictions.txt").read_text().splitlines()) == 2
    argv = ["evaluate", str(model_dir), "--split", "train", "--data_path", str(data), "--output_dir", str(out) + "2"]
    line = run_cli(argv, capsys)
    assert "The train split is missing" in line and "train.de" in line
