"""A saved folder must load as Hub remote code where hf_reservoir cannot be imported."""

import json
import os
import subprocess
import sys

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from tests.conftest import tiny_config

FRESH_PROCESS = r"""
import sys
import torch
try:
    import hf_reservoir  # noqa: F401
    raise SystemExit("hf_reservoir must not be importable here")
except ModuleNotFoundError:
    pass
from transformers import AutoModelForSeq2SeqLM
folder, inputs_path, out_path = sys.argv[1:4]
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
inputs = torch.load(inputs_path)
with torch.no_grad():
    logits = model(**inputs).logits
generated = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           max_new_tokens=6, num_beams=2)
frozen = {name: [p.requires_grad for p in layer.parameters()] for name, layer in model.reservoir_layers().items()}
frozen_names = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
torch.save({"logits": logits, "generated": generated, "frozen": frozen, "frozen_names": frozen_names,
            "class": type(model).__module__}, out_path)
"""


def run_fresh(folder, inputs, tmp_path):
    """Load `folder` in a new interpreter that cannot see this checkout or an installed hf_reservoir."""
    inputs_path, out_path = tmp_path / "inputs.pt", tmp_path / "out.pt"
    torch.save(inputs, inputs_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # -I keeps the checkout (cwd, PYTHONPATH, user site) off sys.path; the finder below hides an
    # installed or editable hf_reservoir as well, as on a machine that never installed it.
    blocker = (
        "import sys\n"
        "class _HideHfReservoir:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'hf_reservoir' or name.startswith('hf_reservoir.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _HideHfReservoir())\n"
    )
    code = blocker + FRESH_PROCESS
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(folder), str(inputs_path), str(out_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out_path)


@pytest.mark.parametrize("reservoir_type", ["transformer", "bigru", "cnn", "ffn"])
def test_fresh_process_remote_code_load(reservoir_type, batch, tmp_path):
    model = ReservoirMarianMTModel(
        tiny_config(num_encoder_reservoir_layers=2, reservoir_type=reservoir_type, layernorm_position="pre")
    ).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_reservoir.ReservoirMarianMTModel"
    assert (folder / "modeling_reservoir.py").exists() and (folder / "configuration_reservoir.py").exists()
    assert (folder / "model.safetensors").exists()

    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "decoder_input_ids": batch["labels"],
    }
    out = run_fresh(folder, inputs, tmp_path)
    assert out["class"].startswith("transformers_modules")
    with torch.no_grad():
        expected = model(**inputs).logits
    assert torch.equal(out["logits"], expected)
    assert torch.equal(
        out["generated"],
        model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=6, num_beams=2
        ),
    )
    assert set(out["frozen"]) == {"encoder.2", "encoder.4"}
    assert not any(any(flags) for flags in out["frozen"].values())
    # Exactly what a freshly built model freezes: the reservoirs and the sinusoidal position tables.
    assert out["frozen_names"] == sorted(n for n, p in model.named_parameters() if not p.requires_grad)
