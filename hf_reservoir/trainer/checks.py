"""Checks that run before any training: settings, the output folder, the tokenizer, a resume; and the two steps that
prepare a run (its training arguments, its output folder), named for what they change.

Each refuses a bad value with one sentence (what was wrong, which value, what to do) before data is read
or a model is built, so that a mistake costs seconds, not a run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import torch
from transformers.trainer_utils import SaveStrategy
from transformers.utils import CONFIG_NAME

from ..corpus.batching import check_buckets
from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig, reservoir_types_per_layer
from ..utils.run_folder import MODEL_DIR, TOKENIZER_DIR, earlier_run_files, last_checkpoint
from .arguments import ConvergenceArguments, DataArguments, ModelArguments
from .stopping import check_cooldown_end

logger = logging.getLogger(__name__)


def build_run_config(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args,
    convergence_args: ConvergenceArguments,
) -> ReservoirMarianConfig:
    """Build the config of the model the flags ask for (which validates its fields), and check the settings that
    need more than one arguments object, before touching data (a bad config fails in a second). The tokenizer's
    vocabulary and special ids are filled in once it is loaded. Changes nothing."""
    config = ReservoirMarianConfig(**model_args.config_kwargs())
    if not model_args.model_name_or_path:
        check_lengths(data_args, model_args.max_position_embeddings)
    check_cooldown_end(convergence_args.lr_cooldown, convergence_args.budget_seconds, training_args.max_steps)
    check_timed_saves(convergence_args.save_interval_seconds, training_args.save_strategy)
    if data_args.length_buckets is not None:
        longest = max(data_args.max_source_length, data_args.max_target_length)
        check_buckets(data_args.length_buckets, data_args.max_tokens, longest, "max_source_length/max_target_length")
    return config


def check_timed_saves(save_interval_seconds: float | None, save_strategy) -> None:
    """Checkpoints on a wall-clock interval need checkpoints to be on."""
    if save_interval_seconds is not None and save_strategy == SaveStrategy.NO:
        raise ValueError(
            f"save_interval_seconds={save_interval_seconds} asks for checkpoints, but save_strategy is 'no'; set "
            "save_strategy to steps (or epoch), or drop save_interval_seconds."
        )


def settle_training_arguments(training_args) -> None:
    """Set the two training arguments a translation run needs whatever the user gave: no pinned memory without an
    accelerator (it only warns there), and generation during evaluation (BLEU is computed on generated text)."""
    if training_args.dataloader_pin_memory and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False
    if not training_args.predict_with_generate:
        logger.warning("predict_with_generate was off; turning it on, since BLEU is computed on generated text.")
        training_args.predict_with_generate = True


def check_lengths(data_args: DataArguments, max_position_embeddings: int) -> None:
    """Sources and targets must fit the model's position table."""
    for name in ("max_source_length", "max_target_length"):
        value = getattr(data_args, name)
        if value > max_position_embeddings:
            raise ValueError(
                f"{name}={value} exceeds the model's max_position_embeddings={max_position_embeddings}; lower "
                f"{name}, or build the model with max_position_embeddings >= {value}."
            )


def check_shape_flags(model_args: ModelArguments, config: ReservoirMarianConfig) -> None:
    """Refuse model flags that were set away from their defaults and contradict a loaded model."""
    from dataclasses import fields

    loaded, defaults = config.to_dict(), ModelArguments()
    contradictions = []
    for f in fields(ModelArguments):
        value = getattr(model_args, f.name)
        if f.name not in loaded or value == getattr(defaults, f.name):
            continue  # not a config field, or not set (or set to the default): the loaded model decides
        saved = loaded[f.name]
        if f.name == "reservoir_type":  # one type, or one per reservoir: compared per reservoir layer
            value = reservoir_types_per_layer(value, config.num_encoder_reservoir_layers)
        if value != saved:
            contradictions.append(
                f"{f.name}: asked {getattr(model_args, f.name)!r}, the saved model has {loaded[f.name]!r}"
            )
    if contradictions:
        raise ValueError(
            f"model_name_or_path loads a saved model whose shape differs from the flags: {'; '.join(contradictions)}. "
            "Drop those flags to continue from the saved model, or drop model_name_or_path to build a new one."
        )


def check_output_dir(output_dir: str, resuming: bool, overwrite: bool) -> None:
    """Refuse an output_dir whose earlier run would be overwritten without ``overwrite`` (or a resume), and one where
    the model folder's place is taken by a file. Reads only."""
    model_dir = os.path.join(output_dir, MODEL_DIR)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir} is a file, but the trained model is saved there; move or delete it.")
    earlier = earlier_run_files(output_dir)
    if earlier and not resuming and not overwrite:
        raise ValueError(
            f"output_dir={output_dir} holds an earlier run ({', '.join(earlier)}). Resume it with "
            "--resume_from_checkpoint last, start over with --overwrite_output_dir true (its files are "
            "replaced), or choose a new output_dir."
        )


def prepare_output_dir(output_dir: str, resuming: bool, overwrite: bool) -> None:
    """Check the output folder ([`check_output_dir`]), then, for a fresh start over an earlier run, delete that run's
    files (its old tokenizer and checkpoints must not leak into the new one), and make sure the folder exists and
    can be written, before any training."""
    check_output_dir(output_dir, resuming, overwrite)
    if not resuming:
        for name in earlier_run_files(output_dir):
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, ".write_test")
        with open(probe, "w", encoding="utf-8") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"output_dir={output_dir} cannot be written ({error.strerror}); choose a folder you can write to."
        ) from error


def _holds_tokenizer(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "vocab.json"))


def resolve_tokenizer(data_args: DataArguments, model_name_or_path: str | None, output_dir: str) -> tuple[str, bool]:
    """Where the tokenizer comes from, and whether it must be trained first.

    An explicit ``tokenizer_path`` must hold a tokenizer; else a saved model's own tokenizer; else the
    run's ``OUTPUT_DIR/tokenizer``, trained on first use and reused on resume if it has ``vocab_size`` pieces.
    """
    if data_args.tokenizer_path:
        if not _holds_tokenizer(data_args.tokenizer_path):
            raise ValueError(
                f"tokenizer_path={data_args.tokenizer_path} holds no tokenizer (no vocab.json). Point it at a saved "
                f"tokenizer, or omit it to train a new one into {os.path.join(output_dir, TOKENIZER_DIR)}."
            )
        return data_args.tokenizer_path, False
    if model_name_or_path:
        if _holds_tokenizer(model_name_or_path) or not os.path.isdir(model_name_or_path):
            return model_name_or_path, False  # the model's own folder, or a Hub id
        raise ValueError(
            f"model_name_or_path={model_name_or_path} holds no tokenizer (no vocab.json), and a newly trained one "
            "would not match the model's ids; pass --tokenizer_path with the tokenizer it was trained with."
        )
    own = os.path.join(output_dir, TOKENIZER_DIR)
    if not _holds_tokenizer(own):
        return own, True
    from ..corpus.tokenization import load_tokenizer

    size = len(load_tokenizer(own))
    if size != data_args.vocab_size:
        raise ValueError(
            f"{own} holds a {size}-piece tokenizer from an earlier run, but vocab_size={data_args.vocab_size} was "
            f"asked for; resume with --vocab_size {size}, or start the run in a new output_dir."
        )
    return own, False


LAYOUT_FIELDS = (
    "encoder_layers",
    "encoder_reservoir_layers",
    "reservoir_type",
    "reservoir_seed",
    "reservoir_init",
    "decoder_reservoir_layers",
    "layernorm_position",
)


def check_resume_layout(checkpoint: str, config: ReservoirMarianConfig) -> None:
    """Refuse to resume a checkpoint whose reservoir layout differs from the requested one."""
    path = os.path.join(checkpoint, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            saved = ReservoirMarianConfig(**{k: v for k, v in json.load(handle).items() if k not in ("auto_map",)})
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"Cannot resume from {checkpoint}: its {path} is unreadable or invalid ({error}). Resume from an older "
            "checkpoint with --resume_from_checkpoint PATH, or start a new run."
        ) from error
    changed = [
        f"{f}: checkpoint {getattr(saved, f)!r}, now {getattr(config, f)!r}"
        for f in LAYOUT_FIELDS
        if getattr(saved, f) != getattr(config, f)
    ]
    if changed:
        raise ValueError(
            f"Refusing to resume from {checkpoint}: the reservoir layout changed ({'; '.join(changed)}). Resume with "
            "the settings of the checkpoint, or start a new run in a new output_dir."
        )


def resolve_resume(training_args) -> str | None:
    """The checkpoint to resume from: the one named, the last one for ``true``/``last``, else None."""
    resume = training_args.resume_from_checkpoint
    if resume in ("true", "True", "last", True):
        resume = last_checkpoint(training_args.output_dir)
        if resume is None:
            raise ValueError(
                f"resume_from_checkpoint asks for the last checkpoint, but {training_args.output_dir} "
                "has none; drop the flag to start a new run."
            )
    return resume or None
