import json
import os
import stat
import subprocess
import sys

import pytest

from hf_reservoir import corpus as corpus_module
from hf_reservoir.corpus import (
    CorpusBuildError,
    ScriptRules,
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
        ("Open the file now", "Open the file now", "untranslated"),
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


# --------------------------------------------------------------------------------------------
# Other languages than German
# --------------------------------------------------------------------------------------------


def write_help(root, language_dir: str, texts: list[str | None], name: str = "page.html") -> None:
    """One help page whose paragraph ``i`` (``par_id{i}``) holds ``texts[i]`` (None: the paragraph is absent)."""
    folder = root / f"usr/share/libreoffice/help/{language_dir}/text/shared"
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(f'<p id="par_id{i}" class="paragraph">{t}</p>' for i, t in enumerate(texts) if t is not None)
    (folder / name).write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def test_help_pairing_of_another_language(tmp_path):
    """French: pairs by id, a paragraph missing on one side gives no pair, an untranslated one (the help's English
    fallback) is dropped as untranslated, and the sentence split knows capitals outside A-Z."""
    write_help(
        tmp_path,
        "en-US",
        ["Choose Tools - Options.", "Only English here.", "This text was never translated.", "First one. Even here."],
    )
    write_help(
        tmp_path,
        "fr",
        ["Choisissez Outils - Options.", None, "This text was never translated.", "Première phrase. Également ici."],
    )
    pairs = help_pairs(str(tmp_path), "fr")
    assert ("Choisissez Outils - Options.", "Choose Tools - Options.") in pairs
    assert all(en != "Only English here." for _, en in pairs)
    assert ("Première phrase.", "First one.") in pairs and ("Également ici.", "Even here.") in pairs
    assert drop_reason("This text was never translated.", "This text was never translated.", "fr") == "untranslated"
    assert drop_reason("Choisissez Outils - Options.", "Choose Tools - Options.", "fr") is None
    with pytest.raises(ValueError, match="No measured filtering rules for language 'xx'.*measure_help_rules"):
        drop_reason("Ein Satz mit Wörtern.", "A sentence with words.", "xx")  # not German's range, silently
    rules = ScriptRules((0.1, 10.0))
    assert drop_reason("Ein Satz mit Wörtern.", "A sentence with words.", "xx", rules) is None


def test_japanese_is_filtered_on_characters(tmp_path):
    """Japanese has no spaces: its side has no word limit, the character ratio is Japanese's measured range (a
    German range would drop it), sentences split at 。, and an ASCII-only side is the English fallback."""
    from hf_reservoir.corpus import rules_for

    en = "Choose Tools - Options to open the dialog."
    ja = "オプションを選びます。"
    assert drop_reason(ja, en, "ja") is None  # 0.26 characters per English one: in Japanese's 0.15-1.25
    assert drop_reason(ja, en, "de") == drop_reason(ja, en, "fr") == "length_ratio"  # German's and French's ranges
    spaced = " ".join(["mot"] * 130)  # 130 words: too long for a spaced language; a Japanese side has no word limit
    english = " ".join(["word"] * 79)
    assert drop_reason(spaced, english, "fr") == "too_long"
    assert drop_reason("あ " * 130, english, "ja") is None
    assert drop_reason("Choose Tools - Options now.", en, "ja") == "untranslated"  # ASCII only: English left in
    assert not rules_for("ja").spaced and rules_for("fr").spaced and rules_for("de").untranslated == "identical"
    write_help(tmp_path, "en-US", ["Open the file. Save it now."])
    write_help(tmp_path, "ja", ["ファイルを開きます。保存します。"])
    expected = [("ファイルを開きます。", "Open the file."), ("保存します。", "Save it now.")]
    assert help_pairs(str(tmp_path), "ja") == expected


def test_a_help_folder_that_links_to_another_language_is_refused(tmp_path):
    write_help(tmp_path, "en-US", ["Choose Tools - Options."])
    write_help(tmp_path, "cs", ["Zvolte Nástroje - Volby."])
    os.symlink("cs", tmp_path / "usr/share/libreoffice/help/sk")
    with pytest.raises(CorpusBuildError, match="links its help folder to cs"):
        help_pairs(str(tmp_path), "sk")


def test_interface_strings_of_a_regional_language(tmp_path):
    """pt-br's catalogues live in resource/pt_BR (help in help/pt-BR): the folder names follow the package's."""
    import struct

    from hf_reservoir.corpus import ui_pairs

    folder = tmp_path / "usr/lib/libreoffice/program/resource/pt_BR/LC_MESSAGES"
    folder.mkdir(parents=True)
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", "ctx\x04~Open the file now": "~Abrir o arquivo agora"}
    keys = sorted(messages)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(messages[k].encode() + b"\0" for k in keys)
    n = len(keys)
    header = 28 + 16 * n
    id_offsets, str_offsets, pos = [], [], 0
    for k in keys:
        id_offsets.append((len(k.encode()), header + pos))
        pos += len(k.encode()) + 1
    pos2 = 0
    for k in keys:
        str_offsets.append((len(messages[k].encode()), header + len(ids) + pos2))
        pos2 += len(messages[k].encode()) + 1
    data = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    data += b"".join(struct.pack("<2I", *offset) for offset in id_offsets + str_offsets)
    (folder / "sw.mo").write_bytes(data + ids + strs)
    assert ui_pairs(str(tmp_path), "pt-br") == [("Abrir o arquivo agora", "Open the file now")]


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
    monkeypatch.setattr(corpus_module, "_apt_lists_present", lambda: True)


def test_pairs_come_from_the_archive(tmp_path, monkeypatch):
    """Languages with both a help and an l10n package; English help and a help package that ships another
    language's pages are left out, with the reason."""
    from hf_reservoir.corpus import archive_languages, available_pairs, parse_pair

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


def test_bleu_tokenisation_follows_the_target_language():
    from hf_reservoir.metrics import bleu_tokenize, corpus_scores, score_signatures

    assert bleu_tokenize("en") == bleu_tokenize("fr") == bleu_tokenize(None) == "13a"
    assert bleu_tokenize("zh-cn") == "zh" and bleu_tokenize("km") == "char"
    assert bleu_tokenize("ja") in ("ja-mecab", "char")  # char without MeCab (pip install hf-reservoir[ja])
    # Chinese without spaces: 13a sees one token per sentence, zh one per character.
    hypothesis, reference = ["我喜欢猫。"], ["我很喜欢猫。"]
    assert corpus_scores(hypothesis, reference, "zh-cn")["bleu"] > 0
    assert corpus_scores(hypothesis, reference, "en")["bleu"] == 0
    assert "tok:zh" in score_signatures("zh-cn")["bleu"] and "tok:13a" in score_signatures("de")["bleu"]


@pytest.mark.slow
def test_real_french_corpus_build(fr_corpus_dir, corpus_dir, tmp_path):
    """The real fr-en build (packages cached per machine, as for de-en): stats.json as documented, and every English
    sentence in the split its hash gives, so that fr-en and de-en share their English test sentences where both
    keep one."""
    from datasets import load_from_disk

    stats = json.loads((fr_corpus_dir / "stats.json").read_text())
    assert stats["pair"] == "fr-en" and stats["languages"] == ["fr", "en"]
    assert set(stats["packages"]) == set(corpus_module.packages_for("fr")) and "ding" not in stats["kept"]
    assert stats["splits"]["train"] >= 30_000 and stats["untranslated"]["help"] > 1_000
    assert stats["rules"]["length_ratio"] == list(corpus_module.LENGTH_RATIOS["fr"]) and stats["rules"]["spaced"]
    corpus = load_from_disk(str(fr_corpus_dir / "dataset"))
    assert set(corpus["test"][0]["translation"]) == {"fr", "en"}
    assert (fr_corpus_dir / "test.fr").read_text(encoding="utf-8").splitlines() == [
        p["fr"] for p in corpus["test"]["translation"]
    ]
    for split in ("train", "validation", "test"):
        assert all(corpus_module.split_of(english_key(p["en"])) == split for p in corpus[split]["translation"])
    german_test = set((corpus_dir / "test.en").read_text(encoding="utf-8").splitlines())
    french_test = set((fr_corpus_dir / "test.en").read_text(encoding="utf-8").splitlines())
    assert len(german_test & french_test) > 200  # the multi-way test set: help and interface sentences in both
