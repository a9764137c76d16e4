import json

import pytest

from hf_reservoir.corpus.loading import DataError, load_parallel_corpus

PAIRS = [("Das Haus ist alt.", "The house is old."), ("Wir gehen heim.", "We go home."), ("Guten Tag!", "Good day!")]


def write_text(folder, splits=("train", "dev", "test"), pairs=PAIRS):
    folder.mkdir(exist_ok=True)
    for split in splits:
        (folder / f"{split}.de").write_text("".join(de + "\n" for de, _ in pairs), encoding="utf-8")
        (folder / f"{split}.en").write_text("".join(en + "\n" for _, en in pairs), encoding="utf-8")
    return folder


def check(corpus, source="de", target="en"):
    assert set(corpus) == {"train", "validation", "test"}
    first = corpus["train"][0]["translation"]
    assert first == {
        source: dict(zip("de en".split(), PAIRS[0]))[source],
        target: dict(zip("de en".split(), PAIRS[0]))[target],
    }


def test_parallel_text_both_directions(tmp_path):
    folder = write_text(tmp_path / "text")
    check(load_parallel_corpus(str(folder), "de", "en"))
    check(load_parallel_corpus(str(folder), "en", "de"), "en", "de")


def test_tsv(tmp_path):
    for split in ("train", "validation", "test"):
        rows = ["en\tde"] + [f"{en}\t{de}" for de, en in PAIRS]
        (tmp_path / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    check(load_parallel_corpus(str(tmp_path), "de", "en"))


def test_jsonl_flat_and_nested(tmp_path):
    for i, split in enumerate(("train", "validation", "test")):
        lines = [
            json.dumps({"de": de, "en": en}) if i % 2 else json.dumps({"translation": {"de": de, "en": en}})
            for de, en in PAIRS
        ]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    check(load_parallel_corpus(str(tmp_path), "de", "en"))


def test_hub_code_path_with_a_local_dataset_in_iwslt_format(tmp_path):
    # iwslt2017 / wmt16 rows are {"translation": {"de": ..., "en": ...}}; load_dataset reads the same
    # layout from a local folder, so this runs the Hub branch without a network.
    for split in ("train", "validation", "test"):
        rows = [json.dumps({"translation": {"de": de, "en": en}}) for de, en in PAIRS]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    check(load_parallel_corpus(str(tmp_path), "en", "de", data_format="hub"), "en", "de")


def test_hub_failure_names_the_data_set(monkeypatch):
    from tests.conftest import NETWORK_ATTEMPTS

    before = len(NETWORK_ATTEMPTS)
    with pytest.raises(DataError, match="iwslt2017"):
        load_parallel_corpus("iwslt2017", "de", "en", hub_config="iwslt2017-de-en")
    assert len(NETWORK_ATTEMPTS) == before  # refused offline, not by a failed connection


def test_empty_pairs_are_dropped_and_counted(tmp_path):
    folder = write_text(tmp_path / "text", pairs=PAIRS + [("   ", "Empty source."), ("Leer.", "")])
    stats = {}
    corpus = load_parallel_corpus(str(folder), "de", "en", stats=stats)
    assert len(corpus["train"]) == 3
    assert stats["dropped_empty"] == {"train": 2, "validation": 2, "test": 2}


def test_mismatched_line_counts(tmp_path):
    folder = write_text(tmp_path / "text")
    (folder / "train.en").write_text("One.\nTwo.\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        load_parallel_corpus(str(folder))
    message = str(excinfo.value)
    assert "train.de has 3 lines" in message and "train.en has 2" in message and "line 3" in message


def test_invalid_utf8(tmp_path):
    folder = write_text(tmp_path / "text")
    (folder / "test.de").write_bytes("Gut.\nSch\xf6n.\n".encode("latin-1"))
    with pytest.raises(DataError) as excinfo:
        load_parallel_corpus(str(folder))
    message = str(excinfo.value)
    assert "test.de" in message and "not valid UTF-8" in message and "line 2" in message and "iconv" in message


def test_missing_split(tmp_path):
    folder = write_text(tmp_path / "text", splits=("train", "test"))
    with pytest.raises(DataError) as excinfo:
        load_parallel_corpus(str(folder))
    assert "validation split is missing" in str(excinfo.value) and "dev.de" in str(excinfo.value)


def test_unknown_language_key(tmp_path):
    folder = write_text(tmp_path / "text")
    with pytest.raises(DataError, match=r"fr"):
        load_parallel_corpus(str(folder), "fr", "en")
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"de": "a", "en": "b"}) + "\n")
    with pytest.raises(DataError) as excinfo:
        load_parallel_corpus(str(tmp_path), "de", "fr")
    assert "line 1" in str(excinfo.value) and "'fr'" in str(excinfo.value)


def test_missing_path_and_same_languages(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_parallel_corpus(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="two different languages"):
        load_parallel_corpus(str(tmp_path), "de", "de")


@pytest.mark.slow
def test_built_corpus_loads_in_both_directions(corpus_dir):
    forward = load_parallel_corpus(str(corpus_dir), "de", "en")
    backward = load_parallel_corpus(str(corpus_dir), "en", "de")
    assert len(forward["train"]) == len(backward["train"]) >= 55_000
    assert forward["test"][0]["translation"] == backward["test"][0]["translation"]
    assert "source" in forward["test"].column_names
