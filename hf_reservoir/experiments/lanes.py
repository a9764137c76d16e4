"""A lane's parent: starts its arms and hands the turn round them ([`hf_reservoir.trainer.turn_taking`] is
the arm's side)."""

from __future__ import annotations

import os
import subprocess
import time

from ..trainer.turn_taking import PAUSE_FILE, _touch, _write_atomic

PARENT_POLL_SECONDS = 0.01


def _clear(lane_dir: str) -> None:
    os.makedirs(lane_dir, exist_ok=True)
    for entry in os.listdir(lane_dir):  # a lane that restarts starts clean
        os.remove(os.path.join(lane_dir, entry))


def _run_arms(commands: dict[str, list[str]], logs: dict[str, str], env, step, cores=None) -> dict:
    """Start every arm (output appended to ``logs[name]``; pinned to ``cores[name]`` where given), call
    ``step(alive, processes)`` every ``PARENT_POLL_SECONDS`` until all have exited, and kill any still running
    on the way out; returns ``{name: exit status}``. The lane schemes differ only in ``step``."""
    processes, handles = {}, {}
    try:
        for name, command in commands.items():
            handles[name] = open(logs[name], "a", encoding="utf-8")  # noqa: SIM115 - closed below
            pinned = (cores or {}).get(name)
            preexec = (lambda ids=pinned: os.sched_setaffinity(0, ids)) if pinned else None
            processes[name] = subprocess.Popen(
                command, stdout=handles[name], stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
        while True:
            alive = [name for name in commands if processes[name].poll() is None]
            if not alive:
                break
            step(alive, processes)
            time.sleep(PARENT_POLL_SECONDS)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()
        for handle in handles.values():
            handle.close()
    return {name: process.returncode for name, process in processes.items()}


def run_concurrent(
    commands: dict[str, list[str]], lane_dir: str, logs: dict[str, str], env: dict | None = None, cores=None
) -> dict:
    """Run the arms ``{name: command}`` of a concurrent lane at once; returns ``{name: exit status}``.

    Each command must start a training run with ``--lane_dir lane_dir --lane_name name --lane_sharing
    concurrent``. ``cores``: ``{name: set of CPU ids}`` to pin each arm to (Linux), so that arms do not compete
    for the same cores. The parent writes ``go`` when every arm still running is ready (see the module doc).
    """
    _clear(lane_dir)
    go = os.path.join(lane_dir, "go")

    def step(alive, processes):
        if not os.path.exists(go) and all(os.path.exists(os.path.join(lane_dir, f"{name}.ready")) for name in alive):
            _touch(go)

    return _run_arms(commands, logs, env, step, cores)


def run_lane(commands: dict[str, list[str]], lane_dir: str, logs: dict[str, str], env: dict | None = None) -> dict:
    """Run the arms ``{name: command}`` of one lane, taking turns; returns ``{name: exit status}``.

    Each command must start a training run with ``--lane_dir lane_dir --lane_name name``. Standard
    output and error of each are appended to ``logs[name]`` (a resumed run keeps its earlier log; the
    caller empties the log of a run that starts over).
    """
    _clear(lane_dir)
    turn_path, pause_path = os.path.join(lane_dir, "turn"), os.path.join(lane_dir, PAUSE_FILE)
    _write_atomic(turn_path, "")
    order = list(commands)
    holder = None
    paused = False  # the turn is withheld (a pause file): the arms wait, off their clocks

    def step(alive, processes):
        nonlocal holder, paused
        if holder is None:  # the first turn waits until every arm is built, so none trains during a build
            if not os.path.exists(pause_path) and all(
                os.path.exists(os.path.join(lane_dir, f"{name}.ready")) for name in alive
            ):
                holder = alive[0]
                _write_atomic(turn_path, holder)
        elif paused:
            if not os.path.exists(pause_path):
                paused = False
                if holder not in alive:
                    holder = _next(order, holder, alive)
                _write_atomic(turn_path, holder)
        else:
            yielded = os.path.join(lane_dir, f"{holder}.yield")
            if processes[holder].poll() is not None or os.path.exists(yielded):
                holder = _next(order, holder, alive)
                paused = os.path.exists(pause_path)  # a pause takes effect at a turn's end, never inside one
                _write_atomic(turn_path, "" if paused else holder)
                if os.path.exists(yielded):  # after the new turn is written: see TurnTakingCallback
                    os.remove(yielded)

    return _run_arms(commands, logs, env, step)


def _next(order: list[str], holder: str, alive: list[str]) -> str:
    """The next arm after ``holder`` in lane order that is still running (``holder`` itself if alone)."""
    start = order.index(holder)
    for offset in range(1, len(order) + 1):
        name = order[(start + offset) % len(order)]
        if name in alive:
            return name
    return holder
