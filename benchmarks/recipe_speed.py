"""Shim: the benchmark lives in [`hf_reservoir.benchmarks.recipe_speed`] (``hf-reservoir bench recipe-speed``)."""

from hf_reservoir.benchmarks.recipe_speed import *  # noqa: F403
from hf_reservoir.benchmarks.recipe_speed import main

if __name__ == "__main__":
    main()
