"""The training progress bar: steps, the training clock and BLEU, as the run stops on them."""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback

from .convergence import ConvergenceCallback


class ConvergenceProgressCallback(ProgressCallback):
    """The Trainer's progress bar, showing what the run stops on: steps, the training clock and BLEU.

    The bar counts optimizer steps toward ``max_steps`` (the Trainer's own stop); its suffix shows the
    training clock (with the budget, when there is one), steps per second and the best validation BLEU
    so far. Every evaluation also writes one line, so a log without the bar (``disable_tqdm``) shows
    the same progress.

    Args:
        convergence (`ConvergenceCallback`): the clock and curve to show.
        show_bar (`bool`): draw the tqdm bar (else only the evaluation lines).
    """

    def __init__(self, convergence: ConvergenceCallback, show_bar: bool = True):
        super().__init__()
        self.convergence = convergence
        self.show_bar = show_bar
        self.shown_evaluations = 0  # curve points already written: the final scoring's evaluations add none

    def status(self, state) -> str:
        record = self.convergence.record
        clock = f"training {record.train_seconds:.0f} s"
        if self.convergence.budget_seconds is not None:
            clock += f" of {self.convergence.budget_seconds:.0f} s"
        steps_per_second = record.steps / record.train_seconds if record.train_seconds > 0 else 0.0
        text = f"step {state.global_step}/{state.max_steps}, {clock}, {steps_per_second:.2f} steps/s"
        peak = record.peak
        if peak is not None:
            text += f", BLEU {record.evaluations[-1]['bleu']:.2f} (best {peak['bleu']:.2f} at step {peak['step']})"
        return text

    def _write(self, line: str) -> None:
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line, flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0
        if self.show_bar:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is None:
            return
        super().on_step_end(args, state, control, **kwargs)
        if state.global_step % 10 == 0:
            self.training_bar.set_postfix_str(self.status(state).split(", ", 1)[1], refresh=False)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.show_bar:
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_evaluate(self, args, state, control, **kwargs):
        super().on_evaluate(args, state, control, **kwargs)
        points = len(self.convergence.record.evaluations)
        if state.is_world_process_zero and points > self.shown_evaluations:
            self.shown_evaluations = points
            self._write(f"[hf-reservoir] {self.status(state)}")
            self._show_status(state)

    def _show_status(self, state) -> None:
        """The bar's suffix as of now (the last evaluation included), drawn at once."""
        if self.training_bar is not None:
            self.training_bar.set_postfix_str(self.status(state).split(", ", 1)[1], refresh=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.show_bar:
            super().on_log(args, state, control, logs=logs, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            # The bar's last line shows the final figures (the evaluation at the last step), not step % 10's.
            self._show_status(state)
            super().on_train_end(args, state, control, **kwargs)
