"""BLEU and chrF: sacrebleu's corpus scores on detokenised text, usable offline.

``evaluate.load("sacrebleu")`` fetches its script from the Hub and fails offline
(huggingface/evaluate#565), so the metric lives here. :func:`corpus_scores` is the one place
that computes BLEU for training, the sweep report and the model card.
"""

from __future__ import annotations

import datasets
import evaluate
import sacrebleu


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """sacrebleu corpus BLEU (13a tokenisation, exp smoothing) and chrF on detokenised strings.

    Args:
        predictions (`list[str]`): system outputs, one per segment.
        references (`list[str]`): one reference per segment.

    Returns:
        `dict`: ``{"bleu": ..., "chrf": ...}`` on the 0-100 scale.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions and {len(references)} references; give one reference per prediction."
        )
    bleu = sacrebleu.corpus_bleu(predictions, [references])
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


class SacreBleuChrf(evaluate.Metric):
    """An ``evaluate`` metric with the ``sacrebleu`` interface that needs no network.

    Example:
        >>> metric = SacreBleuChrf()
        >>> metric.compute(predictions=["The cat sat."], references=[["The cat sat."]])["bleu"]
        100.00000000000004
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="sacrebleu corpus BLEU and chrF (offline)",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description="predictions: list[str]; references: list[list[str]] with one reference each",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        if any(len(refs) != 1 for refs in references):
            raise ValueError("SacreBleuChrf takes exactly one reference per prediction.")
        return corpus_scores(list(predictions), [refs[0] for refs in references])
