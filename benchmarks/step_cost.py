"""Shim: the benchmark lives in [`hf_reservoir.benchmarks.step_cost`] (``hf-reservoir bench step-cost``)."""

from hf_reservoir.benchmarks.step_cost import *  # noqa: F403
from hf_reservoir.benchmarks.step_cost import main

if __name__ == "__main__":
    main()
