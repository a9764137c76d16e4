"""Fixtures of the probing tests: a tiny trained model on a small corpus, and a model whose encoder keeps word
order."""

import random

import pytest

from tests.conftest import WORDS_DE, save_tiny_model_with_tokenizer

WORDS = "Haus Baum Wasser gehen sehen klein groß rot schnell Tisch Fenster öffnen schließen Datei Ordner".split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))) + "."


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    """A text corpus of 1,200 made-up German sentences and a tiny untrained `LLRLRLL` model with its tokenizer."""
    rng = random.Random(0)
    german = [sentence(rng) for _ in range(1200)]
    corpus = tmp_path_factory.mktemp("corpus")
    for split, rows in (("train", german), ("validation", german[:20]), ("test", german[20:40])):
        (corpus / f"{split}.de").write_text("\n".join(rows) + "\n")
        (corpus / f"{split}.en").write_text("\n".join(r.upper() for r in rows) + "\n")
    folder = tmp_path_factory.mktemp("run") / "model"
    save_tiny_model_with_tokenizer(folder, german, num_encoder_reservoir_layers=2)
    return corpus, folder, german


# Sentences with a strict word order (article, noun, verb, adverb): swapping two adjacent words is visible from the
# two words themselves, so the order task can succeed wherever the states keep the words apart.
ARTICLES, NOUNS = "der die das".split(), "Haus Baum Wasser Tisch Fenster Datei Ordner".split()
VERBS, ADVERBS = "öffnet schließt sieht geht".split(), "schnell langsam gern oft".split()


@pytest.fixture(scope="module")
def ordered_model(tmp_path_factory):
    rng = random.Random(3)
    sentences = [
        " ".join([rng.choice(ARTICLES), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(ADVERBS)]) + "."
        for _ in range(800)
    ]
    folder = tmp_path_factory.mktemp("ordered") / "model"
    filler = [" ".join(rng.sample(WORDS_DE, 8)) for _ in range(400)]  # text enough for a 300-piece tokenizer
    save_tiny_model_with_tokenizer(folder, sentences + filler, num_encoder_reservoir_layers=2)
    from hf_reservoir.evaluation.inference import load_for_inference

    model, tokenizer = load_for_inference(str(folder))
    return model, tokenizer, sentences


def bag_of_words(module, args, output):
    """A forward hook that makes a layer's output its input's mean over the sentence at every position: a bag of the
    embedded words (their positions added in, summed alike in either order), so word order is gone."""
    states = output[0] if isinstance(output, tuple) else output
    pooled = args[0].mean(dim=1, keepdim=True).expand_as(states)
    return (pooled, *output[1:]) if isinstance(output, tuple) else pooled
