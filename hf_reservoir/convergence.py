"""Wall-clock time to peak validation BLEU and the paper's AUCC, as a Trainer callback.

The paper's claim (section 5) is about *training* wall-clock: reservoir models reach their
best validation BLEU sooner. :class:`ConvergenceCallback` is the one clock for that claim; the
training script, the sweep report, the model card and the tests all read it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState, ProgressCallback
from transformers.trainer_utils import SaveStrategy


def aucc(curve: list[tuple[float, float]], budget_seconds: float) -> float:
    """Area under a BLEU vs training-seconds curve up to ``budget_seconds``, in BLEU x seconds.

    The paper's AUCC (section 5.1). Our choices, where the paper is vague: the curve starts at
    (0 s, 0 BLEU), the untrained model; points are joined by the trapezoid rule; a segment that
    crosses the budget is interpolated at the budget; the last value is held to the budget.

    Args:
        curve (`list[tuple[float, float]]`): ``(train_seconds, bleu)`` points, in time order.
        budget_seconds (`float`): T-hat, the upper limit of the integral.

    Returns:
        `float`: the area in BLEU x seconds.

    Example:
        >>> aucc([(10.0, 20.0)], 20.0)  # ramp 0 -> 20 over 10 s, then 20 held for 10 s
        300.0
    """
    if budget_seconds <= 0:
        raise ValueError(f"budget_seconds={budget_seconds} must be positive.")
    points = [(0.0, 0.0)] + [(float(t), float(b)) for t, b in curve]
    area = 0.0
    for (t0, b0), (t1, b1) in zip(points, points[1:]):
        if t0 >= budget_seconds:
            break
        if t1 > budget_seconds:
            b1 = b0 + (b1 - b0) * (budget_seconds - t0) / (t1 - t0)
            t1 = budget_seconds
        area += (t1 - t0) * (b0 + b1) / 2
    last_t, last_b = points[-1]
    if last_t < budget_seconds:
        area += (budget_seconds - last_t) * last_b
    return area


def time_to_target(evaluations: list[dict], target: float) -> dict | None:
    """The first evaluation that reached ``target`` BLEU (MLPerf's time to quality), or None.

    Args:
        evaluations (`list[dict]`): a :class:`ConvergenceRecord`'s evaluations, in time order.
        target (`float`): the BLEU to reach.

    Returns:
        `dict | None`: ``{"train_seconds", "step", "bleu"}`` of that evaluation, or None if none reached it.

    Example:
        >>> curve = [{"train_seconds": 10.0, "step": 5, "bleu": 1.0}, {"train_seconds": 20.0, "step": 9, "bleu": 3.0}]
        >>> time_to_target(curve, 2.0)
        {'train_seconds': 20.0, 'step': 9, 'bleu': 3.0}
    """
    for evaluation in evaluations:
        if evaluation["bleu"] >= target:
            return {key: evaluation[key] for key in ("train_seconds", "step", "bleu")}
    return None


@dataclass
class ConvergenceRecord:
    """What the callback measured; serialised into ``convergence.json`` and the TrainerState."""

    evaluations: list[dict] = field(default_factory=list)  # {train_seconds, step, epoch, bleu, ...}
    epoch_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    epochs: float = 0.0  # epochs trained (fractional), from TrainerState.epoch
    steps: int = 0  # optimizer steps trained, from TrainerState.global_step
    budget_seconds: float | None = None
    stopped_by: str | None = None
    # One entry per training process (a resumed run has several): the step and clock it started from, its
    # wall-clock interval (Unix seconds; ``ended`` is None for a process that was interrupted), and, in a lane,
    # the lane's folder, so that a report can tell which runs trained side by side.
    parts: list[dict] = field(default_factory=list)

    @property
    def peak(self) -> dict | None:
        """The first evaluation that reached the highest BLEU."""
        return max(self.evaluations, key=lambda e: e["bleu"], default=None)

    def summary(self) -> dict:
        """Peak BLEU, time and step at peak, time per epoch and AUCC (raw and divided by T-hat)."""
        peak = self.peak
        horizon = self.budget_seconds or self.train_seconds
        curve = [(e["train_seconds"], e["bleu"]) for e in self.evaluations]
        area = aucc(curve, horizon) if curve and horizon > 0 else 0.0
        return {
            "peak_bleu": peak["bleu"] if peak else None,
            "time_to_peak_seconds": peak["train_seconds"] if peak else None,
            "step_at_peak": peak["step"] if peak else None,
            "epoch_at_peak": peak["epoch"] if peak else None,
            "train_seconds": self.train_seconds,
            # Training seconds over (fractional) epochs trained: a run that stops mid-epoch counts it pro rata.
            "seconds_per_epoch": self.train_seconds / self.epochs if self.epochs else None,
            "epochs_trained": self.epochs,
            "steps_trained": self.steps,
            "seconds_per_step": self.train_seconds / self.steps if self.steps else None,
            "aucc_budget_seconds": horizon,
            "aucc_bleu_hours": area / 3600.0,
            "aucc_normalized": area / horizon if horizon else 0.0,
            "num_evaluations": len(self.evaluations),
            "stopped_by": self.stopped_by,
        }


class ConvergenceCallback(TrainerCallback, ExportableState):
    """Times training wall-clock to peak validation BLEU and computes the AUCC.

    The clock counts **training** seconds only: it runs from ``on_step_begin`` to
    ``on_step_end`` plus the data loading between two steps, and any interval in which an
    evaluation (including generation), a checkpoint save or logging happened is excluded.
    At every evaluation it records ``(train_seconds, step, epoch, bleu)``.

    Its state is exported into ``TrainerState.stateful_callbacks`` with every checkpoint, and it
    reads it back at ``on_train_begin`` when a run resumes, so the clock and the curve continue.
    Under DDP the clock and the budget decision of rank 0 are broadcast every step, so every rank
    stops together. Rank 0 writes ``convergence.json`` and ``convergence.png`` at the end.

    Args:
        metric_name (`str`): the evaluation metric to follow, as the Trainer logs it.
        budget_seconds (`float`, *optional*): T-hat. Training stops once this many training seconds
            have passed (after one last evaluation), and the AUCC integrates up to it.
        patience (`int`, *optional*): stop after this many evaluations without a new peak.
        lr_cooldown (`float`, *optional*): a learning-rate cool-down tied to the stopping rule. Over the last
            fraction ``lr_cooldown`` of training the Trainer's schedule is multiplied by a factor that falls
            linearly from 1 to 0 where training ends (Li et al., 2020, "Budgeted Training": decaying to zero
            exactly at the budget beats schedules that do not know it). With ``budget_seconds`` the window is
            measured on the training clock, which makes the weights depend on the machine's speed; without it,
            on the Trainer's ``max_steps``, which is the same on every machine. It needs a ``LambdaLR`` schedule
            (every ``lr_scheduler_type`` but ``reduce_lr_on_plateau`` and ``greedy``). Under DDP every rank
            uses rank 0's clock.
        output_dir (`str`, *optional*): where to write the JSON and the plot; the Trainer's
            ``output_dir`` if unset.
        clock (`callable`): the time source, ``time.perf_counter`` (tests pass a fake).
    """

    def __init__(
        self,
        metric_name: str = "eval_bleu",
        budget_seconds: float | None = None,
        patience: int | None = None,
        output_dir: str | None = None,
        clock=time.perf_counter,
        lr_cooldown: float | None = None,
    ):
        if budget_seconds is not None and budget_seconds <= 0:
            raise ValueError(f"budget_seconds={budget_seconds} must be positive, or None for no budget.")
        if patience is not None and patience < 1:
            raise ValueError(f"patience={patience} must be at least 1, or None for no patience stop.")
        if lr_cooldown is not None:
            if not 0 < lr_cooldown <= 1:
                raise ValueError(
                    f"lr_cooldown={lr_cooldown} must be a fraction of the budget in (0, 1], e.g. 0.3 for the "
                    "last 30%, or 0 (None) for no cool-down."
                )
        self.lr_cooldown = lr_cooldown
        self.metric_name = metric_name
        self.budget_seconds = budget_seconds
        self.patience = patience
        self.output_dir = output_dir
        self.clock = clock
        self.record = ConvergenceRecord(budget_seconds=budget_seconds)
        self._mark: float | None = None
        self._paused = False
        self._epoch_start = 0.0
        self._synced_seconds = 0.0  # the clock as every rank agreed on it at the last step end
        self._scheduler = None  # the LambdaLR that lr_cooldown multiplies
        self._max_steps = 0  # the step-based cool-down's end (TrainerState.max_steps)

    # -- TrainerState export ----------------------------------------------------------------
    def state(self) -> dict:
        return {
            "args": {
                "metric_name": self.metric_name,
                "budget_seconds": self.budget_seconds,
                "patience": self.patience,
                "lr_cooldown": self.lr_cooldown,
            },
            "attributes": {"record": asdict(self.record), "_epoch_start": self._epoch_start},
        }

    def _restore(self, state) -> None:
        saved = state.stateful_callbacks.get(type(self).__name__)
        if not saved or state.global_step == 0:
            return
        saved = saved[0] if isinstance(saved, list) else saved
        self.record = ConvergenceRecord(**saved["attributes"]["record"])
        self.record.budget_seconds = self.budget_seconds
        self.record.stopped_by = None
        self._epoch_start = saved["attributes"].get("_epoch_start", 0.0)

    # -- clock --------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = self.clock()
        if self._mark is not None and not self._paused:
            self.record.train_seconds += now - self._mark
        self._mark = now
        self._paused = False

    def _sync(self, stop: bool) -> bool:
        """Rank 0's clock and stop decision on every rank (a no-op without torch.distributed)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return stop
        import torch

        payload = torch.tensor([self.record.train_seconds, float(stop)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            payload = payload.cuda()
        dist.broadcast(payload, src=0)
        self.record.train_seconds = float(payload[0])
        return bool(payload[1])

    def lr_factor(self) -> float:
        """The cool-down's multiplier of the learning rate now: 1 before the cool-down, 0 where training ends.

        On the training clock when there is a budget, else on the step count: the factor for the next step
        is ``(max_steps - steps_done) / (lr_cooldown * max_steps)``, clipped to [0, 1].
        """
        if self.lr_cooldown is None:
            return 1.0
        if self.budget_seconds is not None:
            remaining, total = self.budget_seconds - self._synced_seconds, self.budget_seconds
        else:
            remaining, total = self._max_steps - self._scheduler.last_epoch, self._max_steps
        return min(1.0, max(0.0, remaining / (self.lr_cooldown * total)))

    def _install_cooldown(self, lr_scheduler) -> None:
        import torch

        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's AcceleratedScheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ValueError(
                f"lr_cooldown needs a LambdaLR learning-rate schedule to multiply, but the Trainer's is "
                f"{type(scheduler).__name__}; choose another lr_scheduler_type (e.g. inverse_sqrt or linear), "
                "or drop lr_cooldown."
            )
        self._scheduler = scheduler

    def _refresh_lr(self) -> None:
        """Set the next step's learning rate: the schedule's rate times the cool-down factor.

        The Trainer steps the scheduler just before ``on_step_end``; this overrides the rate it set with
        the same schedule multiplied by :meth:`lr_factor`, computed from the clock every rank just agreed
        on. The scheduler itself is left as it is, so its ``state_dict()`` checkpoints as usual.
        """
        scheduler = self._scheduler
        factor = self.lr_factor()
        rates = [
            base * schedule(scheduler.last_epoch) * factor
            for base, schedule in zip(scheduler.base_lrs, scheduler.lr_lambdas)
        ]
        for group, rate in zip(scheduler.optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = rates  # what get_last_lr() (and so the Trainer's log) reports

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self._restore(state)
        self.record.parts.append(
            {"from_step": state.global_step, "clock": self.record.train_seconds, "started": time.time(), "ended": None}
        )
        self._synced_seconds = self.record.train_seconds
        if self.lr_cooldown is not None:
            if lr_scheduler is None:
                raise ValueError("lr_cooldown needs the Trainer's lr_scheduler, but the callback was given none.")
            if self.budget_seconds is None and not (state.max_steps and state.max_steps > 0):
                raise ValueError(
                    f"lr_cooldown={self.lr_cooldown} decays the learning rate to 0 where training ends, but neither "
                    "budget_seconds nor max_steps says where that is; set one of them, or drop lr_cooldown."
                )
            self._max_steps = state.max_steps
            self._install_cooldown(lr_scheduler)
            self._refresh_lr()  # a run resumed inside the cool-down window continues it from its first step
        self._mark = self.clock()
        self._paused = False

    def on_step_begin(self, args, state, control, **kwargs):
        self._tick()

    def on_step_end(self, args, state, control, **kwargs):
        self._tick()
        self.record.epochs = float(state.epoch or 0.0)
        self.record.steps = state.global_step
        over_budget = self.budget_seconds is not None and self.record.train_seconds >= self.budget_seconds
        stop = self._sync(over_budget)
        self._synced_seconds = self.record.train_seconds
        if self._scheduler is not None:
            self._refresh_lr()
        if stop:
            self.record.stopped_by = "budget"
            control.should_training_stop = True
            control.should_evaluate = True  # the curve ends with a point at (or just past) T-hat
            # ...and a checkpoint, so that the last state can be the best model and is never lost.
            control.should_save = args.save_strategy != SaveStrategy.NO

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_start = self.record.train_seconds

    def on_epoch_end(self, args, state, control, **kwargs):
        self._tick()
        if state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-6:  # not a stop mid-epoch
            self.record.epoch_seconds.append(self.record.train_seconds - self._epoch_start)

    def _pause(self) -> None:
        self._paused = True

    def skip_interval(self) -> None:
        """Leave the time since the clock's last reading off the clock (e.g. a wait for a lane's turn)."""
        self._mark = self.clock()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._pause()
        if not metrics or self.metric_name not in metrics:
            return
        previous_peak = self.record.peak
        entry = {
            "train_seconds": self.record.train_seconds,
            "step": state.global_step,
            "epoch": state.epoch,
            "bleu": float(metrics[self.metric_name]),
        }
        for key in ("eval_chrf", "eval_loss", "eval_runtime"):
            if key in metrics:
                entry[key.removeprefix("eval_")] = float(metrics[key])
        self.record.evaluations.append(entry)
        if self.patience is not None and previous_peak is not None:
            since_peak = len(self.record.evaluations) - 1 - self.record.evaluations.index(self.record.peak)
            if since_peak >= self.patience:
                self.record.stopped_by = self.record.stopped_by or "patience"
                control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        self._pause()

    def on_log(self, args, state, control, **kwargs):
        self._pause()

    def on_train_end(self, args, state, control, **kwargs):
        if self.record.stopped_by is None and state.max_steps and state.global_step >= state.max_steps:
            # Not the budget or patience: the Trainer's own end, a fixed amount of work.
            self.record.stopped_by = "max_steps" if args.max_steps and args.max_steps > 0 else "num_train_epochs"
        if self.record.parts:
            self.record.parts[-1]["ended"] = time.time()
        if state.is_world_process_zero:
            self.write(self.output_dir or args.output_dir)

    def figures_for_log(self, bleu: float) -> dict[str, float]:
        """The clock's figures as of an evaluation that scored ``bleu``, for the Trainer's log.

        The Trainer logs an evaluation's metrics before ``on_evaluate`` reaches this callback, so the
        evaluation being logged is included here by hand. Every ``report_to`` integration (TensorBoard,
        W&B, ...) then shows them beside ``eval_bleu``.
        """
        now = {"train_seconds": self.record.train_seconds, "step": None, "epoch": None, "bleu": bleu}
        summary = replace(self.record, evaluations=[*self.record.evaluations, now]).summary()
        return {
            "eval_convergence/train_seconds": self.record.train_seconds,
            "eval_convergence/bleu": bleu,
            "eval_convergence/peak_bleu": summary["peak_bleu"],
            "eval_convergence/time_to_peak_seconds": summary["time_to_peak_seconds"],
            "eval_convergence/aucc_normalized": summary["aucc_normalized"],
        }

    # -- outputs ------------------------------------------------------------------------------
    def summary(self) -> dict:
        return self.record.summary()

    def write(self, output_dir: str) -> str:
        """Write ``convergence.json`` and ``convergence.png`` into ``output_dir``; return the JSON path."""
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "convergence.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"summary": self.summary(), **asdict(self.record)}, handle, indent=2)
            handle.write("\n")
        plot_curves(
            {"run": self.record.evaluations},
            os.path.join(output_dir, "convergence.png"),
            budget_seconds=self.budget_seconds,
        )
        return path


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
        if state.is_world_process_zero and self.convergence.record.evaluations:
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


@contextlib.contextmanager
def line_plot(path: str, xlabel: str, ylabel: str):
    """Yield a matplotlib axis; on exit add the grid and legend and save a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    try:
        yield axis
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def plot_curves(curves: dict[str, list[dict]], path: str, budget_seconds: float | None = None) -> None:
    """Plot validation BLEU against training wall-clock minutes, one line per curve."""
    with line_plot(path, "training wall-clock (minutes, evaluation excluded)", "validation BLEU") as axis:
        for label, evaluations in curves.items():
            xs = [0.0] + [e["train_seconds"] / 60 for e in evaluations]
            ys = [0.0] + [e["bleu"] for e in evaluations]
            axis.plot(xs, ys, marker="o", markersize=3, label=label)
        if budget_seconds and not math.isinf(budget_seconds):
            axis.axvline(budget_seconds / 60, color="grey", linestyle="--", linewidth=1, label="budget T̂")
