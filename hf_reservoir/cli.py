"""The ``hf-reservoir`` command line: ``prepare``, ``train``, ``sweep``, ``evaluate``, ``translate``, ``bench``,
``push``.

``training/train.py`` is a shim over [`train_main`]; the sweep launches runs as
``python -m hf_reservoir.cli train``, so nothing here depends on the repository's scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .trainer.flags import config_file_to_argv, parse_training_argv  # noqa: F401 - training/train.py imports them here
from .utils.run_folder import CORPUS_STATS_FILE


def train_main(argv: list[str]) -> int:
    """``hf-reservoir train CONFIG [--flag value ...]``: train, evaluate and save (see the README)."""
    from .trainer.run import run_training

    try:
        model_args, data_args, training_args, convergence_args = parse_training_argv(argv)
        run_training(model_args, data_args, training_args, convergence_args)
    except (ValueError, OSError) as error:  # bad settings, data or paths: one clear line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # unknown flags (argparse's own errors already exit with 2)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 2
        raise
    return 0


def add_push(commands) -> None:
    push = commands.add_parser("push", help="export a trained model folder and upload it to the Hub")
    push.add_argument("model_dir", help="the model folder written by training (OUTPUT_DIR/model)")
    push.add_argument("repo_id", help="Hub repository, e.g. your-name/reservoir-de-en")
    push.add_argument("--private", action="store_true", help="create a private repository")
    push.add_argument("--revision", default=None, help="upload to this branch (created if missing)")
    push.add_argument("--seed_only", action="store_true", help="store reservoirs as their seed, not weights")
    push.add_argument("--export_dir", default=None, help="keep the Hub-ready folder here")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`)")
    push.add_argument("--dry_run", action="store_true", help="list what would be uploaded and stop")


def push_main(args) -> int:
    from .hub.push import HubUploadError, push_model

    try:
        url = push_model(
            args.model_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            token=args.token,
            reservoir_storage="seed" if args.seed_only else "weights",
            export_dir=args.export_dir,
            dry_run=args.dry_run,
        )
    except HubUploadError as error:  # a bad folder or no token is a ValueError: main() prints it (exit 2)
        print(f"error: {error}", file=sys.stderr)
        return 1
    if url is not None:
        print(f"Uploaded: {url}")
    return 0


def add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score a saved model on a split; write generated_predictions.txt and results.json"
    )
    evaluate.add_argument("model", help="a model folder written by training (OUTPUT_DIR/model) or a Hub id")
    evaluate.add_argument(
        "--data_path",
        default=None,
        help="a built corpus, or text/TSV/JSONL split files (default: data/<source_lang>-<target_lang>)",
    )
    evaluate.add_argument("--data_format", default=None, help="corpus, text, tsv or jsonl (default: guessed)")
    evaluate.add_argument("--split", default="validation", help="train, validation or test")
    evaluate.add_argument("--output_dir", required=True, help="where the predictions and results.json go")
    pair = "default: the model tokenizer's (de-en where it records none); another language is refused"
    evaluate.add_argument("--source_lang", default=None, help=pair)
    evaluate.add_argument("--target_lang", default=None, help=pair)
    recorded = "default: as training scored this model (the model folder's scoring.json)"
    evaluate.add_argument("--num_beams", type=int, default=None, help=f"{recorded}, else its generation_config")
    evaluate.add_argument("--batch_size", type=int, default=None, help=f"{recorded}, else 128")
    evaluate.add_argument("--max_length", type=int, default=None, help="longest output (default: generation_config)")
    evaluate.add_argument(
        "--max_source_length", type=int, default=None, help=f"truncate sources ({recorded}, else the position table)"
    )
    evaluate.add_argument("--max_target_length", type=int, default=None, help=f"truncate references ({recorded})")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    add_engine(evaluate)


def evaluate_main(args) -> int:
    from .evaluation.inference import evaluate_saved_model

    report = evaluate_saved_model(
        args.model,
        args.data_path,
        args.output_dir,
        split=args.split,
        source_lang=args.source_lang,
        target_lang=args.target_lang,
        data_format=args.data_format,
        num_beams=args.num_beams,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_source_length=args.max_source_length,
        max_target_length=args.max_target_length,
        device=args.device,
        engine=args.engine,
        threads=args.threads,
    )
    print(
        f"{args.split}: BLEU {report['bleu']:.2f}, chrF {report['chrf']:.2f} ({report['pairs']} pairs, "
        f"{report['num_beams']} beam{'s' if report['num_beams'] > 1 else ''}, batches of {report['batch_size']}, "
        f"sources/references truncated at {report['max_source_length']}/{report['max_target_length']} tokens); "
        f"{report['signature']['bleu']}"
    )
    if report["blank_pairs_left_out"]:
        print(
            f"  {report['blank_pairs_left_out']} pairs with an empty source or reference were left out of the score "
            "(and of generated_predictions.txt)"
        )
    for source, row in report.get("by_source", {}).items():
        print(f"  {source}: BLEU {row['bleu']:.2f}, chrF {row['chrf']:.2f} ({row['pairs']} pairs)")
    print(f"Wrote {args.output_dir}/generated_predictions.txt and results.json")
    return 0


def add_translate(commands) -> None:
    translate = commands.add_parser(
        "translate",
        help="translate lines from stdin or a file to stdout: one output line per input line, in order, written "
        "as batches finish",
    )
    translate.add_argument("model", help="a model folder written by training (OUTPUT_DIR/model) or a Hub id")
    translate.add_argument("input", nargs="?", default="-", help="a text file, one sentence per line (default: stdin)")
    translate.add_argument("--num_beams", type=int, default=None, help="default: the model's generation_config")
    translate.add_argument("--batch_size", type=int, default=64)
    translate.add_argument("--max_length", type=int, default=None, help="longest output (default: generation_config)")
    translate.add_argument(
        "--max_source_length",
        type=int,
        default=None,
        help="truncate longer sources to this many tokens (default and upper limit: the model's position table); "
        "each truncated line is named in one warning on stderr",
    )
    translate.add_argument("--encoding", default="utf-8", help="the input's text encoding (default: utf-8)")
    add_engine(translate)
    translate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def add_engine(command) -> None:
    command.add_argument(
        "--engine",
        choices=["hf", "ctranslate2"],
        default="hf",
        help="hf: transformers' generate; ctranslate2: CTranslate2, faster on the CPU (pip install -e "
        '".[ctranslate2]"), from a folder written by `hf-reservoir export` or a model folder exported into a cache',
    )
    command.add_argument("--threads", type=int, default=0, help="CTranslate2's threads (0: its default)")


def translator_for(args):
    """``(translate_chunks, limit)``: a function with iter_translations' arguments after the sentences, and the
    longest source in tokens, for the engine the flags ask for."""
    if args.engine == "ctranslate2":
        from .evaluation.ctranslate2_engine import iter_translations_ct2, load_ctranslate2

        if args.threads < 0:
            raise ValueError(f"--threads {args.threads} must be 0 (CTranslate2's default) or more.")
        translator, tokenizer, record = load_ctranslate2(args.model, args.threads)
        limit = record["max_position_embeddings"]

        def chunks(sentences, *rest, **kwargs):
            return iter_translations_ct2(translator, tokenizer, sentences, record, *rest, **kwargs)

        return chunks, min(limit, args.max_source_length) if args.max_source_length else limit
    from .evaluation.inference import iter_translations, load_for_inference, source_limit

    model, tokenizer = load_for_inference(args.model, args.device)  # a bad model folder fails before any input

    def chunks(sentences, *rest, **kwargs):
        return iter_translations(model, tokenizer, sentences, *rest, **kwargs)

    return chunks, source_limit(model, args.max_source_length)


def translate_main(args) -> int:
    from .evaluation.inference import read_lines

    translate_chunks, limit = translator_for(args)  # a bad model folder fails before any input
    if args.input == "-":
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode(args.encoding)
        lines = read_lines(raw, "standard input", args.encoding)
    else:
        with open(args.input, "rb") as handle:
            lines = read_lines(handle.read(), args.input, args.encoding)
    keep = [i for i, line in enumerate(lines) if line.strip()]  # blank lines stay blank, in place

    def warn(truncated: list[int]) -> None:
        numbers = ", ".join(str(keep[i] + 1) for i in truncated)
        where = "stdin" if args.input == "-" else args.input
        plural = len(truncated) > 1
        print(
            f"warning: line{'s' if plural else ''} {numbers} of {where} {'are' if plural else 'is'} longer than "
            f"{limit} tokens and only the beginning was translated; split "
            "long lines into sentences to translate all of them.",
            file=sys.stderr,
            flush=True,
        )

    # Chunks of 16 batches: each chunk's lines (and the blank lines before them) are written as soon as it is done.
    chunks = translate_chunks(
        [lines[i] for i in keep],
        args.num_beams,
        args.batch_size,
        args.max_length,
        args.max_source_length,
        chunk_size=16 * args.batch_size,
        on_truncated=warn,
    )
    written = 0  # input lines written so far
    done = 0  # translated (non-blank) lines written so far
    for outputs in chunks:
        for text in outputs:
            line = keep[done]
            sys.stdout.write("\n" * (line - written) + text + "\n")  # blank lines before it, then it
            written, done = line + 1, done + 1
        sys.stdout.flush()
    sys.stdout.write("\n" * (len(lines) - written))
    sys.stdout.flush()
    return 0


def add_prepare(commands) -> None:
    from .corpus.packages import DEFAULT_CACHE_DIR

    prepare = commands.add_parser(
        "prepare", help="build an offline corpus from Debian packages (de-en by default; --list_pairs for the others)"
    )
    prepare.add_argument("--output_dir", default=None, help="where the corpus is written (needed unless --list_pairs)")
    prepare.add_argument(
        "--pair",
        default="de-en",
        help="XX-en or en-XX, XX a language of LibreOffice's help (fr-en, en-ja, ...); one corpus for both directions",
    )
    prepare.add_argument("--list_pairs", action="store_true", help="print the pairs the package archive can build")
    prepare.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR, help="where downloaded .deb files are kept")
    prepare.add_argument("--deb_dir", default=None, help="a folder that already holds the pair's .deb files")
    prepare.add_argument("--overwrite", action="store_true", help="rebuild an existing corpus")
    prepare.add_argument("--tokenizer_dir", default=None, help="also train a MarianTokenizer here")
    prepare.add_argument("--vocab_size", type=int, default=8000, help="SentencePiece pieces")
    prepare.add_argument("--source_lang", default=None, help="the tokenizer's source language (default: the pair's)")
    prepare.add_argument("--target_lang", default=None, help="the tokenizer's target language (default: the pair's)")


def prepare_main(args) -> int:
    import logging

    from .corpus.build import build_corpus
    from .corpus.language_pairs import archive_languages, parse_pair
    from .corpus.loading import load_parallel_corpus
    from .corpus.tokenization import train_marian_tokenizer

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list_pairs:
        languages, left_out = archive_languages()
        for language in languages:
            print(f"{language}-en\ten-{language}")
        for language, why in left_out.items():
            print(f"# not {language}-en: {why}", file=sys.stderr)
        return 0
    if not args.output_dir:
        raise ValueError("prepare needs --output_dir (where the corpus is written), e.g. --output_dir data/de-en.")
    pair = parse_pair(args.pair, check_archive=args.deb_dir is None)
    if os.path.exists(os.path.join(args.output_dir, CORPUS_STATS_FILE)) and not args.overwrite:
        logging.info("Using the corpus already in %s (pass --overwrite to rebuild).", args.output_dir)
    else:
        build_corpus(
            args.output_dir, cache_dir=args.cache_dir, deb_dir=args.deb_dir, overwrite=args.overwrite, pair=pair
        )
    with open(os.path.join(args.output_dir, CORPUS_STATS_FILE), encoding="utf-8") as handle:
        stats = json.load(handle)
    logging.info("Splits: %s", stats["splits"])
    if args.tokenizer_dir:
        source_lang, target_lang = args.source_lang or pair.source, args.target_lang or pair.target
        corpus = load_parallel_corpus(args.output_dir, source_lang, target_lang)
        tokenizer = train_marian_tokenizer(
            corpus["train"], source_lang, target_lang, args.tokenizer_dir, vocab_size=args.vocab_size
        )
        logging.info("Tokenizer with %d pieces saved to %s", len(tokenizer), args.tokenizer_dir)
    return 0


def add_sweep(commands) -> None:
    sweep = commands.add_parser("sweep", help="run the comparison grid of a sweep YAML and build its report")
    sweep.add_argument("config", help="the sweep YAML")
    sweep.add_argument("--list", action="store_true", help="print the cells and stop")
    sweep.add_argument("--cell", action="append", help="run only this cell (repeatable)")
    sweep.add_argument("--report_only", action="store_true", help="only rebuild the report from the run folders")
    sweep.add_argument(
        "--report_dir",
        default=None,
        help="where the table and plots go (default: the config's report_dir, else beside it)",
    )


def sweep_main(args) -> int:
    from .experiments.report_render import build_report, check_report_dir
    from .experiments.sweep import SweepConfig, cells, run_sweep

    try:
        config = SweepConfig.load(args.config)
    except TypeError as error:
        raise ValueError(f"{args.config}: {error}") from error
    grid = cells(config)
    if args.list:
        print("\n".join(c.name for c in grid))
        return 0
    if args.cell:
        unknown = sorted(set(args.cell) - {c.name for c in grid})
        if unknown:
            raise ValueError(f"unknown cells {unknown}; see --list.")
        grid = [c for c in grid if c.name in args.cell]
    report_dir = args.report_dir or config.report_dir or os.path.dirname(os.path.abspath(args.config))
    check_report_dir(config, report_dir)  # before hours of training, not after
    failed = [] if args.report_only else run_sweep(config, grid, report=lambda line: print(line, flush=True))
    print(build_report(config, report_dir))
    if failed:
        print(f"error: failed cells {failed}; see their train.log.", file=sys.stderr)
        return 1
    return 0


def add_bench(commands) -> None:
    from .benchmarks import BENCHMARKS

    bench = commands.add_parser(
        "bench",
        help="run a benchmark that measures its arms side by side: "
        + "; ".join(f"{name} ({text})" for name, (_, text) in BENCHMARKS.items()),
    )
    bench.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="its own flags (hf-reservoir bench NAME --help)")


def bench_main(args) -> int:
    import importlib

    from .benchmarks import BENCHMARKS

    importlib.import_module(BENCHMARKS[args.benchmark][0]).main(args.options)
    return 0


def add_slow_starts(commands) -> None:
    slow = commands.add_parser(
        "slow-starts", help="count the runs of each recipe that learned much more slowly than their seeds' median"
    )
    slow.add_argument(
        "config",
        help="a YAML naming each recipe's run folders (see hf_reservoir/experiments/slow_start.py)",
    )
    slow.add_argument("--report_dir", default=None, help="where slow_starts.md/.json go (default: next to config)")


def slow_starts_main(args) -> int:
    from .experiments.slow_start import build_slow_start_report

    print(build_slow_start_report(args.config, args.report_dir))
    return 0


def add_probe(commands) -> None:
    from .analysis.probing.tasks import TASKS

    probe = commands.add_parser(
        "probe", help="linear probes per encoder layer (E/L/R) and task; write probe.json, probe.md, a heatmap"
    )
    probe.add_argument("models", nargs="+", help="model folders written by training (OUTPUT_DIR/model)")
    probe.add_argument("--output_dir", required=True, help="where probe.json, probe.md and probe_heatmap.png go")
    probe.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help=f"any of {', '.join(TASKS)}; default: every one the data supports (source needs a built corpus)",
    )
    probe.add_argument("--limit", type=int, default=6000, help="source sentences drawn from the training split")
    probe.add_argument("--control", action="store_true", help="add the first model's architecture at random init")
    probe.add_argument(
        "--control_seeds", type=int, nargs="+", default=None, help="random-init controls from these torch seeds"
    )
    probe.add_argument("--data_path", default="data/de-en", help="the corpus (a built corpus, or text/TSV/JSONL)")
    probe.add_argument("--seed", type=int, default=1, help="draws the sentences and builds the tasks")
    probe.add_argument(
        "--splits",
        type=int,
        default=3,
        help="train/validation/test splits per probe (accuracy: their mean, with an interval)",
    )
    probe.add_argument("--source_lang", default="de")
    probe.add_argument("--target_lang", default="en")
    probe.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def probe_main(args) -> int:
    from .analysis.probing.probe import run_probes
    from .analysis.probing.report import markdown
    from .analysis.probing.tasks import ProbeSettings

    settings = ProbeSettings(tasks=args.tasks, limit=args.limit, seed=args.seed, splits=args.splits)
    report = run_probes(
        args.models, args.output_dir, args.data_path, settings, args.control_seeds or args.control,
        args.source_lang, args.target_lang, args.device,
    )  # fmt: skip
    print(markdown(report))
    print(f"Wrote {args.output_dir}/probe.json, probe.md and probe_heatmap.png")
    return 0


def add_export(commands) -> None:
    export = commands.add_parser("export", help="convert a trained model folder for another engine (CTranslate2)")
    export.add_argument("model_dir", help="the model folder written by training (OUTPUT_DIR/model)")
    export.add_argument("--format", choices=["ctranslate2"], default="ctranslate2", help="the engine to export for")
    export.add_argument("--output_dir", required=True, help="the folder to write (the tokenizer is copied beside it)")
    export.add_argument(
        "--quantization",
        default=None,
        choices=["int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32"],
        help="CTranslate2's weight type (default: float32, as trained)",
    )
    export.add_argument("--force", action="store_true", help="replace a non-empty --output_dir")


def export_main(args) -> int:
    from .evaluation.ctranslate2_engine import export_ctranslate2
    from .evaluation.inference import check_model_dir

    check_model_dir(args.model_dir)
    out = export_ctranslate2(args.model_dir, args.output_dir, args.quantization, args.force)
    print(f"Wrote the CTranslate2 model and its tokenizer to {out}: hf-reservoir translate {out} --engine ctranslate2")
    return 0


COMMANDS = {
    "prepare": (add_prepare, prepare_main),
    "evaluate": (add_evaluate, evaluate_main),
    "translate": (add_translate, translate_main),
    "sweep": (add_sweep, sweep_main),
    "bench": (add_bench, bench_main),
    "push": (add_push, push_main),
    "slow-starts": (add_slow_starts, slow_starts_main),
    "probe": (add_probe, probe_main),
    "export": (add_export, export_main),
}


def main(argv: list[str] | None = None) -> int:
    """``hf-reservoir SUBCOMMAND ...``; a user's mistake exits with status 2 and one ``error:`` line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":  # the Trainer's own flags: parsed by HfArgumentParser, not argparse
        return train_main(argv[1:])
    from .trainer.arguments import FlagParser

    parser = FlagParser(prog="hf-reservoir", description="Reservoir Transformers for HF Transformers")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "train",
        help="train, evaluate and save a model: hf-reservoir train CONFIG.yaml [--flag value ...] "
        "(every Seq2SeqTrainingArguments flag; see `hf-reservoir train --help`)",
    )
    for add, _ in COMMANDS.values():
        add(commands)
    args = parser.parse_args(argv)
    from .corpus.packages import CorpusBuildError

    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, OSError, ImportError, CorpusBuildError) as error:  # bad settings, data, paths or packages
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
