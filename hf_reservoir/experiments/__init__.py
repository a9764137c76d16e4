"""Experiments over many runs: sweeps, lanes that pair arms on one core, reports, slow starts."""
