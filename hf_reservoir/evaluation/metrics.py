"""BLEU and chrF: sacrebleu's corpus scores on detokenised text, usable offline.

``evaluate.load("sacrebleu")`` fetches its script from the Hub and fails offline
(huggingface/evaluate#565), so the metric is sacrebleu called directly, and the ``evaluate``
package is not a dependency. [`corpus_scores`] is the one place
that computes BLEU for training, the sweep report and the model card.
"""

from __future__ import annotations

import functools
import logging
import math

import sacrebleu

logger = logging.getLogger(__name__)

# BLEU's tokenisation by target language: sacrebleu's recommended one (its own defaults for zh, ja and ko), 13a
# for the rest. Khmer and Dzongkha write no spaces between words and sacrebleu's tokenizers for them (flores200)
# download a model, so they are scored on characters. ja-mecab and ko-mecab need MeCab (`pip install
# hf-reservoir[ja]` for Japanese); without it Japanese falls back to characters and Korean to 13a (it has spaces),
# with a warning, and the signature records what was used. chrF needs no tokenisation and is always computed.
BLEU_TOKENIZERS = {
    "zh": "zh",
    "zh-cn": "zh",
    "zh-tw": "zh",
    "ja": "ja-mecab",
    "ko": "ko-mecab",
    "km": "char",
    "dz": "char",
}
BLEU_FALLBACKS = {"ja-mecab": "char", "ko-mecab": "13a"}


@functools.cache
def _tokenizer_works(name: str) -> bool:
    try:
        sacrebleu.BLEU(tokenize=name).corpus_score(["a b"], [["a b"]])
    except Exception:  # sacrebleu raises ImportError, RuntimeError or its own errors when MeCab is missing
        return False
    return True


@functools.cache
def bleu_tokenize(target_lang: str | None = None) -> str:
    """sacrebleu's tokenisation for BLEU on ``target_lang`` text ([`BLEU_TOKENIZERS`]; 13a for English and
    unknown languages)."""
    name = BLEU_TOKENIZERS.get((target_lang or "en").lower(), "13a")
    if name in BLEU_FALLBACKS and not _tokenizer_works(name):
        fallback = BLEU_FALLBACKS[name]
        logger.warning(
            "BLEU on %s text would use sacrebleu's %s tokenizer, which needs MeCab (pip install 'sacrebleu[%s]'); "
            "scoring with %s instead (the signature says so).",
            target_lang,
            name,
            name[:2],
            fallback,
        )
        name = fallback
    return name


def corpus_scores(predictions: list[str], references: list[str], target_lang: str | None = None) -> dict[str, float]:
    """sacrebleu corpus BLEU (the target language's tokenisation, [`bleu_tokenize`]; exp smoothing) and chrF on
    detokenised strings.

    Args:
        predictions (`list[str]`): system outputs, one per segment.
        references (`list[str]`): one reference per segment.
        target_lang (`str`, *optional*): the language of the text (13a tokenisation when unset or ``en``).

    Returns:
        `dict`: ``{"bleu": ..., "chrf": ...}`` on the 0-100 scale.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions and {len(references)} references; give one reference per prediction."
        )
    bleu = sacrebleu.BLEU(tokenize=bleu_tokenize(target_lang)).corpus_score(predictions, [references])
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


def score_signatures(target_lang: str | None = None) -> dict[str, str]:
    """sacrebleu's signatures of the scores [`corpus_scores`] computes (one reference per segment)."""
    signatures = {}
    for name, scorer in (("bleu", sacrebleu.BLEU(tokenize=bleu_tokenize(target_lang))), ("chrf", sacrebleu.CHRF())):
        scorer.corpus_score(["a"], [["a"]])  # the signature knows the reference count only after scoring
        signatures[name] = str(scorer.get_signature())
    return signatures


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


def scores_by_source(
    hypotheses: list[str], references: list[str], sources: list[str], target_lang: str | None = None
) -> dict:
    """Corpus BLEU and chrF per corpus source (help, ding, ui)."""
    result = {}
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        result[source] = {
            "pairs": len(idx),
            **corpus_scores([hypotheses[i] for i in idx], [references[i] for i in idx], target_lang),
        }
    return result


def format_value(value, digits: int = 2) -> str:
    """A number for a table or a card: ``digits`` decimals for floats, ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
