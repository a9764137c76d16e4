"""Run the paper's comparison grid and build its report.

    python training/sweep.py results/sweep_cpu/sweep.yaml             # run every cell, then report
    python training/sweep.py results/sweep_cpu/sweep.yaml --list      # the cells
    python training/sweep.py results/sweep_cpu/sweep.yaml --cell regular-N2-seed1   # one cell (clusters)
    python training/sweep.py results/sweep_cpu/sweep.yaml --report-only

Finished cells (with results.json) are skipped, so an interrupted sweep resumes.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.sweep import SweepConfig, build_report, cells, run_cell  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the sweep YAML")
    parser.add_argument("--list", action="store_true", help="print the cells and stop")
    parser.add_argument("--cell", action="append", help="run only this cell (repeatable)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the run folders")
    parser.add_argument("--report-dir", default=None, help="where the table and plots go (default: next to config)")
    args = parser.parse_args(argv)
    try:
        config = SweepConfig.load(args.config)
    except (ValueError, TypeError) as error:
        print(f"error: {args.config}: {error}", file=sys.stderr)
        return 2
    grid = cells(config)
    if args.list:
        print("\n".join(c.name for c in grid))
        return 0
    if args.cell:
        unknown = sorted(set(args.cell) - {c.name for c in grid})
        if unknown:
            print(f"error: unknown cells {unknown}; see --list.", file=sys.stderr)
            return 2
        grid = [c for c in grid if c.name in args.cell]
    failed = []
    if not args.report_only:
        for index, cell in enumerate(grid, start=1):
            status = run_cell(config, cell)
            print(f"[{index}/{len(grid)}] {cell.name}: {status}", flush=True)
            if status == "failed":
                failed.append(cell.name)
    report_dir = args.report_dir or os.path.dirname(os.path.abspath(args.config))
    print(build_report(config, report_dir))
    if failed:
        print(f"error: failed cells {failed}; see their train.log.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
