"""What a probe reads (hf_reservoir/analysis/probing/features.py): every layer's states, padding left
out; linear CKA."""

import pytest
import torch

from hf_reservoir.analysis.probing.features import layer_outputs, linear_cka


def test_every_layer_is_extracted_with_padding_left_out(corpus_and_model):
    from hf_reservoir.evaluation.inference import load_for_inference

    _, folder, german = corpus_and_model
    model, tokenizer = load_for_inference(str(folder))
    batch = [german[0], "Haus.", german[2]]
    together = layer_outputs(model, tokenizer, batch, batch_size=3)
    assert together.shape == (len(model.config.encoder_layout) + 1, 3, model.config.d_model)  # E + 7 layers
    alone = layer_outputs(model, tokenizer, ["Haus."], batch_size=1)
    torch.testing.assert_close(together[:, 1], alone[:, 0], atol=1e-5, rtol=1e-4)  # its padding did not count
    # Token positions: position 0 of a sentence at every layer equals that row of the unpooled states.
    at_zero = layer_outputs(model, tokenizer, batch, batch_size=3, positions=[0, 0, 0])
    assert at_zero.shape == together.shape and not torch.allclose(at_zero, together)


def test_linear_cka():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(0))
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(400, 16, generator=torch.Generator().manual_seed(2))) < 0.2
