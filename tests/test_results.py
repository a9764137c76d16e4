"""The committed reports rebuild from their committed run files (issue #23's acceptance: one command per report).

A change to the report code that alters a committed table fails here, before a fresh clone's rebuild would show it.
Tables and summaries are compared byte for byte; the plots are rebuilt but not compared (their bytes depend on the
installed matplotlib).
"""

import glob
import json
import os
import re

import pytest

from hf_reservoir.experiments.report_render import build_report
from hf_reservoir.experiments.slow_start import build_slow_start_report
from hf_reservoir.experiments.sweep import SweepConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = [
    "sweep_cpu",
    "backskip_cpu",
    "convergence_cpu",
    "convergence_cpu/aa",
    "convergence_cpu/deep_lr",
    "series_cpu",
    "series_cpu/data_limit",
    "depth_gate_cpu/d128",
]
SLOW_STARTS = [
    ("slow_start_cpu/slow_starts.yaml", "slow_start_cpu"),
    ("series_cpu/lr_check.yaml", "series_cpu/lr_check"),
    ("series_cpu/slow_starts.yaml", "series_cpu/slow_start"),
]


def _same(committed: str, rebuilt: str) -> None:
    with open(committed, encoding="utf-8") as a, open(rebuilt, encoding="utf-8") as b:
        assert a.read() == b.read(), f"{os.path.relpath(committed, ROOT)} no longer rebuilds from its run files"


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name their run folders relative to the repository root


@pytest.mark.parametrize("folder", SWEEPS)
def test_committed_sweep_report_rebuilds_identically(folder, tmp_path, in_root):
    config = SweepConfig.load(os.path.join("results", folder, "sweep.yaml"))
    build_report(config, str(tmp_path))
    for name in ("table.md", "summary.json"):
        _same(os.path.join(ROOT, "results", folder, name), str(tmp_path / name))


@pytest.mark.parametrize("config,folder", SLOW_STARTS)
def test_committed_slow_start_report_rebuilds_identically(config, folder, tmp_path, in_root):
    build_slow_start_report(os.path.join("results", config), str(tmp_path))
    for name in ("slow_starts.md", "slow_starts.json"):
        _same(os.path.join(ROOT, "results", folder, name), str(tmp_path / name))


def test_committed_probe_table_rebuilds_from_its_json():
    from hf_reservoir.analysis.probing.report import markdown

    with open(os.path.join(ROOT, "results", "probing", "probe.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    with open(os.path.join(ROOT, "results", "probing", "probe.md"), encoding="utf-8") as handle:
        assert handle.read() == markdown(report), "results/probing/probe.md no longer rebuilds from probe.json"


# A figure quoted in prose must be the generated one: every "mean [low, high]" interval quoted in the README, the
# results record or a results folder's README must appear, all three numbers alike, in a generated table.
QUOTED = re.compile(r"(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]")
GENERATED = (
    QUOTED,  # a rate or a benchmark ratio with its interval
    re.compile(r"\| (-?\d+\.\d+) \| \[(-?\d+\.\d+), (-?\d+\.\d+)\] \|"),  # the interval tables
    re.compile(r"(-?\d+\.\d+) ± \d+\.\d+ \[(-?\d+\.\d+), (-?\d+\.\d+)\]"),  # the backskip table
)
PROSE = ["README.md", "docs/results.md", *sorted(glob.glob("results/**/README.md", root_dir=ROOT, recursive=True))]


def _generated_intervals() -> set[tuple[str, str, str]]:
    found = set()
    for path in glob.glob(os.path.join(ROOT, "results", "**", "*.md"), recursive=True):
        if os.path.basename(path) == "README.md":
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for pattern in GENERATED:
            found.update(pattern.findall(text))
    return found


@pytest.mark.parametrize("document", PROSE)
def test_every_quoted_interval_is_a_generated_one(document):
    with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
        prose = " ".join(handle.read().split())
    generated = _generated_intervals()
    stray = [f"{m} [{a}, {b}]" for m, a, b in QUOTED.findall(prose) if (m, a, b) not in generated]
    assert not stray, f"{document} quotes intervals that no generated table holds: {stray}"


@pytest.mark.parametrize("folder", ["demo", "demo_fr"])
def test_the_readme_quotes_the_main_jobs_committed_figures(folder):
    with open(os.path.join(ROOT, "results", folder, "results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme[readme.index("### What the main job measured") : readme.index("## The command line")]
    conv = results["convergence"]
    for figure in (
        f"{results['validation']['bleu']:.2f}",
        f"{results['validation']['chrf']:.2f}",
        f"{results['test']['bleu']:.2f}",
        f"{conv['peak_bleu']:.2f}",
        f"{conv['train_seconds']:.0f} s",
        f"{1 / conv['seconds_per_step']:.2f} steps/s",
    ):
        assert figure in section, f"the README's main-job table lacks {figure} from results/{folder}/results.json"
