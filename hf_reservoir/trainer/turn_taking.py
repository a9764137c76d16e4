"""Sharing one CPU core between the arms of a comparison: interleaved slices (a *lane*).

A wall-clock comparison of two models measures the machine as much as the models when the runs
happen at different times: machines here change speed by ±30% from day to day and are shared. In
a lane, the arms of one comparison run as separate training processes that **take turns** on the
same core(s): one trains for a slice of ``slice_seconds`` of its training clock, then hands the
turn to the next arm that is still running, and so on round the lane. Drift and load that last
longer than a few slices hit every arm alike; the time an arm waits for its turn is off its
training clock, as evaluation is. An arm evaluates, saves and, at the end, scores its best model
while it holds the turn, so no other arm of its lane trains at the same time.

Why not two arms concurrently, one thread each? Once one arm stops (patience), the other trains
alone on a quieter machine, and two processes on neighbouring cores still compete for memory
bandwidth in ways that depend on the pair. Turn-taking has neither problem; its cost is a cold
cache after each switch, which the A/A measurement in ``results/`` bounds.

The protocol is files in a lane folder, driven by [`run_lane`] (the parent) and
[`TurnTakingCallback`] (in each training process):

* ``<arm>.ready``: the arm reached ``on_train_begin`` (data and model built) and waits;
* ``turn``: the name of the arm that may train now (written atomically by the parent);
* ``<arm>.yield``: the arm finished a slice and waits; the parent passes the turn, then removes it.

The parent hands out the first turn once every arm is ready (or has exited), and passes the turn
when the holder yields or its process ends. While a ``pause`` file exists in the lane folder the parent hands the
turn to no one at the next turn change, and every arm waits off its clock until the file is removed
(``touch OUTPUT_DIR/lanes/*/pause`` makes room for other work on the cores without touching the comparison).

**Concurrent lanes** (``lane_sharing concurrent``, the sweep's ``sharing: concurrent``) are for a GPU, where one
run uses a fraction of the device: the arms train at the same time, each on its own CPU cores
([`run_concurrent`] pins them), and the concurrency is the pairing: drift hits every arm alike. Each arm
trains its ``clock_warmup_steps`` off the clock, writes ``<arm>.ready`` and waits; the parent writes ``go``
once every arm still running is ready, and every clock starts then. Concurrency has the bias the turn-taking
lanes avoid: once one arm stops, the others train on a quieter device. The report shows each run's interval,
so a reader sees when an arm trained alone.
"""

from __future__ import annotations

import os
import time

from transformers import TrainerCallback

# How often a waiting arm reads the turn file, and the parent the yield files. At 5 ms each waiting arm
# used about 1.5% of a core (measured: ten waiting arms, 13.6% of one core), which the lane's training arm
# pays for; at 20 ms the cost is a quarter of that, and a turn changes hands at most 20 ms late (0.2% of a
# 10-second slice).
POLL_SECONDS = 0.02


# A file of this name in a lane folder pauses the lane at its next turn change: no arm gets the turn, every arm
# waits off its clock, so other work can have the cores without the lane's clocks counting it; removing the file
# hands the turn on. (Stopping the processes instead would leave the time of the stop on the clock of the arm that
# held the turn.)
PAUSE_FILE = "pause"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _touch(path: str) -> None:
    with open(path, "w", encoding="utf-8"):
        pass


class TurnTakingCallback(TrainerCallback):
    """Train only while this arm holds its lane's turn; hand the turn on every ``slice_seconds``.

    Args:
        lane_dir (`str`): the lane folder shared with the other arms and the parent ([`run_lane`]).
        name (`str`): this arm's name in the lane.
        convergence (`ConvergenceCallback`): whose clock must not count the waits.
        slice_seconds (`float`): training seconds per turn.
    """

    def __init__(self, lane_dir: str, name: str, convergence, slice_seconds: float = 10.0):
        if slice_seconds <= 0:
            raise ValueError(f"lane_slice_seconds={slice_seconds} must be positive, e.g. 10.")
        self.lane_dir, self.name, self.convergence, self.slice_seconds = lane_dir, name, convergence, slice_seconds
        self._slice_start = 0.0
        self.waited_seconds = 0.0
        self.turns = 0
        # [start, end] in Unix seconds of every turn this arm held while training: the lane's history, from
        # which a test checks that no two arms of a lane ever trained at the same time.
        self.turn_intervals: list[list[float]] = []

    def _path(self, suffix: str) -> str:
        return os.path.join(self.lane_dir, f"{self.name}.{suffix}")

    def _wait_for_turn(self) -> None:
        start = time.perf_counter()
        turn, yielded = os.path.join(self.lane_dir, "turn"), self._path("yield")
        # The parent passes the turn on, then removes the yield file: until that file is gone, "turn" may
        # still name this arm from before it yielded.
        while os.path.exists(yielded) or _read(turn) != self.name:
            time.sleep(POLL_SECONDS)
        self.waited_seconds += time.perf_counter() - start
        self.turns += 1
        self.turn_intervals.append([time.time(), None])
        self.convergence.skip_interval()  # the wait is not training time
        self._slice_start = self.convergence.record.train_seconds

    def _end_turn(self) -> None:
        if self.turn_intervals and self.turn_intervals[-1][1] is None:
            self.turn_intervals[-1][1] = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.convergence.record.parts:  # the clock's entry for this process: which lane it trained in
            self.convergence.record.parts[-1]["lane"] = self.lane_dir
        _touch(self._path("ready"))
        self._wait_for_turn()

    def on_step_end(self, args, state, control, **kwargs):
        if self.convergence.record.train_seconds - self._slice_start >= self.slice_seconds:
            self._end_turn()
            _touch(self._path("yield"))
            self._wait_for_turn()

    def on_train_end(self, args, state, control, **kwargs):
        self._end_turn()  # it keeps the turn for its final scores, but trains no more


class ConcurrentStartCallback(TrainerCallback):
    """Start the clock together with the other arms of a concurrent lane, after this arm's warm-up steps."""

    def __init__(self, lane_dir: str, name: str, convergence):
        self.lane_dir, self.name, self.convergence = lane_dir, name, convergence
        self.waited_seconds = 0.0

    def _wait_for_go(self) -> None:
        start = time.perf_counter()
        _touch(os.path.join(self.lane_dir, f"{self.name}.ready"))
        while not os.path.exists(os.path.join(self.lane_dir, "go")):
            time.sleep(POLL_SECONDS)
        self.waited_seconds += time.perf_counter() - start
        self.convergence.skip_interval()  # the wait is not training time

    def on_train_begin(self, args, state, control, **kwargs):
        if self.convergence.record.parts:
            self.convergence.record.parts[-1]["lane"] = self.lane_dir
        if state.global_step >= self.convergence.warmup_steps:  # no warm-up (left): wait before the first step
            self._wait_for_go()

    def on_step_end(self, args, state, control, **kwargs):
        if self.convergence.warmup_steps and state.global_step == self.convergence.warmup_steps:
            self._wait_for_go()
