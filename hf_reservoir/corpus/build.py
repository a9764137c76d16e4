"""The corpus build: collect, clean, split and write a language pair's corpus with its ``stats.json``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from ..utils.run_folder import CORPUS_STATS_FILE
from .cleaning import ScriptRules, drop_reason, english_key, rules_for, split_of
from .language_pairs import LanguagePair, _deb_version, _unpack, parse_pair
from .packages import (
    DEFAULT_CACHE_DIR,
    DEFAULT_LANGUAGE,
    ENGLISH,
    SPLITS,
    CorpusBuildError,
    _cached_deb,
    fetch_packages,
    licenses_for,
    packages_for,
)
from .parsers import ding_pairs, help_pairs, measure_help_rules, ui_pairs

logger = logging.getLogger(__name__)


@dataclass
class CorpusStats:
    language: str = DEFAULT_LANGUAGE
    rules: dict = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    extracted: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)
    kept: Counter = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)
    split_sources: dict[str, Counter] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "pair": f"{self.language}-{ENGLISH}",
            "languages": [self.language, ENGLISH],
            "rules": self.rules,
            "packages": dict(sorted(self.packages.items())),
            "licenses": licenses_for(self.language),
            "extracted": dict(sorted(self.extracted.items())),
            "kept": dict(sorted(self.kept.items())),
            "dropped": {s: dict(sorted(c.items())) for s, c in sorted(self.dropped.items())},
            "untranslated": {s: c.get("untranslated", 0) for s, c in sorted(self.dropped.items())},
            "splits": self.splits,
            "split_sources": {s: dict(sorted(c.items())) for s, c in self.split_sources.items()},
        }


def collect_pairs(
    root: str, stats: CorpusStats, language: str = DEFAULT_LANGUAGE, rules: ScriptRules | None = None
) -> dict[str, list[tuple[str, str, str]]]:
    """Extract, clean, filter and deduplicate; returns ``{split: [(xx, en, source), ...]}``.

    ``rules`` default to the measured ones of ``language`` ([`rules_for`]), else they are measured on the help
    pairs extracted here ([`measure_help_rules`]); the rules used go into ``stats.rules``.
    """
    sources = {}
    if language == DEFAULT_LANGUAGE:
        sources["ding"], ding_skipped = ding_pairs(root)
    sources["help"], sources["ui"] = help_pairs(root, language), ui_pairs(root, language)
    measured = "hf_reservoir.corpus.cleaning.LENGTH_RATIOS"
    if rules is None:
        rules = rules_for(language)
        if rules is None:
            rules, measured = measure_help_rules(sources["help"], language), "measured on this build's help pages"
    stats.rules = {**rules.to_dict(), "source": measured}
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
    for source, pairs in sources.items():
        dropped = stats.dropped.setdefault(source, Counter())
        if source == "ding":
            dropped["not_an_example_sentence"] = ding_skipped
        for xx, en in pairs:
            stats.extracted[source] += 1
            reason = drop_reason(xx, en, language, rules)
            key = english_key(en)
            if reason is None and key in seen:
                reason = "duplicate"
            if reason:
                dropped[reason] += 1
                continue
            seen.add(key)
            stats.kept[source] += 1
            splits[split_of(key)].append((xx, en, source))
    for split, rows in splits.items():
        stats.splits[split] = len(rows)
        stats.split_sources[split] = Counter(source for _, _, source in rows)
    return splits


def build_corpus(
    output_dir: str,
    cache_dir: str = DEFAULT_CACHE_DIR,
    deb_dir: str | None = None,
    overwrite: bool = False,
    pair: str | LanguagePair = "de-en",
):
    """Build the corpus of ``pair`` (German-English by default) into ``output_dir`` and return it as a
    ``datasets.DatasetDict``.

    Writes the saved ``DatasetDict`` (columns ``translation`` = ``{"xx", "en"}`` and ``source``), plain-text
    files ``{split}.xx``/``{split}.en``/``{split}.source`` (one sentence per line) and ``stats.json`` (the
    pair, the filtering rules, package versions, per-source kept and dropped counts with the untranslated ones
    apart, split sizes). Both directions of a pair (``fr-en``, ``en-fr``) build the same corpus.

    Args:
        output_dir (`str`): where to write the corpus.
        cache_dir (`str`): where downloaded .deb files are kept between builds.
        deb_dir (`str`, *optional*): a folder that already holds the pair's .deb files; no apt call then.
        overwrite (`bool`): replace an existing corpus in ``output_dir``.
        pair (`str` or [`LanguagePair`]): ``de-en``, ``fr-en``, ``en-ja``, ... ([`available_pairs`]).

    Returns:
        `datasets.DatasetDict` with ``train``, ``validation`` and ``test``.
    """
    if os.path.exists(os.path.join(output_dir, CORPUS_STATS_FILE)) and not overwrite:
        raise CorpusBuildError(
            f"{output_dir} already holds a corpus; pass overwrite=True (--overwrite) to rebuild it, or load it with "
            "hf_reservoir.data.load_parallel_corpus."
        )
    if not isinstance(pair, LanguagePair):
        # With the .deb files at hand the archive is not asked: the files (and their folders) decide.
        pair = parse_pair(pair, check_archive=deb_dir is None)
    language = pair.language
    packages = packages_for(language)
    if deb_dir is not None:
        debs = {p: _cached_deb(deb_dir, p) for p in packages}
        missing = [p for p, path in debs.items() if path is None]
        if missing:
            raise CorpusBuildError(f"--deb_dir {deb_dir} lacks {', '.join(m + '_*.deb' for m in missing)}.")
    else:
        debs = fetch_packages(cache_dir, packages)
    stats = CorpusStats(language=language, packages={p: _deb_version(path) for p, path in debs.items()})
    with tempfile.TemporaryDirectory(prefix="hf_reservoir_debs_") as root:
        _unpack(debs, root)
        splits = collect_pairs(root, stats, language)
    if os.path.exists(output_dir) and overwrite:
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    corpus = _write_corpus(splits, output_dir, language)
    with open(os.path.join(output_dir, CORPUS_STATS_FILE), "w", encoding="utf-8") as handle:
        json.dump(stats.to_dict(), handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    logger.info("Built the %s corpus in %s: %s", pair.corpus_name, output_dir, stats.splits)
    return corpus


def build_corpus_once(output_dir: str, **kwargs) -> bool:
    """Build the corpus into ``output_dir`` unless it is there; returns whether this call built it.

    The runs of a sweep start together, each with ``build_corpus``: without a lock each found no corpus and
    wrote one, replacing the files the others had already opened (a run died of it, silently). Callers take
    an exclusive lock on ``OUTPUT_DIR.lock`` and check again inside it, so one builds and the others wait.
    """
    import fcntl

    target = os.path.abspath(output_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if os.path.exists(os.path.join(output_dir, CORPUS_STATS_FILE)):
            return False
        build_corpus(output_dir, **kwargs)
        return True


def _write_corpus(splits: dict[str, list[tuple[str, str, str]]], output_dir: str, language: str = DEFAULT_LANGUAGE):
    """Save the splits as a ``DatasetDict`` (content-derived fingerprints: two builds are byte-identical) and as
    plain-text files, one sentence per line."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features(
        {"translation": {language: Value("string"), ENGLISH: Value("string")}, "source": Value("string")}
    )
    datasets = {}
    for split, rows in splits.items():
        columns = {
            "translation": [{language: xx, ENGLISH: en} for xx, en, _ in rows],
            "source": [s for _, _, s in rows],
        }
        dataset = Dataset.from_dict(columns, features=features, split=split)
        dataset._fingerprint = hashlib.sha256(json.dumps(columns, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        datasets[split] = dataset
        texts = {language: [r[0] for r in rows], ENGLISH: [r[1] for r in rows], "source": columns["source"]}
        for column, values in texts.items():
            with open(os.path.join(output_dir, f"{split}.{column}"), "w", encoding="utf-8") as handle:
                handle.writelines(v + "\n" for v in values)
    corpus = DatasetDict(datasets)
    corpus.save_to_disk(os.path.join(output_dir, "dataset"))
    return corpus
