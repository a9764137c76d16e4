"""Language pairs from the package archive (hf_reservoir/corpus/language_pairs.py) and the bad-pair error."""

import os
import stat

import pytest

from hf_reservoir.corpus import language_pairs as corpus_pairs
from hf_reservoir.corpus.packages import CorpusBuildError


def fake_apt_cache(tmp_path, monkeypatch, help_languages, ui_languages, depends=None):
    """An `apt-cache` on PATH that knows these help and l10n packages (``depends``: {language: other help})."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    records = "".join(
        f"Package: libreoffice-help-{x}\nDepends: libreoffice-common, "
        + (f"libreoffice-help-{depends[x]}, " if x in (depends or {}) else "")
        + "libreoffice-help-common\n\n"
        for x in help_languages
    )
    (tmp_path / "show.txt").write_text(records)
    script = bin_dir / "apt-cache"
    helps = " ".join("libreoffice-help-" + x for x in help_languages)
    uis = " ".join("libreoffice-l10n-" + x for x in ui_languages)
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = pkgnames ] && [ "$2" = libreoffice-help- ]; then printf "%s\\n" {helps}; fi\n'
        f'if [ "$1" = pkgnames ] && [ "$2" = libreoffice-l10n- ]; then printf "%s\\n" {uis}; fi\n'
        f'if [ "$1" = show ]; then cat {tmp_path}/show.txt; fi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(corpus_pairs, "_apt_lists_present", lambda: True)


def test_pairs_come_from_the_archive(tmp_path, monkeypatch):
    """Languages with both a help and an l10n package; English help and a help package that ships another
    language's pages are left out, with the reason."""
    from hf_reservoir.corpus.language_pairs import archive_languages, available_pairs, parse_pair

    fake_apt_cache(
        tmp_path,
        monkeypatch,
        help_languages=["common", "cs", "de", "en-us", "fr", "ja", "sk", "xh"],
        ui_languages=["cs", "de", "fr", "ja", "sk", "zu"],
        depends={"sk": "cs"},
    )
    languages, left_out = archive_languages()
    assert languages == ["cs", "de", "fr", "ja"] and "libreoffice-help-cs" in left_out["sk"]
    assert available_pairs() == ["cs-en", "en-cs", "de-en", "en-de", "fr-en", "en-fr", "ja-en", "en-ja"]
    assert parse_pair("en-ja").source == "en" and parse_pair("FR-en").language == "fr"
    for bad, why in (
        ("xh-en", "Available: cs-en, de-en, fr-en, ja-en"),
        ("de-fr", "one side must be English"),
        ("sk-en", "ships the pages of libreoffice-help-cs"),
        ("en-en", "one side must be English"),
    ):
        with pytest.raises(CorpusBuildError, match=why):
            parse_pair(bad)


def test_prepare_with_a_bad_pair_is_one_error_line(tmp_path, monkeypatch, capsys):
    from hf_reservoir.cli import main

    fake_apt_cache(tmp_path, monkeypatch, ["de", "en-us", "fr"], ["de", "fr"])
    assert main(["prepare", "--pair", "xx-en", "--output_dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --pair xx-en") and "de-en, fr-en" in error[0]
    assert not (tmp_path / "out").exists()
    assert main(["prepare", "--list-pairs"]) == 0
    assert capsys.readouterr().out.split() == ["de-en", "en-de", "fr-en", "en-fr"]
