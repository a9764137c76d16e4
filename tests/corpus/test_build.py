import json
import os

import pytest

from hf_reservoir.corpus import build as corpus_build
from hf_reservoir.corpus import cleaning as corpus_cleaning
from hf_reservoir.corpus import packages as corpus_packages
from hf_reservoir.corpus.cleaning import english_key, split_of
from hf_reservoir.corpus.packages import CorpusBuildError


def test_existing_corpus_is_not_overwritten(tmp_path):
    (tmp_path / "stats.json").write_text("{}")
    with pytest.raises(CorpusBuildError, match="overwrite"):
        corpus_build.build_corpus(str(tmp_path))


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

    monkeypatch.setattr(corpus_build, "build_corpus", slow_build)
    target = str(tmp_path / "data" / "de-en")
    built = []
    threads = [threading.Thread(target=lambda: built.append(corpus_build.build_corpus_once(target))) for _ in range(4)]
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
    assert set(stats["packages"]) == set(corpus_packages.PACKAGES) and all(stats["packages"].values())
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
    corpus_build.build_corpus(str(again))
    for root, _, files in os.walk(corpus_dir):
        for name in files:
            first = os.path.join(root, name)
            second = os.path.join(again, os.path.relpath(first, corpus_dir))
            with open(first, "rb") as a, open(second, "rb") as b:
                assert a.read() == b.read(), first


# --------------------------------------------------------------------------------------------
# Other languages than German
# --------------------------------------------------------------------------------------------


def test_bleu_tokenisation_follows_the_target_language():
    from hf_reservoir.evaluation.metrics import bleu_tokenize, corpus_scores, score_signatures

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
    assert set(stats["packages"]) == set(corpus_packages.packages_for("fr")) and "ding" not in stats["kept"]
    assert stats["splits"]["train"] >= 30_000 and stats["untranslated"]["help"] > 1_000
    assert stats["rules"]["length_ratio"] == list(corpus_cleaning.LENGTH_RATIOS["fr"]) and stats["rules"]["spaced"]
    corpus = load_from_disk(str(fr_corpus_dir / "dataset"))
    assert set(corpus["test"][0]["translation"]) == {"fr", "en"}
    assert (fr_corpus_dir / "test.fr").read_text(encoding="utf-8").splitlines() == [
        p["fr"] for p in corpus["test"]["translation"]
    ]
    for split in ("train", "validation", "test"):
        assert all(split_of(english_key(p["en"])) == split for p in corpus[split]["translation"])
    german_test = set((corpus_dir / "test.en").read_text(encoding="utf-8").splitlines())
    french_test = set((fr_corpus_dir / "test.en").read_text(encoding="utf-8").splitlines())
    assert len(german_test & french_test) > 200  # the multi-way test set: help and interface sentences in both
