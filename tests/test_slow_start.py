"""The slow-start count (#23): a run whose BLEU at the step lags far behind its siblings' median is counted."""

import json

import pytest
import yaml

from hf_reservoir.cli import main
from hf_reservoir.slow_start import SlowStartConfig, classify


def write_run(folder, name, bleus, steps=(200, 400, 600, 800, 1000)):
    run = folder / name
    run.mkdir(parents=True)
    evaluations = [{"step": s, "train_seconds": float(s), "bleu": b} for s, b in zip(steps, bleus)]
    (run / "convergence.json").write_text(json.dumps({"summary": {}, "evaluations": evaluations}))


def test_a_seed_far_below_its_siblings_median_is_a_slow_start(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, at_800 in enumerate([6.0, 7.0, 2.9, 6.5, 8.0], start=1):
        write_run(runs, f"regular-N2-seed{seed}", [0.1, 1.0, 3.0, at_800, at_800 + 2])
    for seed in (1, 2, 3):  # uniformly slower model: never "slow" against its own median
        write_run(runs, f"ffn-N2-seed{seed}", [0.0, 0.5, 1.0, 2.0 + seed * 0.1, 3.0])
    write_run(runs, "layerdrop-N2-seed1", [0.0] * 5)  # not a listed model: ignored
    write_run(runs, "regular-N4-seed1", [0.1, 0.2])  # unfinished before step 800: not judged
    config = {"recipes": {"base": [str(runs)]}, "models": ["regular", "ffn"]}
    report = classify(SlowStartConfig(**config))
    regular = report["recipes"]["base"]["regular/N2"]
    assert regular["median_bleu_at_step"] == 6.5
    assert {seed: s["slow"] for seed, s in regular["seeds"].items()} == {
        1: False,
        2: False,
        3: True,
        4: False,
        5: False,
    }
    assert not any(s["slow"] for s in report["recipes"]["base"]["ffn/N2"]["seeds"].values())
    assert report["recipes"]["base"]["regular/N4"]["seeds"][1]["slow"] is None
    assert "layerdrop/N2" not in report["recipes"]["base"]
    # The command writes the same verdicts next to its config.
    path = tmp_path / "slow_starts.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["slow-starts", str(path)]) == 0
    table = (tmp_path / "slow_starts.md").read_text()
    assert "| base | 2 | regular | 5 | 1 | 6.50 |" in table and "3: 1.0/2.9/4.9 **slow**" in table
    assert "| base | 2 | 8 | 1 |" in table  # per recipe and N: 8 runs judged, 1 slow start


def test_one_run_listed_twice_or_a_missing_folder_is_refused(tmp_path, capsys):
    write_run(tmp_path / "a", "regular-N2-seed1", [1.0] * 5)
    write_run(tmp_path / "b", "regular-N2-seed1", [1.0] * 5)
    with pytest.raises(ValueError, match="appears in two"):
        classify(SlowStartConfig(recipes={"r": [str(tmp_path / "a"), str(tmp_path / "b")]}))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"recipes": {"r": [str(tmp_path / "nowhere")]}}))
    assert main(["slow-starts", str(path)]) == 2
    assert "nowhere is not a folder of runs" in capsys.readouterr().err
