"""Reservoir Transformers (Shen, Baevski, Morcos, Keutzer, Auli, Kiela, ACL 2021) on Marian.

Some encoder layers are *reservoirs*: frozen at a random initialisation drawn from
``config.reservoir_seed``. Gradients flow through them to the layers below, but their own
weights never change (section 3 of the paper).

This file must load as Hub remote code, so its only import from our package is the sibling
configuration file. Its parts, in order, each under a section comment:

1. Reservoir initialisation: every reservoir value a pure function of (seed, stack, layer, parameter).
2. Layers: the trainable encoder layer, the FFN, BiGRU and convolution reservoirs, the decoder layer.
3. Backskipping (section 3.2): the skip schedule, the gradient predictor and the autograd functions.
4. Reservoir checksums and storage: seed-only saves, the weights' format, the checksums a load verifies.
5. Models: the pre-trained base (one ``_init_weights``), the encoder, the decoder and the two heads.
"""

from __future__ import annotations

import hashlib
import math
import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.models.marian.modeling_marian import (
    MarianAttention,
    MarianDecoder,
    MarianDecoderLayer,
    MarianEncoderLayer,
    MarianModel,
    MarianMTModel,
    MarianPreTrainedModel,
    MarianSinusoidalPositionalEmbedding,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_reservoir import RESERVOIR_STORAGES, ReservoirMarianConfig

# --------------------------------------------------------------------------------------------
# Reservoir initialisation: a pure function of (seed, stack, layer index, parameter name)
# --------------------------------------------------------------------------------------------


def _reservoir_generator(seed: int, stack: str, layer_idx: int, name: str) -> torch.Generator:
    key = f"{seed}:{stack}:{layer_idx}:{name}".encode()
    return torch.Generator(device="cpu").manual_seed(int(hashlib.sha256(key).hexdigest()[:15], 16))


def _orthogonal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A (semi-)orthogonal matrix that has the same bits on any thread count.

    ``torch.nn.init.orthogonal_`` runs its QR in float32, and the result depends on the number of
    threads. Here the Gaussian draw happens on a CPU generator and the QR in float64 on one
    thread, with the sign of ``diag(R)`` fixed; the caller casts to the target dtype. A different
    LAPACK build could still round differently: seed-only checkpoints verify a checksum for that.
    """
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # LAPACK's blocked QR rounds differently with more threads
    try:
        q, r = torch.linalg.qr(a)
    finally:
        torch.set_num_threads(threads)
    q = q * torch.where(torch.diagonal(r) >= 0, 1.0, -1.0).to(torch.float64)
    return q if rows >= cols else q.T


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def reservoir_parameter_value(
    config: ReservoirMarianConfig, module: nn.Module, param_name: str, param: torch.Tensor
) -> torch.Tensor:
    """The initial value of one reservoir parameter, computed on the CPU in float64.

    ``module`` must carry the ``_reservoir_tag`` set by [`mark_reservoir`]. ``orthogonal`` follows
    the paper (section 3): projection matrices are orthogonal, biases follow PyTorch's default
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` and LayerNorms start at (1, 0). ``default`` uses the
    trainable layers' ``normal(0, init_std)`` weights and zero biases (GRU: PyTorch's default).
    """
    stack, layer_idx, module_name = module._reservoir_tag
    generator = _reservoir_generator(config.reservoir_seed, stack, layer_idx, f"{module_name}.{param_name}")
    shape = param.shape
    if isinstance(module, nn.LayerNorm):
        return torch.ones(shape, dtype=torch.float64) if param_name == "weight" else torch.zeros(shape)
    if isinstance(module, nn.GRU):
        bound = 1.0 / math.sqrt(module.hidden_size)
        if config.reservoir_init == "orthogonal" and param_name.startswith("weight"):
            return _orthogonal(shape[0], shape[1], generator)
        return _uniform(shape, bound, generator)
    if param.dim() == 1:  # a Linear bias
        if config.reservoir_init == "default":
            return torch.zeros(shape, dtype=torch.float64)
        return _uniform(shape, 1.0 / math.sqrt(module.weight.shape[1]), generator)
    if config.reservoir_init == "default":
        return torch.randn(shape, generator=generator, dtype=torch.float64) * config.init_std
    matrix = _orthogonal(shape[0], math.prod(shape[1:]), generator)
    return matrix.reshape(shape)


def mark_reservoir(layer: nn.Module, stack: str, layer_idx: int) -> nn.Module:
    """Freeze ``layer`` and tag every submodule that owns parameters for seeded initialisation."""
    layer.is_reservoir = True
    layer.reservoir_id = f"{stack}.{layer_idx}"
    for name, module in layer.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            module._reservoir_tag = (stack, layer_idx, name)
    layer.requires_grad_(False)
    return layer


# --------------------------------------------------------------------------------------------
# Layers. All encoder layers share one signature: forward(hidden_states, attention_mask,
# padding_mask=None, **kwargs) -> hidden_states, where attention_mask is the 4D attention mask
# and padding_mask the 2D boolean mask (True for real tokens) that non-attention layers need.
# --------------------------------------------------------------------------------------------


class ReservoirMarianEncoderLayer(MarianEncoderLayer):
    """A Marian encoder layer with a choice of LayerNorm position.

    Post-LN is Marian's layer, unchanged. Pre-LN is the paper's ``H = MHA(LN(X)) + X``,
    ``Y = FFN(LN(H)) + H``. Used for trainable layers and, frozen, as the ``transformer`` reservoir.
    """

    def __init__(self, config: ReservoirMarianConfig, layer_idx: int | None = None):
        super().__init__(config, layer_idx)
        self.pre_ln = config.layernorm_position == "pre"

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        padding_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if not self.pre_ln:
            return super().forward(hidden_states, attention_mask, **kwargs)
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            self.self_attn_layer_norm(hidden_states), attention_mask=attention_mask, **kwargs
        )
        hidden_states = residual + nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        residual = hidden_states
        hidden_states = self.activation_fn(self.fc1(self.final_layer_norm(hidden_states)))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        return residual + nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)


class _ResidualBlock(GradientCheckpointingLayer):
    """Shared residual wiring for the non-attention reservoirs: ``LN`` before (pre) or after (post)."""

    def __init__(self, config: ReservoirMarianConfig):
        super().__init__()
        self.pre_ln = config.layernorm_position == "pre"
        self.dropout = config.dropout
        self.layer_norm = nn.LayerNorm(config.d_model)

    def transform(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        branch = self.transform(self.layer_norm(hidden_states) if self.pre_ln else hidden_states, padding_mask)
        hidden_states = residual + nn.functional.dropout(branch, p=self.dropout, training=self.training)
        return hidden_states if self.pre_ln else self.layer_norm(hidden_states)


class FFNReservoirLayer(_ResidualBlock):
    """The ``ffn`` reservoir of section 3: ``FFN(LN(X)) + X``, with no attention."""

    def __init__(self, config: ReservoirMarianConfig):
        super().__init__(config)
        self.fc1 = nn.Linear(config.d_model, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, config.d_model)
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def transform(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden_states)


class BiGRUReservoirLayer(_ResidualBlock):
    """The ``bigru`` reservoir of section 3: a bidirectional GRU (``d_model/2`` per direction).

    Padding never reaches real tokens: the real tokens of each row are gathered to the front
    (whatever the padding side), run as a packed sequence, and scattered back; pads output 0.
    """

    def __init__(self, config: ReservoirMarianConfig):
        super().__init__(config)
        self.gru = nn.GRU(config.d_model, config.d_model // 2, batch_first=True, bidirectional=True)

    def transform(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if padding_mask is None or bool(padding_mask.all()):
            return self.gru(hidden_states)[0]
        order = torch.argsort((~padding_mask).to(torch.int8), dim=1, stable=True)  # real tokens first
        index = order.unsqueeze(-1).expand_as(hidden_states)
        lengths = padding_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(hidden_states.gather(1, index), lengths, batch_first=True, enforce_sorted=False)
        output, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=hidden_states.shape[1])
        output = torch.zeros_like(output).scatter(1, index, output)
        return output.masked_fill(~padding_mask.unsqueeze(-1), 0.0)


class LightweightConv(nn.Module):
    """Lightweight convolution (Wu et al., 2019): a depthwise convolution whose softmax-normalised
    kernels are shared by the ``d_model / heads`` channels of each head."""

    def __init__(self, channels: int, heads: int, kernel_size: int):
        super().__init__()
        self.heads = heads
        self.kernel_size = kernel_size
        # Only ever a reservoir: its value is drawn by reservoir_parameter_value (the model's _init_weights).
        self.weight = nn.Parameter(torch.zeros(heads, 1, kernel_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        channels = hidden_states.shape[-1]
        kernel = torch.softmax(self.weight, dim=-1).repeat_interleave(channels // self.heads, dim=0)
        output = nn.functional.conv1d(
            hidden_states.transpose(1, 2),
            kernel.to(hidden_states.dtype),
            padding=self.kernel_size // 2,
            groups=channels,
        )
        return output.transpose(1, 2)


class ConvReservoirLayer(_ResidualBlock):
    """The ``cnn`` reservoir of section 3: GLU input projection, lightweight convolution, output
    projection. Pads are zeroed before the convolution, so they act like the zero padding at the
    sequence boundary and real tokens see the same inputs as without padding."""

    def __init__(self, config: ReservoirMarianConfig):
        super().__init__(config)
        self.input_proj = nn.Linear(config.d_model, 2 * config.d_model)
        self.conv = LightweightConv(config.d_model, config.encoder_attention_heads, config.reservoir_cnn_kernel_size)
        self.output_proj = nn.Linear(config.d_model, config.d_model)

    def transform(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        hidden_states = nn.functional.glu(self.input_proj(hidden_states), dim=-1)
        if padding_mask is not None:
            hidden_states = hidden_states.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return self.output_proj(self.conv(hidden_states))


RESERVOIR_LAYER_CLASSES = {"ffn": FFNReservoirLayer, "bigru": BiGRUReservoirLayer, "cnn": ConvReservoirLayer}


def build_encoder_layer(config: ReservoirMarianConfig, layer_idx: int) -> nn.Module:
    """The encoder layer at ``layer_idx``: trainable, or a frozen reservoir of the configured type."""
    reservoir_type = config.encoder_reservoir_types.get(layer_idx)
    if reservoir_type is None:
        return ReservoirMarianEncoderLayer(config, layer_idx)
    if reservoir_type == "transformer":
        layer = ReservoirMarianEncoderLayer(config, layer_idx)
    else:
        layer = RESERVOIR_LAYER_CLASSES[reservoir_type](config)
    layer.reservoir_type = reservoir_type
    return mark_reservoir(layer, "encoder", layer_idx)


class ReservoirMarianDecoderLayer(MarianDecoderLayer):
    """A Marian decoder layer with a choice of LayerNorm position (post: Marian's layer)."""

    def __init__(self, config: ReservoirMarianConfig, layer_idx: int | None = None):
        super().__init__(config, layer_idx)
        self.pre_ln = config.layernorm_position == "pre"

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache=None,
        use_cache: bool | None = True,
        **kwargs,
    ) -> torch.Tensor:
        if not self.pre_ln:
            return super().forward(
                hidden_states,
                attention_mask,
                encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                use_cache=use_cache,
                **kwargs,
            )
        dropout = nn.functional.dropout
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            self.self_attn_layer_norm(hidden_states), cache=cache, attention_mask=attention_mask, **kwargs
        )
        hidden_states = residual + dropout(hidden_states, p=self.dropout, training=self.training)
        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states, _ = self.encoder_attn(
                self.encoder_attn_layer_norm(hidden_states),
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                **kwargs,
            )
            hidden_states = residual + dropout(hidden_states, p=self.dropout, training=self.training)
        residual = hidden_states
        hidden_states = self.activation_fn(self.fc1(self.final_layer_norm(hidden_states)))
        hidden_states = dropout(hidden_states, p=self.activation_dropout, training=self.training)
        hidden_states = self.fc2(hidden_states)
        return residual + dropout(hidden_states, p=self.dropout, training=self.training)


# --------------------------------------------------------------------------------------------
# Backskipping (paper section 3.2): skip the reservoir's backward pass
# --------------------------------------------------------------------------------------------


def backskip_probability(step: int, warmup_steps: int, anneal_factor: float) -> float:
    """Probability of skipping a reservoir's backward pass at ``step``: 0 during warm-up, then
    ``1 - anneal_factor ** (step - warmup_steps + 1)``, which anneals towards 1."""
    if step < warmup_steps:
        return 0.0
    return 1.0 - anneal_factor ** (step - warmup_steps + 1)


def backskip_decision(seed: int, step: int, layer_idx: int, probability: float) -> bool:
    """The skip decision: a pure function of (seed, step, layer), so every DDP rank agrees."""
    if probability <= 0.0:
        return False
    key = hashlib.sha256(f"backskip:{seed}:{step}:{layer_idx}".encode()).hexdigest()
    return int(key[:13], 16) / 16**13 < probability


def backskip_plan(config: ReservoirMarianConfig, step: int) -> tuple[int, ...]:
    """The encoder reservoirs whose backward pass is skipped at ``step`` (empty for ``exact``).

    Decided outside the forward pass, so that a compiled forward reads a tuple of layer indices, not a step
    counter: ``torch.compile`` then builds one graph per skip pattern (at most 2**k for k reservoirs), instead
    of recompiling at every step, and the hash behind the decision never enters the graph.
    """
    if config.backskip_mode == "exact":
        return ()
    probability = backskip_probability(step, config.backskip_warmup_steps, config.backskip_anneal_factor)
    return tuple(
        i for i in config.encoder_reservoir_layers if backskip_decision(config.reservoir_seed, step, i, probability)
    )


class BackskipPredictor(nn.Module):
    """Synthetic gradient for a reservoir: ``g_in ~ g_out + g_out @ W`` (``W = U V^T`` when low-rank).

    It starts as the identity (``W = 0``), i.e. the straight-through estimate, and is trained by
    regression onto the true input gradient whenever that gradient is computed.
    """

    def __init__(self, d_model: int, rank: int = 0):
        super().__init__()
        self.rank = rank
        if rank == 0:
            self.weight = nn.Parameter(torch.zeros(d_model, d_model))
        else:
            # Initial values (down ~ N(0, d^-1/2), up = 0) are set by the model's _init_weights.
            self.down = nn.Parameter(torch.zeros(d_model, rank))
            self.up = nn.Parameter(torch.zeros(rank, d_model))
        # The relative squared error of the last regression (an exact step), NaN before the first.
        self.register_buffer("relative_error", torch.tensor(float("nan")), persistent=False)

    @property
    def last_relative_error(self) -> float | None:
        """The last regression's relative squared error (None before the first); reading it syncs the device."""
        value = float(self.relative_error)
        return None if math.isnan(value) else value

    def forward(self, grad_output: torch.Tensor) -> torch.Tensor:
        correction = grad_output @ self.weight if self.rank == 0 else (grad_output @ self.down) @ self.up
        return grad_output + correction


class _SkippedBackward(torch.autograd.Function):
    """Output of a reservoir that ran without a graph; its backward is the gradient estimate."""

    @staticmethod
    def forward(ctx, hidden_states, output, predictor, *params):
        ctx.predictor = predictor
        ctx.param_shapes = [p.shape for p in params]
        return output.clone()

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.predictor is None:
            grad_input = grad_output
        else:
            with torch.no_grad():
                grad_input = ctx.predictor(grad_output)
        # Zero (not None) predictor gradients keep DDP's reducer happy on skipped steps.
        zeros = [grad_output.new_zeros(shape) for shape in ctx.param_shapes]
        return (grad_input, None, None, *zeros)


def skipped_reservoir_forward(layer: nn.Module, hidden_states, attention_mask, predictor=None, **kwargs):
    """A reservoir's forward without its backward: run ``layer`` without a graph, and give the output a
    backward that is the gradient estimate (identity, or ``predictor`` applied to the output gradient)."""
    params = tuple(predictor.parameters()) if predictor is not None else ()
    with torch.no_grad():  # no graph: the reservoir's backward cannot run
        output = layer(hidden_states, attention_mask, **kwargs)
    return _SkippedBackward.apply(hidden_states, output, predictor, *params)


def _predictor_regression(grad_output, grad_input, params):
    """The predictor's regression on one exact step: its relative squared error and its gradients.

    ``params`` are the predictor's ``(weight,)`` or ``(down, up)``; the estimate is ``g_out + g_out @ W`` (or
    ``g_out + (g_out @ down) @ up``), the target the true input gradient. The gradients are written out (no nested
    autograd), so that the step traces into one compiled graph. Relative error: gradients are tiny, and dividing
    by the target's squared norm keeps the regression scale-free.
    """
    width = grad_input.shape[-1]
    source = grad_output.detach().reshape(-1, width).float()
    target = grad_input.detach().reshape(-1, width).float()
    scale = target.pow(2).sum().clamp_min(1e-30)
    if len(params) == 1:
        (weight,) = params
        residual = source + source @ weight.float() - target
        grads = (2 * source.T @ residual / scale,)
    else:
        down, up = params
        hidden = source @ down.float()
        residual = source + hidden @ up.float() - target
        grads = (2 * source.T @ (residual @ up.float().T) / scale, 2 * hidden.T @ residual / scale)
    error = residual.pow(2).sum() / scale
    return error, tuple(g.to(p.dtype) for g, p in zip(grads, params))


class _RegressionTap(torch.autograd.Function):
    """Identity on the reservoir input, plus a zero *carrier* that ``_OutputTap`` sends the output gradient
    back through: the backward then has both the reservoir's input and output gradient, and trains the
    predictor on them, with no Python-side store (which ``torch.compile`` could not trace). The regression
    error goes into the predictor's ``relative_error`` buffer (a tensor write, no device sync)."""

    @staticmethod
    def forward(ctx, hidden_states, error_buffer, *params):
        ctx.error_buffer = error_buffer
        ctx.save_for_backward(*params)
        return hidden_states.view_as(hidden_states), torch.zeros_like(hidden_states)

    @staticmethod
    def backward(ctx, grad_input, grad_output):
        error, grads = _predictor_regression(grad_output, grad_input, ctx.saved_tensors)
        ctx.error_buffer.copy_(error.detach())
        return (grad_input, None, *grads)


class _OutputTap(torch.autograd.Function):
    """Identity on the reservoir output; its backward also hands the output gradient to the carrier."""

    @staticmethod
    def forward(ctx, output, carrier):
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, grad_output


# --------------------------------------------------------------------------------------------
# Reservoir checksums and storage (seed-only saves rebuild the reservoirs from reservoir_seed)
# --------------------------------------------------------------------------------------------


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, float32 bytes) of each tensor, in name order: one reservoir's checksum."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_weights_format(path: str, allow_pickle: bool, kwargs: dict) -> None:
    """Refuse a folder of pickle weights unless ``allow_pickle``; prefer safetensors where both exist."""
    if os.path.isdir(path):
        names = set(os.listdir(path))
        has_safetensors = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names)
        if not has_safetensors and any(n.endswith((".bin", ".pt", ".pth")) for n in names) and not allow_pickle:
            raise ValueError(
                f"{path} holds pickle weights and no safetensors file. Unpickling can run arbitrary code, so it "
                "is refused; pass allow_pickle=True only if you trust the file, then re-save it as safetensors."
            )
        if has_safetensors and not allow_pickle:
            kwargs.setdefault("use_safetensors", True)


def _regenerated_checksums(model) -> dict[str, str]:
    """The checksums that this config's seed produces, computed on a fresh CPU copy of each layer."""
    fresh = {}
    for layer_id, layer in model.reservoir_layers().items():
        copy = {}
        for module_name, module in layer.named_modules():
            if getattr(module, "_reservoir_tag", None) is None:
                continue
            for name, param in module.named_parameters(recurse=False):
                value = reservoir_parameter_value(model.config, module, name, param).to(param.dtype)
                copy[f"{module_name}.{name}" if module_name else name] = value
        fresh[layer_id] = _tensors_digest(copy)
    return fresh


def _seed_checksums(model) -> dict[str, str]:
    """The reservoirs' checksums for a seed-only save, after checking that the seed still generates them."""
    expected, actual = _regenerated_checksums(model), model.reservoir_checksums()
    changed = sorted(k for k in actual if expected.get(k) != actual[k])
    if changed:
        raise ValueError(
            f"Reservoir layers {changed} no longer equal what reservoir_seed={model.config.reservoir_seed} "
            "generates (they were loaded or edited), so a seed cannot describe them; save with "
            "reservoir_storage='weights'."
        )
    return actual


def _left_out_of_weights(model, storage: str) -> tuple[str, ...]:
    """Prefixes of the modules whose tensors stay out of the weights file: seed-only reservoirs, and the
    backskip predictors when the config says not to export them."""
    return tuple(
        f"{name}."
        for name, module in model.named_modules()
        if (storage == "seed" and getattr(module, "is_reservoir", False))
        or (not model.config.backskip_export_predictor and isinstance(module, BackskipPredictor))
    )


def _verify_reservoir_checksums(model) -> None:
    """A seed-only checkpoint's regenerated reservoirs must match the checksums recorded at save time."""
    recorded = model.config.reservoir_checksums or {}
    actual = model.reservoir_checksums()
    if set(recorded) != set(actual):
        raise ValueError(
            f"The config records reservoir checksums for {sorted(recorded)} but the model has reservoir layers "
            f"{sorted(actual)}; the config was edited. Restore the original config.json."
        )
    bad = sorted(k for k in actual if actual[k] != recorded[k])
    if bad:
        raise ValueError(
            f"The reservoir layers {bad} regenerated from reservoir_seed={model.config.reservoir_seed} do not "
            f"match the checksums recorded at save time (torch {torch.__version__}). The seed or the checksums "
            "were edited, or this torch/LAPACK build draws different numbers; load a copy saved with "
            "reservoir_storage='weights' instead. No weights were loaded silently."
        )


def _parameter_summary(named_parameters) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for name, param in named_parameters:
        parts = name.split(".")
        if "layers" in parts:
            group = ".".join(parts[: parts.index("layers") + 2])
        else:
            group = ".".join(parts[:-1]) or name
        group = group.removeprefix("model.")
        row = summary.setdefault(group, {"trainable": 0, "total": 0})
        row["total"] += param.numel()
        row["trainable"] += param.numel() if param.requires_grad else 0
    summary["total"] = {
        "trainable": sum(r["trainable"] for r in summary.values()),
        "total": sum(r["total"] for r in summary.values()),
    }
    return summary


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class ReservoirMarianPreTrainedModel(MarianPreTrainedModel):
    """Base class: seeded reservoir initialisation, freezing, and re-freezing after loading."""

    config_class = ReservoirMarianConfig
    config: ReservoirMarianConfig

    def _init_weights(self, module: nn.Module) -> None:
        """Every initial value of the model: reservoirs (the only home of GRUs and lightweight convolutions)
        from their seed, embeddings fairseq's way, backskip predictors as the identity, the rest Marian's."""
        if hasattr(module, "backskip_count_tensor"):
            init.zeros_(module.backskip_count_tensor)
        if getattr(module, "_reservoir_tag", None) is not None:
            for name, param in module.named_parameters(recurse=False):
                init.copy_(param, reservoir_parameter_value(self.config, module, name, param).to(param.dtype))
            return
        super()._init_weights(module)
        if isinstance(module, nn.Embedding) and not isinstance(module, MarianSinusoidalPositionalEmbedding):
            if self.config.scale_embedding:
                # fairseq's transformer: N(0, d^-1/2), so that after the sqrt(d) scale token
                # embeddings have unit variance, like the sinusoidal positions (Marian's 0.02
                # leaves them at 0.3, which slows training from scratch).
                init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)
                if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                    init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, BackskipPredictor):
            init.constant_(module.relative_error, float("nan"))
            if module.rank == 0:
                init.zeros_(module.weight)
            else:
                init.normal_(module.down, mean=0.0, std=self.config.d_model**-0.5)
                init.zeros_(module.up)

    def reservoir_layers(self) -> dict[str, nn.Module]:
        """Every reservoir layer, keyed by its id (``"encoder.2"``, ``"decoder.0"``)."""
        return {m.reservoir_id: m for m in self.modules() if getattr(m, "is_reservoir", False)}

    def freeze_reservoirs(self) -> None:
        """Set ``requires_grad=False`` on every reservoir parameter and on the sinusoidal position tables.

        Called after construction and after `from_pretrained`, which turns ``requires_grad`` back on
        for every loaded weight. The position tables are fixed functions of the position, never learned
        and never saved; a trainable copy would drift in fine-tuning and differ from what reloads.
        """
        for layer in self.reservoir_layers().values():
            layer.requires_grad_(False)
        for name, module in self.named_modules():
            if name.endswith("embed_positions"):
                module.requires_grad_(False)

    def post_init(self) -> None:
        # The backskip predictor is a training aid; inference works without it.
        self._keys_to_ignore_on_load_missing = [
            *(self._keys_to_ignore_on_load_missing or []),
            r"backskip_predictors\.",
        ]
        if self.config.reservoir_storage == "seed":
            # Seed-only checkpoints leave reservoir tensors out on purpose: not a "missing key".
            self._keys_to_ignore_on_load_missing = [*(self._keys_to_ignore_on_load_missing or [])] + [
                rf"{stack}\.layers\.({'|'.join(map(str, layers))})\."
                for stack, layers in (
                    ("encoder", self.config.encoder_reservoir_layers),
                    ("decoder", self.config.decoder_reservoir_layers),
                )
                if layers
            ]
        super().post_init()
        self.freeze_reservoirs()

    def reservoir_checksums(self) -> dict[str, str]:
        """SHA-256 of each reservoir layer's tensors (float32, by parameter name)."""
        return {
            layer_id: _tensors_digest(dict(layer.named_parameters()))
            for layer_id, layer in sorted(self.reservoir_layers().items())
        }

    def save_pretrained(self, save_directory, *args, reservoir_storage: str | None = None, **kwargs):
        """Save like [`PreTrainedModel.save_pretrained`], optionally without the reservoir tensors.

        Args:
            reservoir_storage (`str`, *optional*): ``"seed"`` leaves every reservoir tensor out of the
                weights file and records ``reservoir_seed`` plus one checksum per reservoir layer in
                the config; `from_pretrained` regenerates and verifies them. ``"weights"`` stores
                them like any other tensor. Defaults to ``config.reservoir_storage``.
        """
        storage = reservoir_storage or self.config.reservoir_storage
        if storage not in RESERVOIR_STORAGES:
            raise ValueError(
                f"reservoir_storage={reservoir_storage!r} is not supported; use one of {', '.join(RESERVOIR_STORAGES)}"
            )
        saved_fields = (self.config.reservoir_storage, self.config.reservoir_checksums)
        if storage == "seed":
            self.config.reservoir_storage, self.config.reservoir_checksums = "seed", _seed_checksums(self)
        else:
            self.config.reservoir_storage, self.config.reservoir_checksums = "weights", None
        left_out = _left_out_of_weights(self, storage)
        if left_out:
            state_dict = kwargs.get("state_dict") or self.state_dict()
            kwargs["state_dict"] = {k: v for k, v in state_dict.items() if not k.startswith(left_out)}
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.reservoir_storage, self.config.reservoir_checksums = saved_fields

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, allow_pickle: bool = False, **kwargs):
        """Load like [`PreTrainedModel.from_pretrained`], then re-freeze the reservoirs.

        ``from_pretrained`` turns ``requires_grad`` back on for every loaded weight, so the
        reservoirs are frozen again here. Seed-only checkpoints regenerate their reservoirs from
        ``reservoir_seed`` and must match the recorded checksums. Pickle weights
        (``pytorch_model.bin``) are refused unless ``allow_pickle=True``.
        """
        path = str(pretrained_model_name_or_path)
        _check_weights_format(path, allow_pickle, kwargs)
        want_info = kwargs.pop("output_loading_info", False)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        except Exception as error:
            if "safetensors" in type(error).__module__ or "deserializ" in str(error).lower():
                raise ValueError(
                    f"Could not read the weights in {path}: {error}. The file is damaged or truncated; download or "
                    "copy it again."
                ) from error
            raise
        model, info = loaded
        unexpected = sorted(info.get("unexpected_keys") or [])
        if unexpected:
            raise ValueError(
                f"The weights in {path} do not fit its config.json: {len(unexpected)} saved tensors have no place in "
                f"the model (e.g. {', '.join(unexpected[:3])}), so config.json was edited (a reservoir type or a "
                "layer count) or belongs to another model. Restore the config the weights were saved with."
            )
        model.freeze_reservoirs()
        if model.config.reservoir_storage == "seed":
            _verify_reservoir_checksums(model)
        return (model, info) if want_info else model

    def parameter_summary(self) -> dict[str, dict[str, int]]:
        """Trainable and total parameter counts per layer, plus ``"total"``.

        Returns:
            `dict[str, dict[str, int]]`: ``{"encoder.layers.2": {"trainable": 0, "total": 789}, ...}``.
            Tied weights count once.

        Example:
            >>> summary = model.parameter_summary()
            >>> summary["total"]["trainable"] < summary["total"]["total"]
            True
        """
        return _parameter_summary(self.named_parameters())


class ReservoirMarianEncoder(ReservoirMarianPreTrainedModel):
    """Marian's encoder with reservoir layers placed by ``config.encoder_reservoir_layers``.

    With pre-LN it ends with a final LayerNorm.
    """

    _can_record_outputs = {"hidden_states": GradientCheckpointingLayer, "attentions": MarianAttention}

    def __init__(self, config: ReservoirMarianConfig):
        super().__init__(config)
        self.dropout = config.dropout
        self.layerdrop = config.encoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = MarianSinusoidalPositionalEmbedding(
            config.max_position_embeddings, config.d_model, self.padding_idx
        )
        self.layers = nn.ModuleList([build_encoder_layer(config, i) for i in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.d_model) if config.layernorm_position == "pre" else None
        if config.backskip_mode == "learned" and config.encoder_reservoir_layers:
            self.backskip_predictors = nn.ModuleDict(
                {
                    str(i): BackskipPredictor(config.d_model, config.backskip_predictor_rank)
                    for i in config.encoder_reservoir_layers
                }
            )
        else:
            self.backskip_predictors = None
        # Reservoir forwards that skipped / computed their backward: a tensor, not Python ints, so that a compiled
        # forward updates it in its graph instead of recompiling whenever a count changes.
        self.register_buffer("backskip_count_tensor", torch.zeros(2, dtype=torch.long), persistent=False)
        self.set_backskip_step(0)
        self.gradient_checkpointing = False
        self.post_init()

    @property
    def backskip_counts(self) -> dict[str, int]:
        """Reservoir forwards in training that skipped (``skipped``) or computed (``exact``) their backward."""
        skipped, exact = self.backskip_count_tensor.tolist()
        return {"skipped": skipped, "exact": exact}

    def set_backskip_step(self, step: int) -> None:
        """Plan the backskip decisions of training step ``step`` ([`backskip_plan`]).

        The Trainer's ``BackskipStepCallback`` calls it at every step begin with the global step, so every DDP
        rank skips the same reservoirs. Without it, an eager forward in training advances the step by one; a
        compiled forward does not (call this from your loop).
        """
        self.backskip_step = step
        self.backskip_plan = backskip_plan(self.config, step)

    def _reservoir_forward(self, idx: int, layer: nn.Module, hidden_states, attention_mask, padding_mask, kwargs):
        """Run reservoir ``idx`` with the configured backskip mode (training with gradients only)."""
        predictor = self.backskip_predictors[str(idx)] if self.backskip_predictors is not None else None
        params = tuple(predictor.parameters()) if predictor is not None else ()
        if idx in self.backskip_plan:
            self.backskip_count_tensor[0] += 1
            return skipped_reservoir_forward(
                layer, hidden_states, attention_mask, predictor, padding_mask=padding_mask, **kwargs
            )
        self.backskip_count_tensor[1] += 1
        if predictor is None:
            return layer(hidden_states, attention_mask, padding_mask=padding_mask, **kwargs)
        tapped, carrier = _RegressionTap.apply(hidden_states, predictor.relative_error, *params)
        output = layer(tapped, attention_mask, padding_mask=padding_mask, **kwargs)
        return _OutputTap.apply(output, carrier)

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        """Encode ``input_ids`` (or ``inputs_embeds``) with padding ``attention_mask`` (1 = real token)."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale
        hidden_states = inputs_embeds + self.embed_positions(inputs_embeds.shape[:-1])
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)

        padding_mask = attention_mask.bool() if attention_mask is not None and attention_mask.dim() == 2 else None
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask
        )
        backskip = self.training and self.config.backskip_mode != "exact" and torch.is_grad_enabled()
        for idx, layer in enumerate(self.layers):
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue  # LayerDrop (Fan et al., 2019), the paper's baseline
            if backskip and getattr(layer, "is_reservoir", False) and hidden_states.requires_grad:
                hidden_states = self._reservoir_forward(
                    idx, layer, hidden_states, attention_mask, padding_mask, kwargs
                )
            else:
                hidden_states = layer(hidden_states, attention_mask, padding_mask=padding_mask, **kwargs)
        if backskip and not torch.compiler.is_compiling():
            self.set_backskip_step(self.backskip_step + 1)  # without the callback, count forwards (eager only)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)


class ReservoirMarianDecoder(ReservoirMarianPreTrainedModel, MarianDecoder):
    """Marian's decoder, with optional frozen layers (``config.decoder_reservoir_layers``) and pre-LN."""

    def __init__(self, config: ReservoirMarianConfig):
        PreTrainedModel.__init__(self, config)
        self.dropout = config.dropout
        self.layerdrop = config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_position_embeddings
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.decoder_vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = MarianSinusoidalPositionalEmbedding(
            config.max_position_embeddings, config.d_model, self.padding_idx
        )
        layers = []
        for i in range(config.decoder_layers):
            layer = ReservoirMarianDecoderLayer(config, layer_idx=i)
            if i in config.decoder_reservoir_layers:
                layer.reservoir_type = "transformer"
                mark_reservoir(layer, "decoder", i)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(config.d_model) if config.layernorm_position == "pre" else None
        self.gradient_checkpointing = False
        self.post_init()

    def forward(self, *args, **kwargs):
        outputs = super().forward(*args, **kwargs)
        if self.layer_norm is not None:
            if isinstance(outputs, tuple):
                outputs = (self.layer_norm(outputs[0]),) + tuple(outputs[1:])
            else:
                outputs.last_hidden_state = self.layer_norm(outputs.last_hidden_state)
        return outputs


class ReservoirMarianModel(ReservoirMarianPreTrainedModel, MarianModel):
    """The bare encoder-decoder, a drop-in for [`MarianModel`] with reservoir layers.

    Args:
        config ([`ReservoirMarianConfig`]): the model configuration.
    """

    def __init__(self, config: ReservoirMarianConfig):
        PreTrainedModel.__init__(self, config)
        if config.share_encoder_decoder_embeddings:
            self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
            self._tied_weights_keys = {
                "decoder.embed_tokens.weight": "shared.weight",
                "encoder.embed_tokens.weight": "shared.weight",
            }
        else:
            self._tied_weights_keys = None
        self.encoder = ReservoirMarianEncoder(config)
        self.decoder = ReservoirMarianDecoder(config)
        self.post_init()


class ReservoirMarianMTModel(ReservoirMarianPreTrainedModel, MarianMTModel):
    """The translation model: [`ReservoirMarianModel`] with Marian's LM head, ``labels`` loss and
    ``generate()`` (greedy and beam search, with the KV cache).

    Args:
        config ([`ReservoirMarianConfig`]): the model configuration.

    Example:
        >>> config = ReservoirMarianConfig(vocab_size=100, d_model=32, encoder_layers=7, decoder_layers=1,
        ...     encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
        ...     num_encoder_reservoir_layers=2, pad_token_id=99, decoder_start_token_id=99)
        >>> model = ReservoirMarianMTModel(config)
        >>> model.config.encoder_layout
        'LLRLRLL'
    """

    # Marian's loss ignores `num_items_in_batch`; without this the Trainer scales the loss by
    # (gradient accumulation steps x processes) (huggingface/transformers#47688).
    accepts_loss_kwargs = False

    def __init__(self, config: ReservoirMarianConfig):
        PreTrainedModel.__init__(self, config)
        self.model = ReservoirMarianModel(config)
        if config.share_encoder_decoder_embeddings:
            self._tied_weights_keys = {
                "lm_head.weight": "model.shared.weight",
                "model.decoder.embed_tokens.weight": "model.shared.weight",
                "model.encoder.embed_tokens.weight": "model.shared.weight",
            }
        target_vocab_size = config.vocab_size if config.share_encoder_decoder_embeddings else config.decoder_vocab_size
        self.final_logits_bias = nn.Buffer(torch.zeros((1, target_vocab_size)))
        self.lm_head = nn.Linear(config.d_model, target_vocab_size, bias=False)
        self.post_init()


__all__ = [
    "ReservoirMarianPreTrainedModel",
    "ReservoirMarianModel",
    "ReservoirMarianMTModel",
    "FFNReservoirLayer",
    "BiGRUReservoirLayer",
    "ConvReservoirLayer",
    "LightweightConv",
    "ReservoirMarianEncoderLayer",
    "reservoir_parameter_value",
    "BackskipPredictor",
    "backskip_probability",
]
