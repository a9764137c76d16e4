"""The slow-start count (#23): a run whose BLEU at the step lags far behind its siblings' median is counted."""

import json

import pytest
import yaml

from hf_reservoir.cli import main
from hf_reservoir.experiments.slow_start import SlowStartConfig, classify, compare_recipes, markdown


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


def test_compare_judges_each_rate_against_the_reference_on_the_seeds_both_ran(tmp_path):
    """The learning-rate check: per model, each recipe beside the reference on shared seeds, and the better one."""
    low, high, top = tmp_path / "low", tmp_path / "high", tmp_path / "top"
    for seed, at_800 in ((1, 7.0), (2, 7.3), (3, 4.3)):
        write_run(low, f"transformer-N4-seed{seed}", [0.1, 0.5, 3.0, at_800, at_800 + 2])
    for seed, at_800 in ((1, 8.4), (2, 6.0)):  # seed 3 not run at the high rate: left out of its comparison
        write_run(high, f"transformer-N4-seed{seed}", [0.1, 0.6, 4.0, at_800, at_800 + 3])
    write_run(top, "transformer-N4-seed1", [0.0, 0.2, 0.5, 1.9, 2.9])  # one seed: does not shrink the others
    write_run(low, "regular_deep-N4-seed1", [0.0, 0.4, 2.4, 5.9, 9.0])  # reference only: nothing to compare
    write_run(high, "ffn-N4-seed1", [0.0, 0.4, 2.4, 5.9, 9.0])  # no reference run: no verdict
    write_run(high, "transformer-N2-seed1", [9.0] * 5)  # another N: left out by updatable_layers
    config = SlowStartConfig(
        recipes={"lr2e-3": [str(low)], "lr3e-3": [str(high)], "lr5e-3": [str(top)]},
        models=["transformer", "regular_deep", "ffn"],
        compare="lr2e-3",
        updatable_layers=[4],
    )
    rows = compare_recipes(classify(config), config)
    assert set(rows) == {"transformer/N4", "regular_deep/N4", "ffn/N4"}
    transformer = rows["transformer/N4"]["recipes"]
    assert transformer["lr2e-3"]["seeds"] == [1, 2, 3]
    assert transformer["lr3e-3"]["seeds"] == [1, 2]
    assert transformer["lr3e-3"]["mean_bleu"][800] == pytest.approx(7.2)
    assert transformer["lr3e-3"]["reference_mean_bleu"][800] == pytest.approx(7.15)
    assert transformer["lr5e-3"]["seeds"] == [1]
    assert rows["transformer/N4"]["better"] == "lr3e-3"  # 7.2 against 7.15 on seeds 1-2
    assert rows["regular_deep/N4"]["better"] is None and rows["ffn/N4"]["better"] is None
    # A shared seed where the other rate lags flips the verdict back to the reference.
    write_run(low, "transformer-N4-seed4", [0.0, 1.1, 3.0, 8.0, 10.0])
    write_run(high, "transformer-N4-seed4", [0.0] * 5)
    write_run(low, "transformer-N4-seed5-copy", [9.0] * 5)  # not a run name: ignored
    report = classify(config)
    report["comparison"] = compare_recipes(report, config)
    assert report["comparison"]["transformer/N4"]["better"] == "lr2e-3"
    table = markdown(report, config)
    header = "| N | model | lr2e-3 (seeds) | lr3e-3 vs lr2e-3 (shared seeds) | lr5e-3 vs lr2e-3 (shared seeds) |"
    assert header in table
    assert "0.4/4.8/6.8 vs 0.7/7.4/9.4 (seeds 1, 2, 4) | 0.2/1.9/2.9 vs 0.5/7.0/9.0 (seed 1) | lr2e-3 |" in table
    assert "| 4 | ffn | not run | no shared seed with lr2e-3 | not run | n/a |" in table
    with pytest.raises(ValueError, match="compare='lr1e-3' is not one of the recipes"):
        SlowStartConfig(recipes={"lr2e-3": [str(low)]}, compare="lr1e-3")
