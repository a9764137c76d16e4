"""One loader for every parallel data source that training accepts, and the tokenised batches built from it.

Every source comes back as a ``datasets.DatasetDict`` with ``train``, ``validation`` and ``test``
splits and a ``translation`` column ``{lang: text}`` (the convention of the Hub's ``iwslt2017``
and ``wmt16`` data sets), so either direction and any language pair go through the same code.

Sources:

* a corpus built by [`hf_reservoir.corpus.build.build_corpus`] (folder with ``stats.json``);
* parallel plain-text files: ``train.de`` + ``train.en``, ``validation.*`` (or ``dev``/``valid``), ``test.*``;
* ``{split}.tsv`` files with a header naming the two languages;
* ``{split}.jsonl`` files with ``{"de": ..., "en": ...}`` or ``{"translation": {...}}`` per line;
* a Hub data set by name and config, e.g. ``iwslt2017`` / ``iwslt2017-de-en`` or ``wmt16`` / ``de-en``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter

from ..utils.run_folder import CORPUS_STATS_FILE

logger = logging.getLogger(__name__)


SPLITS = ("train", "validation", "test")


SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


FORMATS = ("corpus", "text", "tsv", "jsonl", "hub")


class DataError(ValueError):
    """Bad input data; the message names the file, the line and what to do."""


def _read_lines(path: str) -> list[str]:
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid UTF-8: byte {error.start} (line {line}) is {raw[error.start : error.start + 1]!r}. "
            "Convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`."
        ) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the first sentence
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _find_split_file(folder: str, split: str, suffix: str) -> str | None:
    for alias in SPLIT_ALIASES[split]:
        path = os.path.join(folder, f"{alias}{suffix}")
        if os.path.exists(path):
            return path
    return None


def _missing_split(folder: str, split: str, pattern: str) -> DataError:
    names = ", ".join(alias + pattern for alias in SPLIT_ALIASES[split])
    present = ", ".join(sorted(os.listdir(folder))[:12]) or "nothing"
    return DataError(
        f"The {split} split is missing from {folder}: expected {names}. The folder holds: {present}. "
        "Add the split, or rename an existing file to that name."
    )


def _languages_of(folder: str, split: str) -> list[str]:
    """The language suffixes of the split's text files in ``folder`` (``train.fr``, ``train.en`` -> fr, en)."""
    found = []
    for name in sorted(os.listdir(folder)):
        stem, dot, suffix = name.rpartition(".")
        language = re.fullmatch(r"[a-z]{2,3}(-[a-z]{2,4})?", suffix)  # de, fr, pt-br, zh-cn
        if dot and stem in SPLIT_ALIASES[split] and language and suffix not in found:
            found.append(suffix)
    return found


def _text_split(folder: str, split: str, langs: tuple[str, str]) -> list[dict[str, str]]:
    paths = []
    for lang in langs:
        path = _find_split_file(folder, split, f".{lang}")
        if path is None:
            error = _missing_split(folder, split, f".{lang}")
            present = _languages_of(folder, split)
            if len(present) == 2:  # the file names show the pair: say which flags read it
                # Keep whichever of the asked languages the folder has, on the side it was asked for.
                source, target = present[::-1] if langs[0] == present[1] or langs[1] == present[0] else present
                error = DataError(
                    f"{error} The folder's {split} files are in {' and '.join(present)}: pass --source_lang {source} "
                    f"--target_lang {target} to read them."
                )
            raise error
        paths.append(path)
    first, second = (_read_lines(p) for p in paths)
    if len(first) != len(second):
        raise DataError(
            f"Parallel files differ in length: {paths[0]} has {len(first)} lines and {paths[1]} has {len(second)}; "
            f"line {min(len(first), len(second)) + 1} has no partner. Fix the files so that line i of one "
            "translates line i of the other."
        )
    return [{langs[0]: a, langs[1]: b} for a, b in zip(first, second)]


def _tsv_split(folder: str, split: str, langs: tuple[str, str]) -> list[dict[str, str]]:
    path = _find_split_file(folder, split, ".tsv")
    if path is None:
        raise _missing_split(folder, split, ".tsv")
    # Split on tabs only, with no quoting (csv.QUOTE_NONE's meaning): the csv module refuses a field holding a bare
    # carriage return ("new-line character seen in unquoted field"), which a sentence may hold.
    reader = (line.split("\t") for line in _read_lines(path))
    header = next(reader, None) or []
    missing = [lang for lang in langs if lang not in header]
    if missing:
        raise DataError(
            f"{path} line 1 (the header) is {header!r} and lacks the language key(s) {missing}; the header must "
            f"name the columns, e.g. '{langs[0]}<TAB>{langs[1]}', or pass the right --source_lang/--target_lang."
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {number} has {len(row)} tab-separated fields, the header has {len(header)}. "
                "Remove stray tabs or quote nothing: the file is read without quoting."
            )
        rows.append({lang: row[header.index(lang)] for lang in langs})
    return rows


def _jsonl_split(folder: str, split: str, langs: tuple[str, str]) -> list[dict[str, str]]:
    path = _find_split_file(folder, split, ".jsonl")
    if path is None:
        raise _missing_split(folder, split, ".jsonl")
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path} line {number} is not valid JSON ({error.msg}); write one object per line."
            ) from None
        record = record.get("translation", record) if isinstance(record, dict) else None
        if not isinstance(record, dict) or any(lang not in record for lang in langs):
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise DataError(
                f"{path} line {number} has keys {keys} but needs the language keys {list(langs)}: use objects like "
                f'{{"{langs[0]}": "...", "{langs[1]}": "..."}}, or pass the right --source_lang/--target_lang.'
            )
        wrong = {lang: record[lang] for lang in langs if not isinstance(record[lang], str)}
        if wrong:
            raise DataError(
                f"{path} line {number}: the values of {sorted(wrong)} are {list(wrong.values())!r}, not text; every "
                'language key needs a string, e.g. {"' + langs[0] + '": "Hallo", "' + langs[1] + '": "Hello"}.'
            )
        rows.append({lang: record[lang] for lang in langs})
    return rows


def detect_format(path: str) -> str:
    """Guess the format of ``path``: a local folder's contents, or ``hub`` for a data set name."""
    if not os.path.exists(path):
        if path.startswith((".", "/", "~")) or path.count("/") > 1:
            raise DataError(
                f"The data path {path} does not exist. Build the default corpus with "
                "`python training/prepare_data.py --output_dir PATH`, or give a Hub data set name such as iwslt2017."
            )
        return "hub"
    if not os.path.isdir(path):
        raise DataError(f"The data path {path} is a file; give the folder that holds the split files.")
    if os.path.exists(os.path.join(path, CORPUS_STATS_FILE)) and os.path.isdir(os.path.join(path, "dataset")):
        return "corpus"
    names = os.listdir(path)
    for suffix, fmt in ((".jsonl", "jsonl"), (".tsv", "tsv")):
        if any(n.endswith(suffix) for n in names):
            return fmt
    return "text"


def _check_language_keys(dataset, langs: tuple[str, str], where: str) -> None:
    if not len(dataset):
        raise DataError(f"{where} holds no pairs; every split needs at least one sentence pair.")
    sample = dataset[0]["translation"]
    missing = [lang for lang in langs if lang not in sample]
    if missing:
        raise DataError(
            f"{where} has the language keys {sorted(sample)} but not {missing}; pass --source_lang/--target_lang "
            "from those keys."
        )


def load_parallel_corpus(
    path_or_name: str,
    source_lang: str = "de",
    target_lang: str = "en",
    data_format: str | None = None,
    hub_config: str | None = None,
    stats: dict | None = None,
    splits: tuple[str, ...] = SPLITS,
):
    """Load a parallel corpus as a ``DatasetDict`` with train, validation and test splits (or only ``splits``).

    Pairs whose source or target is empty or whitespace only are dropped; the count per split is
    logged and written into ``stats["dropped_empty"]`` when a dict is passed. Nothing else is
    dropped or truncated here.

    Args:
        path_or_name (`str`): a local folder, or a Hub data set name (``iwslt2017``, ``wmt16``).
        source_lang (`str`): the source language key, e.g. ``de``.
        target_lang (`str`): the target language key, e.g. ``en``.
        data_format (`str`, *optional*): one of ``corpus``, ``text``, ``tsv``, ``jsonl``, ``hub``; guessed if unset.
        hub_config (`str`, *optional*): the Hub data set's config, e.g. ``iwslt2017-de-en`` or ``de-en``.
        stats (`dict`, *optional*): filled with the corpus's per-split counts (``corpus_splits``).
        splits (`tuple[str, ...]`): the splits to read; a command that scores one split needs only that one (a
            folder of a user's own test set has no ``train.*``).

    Returns:
        `datasets.DatasetDict`: ``translation`` holds ``{source_lang: ..., target_lang: ...}``; a built corpus
        also keeps its ``source`` column.

    Example:
        >>> corpus = load_parallel_corpus("data/de-en", "en", "de")  # English to German
    """
    from datasets import DatasetDict

    if source_lang == target_lang:
        raise DataError(f"source_lang and target_lang are both {source_lang!r}; give two different languages.")
    langs = (source_lang, target_lang)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise DataError(f"splits={list(splits)} must name one or more of {', '.join(SPLITS)}.")
    data_format = data_format or detect_format(path_or_name)
    if data_format not in FORMATS:
        raise DataError(f"data_format={data_format!r} is not supported; use one of {', '.join(FORMATS)}.")
    loaded = _read_splits(path_or_name, data_format, hub_config, langs, splits)
    _check_splits(loaded, path_or_name, langs, splits)
    result, dropped = _drop_blank_pairs(loaded, path_or_name, langs, splits)
    if sum(dropped.values()):
        logger.warning("Dropped empty or whitespace-only pairs: %s", dict(dropped))
    if stats is not None:
        stats["dropped_empty"] = dict(dropped)
        stats["corpus_splits"] = {split: len(result[split]) for split in splits}
    return DatasetDict(result)


def _read_splits(path_or_name: str, data_format: str, hub_config: str | None, langs: tuple[str, str], splits):
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    if data_format == "corpus":
        return load_from_disk(os.path.join(path_or_name, "dataset"))  # memory-mapped: reading every split is free
    if data_format == "hub":
        # The real Hub path, for users with a network; tests point it at a local folder.
        try:
            loaded = load_dataset(path_or_name, hub_config)
        except Exception as error:
            raise DataError(
                f"Could not load the data set {path_or_name!r} (config {hub_config!r}) from the Hub: {error}. If you "
                f"meant a local folder, {os.path.abspath(path_or_name)} does not exist; build the default corpus "
                "with `hf-reservoir prepare --output_dir PATH`."
            ) from error
        if "validation" not in loaded:
            for alias in SPLIT_ALIASES["validation"][1:]:
                if alias in loaded:
                    loaded["validation"] = loaded.pop(alias)
        return loaded
    reader = {"text": _text_split, "tsv": _tsv_split, "jsonl": _jsonl_split}[data_format]
    return DatasetDict(
        {split: Dataset.from_dict({"translation": reader(path_or_name, split, langs)}) for split in splits}
    )


def _check_splits(loaded, path_or_name: str, langs: tuple[str, str], splits) -> None:
    for split in splits:
        if split not in loaded:
            needed = "train, validation and test" if tuple(splits) == SPLITS else " and ".join(splits)
            raise DataError(
                f"The {split} split is missing from {path_or_name} (it has {sorted(loaded)}); this command needs "
                f"{needed}."
            )
        if "translation" not in loaded[split].column_names:
            raise DataError(
                f"{path_or_name} [{split}] has columns {loaded[split].column_names} but no 'translation' column of "
                "{language: text} dicts."
            )
        _check_language_keys(loaded[split], langs, f"{path_or_name} [{split}]")


def _drop_blank_pairs(loaded, path_or_name: str, langs: tuple[str, str], splits) -> tuple[dict, Counter]:
    """Drop pairs whose source or target is empty or whitespace only (counted); refuse a split left empty."""
    source_lang, target_lang = langs
    dropped, result = Counter(), {}
    for split in splits:
        dataset = loaded[split]
        keep = [
            i
            for i, pair in enumerate(dataset["translation"])
            if (pair.get(source_lang) or "").strip() and (pair.get(target_lang) or "").strip()
        ]
        dropped[split] = len(dataset) - len(keep)
        result[split] = dataset.select(keep, keep_in_memory=True) if dropped[split] else dataset
        if not len(result[split]):
            raise DataError(
                f"Every pair of the {split} split of {path_or_name} is blank ({dropped[split]} empty or "
                "whitespace-only pairs); give that split real sentences."
            )
    return result, dropped


def subset(dataset, size: int, seed: int | None = None):
    """The first ``size`` rows, or ``size`` rows drawn at random with ``seed`` (kept in corpus order)."""
    size = min(size, len(dataset))
    if seed is None:
        return dataset.select(range(size))
    rows = random.Random(seed).sample(range(len(dataset)), size)
    return dataset.select(sorted(rows))


def tokenize_corpus(
    corpus, tokenizer, source_lang: str, target_lang: str, max_source_length: int, max_target_length: int, stats: dict
):
    """Tokenize every split; truncation to the maximum lengths is counted in ``stats["truncated"]``."""

    def encode(batch):
        sources = [pair[source_lang] for pair in batch["translation"]]
        targets = [pair[target_lang] for pair in batch["translation"]]
        full = tokenizer(sources, text_target=targets)
        features = tokenizer(sources, text_target=targets, max_length=max_source_length, truncation=True)
        labels = tokenizer(text_target=targets, max_length=max_target_length, truncation=True)["input_ids"]
        features["labels"] = labels
        features["truncated"] = [
            len(a) > max_source_length or len(b) > max_target_length for a, b in zip(full["input_ids"], full["labels"])
        ]
        return features

    tokenized = {}
    stats.setdefault("truncated", {})
    for split, dataset in corpus.items():
        columns = dataset.column_names
        # In memory: a cache file would land inside the user's data folder (next to a built corpus's arrow files).
        encoded = dataset.map(
            encode, batched=True, remove_columns=columns, desc=f"Tokenizing {split}", keep_in_memory=True
        )
        stats["truncated"][split] = int(sum(encoded["truncated"]))
        tokenized[split] = encoded.remove_columns("truncated")
    if any(stats["truncated"].values()):
        logger.warning("Truncated pairs longer than the maximum lengths: %s", stats["truncated"])
    return tokenized
