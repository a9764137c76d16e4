"""A run's recipe: every setting that decides what it trains, recorded when it starts and checked on resume.

A comparison that resumes a run (a lane cut by the end of a machine's working stretch) must not mix two recipes
unnoticed: the steps before the checkpoint would come from one, the steps after from another, and the run's
results would describe only the second. So a run writes ``recipe.json`` into its ``output_dir`` before its first
step; a resume compares the new command's recipe with it, field by field, and refuses any difference with one
sentence naming each field, the recorded value and the given one. ``--allow_recipe_change true`` resumes anyway,
and the change is recorded with the step it took effect at (``recipe.json``'s ``changes``, copied into
``results.json``).

What is *not* part of the recipe passes freely: logging, the evaluation batch size, ``report_to``, progress
bars, data loader workers, the output folder flags, lane settings (which core a run takes turns on), the final
scoring's beams, how often checkpoints are saved.
"""

from __future__ import annotations

import json
import logging
import os
import time

from ..models.reservoir_marian.configuration_reservoir import reservoir_types_per_layer
from ..utils.run_folder import RECIPE_FILE

logger = logging.getLogger(__name__)

# The Seq2SeqTrainingArguments that change what a run trains, by section.
TRAINING_FIELDS = {
    "batching": (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "train_sampling_strategy",
    ),
    "optimizer": (
        "optim",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "warmup_ratio",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "weight_decay",
        "max_grad_norm",
        "label_smoothing_factor",
        "bf16",
        "fp16",
        "torch_compile",
    ),
    "stopping": (
        "max_steps",
        "num_train_epochs",
        "eval_strategy",
        "eval_steps",
        "generation_num_beams",
        "metric_for_best_model",
    ),
    "seed": ("seed", "data_seed"),
}
DATA_FIELDS = {
    "data": (
        "data_path",
        "data_format",
        "hub_config",
        "source_lang",
        "target_lang",
        "tokenizer_path",
        "vocab_size",
        "max_source_length",
        "max_target_length",
        "max_train_samples",
        "train_sample_seed",
        "max_eval_samples",
    ),
    "batching": ("max_tokens", "length_buckets"),
}
CONVERGENCE_FIELDS = {
    "optimizer": ("lr_cooldown",),
    "stopping": ("budget_seconds", "patience", "target_bleu", "clock_warmup_steps", "step_delay_seconds"),
}
# Config fields the tokenizer fills in (checked by the tokenizer's own match against the model) or that do not
# describe the model.
NOT_MODEL = ("vocab_size", "decoder_vocab_size", "transformers_version", "architectures", "auto_map")


def _plain(value):
    """A JSON-comparable form: enums by value, tuples as lists."""
    value = getattr(value, "value", value)
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def build_recipe(model_args, config, data_args, training_args, convergence_args) -> dict:
    """The recipe of the run these arguments ask for: ``{section: {field: value}}``.

    ``model`` holds the validated config's value of every model flag (sizes, dropouts, every reservoir field),
    plus ``model_name_or_path``; the other sections hold the data, batching, optimizer and schedule, stopping
    rule and seed.
    """
    model = {"model_name_or_path": model_args.model_name_or_path}
    saved = config.to_dict()
    for name in model_args.config_kwargs():
        if name not in NOT_MODEL:
            model[name] = _plain(saved.get(name, getattr(config, name, None)))
    recipe: dict[str, dict] = {"model": model}
    for source, table in (
        (training_args, TRAINING_FIELDS),
        (data_args, DATA_FIELDS),
        (convergence_args, CONVERGENCE_FIELDS),
    ):
        for section, names in table.items():
            for name in names:
                recipe.setdefault(section, {})[name] = _plain(getattr(source, name, None))
    return recipe


def _per_layer(recipe: dict) -> dict:
    """The recipe with ``model.reservoir_type`` in its per-layer form (recipes written before the config stored
    that form hold the type as given, e.g. ``"transformer"`` for a model without reservoirs: the same model)."""
    model = recipe.get("model", {})
    if "reservoir_type" not in model or not isinstance(model.get("encoder_reservoir_layers"), list):
        return recipe
    types = reservoir_types_per_layer(model["reservoir_type"], len(model["encoder_reservoir_layers"]))
    return {**recipe, "model": {**model, "reservoir_type": types}}


def recipe_differences(recorded: dict, given: dict) -> list[tuple[str, str, object, object]]:
    """``[(section, field, recorded value, given value)]`` for every field whose value differs."""
    recorded, given = _per_layer(recorded), _per_layer(given)
    differences = []
    for section, values in given.items():
        for name, value in values.items():
            before = recorded.get(section, {}).get(name, value)  # a field an older record lacks: not a change
            if before != value and not (_is_number(before) and _is_number(value) and float(before) == float(value)):
                differences.append((section, name, before, value))
    return differences


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_recipe(output_dir: str) -> dict | None:
    path = os.path.join(output_dir, RECIPE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def recipe_from_checkpoint(checkpoint: str, given: dict) -> dict:
    """For a run that predates ``recipe.json``: the model section from the checkpoint's ``config.json`` (the other
    sections cannot be known, so they are taken as given and only the model's shape is checked)."""
    with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    model = {name: _plain(saved[name]) if name in saved else value for name, value in given["model"].items()}
    return {**given, "model": model}


def checkpoint_step(checkpoint: str) -> int | None:
    """The global step a checkpoint was saved at (its ``trainer_state.json``), or None."""
    try:
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as handle:
            return int(json.load(handle)["global_step"])
    except (OSError, ValueError, KeyError):
        return None


def _show(value) -> str:
    return "unset" if value is None else json.dumps(value)


def check_resume_recipe(output_dir: str, checkpoint: str, given: dict, allow_change: bool) -> list[dict]:
    """Compare a resume's recipe with the run's recorded one; return the changes allowed (empty if none).

    Raises:
        ValueError: a field differs and ``allow_change`` is off (one sentence: each field, the checkpoint's value
            and the given one, and what to do).
    """
    recorded = read_recipe(output_dir)
    if recorded is None:
        logger.warning(
            "%s has no %s (a run from before recipes were recorded): only the model's shape is checked against %s.",
            output_dir,
            RECIPE_FILE,
            checkpoint,
        )
        recorded = {"recipe": recipe_from_checkpoint(checkpoint, given), "changes": []}
    differences = recipe_differences(recorded["recipe"], given)
    if not differences:
        return []
    named = "; ".join(f"{name} ({_show(before)} -> {_show(after)})" for _, name, before, after in differences)
    if not allow_change:
        raise ValueError(
            f"Refusing to resume {output_dir} with a changed recipe: {named} (checkpoint's value -> given). Drop "
            "those flags to resume the run as it was recorded, start a new run in a new output_dir, or resume with "
            "--allow_recipe_change true to change them on purpose (recorded in recipe.json and results.json)."
        )
    step = checkpoint_step(checkpoint)
    logger.warning("Resuming %s at step %s with a changed recipe, on purpose: %s.", output_dir, step, named)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [
        {"step": step, "section": section, "field": name, "before": before, "after": after, "utc": stamp}
        for section, name, before, after in differences
    ]


def record_recipe(output_dir: str, recipe: dict, changes: list[dict]) -> dict:
    """Write ``recipe.json`` (the recipe now in force, and every change made on resume); return what was written."""
    from ..utils.run_folder import write_run_file

    earlier = read_recipe(output_dir)
    record = {"recipe": recipe, "changes": [*(earlier or {}).get("changes", []), *changes]}
    write_run_file(output_dir, RECIPE_FILE, record)
    return record
