"""The CTranslate2 engine: export a reservoir Marian model to CTranslate2, the engine Marian models are deployed with
(OPUS-MT, Argos Translate), and translate with the exported folder.

CTranslate2's own Marian converter does not fit our models: it assumes post-LN without final layer norms, a zero
``<pad>`` embedding as the decoder's start and ``<pad>`` as the last token (``shared/HF-NOTES.md``). This converter
builds the ``TransformerSpec`` from the model itself: pre- or post-LN, the embedding scale, the model's own sinusoidal
position table, final layer norms, tied or untied output projection, and the decoder starting from the real
``decoder_start_token_id``. Every encoder layer is exported: a ``transformer`` reservoir computes what a trainable
layer computes (frozen weights are weights); an ``ffn`` reservoir in a pre-LN model is a layer whose attention output
projection is zero (``X + 0 + FFN(LN(X))``, exact); BiGRU and convolution reservoirs, and FFN reservoirs under
post-LN (a layer norm always follows attention there), have no CTranslate2 layer and are refused by name.
"""

from __future__ import annotations

import json
import os
import shutil

import torch

# How HF's generate and CTranslate2 map onto each other (measured on the demo model, shared/HF-NOTES.md): the
# decoding lengths differ by the start token and </s>.
HF_TO_CT2_LENGTH_OFFSET = 2
# HF generate's length where neither the call nor the generation config gives one: transformers 5.x's model-agnostic
# default for an encoder-decoder model, 20 new tokens after the start token (measured: 21 ids per output).
HF_DEFAULT_MAX_LENGTH = 21
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json")
EXPORT_RECORD = "hf_reservoir_export.json"


class ExportError(ValueError):
    """A model that CTranslate2 cannot compute exactly; the message names the layer and why."""


def check_exportable(config) -> None:
    """Refuse, by layer, what CTranslate2 has no exact layer for."""
    for index, kind in enumerate(config.encoder_layout):
        if kind == "L":
            continue
        kind = config.encoder_reservoir_types[index]
        if kind in ("bigru", "cnn"):
            raise ExportError(
                f"encoder layer {index} is a {kind} reservoir, which CTranslate2 has no layer for; only models whose "
                "reservoirs are transformer or ffn layers can be exported. Use the HF engine for this model."
            )
        if kind == "ffn" and config.layernorm_position != "pre":
            raise ExportError(
                f"encoder layer {index} is an ffn reservoir in a post-LN model: CTranslate2 normalises after every "
                "attention block, so a layer without attention cannot be expressed. Use the HF engine."
            )
    if config.activation_function not in ("relu", "gelu", "swish", "silu"):
        raise ExportError(f"activation_function={config.activation_function!r} has no CTranslate2 counterpart.")


def _linear(spec, module: torch.nn.Linear) -> None:
    spec.weight = module.weight.detach().float().numpy().copy()
    if module.bias is not None:
        spec.bias = module.bias.detach().float().numpy().copy()


def _norm(spec, module: torch.nn.LayerNorm) -> None:
    spec.gamma = module.weight.detach().float().numpy().copy()
    spec.beta = module.bias.detach().float().numpy().copy()


def _attention(spec, attention, self_attention: bool) -> None:
    import numpy as np

    q, k, v = (getattr(attention, name) for name in ("q_proj", "k_proj", "v_proj"))
    weights = [m.weight.detach().float().numpy() for m in (q, k, v)]
    biases = [m.bias.detach().float().numpy() for m in (q, k, v)]
    if self_attention:
        spec.linear[0].weight, spec.linear[0].bias = np.concatenate(weights), np.concatenate(biases)
    else:
        spec.linear[0].weight, spec.linear[0].bias = weights[0].copy(), biases[0].copy()
        spec.linear[1].weight, spec.linear[1].bias = np.concatenate(weights[1:]), np.concatenate(biases[1:])
    _linear(spec.linear[-1], attention.out_proj)


def _ffn_as_layer(layer_spec, layer, d_model: int) -> None:
    """An FFN reservoir as a transformer layer whose attention adds nothing: out_proj weights and bias are zero."""
    import numpy as np

    zeros = np.zeros((3 * d_model, d_model), dtype=np.float32)
    layer_spec.self_attention.linear[0].weight, layer_spec.self_attention.linear[0].bias = zeros, zeros[:, 0].copy()
    out = np.zeros((d_model, d_model), dtype=np.float32)
    layer_spec.self_attention.linear[1].weight, layer_spec.self_attention.linear[1].bias = out, out[:, 0].copy()
    ones, nought = np.ones(d_model, dtype=np.float32), np.zeros(d_model, dtype=np.float32)
    layer_spec.self_attention.layer_norm.gamma, layer_spec.self_attention.layer_norm.beta = ones, nought
    _linear(layer_spec.ffn.linear_0, layer.fc1)
    _linear(layer_spec.ffn.linear_1, layer.fc2)
    _norm(layer_spec.ffn.layer_norm, layer.layer_norm)


def _stack_common(spec, stack) -> None:
    spec.scale_embeddings = stack.embed_scale
    table = stack.embed_positions.weight.detach().float().numpy().copy()
    spec.position_encodings.encodings = table
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = stack.embed_tokens.weight.detach().float().numpy().copy()
    if stack.layer_norm is not None:
        _norm(spec.layer_norm, stack.layer_norm)


def model_spec(model):
    """The CTranslate2 ``TransformerSpec`` of a ``ReservoirMarianMTModel`` (weights copied, fp32)."""
    from ctranslate2.specs import common_spec, transformer_spec

    config = model.config
    check_exportable(config)
    activations = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}
    activations.update(swish=common_spec.Activation.SWISH, silu=common_spec.Activation.SWISH)
    pre = config.layernorm_position == "pre"
    spec = transformer_spec.TransformerSpec.from_config(
        (len(config.encoder_layout), config.decoder_layers),
        config.encoder_attention_heads,
        pre_norm=pre,
        activation=activations[config.activation_function],
    )
    encoder, decoder = model.model.encoder, model.model.decoder
    _stack_common(spec.encoder, encoder)
    for layer_spec, layer in zip(spec.encoder.layer, encoder.layers):
        if hasattr(layer, "self_attn"):
            _attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
            _norm(layer_spec.self_attention.layer_norm, layer.self_attn_layer_norm)
            _linear(layer_spec.ffn.linear_0, layer.fc1)
            _linear(layer_spec.ffn.linear_1, layer.fc2)
            _norm(layer_spec.ffn.layer_norm, layer.final_layer_norm)
        else:  # an FFN reservoir (check_exportable refused the others)
            _ffn_as_layer(layer_spec, layer, config.d_model)
    _stack_common(spec.decoder, decoder)
    for layer_spec, layer in zip(spec.decoder.layer, decoder.layers):
        _attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _norm(layer_spec.self_attention.layer_norm, layer.self_attn_layer_norm)
        _attention(layer_spec.attention, layer.encoder_attn, self_attention=False)
        _norm(layer_spec.attention.layer_norm, layer.encoder_attn_layer_norm)
        _linear(layer_spec.ffn.linear_0, layer.fc1)
        _linear(layer_spec.ffn.linear_1, layer.fc2)
        _norm(layer_spec.ffn.layer_norm, layer.final_layer_norm)
    _linear(spec.decoder.projection, model.lm_head)
    if getattr(model, "final_logits_bias", None) is not None and model.final_logits_bias.abs().sum() > 0:
        spec.decoder.projection.bias = model.final_logits_bias.detach().float().numpy().reshape(-1).copy()
    return spec


def export_ctranslate2(model_dir: str, output_dir: str, quantization: str | None = None, force: bool = False) -> str:
    """Convert the saved model in ``model_dir`` into a CTranslate2 model folder ``output_dir``, with the tokenizer's
    files beside it (so that the folder translates on its own); returns ``output_dir``.

    Args:
        model_dir (`str`): a folder written by training (weights or seed-only: the reservoirs are rebuilt on load).
        output_dir (`str`): the CTranslate2 folder to write.
        quantization (`str`, *optional*): CTranslate2's weight type (``int8``, ``int8_float32``, ``float16``, ...);
            float32 when unset.
        force (`bool`): replace an existing ``output_dir``.
    """
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise ImportError(
            'the CTranslate2 engine needs the ctranslate2 package: pip install -e ".[ctranslate2]" (or pip install '
            "ctranslate2)."
        ) from None
    from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
    from .inference import load_for_inference

    if os.path.exists(output_dir) and os.listdir(output_dir) and not force:
        raise ValueError(f"{output_dir} is not empty; choose another --output_dir or pass --force to replace it.")
    check_exportable(ReservoirMarianConfig.from_pretrained(model_dir))  # before minutes of loading
    model, tokenizer = load_for_inference(model_dir)
    spec = model_spec(model)
    tokens = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.config.bos_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)
    spec.config.decoder_start_token = spec.config.bos_token
    spec.config.eos_token = tokenizer.eos_token
    spec.config.unk_token = tokenizer.unk_token
    spec.config.layer_norm_epsilon = 1e-5
    spec.validate()
    spec.optimize(quantization=quantization)
    os.makedirs(output_dir, exist_ok=True)
    spec.save(output_dir)
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), os.path.join(output_dir, name))
    record = {"source": os.path.abspath(model_dir), "quantization": quantization or "float32"}
    record["max_position_embeddings"] = model.config.max_position_embeddings
    generation = model.generation_config
    record["generation"] = {"num_beams": generation.num_beams, "max_length": generation.max_length}
    with open(os.path.join(output_dir, EXPORT_RECORD), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return output_dir


def is_exported(path: str) -> bool:
    """Whether ``path`` is a CTranslate2 folder written by [`export_ctranslate2`]."""
    return os.path.isfile(os.path.join(path, "model.bin")) and os.path.isfile(os.path.join(path, EXPORT_RECORD))


def cached_export(model_dir: str, cache_dir: str | None = None) -> str:
    """The CTranslate2 export of ``model_dir`` in a cache (made on first use): a folder per model folder and the
    bytes of its weights and config, so that a retrained model is exported again."""
    import hashlib

    digest = hashlib.sha256(os.path.abspath(model_dir).encode())
    for name in ("config.json", "model.safetensors", "vocab.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            stat = os.stat(path)
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "hf_reservoir", "ctranslate2")
    target = os.path.join(cache_dir, digest.hexdigest()[:16])
    if not is_exported(target):
        export_ctranslate2(model_dir, target + ".partial", force=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(target + ".partial", target)
    return target


def load_ctranslate2(model: str, threads: int = 0, cache_dir: str | None = None):
    """A ``ctranslate2.Translator`` and the tokenizer for ``model``: an exported folder, or a model folder (exported
    on the fly into a cache). Returns ``(translator, tokenizer, record)``: the record of the export."""
    from ..corpus.tokenization import load_tokenizer
    from .inference import check_model_dir

    try:
        import ctranslate2
    except ImportError:
        raise ImportError(
            '--engine ctranslate2 needs the ctranslate2 package: pip install -e ".[ctranslate2]" (or pip install '
            "ctranslate2); the default engine (--engine hf) needs nothing more."
        ) from None
    if not is_exported(model):
        check_model_dir(model)
        model = cached_export(model, cache_dir)
    with open(os.path.join(model, EXPORT_RECORD), encoding="utf-8") as handle:
        record = json.load(handle)
    translator = ctranslate2.Translator(model, device="cpu", inter_threads=1, intra_threads=threads)
    return translator, load_tokenizer(model), record


def iter_translations_ct2(
    translator,
    tokenizer,
    sentences: list[str],
    record: dict,
    num_beams: int | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    max_source_length: int | None = None,
    chunk_size: int | None = None,
    on_truncated=None,
):
    """[`~hf_reservoir.evaluation.inference.iter_translations`] with CTranslate2: the same truncation of long sources
    (reported through ``on_truncated``), the same chunks in input order. Beam search matches HF's settings where the
    engines allow: length penalty 1, ``patience`` 2 (CTranslate2 stops at ``beam_size`` finished hypotheses; HF
    continues while a running beam could still win), and HF's ``max_length`` less the start token and ``</s>``.
    ``record`` is the export's record (its position table and the model's generation defaults)."""
    max_positions, generation = record["max_position_embeddings"], record["generation"]
    from .inference import check_generation

    limit = check_generation(batch_size, num_beams, max_length, max_source_length, len(tokenizer), max_positions)
    pieces = [tokenizer.convert_ids_to_tokens(tokenizer(s)["input_ids"]) for s in sentences]
    truncated = [i for i, p in enumerate(pieces) if len(p) > limit]
    if truncated and on_truncated is not None:
        on_truncated(truncated)
    pieces = [p if len(p) <= limit else p[: limit - 1] + [tokenizer.eos_token] for p in pieces]
    beams = num_beams or generation["num_beams"] or 1
    length = (max_length or generation["max_length"] or HF_DEFAULT_MAX_LENGTH) - HF_TO_CT2_LENGTH_OFFSET
    chunk_size = chunk_size or max(len(sentences), 1)
    for start in range(0, len(pieces), chunk_size):
        results = translator.translate_batch(
            pieces[start : start + chunk_size],
            max_batch_size=batch_size,
            beam_size=beams,
            patience=2 if beams > 1 else 1,
            length_penalty=1.0,
            max_decoding_length=max(length, 1),
            batch_type="examples",
        )
        yield [tokenizer.convert_tokens_to_string(r.hypotheses[0]).strip() for r in results]
