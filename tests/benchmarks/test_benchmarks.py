import json
import os
import subprocess
import sys

import pytest

from benchmarks.step_cost import main
from tests.conftest import REPO_ROOT


def test_step_cost_benchmark_runs_at_tiny_shapes(tmp_path):
    report = main(["--tiny", "--device", "cpu", "--output_dir", str(tmp_path), "--name", "smoke"])
    written = json.loads((tmp_path / "smoke.json").read_text())
    # Every ratio is its row's seconds over the baseline row's, measured in this run (not the baseline to itself).
    per_layer = written["per_layer"]
    base = per_layer["trainable transformer layer"]["seconds"]
    for name, row in per_layer.items():
        assert row["seconds"] > 0 and row["ratio"] == pytest.approx(row["seconds"] / base), name
        # The per-repeat ratios' interval (paired: every candidate runs once per repeat); the base's is exactly 1.
        low, high = row["ratio_interval_95"]
        assert low <= high and (name != "trainable transformer layer" or low == high == 1.0), name
    assert "| 95% interval |" in (tmp_path / "smoke.md").read_text()
    vanilla = report["whole_model"]["vanilla MarianMTModel (N)"]["seconds"]
    trainable_seconds = report["whole_model"]["ours, N + k trainable"]["seconds"]
    for name, row in report["whole_model"].items():
        assert row["ratio_to_vanilla"] == pytest.approx(row["seconds"] / vanilla), name
        assert row["ratio_to_N_plus_k_trainable"] == pytest.approx(row["seconds"] / trainable_seconds), name
    assert {"transformer reservoir", "ffn reservoir", "bigru reservoir", "cnn reservoir"} <= set(report["per_layer"])
    whole = report["whole_model"]
    assert whole["vanilla MarianMTModel (N)"]["ratio_to_vanilla"] == 1.0
    assert any("backskip identity" in name for name in whole)
    # Adam keeps two fp32 moments per trainable parameter: frozen reservoirs save 8 bytes each.
    trainable = whole["ours, N + k trainable"]
    frozen = whole["ours, N + k transformer reservoirs"]
    assert trainable["adam_state_bytes"] - frozen["adam_state_bytes"] == 8 * (
        trainable["trainable_parameters"] - frozen["trainable_parameters"]
    )
    assert all(row["identical_tokens"] for row in report["generation"].values())
    assert "Checks against the targets" in (tmp_path / "smoke.md").read_text()
    # FLOPs are what each step runs: frozen reservoirs compute no weight gradients, and a backskipped reservoir
    # (identity, after 0 warm-up steps) no backward at all; MFU is FLOPs / seconds / the reported peak.
    peak = report["peak_flops"]["flops_per_second"]
    assert peak > 0 and report["peak_flops"]["source"] == "measured matmul ceiling"
    skipped = whole["ours, N + k transformer reservoirs, backskip identity"]
    assert skipped["flops_per_step"] < frozen["flops_per_step"] < trainable["flops_per_step"]
    for name, row in whole.items():
        assert 0 < row["mfu"] < 1 and row["mfu"] == pytest.approx(row["flops_per_step"] / row["seconds"] / peak), name


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(corpus_dir, tmp_path):
    """benchmarks/gpu_check.sh --dry_run: every step of the GPU script, on the CPU at tiny shapes."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DATA_PATH": str(corpus_dir), "WORK_DIR": str(tmp_path / "work")}
    done = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "benchmarks", "gpu_check.sh"), "--dry_run", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reported = ["gpu_cell.yaml", "summary.json", "table.md", "bleu_vs_time.png", "paired_ratio_vs_layers.png"]
    assert {"gpu_check.log", "step_cost.json", "step_cost.md", *reported} <= set(os.listdir(out))
    report = json.loads((out / "step_cost.json").read_text())
    assert {"graph_breaks", "ratio"} <= set(report["compile"]["ours, N + k ffn reservoirs"])
    learned = report["compile"]["ours, N + k transformer reservoirs, backskip learned"]
    assert learned["graph_breaks"] == 0 and set(learned["modes"]) == {"eager", "compiled"}  # no CUDA graphs on a CPU
    assert learned["modes"]["compiled"]["mfu"] > 0 and learned["modes"]["compiled"]["ratio_to_no_reservoirs"] > 0
    # The cell: six arms in one concurrent lane, each paired with regular by its recorded lane history.
    rows = json.loads((out / "summary.json").read_text())["rows"]
    models = {row["model"] for row in rows.values()}
    assert models == {"regular", "regular@aa", "transformer", "ffn", "transformer-learned", "regular_deep"}
    paired = [row["paired"] for row in rows.values() if row.get("paired")]
    assert len(paired) == 5 and all(p["paired_in_lane"] == "1/1" for p in paired)
    work = tmp_path / "work" / "runs"
    record = json.loads((work / "ffn-N6-seed1" / "results.json").read_text())
    assert record["sharing"]["scheme"] == "concurrent" and record["clock_warmup_steps"] > 0
    assert record["encoder_layout"] == "LLLRLRLL"


@pytest.mark.slow
def test_recipe_speed_benchmark_runs_on_real_batches(corpus_dir, tokenizer_dir, tmp_path):
    from benchmarks.recipe_speed import VARIANTS
    from benchmarks.recipe_speed import main as recipe_speed

    argv = ["--tiny", "--data_path", str(corpus_dir), "--tokenizer_path", str(tokenizer_dir)]
    report = recipe_speed([*argv, "--output_dir", str(tmp_path), "--name", "smoke"])
    assert list(report["variants"]) == list(VARIANTS)
    first = next(iter(report["variants"].values()))
    assert first["step_time_ratio"] == 1.0 and first["pairs_per_second"] > 0
    assert "| 1 decoder layer |" in (tmp_path / "smoke.md").read_text()
    # Precision and compilation rows are each compared with their fp32 eager twin, measured in the same repeats.
    bf16 = report["variants"]["max_tokens 2000, d_model 256 (FFN 1024), bf16 autocast"]
    assert bf16["twin"] == "max_tokens 2000, d_model 256 (FFN 1024)" and bf16["step_time_ratio_to_twin"] > 0
    assert "step time vs its fp32 eager twin" in (tmp_path / "smoke.md").read_text()


def test_host_overhead_benchmark_times_every_loop(tmp_path, capsys):
    from hf_reservoir.benchmarks.host_overhead import ARMS
    from hf_reservoir.benchmarks.host_overhead import main as host_overhead

    report = host_overhead(["--steps", "4", "--repeats", "2", "--warmup", "0", "--output_dir", str(tmp_path)])
    assert list(report["arms"]) == list(ARMS)
    assert all(len(row["repeats_ms"]) == 2 and min(row["repeats_ms"]) > 0 for row in report["arms"].values())
    assert report["arms"]["raw"]["overhead_ms_vs_raw"] == 0 and report["arms"]["raw"]["ratio_to_raw"] == 1
    assert "| raw + DataLoader |" in (tmp_path / "host_overhead_cpu.md").read_text()
    # The time per step needs at least 3 step begins: refused before any work, with its reason, and nothing written
    # (a guard that let it through would write its report: here into a scratch folder, not over a committed file).
    refused = tmp_path / "refused"
    with pytest.raises(SystemExit) as exit_:
        host_overhead(["--steps", "2", "--output_dir", str(refused)])
    assert exit_.value.code == 2 and not refused.exists()
    assert "--steps 2: at least 3" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--dry-run", "--dry_rn", "--only"])
def test_gpu_check_takes_both_spellings_and_refuses_others_in_one_line(tmp_path, flag):
    """`--dry-run` is `--dry_run`, as for every hf-reservoir flag (it used to be "unknown option"); a wrong option,
    or --only without its value, is one `error:` line and exit status 2, before anything runs."""
    script = os.path.join(REPO_ROOT, "benchmarks", "gpu_check.sh")
    args = [flag] if flag == "--only" else [flag, "--only", "nothing", str(tmp_path / "out")]
    run = subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=120)
    if flag == "--dry-run":
        assert run.returncode == 0 and (tmp_path / "out").is_dir() and "unknown option" not in run.stderr
    else:
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0]
