"""The embedded default corpus: real German-English text from four Debian packages, built offline.

Sources (see the README's "Data" section):

* ``libreoffice-help-en-us`` + ``libreoffice-help-de``: help paragraphs paired by (file, id);
* ``trans-de-en``: example sentences from the Ding dictionary;
* ``libreoffice-l10n-de``: interface strings from the gettext catalogues.

The build is deterministic: the same packages give byte-identical outputs.
"""

from __future__ import annotations

import gettext
import glob
import hashlib
import html
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .run_folder import CORPUS_STATS_FILE

logger = logging.getLogger(__name__)

PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-de", "trans-de-en", "libreoffice-l10n-de")
LICENSES = {
    "help": "MPL-2.0 (LibreOffice help, Debian packages libreoffice-help-en-us and libreoffice-help-de)",
    "ding": "GPL-2.0-or-later (Ding dictionary by Frank Richter, Debian package trans-de-en)",
    "ui": "MPL-2.0 (LibreOffice interface strings, Debian package libreoffice-l10n-de)",
}
SPLITS = ("train", "validation", "test")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hf_reservoir", "debs")


class CorpusBuildError(RuntimeError):
    """The corpus could not be built; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _cached_deb(cache_dir: str, package: str) -> str | None:
    matches = sorted(glob.glob(os.path.join(cache_dir, f"{package}_*.deb")))
    return matches[-1] if matches else None


def _apt_lists_present() -> bool:
    return bool(glob.glob("/var/lib/apt/lists/*_Packages*"))


def _run_apt(args: list[str], cwd: str) -> None:
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise CorpusBuildError(
            f"`{' '.join(args)}` could not run: {error}. The corpus is built from Debian packages; run on a "
            "Debian or Ubuntu machine, or download the .deb files of "
            f"{', '.join(PACKAGES)} elsewhere and pass --deb_dir."
        ) from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise CorpusBuildError(
            f"`{' '.join(args)}` failed with exit code {result.returncode}: {' / '.join(detail)}. "
            "Building the corpus needs Debian's package archive: check the network to the archive, and run "
            "as root (or with sudo) if `apt-get update` has never run on this machine. Alternatively download "
            f"the .deb files of {', '.join(PACKAGES)} elsewhere and pass --deb_dir."
        )


def fetch_packages(cache_dir: str = DEFAULT_CACHE_DIR) -> dict[str, str]:
    """Return ``{package: path to .deb}``, downloading with ``apt-get download`` what the cache lacks.

    Runs ``apt-get update`` first when the package lists are missing. A rerun with the cache in
    place runs no apt command at all.
    """
    os.makedirs(cache_dir, exist_ok=True)
    debs = {p: _cached_deb(cache_dir, p) for p in PACKAGES}
    missing = [p for p, path in debs.items() if path is None]
    if missing:
        if not _apt_lists_present():
            _run_apt(["apt-get", "update"], cache_dir)
        logger.info("Downloading %s into %s", ", ".join(missing), cache_dir)
        _run_apt(["apt-get", "download", *missing], cache_dir)
        for package in missing:
            debs[package] = _cached_deb(cache_dir, package)
            if debs[package] is None:
                raise CorpusBuildError(
                    f"apt-get download reported success but no {package}_*.deb is in {cache_dir}; "
                    "check that the folder is writable and rerun."
                )
    return debs


def _deb_version(path: str) -> str:
    result = subprocess.run(["dpkg-deb", "-f", path, "Version"], capture_output=True, text=True)
    if result.returncode == 0:
        return result.stdout.strip()
    return os.path.basename(path).split("_")[1].replace("%3a", ":")


def _unpack(debs: dict[str, str], target: str) -> None:
    for package, path in debs.items():
        result = subprocess.run(["dpkg-deb", "-x", path, target], capture_output=True, text=True)
        if result.returncode != 0:
            raise CorpusBuildError(
                f"dpkg-deb could not unpack {path} ({package}): {result.stderr.strip()}. Delete the file so that "
                "the next build downloads it again."
            )


# --------------------------------------------------------------------------------------------
# Cleaning (rules measured on these packages; the README's "Data" section)
# --------------------------------------------------------------------------------------------

# NBSP-like spaces become spaces; BOM, zero-width characters and soft hyphens disappear.
_INVISIBLE = {
    0x00A0: " ",
    0x202F: " ",
    0x2007: " ",
    0x00AD: None,
    0xFEFF: None,
    0x200B: None,
    0x200C: None,
    0x200D: None,
    0x2060: None,
}
_PLACEHOLDER = re.compile(
    r"%(\d+\$)?[-#0 +]*\d*(\.\d+)?[sdifuxXcp]|%\([^)]*\)[sd]|\{\w*\}|\$\{[^}]*\}|\$\d|<[^>]*>|&\w+;"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ])")


def clean_text(text: str) -> str:
    """NFC, invisible characters removed, whitespace collapsed, typographic apostrophe as ``'``."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE).replace("\u2019", "'")
    return " ".join(text.split())


def english_key(text: str) -> str:
    """The deduplication and split key: NFKC, lower case, runs of non-word characters as one space."""
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def split_of(key: str) -> str:
    """Hash split: a sentence lands in the same split whatever else changes."""
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def drop_reason(de: str, en: str) -> str | None:
    """Why a (cleaned) pair is dropped, or None to keep it."""
    if not de or not en:
        return "empty"
    if _PLACEHOLDER.search(de) or _PLACEHOLDER.search(en):
        return "placeholder_or_markup"
    if de == en:
        return "identical"
    en_words, de_words = len(en.split()), len(de.split())
    if en_words < 3:
        return "too_short"
    if en_words > 80 or de_words > 120:
        return "too_long"
    if not 0.4 <= len(de) / len(en) <= 2.5:
        return "length_ratio"
    return None


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


class _ParagraphParser(HTMLParser):
    """Collect the text of every ``<p>``/``<hN>`` element that has an ``id``, in document order."""

    _TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: dict[str, str] = {}
        self._stack: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag in self._TAGS:
            self._stack.append((tag, dict(attrs).get("id") or "", []))
        elif tag == "br" and self._stack:
            self._stack[-1][2].append(" ")

    def handle_endtag(self, tag):
        if tag in self._TAGS and self._stack and self._stack[-1][0] == tag:
            _, element_id, parts = self._stack.pop()
            text = "".join(parts)
            if self._stack:  # nested element: its text also belongs to the parent
                self._stack[-1][2].append(text)
            if element_id and element_id not in self.paragraphs:
                self.paragraphs[element_id] = text

    def handle_data(self, data):
        if self._stack:
            self._stack[-1][2].append(data)


def _paragraphs(path: str) -> dict[str, str]:
    parser = _ParagraphParser()
    with open(path, encoding="utf-8") as handle:
        parser.feed(handle.read())
    return {k: clean_text(html.unescape(v)) for k, v in parser.paragraphs.items()}


def help_pairs(root: str) -> list[tuple[str, str]]:
    """Help paragraphs paired by (file, id); split into sentences where both sides agree."""
    en_root = os.path.join(root, "usr/share/libreoffice/help/en-US")
    de_root = os.path.join(root, "usr/share/libreoffice/help/de")
    pairs = []
    for en_path in sorted(glob.glob(os.path.join(en_root, "text", "**", "*.html"), recursive=True)):
        de_path = os.path.join(de_root, os.path.relpath(en_path, en_root))
        if not os.path.exists(de_path):
            continue
        en_pars, de_pars = _paragraphs(en_path), _paragraphs(de_path)
        for element_id, en in en_pars.items():
            de = de_pars.get(element_id)
            if de is None:
                continue
            en_sents, de_sents = _SENTENCE_END.split(en), _SENTENCE_END.split(de)
            if len(en_sents) == len(de_sents) > 1:
                pairs.extend(zip(de_sents, en_sents))
            else:
                pairs.append((de, en))
    return pairs


_DING_MARKERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>|/[A-Z][\w.]*/")
_DING_SLOTS = re.compile(r"\b(sb|sth|jdm|jdn|etw|jds|sb's)\.")


def _ding_sentence(text: str) -> str | None:
    text = clean_text(_DING_MARKERS.sub(" ", text))
    text = clean_text(text.split("; ")[0])  # synonyms: keep the first alternative
    if not text or not text[0].isupper() or text[-1] not in ".!?" or len(text.split()) < 3:
        return None
    if _DING_SLOTS.search(text) or "/" in text:
        return None
    return text


def ding_pairs(root: str) -> tuple[list[tuple[str, str]], int]:
    """Example sentences from the Ding dictionary; returns the pairs and the sub-entries skipped."""
    skipped = 0
    pairs = []
    with open(os.path.join(root, "usr/share/trans/de-en"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or " :: " not in line:
                continue
            de_side, en_side = line.rstrip("\n").split(" :: ", 1)
            de_subs, en_subs = de_side.split(" | "), en_side.split(" | ")
            if len(de_subs) != len(en_subs):
                skipped += len(de_subs)
                continue
            for de, en in zip(de_subs, en_subs):
                de, en = _ding_sentence(de), _ding_sentence(en)
                if de and en:
                    pairs.append((de, en))
                else:
                    skipped += 1
    return pairs, skipped


def ui_pairs(root: str) -> list[tuple[str, str]]:
    """Interface strings from the gettext catalogues (singular forms, accelerators stripped)."""
    pairs = []
    mo_dir = os.path.join(root, "usr/lib/libreoffice/program/resource/de/LC_MESSAGES")
    for path in sorted(glob.glob(os.path.join(mo_dir, "*.mo"))):
        with open(path, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
        for key in sorted(catalog, key=str):
            msgid = key[0] if isinstance(key, tuple) else key
            if isinstance(key, tuple) and key[1] != 0 or not msgid:
                continue
            msgid = msgid.split("\x04", 1)[-1]
            strip = str.maketrans("", "", "~_&")
            pairs.append((clean_text(catalog[key].translate(strip)), clean_text(msgid.translate(strip))))
    return pairs


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


@dataclass
class CorpusStats:
    packages: dict[str, str] = field(default_factory=dict)
    extracted: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)
    kept: Counter = field(default_factory=Counter)
    splits: dict[str, int] = field(default_factory=dict)
    split_sources: dict[str, Counter] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "packages": dict(sorted(self.packages.items())),
            "licenses": LICENSES,
            "extracted": dict(sorted(self.extracted.items())),
            "kept": dict(sorted(self.kept.items())),
            "dropped": {s: dict(sorted(c.items())) for s, c in sorted(self.dropped.items())},
            "splits": self.splits,
            "split_sources": {s: dict(sorted(c.items())) for s, c in self.split_sources.items()},
        }


def collect_pairs(root: str, stats: CorpusStats) -> dict[str, list[tuple[str, str, str]]]:
    """Extract, clean, filter and deduplicate; returns ``{split: [(de, en, source), ...]}``."""
    ding, ding_skipped = ding_pairs(root)
    sources = {"ding": ding, "help": help_pairs(root), "ui": ui_pairs(root)}
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
    for source in ("ding", "help", "ui"):
        dropped = stats.dropped.setdefault(source, Counter())
        if source == "ding":
            dropped["not_an_example_sentence"] = ding_skipped
        for de, en in sources[source]:
            stats.extracted[source] += 1
            reason = drop_reason(de, en)
            key = english_key(en)
            if reason is None and key in seen:
                reason = "duplicate"
            if reason:
                dropped[reason] += 1
                continue
            seen.add(key)
            stats.kept[source] += 1
            splits[split_of(key)].append((de, en, source))
    for split, rows in splits.items():
        stats.splits[split] = len(rows)
        stats.split_sources[split] = Counter(source for _, _, source in rows)
    return splits


def build_corpus(
    output_dir: str, cache_dir: str = DEFAULT_CACHE_DIR, deb_dir: str | None = None, overwrite: bool = False
):
    """Build the de-en corpus into ``output_dir`` and return it as a ``datasets.DatasetDict``.

    Writes the saved ``DatasetDict`` (columns ``translation`` = ``{"de", "en"}`` and ``source``),
    plain-text files ``{split}.de``/``{split}.en``/``{split}.source`` (one sentence per line) and
    ``stats.json`` (package versions, per-source kept and dropped counts, split sizes).

    Args:
        output_dir (`str`): where to write the corpus.
        cache_dir (`str`): where downloaded .deb files are kept between builds.
        deb_dir (`str`, *optional*): a folder that already holds the four .deb files; no apt call then.
        overwrite (`bool`): replace an existing corpus in ``output_dir``.

    Returns:
        `datasets.DatasetDict` with ``train``, ``validation`` and ``test``.
    """
    if os.path.exists(os.path.join(output_dir, CORPUS_STATS_FILE)) and not overwrite:
        raise CorpusBuildError(
            f"{output_dir} already holds a corpus; pass overwrite=True (--overwrite) to rebuild it, or load it with "
            "hf_reservoir.data.load_parallel_corpus."
        )
    if deb_dir is not None:
        debs = {p: _cached_deb(deb_dir, p) for p in PACKAGES}
        missing = [p for p, path in debs.items() if path is None]
        if missing:
            raise CorpusBuildError(f"--deb_dir {deb_dir} lacks {', '.join(m + '_*.deb' for m in missing)}.")
    else:
        debs = fetch_packages(cache_dir)
    stats = CorpusStats(packages={p: _deb_version(path) for p, path in debs.items()})
    with tempfile.TemporaryDirectory(prefix="hf_reservoir_debs_") as root:
        _unpack(debs, root)
        splits = collect_pairs(root, stats)
    if os.path.exists(output_dir) and overwrite:
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    corpus = _write_corpus(splits, output_dir)
    with open(os.path.join(output_dir, CORPUS_STATS_FILE), "w", encoding="utf-8") as handle:
        json.dump(stats.to_dict(), handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    logger.info("Built the de-en corpus in %s: %s", output_dir, stats.splits)
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


def _write_corpus(splits: dict[str, list[tuple[str, str, str]]], output_dir: str):
    """Save the splits as a ``DatasetDict`` (content-derived fingerprints: two builds are byte-identical) and as
    plain-text files, one sentence per line."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({"translation": {"de": Value("string"), "en": Value("string")}, "source": Value("string")})
    datasets = {}
    for split, rows in splits.items():
        columns = {"translation": [{"de": de, "en": en} for de, en, _ in rows], "source": [s for _, _, s in rows]}
        dataset = Dataset.from_dict(columns, features=features, split=split)
        dataset._fingerprint = hashlib.sha256(json.dumps(columns, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        datasets[split] = dataset
        texts = {"de": [r[0] for r in rows], "en": [r[1] for r in rows], "source": columns["source"]}
        for column, values in texts.items():
            with open(os.path.join(output_dir, f"{split}.{column}"), "w", encoding="utf-8") as handle:
                handle.writelines(v + "\n" for v in values)
    corpus = DatasetDict(datasets)
    corpus.save_to_disk(os.path.join(output_dir, "dataset"))
    return corpus
