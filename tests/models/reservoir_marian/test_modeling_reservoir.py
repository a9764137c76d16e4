import copy
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, MarianConfig, MarianMTModel

from hf_reservoir import (
    BiGRUReservoirLayer,
    ConvReservoirLayer,
    FFNReservoirLayer,
    ReservoirMarianEncoderLayer,
    ReservoirMarianModel,
    ReservoirMarianMTModel,
)
from tests.conftest import TINY, tiny_config

TYPES = ["transformer", "ffn", "bigru", "cnn"]


def reservoir_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("model.encoder.layers.2.")}


@pytest.mark.parametrize("layernorm_position", ["post", "pre"])
@pytest.mark.parametrize("reservoir_type", TYPES)
def test_reservoirs_stay_frozen_while_lower_layers_learn(reservoir_type, layernorm_position, batch):
    torch.manual_seed(0)
    model = ReservoirMarianMTModel(
        tiny_config(
            num_encoder_reservoir_layers=2,
            reservoir_type=reservoir_type,
            layernorm_position=layernorm_position,
            decoder_reservoir_layers=[0],
        )
    )
    assert model.config.encoder_layout == "LLRLRLL"
    before = reservoir_state(model)
    decoder_before = {n: p.clone() for n, p in model.model.decoder.layers[0].named_parameters()}
    assert before and all(not p.requires_grad for p in model.model.encoder.layers[2].parameters())
    layer0_before = model.model.encoder.layers[0].fc1.weight.detach().clone()
    # Every parameter goes to the optimizer on purpose: freezing must not depend on the caller.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        assert model.model.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
        optimizer.step()
    after = reservoir_state(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(torch.equal(p, decoder_before[n]) for n, p in model.model.decoder.layers[0].named_parameters())
    assert not torch.equal(layer0_before, model.model.encoder.layers[0].fc1.weight)


def test_parameter_summary_counts_frozen_layers():
    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2, reservoir_type="ffn"))
    summary = model.parameter_summary()
    layer = model.model.encoder.layers[2]
    assert summary["encoder.layers.2"] == {"trainable": 0, "total": sum(p.numel() for p in layer.parameters())}
    assert summary["encoder.layers.0"]["trainable"] == summary["encoder.layers.0"]["total"] > 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary["total"] == {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def test_frozen_after_to_half_and_from_pretrained(tmp_path):
    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2, reservoir_type="bigru"))
    model.save_pretrained(tmp_path)
    for moved in (model.to(torch.float64), model.half(), model.to("cpu")):
        assert not any(p.requires_grad for p in moved.model.encoder.layers[2].parameters())
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in loaded.model.encoder.layers[2].parameters())
    assert all(p.requires_grad for p in loaded.model.encoder.layers[1].parameters())
    auto = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert isinstance(auto, ReservoirMarianMTModel)
    assert not any(p.requires_grad for p in auto.model.encoder.layers[4].parameters())


@pytest.mark.parametrize("reservoir_type", TYPES)
def test_reservoir_weights_are_a_function_of_the_seed(reservoir_type):
    def weights(seed, global_seed, extra_layers=0):
        torch.manual_seed(global_seed)
        # A different build order (an extra module first) must not change the draw.
        torch.nn.Linear(8, 8 + extra_layers)
        model = ReservoirMarianModel(
            tiny_config(num_encoder_reservoir_layers=2, reservoir_type=reservoir_type, reservoir_seed=seed)
        )
        return {n: p.detach().clone() for n, p in model.encoder.layers[4].named_parameters()}

    a, b, c = weights(7, 0), weights(7, 123, extra_layers=3), weights(8, 0)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a if not n.endswith(("layer_norm.weight", "layer_norm.bias")))


def test_reservoir_layers_differ_from_each_other_and_are_orthogonal():
    model = ReservoirMarianModel(tiny_config(num_encoder_reservoir_layers=2, reservoir_type="transformer"))
    w2 = model.encoder.layers[2].self_attn.q_proj.weight.detach().double()
    w4 = model.encoder.layers[4].self_attn.q_proj.weight.detach().double()
    assert not torch.equal(w2, w4)
    assert torch.allclose(w2 @ w2.T, torch.eye(w2.shape[0], dtype=torch.float64), atol=1e-5)
    fc1 = model.encoder.layers[2].fc1.weight.detach().double()  # (64, 32): orthonormal columns
    assert torch.allclose(fc1.T @ fc1, torch.eye(32, dtype=torch.float64), atol=1e-5)
    default = ReservoirMarianModel(
        tiny_config(num_encoder_reservoir_layers=2, reservoir_type="transformer", reservoir_init="default")
    )
    assert default.encoder.layers[2].self_attn.q_proj.bias.abs().sum() == 0


def test_reservoir_weights_do_not_depend_on_thread_count():
    script = (
        "import sys, hashlib, torch\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "from hf_reservoir import ReservoirMarianConfig, ReservoirMarianModel\n"
        "c = ReservoirMarianConfig(d_model=512, encoder_ffn_dim=1024, encoder_layers=3, decoder_layers=1,"
        " encoder_attention_heads=4, decoder_attention_heads=4, vocab_size=50, pad_token_id=49,"
        " num_encoder_reservoir_layers=1,"
        " reservoir_type=sys.argv[2])\n"
        "m = ReservoirMarianModel(c)\n"
        "h = hashlib.sha256()\n"
        "[h.update(p.detach().numpy().tobytes()) for p in m.encoder.layers[1].parameters()]\n"
        "print(h.hexdigest())\n"
    )
    for reservoir_type in ("transformer", "bigru"):
        digests = {
            subprocess.run(
                [sys.executable, "-c", script, str(threads), reservoir_type],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for threads in (1, 2, 3)
        }
        assert len(digests) == 1, digests


@pytest.mark.parametrize("layernorm_position", ["post", "pre"])
@pytest.mark.parametrize("reservoir_type", TYPES)
def test_padding_does_not_change_real_tokens(reservoir_type, layernorm_position):
    config = tiny_config(
        num_encoder_reservoir_layers=2, reservoir_type=reservoir_type, layernorm_position=layernorm_position
    )
    model = ReservoirMarianModel(config).eval()
    generator = torch.Generator().manual_seed(1)
    short = torch.randint(1, 90, (1, 5), generator=generator)
    other = torch.randint(1, 90, (1, 9), generator=generator)
    padded = torch.cat([short, torch.full((1, 4), config.pad_token_id)], 1)
    with torch.no_grad():
        alone = model.encoder(input_ids=short, attention_mask=torch.ones_like(short)).last_hidden_state
        out = model.encoder(
            input_ids=torch.cat([padded, other]),
            attention_mask=torch.cat([(padded != config.pad_token_id).long(), torch.ones_like(other)]),
        ).last_hidden_state
    torch.testing.assert_close(out[0, :5], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("layer_class", [BiGRUReservoirLayer, ConvReservoirLayer])
def test_sequence_reservoirs_ignore_padding_on_either_side(layer_class, side):
    config = tiny_config()
    layer = layer_class(config).eval()
    generator = torch.Generator().manual_seed(2)
    short = torch.randn(1, 5, config.d_model, generator=generator)
    garbage = torch.randn(1, 3, config.d_model, generator=generator) * 100  # pads carry junk, not zeros
    padded = torch.cat([short, garbage], 1) if side == "right" else torch.cat([garbage, short], 1)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, :5] = True
    mask = mask if side == "right" else mask.flip(1)
    full = torch.randn(1, 8, config.d_model, generator=generator)
    with torch.no_grad():
        alone = layer(short, None, padding_mask=torch.ones(1, 5, dtype=torch.bool))
        out = layer(torch.cat([padded, full]), None, padding_mask=torch.cat([mask, torch.ones_like(mask)]))
    torch.testing.assert_close(out[0][mask[0]], alone[0], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(out[1], layer(full, None)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer_class", [FFNReservoirLayer, BiGRUReservoirLayer, ConvReservoirLayer])
def test_reservoir_layer_modules_work_alone(layer_class):
    config = tiny_config()
    layer = layer_class(config)
    hidden = torch.randn(2, 6, config.d_model)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    out = layer(hidden, None, padding_mask=mask)
    assert out.shape == hidden.shape and torch.isfinite(out).all()
    # Same signature as a regular encoder layer: (hidden_states, attention_mask, **kwargs).
    assert ReservoirMarianEncoderLayer(config)(hidden, None, padding_mask=mask).shape == hidden.shape


def test_marian_exactness_anchor(batch):
    torch.manual_seed(0)
    marian = MarianMTModel(MarianConfig(**TINY)).eval()
    ours = ReservoirMarianMTModel(tiny_config()).eval()
    assert ours.config.encoder_layout == "LLLLLLL"
    result = ours.load_state_dict(marian.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expected = marian(**inputs, labels=batch["labels"])
        got = ours(**inputs, labels=batch["labels"])
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
    for kwargs in ({"num_beams": 1}, {"num_beams": 4}):
        assert torch.equal(
            marian.generate(**inputs, max_new_tokens=10, do_sample=False, **kwargs),
            ours.generate(**inputs, max_new_tokens=10, do_sample=False, **kwargs),
        )


@pytest.mark.parametrize("reservoir_type", TYPES)
def test_generate_with_cache_matches_without_cache(reservoir_type, batch):
    model = ReservoirMarianMTModel(
        tiny_config(num_encoder_reservoir_layers=2, reservoir_type=reservoir_type, layernorm_position="pre")
    ).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    cached = model.generate(**inputs, max_new_tokens=8, num_beams=3, use_cache=True)
    uncached = model.generate(**inputs, max_new_tokens=8, num_beams=3, use_cache=False)
    assert torch.equal(cached, uncached)


def test_auto_class_from_config_and_hidden_states(batch):
    model = AutoModelForSeq2SeqLM.from_config(tiny_config(num_encoder_reservoir_layers=2, reservoir_type="cnn"))
    assert isinstance(model, ReservoirMarianMTModel)
    out = model(**batch, output_hidden_states=True)
    assert len(out.encoder_hidden_states) == 8  # embeddings + 7 layers


def test_loss_does_not_accept_loss_kwargs():
    assert ReservoirMarianMTModel.accepts_loss_kwargs is False


def test_layerdrop_drops_layers_in_training_and_none_in_eval(batch):
    model = ReservoirMarianMTModel(tiny_config(encoder_layerdrop=0.5))
    layers = model.model.encoder.layers
    calls = [0] * len(layers)
    for index, layer in enumerate(layers):
        layer.register_forward_hook(lambda module, args, output, i=index: calls.__setitem__(i, calls[i] + 1))
    torch.manual_seed(0)
    model.train()
    for _ in range(40):
        model(**batch).loss.backward()
    # Each layer runs in about half the passes (p = 0.5; 40 passes: 9-31 holds with probability > 0.999).
    assert all(9 <= count <= 31 for count in calls), calls
    calls[:] = [0] * len(layers)
    model.eval()
    with torch.no_grad():
        for _ in range(5):
            model(**batch)
    assert calls == [5] * len(layers)  # evaluation runs every layer


@pytest.mark.parametrize("reservoir_type", ["transformer", "ffn"])
def test_the_gradient_below_a_reservoir_carries_its_jacobian(batch, reservoir_type):
    """A non-zero gradient at layer 0 proves little: the residual path alone gives one. Here the reservoir is
    replaced by a layer with the same outputs whose Jacobian is the identity (``x + (f(x) - x).detach()``): the
    forward pass and loss stay the same, so only the reservoir's own Jacobian can make the gradients below differ."""

    class IdentityJacobian(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states + (self.layer(hidden_states, *args, **kwargs) - hidden_states).detach()

    def loss_and_layer0_gradient(model):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.item(), model.model.encoder.layers[0].fc1.weight.grad.clone()

    torch.manual_seed(0)
    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=2, reservoir_type=reservoir_type)).train()
    encoder = model.model.encoder
    index = next(i for i, layer in enumerate(encoder.layers) if getattr(layer, "is_reservoir", False))
    loss, through = loss_and_layer0_gradient(model)
    reservoir = encoder.layers[index]
    encoder.layers[index] = IdentityJacobian(reservoir)
    same_loss, without_jacobian = loss_and_layer0_gradient(model)
    encoder.layers[index] = reservoir
    assert same_loss == pytest.approx(loss, rel=1e-5)  # the same forward pass
    assert not any(p.requires_grad for p in reservoir.parameters())
    relative = (through - without_jacobian).norm() / without_jacobian.norm()
    assert relative > 0.01, relative  # the reservoir's Jacobian is in the chain below it


def test_deepcopy_keeps_freeze():
    model = ReservoirMarianMTModel(tiny_config(num_encoder_reservoir_layers=1, reservoir_type="ffn"))
    clone = copy.deepcopy(model)
    assert not any(p.requires_grad for p in clone.model.encoder.layers[3].parameters())
