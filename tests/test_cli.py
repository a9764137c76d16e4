"""The `hf-reservoir` command line: every subcommand answers --help, translate reads stdin."""

import io
import subprocess
import sys

import pytest

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.cli import COMMANDS, main

from .conftest import save_tiny_model_with_tokenizer, tiny_config

SUBCOMMANDS = ["train", *COMMANDS]


def test_help_lists_every_subcommand():
    """The top-level help's list of commands (argparse's ``{a,b,...}``) is exactly the commands the CLI has."""
    import re

    done = subprocess.run([sys.executable, "-m", "hf_reservoir.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    listed = re.search(r"\{([a-z,-]+)\}", done.stdout)
    assert listed, done.stdout
    expected = {
        "prepare",
        "train",
        "sweep",
        "evaluate",
        "translate",
        "bench",
        "push",
        "probe",
        "slow-starts",
        "export",
    }
    assert set(listed.group(1).split(",")) == expected == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_help_exits_0(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_translate_reads_stdin_and_keeps_blank_lines(tmp_path, monkeypatch, capsys):
    save_tiny_model_with_tokenizer(tmp_path / "model", [f"Satz {i} wählen Sie Extras" for i in range(200)])
    monkeypatch.setattr(sys, "stdin", io.StringIO("Wählen Sie Extras\n\nSatz 3\n"))
    capsys.readouterr()
    assert main(["translate", str(tmp_path / "model"), "--num_beams", "2", "--max_length", "8"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # three lines in, three out, the blank kept


def test_translate_refuses_a_folder_without_a_tokenizer(tmp_path, capsys):
    ReservoirMarianMTModel(tiny_config()).save_pretrained(tmp_path)
    capsys.readouterr()
    assert main(["translate", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "lacks vocab.json and the SentencePiece files (the tokenizer)" in error and "config.json" not in error


def test_yaml_mappings_reach_the_training_arguments_intact(tmp_path):
    from hf_reservoir.cli import parse_training_argv

    config = tmp_path / "c.yaml"
    config.write_text(
        f"output_dir: {tmp_path}/out\nlr_scheduler_type: cosine_with_min_lr\n"
        "lr_scheduler_kwargs:\n  min_lr: 1.0e-05\nreport_to: [tensorboard]\n"
    )
    _, _, training_args, _ = parse_training_argv([str(config)])
    assert training_args.lr_scheduler_kwargs == {"min_lr": 1e-05}
    assert training_args.report_to == ["tensorboard"]  # a one-item list for a one-value option


def test_every_multi_word_flag_takes_both_spellings(tmp_path, capsys):
    """``--output_dir`` (the docs' spelling, transformers') and ``--output-dir`` reach the same setting, for the
    argparse commands as for ``train``."""
    from hf_reservoir.benchmarks.host_overhead import main as host_overhead

    for spelling in ("--output_dir", "--output-dir"):
        with pytest.raises(SystemExit) as exit_:  # refused for its --steps, after the output folder was parsed
            host_overhead(["--steps", "2", spelling, str(tmp_path / "x")])
        assert exit_.value.code == 2
    capsys.readouterr()
    for spelling in ("--source_lang", "--source-lang"):
        with pytest.raises(SystemExit):
            main(["prepare", spelling, "fr", "--help"])
        assert "--output_dir OUTPUT_DIR, --output-dir OUTPUT_DIR" in capsys.readouterr().out
    assert "unrecognized" not in capsys.readouterr().err
