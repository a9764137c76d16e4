"""``hf-reservoir push``: export a trained model and upload it to the Hub."""

from __future__ import annotations

import argparse
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-reservoir", description="hf-reservoir command line")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="export a trained model folder and upload it to the Hub")
    push.add_argument("model_dir", help="the model folder written by training/train.py (OUTPUT_DIR/model)")
    push.add_argument("repo_id", help="Hub repository, e.g. your-name/reservoir-de-en")
    push.add_argument("--private", action="store_true", help="create a private repository")
    push.add_argument("--revision", default=None, help="upload to this branch (created if missing)")
    push.add_argument("--seed-only", action="store_true", help="store reservoirs as their seed, not weights")
    push.add_argument("--export-dir", default=None, help="keep the Hub-ready folder here")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded and stop")
    args = parser.parse_args(argv)

    from .hub import export_for_hub, push_folder

    with tempfile.TemporaryDirectory() as scratch:
        export_dir = args.export_dir or f"{scratch}/export"
        try:
            files = export_for_hub(args.model_dir, export_dir, "seed" if args.seed_only else "weights")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        total = sum(size for _, size in files)
        print(
            f"{'Would upload' if args.dry_run else 'Uploading'} {len(files)} files ({total:,} bytes) to "
            f"{args.repo_id}{'@' + args.revision if args.revision else ''}:"
        )
        for name, size in files:
            print(f"  {size:>12,}  {name}")
        if args.dry_run:
            return 0
        url = push_folder(export_dir, args.repo_id, private=args.private, revision=args.revision, token=args.token)
        print(f"Uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
