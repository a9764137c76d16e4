"""Training a reservoir translation model with ``Seq2SeqTrainer``: the orchestration of one run.

``hf-reservoir train`` (and ``training/train.py``, a shim over it) parses the flags into the dataclasses of
[`hf_reservoir.trainer.arguments`] and calls [`run_training`]. The jobs it composes live in their own modules:
the checks ([`~hf_reservoir.trainer.checks`]), the data ([`~hf_reservoir.corpus.loading`]), the Trainer and its
step callbacks ([`~hf_reservoir.trainer.reservoir_trainer`]), the clock ([`~hf_reservoir.trainer.convergence`]), the
model card ([`~hf_reservoir.hub.model_card`]) and the upload ([`~hf_reservoir.hub.push`]).
"""

from __future__ import annotations

import os

from transformers import Seq2SeqTrainingArguments

from ..corpus.loading import subset, tokenize_corpus
from ..corpus.tokenization import check_tokenizer_matches_model
from ..evaluation.inference import longest_first, write_scoring_settings
from ..hub.model_card import corpus_stats, describe_hardware, training_facts, write_model_card
from ..hub.push import check_hub_token, push_model
from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig
from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel
from ..utils.run_folder import CORPUS_STATS_FILE, MODEL_DIR, RESULTS_FILE, write_run_file
from .arguments import ConvergenceArguments, DataArguments, ModelArguments
from .checks import (
    build_run_config,
    check_lengths,
    check_resume_layout,
    check_shape_flags,
    prepare_output_dir,
    resolve_resume,
    resolve_tokenizer,
    settle_training_arguments,
)
from .convergence import ConvergenceCallback
from .recipe import build_recipe, check_resume_recipe, record_recipe
from .reservoir_trainer import (
    BackskipStepCallback,
    allow_compiled_graphs,
    final_scores,
    make_trainer,
    sharing_callbacks,
    sharing_record,
)


def prepare_data(data_args: DataArguments, output_dir: str, model_name_or_path: str | None = None):
    """Load (building first if asked) the corpus and the tokenizer; returns (corpus, tokenizer, stats)."""
    from ..corpus.build import build_corpus_once
    from ..corpus.loading import load_parallel_corpus
    from ..corpus.tokenization import load_tokenizer, train_marian_tokenizer

    if data_args.build_corpus and not os.path.exists(os.path.join(data_args.data_path, CORPUS_STATS_FILE)):
        # Several runs may start at once: one builds, the others wait. The pair is the run's languages.
        build_corpus_once(data_args.data_path, pair=f"{data_args.source_lang}-{data_args.target_lang}")
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
    record_run_splits(stats, corpus, data_args)
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


def record_run_splits(stats: dict, corpus, data_args: DataArguments) -> None:
    """Beside the corpus's split sizes (``corpus_splits``), the pairs this run uses (``run_splits``) and how its
    training pairs were chosen (``train_pairs``), so that a run on a draw of the corpus says so."""
    stats["run_splits"] = {split: len(corpus[split]) for split in corpus}
    if data_args.max_train_samples is None:
        how = "all"
    elif data_args.train_sample_seed is None:
        how = f"the first {stats['run_splits']['train']}"
    else:
        how = f"{stats['run_splits']['train']} drawn at random with seed {data_args.train_sample_seed}"
    stats["train_pairs"] = {
        "used": stats["run_splits"]["train"],
        "of": stats.get("corpus_splits", {}).get("train"),
        "how": how,
        "max_train_samples": data_args.max_train_samples,
        "train_sample_seed": data_args.train_sample_seed,
    }


def build_model(model_args: ModelArguments, config: ReservoirMarianConfig, tokenizer) -> ReservoirMarianMTModel:
    """A saved model (``model_name_or_path``, checked against the flags), or a new one from ``config`` (the
    config [`~hf_reservoir.trainer.checks.build_run_config`] built) with the tokenizer's vocabulary and ids."""
    if model_args.model_name_or_path:
        model = ReservoirMarianMTModel.from_pretrained(model_args.model_name_or_path)
        check_shape_flags(model_args, model.config)
    else:
        separate = getattr(tokenizer, "separate_vocabs", False)
        config.vocab_size = len(tokenizer)
        config.decoder_vocab_size = len(tokenizer.target_encoder) if separate else len(tokenizer)
        config.share_encoder_decoder_embeddings = not separate
        config.pad_token_id = config.decoder_start_token_id = tokenizer.pad_token_id
        config.eos_token_id = config.forced_eos_token_id = tokenizer.eos_token_id
        model = ReservoirMarianMTModel(config)
    check_tokenizer_matches_model(tokenizer, model.config)
    return model


def build_model_for_run(model_args, config, data_args, training_args, tokenizer, resume: str | None):
    """The model, checked against the data's lengths and the checkpoint, with its generation settings."""
    model = build_model(model_args, config, tokenizer)
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


def save_outputs(trainer, tokenizer, report: dict, training_args, push: bool, data_args: DataArguments) -> str:
    """``results.json`` first (a failing model save must not take it along), then the model, its tokenizer,
    card and scoring settings in ``OUTPUT_DIR/model``, then the upload if asked; returns the model folder."""
    final_dir = os.path.join(training_args.output_dir, MODEL_DIR)
    # The saved folder decodes the way its reported scores were decoded.
    trainer.model.generation_config.num_beams = report["final_num_beams"]
    if not trainer.is_world_process_zero():
        return final_dir
    write_run_file(training_args.output_dir, RESULTS_FILE, report)
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
        report["hub_commit"] = push_model(
            final_dir,
            training_args.hub_model_id,
            private=bool(training_args.hub_private_repo),
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
        print(f"  uploaded to the Hub:           {report['hub_commit']}")
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
        f"({conv['aucc_normalized']:.2f} BLEU averaged over {conv['aucc_horizon_seconds']:.0f} s)"
    )
    print(f"  saved model:                   {final_dir}")


def settle_push_to_hub(training_args) -> bool:
    """With ``--push_to_hub``, check the repository name and the token before training; return whether to push.

    The upload happens once, at the end, through [`hf_reservoir.hub.push.push_model`] (the path ``hf-reservoir
    push`` takes: the model folder with its card and remote-code files), so the Trainer's own per-checkpoint
    pushes are turned off.
    """
    if not training_args.push_to_hub:
        return False
    if not training_args.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id, e.g. --hub_model_id your-name/reservoir-de-en.")
    check_hub_token(training_args.hub_token, flag="--hub_token")
    training_args.push_to_hub = False
    return True


def backskip_record(model) -> dict:
    """A backskipping run's schedule and how many reservoir forwards skipped their backward (none otherwise)."""
    config = model.config
    if config.backskip_mode == "exact" or not config.encoder_reservoir_layers:
        return {}
    return {
        "backskip": {
            "mode": config.backskip_mode,
            "warmup_steps": config.backskip_warmup_steps,
            "anneal_factor": config.backskip_anneal_factor,
            **model.get_encoder().backskip_counts,
        }
    }


def run_report(clock, model, trainer, train_output, sharing: list, data_args, data_stats: dict, cooldown) -> dict:
    """What ``results.json`` records of a finished run, before the final scores are added."""
    return {
        "convergence": clock.summary(),
        "data": data_stats,
        "parameters": model.parameter_summary()["total"],
        "encoder_layout": model.config.encoder_layout,
        "train_runtime_including_evaluation": train_output.metrics.get("train_runtime"),
        "sharing": sharing_record(sharing),
        # Every training process of this run (several after a resume): its lane and wall-clock interval.
        "history": clock.record.parts,
        "clock_warmup_steps": clock.warmup_steps,
        **backskip_record(model),
        "source_lang": data_args.source_lang,
        "target_lang": data_args.target_lang,
        "data_source": {"name": data_args.data_path, "config": data_args.hub_config},
        "corpus_stats": corpus_stats(data_args.data_path),
        "hardware": describe_hardware(),
        "training": training_facts(
            trainer.args, data_args.max_tokens, trainer, cooldown, on_clock=clock.budget_seconds is not None
        ),
    }


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

    config = build_run_config(model_args, data_args, training_args, convergence_args)
    settle_training_arguments(training_args)
    final_beams = convergence_args.final_num_beams or training_args.generation_num_beams or 1
    cooldown = convergence_args.lr_cooldown or None
    clock = ConvergenceCallback(
        budget_seconds=convergence_args.budget_seconds,
        patience=convergence_args.patience,
        target=convergence_args.target_bleu,
        lr_cooldown=cooldown,
        warmup_steps=convergence_args.clock_warmup_steps,
    )
    sharing = sharing_callbacks(convergence_args, clock)
    resume = resolve_resume(training_args)
    recipe = build_recipe(model_args, config, data_args, training_args, convergence_args)
    # Before anything is written: a resume that would mix two recipes is refused with the run folder untouched.
    changes = (
        check_resume_recipe(training_args.output_dir, resume, recipe, data_args.allow_recipe_change) if resume else []
    )
    if changes:
        clock.part_notes["recipe_changes"] = changes
    push = settle_push_to_hub(training_args)
    if training_args.process_index == 0:
        prepare_output_dir(training_args.output_dir, bool(resume), data_args.overwrite_output_dir)
        recipe_record = record_recipe(training_args.output_dir, recipe, changes)
    else:
        recipe_record = {"recipe": recipe, "changes": changes}
    set_seed(training_args.seed)
    with training_args.main_process_first(desc="corpus and tokenizer"):  # other ranks reuse rank 0's files
        corpus, tokenizer, data_stats = prepare_data(
            data_args, training_args.output_dir, model_args.model_name_or_path
        )
    model = build_model_for_run(model_args, config, data_args, training_args, tokenizer, resume)
    if training_args.torch_compile:
        allow_compiled_graphs(model.config, data_args.length_buckets)
    tokenized = tokenize_for_training(corpus, tokenizer, data_args, data_stats)
    extra_callbacks = [*sharing, BackskipStepCallback(), *(callbacks or [])]
    trainer = make_trainer(
        model,
        tokenizer,
        tokenized,
        training_args,
        data_args.max_tokens,
        clock,
        extra_callbacks,
        data_args.length_buckets,
        data_args.target_lang,
        convergence_args.save_interval_seconds,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    report = run_report(clock, model, trainer, train_output, sharing, data_args, data_stats, cooldown)
    report["recipe"] = recipe_record
    report.update(
        final_scores(
            trainer, tokenized, corpus, tokenizer, final_beams, convergence_args.evaluate_test, data_args.target_lang
        )
    )
    final_dir = save_outputs(trainer, tokenizer, report, training_args, push, data_args)
    if trainer.is_world_process_zero():
        print_results(report, final_dir, training_args.generation_num_beams or 1)
    report["model_dir"] = final_dir
    return report


__all__ = ["ModelArguments", "DataArguments", "ConvergenceArguments", "run_training"]
