"""The step-cost benchmark's shapes and the models it compares (regular N, N + k reservoirs of each type,
backskipping), shared by its eager, memory, generation and ``torch.compile`` measurements."""

from __future__ import annotations

import torch
from transformers import MarianConfig, MarianMTModel

from ..models.reservoir_marian.configuration_reservoir import RESERVOIR_TYPES as TYPES
from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel

SHAPE_KEYS = ("d_model", "ffn", "heads", "batch", "length", "vocab", "layers", "k", "repeats", "warmup", "gen_batch",
              "gen_tokens")  # fmt: skip
SHAPES = {
    # transformer_iwslt_de_en: d_model 512, FFN 1024, 4 heads, N = 6, k = 2; ~4,096 tokens per batch.
    "gpu": (512, 1024, 4, 128, 32, 8000, 6, 2, 30, 5, 64, 32),
    # The CPU demo's width and the paper's layer counts, at a batch the CPU handles in ~0.1 s/step.
    "cpu": (256, 1024, 4, 32, 24, 8000, 6, 2, 15, 3, 16, 24),
    "tiny": (32, 64, 2, 4, 8, 100, 3, 1, 3, 1, 2, 4),  # the smoke test
}


def shapes(name: str) -> dict:
    """Benchmark shapes: ``cpu`` (committed CPU table), ``gpu`` (the paper's IWSLT'14 sizes) or ``tiny``."""
    return dict(zip(SHAPE_KEYS, SHAPES[name]))


def base_config(s: dict, **overrides) -> dict:
    config = dict(
        vocab_size=s["vocab"],
        d_model=s["d_model"],
        encoder_ffn_dim=s["ffn"],
        decoder_ffn_dim=s["ffn"],
        encoder_attention_heads=s["heads"],
        decoder_attention_heads=s["heads"],
        decoder_layers=2,
        max_position_embeddings=128,
        pad_token_id=s["vocab"] - 1,
        decoder_start_token_id=s["vocab"] - 1,
        eos_token_id=0,
        forced_eos_token_id=0,
        dropout=0.0,
        scale_embedding=True,
    )
    config.update(overrides)
    return config


def model_variants(s: dict) -> dict[str, torch.nn.Module]:
    n, k = s["layers"], s["k"]
    common = base_config(s)
    torch.manual_seed(0)
    variants: dict[str, torch.nn.Module] = {
        "vanilla MarianMTModel (N)": MarianMTModel(MarianConfig(**common, encoder_layers=n))
    }
    variants["ours, no reservoirs (N)"] = ReservoirMarianMTModel(ReservoirMarianConfig(**common, encoder_layers=n))
    variants["ours, N + k trainable"] = ReservoirMarianMTModel(ReservoirMarianConfig(**common, encoder_layers=n + k))
    for reservoir_type in TYPES:
        variants[f"ours, N + k {reservoir_type} reservoirs"] = ReservoirMarianMTModel(
            ReservoirMarianConfig(
                **common, encoder_layers=n + k, num_encoder_reservoir_layers=k, reservoir_type=reservoir_type
            )
        )
    for mode in ("identity", "learned"):
        variants[f"ours, N + k transformer reservoirs, backskip {mode}"] = ReservoirMarianMTModel(
            ReservoirMarianConfig(
                **common,
                encoder_layers=n + k,
                num_encoder_reservoir_layers=k,
                reservoir_type="transformer",
                backskip_mode=mode,
                backskip_warmup_steps=0,
                backskip_anneal_factor=0.0,
            )
        )
    return variants


def batch_for(s: dict, device: str) -> dict:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, s["vocab"] - 1, (s["batch"], s["length"]), generator=generator)
    labels = torch.randint(1, s["vocab"] - 1, (s["batch"], s["length"]), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
    }
