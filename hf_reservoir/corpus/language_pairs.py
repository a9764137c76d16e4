"""Language pairs: which languages the Debian archive has LibreOffice help and interface packages for,
and how a pair such as ``fr-en`` is parsed and checked."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from .packages import DEFAULT_LANGUAGE, ENGLISH, CorpusBuildError, _apt_lists_present, _run_apt


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
