"""Backskipping: exact, identity and learned gradients through reservoirs."""

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.models.reservoir_marian.modeling_reservoir import backskip_decision, backskip_probability
from tests.conftest import tiny_config


def model_with(mode, reservoir_type="transformer", **overrides):
    torch.manual_seed(0)
    settings = dict(
        num_encoder_reservoir_layers=2,
        reservoir_type=reservoir_type,
        layernorm_position="pre",
        backskip_mode=mode,
        backskip_warmup_steps=0,
        backskip_anneal_factor=0.0,
    )
    settings.update(overrides)
    return ReservoirMarianMTModel(tiny_config(**settings)).train()


def lower_layer_grads(model, batch):
    model.zero_grad()
    model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def capture_gradients(model):
    """Gradient at the input of encoder layer 2 (a reservoir) and at its output (input of layer 3)."""
    grads = {}

    def tap(name):
        def pre_hook(module, args, kwargs):
            args[0].register_hook(lambda g: grads.__setitem__(name, g.clone()))

        return pre_hook

    layers = model.model.encoder.layers
    layers[2].register_forward_pre_hook(tap("reservoir_input"), with_kwargs=True)
    layers[3].register_forward_pre_hook(tap("reservoir_output"), with_kwargs=True)
    return grads


def count_backward_runs(layer):
    runs = []
    layer.register_full_backward_hook(lambda module, grad_in, grad_out: runs.append(1))
    return runs


@pytest.mark.parametrize("reservoir_type", ["transformer", "ffn", "bigru", "cnn"])
def test_exact_matches_plain_autograd(reservoir_type, batch):
    plain = lower_layer_grads(model_with("exact", reservoir_type), batch)
    # identity and learned during warm-up also compute true gradients
    for mode in ("identity", "learned"):
        other = lower_layer_grads(model_with(mode, reservoir_type, backskip_warmup_steps=100), batch)
        for name, grad in plain.items():
            torch.testing.assert_close(other[name], grad, rtol=0, atol=0)


@pytest.mark.parametrize("reservoir_type", ["transformer", "cnn"])
def test_identity_passes_the_output_gradient_straight_through(reservoir_type, batch):
    model = model_with("identity", reservoir_type)
    grads = capture_gradients(model)
    runs = count_backward_runs(model.model.encoder.layers[2])
    model(**batch).loss.backward()
    assert torch.equal(grads["reservoir_input"], grads["reservoir_output"])
    assert grads["reservoir_input"].abs().sum() > 0
    assert runs == []  # the reservoir's backward never ran
    assert model.model.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
    assert model.model.encoder.backskip_counts["skipped"] == 2


def test_exact_steps_run_the_reservoir_backward(batch):
    model = model_with("identity", backskip_warmup_steps=5)
    runs = count_backward_runs(model.model.encoder.layers[2])
    model(**batch).loss.backward()
    assert runs == [1]


def test_learned_predictor_reduces_its_regression_error(batch):
    model = model_with("learned", "ffn", backskip_warmup_steps=10**6)  # never skip: always regress
    predictors = model.model.encoder.backskip_predictors
    optimizer = torch.optim.Adam(predictors.parameters(), lr=3e-3)
    errors = []
    for _ in range(60):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        errors.append(predictors["2"].last_relative_error)
        optimizer.step()
    assert errors[0] > 0
    assert errors[-1] < 0.5 * errors[0]
    assert all(p.requires_grad for p in predictors.parameters())


def test_learned_skipped_step_uses_the_predictor(batch):
    model = model_with("learned", "ffn", backskip_predictor_rank=4)
    with torch.no_grad():
        model.model.encoder.backskip_predictors["2"].up.fill_(0.01)
    grads = capture_gradients(model)
    runs = count_backward_runs(model.model.encoder.layers[2])
    model(**batch).loss.backward()
    predictor = model.model.encoder.backskip_predictors["2"]
    expected = predictor(grads["reservoir_output"]).detach()
    torch.testing.assert_close(grads["reservoir_input"], expected)
    assert runs == []
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in predictor.parameters())


def test_schedule_and_decisions_are_deterministic():
    assert backskip_probability(99, 100, 0.9) == 0.0
    assert backskip_probability(100, 100, 0.9) == pytest.approx(0.1)
    assert backskip_probability(109, 100, 0.9) == pytest.approx(1 - 0.9**10)
    decisions = [backskip_decision(3, step, 2, 0.5) for step in range(400)]
    assert decisions == [backskip_decision(3, step, 2, 0.5) for step in range(400)]
    assert 150 < sum(decisions) < 250


def test_predictor_is_dropped_at_export_when_asked(tmp_path):
    model = model_with("learned", "ffn", backskip_export_predictor=False)
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert not any("backskip" in key for key in handle.keys())
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path)
    assert loaded.config.backskip_mode == "learned"


def test_bad_backskip_values():
    with pytest.raises(ValueError, match="backskip_mode"):
        tiny_config(backskip_mode="sometimes")
    with pytest.raises(ValueError, match="backskip_anneal_factor"):
        tiny_config(backskip_anneal_factor=1.5)


@pytest.mark.parametrize("rank", [0, 3])
def test_the_predictor_regression_gradients_are_those_of_its_error(rank):
    from hf_reservoir.models.reservoir_marian.modeling_reservoir import BackskipPredictor, _predictor_regression

    torch.manual_seed(0)
    predictor = BackskipPredictor(8, rank)
    for param in predictor.parameters():
        torch.nn.init.normal_(param, std=0.3)
    grad_output, grad_input = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    error, grads = _predictor_regression(grad_output, grad_input, tuple(predictor.parameters()))
    target = grad_input.reshape(-1, 8)
    expected_error = (predictor(grad_output.reshape(-1, 8)) - target).pow(2).sum() / target.pow(2).sum()
    expected = torch.autograd.grad(expected_error, list(predictor.parameters()))
    torch.testing.assert_close(error, expected_error.detach())
    for grad, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, want)
