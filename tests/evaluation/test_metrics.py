import pytest
import sacrebleu

from hf_reservoir.evaluation.metrics import corpus_scores


def test_matches_sacrebleu_and_works_offline():
    predictions = ["The cat sat on the mat.", "Choose Tools - Options."]
    references = ["The cat sat on a mat.", "Choose Tools - Options - General."]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    scores = corpus_scores(predictions, references)
    assert scores["bleu"] == pytest.approx(expected)
    assert 0 < scores["chrf"] < 100
    assert corpus_scores(references, references)["bleu"] == pytest.approx(100)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one reference per prediction"):
        corpus_scores(["a"], ["a", "b"])
