"""The paper's comparison (Table 1, Figure 1): a grid of runs and a report built from their files.

A grid has models x updatable-layer counts N x seeds. Every run gets the same data, tokenizer,
optimizer, schedule and stopping rule (a wall-clock budget T-hat, or patience); only the encoder differs:

* ``regular``: N updatable encoder layers; ``regular_deep``: N + k (the paper's comparison at equal depth);
* ``transformer``, ``ffn``, ``bigru``, ``cnn``: N updatable + k reservoir layers (alternating rule);
* ``layerdrop``: N + k updatable layers with LayerDrop ``k / (N + k)`` (the paper's baseline),
  so that N layers are active on average;
* ``<type>-identity`` / ``<type>-learned``: reservoirs with backskipping.

Each run is ``python -m hf_reservoir.cli train`` in its own process; a run whose ``results.json`` exists is
skipped and an unfinished one resumes from its last checkpoint, so an interrupted sweep goes on where it
stopped. The report ([`hf_reservoir.sweep_report`]) reads only the run folders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ..models.reservoir_marian.configuration_reservoir import (
    RESERVOIR_TYPES as RESERVOIR_MODELS,  # every reservoir type is a model
)
from ..utils.config_keys import dataclass_from_yaml
from ..utils.run_folder import (
    CONVERGENCE_FILE,
    CONVERGENCE_PLOT,
    RECIPE_FILE,
    RESULTS_FILE,
    TRAIN_LOG,
    last_checkpoint,
)


def split_model(model: str) -> tuple[str, str | None]:
    """``"transformer-identity"`` -> ``("transformer", "identity")``; ``"ffn"`` -> ``("ffn", None)``.

    A label after ``@`` names a copy of the same model (``"regular@b"``: the A/A measurement) and is ignored here.
    """
    base, dash, backskip = model.partition("@")[0].partition("-")
    return base, backskip if dash else None


SHARING_SCHEMES = ("sequential", "lanes", "concurrent")


@dataclass
class SweepConfig:
    """A grid. ``train_config`` is a training YAML/JSON; ``train_overrides`` apply to every run."""

    train_config: str
    # Where the runs train (their checkpoints included). It may name environment variables, as
    # "${HF_RESERVOIR_RUNS}/depth_gate", so that runs of many hours live outside the repository, where a reset of
    # the work tree does not reach them, and resume from there.
    output_dir: str
    models: list[str] = field(default_factory=lambda: ["regular", "transformer", "ffn", "layerdrop"])
    updatable_layers: list[int] = field(default_factory=lambda: [2, 4])
    reservoir_layers: int = 2
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    budget_seconds: float | None = 600.0
    train_overrides: dict = field(default_factory=dict)
    # Per model (as listed in models): flags for that model's runs only, e.g. a slowed arm in a test.
    model_overrides: dict = field(default_factory=dict)
    # How runs share the machine (hf_reservoir/experiments/lanes.py): "sequential", one run at a time with every core;
    # or "lanes", where the models of one N and seed take turns on threads_per_lane threads, parallel_lanes
    # lanes at a time, so that the arms of one comparison see the same machine; or "concurrent", where they
    # train at the same time (one GPU shared), each pinned to its own threads_per_lane cores, and start their
    # clocks together after clock_warmup_steps (a train_overrides entry).
    sharing: str = "sequential"
    parallel_lanes: int = 2
    threads_per_lane: int = 1
    slice_seconds: float = 10.0
    # The report: BLEU targets as fractions of regular N's mean peak; AUCC up to aucc_seconds (default:
    # budget_seconds, else the shortest run of that N, so that every run of a group is integrated alike).
    target_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9])
    # Fixed BLEU targets besides the fractions, e.g. the target every run stops at (train's --target_bleu): the
    # report names them "BLEU <value>".
    target_bleu: list[float] = field(default_factory=list)
    aucc_seconds: float | None = None
    # Where the report (table.md, summary.json, plots) goes; default: the folder of the sweep's config file.
    # A folder holding another sweep's report is refused (hf_reservoir.sweep_report.check_report_dir).
    report_dir: str | None = None
    # Which models share a lane: {lane name: [models]}; default, all models of one N and seed in one lane.
    lanes: dict | None = None
    # Where each finished run's record (results.json, convergence.json and .png, recipe.json, train.log; not its
    # checkpoints or model) is copied as soon as it finishes, e.g. a folder under results/ to commit; the report
    # reads the runs from here, and a cell recorded here counts as finished even where output_dir was lost.
    collect_dir: str | None = None
    # The model every other is compared with (paired differences, ratios, targets); default: regular if
    # listed, else the first model.
    reference_model: str | None = None

    def __post_init__(self):
        for model in self.models:
            base, backskip = split_model(model)
            if base not in ("regular", "regular_deep", "layerdrop", *RESERVOIR_MODELS) or (
                backskip is not None and (base not in RESERVOIR_MODELS or backskip not in ("identity", "learned"))
            ):
                raise ValueError(
                    f"models contains {model!r}; use regular, regular_deep, layerdrop, "
                    f"{', '.join(RESERVOIR_MODELS)}, or a reservoir type with -identity/-learned for backskipping "
                    "(and @label for a copy)."
                )
        if self.budget_seconds is not None and self.budget_seconds <= 0:
            raise ValueError(f"budget_seconds={self.budget_seconds} must be positive, or null for no budget.")
        if self.sharing not in SHARING_SCHEMES:
            raise ValueError(f"sharing={self.sharing!r}; use one of {', '.join(SHARING_SCHEMES)}.")
        if len(set(self.models)) != len(self.models):
            raise ValueError(
                f"models {self.models} lists a model twice; name copies apart, e.g. regular@a, regular@b."
            )
        unknown = sorted(set(self.model_overrides) - set(self.models))
        if unknown:
            raise ValueError(f"model_overrides names {unknown}, which are not in models {self.models}.")
        if self.lanes is not None:
            listed = [m for members in self.lanes.values() for m in members]
            if sorted(listed) != sorted(self.models):
                raise ValueError(f"lanes {self.lanes} must place each of models {self.models} in exactly one lane.")
        if self.reference_model is not None and self.reference_model not in self.models:
            raise ValueError(f"reference_model={self.reference_model!r} is not in models {self.models}.")
        if self.parallel_lanes < 1 or self.threads_per_lane < 1 or self.slice_seconds <= 0:
            raise ValueError(
                f"parallel_lanes={self.parallel_lanes}, threads_per_lane={self.threads_per_lane} and "
                f"slice_seconds={self.slice_seconds} must be positive."
            )

    def training_dir(self) -> str:
        """``output_dir`` with its environment variables expanded; an unset variable is refused."""
        expanded = os.path.expandvars(self.output_dir)
        if "$" in expanded:
            raise ValueError(
                f"output_dir={self.output_dir!r} names an environment variable that is not set; set it to a folder "
                "outside the repository, e.g. export HF_RESERVOIR_RUNS=$HOME/hf-reservoir-runs."
            )
        return expanded

    @property
    def record_dir(self) -> str:
        """Where the report reads the runs: ``collect_dir`` if set, else the runs themselves."""
        return self.collect_dir if self.collect_dir is not None else self.training_dir()

    @classmethod
    def load(cls, path: str) -> SweepConfig:
        return dataclass_from_yaml(cls, path, "The keys are SweepConfig's fields (hf_reservoir/experiments/sweep.py).")


@dataclass(frozen=True)
class Cell:
    model: str
    updatable: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-N{self.updatable}-seed{self.seed}"


def lane_of(config: SweepConfig, cell: Cell) -> str:
    """The lane of a cell (sharing "lanes"): its lane's name in ``config.lanes``, per N and seed."""
    group = ""
    if config.lanes is not None:
        group = next(name for name, members in config.lanes.items() if cell.model in members) + "-"
    return f"{group}N{cell.updatable}-seed{cell.seed}"


def reference_model(config: SweepConfig) -> str:
    if config.reference_model is not None:
        return config.reference_model
    return "regular" if "regular" in config.models else config.models[0]


def lane_reference(config: SweepConfig, model: str) -> str:
    """The model that ``model``'s ratios are taken against: the reference model, or, when a ``lanes`` mapping
    puts ``model`` in a lane without it, the reference's copy in that lane (``regular@b``), so that a ratio is
    always taken between runs that took turns in one lane."""
    reference = reference_model(config)
    if config.lanes is None:
        return reference
    members = next(members for members in config.lanes.values() if model in members)
    if reference in members:
        return reference
    copies = [m for m in members if m != model and m.partition("@")[0] == reference]
    return copies[0] if copies else reference


def cells(config: SweepConfig) -> list[Cell]:
    return [Cell(m, n, s) for n in config.updatable_layers for m in config.models for s in config.seeds]


def cell_arguments(config: SweepConfig, cell: Cell) -> list[str]:
    """The ``train.py`` flags of one run."""
    k = config.reservoir_layers
    overrides = dict(config.train_overrides)
    overrides.update(
        output_dir=os.path.join(config.output_dir, cell.name),
        seed=cell.seed,
        reservoir_seed=cell.seed,
        overwrite_output_dir=True,  # a cell without results.json starts over
    )
    if config.budget_seconds is not None:
        overrides["budget_seconds"] = config.budget_seconds
    base, backskip = split_model(cell.model)
    if base == "regular":
        overrides.update(encoder_layers=cell.updatable, num_encoder_reservoir_layers=0)
    elif base == "regular_deep":  # the paper's comparison at equal total depth
        overrides.update(encoder_layers=cell.updatable + k, num_encoder_reservoir_layers=0)
    elif base == "layerdrop":
        overrides.update(
            encoder_layers=cell.updatable + k,
            num_encoder_reservoir_layers=0,
            encoder_layerdrop=round(k / (cell.updatable + k), 4),
        )
    else:
        overrides.update(encoder_layers=cell.updatable + k, num_encoder_reservoir_layers=k, reservoir_type=base)
        if backskip is not None:
            overrides["backskip_mode"] = backskip
    overrides.update(config.model_overrides.get(cell.model, {}))
    argv = [config.train_config]
    for key, value in overrides.items():
        if isinstance(value, str):  # e.g. data_path: ${HF_RESERVOIR_RUNS}/data/de-en, beside the runs
            value = os.path.expandvars(value)
        argv += [f"--{key}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return argv


def finished(config: SweepConfig, cell: Cell) -> bool:
    return any(
        os.path.exists(os.path.join(root, cell.name, RESULTS_FILE))
        for root in (config.output_dir, config.collect_dir)
        if root is not None
    )


RECORD_FILES = (RESULTS_FILE, CONVERGENCE_FILE, CONVERGENCE_PLOT, RECIPE_FILE, TRAIN_LOG)


def collect_finished(config: SweepConfig, grid: list[Cell]) -> list[str]:
    """Copy the record of every finished run of ``grid`` from ``output_dir`` into ``collect_dir`` (if set and not
    there yet); returns the names of the runs copied."""
    import shutil

    if config.collect_dir is None:
        return []
    copied = []
    for cell in grid:
        source, target = os.path.join(config.output_dir, cell.name), os.path.join(config.collect_dir, cell.name)
        if not os.path.exists(os.path.join(source, RESULTS_FILE)) or os.path.exists(
            os.path.join(target, RESULTS_FILE)
        ):
            continue
        os.makedirs(target, exist_ok=True)
        for name in RECORD_FILES:  # results.json last: a copy cut short does not count as finished
            if name != RESULTS_FILE and os.path.exists(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), os.path.join(target, name))
        shutil.copy2(os.path.join(source, RESULTS_FILE), os.path.join(target, RESULTS_FILE))
        copied.append(cell.name)
    return copied


def train_command(config: SweepConfig, cell: Cell, python: str = sys.executable) -> list[str]:
    """The run's command; an unfinished run with a complete checkpoint resumes from it (clock and curve too)."""
    command = [python, "-m", "hf_reservoir.cli", "train", *cell_arguments(config, cell)]
    if last_checkpoint(os.path.join(config.output_dir, cell.name)):
        command += ["--resume_from_checkpoint", "last"]
    return command


def open_log(config: SweepConfig, cell: Cell, command: list[str]):
    """The run's ``train.log`` (its folder made): emptied for a fresh start, appended to after a marker line when
    resuming."""
    run_dir = os.path.join(config.output_dir, cell.name)
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, TRAIN_LOG)
    resuming = "--resume_from_checkpoint" in command
    log = open(path, "a" if resuming else "w", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    if resuming:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        log.write(f"\n[hf-reservoir sweep] {stamp}: resuming {cell.name} from its last checkpoint\n")
        log.flush()
    return log


def run_cell(config: SweepConfig, cell: Cell, python: str = sys.executable) -> str:
    """Run one cell unless its ``results.json`` exists; returns ``done``, ``skipped`` or ``failed``."""
    if finished(config, cell):
        return "skipped"
    command = train_command(config, cell, python)
    with open_log(config, cell, command) as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    return "done" if process.returncode == 0 else "failed"


def pinned_cores(
    names: list[str], config: SweepConfig, slot: int = 0, available: list[int] | None = None
) -> dict[str, set[int]] | None:
    """Each arm of a concurrent lane its own ``threads_per_lane`` cores, in turn from the cores this process may
    use, starting after the cores of the lanes in the slots before ``slot`` (lanes that run side by side hold
    different slots, so they never share a core); None (no pinning) where the machine has too few cores for that or
    cannot pin (not Linux)."""
    if available is None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        available = sorted(os.sched_getaffinity(0))
    width = config.threads_per_lane
    first = slot * width * len(names)
    if len(available) < first + width * len(names):
        return None
    return {name: set(available[first + i * width : first + (i + 1) * width]) for i, name in enumerate(names)}


def run_lane_cells(
    config: SweepConfig, lane: list[Cell], python: str = sys.executable, slot: int = 0
) -> dict[Cell, str]:
    """Run the unfinished cells of one lane together, taking turns ([`hf_reservoir.sharing`]).

    Finished cells are skipped; the unfinished ones start again together, each from its last checkpoint
    (or from scratch without one), so an interrupted lane goes on as a lane.
    """
    from .lanes import run_concurrent, run_lane

    todo = [cell for cell in lane if not finished(config, cell)]
    statuses = {cell: "skipped" for cell in lane if cell not in todo}
    if not todo:
        return statuses
    lane_dir = os.path.join(config.output_dir, "lanes", lane_of(config, lane[0]))
    concurrent = config.sharing == "concurrent"
    commands, logs = {}, {}
    for cell in todo:
        command = train_command(config, cell, python)
        with open_log(config, cell, command) as log:  # empties or marks it; run_lane appends to it
            logs[cell.name] = log.name
        commands[cell.name] = command + [
            "--lane_dir", lane_dir, "--lane_name", cell.name, "--lane_slice_seconds", str(config.slice_seconds),
            "--lane_sharing", "concurrent" if concurrent else "turns",
        ]  # fmt: skip
    threads = str(config.threads_per_lane)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if concurrent:
        codes = run_concurrent(commands, lane_dir, logs, env=env, cores=pinned_cores(list(commands), config, slot))
    else:
        codes = run_lane(commands, lane_dir, logs, env=env)
    for cell in todo:
        statuses[cell] = "done" if codes[cell.name] == 0 else "failed"
    return statuses


def run_sweep(config: SweepConfig, grid: list[Cell], report=print) -> list[str]:
    """Run the cells of ``grid`` under the config's sharing scheme; returns the names of failed cells. Each
    finished run's record is copied into ``collect_dir`` as it finishes."""
    from dataclasses import replace

    config = replace(config, output_dir=config.training_dir())
    for name in collect_finished(config, grid):
        report(f"{name}: finished earlier; its record copied into {config.collect_dir}")
    failed = []
    if config.sharing == "sequential":
        for index, cell in enumerate(grid, start=1):
            status = run_cell(config, cell)
            collect_finished(config, [cell])
            report(f"[{index}/{len(grid)}] {cell.name}: {status}")
            if status == "failed":
                failed.append(cell.name)
        return failed
    import queue
    from concurrent.futures import ThreadPoolExecutor

    lanes: dict[str, list[Cell]] = {}
    for cell in grid:
        lanes.setdefault(lane_of(config, cell), []).append(cell)
    slots: queue.Queue[int] = queue.Queue()  # a lane holds a slot (its own cores) while it runs, then frees it
    for slot in range(config.parallel_lanes):
        slots.put(slot)

    def run_in_a_free_slot(lane: list[Cell]) -> dict[Cell, str]:
        slot = slots.get()
        try:
            return run_lane_cells(config, lane, slot=slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=config.parallel_lanes) as pool:
        for name, statuses in zip(lanes, pool.map(run_in_a_free_slot, lanes.values())):
            collect_finished(config, list(statuses))
            for cell, status in statuses.items():
                report(f"[lane {name}] {cell.name}: {status}")
                if status == "failed":
                    failed.append(cell.name)
    return failed
