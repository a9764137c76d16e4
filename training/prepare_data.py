"""Build the offline de-en corpus from Debian packages (and optionally train the tokenizer).

python training/prepare_data.py --output-dir data/de-en
python training/prepare_data.py --output-dir data/de-en --tokenizer-dir data/tokenizer --vocab-size 8000
"""

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hf_reservoir.corpus import DEFAULT_CACHE_DIR, CorpusBuildError, build_corpus  # noqa: E402
from hf_reservoir.data import load_parallel_corpus  # noqa: E402
from hf_reservoir.tokenization import train_marian_tokenizer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, help="where the corpus is written")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="where downloaded .deb files are kept")
    parser.add_argument("--deb-dir", default=None, help="a folder that already holds the four .deb files")
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing corpus")
    parser.add_argument("--tokenizer-dir", default=None, help="also train a MarianTokenizer here")
    parser.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece pieces")
    parser.add_argument("--source-lang", default="de")
    parser.add_argument("--target-lang", default="en")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if os.path.exists(os.path.join(args.output_dir, "stats.json")) and not args.overwrite:
            logging.info("Using the corpus already in %s (pass --overwrite to rebuild).", args.output_dir)
        else:
            build_corpus(args.output_dir, cache_dir=args.cache_dir, deb_dir=args.deb_dir, overwrite=args.overwrite)
    except CorpusBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.output_dir, "stats.json"), encoding="utf-8") as handle:
        logging.info("Splits: %s", json.load(handle)["splits"])
    if args.tokenizer_dir:
        corpus = load_parallel_corpus(args.output_dir, args.source_lang, args.target_lang)
        tokenizer = train_marian_tokenizer(
            corpus["train"], args.source_lang, args.target_lang, args.tokenizer_dir, vocab_size=args.vocab_size
        )
        logging.info("Tokenizer with %d pieces saved to %s", len(tokenizer), args.tokenizer_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
