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

import glob
import logging
import os
import subprocess

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
