"""What must hold on an accelerator: a bf16 training step with frozen reservoirs, generation parity
with Marian, and a save/load round trip on the device.

The device comes from ``HF_RESERVOIR_TEST_DEVICE`` (default ``cpu``), so the CPU suite runs these as
they are and ``benchmarks/gpu_check.sh`` runs the same file with ``HF_RESERVOIR_TEST_DEVICE=cuda``.
"""

import os

import pytest
import torch
from transformers import MarianConfig, MarianMTModel

from hf_reservoir import ReservoirMarianMTModel

from .conftest import TINY, tiny_config

DEVICE = os.environ.get("HF_RESERVOIR_TEST_DEVICE", "cpu")

if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"HF_RESERVOIR_TEST_DEVICE={DEVICE}, but torch sees no CUDA device", allow_module_level=True)


def on_device(batch: dict) -> dict:
    return {k: v.to(DEVICE) for k, v in batch.items()}


@pytest.mark.parametrize("reservoir_type", ["transformer", "ffn", "bigru", "cnn"])
def test_bf16_training_step_keeps_reservoirs_frozen(batch, reservoir_type):
    torch.manual_seed(0)
    config = tiny_config(num_encoder_reservoir_layers=2, reservoir_type=reservoir_type)
    model = ReservoirMarianMTModel(config).to(DEVICE, torch.bfloat16).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    reservoirs = tuple(f"encoder.layers.{i}." for i in config.encoder_reservoir_layers)
    assert {n for n in frozen if "embed_positions" not in n} == {
        n for n in frozen if any(r in n for r in reservoirs)
    } and any(any(r in n for r in reservoirs) for n in frozen)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**on_device(batch)).loss
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], value) for n, value in frozen.items())
    assert any(not torch.equal(params[n], value) for n, value in trainable.items())


def test_generation_matches_marian_on_the_device(batch):
    """Without reservoirs and with Marian's weights, our model generates Marian's tokens."""
    common = {k: v for k, v in TINY.items()}
    torch.manual_seed(0)
    marian = MarianMTModel(MarianConfig(**common)).eval()
    ours = ReservoirMarianMTModel(tiny_config()).eval()
    missing, unexpected = ours.load_state_dict(marian.state_dict(), strict=False)
    assert not unexpected and all("embed_positions" in k for k in missing)
    marian, ours = marian.to(DEVICE), ours.to(DEVICE)
    inputs = on_device({k: batch[k] for k in ("input_ids", "attention_mask")})
    for beams in (1, 3):
        kwargs = dict(max_new_tokens=8, num_beams=beams, do_sample=False)
        with torch.no_grad():
            assert torch.equal(marian.generate(**inputs, **kwargs), ours.generate(**inputs, **kwargs))


def test_save_and_load_round_trip_on_the_device(batch, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_encoder_reservoir_layers=2, reservoir_type="transformer")
    model = ReservoirMarianMTModel(config).to(DEVICE).eval()
    with torch.no_grad():
        before = model(**on_device(batch)).logits
    model.save_pretrained(tmp_path / "model")
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path / "model").to(DEVICE).eval()
    with torch.no_grad():
        after = loaded(**on_device(batch)).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert {n for n, p in loaded.named_parameters() if not p.requires_grad} >= {
        n for n, p in model.named_parameters() if not p.requires_grad and "embed_positions" not in n
    }
