"""``torch.compile``: the training step compiles without graph breaks, and once per shape (and per backskip
pattern), for every model a GPU run would compile. Graph breaks and recompiles do not depend on the device,
so they are tested here on the CPU (``backend="eager"``: dynamo's tracing only, no code generation)."""

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from tests.conftest import tiny_config

# The shapes of --max_tokens 64 --length_buckets 8 16 32 (BucketPadding): one (rows, length) per bucket.
BUCKETS = ((8, 8), (4, 16), (2, 32))
MODELS = {
    "regular": {},
    "transformer": {"num_encoder_reservoir_layers": 2},
    "ffn": {"num_encoder_reservoir_layers": 2, "reservoir_type": "ffn"},
    # Skips with probability 1 - 0.5**(n + 1) from step 0: both patterns (skip, exact) of each reservoir occur.
    "backskip-identity": {"num_encoder_reservoir_layers": 2, "backskip_mode": "identity", "backskip_warmup_steps": 0,
                          "backskip_anneal_factor": 0.5},
    # The same, with the learned predictor: exact steps train it inside the graph (the carrier taps).
    "backskip-learned": {"num_encoder_reservoir_layers": 2, "backskip_mode": "learned", "backskip_warmup_steps": 0,
                         "backskip_anneal_factor": 0.5, "backskip_predictor_rank": 4},
}  # fmt: skip


def batch(size: int, length: int, vocab: int) -> dict:
    generator = torch.Generator().manual_seed(size * 1000 + length)
    ids = torch.randint(3, vocab, (size, length), generator=generator)
    labels = torch.randint(3, vocab, (size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


class CountingBackend:
    """A dynamo backend that records every graph it is given and runs it as traced (no code generation)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.mark.parametrize("name", list(MODELS))
def test_the_training_step_compiles_once_per_shape_without_graph_breaks(name):
    import torch._dynamo

    # Backskipping compiles one graph per shape and skip pattern (3 x 4 here), above dynamo's default limit of
    # 8, after which it would silently run the step eagerly; a compiled backskip run raises it the same way.
    with torch._dynamo.config.patch(recompile_limit=64):
        compile_and_count(name)


def compile_and_count(name: str) -> None:

    torch.manual_seed(0)
    model = ReservoirMarianMTModel(tiny_config(layernorm_position="pre", **MODELS[name])).train()
    vocab = model.config.vocab_size
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(**batch(*BUCKETS[0], vocab))
    assert explanation.graph_break_count == 0, [str(b.reason).splitlines()[0] for b in explanation.break_reasons]

    torch._dynamo.reset()
    backend = CountingBackend()
    compiled = torch.compile(model, backend=backend, dynamic=False)
    encoder = model.get_encoder()
    patterns = set()

    def epoch(start: int) -> None:
        for step, shape in enumerate(BUCKETS * 4, start=start):
            encoder.set_backskip_step(step)  # what BackskipStepCallback does at every step begin
            patterns.add((shape, encoder.backskip_plan))
            compiled(**batch(*shape, vocab)).loss.backward()
            model.zero_grad(set_to_none=True)

    epoch(0)
    first = backend.graphs
    assert first == len(patterns)  # one graph per shape and skip pattern: no break splits a step in two
    seen = set(patterns)
    epoch(100)  # a later epoch, with different steps: only a pattern not seen before may compile
    assert backend.graphs - first == len(patterns - seen)
    if name.startswith("backskip"):
        assert len({plan for _, plan in patterns}) > 1  # the skip pattern changed from step to step
        counts = encoder.backskip_counts  # counted inside the compiled graph
        assert counts["skipped"] > 0 and counts["exact"] > 0


def test_a_compiled_run_may_compile_one_graph_per_bucket_and_skip_pattern(caplog):
    import torch._dynamo

    from hf_reservoir.trainer.reservoir_trainer import allow_compiled_graphs, compiled_graphs_needed

    backskip = tiny_config(num_encoder_reservoir_layers=2, backskip_mode="learned")
    assert compiled_graphs_needed(backskip, [16, 32, 64]) == 3 * 4
    assert compiled_graphs_needed(tiny_config(num_encoder_reservoir_layers=2), [16, 32, 64]) == 3
    with torch._dynamo.config.patch(recompile_limit=8):
        allow_compiled_graphs(backskip, [16, 32, 64])
        assert torch._dynamo.config.recompile_limit == 12
        allow_compiled_graphs(backskip, None)  # unbounded shapes: the limit stays, and the log says why
        assert torch._dynamo.config.recompile_limit == 12
    assert "pass --length_buckets" in caplog.text
