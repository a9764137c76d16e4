"""Training a reservoir translation model with ``Seq2SeqTrainer``.

``training/train.py`` parses arguments into the dataclasses below and calls :func:`run_training`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from .configuration_reservoir import ReservoirMarianConfig
from .convergence import ConvergenceCallback, ConvergenceProgressCallback
from .inference import longest_first, write_scoring_settings
from .metrics import check_dataset_order, corpus_scores, decode_pairs, scores_by_source
from .model_card import describe_hardware, write_model_card
from .modeling_reservoir import ReservoirMarianMTModel

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """The model: Marian sizes plus the reservoir fields of [`ReservoirMarianConfig`]."""

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
    layernorm_position: str = field(default="post", metadata={"help": "pre (the paper's equations) or post (Marian)"})
    num_encoder_reservoir_layers: int | None = field(default=None, metadata={"help": "reservoirs, placed by rule"})
    encoder_reservoir_layers: list[int] | None = field(default=None, metadata={"help": "explicit reservoir indices"})
    reservoir_placement: str = field(default="alternating", metadata={"help": "alternating, middle, bottom, top"})
    reservoir_type: list[str] | None = field(
        default=None,
        metadata={"help": "transformer (the default), ffn, bigru, cnn: one, or one per reservoir"},
    )
    reservoir_init: str = field(default="orthogonal", metadata={"help": "orthogonal or default"})
    reservoir_seed: int = field(default=0, metadata={"help": "seed of the reservoir weights"})
    decoder_reservoir_layers: list[int] | None = field(default=None, metadata={"help": "frozen decoder layers"})
    reservoir_cnn_kernel_size: int = field(default=3, metadata={"help": "cnn reservoir kernel width"})
    backskip_mode: str = field(default="exact", metadata={"help": "exact, identity or learned"})
    backskip_warmup_steps: int = field(default=1000, metadata={"help": "true-gradient steps before skipping"})
    backskip_anneal_factor: float = field(default=0.999, metadata={"help": "skip prob. 1 - factor**n after warm-up"})
    backskip_predictor_rank: int = field(default=0, metadata={"help": "learned predictor rank (0: full)"})
    backskip_export_predictor: bool = field(
        default=True, metadata={"help": "save the learned backskip predictor with the model"}
    )
    reservoir_storage: str = field(
        default="weights", metadata={"help": "weights, or seed: save reservoirs as their seed and checksums only"}
    )

    def __post_init__(self):
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

    def config_kwargs(self) -> dict:
        kwargs = {k: v for k, v in vars(self).items() if k != "model_name_or_path"}
        types = kwargs.pop("reservoir_type")
        if types is not None:
            kwargs["reservoir_type"] = types[0] if len(types) == 1 else list(types)
        return kwargs


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
    build_corpus: bool = field(default=False, metadata={"help": "build the Debian corpus at data_path if missing"})
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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start a new run in an output_dir that holds an earlier run's files, replacing them"},
    )


@dataclass
class ConvergenceArguments:
    """The convergence clock."""

    budget_seconds: float | None = field(
        default=None, metadata={"help": "T-hat: stop after this many training seconds; AUCC integrates up to it"}
    )
    patience: int | None = field(default=None, metadata={"help": "stop after N evaluations without a new peak"})
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
            "hf_reservoir/sharing.py): train for lane_slice_seconds, then wait, off the clock, for the next turn"
        },
    )
    lane_name: str | None = field(default=None, metadata={"help": "this run's name in its lane"})
    lane_slice_seconds: float = field(default=10.0, metadata={"help": "training seconds per turn in a lane"})
    step_delay_seconds: float = field(
        default=0.0,
        metadata={
            "help": "a testing aid: sleep this long in every training step, on the clock, to check that a paired "
            "comparison measures a slower arm as slower (the sweep's A/A test). 0 in real runs"
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
        if (self.lane_dir is None) != (self.lane_name is None):
            raise ValueError(
                f"lane_dir={self.lane_dir!r} and lane_name={self.lane_name!r}: a run in a lane needs both "
                "(hf-reservoir sweep sets them), or neither."
            )


# --------------------------------------------------------------------------------------------
# Data pipeline
# --------------------------------------------------------------------------------------------


def subset(dataset, size: int, seed: int | None = None):
    """The first ``size`` rows, or ``size`` rows drawn at random with ``seed`` (kept in corpus order)."""
    size = min(size, len(dataset))
    if seed is None:
        return dataset.select(range(size))
    rows = random.Random(seed).sample(range(len(dataset)), size)
    return dataset.select(sorted(rows))


def tokenize_corpus(
    corpus, tokenizer, source_lang: str, target_lang: str, max_source_length: int, max_target_length: int, stats: dict
):
    """Tokenize every split; truncation to the maximum lengths is counted in ``stats["truncated"]``."""

    def encode(batch):
        sources = [pair[source_lang] for pair in batch["translation"]]
        targets = [pair[target_lang] for pair in batch["translation"]]
        full = tokenizer(sources, text_target=targets)
        features = tokenizer(sources, text_target=targets, max_length=max_source_length, truncation=True)
        labels = tokenizer(text_target=targets, max_length=max_target_length, truncation=True)["input_ids"]
        features["labels"] = labels
        features["truncated"] = [
            len(a) > max_source_length or len(b) > max_target_length for a, b in zip(full["input_ids"], full["labels"])
        ]
        return features

    tokenized = {}
    stats.setdefault("truncated", {})
    for split, dataset in corpus.items():
        columns = dataset.column_names
        # In memory: a cache file would land inside the user's data folder (next to a built corpus's arrow files).
        encoded = dataset.map(
            encode, batched=True, remove_columns=columns, desc=f"Tokenizing {split}", keep_in_memory=True
        )
        stats["truncated"][split] = int(sum(encoded["truncated"]))
        tokenized[split] = encoded.remove_columns("truncated")
    if any(stats["truncated"].values()):
        logger.warning("Truncated pairs longer than the maximum lengths: %s", stats["truncated"])
    return tokenized


class TokenBatchSampler(torch.utils.data.Sampler):
    """Batches of at most ``max_tokens`` padded tokens, grouped by length (fairseq's ``--max-tokens``).

    Pairs are sorted by length inside shuffled chunks, packed greedily, and the batches are
    shuffled; the order depends only on ``seed`` and the epoch (``set_epoch``), so resuming works.
    """

    def __init__(self, lengths: list[int], max_tokens: int, seed: int = 0, shuffle: bool = True):
        too_long = [i for i, n in enumerate(lengths) if n > max_tokens]
        if too_long:
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than {len(too_long)} examples (the longest has "
                f"{max(lengths)} tokens); raise max_tokens or lower max_source_length/max_target_length."
            )
        self.lengths, self.max_tokens, self.seed, self.shuffle = lengths, max_tokens, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        chunk = 100 * max(1, self.max_tokens // max(1, max(self.lengths)))
        batches, batch, longest = [], [], 0
        for start in range(0, len(order), chunk):
            for index in sorted(order[start : start + chunk], key=lambda i: self.lengths[i]):
                longest_if_added = max(longest, self.lengths[index])
                if batch and longest_if_added * (len(batch) + 1) > self.max_tokens:
                    batches.append(batch)
                    batch, longest_if_added = [], self.lengths[index]
                batch.append(index)
                longest = longest_if_added
        if batch:
            batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class BackskipStepCallback(TrainerCallback):
    """Tells the encoder the Trainer's global step, which drives the backskip schedule.

    The skip decision is a function of (seed, step, layer), so with the same step on every rank
    DDP processes skip the same reservoirs (a mismatch would desynchronise them).
    """

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            model.get_encoder().backskip_step = state.global_step


class ReservoirSeq2SeqTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` with optional token-budget batches.

    The optimizer is the Trainer's own: it holds only parameters with ``requires_grad=True`` (so
    reservoirs never enter it) and applies no weight decay to biases and LayerNorm weights.
    """

    def __init__(self, *args, max_tokens: int | None = None, convergence: ConvergenceCallback | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_tokens = max_tokens
        self.convergence = convergence

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # The convergence clock's figures travel with each evaluation, to every report_to integration.
        if self.convergence is not None and "eval_bleu" in logs:
            logs = {**logs, **self.convergence.figures_for_log(float(logs["eval_bleu"]))}
        super().log(logs, *args, **kwargs)

    def _issue_warnings_after_load(self, load_result) -> None:
        # A checkpoint holds neither the tied embeddings and LM head (one copy, model.shared) nor the sinusoidal
        # position tables (rebuilt from the config): they are missing by design, and the Trainer's warning about
        # them ("There were missing keys ...") reads like corrupt weights. Tie again, and warn only about others.
        derived = set(self.model._keys_to_ignore_on_save or ()) | set(
            getattr(self.model, "_tied_weights_keys", None) or ()
        )
        missing = [key for key in load_result.missing_keys if key not in derived]
        if len(missing) < len(load_result.missing_keys):
            self.model.tie_weights()
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    def _get_eval_sampler(self, eval_dataset):
        # Evaluation keeps the dataset's order, which run_training sets longest first. The Trainer would
        # reuse train_sampling_strategy="group_by_length" for evaluation too, and its random batches of a
        # small split (661 pairs, 128 per batch) pad and generate about as slowly as no grouping at all.
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        if eval_dataset is None or self.args.world_size > 1:
            return None  # as without grouping: accelerate then shards the split in order
        return torch.utils.data.SequentialSampler(eval_dataset)

    def get_train_dataloader(self):
        if self.max_tokens is None:
            return super().get_train_dataloader()
        dataset = self.train_dataset
        lengths = [max(len(s), len(t)) for s, t in zip(dataset["input_ids"], dataset["labels"])]
        sampler = TokenBatchSampler(lengths, self.max_tokens, seed=self.args.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)


def build_compute_metrics(tokenizer):
    """``compute_metrics`` for the Trainer: detokenise, then :func:`corpus_scores`."""

    def compute_metrics(eval_prediction):
        return corpus_scores(*decode_pairs(tokenizer, eval_prediction.predictions, eval_prediction.label_ids))

    return compute_metrics


# --------------------------------------------------------------------------------------------
# Checks that run before any training
# --------------------------------------------------------------------------------------------


def check_tokenizer_matches_model(tokenizer, config: ReservoirMarianConfig) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embeddings or special tokens."""
    vocab = len(tokenizer)
    target_vocab = len(tokenizer.target_encoder) if getattr(tokenizer, "separate_vocabs", False) else vocab
    problems = []
    if vocab != config.vocab_size:
        problems.append(f"the tokenizer has {vocab} source tokens but the model's vocab_size is {config.vocab_size}")
    if target_vocab != config.decoder_vocab_size:
        problems.append(
            f"the tokenizer has {target_vocab} target tokens but decoder_vocab_size is {config.decoder_vocab_size}"
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        problems.append(f"pad ids differ (tokenizer {tokenizer.pad_token_id}, model {config.pad_token_id})")
    if tokenizer.eos_token_id != config.eos_token_id:
        problems.append(f"eos ids differ (tokenizer {tokenizer.eos_token_id}, model {config.eos_token_id})")
    if problems:
        raise ValueError(
            "The tokenizer does not match the model: " + "; ".join(problems) + ". Use the tokenizer the model was "
            "trained with, or train a new model from this tokenizer."
        )


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
    path = os.path.join(checkpoint, "config.json")
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


def last_checkpoint(output_dir: str) -> str | None:
    """The newest *complete* checkpoint in ``output_dir`` (weights and trainer state written), or None.

    A checkpoint cut short by a crash or a full disk is skipped with a warning, so resuming falls back to the
    newest one that can be loaded instead of failing.
    """
    import re

    if not os.path.isdir(output_dir):
        return None
    found = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(output_dir)
        if (m := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(found):
        path = os.path.join(output_dir, name)
        files = set(os.listdir(path))
        weights = [f for f in files if f.endswith(".safetensors") and os.path.getsize(os.path.join(path, f)) > 0]
        if "trainer_state.json" in files and "config.json" in files and weights:
            return path
        logger.warning("Skipping the incomplete checkpoint %s (weights or trainer state missing).", path)
    return None


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------


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
                f"tokenizer, or omit it to train a new one into {os.path.join(output_dir, 'tokenizer')}."
            )
        return data_args.tokenizer_path, False
    if model_name_or_path:
        if _holds_tokenizer(model_name_or_path) or not os.path.isdir(model_name_or_path):
            return model_name_or_path, False  # the model's own folder, or a Hub id
        raise ValueError(
            f"model_name_or_path={model_name_or_path} holds no tokenizer (no vocab.json), and a newly trained one "
            "would not match the model's ids; pass --tokenizer_path with the tokenizer it was trained with."
        )
    own = os.path.join(output_dir, "tokenizer")
    if not _holds_tokenizer(own):
        return own, True
    from .tokenization import load_tokenizer

    size = len(load_tokenizer(own))
    if size != data_args.vocab_size:
        raise ValueError(
            f"{own} holds a {size}-piece tokenizer from an earlier run, but vocab_size={data_args.vocab_size} was "
            f"asked for; resume with --vocab_size {size}, or start the run in a new output_dir."
        )
    return own, False


def check_output_dir(output_dir: str, resuming: bool, overwrite: bool) -> None:
    """Refuse to overwrite an earlier run's files, and an output_dir that cannot be written, before training."""
    model_dir = os.path.join(output_dir, "model")
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir} is a file, but the trained model is saved there; move or delete it.")
    earlier = [
        name
        for name in (sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else [])
        if name in ("results.json", "convergence.json", "model", "tokenizer") or name.startswith("checkpoint-")
    ]
    if earlier and not resuming:
        if not overwrite:
            raise ValueError(
                f"output_dir={output_dir} holds an earlier run ({', '.join(earlier)}). Resume it with "
                "--resume_from_checkpoint last, start over with --overwrite_output_dir true (its files are "
                "replaced), or choose a new output_dir."
            )
        import shutil

        for name in earlier:  # a fresh start: the old tokenizer and checkpoints must not leak into it
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


def check_lengths(data_args: DataArguments, max_position_embeddings: int) -> None:
    """Sources and targets must fit the model's position table."""
    for name in ("max_source_length", "max_target_length"):
        value = getattr(data_args, name)
        if value > max_position_embeddings:
            raise ValueError(
                f"{name}={value} exceeds the model's max_position_embeddings={max_position_embeddings}; lower "
                f"{name}, or build the model with max_position_embeddings >= {value}."
            )


def prepare_data(data_args: DataArguments, output_dir: str, model_name_or_path: str | None = None):
    """Load (building first if asked) the corpus and the tokenizer; returns (corpus, tokenizer, stats)."""
    from .corpus import build_corpus
    from .data import load_parallel_corpus
    from .tokenization import load_tokenizer, train_marian_tokenizer

    if data_args.build_corpus and not os.path.exists(os.path.join(data_args.data_path, "stats.json")):
        build_corpus(data_args.data_path)
    stats: dict = {}
    corpus = load_parallel_corpus(
        data_args.data_path,
        data_args.source_lang,
        data_args.target_lang,
        data_format=data_args.data_format,
        hub_config=data_args.hub_config,
        stats=stats,
    )
    if data_args.max_train_samples is not None:
        corpus["train"] = subset(corpus["train"], data_args.max_train_samples, data_args.train_sample_seed)
    if data_args.max_eval_samples is not None:
        corpus["validation"] = corpus["validation"].select(
            range(min(data_args.max_eval_samples, len(corpus["validation"])))
        )
    tokenizer_path, train = resolve_tokenizer(data_args, model_name_or_path, output_dir)
    if train:
        train_marian_tokenizer(
            corpus["train"],
            data_args.source_lang,
            data_args.target_lang,
            tokenizer_path,
            vocab_size=data_args.vocab_size,
        )
    tokenizer = load_tokenizer(tokenizer_path)
    return corpus, tokenizer, stats


def build_model(model_args: ModelArguments, tokenizer) -> ReservoirMarianMTModel:
    """A new model sized from ``model_args`` with the tokenizer's vocabulary and special ids, or a saved one."""
    if model_args.model_name_or_path:
        model = ReservoirMarianMTModel.from_pretrained(model_args.model_name_or_path)
        check_shape_flags(model_args, model.config)
    else:
        separate = getattr(tokenizer, "separate_vocabs", False)
        config = ReservoirMarianConfig(
            vocab_size=len(tokenizer),
            decoder_vocab_size=len(tokenizer.target_encoder) if separate else len(tokenizer),
            share_encoder_decoder_embeddings=not separate,
            pad_token_id=tokenizer.pad_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
            **model_args.config_kwargs(),
        )
        model = ReservoirMarianMTModel(config)
    check_tokenizer_matches_model(tokenizer, model.config)
    return model


def check_push_to_hub(training_args) -> bool:
    """With ``--push_to_hub``, check the repository name and the token before training; return whether to push.

    The upload happens once, at the end, through :func:`push_trained_model` (the model folder with its card
    and remote-code files), so the Trainer's own per-checkpoint pushes are turned off.
    """
    if not training_args.push_to_hub:
        return False
    from huggingface_hub import get_token

    if not training_args.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id, e.g. --hub_model_id your-name/reservoir-de-en.")
    if not (training_args.hub_token or get_token()):
        raise ValueError(
            "push_to_hub needs a Hub token: pass --hub_token, set HF_TOKEN, or log in once with `hf auth login`."
        )
    training_args.push_to_hub = False
    return True


def push_trained_model(model_dir: str, training_args) -> str:
    """Upload ``model_dir`` as ``hf-reservoir push`` does (card, remote-code files, tokenizer); return the URL."""
    import tempfile

    from .hub import export_for_hub, push_folder

    with tempfile.TemporaryDirectory() as scratch:
        export_for_hub(model_dir, scratch + "/export")
        url = push_folder(
            scratch + "/export",
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
    print(f"  uploaded to the Hub:           {url}")
    return url


def check_shape_flags(model_args: ModelArguments, config: ReservoirMarianConfig) -> None:
    """Refuse model flags that were set away from their defaults and contradict a loaded model."""
    from dataclasses import fields

    loaded = config.to_dict()
    contradictions = []
    for f in fields(ModelArguments):
        if f.name == "model_name_or_path" or f.name not in loaded:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        value = getattr(model_args, f.name)
        if value == default:
            continue  # not set (or set to the default): the loaded model decides
        if f.name == "reservoir_type" and value is not None:
            value = value[0] if len(value) == 1 else list(value)
            saved = loaded[f.name]
            if value == saved or (isinstance(saved, list) and [value] * len(saved) == saved):
                continue
        if value != loaded[f.name]:
            contradictions.append(f"{f.name}: asked {value!r}, the saved model has {loaded[f.name]!r}")
    if contradictions:
        raise ValueError(
            f"model_name_or_path loads a saved model whose shape differs from the flags: {'; '.join(contradictions)}. "
            "Drop those flags to continue from the saved model, or drop model_name_or_path to build a new one."
        )


class StepDelayCallback(TrainerCallback):
    """Sleep ``seconds`` at the start of every training step, inside the clock's interval (a testing aid)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step_begin(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def sharing_callbacks(convergence_args: ConvergenceArguments, convergence: ConvergenceCallback) -> list:
    """The lane's turn-taking and the testing delay, each after the convergence clock that they depend on."""
    from .sharing import TurnTakingCallback

    extra = []
    if convergence_args.step_delay_seconds:
        extra.append(StepDelayCallback(convergence_args.step_delay_seconds))
    if convergence_args.lane_dir is not None:
        extra.append(
            TurnTakingCallback(
                convergence_args.lane_dir, convergence_args.lane_name, convergence, convergence_args.lane_slice_seconds
            )
        )
    return extra


def sharing_record(callbacks: list) -> dict:
    """How this run shared the machine: torch threads, and its lane's turns and waits if it had one."""
    from .sharing import TurnTakingCallback

    record = {"scheme": "alone", "torch_threads": torch.get_num_threads()}
    for item in callbacks:
        if isinstance(item, TurnTakingCallback):
            record.update(
                scheme="lane",
                lane=item.lane_dir,
                name=item.name,
                slice_seconds=item.slice_seconds,
                turns=item.turns,
                waited_seconds=round(item.waited_seconds, 3),
                turn_intervals=[
                    [round(t, 3) if t is not None else None for t in turn] for turn in item.turn_intervals
                ],
            )
        elif isinstance(item, StepDelayCallback):
            record["step_delay_seconds"] = item.seconds
    return record


def check_run_settings(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    convergence_args: ConvergenceArguments,
) -> int:
    """Check the settings that need more than one arguments object, before touching data (a bad config fails
    in a second); returns the final scores' beam count."""
    ReservoirMarianConfig(**model_args.config_kwargs())
    if not model_args.model_name_or_path:
        check_lengths(data_args, model_args.max_position_embeddings)
    if training_args.dataloader_pin_memory and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; on the CPU it only warns
    if not training_args.predict_with_generate:  # BLEU needs generated ids, not logits
        logger.warning("predict_with_generate was off; turning it on, since BLEU is computed on generated text.")
        training_args.predict_with_generate = True
    if convergence_args.lr_cooldown and convergence_args.budget_seconds is None and training_args.max_steps <= 0:
        raise ValueError(
            f"lr_cooldown={convergence_args.lr_cooldown} decays the learning rate to 0 where training ends, but "
            "neither budget_seconds nor max_steps says where that is; set max_steps (the same on every machine) "
            "or budget_seconds (wall-clock), or drop lr_cooldown."
        )
    if convergence_args.final_num_beams is None:
        return training_args.generation_num_beams or 1
    return convergence_args.final_num_beams


def resolve_resume(training_args: Seq2SeqTrainingArguments) -> str | None:
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


def build_model_for_run(model_args, data_args, training_args, tokenizer, resume: str | None):
    """The model, checked against the data's lengths and the checkpoint, with its generation settings."""
    model = build_model(model_args, tokenizer)
    check_lengths(data_args, model.config.max_position_embeddings)
    if resume:
        check_resume_layout(resume, model.config)
    model.generation_config.max_length = data_args.max_target_length
    model.generation_config.num_beams = training_args.generation_num_beams or 1
    if training_args.process_index == 0:
        summary = model.parameter_summary()["total"]
        print(
            f"Encoder layout {model.config.encoder_layout} ({model.config.encoder_reservoir_types or 'no reservoirs'}"
            f"); parameters: {summary['trainable']:,} trainable of {summary['total']:,}"
        )
        for name, layer in model.reservoir_layers().items():
            frozen = sum(p.numel() for p in layer.parameters())
            print(f"  reservoir {name} ({layer.reservoir_type}): {frozen:,} frozen parameters")
    return model


def tokenize_for_training(corpus, tokenizer, data_args: DataArguments, data_stats: dict) -> dict:
    """Tokenize every split; evaluation splits in generation order, longest first (``corpus`` follows)."""
    tokenized = tokenize_corpus(
        corpus,
        tokenizer,
        data_args.source_lang,
        data_args.target_lang,
        data_args.max_source_length,
        data_args.max_target_length,
        data_stats,
    )
    for split in ("validation", "test"):  # generation order only: the scores do not depend on it
        if split in tokenized:
            order = longest_first(tokenized[split]["input_ids"])
            tokenized[split] = tokenized[split].select(order, keep_in_memory=True)
            corpus[split] = corpus[split].select(order, keep_in_memory=True)
    return tokenized


def make_trainer(model, tokenizer, tokenized, training_args, data_args, clock, callbacks: list):
    """The Trainer, with the convergence clock first and its progress bar instead of the plain one."""
    from transformers.trainer_callback import ProgressCallback

    trainer = ReservoirSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(tokenizer),
        callbacks=[clock, *callbacks],
        max_tokens=data_args.max_tokens,
        convergence=clock,
    )
    trainer.remove_callback(ProgressCallback)  # replaced by a bar that shows the clock and BLEU as well
    trainer.add_callback(ConvergenceProgressCallback(clock, show_bar=not training_args.disable_tqdm))
    return trainer


def final_scores(trainer, tokenized, corpus, tokenizer, beams: int, evaluate_test: bool) -> dict:
    """The best model's validation (and test, overall and per source) scores with ``beams`` beams."""
    scores = {"best_checkpoint": trainer.state.best_model_checkpoint, "final_num_beams": beams}
    validation = trainer.evaluate(tokenized["validation"], metric_key_prefix="final_validation", num_beams=beams)
    scores["validation"] = {k.removeprefix("final_validation_"): v for k, v in validation.items()}
    if evaluate_test:
        # One generation pass over the test split serves the overall and the per-source scores.
        test = trainer.predict(tokenized["test"], metric_key_prefix="test", num_beams=beams)
        scores["test"] = {k.removeprefix("test_"): v for k, v in test.metrics.items()}
        if "source" in corpus["test"].column_names:
            check_dataset_order(test.label_ids, tokenized["test"]["labels"], tokenizer.pad_token_id)
            hypotheses, references = decode_pairs(tokenizer, test.predictions, test.label_ids)
            scores["test_by_source"] = scores_by_source(hypotheses, references, corpus["test"]["source"])
    return scores


def save_outputs(trainer, tokenizer, report: dict, training_args, push: bool, data_args: DataArguments) -> str:
    """``results.json`` first (a failing model save must not take it along), then the model, its tokenizer,
    card and scoring settings in ``OUTPUT_DIR/model``, then the upload if asked; returns the model folder."""
    final_dir = os.path.join(training_args.output_dir, "model")
    # The saved folder decodes the way its reported scores were decoded.
    trainer.model.generation_config.num_beams = report["final_num_beams"]
    if not trainer.is_world_process_zero():
        return final_dir
    with open(os.path.join(training_args.output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=str)
        handle.write("\n")
    trainer.save_model(final_dir)
    tokenizer.save_pretrained(final_dir)
    # How the final scores were computed, so that `hf-reservoir evaluate` reproduces them by default.
    write_scoring_settings(
        final_dir,
        max_source_length=data_args.max_source_length,
        max_target_length=data_args.max_target_length,
        batch_size=training_args.per_device_eval_batch_size,
        num_beams=report["final_num_beams"],
        order="longest source first",
    )
    repo_id = training_args.hub_model_id or f"your-name/{os.path.basename(os.path.abspath(training_args.output_dir))}"
    write_model_card(final_dir, training_args.output_dir, repo_id)
    if push:
        report["hub_commit"] = push_trained_model(final_dir, training_args)
    return final_dir


def print_results(report: dict, final_dir: str, evaluation_beams: int) -> None:
    conv, beams = report["convergence"], report["final_num_beams"]
    validation = report["validation"]
    print("\n=== hf-reservoir results ===")
    print(
        f"  validation BLEU (best model, {beams} beam{'s' if beams > 1 else ''}): "
        f"{validation.get('bleu', float('nan')):.2f}  chrF {validation.get('chrf', float('nan')):.2f}"
    )
    if "test" in report:
        print(f"  test BLEU (same decoding):     {report['test']['bleu']:.2f}  chrF {report['test']['chrf']:.2f}")
    steps_per_second = 1 / conv["seconds_per_step"] if conv["seconds_per_step"] else float("nan")
    print(f"  stopped by:                    {conv['stopped_by']} (step {conv['steps_trained']})")
    print(
        f"  training wall-clock:           {conv['train_seconds']:.0f} s ({steps_per_second:.2f} steps/s, "
        f"{conv['seconds_per_epoch'] or float('nan'):.0f} s per epoch; evaluation and saving excluded)"
    )
    if conv["peak_bleu"] is not None:
        print(
            f"  peak validation BLEU (during training, {evaluation_beams} beam): {conv['peak_bleu']:.2f} at "
            f"{conv['time_to_peak_seconds']:.0f} training s (step {conv['step_at_peak']})"
        )
    print(
        f"  AUCC:                          {conv['aucc_bleu_hours']:.4f} BLEU-hours "
        f"({conv['aucc_normalized']:.2f} BLEU averaged over {conv['aucc_budget_seconds']:.0f} s)"
    )
    print(f"  saved model:                   {final_dir}")


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: Seq2SeqTrainingArguments,
    convergence_args: ConvergenceArguments,
    callbacks: list | None = None,
) -> dict:
    """Train, evaluate and save; returns the final report (also written to ``results.json``).

    The steps: check the settings, resolve a resume, build the data and the model, train under the
    convergence clock, score the best model, save the outputs, print the results.

    Args:
        model_args, data_args, training_args, convergence_args: the parsed arguments.
        callbacks (`list[TrainerCallback]`, *optional*): extra callbacks for the Trainer.
    """
    from transformers import set_seed

    final_beams = check_run_settings(model_args, data_args, training_args, convergence_args)
    budget, cooldown = convergence_args.budget_seconds, convergence_args.lr_cooldown or None
    clock = ConvergenceCallback(budget_seconds=budget, patience=convergence_args.patience, lr_cooldown=cooldown)
    sharing = sharing_callbacks(convergence_args, clock)
    resume = resolve_resume(training_args)
    push = check_push_to_hub(training_args)
    if training_args.process_index == 0:
        check_output_dir(training_args.output_dir, bool(resume), data_args.overwrite_output_dir)
    set_seed(training_args.seed)
    with training_args.main_process_first(desc="corpus and tokenizer"):  # other ranks reuse rank 0's files
        corpus, tokenizer, data_stats = prepare_data(
            data_args, training_args.output_dir, model_args.model_name_or_path
        )
    model = build_model_for_run(model_args, data_args, training_args, tokenizer, resume)
    tokenized = tokenize_for_training(corpus, tokenizer, data_args, data_stats)
    extra_callbacks = [*sharing, BackskipStepCallback(), *(callbacks or [])]
    trainer = make_trainer(model, tokenizer, tokenized, training_args, data_args, clock, extra_callbacks)
    train_output = trainer.train(resume_from_checkpoint=resume)
    report = {
        "convergence": clock.summary(),
        "data": data_stats,
        "parameters": model.parameter_summary()["total"],
        "encoder_layout": model.config.encoder_layout,
        "train_runtime_including_evaluation": train_output.metrics.get("train_runtime"),
        "sharing": sharing_record(sharing),
        # Every training process of this run (several after a resume): its lane and wall-clock interval.
        "history": clock.record.parts,
        "source_lang": data_args.source_lang,
        "target_lang": data_args.target_lang,
        "data_source": {"name": data_args.data_path, "config": data_args.hub_config},
        "corpus_stats": _corpus_stats(data_args.data_path),
        "hardware": describe_hardware(),
        "training": training_facts(training_args, data_args, trainer, cooldown, on_clock=budget is not None),
    }
    report.update(final_scores(trainer, tokenized, corpus, tokenizer, final_beams, convergence_args.evaluate_test))
    final_dir = save_outputs(trainer, tokenizer, report, training_args, push, data_args)
    if trainer.is_world_process_zero():
        print_results(report, final_dir, training_args.generation_num_beams or 1)
    report["model_dir"] = final_dir
    return report


def _corpus_stats(data_path: str) -> dict | None:
    path = os.path.join(data_path, "stats.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _plain(value) -> str:
    """An enum's value (``inverse_sqrt``), not its repr (``SchedulerType.INVERSE_SQRT``)."""
    return str(getattr(value, "value", value))


def training_facts(
    training_args, data_args: DataArguments, trainer, lr_cooldown: float | None = None, on_clock: bool = True
) -> dict:
    """The settings a model card reports."""
    args = training_args
    schedule = f"{_plain(args.lr_scheduler_type)}, {args.warmup_steps:g} warm-up steps"
    if lr_cooldown:
        window = "training budget (wall-clock)" if on_clock else f"{args.max_steps} steps"
        schedule += f", then linear cool-down to 0 over the last {lr_cooldown:.0%} of the {window}"
    batch = (
        f"{data_args.max_tokens} tokens"
        if data_args.max_tokens
        else f"{args.per_device_train_batch_size} pairs x {args.world_size} processes"
    )
    return {
        "optimizer": f"{_plain(args.optim)} (betas {args.adam_beta1}, {args.adam_beta2}), "
        f"weight decay {args.weight_decay}",
        "learning_rate": args.learning_rate,
        "lr_scheduler": schedule,
        "batch": batch,
        "label_smoothing": args.label_smoothing_factor,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "seed": args.seed,
        "evaluation_num_beams": args.generation_num_beams or 1,
    }


__all__ = [
    "ModelArguments",
    "DataArguments",
    "ConvergenceArguments",
    "run_training",
    "TokenBatchSampler",
    "ReservoirSeq2SeqTrainer",
]
