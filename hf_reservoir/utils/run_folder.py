"""The names of the files a training run writes into its ``output_dir`` (and of a built corpus's index).

Training, the sweep and its report, the model card, ``evaluate``, the Hub export and the benchmarks all
read these names from here, so that a run folder is laid out in one place.
"""

from __future__ import annotations

import json
import logging
import os
import re

MODEL_DIR = "model"  # the best model: weights, config, tokenizer, card, LICENSE, scoring settings
TOKENIZER_DIR = "tokenizer"  # the tokenizer trained for the run (reused on resume)
RESULTS_FILE = "results.json"  # the final report: scores, convergence summary, history, hardware
CONVERGENCE_FILE = "convergence.json"  # the clock's record: every evaluation with its training seconds
CONVERGENCE_PLOT = "convergence.png"  # validation BLEU against training seconds
RECIPE_FILE = "recipe.json"  # the recipe the run trains with (written before its first step; checked on resume)
TRAIN_LOG = "train.log"  # a sweep run's output
SCORING_FILE = "scoring.json"  # inside MODEL_DIR: how the reported scores were decoded
CORPUS_STATS_FILE = "stats.json"  # inside a built corpus folder: sizes, sources, licences
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")

logger = logging.getLogger(__name__)


def earlier_run_files(output_dir: str) -> list[str]:
    """The files and folders of an earlier run in ``output_dir`` (sorted), which a new run would replace."""
    if not os.path.isdir(output_dir):
        return []
    mine = (RESULTS_FILE, CONVERGENCE_FILE, RECIPE_FILE, MODEL_DIR, TOKENIZER_DIR)
    return [name for name in sorted(os.listdir(output_dir)) if name in mine or CHECKPOINT_NAME.fullmatch(name)]


def read_run_file(run_dir: str, name: str) -> dict:
    """One JSON file of a run folder (``RESULTS_FILE``, ``CONVERGENCE_FILE``, ...)."""
    with open(os.path.join(run_dir, name), encoding="utf-8") as handle:
        return json.load(handle)


def write_run_file(run_dir: str, name: str, value: dict) -> str:
    """Write ``value`` as indented JSON into ``run_dir/name``; return the path."""
    path = os.path.join(run_dir, name)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, default=str)
        handle.write("\n")
    return path


def last_checkpoint(output_dir: str) -> str | None:
    """The newest *complete* checkpoint in ``output_dir`` (weights and trainer state written), or None.

    A checkpoint cut short by a crash or a full disk is skipped with a warning, so resuming falls back to the
    newest one that can be loaded instead of failing.
    """
    if not os.path.isdir(output_dir):
        return None
    found = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(output_dir)
        if (m := CHECKPOINT_NAME.fullmatch(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(found):
        path = os.path.join(output_dir, name)
        files = set(os.listdir(path))
        weights = [f for f in files if f.endswith(".safetensors") and os.path.getsize(os.path.join(path, f)) > 0]
        if "trainer_state.json" in files and "config.json" in files and weights:
            return path
        logger.warning("Skipping the incomplete checkpoint %s (weights or trainer state missing).", path)
    return None
