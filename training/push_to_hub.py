"""Upload a trained model to the Hub: the same as `hf-reservoir push`.

python training/push_to_hub.py runs/demo/model your-name/reservoir-de-en --dry_run
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
