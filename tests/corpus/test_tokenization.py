import pytest

from hf_reservoir.corpus.loading import load_parallel_corpus
from hf_reservoir.corpus.tokenization import load_tokenizer, normalize_for_round_trip

pytestmark = pytest.mark.slow


def test_round_trip_on_the_corpus_and_reload(corpus_dir, tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    assert {"source.spm", "target.spm", "vocab.json"} <= {p.name for p in tokenizer_dir.iterdir()}
    corpus = load_parallel_corpus(str(corpus_dir))
    pairs = list(corpus["validation"]["translation"]) + list(corpus["train"].select(range(2000))["translation"])
    for pair in pairs:
        source_ids = tokenizer(pair["de"])["input_ids"]
        target_ids = tokenizer(text_target=pair["en"])["input_ids"]
        assert tokenizer.unk_token_id not in source_ids + target_ids
        assert tokenizer.decode(source_ids, skip_special_tokens=True) == normalize_for_round_trip(pair["de"])
        assert tokenizer.decode(target_ids, skip_special_tokens=True) == normalize_for_round_trip(pair["en"])
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path))
    text = pairs[0]["de"]
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.pad_token_id == tokenizer.pad_token_id and len(reloaded) == len(tokenizer) == 2000


def test_unseen_characters_round_trip_through_byte_fallback(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    text = "Ωμέγα 漢字 🙂 — ok"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == normalize_for_round_trip(text)


def test_sacremoses_choice_is_pinned(tokenizer_dir):
    # sacremoses is not a dependency; whether or not it is installed, normalize() is the identity.
    tokenizer = load_tokenizer(str(tokenizer_dir))
    text = "„Hallo“ – sagte er…  «gut»"
    assert tokenizer.normalize(text) == text


def test_separate_vocabularies(corpus_dir, tmp_path):
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    corpus = load_parallel_corpus(str(corpus_dir), "en", "de")
    small = corpus["train"].select(range(3000))
    tokenizer = train_marian_tokenizer(small, "en", "de", str(tmp_path), vocab_size=500, joint=False)
    assert (tmp_path / "target_vocab.json").exists() and tokenizer.separate_vocabs
    ids = tokenizer(text_target="Das Haus ist alt.")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Das Haus ist alt."
