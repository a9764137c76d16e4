"""Build the offline de-en corpus from Debian packages (and optionally train the tokenizer).

python training/prepare_data.py --output_dir data/de-en
python training/prepare_data.py --output_dir data/de-en --tokenizer_dir data/tokenizer --vocab_size 8000

A shim over ``hf-reservoir prepare``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli_main(["prepare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
