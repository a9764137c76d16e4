"""The Trainer and what plugs into its steps: token-budget batches, the backskip step, BLEU as the metric,
the lane's turns, checkpoints on a wall-clock interval, and the best model's final scores.
"""

from __future__ import annotations

import logging
import time

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, TrainerCallback

from ..corpus.batching import BucketPadding, TokenBatchSampler
from ..evaluation.metrics import check_dataset_order, corpus_scores, decode_pairs, score_signatures, scores_by_source
from .arguments import ConvergenceArguments
from .convergence import ConvergenceCallback, TrainingClock, broadcast_from_rank_zero
from .progress import ConvergenceProgressCallback

logger = logging.getLogger(__name__)


class BackskipStepCallback(TrainerCallback):
    """Tells the encoder the Trainer's global step, which drives the backskip schedule.

    The skip decision is a function of (seed, step, layer), so with the same step on every rank
    DDP processes skip the same reservoirs (a mismatch would desynchronise them).
    """

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            model.get_encoder().set_backskip_step(state.global_step)


class ReservoirSeq2SeqTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` with optional token-budget batches.

    The optimizer is the Trainer's own: it holds only parameters with ``requires_grad=True`` (so
    reservoirs never enter it) and applies no weight decay to biases and LayerNorm weights.
    """

    def __init__(
        self,
        *args,
        max_tokens: int | None = None,
        length_buckets: list[int] | None = None,
        convergence: ConvergenceCallback | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.max_tokens, self.length_buckets = max_tokens, length_buckets
        self.convergence = convergence
        self._non_embedding_parameters: int | None = None

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's estimate (6 x input tokens x non-embedding parameters), with the parameters counted once:
        the Trainer's own version walks every module and parameter at every step, host work that a fast GPU
        step waits on."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._non_embedding_parameters is None:
            self._non_embedding_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._non_embedding_parameters

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
        # small split pad and generate about as slowly as no grouping at all.
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
        sampler = TokenBatchSampler(lengths, self.max_tokens, seed=self.args.seed, buckets=self.length_buckets)
        collator = self.data_collator
        if self.length_buckets is not None:  # fixed shapes: one per bucket
            pad_id = self.processing_class.pad_token_id
            collator = BucketPadding(collator, self.length_buckets, self.max_tokens, pad_id)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)


def build_compute_metrics(tokenizer, target_lang: str | None = None):
    """``compute_metrics`` for the Trainer: detokenise, then [`corpus_scores`] on ``target_lang`` text."""

    def compute_metrics(eval_prediction):
        hypotheses, references = decode_pairs(tokenizer, eval_prediction.predictions, eval_prediction.label_ids)
        return corpus_scores(hypotheses, references, target_lang)

    return compute_metrics


class StepDelayCallback(TrainerCallback):
    """Sleep ``seconds`` at the start of every training step, inside the clock's interval (a testing aid)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step_begin(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


class TimedSaveCallback(TrainerCallback):
    """Save a checkpoint whenever ``seconds`` of wall-clock time have passed since the last one.

    A run on a machine that may stop at any moment (a spot instance, a shared machine's working stretch) loses at
    most this much work, whatever ``save_steps`` is; the Trainer's step-based saves still happen, and each of them
    restarts the interval. Wall-clock, not the training clock: waits for a lane's turn and evaluations are lost
    too when the machine stops. It must come before the convergence clock in the Trainer's callbacks, so that the
    clock sees the step as one that ends in a save (a reading; the save itself is off the clock). Under DDP rank
    0 decides, at logging steps only (where the clock synchronises anyway), and every rank saves together.

    Args:
        seconds (`float`): the longest wall-clock interval between two checkpoints.
        time_source (`callable`): ``time.monotonic`` (tests pass a fake).
    """

    def __init__(self, seconds: float, time_source=time.monotonic):
        if not seconds > 0:
            raise ValueError(f"save_interval_seconds={seconds} must be positive, or None for step-based saves only.")
        self.seconds = seconds
        self.time_source = time_source
        self.saves = 0  # the checkpoints this callback asked for
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = self.time_source()

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # a save is due anyway
            return
        distributed = TrainingClock.distributed()
        if distributed and not control.should_log:
            return
        due = self.time_source() - self._last >= self.seconds
        if distributed:
            due = bool(broadcast_from_rank_zero(float(due)))
        if due:
            control.should_save = True
            self.saves += 1

    def on_save(self, args, state, control, **kwargs):
        self._last = self.time_source()


def sharing_callbacks(convergence_args: ConvergenceArguments, convergence: ConvergenceCallback) -> list:
    """The lane's turn-taking and the testing delay, each after the convergence clock that they depend on."""
    from .turn_taking import ConcurrentStartCallback, TurnTakingCallback

    extra = []
    if convergence_args.step_delay_seconds:
        extra.append(StepDelayCallback(convergence_args.step_delay_seconds))
    if convergence_args.lane_dir is not None and convergence_args.lane_sharing == "concurrent":
        extra.append(ConcurrentStartCallback(convergence_args.lane_dir, convergence_args.lane_name, convergence))
    elif convergence_args.lane_dir is not None:
        extra.append(
            TurnTakingCallback(
                convergence_args.lane_dir, convergence_args.lane_name, convergence, convergence_args.lane_slice_seconds
            )
        )
    return extra


def sharing_record(callbacks: list) -> dict:
    """How this run shared the machine: torch threads, and its lane's turns and waits if it had one."""
    from .turn_taking import ConcurrentStartCallback, TurnTakingCallback

    record = {"scheme": "alone", "torch_threads": torch.get_num_threads()}
    for item in callbacks:
        if isinstance(item, ConcurrentStartCallback):
            record.update(
                scheme="concurrent", lane=item.lane_dir, name=item.name, waited_seconds=round(item.waited_seconds, 3)
            )
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


def make_trainer(
    model,
    tokenizer,
    tokenized,
    training_args,
    max_tokens: int | None,
    clock,
    callbacks: list,
    length_buckets: list[int] | None = None,
    target_lang: str | None = None,
    save_interval_seconds: float | None = None,
):
    """The Trainer, with the convergence clock first (after [`TimedSaveCallback`] when ``save_interval_seconds``
    is given) and its progress bar instead of the plain one; BLEU is computed with ``target_lang``'s tokenisation
    ([`bleu_tokenize`])."""
    timed = [] if save_interval_seconds is None else [TimedSaveCallback(save_interval_seconds)]
    trainer = ReservoirSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(tokenizer, target_lang),
        callbacks=[*timed, clock, *callbacks],
        max_tokens=max_tokens,
        length_buckets=length_buckets,
        convergence=clock,
    )
    use_our_progress(trainer, clock)
    return trainer


def compiled_graphs_needed(config, length_buckets: list[int] | None) -> int | None:
    """How many graphs a compiled training step needs (None: unbounded, shapes vary from batch to batch).

    One per batch shape (one per length bucket; without buckets every padded length is a shape) and, with
    backskipping, one per skip pattern of the k encoder reservoirs (``backskip_plan``: at most 2**k).
    """
    if not length_buckets:
        return None
    patterns = 2 ** len(config.encoder_reservoir_layers) if config.backskip_mode != "exact" else 1
    return len(length_buckets) * patterns


def allow_compiled_graphs(config, length_buckets: list[int] | None) -> None:
    """Raise dynamo's recompile limit (8 graphs per function by default) to what the step needs, so that a
    compiled step with length buckets and backskipping never falls back to eager silently; without buckets
    a compiled step recompiles for new lengths, and the log says so."""
    import torch._dynamo

    needed = compiled_graphs_needed(config, length_buckets)
    if needed is None:
        logger.warning(
            "torch_compile without length_buckets: every new padded batch length compiles a new graph (dynamo "
            "falls back to eager after %d); pass --length_buckets (with --max_tokens) for fixed shapes.",
            torch._dynamo.config.recompile_limit,
        )
        return
    if needed > torch._dynamo.config.recompile_limit:
        torch._dynamo.config.recompile_limit = needed
        logger.info("torch_compile: recompile_limit raised to %d (length buckets x backskip patterns).", needed)


def use_our_progress(trainer, clock: ConvergenceCallback) -> None:
    """Replace the Trainer's progress bar with ours, which shows the clock and BLEU as well."""
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConvergenceProgressCallback(clock, show_bar=not trainer.args.disable_tqdm))


def final_scores(
    trainer, tokenized, corpus, tokenizer, beams: int, evaluate_test: bool, target_lang: str | None = None
) -> dict:
    """The best model's validation (and test, overall and per source) scores with ``beams`` beams, and sacrebleu's
    signatures of the scores."""
    scores = {
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "final_num_beams": beams,
        "signature": score_signatures(target_lang),
    }
    validation = trainer.evaluate(tokenized["validation"], metric_key_prefix="final_validation", num_beams=beams)
    scores["validation"] = {k.removeprefix("final_validation_"): v for k, v in validation.items()}
    if evaluate_test:
        # One generation pass over the test split serves the overall and the per-source scores.
        test = trainer.predict(tokenized["test"], metric_key_prefix="test", num_beams=beams)
        scores["test"] = {k.removeprefix("test_"): v for k, v in test.metrics.items()}
        if "source" in corpus["test"].column_names:
            check_dataset_order(test.label_ids, tokenized["test"]["labels"], tokenizer.pad_token_id)
            hypotheses, references = decode_pairs(tokenizer, test.predictions, test.label_ids)
            scores["test_by_source"] = scores_by_source(hypotheses, references, corpus["test"]["source"], target_lang)
    return scores


__all__ = ["ReservoirSeq2SeqTrainer", "BackskipStepCallback", "make_trainer", "final_scores"]
