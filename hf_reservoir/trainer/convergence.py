"""Wall-clock time to peak validation BLEU and the paper's AUCC, as a Trainer callback.

The paper's claim (section 5) is about *training* wall-clock: reservoir models reach their
best validation BLEU sooner. [`ConvergenceCallback`] is the one clock for that claim; the
training script, the sweep report, the model card and the tests all read it.

It composes three parts, each its own object: the [`TrainingClock`] (training seconds: steps and the data loading
between them; evaluation, saving and logging excluded), the [`~hf_reservoir.trainer.stopping.StoppingRules`]
(budget, patience, target) and the optional [`~hf_reservoir.trainer.stopping.LrCooldown`]. At every evaluation it
records ``(train_seconds, step, epoch, bleu)`` in a [`ConvergenceRecord`]. The record travels in
``TrainerState.stateful_callbacks`` with every checkpoint and is read back on resume, so the clock and the curve
continue. The clock waits for the device, and under DDP broadcasts rank 0's reading, only at steps that end in a
log, an evaluation, a save or the stop (*readings*; no per-step sync); under DDP the budget and the cool-down act at
those readings, so every rank stops together. Rank 0 writes ``convergence.json`` and ``convergence.png`` at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import SaveStrategy

from ..utils.run_folder import CONVERGENCE_FILE, CONVERGENCE_PLOT, write_run_file
from .stopping import LrCooldown, StoppingRules


def aucc(curve: list[tuple[float, float]], horizon_seconds: float) -> float:
    """Area under a BLEU vs training-seconds curve up to ``horizon_seconds``, in BLEU x seconds.

    The paper's AUCC (section 5.1). Our choices, where the paper is vague: the curve starts at
    (0 s, 0 BLEU), the untrained model; points are joined by the trapezoid rule; a segment that
    crosses the budget is interpolated at the budget; the last value is held to the budget.

    Args:
        curve (`list[tuple[float, float]]`): ``(train_seconds, bleu)`` points, in time order.
        horizon_seconds (`float`): T-hat, the upper limit of the integral.

    Returns:
        `float`: the area in BLEU x seconds.

    Example:
        >>> aucc([(10.0, 20.0)], 20.0)  # ramp 0 -> 20 over 10 s, then 20 held for 10 s
        300.0
    """
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds={horizon_seconds} must be positive.")
    points = [(0.0, 0.0)] + [(float(t), float(b)) for t, b in curve]
    area = 0.0
    for (t0, b0), (t1, b1) in zip(points, points[1:]):
        if t0 >= horizon_seconds:
            break
        if t1 > horizon_seconds:
            b1 = b0 + (b1 - b0) * (horizon_seconds - t0) / (t1 - t0)
            t1 = horizon_seconds
        area += (t1 - t0) * (b0 + b1) / 2
    last_t, last_b = points[-1]
    if last_t < horizon_seconds:
        area += (horizon_seconds - last_t) * last_b
    return area


def time_to_target(evaluations: list[dict], target: float) -> dict | None:
    """The first evaluation that reached ``target`` BLEU (MLPerf's time to quality), or None.

    Args:
        evaluations (`list[dict]`): a [`ConvergenceRecord`]'s evaluations, in time order.
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
    stopped_by: str | None = None
    # One entry per training process (a resumed run has several): the step and clock it started from, its
    # wall-clock interval (Unix seconds; ``ended`` is None for a process that was interrupted), and, in a lane,
    # the lane's folder, so that a report can tell which runs trained side by side.
    parts: list[dict] = field(default_factory=list)

    @classmethod
    def from_saved(cls, saved: dict) -> ConvergenceRecord:
        """The record a checkpoint's callback state holds, ready to go on (its stop cleared)."""
        record = dict(saved)
        record.pop("budget_seconds", None)  # checkpoints written before the budget lived only in the rules
        return cls(**{**record, "stopped_by": None})

    def begin_part(self, step: int, notes: dict) -> None:
        """A training process starts (at ``step``): open its entry in ``parts``."""
        self.parts.append(
            {"from_step": step, "clock": self.train_seconds, "started": time.time(), "ended": None, **notes}
        )

    def add_evaluation(self, step: int, epoch: float | None, metrics: dict, metric_name: str) -> None:
        """Record an evaluation at the clock's current reading (BLEU, and chrF, loss and runtime when logged)."""
        entry = {
            "train_seconds": self.train_seconds,
            "step": step,
            "epoch": epoch,
            "bleu": float(metrics[metric_name]),
        }
        entry.update(
            {
                k.removeprefix("eval_"): float(metrics[k])
                for k in ("eval_chrf", "eval_loss", "eval_runtime")
                if k in metrics
            }
        )
        self.evaluations.append(entry)

    @property
    def peak(self) -> dict | None:
        """The first evaluation that reached the highest BLEU."""
        return max(self.evaluations, key=lambda e: e["bleu"], default=None)

    def summary(self, budget_seconds: float | None = None) -> dict:
        """Peak BLEU, time and step at peak, time per epoch and AUCC (raw and divided by T-hat).

        T-hat, AUCC's horizon, is the budget when training had one, else the training time
        (``aucc_horizon`` says which).
        """
        peak = self.peak
        horizon = budget_seconds or self.train_seconds
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
            "aucc_horizon_seconds": horizon,
            "aucc_horizon": "budget" if budget_seconds else "training time",
            "aucc_bleu_hours": area / 3600.0,
            "aucc_normalized": area / horizon if horizon else 0.0,
            "num_evaluations": len(self.evaluations),
            "stopped_by": self.stopped_by,
        }

    def write(self, output_dir: str, budget_seconds: float | None = None) -> str:
        """Write ``convergence.json`` and ``convergence.png`` into ``output_dir``; return the JSON path."""
        os.makedirs(output_dir, exist_ok=True)
        path = write_run_file(output_dir, CONVERGENCE_FILE, {"summary": self.summary(budget_seconds), **asdict(self)})
        plot_curves({"run": self.evaluations}, os.path.join(output_dir, CONVERGENCE_PLOT), budget_seconds)
        return path

    def figures_for_log(self, bleu: float, budget_seconds: float | None = None) -> dict[str, float]:
        """The clock's figures as of an evaluation that scored ``bleu``, for the Trainer's log.

        The Trainer logs an evaluation's metrics before ``on_evaluate`` reaches this callback, so the
        evaluation being logged is included here by hand. Every ``report_to`` integration (TensorBoard,
        W&B, ...) then shows them beside ``eval_bleu``.
        """
        now = {"train_seconds": self.train_seconds, "step": None, "epoch": None, "bleu": bleu}
        summary = replace(self, evaluations=[*self.evaluations, now]).summary(budget_seconds)
        return {
            "eval_convergence/train_seconds": self.train_seconds,
            "eval_convergence/bleu": bleu,
            "eval_convergence/peak_bleu": summary["peak_bleu"],
            "eval_convergence/time_to_peak_seconds": summary["time_to_peak_seconds"],
            "eval_convergence/aucc_normalized": summary["aucc_normalized"],
        }


def synchronize_device() -> None:
    """Wait for the CUDA device's queued work, if CUDA is in use (a no-op on the CPU)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def broadcast_from_rank_zero(value: float) -> float:
    """Rank 0's ``value`` on every torch.distributed rank (a collective: every rank must call it at the same step)."""
    import torch
    import torch.distributed as dist

    payload = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        payload = payload.cuda()
    dist.broadcast(payload, src=0)
    return float(payload[0])


class TrainingClock:
    """Training seconds: the time between ticks, except intervals marked as paused or skipped.

    Args:
        time_source (`callable`): ``time.perf_counter`` (tests pass a fake).
    """

    def __init__(self, time_source=time.perf_counter):
        self.time_source = time_source
        self.seconds = 0.0
        self._mark: float | None = None
        self._paused = False

    def start(self, seconds: float) -> None:
        """Start (or continue, after a resume) from ``seconds``."""
        self.seconds, self._mark, self._paused = seconds, self.time_source(), False

    def tick(self, wait_for_device: bool = False) -> float:
        """Add the time since the last tick, unless an evaluation, a save or a log happened in between.

        ``wait_for_device``: first wait for the accelerator's queued work (``torch.cuda.synchronize``), so that
        the steps' kernels are counted here, not in the evaluation or save that follows. Ticks between such
        readings do not wait (no per-step sync): the host runs ahead of the device by at most its queue, and
        the next waiting tick charges what is still queued to the training clock.
        """
        if wait_for_device:
            synchronize_device()
        now = self.time_source()
        if self._mark is not None and not self._paused:
            self.seconds += now - self._mark
        self._mark, self._paused = now, False
        return self.seconds

    def pause(self) -> None:
        """Leave the interval up to the next tick off the clock (evaluation, saving, logging)."""
        self._paused = True

    def skip_interval(self) -> None:
        """Leave the time since the last reading off the clock (e.g. a wait for a lane's turn)."""
        self._mark = self.time_source()

    @staticmethod
    def distributed() -> bool:
        """Whether this is one of several torch.distributed processes (DDP)."""
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def sync(self) -> float:
        """Rank 0's seconds on every rank (a no-op without torch.distributed), so that every rank stops, and
        cools the learning rate down, on the same reading."""
        if self.distributed():
            self.seconds = broadcast_from_rank_zero(self.seconds)
        return self.seconds


def is_reading(state, control) -> bool:
    """Whether the step that just ended is a clock *reading*: one the Trainer ends with a log, an evaluation, a save
    or the stop. The clock waits for the device at a reading (the pause that follows must not absorb queued training
    work) and, under DDP, takes rank 0's value; other steps neither wait nor communicate. Under DDP the budget and the
    cool-down act on readings only, so that every rank decides on the same value: a run stops at the first reading
    past T-hat, and the cool-down's rate moves once per logging interval."""
    reading = control.should_log or control.should_evaluate or control.should_save or control.should_training_stop
    return bool(reading or (state.max_steps > 0 and state.global_step >= state.max_steps))


class ConvergenceCallback(TrainerCallback, ExportableState):
    """The one clock of the paper's claim: training wall-clock to peak validation BLEU, and the AUCC (the module's
    docstring says how its parts fit together).

    Args:
        metric_name (`str`): the evaluation metric to follow, as the Trainer logs it.
        budget_seconds (`float`, *optional*): T-hat. Training stops once this many training seconds
            have passed (after one last evaluation), and the AUCC integrates up to it.
        patience (`int`, *optional*): stop after this many evaluations without a new peak.
        target (`float`, *optional*): stop at the first evaluation whose score reaches this value.
        lr_cooldown (`float`, *optional*): the fraction of training over which the learning rate falls to 0
            where training ends (see [`~hf_reservoir.trainer.stopping.LrCooldown`]).
        output_dir (`str`, *optional*): where to write the JSON and the plot; the Trainer's
            ``output_dir`` if unset.
        clock (`callable`): the time source, ``time.perf_counter`` (tests pass a fake).
        warmup_steps (`int`): the first steps train off the clock (one-time costs: compilation, CUDA graph
            capture, allocator growth); the clock starts at 0 after them.
    """

    def __init__(
        self,
        metric_name: str = "eval_bleu",
        budget_seconds: float | None = None,
        patience: int | None = None,
        output_dir: str | None = None,
        clock=time.perf_counter,
        lr_cooldown: float | None = None,
        warmup_steps: int = 0,
        target: float | None = None,
    ):
        self.warmup_steps = warmup_steps
        self.rules = StoppingRules(budget_seconds, patience, target)
        self.cooldown = LrCooldown(lr_cooldown, self.rules) if lr_cooldown is not None else None
        self.clock = TrainingClock(clock)
        self.metric_name = metric_name
        self.output_dir = output_dir
        self.record = ConvergenceRecord()
        self._epoch_start = 0.0
        # Facts its entry in the record's ``parts`` carries (a resume's recipe changes: the step they took effect).
        self.part_notes: dict = {}

    def state(self) -> dict:
        rules, cooldown = self.rules, self.cooldown.fraction if self.cooldown else None
        args = {"metric_name": self.metric_name, "budget_seconds": self.budget_seconds, "lr_cooldown": cooldown}
        args.update(patience=rules.patience, target=rules.target, warmup_steps=self.warmup_steps)
        return {"args": args, "attributes": {"record": asdict(self.record), "_epoch_start": self._epoch_start}}

    def _restore(self, state) -> None:
        saved = state.stateful_callbacks.get(type(self).__name__)
        if not saved or state.global_step == 0:
            return
        saved = saved[0] if isinstance(saved, list) else saved
        self.record = ConvergenceRecord.from_saved(saved["attributes"]["record"])
        self._epoch_start = saved["attributes"].get("_epoch_start", 0.0)

    @property
    def budget_seconds(self) -> float | None:
        """T-hat, as the stopping rules hold it."""
        return self.rules.budget_seconds

    def lr_factor(self) -> float:
        """The cool-down's multiplier of the learning rate now (1 without a cool-down)."""
        return self.cooldown.factor(self.record.train_seconds) if self.cooldown else 1.0

    def skip_interval(self) -> None:
        """Leave the time since the clock's last reading off the clock (e.g. a wait for a lane's turn)."""
        self.clock.skip_interval()

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self._restore(state)
        self.record.begin_part(state.global_step, self.part_notes)
        if self.cooldown is not None:
            self.cooldown.install(lr_scheduler, state.max_steps)
            self.cooldown.refresh(self.record.train_seconds)  # a resume inside the window continues it
        self.clock.start(self.record.train_seconds)

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step < self.warmup_steps:  # a warm-up step: trained, but off the clock
            self.clock.skip_interval()
            return
        self.record.train_seconds = self.clock.tick()

    def on_step_end(self, args, state, control, **kwargs):
        reading = is_reading(state, control)
        if state.global_step <= self.warmup_steps:
            if state.global_step == self.warmup_steps:
                synchronize_device()  # the warm-up's queued work stays off the clock too
            self.clock.skip_interval()
        else:
            self.clock.tick(wait_for_device=reading)
        self.record.epochs = float(state.epoch or 0.0)
        self.record.steps = state.global_step
        if not reading and self.clock.distributed():
            self.record.train_seconds = self.clock.seconds
            return
        self.record.train_seconds = self.clock.sync()
        if self.cooldown is not None:
            self.cooldown.refresh(self.record.train_seconds)
        if self.rules.over_budget(self.record.train_seconds):
            if not reading:  # the stop makes this step a reading: count the device's queued work too
                self.record.train_seconds = self.clock.tick(wait_for_device=True)
            self.record.stopped_by = "budget"
            # The curve ends with a point at (or just past) T-hat, and a checkpoint, so that the last state can be
            # the best model and is never lost.
            control.should_training_stop = control.should_evaluate = True
            control.should_save = args.save_strategy != SaveStrategy.NO

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_start = self.record.train_seconds

    def on_epoch_end(self, args, state, control, **kwargs):
        self.record.train_seconds = self.clock.tick()
        if state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-6:  # not a stop mid-epoch
            self.record.epoch_seconds.append(self.record.train_seconds - self._epoch_start)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.clock.pause()
        if not metrics or self.metric_name not in metrics:
            return
        self.record.add_evaluation(state.global_step, state.epoch, metrics, self.metric_name)
        verdict = self.rules.verdict([e["bleu"] for e in self.record.evaluations])
        if verdict:
            self.record.stopped_by = self.record.stopped_by or verdict
            control.should_training_stop = True
            if verdict == "target":  # the state at the target is kept
                control.should_save = args.save_strategy != SaveStrategy.NO

    def on_save(self, args, state, control, **kwargs):
        self.clock.pause()

    def on_log(self, args, state, control, **kwargs):
        self.clock.pause()

    def on_train_end(self, args, state, control, **kwargs):
        if self.record.stopped_by is None and state.max_steps and state.global_step >= state.max_steps:
            # Not the budget or patience: the Trainer's own end, a fixed amount of work.
            self.record.stopped_by = "max_steps" if args.max_steps and args.max_steps > 0 else "num_train_epochs"
        if self.record.parts:
            self.record.parts[-1]["ended"] = time.time()
        if state.is_world_process_zero:
            self.record.write(self.output_dir or args.output_dir, self.budget_seconds)

    def summary(self) -> dict:
        return self.record.summary(self.budget_seconds)

    def figures_for_log(self, bleu: float) -> dict[str, float]:
        """The record's [`ConvergenceRecord.figures_for_log`] under this run's budget."""
        return self.record.figures_for_log(bleu, self.budget_seconds)


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
