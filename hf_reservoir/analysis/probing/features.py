"""What a probe reads: each encoder layer's states for a batch of sentences, and linear CKA between layers."""

from __future__ import annotations

import torch


@torch.no_grad()
def layer_outputs(model, tokenizer, sentences: list[str], batch_size: int = 64, positions=None) -> torch.Tensor:
    """Every encoder layer's output per sentence: ``[layers + 1, sentences, d_model]``.

    Index 0 is the embeddings (token embedding, scaled, plus positions: the input of the first layer), then each
    layer's output. Without ``positions``, each sentence's vectors are averaged over its tokens (padding excluded);
    with them, the vector at ``positions[i]`` of sentence ``i`` is taken (for a pair ``(p, q)``, the vectors at both,
    concatenated: ``2 * d_model`` wide); ``positions="all"`` gives every token of every sentence, padding left out:
    ``[layers + 1, tokens, d_model]``.
    """
    encoder = model.get_encoder()
    model.eval()
    captured: list[torch.Tensor] = []
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))]
    hooks += [layer.register_forward_hook(lambda m, a, out: captured.append(out)) for layer in encoder.layers]
    device = next(model.parameters()).device
    # A safety net: the probe fits its sentences to the model first (probe.fit_to_models), so nothing is cut here.
    fit = {"truncation": True, "max_length": model.config.max_position_embeddings}
    out = []
    try:
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[start : start + batch_size], return_tensors="pt", padding=True, **fit)
            batch = batch.to(device)
            captured.clear()
            encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            states = torch.stack([c[0] if isinstance(c, tuple) else c for c in captured])  # [L+1, B, T, D]
            if positions is None:
                mask = batch["attention_mask"].to(states.dtype)[None, :, :, None]
                out.append((states * mask).sum(2) / mask.sum(2))
            elif isinstance(positions, str):
                out.append(states[:, batch["attention_mask"].bool()])
            elif isinstance(positions[0], tuple):
                pairs = torch.tensor(positions[start : start + batch_size], device=device)
                rows = torch.arange(len(pairs), device=device)
                out.append(torch.cat([states[:, rows, pairs[:, 0]], states[:, rows, pairs[:, 1]]], dim=-1))
            else:
                rows = torch.tensor(positions[start : start + batch_size], device=device)
                out.append(states[:, torch.arange(len(rows), device=device), rows])
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(out, dim=1).float().cpu()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two ``[examples, features]`` matrices: 1 for representations equal up to
    a rotation and scale, near 0 for unrelated ones."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).pow(2).sum()
    norms = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return (cross / norms).item() if norms > 0 else float("nan")


def load_probe_model(path: str, device: str = "cpu"):
    """A saved model and its tokenizer ([`~hf_reservoir.evaluation.inference.load_for_inference`]), frozen."""
    from ...evaluation.inference import load_for_inference

    model, tokenizer = load_for_inference(path, device)
    model.requires_grad_(False)
    return model, tokenizer


def random_init_twin(model, seed: int = 0):
    """The same architecture at its random initialisation: trained layers re-drawn from torch seed ``seed``,
    reservoirs from the same ``reservoir_seed`` (so equal to the trained model's)."""
    from ...models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel

    torch.manual_seed(seed)
    twin = ReservoirMarianMTModel(model.config).to(next(model.parameters()).device).eval()
    return twin.requires_grad_(False)
