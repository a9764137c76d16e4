"""Translating and scoring with a saved model, without training it (``hf-reservoir translate`` / ``evaluate``).

Transformers v5 has no translation pipeline; [`translate`] is the batched ``generate`` loop that
both commands use. Sentences are generated longest first, as during training, and returned in input order;
[`iter_translations`] yields them chunk by chunk, so that ``translate`` writes its output as it goes.

A source longer than the model's position table (``max_position_embeddings``) is truncated to it (it could
not be encoded at all otherwise), and the caller is told which sentences were cut (``on_truncated``): we truncate
rather than split at sentence boundaries, because the model was trained on single sentences and a split would
need a language-specific sentence splitter that decides where one ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import torch

from ..utils.run_folder import RESULTS_FILE, SCORING_FILE, read_run_file, write_run_file

# What training writes into the model folder: how its final scores were computed (lengths, batch size,
# beams), so that `hf-reservoir evaluate` scores the same model exactly as the end of training did.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
MODEL_TYPES = ("reservoir-marian", "marian")


def check_model_dir(path: str) -> None:
    """Refuse a local model folder that lacks the configuration, the weights or the tokenizer, naming what is missing.

    A path that does not exist and looks like ``owner/name`` is left to the Hub. Every subcommand that takes a
    model folder calls this first, before it reads any data.
    """
    if not os.path.exists(path):
        if path.count("/") == 1 and not path.startswith((".", "/", "~")):
            return  # a Hub id
        raise ValueError(
            f"the model folder {path} does not exist; give the folder that training wrote (OUTPUT_DIR/model) "
            "or a Hub id such as owner/name."
        )
    if not os.path.isdir(path):
        raise ValueError(f"{path} is a file, not a model folder; give the folder training wrote (OUTPUT_DIR/model).")
    missing = []
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        missing.append("config.json (the model's configuration)")
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES):
        missing.append("model.safetensors (the weights)")
    if not os.path.isfile(os.path.join(path, "vocab.json")):
        missing.append("vocab.json and the SentencePiece files (the tokenizer)")
    if missing:
        raise ValueError(
            f"{path} holds no complete model: it lacks {'; '.join(missing)}. Give the model folder that training "
            "wrote (OUTPUT_DIR/model), which holds all of them."
        )
    try:
        with open(config_path, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}); save the model again.") from error
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{path} holds a {model_type!r} model; hf-reservoir loads {' or '.join(MODEL_TYPES)} models only."
        )


def load_for_inference(model_name_or_path: str, device: str = "cpu"):
    """A saved model folder (or Hub id) and the tokenizer saved with it, ready to generate."""
    from transformers.utils import logging as hf_logging

    from ..corpus.tokenization import check_tokenizer_matches_model, load_tokenizer
    from ..models.reservoir_marian.modeling_reservoir import ReservoirMarianMTModel

    check_model_dir(model_name_or_path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load would clutter translate's stderr
    try:
        model = ReservoirMarianMTModel.from_pretrained(model_name_or_path).to(device).eval()
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer = load_tokenizer(model_name_or_path)
    check_tokenizer_matches_model(tokenizer, model.config)
    return model, tokenizer


def longest_first(input_ids: list[list[int]]) -> list[int]:
    """The order in which sources are generated, in training's evaluation and here: longest first (ties keep
    their order).

    Generation batches then hold sentences of similar length, which pad less and finish together (the
    timings are in CHANGELOG.md). Corpus BLEU and chrF do not depend on the order; ``run_training`` reorders
    the text splits the same way, so per-source test scores still line up.
    """
    return sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))


def read_lines(data: bytes, name: str, encoding: str = "utf-8") -> list[str]:
    """Lines of ``data`` decoded with ``encoding``: split on ``\\n`` only (a ``\\r`` before it is dropped, a byte-order
    mark at the start too), so that the output has exactly one line per input line.

    Bytes that are not valid in ``encoding`` raise a ``ValueError`` naming the line, instead of a decoder
    message without one.
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{name} line {line} is not valid {encoding} (byte 0x{data[error.start]:02x}); convert the text to "
            f"{encoding} (e.g. `iconv -f latin1 -t utf-8`), or pass its encoding with --encoding (e.g. latin-1)."
        ) from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def check_generation(
    batch_size: int,
    num_beams: int | None,
    max_length: int | None,
    max_source_length: int | None,
    vocabulary: int,
    positions: int,
) -> int:
    """Refuse generation settings the model cannot honour (the same rules for every engine); returns the longest
    source in tokens ([`source_limit`]'s value for a model with ``positions`` positions)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    check_num_beams(num_beams, vocabulary)
    if max_length is not None and not 1 <= max_length <= positions:
        raise ValueError(
            f"max_length={max_length} is outside what the model can generate: its decoder has {positions} positions "
            f"(max_position_embeddings); give a value from 1 to {positions}."
        )
    if max_source_length is not None and max_source_length < 2:
        raise ValueError(f"max_source_length={max_source_length} leaves no room for a word and </s>; give at least 2.")
    return min(positions, max_source_length) if max_source_length else positions


def check_num_beams(num_beams: int | None, vocabulary: int) -> None:
    """Refuse a beam count below 1, or above the vocabulary (beams beyond it cannot all be filled, and each costs
    memory: a million beams filled the machine's 24 GB)."""
    if num_beams is not None and not 1 <= num_beams <= vocabulary:
        raise ValueError(
            f"num_beams={num_beams} must be from 1 (greedy decoding) to the vocabulary's {vocabulary}; 4-5 is usual."
        )


def source_limit(model, max_source_length: int | None = None) -> int:
    """The longest source in tokens that the model can encode: its position table, or less if asked."""
    limit = model.config.max_position_embeddings
    return min(limit, max_source_length) if max_source_length else limit


def iter_translations(
    model,
    tokenizer,
    sentences: list[str],
    num_beams: int | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    max_source_length: int | None = None,
    chunk_size: int | None = None,
    on_truncated: Callable[[list[int]], None] | None = None,
) -> Iterator[list[str]]:
    """Translate ``sentences`` in chunks of ``chunk_size`` (default: all at once); yields each chunk's
    hypotheses in input order. Within a chunk, sentences are generated longest first.

    Args:
        model: a seq2seq model; its ``generation_config`` decides what is not given here.
        tokenizer: the model's tokenizer.
        sentences (`list[str]`): source sentences.
        num_beams (`int`, *optional*): beams (default: the ``generation_config``'s).
        batch_size (`int`): sentences per ``generate`` call.
        max_length (`int`, *optional*): longest output in tokens (default: the ``generation_config``'s).
        max_source_length (`int`, *optional*): truncate longer sources to this many tokens, as training does
            (sources longer than the model's position table are always truncated to it: [`source_limit`]).
        chunk_size (`int`, *optional*): sentences per yielded chunk.
        on_truncated (`Callable`, *optional*): called once, before anything is generated, with the indices (into
            ``sentences``) of the truncated sources.
    """
    positions = model.config.max_position_embeddings
    limit = check_generation(batch_size, num_beams, max_length, max_source_length, len(tokenizer), positions)
    # Lengths up to one past the limit are enough to tell who is cut (and keep the tokenizer from warning about
    # sequences longer than its model_max_length: our own warning names the lines).
    probe = {"truncation": True, "max_length": limit + 1}
    encoded = tokenizer(sentences, **probe)["input_ids"] if sentences else []
    truncated = [i for i, ids in enumerate(encoded) if len(ids) > limit]
    if truncated and on_truncated is not None:
        on_truncated(truncated)
    truncation = {"max_length": limit, "truncation": True}
    kwargs = {"num_beams": num_beams} if num_beams else {}
    if max_length:
        kwargs["max_length"] = max_length
    device = next(model.parameters()).device
    chunk_size = chunk_size or max(len(sentences), 1)
    for chunk_start in range(0, len(sentences), chunk_size):
        chunk = sentences[chunk_start : chunk_start + chunk_size]
        order = longest_first([ids[:limit] for ids in encoded[chunk_start : chunk_start + len(chunk)]])
        outputs: list[str] = [""] * len(chunk)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer([chunk[i] for i in rows], return_tensors="pt", padding=True, **truncation).to(device)
            with torch.no_grad():
                generated = model.generate(**batch, **kwargs)
            for index, text in zip(rows, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                outputs[index] = text.strip()
        yield outputs


def translate(model, tokenizer, sentences: list[str], **kwargs) -> list[str]:
    """Translate ``sentences``; returns one detokenised hypothesis per sentence, in input order.

    The keyword arguments are [`iter_translations`]'s (``num_beams``, ``batch_size``, ``max_length``,
    ``max_source_length``, ``on_truncated``); what is not given comes from the model's ``generation_config``, which
    training sets to the decoding its final scores used.
    """
    return [text for chunk in iter_translations(model, tokenizer, sentences, **kwargs) for text in chunk]


def scoring_settings(model_dir: str) -> dict:
    """The settings training scored this model with (``scoring.json``), or ``{}`` for a folder without them."""
    if not os.path.isfile(os.path.join(model_dir, SCORING_FILE)):
        return {}
    return read_run_file(model_dir, SCORING_FILE)


def write_scoring_settings(model_dir: str, **settings) -> None:
    """Record how training computed the final scores (see [`evaluate_saved_model`])."""
    write_run_file(model_dir, SCORING_FILE, settings)


def model_language_pair(tokenizer, source_lang: str | None, target_lang: str | None, model: str) -> tuple[str, str]:
    """The pair to score ``model`` on: the given languages, else the tokenizer's, else de-en.

    Raises:
        ValueError: a given language differs from the one the tokenizer was trained for.
    """
    recorded = (getattr(tokenizer, "source_lang", None), getattr(tokenizer, "target_lang", None))
    chosen = []
    for side, given, trained, default in zip(("source", "target"), (source_lang, target_lang), recorded, ("de", "en")):
        if given is not None and trained is not None and given != trained:
            raise ValueError(
                f"--{side}_lang {given} does not match {model}: its tokenizer was trained with {side}_lang "
                f"{trained} (a {recorded[0]}-{recorded[1]} model), so its scores on {given} would be meaningless. "
                f"Drop --{side}_lang (it defaults to the model's) or pass --{side}_lang {trained}."
            )
        chosen.append(given or trained or default)
    return chosen[0], chosen[1]


def evaluate_saved_model(
    model_name_or_path: str,
    data_path: str | None,
    output_dir: str,
    split: str = "validation",
    source_lang: str | None = None,
    target_lang: str | None = None,
    data_format: str | None = None,
    num_beams: int | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    max_source_length: int | None = None,
    max_target_length: int | None = None,
    device: str = "cpu",
    engine: str = "hf",
    threads: int = 0,
) -> dict:
    """Score a saved model on one split; write ``generated_predictions.txt`` and ``results.json``.

    ``engine="ctranslate2"`` generates with the model's CTranslate2 export (made into a cache on first use; ``threads``
    is CTranslate2's thread count) instead of HF generate, with the same truncation, beams and lengths.

    The data comes through the same loader as training (a built corpus, text, TSV or JSONL files), so
    a split scores exactly as it did there: sacrebleu corpus BLEU and chrF ([`corpus_scores`]),
    per source where the data has a ``source`` column. References are tokenised and decoded as training
    decodes its labels. What is not given (``num_beams``, ``batch_size``, ``max_source_length``,
    ``max_target_length``) comes from the model folder's ``scoring.json``, which training writes with the
    settings of its final scores, so that a split scores exactly as training reported it: same truncation of
    sources and references, same batches, same order (longest source first), same beams. Without that file:
    the model's ``generation_config`` beams, batches of 128, and no truncation beyond the position table.

    The language pair defaults to the one the model's tokenizer was trained for (its ``source_lang`` and
    ``target_lang``; de-en where it records none), and ``data_path`` to ``data/<source>-<target>``. A pair that
    differs from the tokenizer's is refused: the model would be scored on sentences of a language it never saw.
    """
    from ..corpus.loading import load_parallel_corpus
    from .metrics import corpus_scores, score_signatures, scores_by_source

    model, tokenizer = load_for_inference(model_name_or_path, device)  # before the data: a wrong folder is named
    source_lang, target_lang = model_language_pair(tokenizer, source_lang, target_lang, model_name_or_path)
    data_path = data_path or f"data/{source_lang}-{target_lang}"
    recorded = scoring_settings(model_name_or_path)
    batch_size = batch_size or recorded.get("batch_size") or 128
    max_source_length = max_source_length or recorded.get("max_source_length")
    max_target_length = max_target_length or recorded.get("max_target_length")
    num_beams = num_beams or recorded.get("num_beams")
    stats = {}
    dataset = load_parallel_corpus(
        data_path, source_lang, target_lang, data_format=data_format, stats=stats, splits=(split,)
    )[split]
    sources = [pair[source_lang] for pair in dataset["translation"]]
    references = [pair[target_lang] for pair in dataset["translation"]]
    settings = {"num_beams": num_beams, "batch_size": batch_size, "max_length": max_length}
    settings["max_source_length"] = max_source_length
    if engine == "ctranslate2":
        from .ctranslate2_engine import iter_translations_ct2, load_ctranslate2

        translator, _, record = load_ctranslate2(model_name_or_path, threads)
        hypotheses = [
            t for chunk in iter_translations_ct2(translator, tokenizer, sources, record, **settings) for t in chunk
        ]
    else:
        hypotheses = translate(model, tokenizer, sources, **settings)
    truncation = {"max_length": max_target_length, "truncation": True} if max_target_length else {}
    labels = tokenizer(text_target=references, **truncation)["input_ids"]
    references = [text.strip() for text in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    beams = num_beams or model.generation_config.num_beams or 1
    report = {
        "model": model_name_or_path,
        "data": data_path,
        "split": split,
        "pairs": len(hypotheses),
        "blank_pairs_left_out": stats["dropped_empty"][split],  # a pair with an empty side cannot be scored
        "engine": engine,
        "num_beams": beams,
        "batch_size": batch_size,
        "max_source_length": max_source_length,
        "max_target_length": max_target_length,
        **corpus_scores(hypotheses, references, target_lang),
        "signature": score_signatures(target_lang),
    }
    if "source" in dataset.column_names:
        report["by_source"] = scores_by_source(hypotheses, references, dataset["source"], target_lang)
    write_evaluation(output_dir, hypotheses, report)
    return report


def write_evaluation(output_dir: str, hypotheses: list[str], report: dict) -> None:
    """``generated_predictions.txt`` (one line per source line) and ``results.json`` in ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "generated_predictions.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(h.replace("\n", " ") + "\n" for h in hypotheses))
    write_run_file(output_dir, RESULTS_FILE, report)
