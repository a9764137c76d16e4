"""BLEU and chrF: sacrebleu's corpus scores on detokenised text, usable offline.

``evaluate.load("sacrebleu")`` fetches its script from the Hub and fails offline
(huggingface/evaluate#565), so the metric is sacrebleu called directly, and the ``evaluate``
package is not a dependency. [`corpus_scores`] is the one place
that computes BLEU for training, the sweep report and the model card.
"""

from __future__ import annotations

import math

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


def decode_pairs(tokenizer, predictions, labels) -> tuple[list[str], list[str]]:
    """Generated ids and label ids as detokenised text (negative ids and ``-100`` become padding)."""
    import numpy as np

    if isinstance(predictions, tuple):
        predictions = predictions[0]
    predictions = np.where(predictions < 0, tokenizer.pad_token_id, predictions)
    labels = np.where(labels == -100, tokenizer.pad_token_id, labels)
    hypotheses = [t.strip() for t in tokenizer.batch_decode(predictions, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    return hypotheses, references


def check_dataset_order(label_ids, dataset_labels: list[list[int]], pad_token_id: int) -> None:
    """Refuse per-source scores unless the predictions came back in the data set's order.

    Corpus BLEU does not care about order, but pairing hypotheses with the ``source`` column does: a
    sampler that reorders evaluation batches (as ``group_by_length`` did before
    ``ReservoirSeq2SeqTrainer`` kept evaluation in order) would silently score each source on the
    wrong sentences. The label ids that came back must equal the data set's labels, row by row, followed
    only by padding (``-100`` within a batch, ``pad_token_id`` where the Trainer joins batches).
    """
    padding = {-100, pad_token_id}
    if len(label_ids) != len(dataset_labels):
        raise RuntimeError(
            f"The test predictions hold {len(label_ids)} rows for {len(dataset_labels)} test pairs; per-source "
            "scores need exactly one prediction per pair, in order."
        )
    for row, (returned, labels) in enumerate(zip(label_ids, dataset_labels)):
        if [int(t) for t in returned[: len(labels)]] != list(labels) or any(
            int(t) not in padding for t in returned[len(labels) :]
        ):
            raise RuntimeError(
                f"Test prediction {row} does not belong to test pair {row}: the evaluation sampler reordered the "
                "split, so per-source scores would pair hypotheses with the wrong sources. Evaluate with a "
                "sequential sampler (ReservoirSeq2SeqTrainer does), or drop the source column."
            )


def scores_by_source(hypotheses: list[str], references: list[str], sources: list[str]) -> dict:
    """Corpus BLEU and chrF per corpus source (help, ding, ui)."""
    result = {}
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        result[source] = {
            "pairs": len(idx),
            **corpus_scores([hypotheses[i] for i in idx], [references[i] for i in idx]),
        }
    return result


def format_value(value, digits: int = 2) -> str:
    """A number for a table or a card: ``digits`` decimals for floats, ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
