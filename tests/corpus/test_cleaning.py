"""Cleaning rules (hf_reservoir/corpus/cleaning.py): normalisation, the hash split, drop reasons."""

import os
import subprocess
import sys

import pytest

from hf_reservoir.corpus.cleaning import clean_text, drop_reason, english_key, split_of


def test_clean_text_and_keys():
    assert clean_text("It\u2019s\u00a0a  \u200btest\u00ad.\ufeff") == "It's a test."
    assert english_key("Hello, World!!  Again") == english_key("hello world again") == "hello world again"
    # The split is a function of the sentence alone: the same in another process with another hash seed (Python's
    # own hash() would not be), so a rebuilt corpus keeps every sentence in its split.
    keys = [f"sentence {i}" for i in range(20000)]
    here = [split_of(k) for k in keys[:200]]
    code = (
        "from hf_reservoir.corpus.cleaning import split_of; "
        "print(' '.join(split_of(f'sentence {i}') for i in range(200)))"
    )
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
