"""The committed reports rebuild from their committed run files (issue #23's acceptance: one command per report).

A change to the report code that alters a committed table fails here, before a fresh clone's rebuild would show it.
Tables and summaries are compared byte for byte; the plots are rebuilt but not compared (their bytes depend on the
installed matplotlib).
"""

import os

import pytest

from hf_reservoir.slow_start import build_slow_start_report
from hf_reservoir.sweep import SweepConfig
from hf_reservoir.sweep_report import build_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = [
    "sweep_cpu",
    "backskip_cpu",
    "convergence_cpu",
    "convergence_cpu/aa",
    "convergence_cpu/deep_lr",
    "series_cpu",
    "series_cpu/data_limit",
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
