"""Run the paper's comparison grid and build its report.

    python training/sweep.py results/sweep_cpu/sweep.yaml             # run every cell, then report
    python training/sweep.py results/sweep_cpu/sweep.yaml --list      # the cells
    python training/sweep.py results/sweep_cpu/sweep.yaml --cell regular-N2-seed1   # one cell (clusters)
    python training/sweep.py results/sweep_cpu/sweep.yaml --report_only

Finished cells (with results.json) are skipped, so an interrupted sweep resumes. A shim over
``hf-reservoir sweep``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
