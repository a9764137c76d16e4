"""The embedded corpora: real human-translated text from Debian packages, built offline.

The default pair is German-English, from four packages (see the README's "Data" section):

* ``libreoffice-help-en-us`` + ``libreoffice-help-de``: help paragraphs paired by (file, id);
* ``trans-de-en``: example sentences from the Ding dictionary;
* ``libreoffice-l10n-de``: interface strings from the gettext catalogues.

Every other language with LibreOffice help and interface packages in the archive pairs with English the
same way (``--pair fr-en``; Ding is German only). The split hashes the English side, so every pair puts the
same English sentences in its test split: a multi-way test set. The build is deterministic: the same
packages give byte-identical outputs.
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

ENGLISH = "en"
DEFAULT_LANGUAGE = "de"
HELP_ENGLISH = "libreoffice-help-en-us"
DING_PACKAGE = "trans-de-en"  # the Ding dictionary: German only


def packages_for(language: str = DEFAULT_LANGUAGE) -> tuple[str, ...]:
    """The Debian packages the ``language``-English corpus is built from."""
    help_xx, l10n_xx = f"libreoffice-help-{language}", f"libreoffice-l10n-{language}"
    if language == "de":
        return (HELP_ENGLISH, help_xx, DING_PACKAGE, l10n_xx)
    return (HELP_ENGLISH, help_xx, l10n_xx)


def licenses_for(language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """``{source: licence}`` of the ``language``-English corpus, for stats.json and the model card."""
    licences = {
        "help": f"MPL-2.0 (LibreOffice help, Debian packages {HELP_ENGLISH} and libreoffice-help-{language})",
        "ding": f"GPL-2.0-or-later (Ding dictionary by Frank Richter, Debian package {DING_PACKAGE})",
        "ui": f"MPL-2.0 (LibreOffice interface strings, Debian package libreoffice-l10n-{language})",
    }
    if language != "de":
        del licences["ding"]
    return licences


PACKAGES = packages_for(DEFAULT_LANGUAGE)
LICENSES = licenses_for(DEFAULT_LANGUAGE)
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


def _run_apt(args: list[str], cwd: str | None, packages: tuple[str, ...] = PACKAGES) -> str:
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise CorpusBuildError(
            f"`{' '.join(args)}` could not run: {error}. The corpus is built from Debian packages; run on a "
            "Debian or Ubuntu machine, or download the .deb files of "
            f"{', '.join(packages)} elsewhere and pass --deb_dir."
        ) from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise CorpusBuildError(
            f"`{' '.join(args)}` failed with exit code {result.returncode}: {' / '.join(detail)}. "
            "Building the corpus needs Debian's package archive: check the network to the archive, and run "
            "as root (or with sudo) if `apt-get update` has never run on this machine. Alternatively download "
            f"the .deb files of {', '.join(packages)} elsewhere and pass --deb_dir."
        )
    return result.stdout


def fetch_packages(cache_dir: str = DEFAULT_CACHE_DIR, packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Return ``{package: path to .deb}``, downloading with ``apt-get download`` what the cache lacks.

    Runs ``apt-get update`` first when the package lists are missing. A rerun with the cache in
    place runs no apt command at all.
    """
    os.makedirs(cache_dir, exist_ok=True)
    debs = {p: _cached_deb(cache_dir, p) for p in packages}
    missing = [p for p, path in debs.items() if path is None]
    if missing:
        if not _apt_lists_present():
            _run_apt(["apt-get", "update"], cache_dir, packages)
        logger.info("Downloading %s into %s", ", ".join(missing), cache_dir)
        _run_apt(["apt-get", "download", *missing], cache_dir, packages)
        for package in missing:
            debs[package] = _cached_deb(cache_dir, package)
            if debs[package] is None:
                raise CorpusBuildError(
                    f"apt-get download reported success but no {package}_*.deb is in {cache_dir}; "
                    "check that the folder is writable and rerun."
                )
    return debs


# --------------------------------------------------------------------------------------------
# Language pairs (read from the package archive)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguagePair:
    """A translation direction between English and one language of LibreOffice's help (``fr-en``, ``en-fr``).

    ``language`` is the other side, spelled as in the Debian package names (``fr``, ``pt-br``, ``zh-cn``); it
    is also the corpus's language key (``train.fr``, ``translation["fr"]``). Both directions use one corpus.
    """

    source: str
    target: str

    @property
    def language(self) -> str:
        return self.target if self.source == ENGLISH else self.source

    @property
    def corpus_name(self) -> str:
        """The corpus's name, the same for both directions (``fr-en``)."""
        return f"{self.language}-{ENGLISH}"


def _apt_output(args: list[str]) -> str:
    if not _apt_lists_present():
        _run_apt(["apt-get", "update"], None)
    return _run_apt(args, None)


def archive_languages() -> tuple[list[str], dict[str, str]]:
    """The languages whose help and interface packages are both in the archive, and those left out with why.

    Read from the package archive (``apt-cache``), not from a kept list. A help package that depends on
    another language's help package ships that language's pages (Debian 12's ``libreoffice-help-sk`` links
    its folder to Czech): it is left out, with the reason.
    """
    help_languages, ui_languages = (
        {name.removeprefix(prefix) for name in _apt_output(["apt-cache", "pkgnames", prefix]).split()}
        for prefix in ("libreoffice-help-", "libreoffice-l10n-")
    )
    candidates = sorted((help_languages & ui_languages) - {"en-us", "en-gb", "en-za", "common"})
    left_out: dict[str, str] = {}
    if candidates:
        shown = _apt_output(["apt-cache", "show", "--no-all-versions", *(f"libreoffice-help-{x}" for x in candidates)])
        for record in shown.split("\n\n"):
            fields = dict(re.findall(r"^(Package|Depends): (.*)$", record, flags=re.M))
            language = fields.get("Package", "").removeprefix("libreoffice-help-")
            borrowed = re.findall(r"libreoffice-help-([a-z-]+)", fields.get("Depends", ""))
            borrowed = [b for b in borrowed if b not in ("common", language)]
            if language in candidates and borrowed:
                left_out[language] = f"libreoffice-help-{language} ships the pages of libreoffice-help-{borrowed[0]}"
    return [x for x in candidates if x not in left_out], left_out


def available_pairs() -> list[str]:
    """Every pair ``prepare --pair`` builds: ``XX-en`` and ``en-XX`` for each language of [`archive_languages`]."""
    languages, _ = archive_languages()
    return [name for x in languages for name in (f"{x}-{ENGLISH}", f"{ENGLISH}-{x}")]


def _split_pair(text: str) -> LanguagePair | None:
    """``fr-en`` -> ``LanguagePair("fr", "en")`` by shape alone (one side English), else None."""
    if text.endswith(f"-{ENGLISH}") and len(text) > 3:
        return LanguagePair(text[: -len(ENGLISH) - 1], ENGLISH)
    if text.startswith(f"{ENGLISH}-") and len(text) > 3:
        return LanguagePair(ENGLISH, text[len(ENGLISH) + 1 :])
    return None


def parse_pair(text: str, languages: list[str] | None = None, check_archive: bool = True) -> LanguagePair:
    """``"fr-en"`` or ``"en-fr"`` as a [`LanguagePair`]; a pair that cannot be built is a [`CorpusBuildError`]
    naming the pairs that can. ``languages`` defaults to the archive's ([`archive_languages`]; ``de`` needs no
    look-up); ``check_archive=False`` checks the shape only (the .deb files at hand decide, ``--deb_dir``)."""
    text = text.strip().lower()
    pair = _split_pair(text)
    if (
        pair is not None
        and pair.language != ENGLISH
        and (not check_archive or (pair.language == DEFAULT_LANGUAGE and languages is None))
    ):
        return pair
    left_out: dict[str, str] = {}
    if languages is None:
        languages, left_out = archive_languages()
    if pair is not None and pair.language in languages:
        return pair
    why = ""
    if pair is not None and pair.language in left_out:
        why = f" ({left_out[pair.language]})"
    elif pair is None or pair.language == ENGLISH:
        why = " (one side must be English, the other another language: each corpus pairs a language with English)"
    names = ", ".join(f"{x}-{ENGLISH}" for x in languages)
    raise CorpusBuildError(
        f"--pair {text} cannot be built{why}. Available: {names}, and each reversed (en-XX); "
        "`hf-reservoir prepare --list_pairs` prints them."
    )


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


@dataclass(frozen=True)
class ScriptRules:
    """How pairs of one language with English are filtered; measured, not guessed (see [`measure_help_rules`]).

    Args:
        length_ratio (`tuple[float, float]`): the range of ``len(xx) / len(en)`` in characters that is kept.
        spaced (`bool`): whether the language puts spaces between words. Where it does not (Chinese, Japanese,
            Khmer, Dzongkha), its side has no word-count limit: the English word counts and the character ratio
            bound the pair.
        untranslated (`str`): ``"identical"`` drops a pair whose two sides are the same string (German's rule);
            ``"fallback"`` also drops those equal after [`english_key`] normalisation and, for a language
            written in another script, a side with no character outside ASCII: the help's English fallback.
        max_words (`int`): the most words on the language's side (spaced languages).
    """

    length_ratio: tuple[float, float]
    spaced: bool = True
    untranslated: str = "fallback"
    max_words: int = 120

    def to_dict(self) -> dict:
        return {
            "length_ratio": list(self.length_ratio),
            "spaced": self.spaced,
            "untranslated": self.untranslated,
            "max_words": self.max_words if self.spaced else None,
        }


# The central 99% of len(xx) / len(en) (0.5th and 99.5th percentiles, rounded outward to 0.05) over the id-paired
# help paragraphs with 3 or more English words, untranslated ones left out, measured with `measure_help_rules` on
# the LibreOffice 7.4.7-1+deb12u14 packages of Debian 12 (2026-12-05). German keeps the 0.4-2.5 range measured
# earlier on all four of its sources (its help alone gives 0.60-2.25); its corpus is unchanged by the other pairs.
LENGTH_RATIOS = {
    "ca": (0.75, 2.00), "cs": (0.55, 1.70), "da": (0.65, 1.70), "de": (0.40, 2.50), "dz": (0.60, 2.30),
    "el": (0.80, 2.05), "es": (0.70, 1.95), "et": (0.50, 1.85), "eu": (0.65, 1.85), "fi": (0.50, 1.90),
    "fr": (0.75, 2.05), "gl": (0.55, 2.00), "hi": (0.60, 1.75), "hu": (0.60, 2.20), "id": (0.60, 1.70),
    "it": (0.65, 2.15), "ja": (0.15, 1.25), "km": (0.50, 1.70), "ko": (0.20, 1.25), "nl": (0.70, 1.90),
    "om": (0.55, 1.90), "pl": (0.55, 1.90), "pt": (0.65, 1.90), "pt-br": (0.70, 1.90), "ru": (0.55, 2.10),
    "sl": (0.60, 1.85), "sv": (0.55, 2.05), "tr": (0.60, 2.55), "vi": (0.45, 1.80), "zh-cn": (0.15, 0.95),
    "zh-tw": (0.15, 1.00),
}  # fmt: skip
# Languages without spaces between words: the median ratio of word counts (xx / en) of the same paragraphs is
# 0.16-0.33 for these and 0.65-1.25 for every other language above (same measurement).
UNSPACED = frozenset({"dz", "ja", "km", "zh-cn", "zh-tw"})
# Languages not written in the Latin alphabet (a fact of the script): an all-ASCII side is English left in place.
NON_LATIN = frozenset({"dz", "el", "hi", "ja", "km", "ko", "ru", "zh-cn", "zh-tw"})
UNSPACED_WORD_RATIO = 0.5


def rules_for(language: str) -> ScriptRules | None:
    """The measured [`ScriptRules`] of ``language``, or None for a language the table lacks (the build then
    measures them on its own help pages, [`measure_help_rules`])."""
    if language not in LENGTH_RATIOS:
        return None
    if language == DEFAULT_LANGUAGE:
        return ScriptRules(LENGTH_RATIOS[language], spaced=True, untranslated="identical")
    return ScriptRules(LENGTH_RATIOS[language], spaced=language not in UNSPACED)


def _is_untranslated(xx: str, en: str, language: str, rules: ScriptRules) -> bool:
    if xx == en:
        return True
    if rules.untranslated == "identical":
        return False
    if english_key(xx) == english_key(en):
        return True
    return language in NON_LATIN and xx.isascii()


def drop_reason(xx: str, en: str, language: str = DEFAULT_LANGUAGE, rules: ScriptRules | None = None) -> str | None:
    """Why a (cleaned) pair is dropped, or None to keep it. ``xx`` is the non-English side, in ``language`` (German
    by default); ``rules`` default to the measured ones of ``language``.

    Raises:
        ValueError: ``language`` has no measured rules (``LENGTH_RATIOS``) and none were given: another language's
            length range would drop or keep the wrong pairs.
    """
    rules = rules or rules_for(language)
    if rules is None:
        raise ValueError(
            f"No measured filtering rules for language {language!r} (hf_reservoir.corpus.LENGTH_RATIOS has "
            f"{', '.join(sorted(LENGTH_RATIOS))}); measure them on its help pairs, "
            "rules=measure_help_rules(pairs, language), and pass them as rules=, as the corpus build does."
        )
    if not xx or not en:
        return "empty"
    if _PLACEHOLDER.search(xx) or _PLACEHOLDER.search(en):
        return "placeholder_or_markup"
    if _is_untranslated(xx, en, language, rules):
        return "untranslated"
    en_words = len(en.split())
    if en_words < 3:
        return "too_short"
    if en_words > 80 or (rules.spaced and len(xx.split()) > rules.max_words):
        return "too_long"
    low, high = rules.length_ratio
    if not low <= len(xx) / len(en) <= high:
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


def _locale_dir(language: str, separator: str) -> str:
    """The package's folder name of ``language``: ``pt-br`` -> ``pt-BR`` (help) or ``pt_BR`` (interface)."""
    head, _, region = language.partition("-")
    return f"{head}{separator}{region.upper()}" if region else head


# A sentence ends at . ! ? before a space and a capital letter, or at a full-width 。！？ (no space follows there).
_SENTENCE_END_ANY = re.compile(r"(?<=[.!?])\s+(?=[^\W\d_])|(?<=[。！？])\s*(?=\S)")


def split_sentences(text: str, language: str = ENGLISH) -> list[str]:
    """``text`` cut into sentences. German and English keep the rule their corpus was built with (a capital
    A-Z or an umlaut after ``. ! ?`` and a space); other languages cut before any capital letter of their
    script, and after 。！？ where no space follows."""
    if language in (ENGLISH, DEFAULT_LANGUAGE):
        return _SENTENCE_END.split(text)
    pieces, start = [], 0
    for match in _SENTENCE_END_ANY.finditer(text):
        if text[match.start() - 1] in ".!?" and not text[match.end()].isupper():  # a letter follows, not a capital
            continue
        pieces.append(text[start : match.start()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def help_pairs(root: str, language: str = DEFAULT_LANGUAGE) -> list[tuple[str, str]]:
    """Help paragraphs paired by (file, id); split into sentences where both sides agree."""
    en_root = os.path.join(root, "usr/share/libreoffice/help/en-US")
    xx_root = os.path.join(root, "usr/share/libreoffice/help", _locale_dir(language, "-"))
    if not os.path.isdir(xx_root):
        raise CorpusBuildError(
            f"libreoffice-help-{language} holds no help/{_locale_dir(language, '-')} folder; the package may have "
            "changed its layout. `hf-reservoir prepare --list_pairs` shows the pairs that build."
        )
    if os.path.islink(xx_root):
        raise CorpusBuildError(
            f"libreoffice-help-{language} links its help folder to {os.readlink(xx_root)}: it holds another "
            f"language's pages, not {language}. Pick another pair (`hf-reservoir prepare --list_pairs`)."
        )
    pairs = []
    for en_path in sorted(glob.glob(os.path.join(en_root, "text", "**", "*.html"), recursive=True)):
        xx_path = os.path.join(xx_root, os.path.relpath(en_path, en_root))
        if not os.path.exists(xx_path):
            continue
        en_pars, xx_pars = _paragraphs(en_path), _paragraphs(xx_path)
        for element_id, en in en_pars.items():
            xx = xx_pars.get(element_id)
            if xx is None:
                continue
            en_sents, xx_sents = split_sentences(en), split_sentences(xx, language)
            if len(en_sents) == len(xx_sents) > 1:
                pairs.extend(zip(xx_sents, en_sents))
            else:
                pairs.append((xx, en))
    return pairs


def measure_help_rules(pairs: list[tuple[str, str]], language: str) -> ScriptRules:
    """[`ScriptRules`] measured on the help pairs of ``language`` ([`help_pairs`]): the central 99% of the
    character ratio (0.5th-99.5th percentiles, rounded outward to 0.05) over paragraphs with 3 or more English
    words that are translated, and spaced unless the median word-count ratio is below 0.5. ``LENGTH_RATIOS`` and
    ``UNSPACED`` hold its results for the packages measured; a build uses it for a language they lack."""
    import math
    import statistics

    untranslated_rule = ScriptRules((0.0, math.inf))  # only its ``untranslated`` rule is used here
    ratios, word_ratios = [], []
    for xx, en in pairs:
        if not xx or not en or _is_untranslated(xx, en, language, untranslated_rule) or len(en.split()) < 3:
            continue
        ratios.append(len(xx) / len(en))
        word_ratios.append(len(xx.split()) / len(en.split()))
    if len(ratios) < 200:
        raise CorpusBuildError(
            f"libreoffice-help-{language} has {len(ratios)} translated paragraphs, too few to measure its length "
            "ratio; build another pair."
        )
    cuts = statistics.quantiles(ratios, n=200)
    low, high = math.floor(cuts[0] * 20) / 20, math.ceil(cuts[-1] * 20) / 20
    return ScriptRules((low, high), spaced=statistics.median(word_ratios) >= UNSPACED_WORD_RATIO)


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


def ui_pairs(root: str, language: str = DEFAULT_LANGUAGE) -> list[tuple[str, str]]:
    """Interface strings from the gettext catalogues (singular forms, accelerators stripped)."""
    pairs = []
    mo_dir = os.path.join(root, "usr/lib/libreoffice/program/resource", _locale_dir(language, "_"), "LC_MESSAGES")
    strip = str.maketrans("", "", "~_&")
    for path in sorted(glob.glob(os.path.join(mo_dir, "*.mo"))):
        with open(path, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
        for key in sorted(catalog, key=str):
            msgid = key[0] if isinstance(key, tuple) else key
            if isinstance(key, tuple) and key[1] != 0 or not msgid:
                continue
            msgid = msgid.split("\x04", 1)[-1]
            pairs.append((clean_text(catalog[key].translate(strip)), clean_text(msgid.translate(strip))))
    return pairs


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


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
    measured = "hf_reservoir.corpus.LENGTH_RATIOS"
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
