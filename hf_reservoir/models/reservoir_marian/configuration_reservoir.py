"""Configuration for Reservoir Transformers (Shen et al., ACL 2021) on a Marian encoder-decoder.

This file is self-contained on purpose: it is copied next to ``modeling_reservoir.py`` into Hub
folders and loaded as remote code, so it imports nothing from ``hf_reservoir``.
"""

from __future__ import annotations

from transformers import MarianConfig

RESERVOIR_TYPES = ("transformer", "ffn", "bigru", "cnn")
RESERVOIR_PLACEMENTS = ("alternating", "bottom", "top", "middle")
RESERVOIR_INITS = ("orthogonal", "default")
LAYERNORM_POSITIONS = ("post", "pre")
RESERVOIR_STORAGES = ("weights", "seed")
BACKSKIP_MODES = ("exact", "identity", "learned")


def place_reservoir_layers(num_layers: int, num_reservoirs: int, placement: str = "alternating") -> list[int]:
    """Return the indices of the reservoir layers in a stack of ``num_layers`` layers.

    The paper (section 3, "Reservoir Transformers") interleaves reservoir and updatable layers
    in the middle of the encoder, so that the first and the last layers stay updatable. The
    ``alternating`` rule builds the block ``R L R ... L R`` (``2k - 1`` layers) and centres it.
    When the leftover regular layers cannot be split evenly, the extra one goes to the **bottom**
    of the stack (next to the embeddings): 6 layers with 2 reservoirs gives ``LLRLRL``.
    ``middle`` centres a contiguous block of ``k`` reservoirs with the same rounding;
    ``bottom`` and ``top`` put the block at either end (the paper's placement ablation).

    Args:
        num_layers (`int`): total number of layers in the stack.
        num_reservoirs (`int`): how many of them are reservoirs.
        placement (`str`): one of ``alternating``, ``middle``, ``bottom``, ``top``.

    Returns:
        `list[int]`: sorted reservoir indices.

    Example:
        >>> place_reservoir_layers(7, 2)
        [2, 4]
    """
    if placement not in RESERVOIR_PLACEMENTS:
        raise ValueError(
            f"reservoir_placement={placement!r} is not supported; use one of {', '.join(RESERVOIR_PLACEMENTS)}."
        )
    if not 0 <= num_reservoirs <= num_layers:
        raise ValueError(
            f"num_encoder_reservoir_layers={num_reservoirs} must be between 0 and the number of layers ({num_layers})."
        )
    k = num_reservoirs
    if k == 0:
        return []
    if placement == "bottom":
        return list(range(k))
    if placement == "top":
        return list(range(num_layers - k, num_layers))
    block = 2 * k - 1 if placement == "alternating" else k
    if block > num_layers:
        raise ValueError(
            f"num_encoder_reservoir_layers={k} cannot alternate with regular layers in a stack of {num_layers} "
            f"(the block R L ... L R needs {block} layers); use at most {(num_layers + 1) // 2} reservoirs, "
            "or reservoir_placement='middle'."
        )
    leftover = num_layers - block
    start = leftover - leftover // 2  # the extra regular layer, if any, goes below the block
    step = 2 if placement == "alternating" else 1
    return [start + step * i for i in range(k)]


def reservoir_types_per_layer(reservoir_type: str | list[str], num_reservoirs: int) -> list[str]:
    """``reservoir_type`` as one type per reservoir layer: one type (a string, or a list of one) is repeated.

    The one parser of the field's given forms: the config stores its result, and the checks that compare a given
    value with a saved one (flags against a saved model, a resume's recipe against the recorded one) use it too.
    """
    if isinstance(reservoir_type, str):
        return [reservoir_type] * num_reservoirs
    types = list(reservoir_type)
    return types * num_reservoirs if len(types) == 1 else types


def _check_indices(field: str, value: object, num_layers: int, layers_field: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{field}={value!r} must be a list of layer indices such as [2, 4].")
    indices = list(value)
    if len(set(indices)) != len(indices):
        raise ValueError(f"{field}={value!r} lists a layer twice; give each reservoir index once.")
    bad = [i for i in indices if not 0 <= i < num_layers]
    if bad:
        raise ValueError(
            f"{field}={value!r} has indices {bad} outside the stack; {layers_field}={num_layers} allows 0 to "
            f"{num_layers - 1}."
        )
    return sorted(indices)


def _validate_placement(config) -> list[int]:
    """Resolve and check the reservoir indices: explicit ones, or the placement rule's."""
    count = config.num_encoder_reservoir_layers
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError(f"num_encoder_reservoir_layers={count!r} must be a non-negative integer.")
    if config.encoder_reservoir_layers is not None:
        layers = _check_indices(
            "encoder_reservoir_layers", config.encoder_reservoir_layers, config.encoder_layers, "encoder_layers"
        )
        if count is not None and count != len(layers):
            raise ValueError(
                f"num_encoder_reservoir_layers={count} disagrees with encoder_reservoir_layers={layers}; "
                "give only one of the two."
            )
    else:
        layers = place_reservoir_layers(config.encoder_layers, count or 0, config.reservoir_placement)
    config.encoder_reservoir_layers = layers
    config.num_encoder_reservoir_layers = len(layers)
    config.decoder_reservoir_layers = (
        []
        if config.decoder_reservoir_layers is None
        else _check_indices(
            "decoder_reservoir_layers", config.decoder_reservoir_layers, config.decoder_layers, "decoder_layers"
        )
    )
    return layers


def _validate_types(config, layers: list[int]) -> None:
    """``reservoir_type``: a known type, or one per reservoir layer; and what each type needs of the sizes.

    One type (a string, or a list of one) is repeated for every reservoir layer; a list gives one type per layer.
    The config then holds it in its per-layer form, one type per entry of ``encoder_reservoir_layers`` (empty
    without reservoirs), parsed here once by [`reservoir_types_per_layer`]; everything downstream reads that form.
    """
    types = config.reservoir_type
    if not (isinstance(types, str) or (isinstance(types, (list, tuple)) and all(isinstance(t, str) for t in types))):
        raise ValueError(f"reservoir_type={types!r} must be a string or a list of strings.")
    named = [types] if isinstance(types, str) else list(types)
    unknown = [t for t in named if t not in RESERVOIR_TYPES]
    if unknown:  # checked even where there are no reservoir layers to use the type
        raise ValueError(
            f"reservoir_type={types!r} contains unknown type(s) {unknown}; use {', '.join(RESERVOIR_TYPES)}."
        )
    if len(named) not in (1, len(layers)):
        raise ValueError(
            f"reservoir_type={types!r} has {len(named)} entries but there are {len(layers)} encoder "
            f"reservoir layers {layers}; give one type per reservoir layer, or a single type for all of them."
        )
    config.reservoir_type = reservoir_types_per_layer(named, len(layers))
    if "cnn" in config.reservoir_type and config.d_model % config.encoder_attention_heads:
        raise ValueError(
            f"d_model={config.d_model} must be divisible by encoder_attention_heads={config.encoder_attention_heads} "
            "for the cnn reservoir, which shares one kernel per head."
        )
    if "bigru" in config.reservoir_type and config.d_model % 2:
        raise ValueError(f"d_model={config.d_model} must be even for the bigru reservoir (d_model/2 per direction).")


class ReservoirMarianConfig(MarianConfig):
    r"""Configuration of a Marian encoder-decoder in which some layers are frozen random *reservoirs*.

    It accepts every [`MarianConfig`] field, plus the reservoir fields below. The reservoir fields
    are validated when the config is built, and a bad value raises `ValueError`.

    Args:
        encoder_reservoir_layers (`list[int]`, *optional*):
            Explicit indices of the encoder layers that are reservoirs. Takes precedence over
            `num_encoder_reservoir_layers`; after construction it always holds the resolved list.
        num_encoder_reservoir_layers (`int`, *optional*):
            How many encoder layers are reservoirs, placed by `reservoir_placement`.
        reservoir_placement (`str`, defaults to `"alternating"`):
            `alternating` (the paper's rule, e.g. `LLRLRLL`), `middle`, `bottom` or `top`.
            See [`place_reservoir_layers`] for the rounding rule.
        reservoir_type (`str` or `list[str]`, defaults to `"transformer"`):
            `transformer`, `ffn`, `bigru` or `cnn` for every encoder reservoir layer, or one entry per
            reservoir layer. After construction it always holds one type per entry of
            `encoder_reservoir_layers` (a list; empty without reservoirs).
        reservoir_init (`str`, defaults to `"orthogonal"`):
            `orthogonal` projection weights (the paper's choice) with PyTorch's default biases and
            LayerNorm, or `default`: normal(0, `init_std`) weights and zero biases, like the
            trainable layers. Both are drawn from `reservoir_seed`, never from the global RNG.
        reservoir_seed (`int`, defaults to 0):
            Seed from which every reservoir tensor is drawn. A tensor is a pure function of
            (config, seed, stack, layer index, parameter name).
        layernorm_position (`str`, defaults to `"post"`):
            `post` (Marian) or `pre` (the paper's `H = MHA(LN(X)) + X`). Pre-LN adds a final
            LayerNorm to the encoder and the decoder. It applies to every layer, both stacks.
        decoder_reservoir_layers (`list[int]`, *optional*):
            Indices of frozen decoder layers (our extension; the paper freezes encoder layers
            only). Decoder reservoirs are frozen regular decoder layers.
        reservoir_cnn_kernel_size (`int`, defaults to 3):
            Kernel width of the `cnn` (lightweight convolution) reservoir.
        reservoir_storage (`str`, defaults to `"weights"`):
            `weights` saves reservoir tensors in the weights file; `seed` leaves them out and
            regenerates them from `reservoir_seed` at load time, verified by `reservoir_checksums`.
        reservoir_checksums (`dict[str, str]`, *optional*):
            SHA-256 per reservoir layer (`"encoder.2"`), written by `save_pretrained` in seed mode.
        backskip_mode (`str`, defaults to `"exact"`):
            How the gradient reaches the layers below an encoder reservoir (paper section 3.2,
            "backskipping"): `exact` backpropagates through the frozen layer; `identity` passes the
            output gradient straight through (as if the layer were its residual path alone);
            `learned` maps it through a trainable predictor (identity plus a linear or low-rank
            correction), regressed onto the true gradient on the steps that compute it.
        backskip_warmup_steps (`int`, defaults to 1000):
            Steps with true gradients before any skipping.
        backskip_anneal_factor (`float`, defaults to 0.999):
            After warm-up the skip probability is `1 - factor ** (step - warmup + 1)`: it anneals
            towards 1 (always skip) faster for smaller factors. 0 skips on every step after warm-up.
        backskip_predictor_rank (`int`, defaults to 0):
            Rank of the learned predictor's correction; 0 means a full `d_model x d_model` matrix.
        backskip_export_predictor (`bool`, defaults to `True`):
            Whether `save_pretrained` keeps the learned predictor (needed to resume training, not
            for inference).

    Example:
        >>> config = ReservoirMarianConfig(encoder_layers=7, num_encoder_reservoir_layers=2)
        >>> config.encoder_layout
        'LLRLRLL'
    """

    model_type = "reservoir-marian"

    encoder_reservoir_layers: list[int] | None = None
    num_encoder_reservoir_layers: int | None = None
    reservoir_placement: str = "alternating"
    reservoir_type: str | list[str] = "transformer"
    reservoir_init: str = "orthogonal"
    reservoir_seed: int = 0
    layernorm_position: str = "post"
    decoder_reservoir_layers: list[int] | None = None
    reservoir_cnn_kernel_size: int = 3
    reservoir_storage: str = "weights"
    reservoir_checksums: dict[str, str] | None = None
    backskip_mode: str = "exact"
    backskip_warmup_steps: int = 1000
    backskip_anneal_factor: float = 0.999
    backskip_predictor_rank: int = 0
    backskip_export_predictor: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._validate_reservoir_fields()

    def _validate_reservoir_fields(self) -> None:
        for field, allowed in (
            ("reservoir_placement", RESERVOIR_PLACEMENTS),
            ("reservoir_init", RESERVOIR_INITS),
            ("layernorm_position", LAYERNORM_POSITIONS),
            ("reservoir_storage", RESERVOIR_STORAGES),
            ("backskip_mode", BACKSKIP_MODES),
        ):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"{field}={value!r} is not supported; use one of {', '.join(allowed)}.")
        for field in (
            "reservoir_seed",
            "reservoir_cnn_kernel_size",
            "backskip_warmup_steps",
            "backskip_predictor_rank",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if "kernel" in field else 0):
                raise ValueError(
                    f"{field}={value!r} must be a {'positive' if 'kernel' in field else 'non-negative'} integer."
                )
        factor = self.backskip_anneal_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < 1:
            raise ValueError(
                f"backskip_anneal_factor={factor!r} must be in [0, 1): the skip probability 1 - factor**n must "
                "grow towards 1; use for example 0.999."
            )
        if self.reservoir_cnn_kernel_size % 2 == 0:
            raise ValueError(
                f"reservoir_cnn_kernel_size={self.reservoir_cnn_kernel_size} must be odd so that the convolution "
                "stays centred; use for example 3 or 7."
            )
        layers = _validate_placement(self)
        _validate_types(self, layers)
        if self.reservoir_checksums is not None and not isinstance(self.reservoir_checksums, dict):
            raise ValueError(f"reservoir_checksums={self.reservoir_checksums!r} must be a dict or None.")

    @property
    def encoder_reservoir_types(self) -> dict[int, str]:
        """Map each encoder reservoir index to its type."""
        return dict(zip(self.encoder_reservoir_layers, self.reservoir_type))

    @property
    def encoder_layout(self) -> str:
        """The encoder as a string, bottom layer first: ``L`` updatable, ``R`` reservoir (e.g. ``LLRLRLL``)."""
        reservoirs = set(self.encoder_reservoir_layers)
        return "".join("R" if i in reservoirs else "L" for i in range(self.encoder_layers))

    @property
    def decoder_layout(self) -> str:
        """The decoder as a string, like `encoder_layout`."""
        reservoirs = set(self.decoder_reservoir_layers)
        return "".join("R" if i in reservoirs else "L" for i in range(self.decoder_layers))


__all__ = ["ReservoirMarianConfig", "place_reservoir_layers", "reservoir_types_per_layer"]
