"""The command line's settings: the model (sizes, and the reservoir fields derived from the config), the data,
and the convergence clock. ``Seq2SeqTrainingArguments`` holds the rest.

The reservoir flags are not declared here: [`ModelArguments`] takes each reservoir field of
[`ReservoirMarianConfig`] with the config's default and the help text of the config's docstring, so a field
added to the config becomes a flag with no second declaration.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from dataclasses import MISSING, dataclass, field, fields, make_dataclass

from transformers import MarianConfig

from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig


class FlagParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose every ``--multi_word`` flag is also accepted as ``--multi-word`` (and the other way
    round), so that each command takes both spellings, as ``HfArgumentParser`` does for ``train``; the help and the
    docs show the underscore one, transformers' spelling. No flag may be abbreviated (``allow_abbrev=False``: a
    prefix of a flag is an error, not the flag), and a mistake is one ``error:`` line and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")

    def add_argument(self, *names, **kwargs):
        if names and all(name.startswith("--") for name in names):
            spellings = []
            for name in names:
                for spelling in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
                    if spelling not in spellings:
                        spellings.append(spelling)
            names = tuple(spellings)
        return super().add_argument(*names, **kwargs)


SET_AT_SAVE = ("reservoir_checksums",)  # written by save_pretrained, never set by hand


def config_field_help(config_class: type = ReservoirMarianConfig) -> dict[str, str]:
    """Each field's description from the docstrings (their ``Args:`` entries) of the config and its bases, on
    one line; a subclass's entry replaces its base's."""
    help_texts = {}
    for cls in reversed(config_class.__mro__):
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
        entries = re.findall(r"^ {4}(\w+) \(`[^\n]*\):\n((?: {8}.*\n?)+)", doc, re.MULTILINE)
        help_texts.update({name: " ".join(text.split()) for name, text in entries})
    return help_texts


def reservoir_fields(config_class: type = ReservoirMarianConfig) -> list:
    """The fields the config adds to ``MarianConfig``, as dataclass fields, in declaration order."""
    marian = {f.name for f in fields(MarianConfig)}
    return [f for f in fields(config_class) if f.name not in marian and f.name not in SET_AT_SAVE]


def reservoir_flags(config_class: type = ReservoirMarianConfig) -> list[tuple]:
    """``(name, type, field)`` for each reservoir field: the config's type, default and docstring help."""
    namespace = vars(sys.modules[config_class.__module__])
    help_texts = config_field_help(config_class)
    flags = []
    for config_field in reservoir_fields(config_class):
        name = config_field.name
        if name not in help_texts:
            raise ValueError(f"{config_class.__name__}.{name} has no entry in the class docstring's Args; add one.")
        help_text = help_texts[name]
        if name == "reservoir_type":
            # One type or one per reservoir: a list on the command line. None means "not given", so that a type
            # given without any reservoir layers can be refused; the config's default then applies.
            flags.append((name, list[str] | None, field(default=None, metadata={"help": help_text})))
            continue
        default = config_field.default
        if default is MISSING:
            default = config_field.default_factory()
        annotation = eval(config_field.type, namespace) if isinstance(config_field.type, str) else config_field.type
        flags.append((name, annotation, field(default=default, metadata={"help": help_text})))
    return flags


@dataclass
class ModelSizeArguments:
    """The Marian sizes of a new model, with the defaults of a small model (the config's are Marian's large ones)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "start from a saved model instead"})
    d_model: int = field(default=256, metadata={"help": "hidden size"})
    encoder_layers: int = field(default=7, metadata={"help": "total encoder layers, reservoirs included"})
    decoder_layers: int = field(default=2, metadata={"help": "decoder layers"})
    encoder_ffn_dim: int = field(default=1024, metadata={"help": "encoder FFN size"})
    decoder_ffn_dim: int = field(default=1024, metadata={"help": "decoder FFN size"})
    encoder_attention_heads: int = field(default=4, metadata={"help": "encoder heads"})
    decoder_attention_heads: int = field(default=4, metadata={"help": "decoder heads"})
    dropout: float = field(default=0.1, metadata={"help": "residual dropout"})
    attention_dropout: float = field(default=0.0, metadata={"help": "attention dropout"})
    activation_dropout: float = field(default=0.0, metadata={"help": "FFN activation dropout"})
    activation_function: str = field(default="relu", metadata={"help": "FFN activation"})
    scale_embedding: bool = field(default=True, metadata={"help": "scale embeddings by sqrt(d_model)"})
    max_position_embeddings: int = field(default=256, metadata={"help": "longest sequence"})
    encoder_layerdrop: float = field(default=0.0, metadata={"help": "LayerDrop rate (the paper's baseline)"})


def _check_model_arguments(self) -> None:
    if (
        self.reservoir_type is not None
        and self.num_encoder_reservoir_layers is None
        and self.encoder_reservoir_layers is None
    ):
        raise ValueError(
            f"reservoir_type={self.reservoir_type} was given without reservoir layers, which would train a model "
            "with no reservoirs; add num_encoder_reservoir_layers (e.g. 2) or encoder_reservoir_layers, or drop "
            "reservoir_type."
        )


def _config_kwargs(self) -> dict:
    """The ``ReservoirMarianConfig`` keyword arguments these flags ask for (a type not given: the config's)."""
    kwargs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_name_or_path"}
    types = kwargs.pop("reservoir_type")
    if types is not None:  # one or more values: the config expands them to one type per reservoir layer
        kwargs["reservoir_type"] = list(types)
    return kwargs


ModelArguments = make_dataclass(
    "ModelArguments",
    reservoir_flags(),
    bases=(ModelSizeArguments,),
    namespace={
        "__doc__": "The model: Marian sizes plus every reservoir field of [`ReservoirMarianConfig`] (derived).",
        "__post_init__": _check_model_arguments,
        "config_kwargs": _config_kwargs,
        "__module__": __name__,
    },
)


@dataclass
class DataArguments:
    """Where the data and the tokenizer come from."""

    data_path: str = field(
        default="data/de-en",
        metadata={"help": "a folder (built corpus, text, tsv, jsonl) or a Hub data set name such as iwslt2017"},
    )
    data_format: str | None = field(default=None, metadata={"help": "corpus, text, tsv, jsonl or hub"})
    hub_config: str | None = field(default=None, metadata={"help": "Hub config, e.g. iwslt2017-de-en"})
    source_lang: str = field(default="de", metadata={"help": "source language key"})
    target_lang: str = field(default="en", metadata={"help": "target language key"})
    build_corpus: bool = field(
        default=False,
        metadata={"help": "build the Debian corpus of source_lang-target_lang (one side en) at data_path if missing"},
    )
    tokenizer_path: str | None = field(
        default=None,
        metadata={
            "help": "a saved MarianTokenizer (default: the one in model_name_or_path, else one trained into "
            "OUTPUT_DIR/tokenizer)"
        },
    )
    vocab_size: int = field(default=8000, metadata={"help": "SentencePiece pieces when training a tokenizer"})
    max_source_length: int = field(default=128, metadata={"help": "longer sources are truncated and counted"})
    max_target_length: int = field(default=128, metadata={"help": "longer targets are truncated and counted"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N training pairs"})
    train_sample_seed: int | None = field(
        default=None,
        metadata={
            "help": "with max_train_samples: draw the N pairs at random with this seed instead of taking the first N "
            "(the built corpus is ordered by source, so its first pairs are all dictionary examples)"
        },
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "use the first N validation pairs"})
    max_tokens: int | None = field(
        default=None,
        metadata={"help": "tokens per batch (fairseq --max-tokens); replaces per_device_train_batch_size"},
    )
    length_buckets: list[int] | None = field(
        default=None,
        metadata={
            "help": "with max_tokens: pad every training batch to one of these lengths (ascending, the last at least "
            "max_source_length and max_target_length), with max_tokens // length pairs, so a compiled step "
            "(torch_compile) sees one shape per bucket and never recompiles; padding rows carry no loss"
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start a new run in an output_dir that holds an earlier run's files, replacing them"},
    )
    allow_recipe_change: bool = field(
        default=False,
        metadata={
            "help": "resume a run with settings that change its recipe (model, data, batching, optimizer, schedule, "
            "stopping, seed), on purpose; the change and its step are recorded in recipe.json and results.json"
        },
    )


@dataclass
class ConvergenceArguments:
    """The convergence clock, and how a run shares the machine and survives its end."""

    budget_seconds: float | None = field(
        default=None, metadata={"help": "T-hat: stop after this many training seconds; AUCC integrates up to it"}
    )
    patience: int | None = field(default=None, metadata={"help": "stop after N evaluations without a new peak"})
    target_bleu: float | None = field(
        default=None,
        metadata={
            "help": "stop at the first evaluation whose validation BLEU (the followed metric) reaches this value: "
            "the run measures time to target (MLPerf); the evaluation and a checkpoint at that step are kept"
        },
    )
    lr_cooldown: float = field(
        default=0.0,
        metadata={
            "help": "cool-down tied to the stop: over this last fraction of training the learning rate falls "
            "linearly to 0 (multiplying lr_scheduler_type's schedule); the fraction is of budget_seconds when "
            "given (wall-clock), else of max_steps (the same on every machine). 0 turns it off"
        },
    )
    lane_dir: str | None = field(
        default=None,
        metadata={
            "help": "take turns with the other runs of this lane folder (hf-reservoir sweep sets it; see "
            "hf_reservoir/trainer/turn_taking.py): train for lane_slice_seconds, then wait, off the clock, for the "
            "next turn"
        },
    )
    lane_name: str | None = field(default=None, metadata={"help": "this run's name in its lane"})
    lane_slice_seconds: float = field(default=10.0, metadata={"help": "training seconds per turn in a lane"})
    lane_sharing: str = field(
        default="turns",
        metadata={
            "help": "how the runs of a lane share the machine: turns (one trains at a time, for lane_slice_seconds) "
            "or concurrent (all train at once, e.g. on one GPU, after starting the clock together)"
        },
    )
    clock_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "train this many first steps off the clock (compilation, CUDA graph capture, allocator growth "
            "are one-time costs); in a concurrent lane every run then starts its clock together"
        },
    )
    step_delay_seconds: float = field(
        default=0.0,
        metadata={
            "help": "a testing aid: sleep this long in every training step, on the clock, to check that a paired "
            "comparison measures a slower arm as slower (the sweep's A/A test). 0 in real runs"
        },
    )
    save_interval_seconds: float | None = field(
        default=None,
        metadata={
            "help": "also save a checkpoint whenever this many wall-clock seconds have passed since the last one, "
            "so a machine that stops at any moment loses at most that much work; save_steps still apply. "
            "Not part of the recipe: a resume may change it"
        },
    )
    evaluate_test: bool = field(default=True, metadata={"help": "score the test split with the best model"})
    final_num_beams: int | None = field(
        default=None,
        metadata={
            "help": "beams for the final validation and test scores of the best model (the paper decodes with 5); "
            "evaluations during training keep generation_num_beams. Default: generation_num_beams"
        },
    )

    def __post_init__(self):
        if self.final_num_beams is not None and self.final_num_beams < 1:
            raise ValueError(
                f"final_num_beams must be at least 1, got {self.final_num_beams}; use 1 for greedy decoding."
            )
        if self.step_delay_seconds < 0:
            raise ValueError(f"step_delay_seconds={self.step_delay_seconds} must be 0 or more.")
        if self.lane_sharing not in ("turns", "concurrent"):
            raise ValueError(f"lane_sharing={self.lane_sharing!r}; use turns or concurrent.")
        if self.save_interval_seconds is not None and not self.save_interval_seconds > 0:
            raise ValueError(
                f"save_interval_seconds={self.save_interval_seconds} must be positive (e.g. 600 for a checkpoint "
                "every 10 minutes), or left out for step-based saves only."
            )
        if self.clock_warmup_steps < 0:
            raise ValueError(f"clock_warmup_steps={self.clock_warmup_steps} must be 0 or more.")
        if (self.lane_dir is None) != (self.lane_name is None):
            raise ValueError(
                f"lane_dir={self.lane_dir!r} and lane_name={self.lane_name!r}: a run in a lane needs both "
                "(hf-reservoir sweep sets them), or neither."
            )


__all__ = [
    "ModelArguments",
    "DataArguments",
    "ConvergenceArguments",
    "FlagParser",
    "config_field_help",
    "reservoir_flags",
]
