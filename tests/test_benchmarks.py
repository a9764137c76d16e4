import json

from benchmarks.step_cost import main


def test_step_cost_benchmark_runs_at_tiny_shapes(tmp_path):
    report = main(["--tiny", "--device", "cpu", "--output-dir", str(tmp_path), "--name", "smoke"])
    written = json.loads((tmp_path / "smoke.json").read_text())
    assert written["per_layer"]["trainable transformer layer"]["ratio"] == 1.0
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
