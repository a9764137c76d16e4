"""Translating and scoring with a saved model, without training it (``hf-reservoir translate`` / ``evaluate``).

Transformers v5 has no translation pipeline; :func:`translate` is the batched ``generate`` loop that
both commands use. Sentences are generated longest first, as during training, and returned in input order.
"""

from __future__ import annotations

import json
import os

import torch


def load_for_inference(model_name_or_path: str, device: str = "cpu"):
    """A saved model folder (or Hub id) and the tokenizer saved with it, ready to generate."""
    from .modeling_reservoir import ReservoirMarianMTModel
    from .tokenization import load_tokenizer
    from .training import check_tokenizer_matches_model

    if os.path.isdir(model_name_or_path) and not os.path.isfile(os.path.join(model_name_or_path, "vocab.json")):
        raise ValueError(
            f"{model_name_or_path} holds no tokenizer (no vocab.json); give the model folder that training wrote "
            "(OUTPUT_DIR/model), which holds both."
        )
    model = ReservoirMarianMTModel.from_pretrained(model_name_or_path).to(device).eval()
    tokenizer = load_tokenizer(model_name_or_path)
    check_tokenizer_matches_model(tokenizer, model.config)
    return model, tokenizer


def translate(
    model,
    tokenizer,
    sentences: list[str],
    num_beams: int | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    max_source_length: int | None = None,
) -> list[str]:
    """Translate ``sentences``; returns one detokenised hypothesis per sentence, in input order.

    Args:
        model: a seq2seq model; its ``generation_config`` decides what is not given here.
        tokenizer: the model's tokenizer.
        sentences (`list[str]`): source sentences.
        num_beams (`int`, *optional*): beams (default: the model's ``generation_config``, which training
            sets to the decoding its final scores used).
        batch_size (`int`): sentences per ``generate`` call.
        max_length (`int`, *optional*): longest output in tokens (default: the ``generation_config``'s).
        max_source_length (`int`, *optional*): truncate longer sources to this many tokens, as training does.
    """
    from .training import longest_first

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    if num_beams is not None and num_beams < 1:
        raise ValueError(f"num_beams={num_beams} must be at least 1; use 1 for greedy decoding.")
    truncation = {"max_length": max_source_length, "truncation": True} if max_source_length else {}
    encoded = tokenizer(sentences, **truncation)["input_ids"]
    order = longest_first(encoded)
    kwargs = {"num_beams": num_beams} if num_beams else {}
    if max_length:
        kwargs["max_length"] = max_length
    outputs: list[str] = [""] * len(sentences)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = tokenizer([sentences[i] for i in chunk], return_tensors="pt", padding=True, **truncation).to(device)
        with torch.no_grad():
            generated = model.generate(**batch, **kwargs)
        for index, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True)):
            outputs[index] = text.strip()
    return outputs


SIGNATURES = {"bleu": "BLEU", "chrf": "CHRF"}


def signature(metric: str, hypotheses: list[str], references: list[str]) -> str:
    """sacrebleu's signature of ``metric`` (it knows the reference count only after scoring once)."""
    import sacrebleu

    scorer = getattr(sacrebleu, metric)()
    scorer.corpus_score(hypotheses, [references])
    return str(scorer.get_signature())


def evaluate_saved_model(
    model_name_or_path: str,
    data_path: str,
    output_dir: str,
    split: str = "validation",
    source_lang: str = "de",
    target_lang: str = "en",
    data_format: str | None = None,
    num_beams: int | None = None,
    batch_size: int = 128,
    max_length: int | None = None,
    max_source_length: int | None = None,
    max_target_length: int | None = None,
    device: str = "cpu",
) -> dict:
    """Score a saved model on one split; write ``generated_predictions.txt`` and ``results.json``.

    The data comes through the same loader as training (a built corpus, text, TSV or JSONL files), so
    a split scores exactly as it did there: sacrebleu corpus BLEU and chrF (:func:`corpus_scores`),
    per source where the data has a ``source`` column. References are tokenised and decoded as training
    decodes its labels; ``max_source_length`` and ``max_target_length`` truncate as training did (default:
    no truncation), so that a split scores as training reported it.
    """
    from .data import load_parallel_corpus
    from .metrics import corpus_scores, scores_by_source

    corpus = load_parallel_corpus(data_path, source_lang, target_lang, data_format=data_format)
    if split not in corpus:
        raise ValueError(f"split={split!r} is not in {data_path}; use one of {sorted(corpus)}.")
    dataset = corpus[split]
    model, tokenizer = load_for_inference(model_name_or_path, device)
    sources = [pair[source_lang] for pair in dataset["translation"]]
    references = [pair[target_lang] for pair in dataset["translation"]]
    hypotheses = translate(model, tokenizer, sources, num_beams, batch_size, max_length, max_source_length)
    truncation = {"max_length": max_target_length, "truncation": True} if max_target_length else {}
    labels = tokenizer(text_target=references, **truncation)["input_ids"]
    references = [text.strip() for text in tokenizer.batch_decode(labels, skip_special_tokens=True)]
    beams = num_beams or model.generation_config.num_beams or 1
    report = {
        "model": model_name_or_path,
        "data": data_path,
        "split": split,
        "pairs": len(hypotheses),
        "num_beams": beams,
        **corpus_scores(hypotheses, references),
        "signature": {name: signature(metric, hypotheses, references) for name, metric in SIGNATURES.items()},
    }
    if "source" in dataset.column_names:
        report["by_source"] = scores_by_source(hypotheses, references, dataset["source"])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "generated_predictions.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(h.replace("\n", " ") + "\n" for h in hypotheses))
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return report
