"""Training one run: arguments and their checks, the recipe, the clock, stopping, the Trainer and the run."""
