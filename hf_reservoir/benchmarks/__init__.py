"""Benchmarks that ship with the package (``hf-reservoir bench``): each prints ratios measured side by side
in one run (interleaved repeats, medians), never a timing compared with another run's."""

BENCHMARKS = {
    "step-cost": ("hf_reservoir.benchmarks.step_cost", "per layer and whole model step cost, memory, generation"),
    "host-overhead": ("hf_reservoir.benchmarks.host_overhead", "our training loop's host overhead per step vs raw"),
    "recipe-speed": ("hf_reservoir.benchmarks.recipe_speed", "training throughput of recipe variants on real batches"),
}
