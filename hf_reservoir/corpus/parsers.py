"""Parsers: sentence pairs from LibreOffice help pages, the Ding dictionary and gettext catalogues."""

from __future__ import annotations

import gettext
import glob
import html
import os
import re
from html.parser import HTMLParser

from .cleaning import _SENTENCE_END, UNSPACED_WORD_RATIO, ScriptRules, _is_untranslated, clean_text
from .packages import DEFAULT_LANGUAGE, ENGLISH, CorpusBuildError


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
