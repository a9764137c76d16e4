"""The training command's flags (hf_reservoir/trainer/flags.py): config files take exact keys, flags are never
abbreviated, and a mistake is one `error:` line."""

import pytest

from hf_reservoir.cli import main
from tests.test_reliability import run_cli


@pytest.mark.parametrize(
    ("key", "closest"),
    [("learning_rat", "learning_rate"), ("max_step", "max_steps"), ("num_reservoir_layers", None)],
)
def test_a_config_file_takes_exact_keys_and_names_an_unknown_one(tmp_path, capsys, key, closest):
    """A misspelt key of a train config is an error naming the key as a key of that file (argparse's prefix matching
    used to train `learning_rat: 0.01` with lr 0.01, and `max_step` as max_steps)."""
    config = tmp_path / "train.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\n{key}: 3\n")
    line = run_cli(["train", str(config)], capsys)
    assert f"{config}: unknown key {key!r}" in line
    if closest:
        assert f"did you mean {closest!r}" in line
    assert not (tmp_path / "out").exists()


def test_a_flag_is_never_abbreviated(tmp_path, capsys):
    line = run_cli(["train", "--output_dir", str(tmp_path / "out"), "--learning_rat", "0.01"], capsys)
    assert "unknown flag 'learning_rat'; did you mean 'learning_rate'?" in line
    with pytest.raises(SystemExit) as exit_:  # the other commands: argparse without abbreviations, one error line
        main(["evaluate", str(tmp_path), "--output_di", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "--output_di" in err[0]
