"""Cleaning rules: normalisation, the hash split, and per-script length and untranslated-text filters."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from .packages import DEFAULT_LANGUAGE

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
            f"No measured filtering rules for language {language!r} (hf_reservoir.corpus.cleaning.LENGTH_RATIOS has "
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
