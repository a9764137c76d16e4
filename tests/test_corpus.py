import json
import os
import stat
import subprocess
import sys

import pytest

from hf_reservoir import corpus as corpus_module
from hf_reservoir.corpus import (
    CorpusBuildError,
    clean_text,
    ding_pairs,
    drop_reason,
    english_key,
    fetch_packages,
    help_pairs,
    split_of,
)


def fake_apt(tmp_path, monkeypatch, script: str):
    """Put an `apt-get` that runs `script` first on PATH; it logs its arguments to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls.log\n{script}\n')
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "calls.log"


def test_clean_text_and_keys():
    assert clean_text("It\u2019s\u00a0a  \u200btest\u00ad.\ufeff") == "It's a test."
    assert english_key("Hello, World!!  Again") == english_key("hello world again") == "hello world again"
    # The split is a function of the sentence alone: the same in another process with another hash seed (Python's
    # own hash() would not be), so a rebuilt corpus keeps every sentence in its split.
    keys = [f"sentence {i}" for i in range(20000)]
    here = [split_of(k) for k in keys[:200]]
    code = "from hf_reservoir.corpus import split_of; print(' '.join(split_of(f'sentence {i}') for i in range(200)))"
    for seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}
        )
        assert other.stdout.split() == here
    counts = {name: sum(split_of(k) == name for k in keys) for name in ("train", "validation", "test")}
    assert 100 < counts["validation"] < 300 and 100 < counts["test"] < 300  # about 1% each


@pytest.mark.parametrize(
    "de, en, reason",
    [
        ("Wählen Sie %s aus.", "Choose %s here.", "placeholder_or_markup"),
        ("Datei {0} öffnen", "Open the file {0}", "placeholder_or_markup"),
        ("Klicken Sie <b>hier</b>.", "Click <b>here</b> now.", "placeholder_or_markup"),
        ("Open the file now", "Open the file now", "identical"),
        ("Datei öffnen", "Open file", "too_short"),
        ("A" * 10 + " b c", "A much much much longer English sentence here.", "length_ratio"),
        ("", "Open the file now.", "empty"),
        ("Öffnen Sie die Datei.", "Open the file.", None),
    ],
)
def test_drop_reasons(de, en, reason):
    assert drop_reason(de, en) == reason


def test_ding_parsing(tmp_path):
    trans = tmp_path / "usr/share/trans"
    trans.mkdir(parents=True)
    (trans / "de-en").write_text(
        "# comment :: line\n"
        "Bier {n} | Das ist nicht mein Bier. [übtr.] :: beer | That's not my pigeon. [fig.]\n"
        "jdm. helfen | Er hilft jdm. gern. :: to help sb. | He likes to help sb. out.\n"
        "Haus {n} | Das Haus ist/war alt. :: house | The house is/was old.\n"
        "Satz | Ein kurzer Satz; Ein Satz. :: sentence | A short sentence.; A sentence.\n",
        encoding="utf-8",
    )
    pairs, skipped = ding_pairs(str(tmp_path))
    assert pairs == [("Das ist nicht mein Bier.", "That's not my pigeon.")]
    assert (
        skipped == 7
    )  # 'Bier', 'jdm. helfen', the slot sentence, 'Haus', the '/' sentence, 'Satz', 'Ein kurzer Satz'


def test_help_pairing_by_file_and_id(tmp_path):
    for lang, texts in (
        ("en-US", ["Choose <emph>Tools</emph> - Options.", "First one. Second one.", "Only English."]),
        ("de", ["Wählen Sie <emph>Extras</emph> - Optionen.", "Erster Satz. Zweiter Satz.", None]),
    ):
        folder = tmp_path / f"usr/share/libreoffice/help/{lang}/text/shared"
        folder.mkdir(parents=True)
        body = "".join(f'<p id="par_id{i}" class="paragraph">{t}</p>' for i, t in enumerate(texts) if t is not None)
        (folder / "page.html").write_text(f"<html><body><h1 id='hd_id9'>Title &amp; more</h1>{body}</body></html>")
    pairs = help_pairs(str(tmp_path))
    assert ("Wählen Sie Extras - Optionen.", "Choose Tools - Options.") in pairs
    assert ("Erster Satz.", "First one.") in pairs and ("Zweiter Satz.", "Second one.") in pairs
    assert ("Title & more", "Title & more") in pairs
    assert all(en != "Only English." for _, en in pairs)


def test_apt_failure_gives_a_clear_error(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch, 'echo "E: Failed to fetch http://deb.debian.org/ Temporary failure" >&2; exit 100')
    monkeypatch.setattr(corpus_module, "_apt_lists_present", lambda: True)
    with pytest.raises(CorpusBuildError) as excinfo:
        fetch_packages(str(tmp_path / "cache"))
    message = str(excinfo.value)
    assert "apt-get download" in message and "exit code 100" in message and "Failed to fetch" in message
    assert "--deb_dir" in message


def test_apt_update_without_root_gives_a_clear_error(tmp_path, monkeypatch):
    calls = fake_apt(
        tmp_path, monkeypatch, 'echo "E: Could not open lock file - open (13: Permission denied)" >&2; exit 100'
    )
    monkeypatch.setattr(corpus_module, "_apt_lists_present", lambda: False)
    with pytest.raises(CorpusBuildError) as excinfo:
        fetch_packages(str(tmp_path / "cache"))
    assert calls.read_text().splitlines() == ["update"]
    assert "Permission denied" in str(excinfo.value) and "root" in str(excinfo.value)


def test_cached_packages_are_not_downloaded_again(tmp_path, monkeypatch):
    calls = fake_apt(tmp_path, monkeypatch, "exit 1")
    cache = tmp_path / "cache"
    cache.mkdir()
    for package in corpus_module.PACKAGES:
        (cache / f"{package}_1.0_all.deb").write_bytes(b"")
    debs = fetch_packages(str(cache))
    assert set(debs) == set(corpus_module.PACKAGES)
    assert not calls.exists()


def test_existing_corpus_is_not_overwritten(tmp_path):
    (tmp_path / "stats.json").write_text("{}")
    with pytest.raises(CorpusBuildError, match="overwrite"):
        corpus_module.build_corpus(str(tmp_path))


def test_runs_that_start_together_build_the_corpus_once(tmp_path, monkeypatch):
    """Four runs that find no corpus at once: one builds it, the others wait for it and build nothing."""
    import threading
    import time

    calls = []

    def slow_build(output_dir, **kwargs):
        calls.append(output_dir)
        time.sleep(0.3)  # long enough for every other caller to find no stats.json without the lock
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "stats.json"), "w", encoding="utf-8") as handle:
            handle.write("{}")

    monkeypatch.setattr(corpus_module, "build_corpus", slow_build)
    target = str(tmp_path / "data" / "de-en")
    built = []
    threads = [
        threading.Thread(target=lambda: built.append(corpus_module.build_corpus_once(target))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [target] and sorted(built) == [False, False, False, True]


@pytest.mark.slow
def test_real_corpus_build(corpus_dir, tmp_path):
    from datasets import load_from_disk

    stats = json.loads((corpus_dir / "stats.json").read_text())
    assert stats["splits"]["train"] >= 55_000
    assert 600 <= stats["splits"]["validation"] <= 700 and 600 <= stats["splits"]["test"] <= 700
    assert set(stats["packages"]) == set(corpus_module.PACKAGES) and all(stats["packages"].values())
    assert stats["dropped"]["help"]["duplicate"] > 5_000 and stats["dropped"]["help"]["empty"] > 0
    corpus = load_from_disk(str(corpus_dir / "dataset"))
    keys = {s: {english_key(p["en"]) for p in corpus[s]["translation"]} for s in ("train", "validation", "test")}
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert set(corpus["test"]["source"]) == {"help", "ding", "ui"}
    lines = (corpus_dir / "validation.en").read_text(encoding="utf-8").splitlines()
    assert lines == [p["en"] for p in corpus["validation"]["translation"]]

    # Determinism: a second build from the cached packages is byte-identical.
    again = tmp_path / "again"
    corpus_module.build_corpus(str(again))
    for root, _, files in os.walk(corpus_dir):
        for name in files:
            first = os.path.join(root, name)
            second = os.path.join(again, os.path.relpath(first, corpus_dir))
            with open(first, "rb") as a, open(second, "rb") as b:
                assert a.read() == b.read(), first
