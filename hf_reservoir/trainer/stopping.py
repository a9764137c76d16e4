"""When training stops, and the learning-rate cool-down tied to that stop.

Both read the training clock ([`hf_reservoir.trainer.convergence.ConvergenceCallback`]), which composes them:
the clock measures, [`StoppingRules`] decide, [`LrCooldown`] scales the learning rate.
"""

from __future__ import annotations

import math


def check_cooldown_end(lr_cooldown: float | None, budget_seconds: float | None, max_steps: int | None) -> None:
    """A cool-down decays the learning rate to 0 where training ends: something must say where that is."""
    if lr_cooldown and budget_seconds is None and not (max_steps and max_steps > 0):
        raise ValueError(
            f"lr_cooldown={lr_cooldown} decays the learning rate to 0 where training ends, but neither "
            "budget_seconds nor max_steps says where that is; set max_steps (the same on every machine) or "
            "budget_seconds (wall-clock), or drop lr_cooldown."
        )


class StoppingRules:
    """The budget, patience and target stops.

    Args:
        budget_seconds (`float`, *optional*): T-hat: stop once this many training seconds have passed.
        patience (`int`, *optional*): stop after this many evaluations without a new peak.
        target (`float`, *optional*): stop at the first evaluation whose score reaches this value (MLPerf's
            time to target: the run's answer is the training time at that evaluation).
    """

    def __init__(self, budget_seconds: float | None = None, patience: int | None = None, target: float | None = None):
        if budget_seconds is not None and budget_seconds <= 0:
            raise ValueError(f"budget_seconds={budget_seconds} must be positive, or None for no budget.")
        if patience is not None and patience < 1:
            raise ValueError(f"patience={patience} must be at least 1, or None for no patience stop.")
        if target is not None and not math.isfinite(target):
            raise ValueError(f"target={target} must be a finite score, or None for no target stop.")
        self.budget_seconds = budget_seconds
        self.patience = patience
        self.target = target

    def over_budget(self, train_seconds: float) -> bool:
        """Whether the clock (as every rank agreed on it) has reached the budget."""
        return self.budget_seconds is not None and train_seconds >= self.budget_seconds

    def reached_target(self, bleu_curve: list[float]) -> bool:
        """Whether the last evaluation of ``bleu_curve`` reached the target score."""
        return self.target is not None and bool(bleu_curve) and bleu_curve[-1] >= self.target

    def verdict(self, bleu_curve: list[float]) -> str | None:
        """Which rule stops training after the evaluations so far: ``target``, ``patience`` or None."""
        if self.reached_target(bleu_curve):
            return "target"
        return "patience" if self.out_of_patience(bleu_curve) else None

    def out_of_patience(self, bleu_curve: list[float]) -> bool:
        """Whether the last ``patience`` evaluations of ``bleu_curve`` brought no new peak (the first one that
        reached the highest BLEU is the peak)."""
        if self.patience is None or len(bleu_curve) < 2:
            return False
        since_peak = len(bleu_curve) - 1 - bleu_curve.index(max(bleu_curve))
        return since_peak >= self.patience


class LrCooldown:
    """A learning-rate cool-down tied to the stopping rule.

    Over the last fraction ``fraction`` of training the Trainer's schedule is multiplied by a factor that
    falls linearly from 1 to 0 where training ends (Li et al., 2020, "Budgeted Training": decaying to zero
    exactly at the budget beats schedules that do not know it). With a budget the window is measured on the
    training clock, which makes the weights depend on the machine's speed; without it, on the Trainer's
    ``max_steps``, which is the same on every machine. It needs a ``LambdaLR`` schedule (every
    ``lr_scheduler_type`` but ``reduce_lr_on_plateau`` and ``greedy``). Under DDP every rank uses rank 0's clock.

    Args:
        fraction (`float`): the cool-down's share of training, in (0, 1].
        rules ([`StoppingRules`], *optional*): the run's stopping rules; their budget, if training stops on the
            clock, is where the cool-down ends (read from them, not copied).
    """

    def __init__(self, fraction: float, rules: StoppingRules | None = None):
        if not 0 < fraction <= 1:
            raise ValueError(
                f"lr_cooldown={fraction} must be a fraction of the budget in (0, 1], e.g. 0.3 for the last 30%, "
                "or 0 (None) for no cool-down."
            )
        self.fraction = fraction
        self.rules = rules or StoppingRules()
        self.scheduler = None  # the LambdaLR that the factor multiplies
        self.max_steps = 0  # the step-based cool-down's end (TrainerState.max_steps)

    @property
    def budget_seconds(self) -> float | None:
        """The stopping rules' budget (None: the cool-down ends at ``max_steps``)."""
        return self.rules.budget_seconds

    def install(self, lr_scheduler, max_steps: int | None) -> None:
        """Attach to the Trainer's scheduler at the start of training."""
        import torch

        if lr_scheduler is None:
            raise ValueError("lr_cooldown needs the Trainer's lr_scheduler, but the callback was given none.")
        check_cooldown_end(self.fraction, self.budget_seconds, max_steps)
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's AcceleratedScheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ValueError(
                f"lr_cooldown needs a LambdaLR learning-rate schedule to multiply, but the Trainer's is "
                f"{type(scheduler).__name__}; choose another lr_scheduler_type (e.g. inverse_sqrt or linear), "
                "or drop lr_cooldown."
            )
        self.scheduler, self.max_steps = scheduler, max_steps or 0

    def factor(self, train_seconds: float) -> float:
        """The multiplier of the learning rate now: 1 before the cool-down, 0 where training ends.

        On the training clock when there is a budget, else on the step count: the factor for the next step
        is ``(max_steps - steps_done) / (fraction * max_steps)``, clipped to [0, 1].
        """
        if self.budget_seconds is not None:
            remaining, total = self.budget_seconds - train_seconds, self.budget_seconds
        else:
            remaining, total = self.max_steps - self.scheduler.last_epoch, self.max_steps
        return min(1.0, max(0.0, remaining / (self.fraction * total)))

    def refresh(self, train_seconds: float) -> None:
        """Set the next step's learning rate: the schedule's rate times [`factor`].

        The Trainer steps the scheduler just before ``on_step_end``; this overrides the rate it set with the
        same schedule multiplied by the factor, computed from the clock every rank just agreed on. The
        scheduler itself is left as it is, so its ``state_dict()`` checkpoints as usual.
        """
        scheduler, factor = self.scheduler, self.factor(train_seconds)
        rates = [
            base * schedule(scheduler.last_epoch) * factor
            for base, schedule in zip(scheduler.base_lrs, scheduler.lr_lambdas)
        ]
        for group, rate in zip(scheduler.optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = rates  # what get_last_lr() (and so the Trainer's log) reports
