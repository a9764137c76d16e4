"""Parsers (hf_reservoir/corpus/parsers.py): help pages paired by file and id, Ding, interface strings, scripts."""

import os

import pytest

from hf_reservoir.corpus.cleaning import ScriptRules, drop_reason
from hf_reservoir.corpus.packages import CorpusBuildError
from hf_reservoir.corpus.parsers import ding_pairs, help_pairs


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
    from hf_reservoir.corpus.cleaning import rules_for

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

    from hf_reservoir.corpus.parsers import ui_pairs

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
