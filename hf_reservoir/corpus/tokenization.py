"""SentencePiece models trained on the training split, wrapped as a real ``MarianTokenizer``.

Normalisation (documented, and what the round-trip test allows): SentencePiece's ``nmt_nfkc``
rule, i.e. Unicode NFKC plus collapsed whitespace. ``byte_fallback`` spells characters outside
the vocabulary as UTF-8 bytes, so nothing becomes ``<unk>`` and every string round-trips.

``sacremoses`` is deliberately *not* a dependency. When it is importable, transformers 5.x's
``MarianTokenizer`` builds a Moses punctuation normaliser for ``tokenizer.normalize()`` (measured
with 5.24: token ids do not change, ``normalize("„Hallo“")`` does). [`load_tokenizer`] pins
that normaliser to the identity, so our code behaves the same with and without the package.
"""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata

from ..models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig

# Marian's layout: </s> is 0 and <unk> 1. <pad> is 2 here (Marian puts it last); the model's
# pad_token_id and decoder_start_token_id come from the tokenizer, so nothing assumes a value.
SPECIAL_IDS = {"eos_id": 0, "unk_id": 1, "pad_id": 2, "bos_id": -1}


def normalize_for_round_trip(text: str) -> str:
    """What ``decode(encode(text))`` returns: NFKC with whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _train_spm(texts, prefix: str, vocab_size: int, model_type: str) -> None:
    import sentencepiece as spm

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as handle:
        for text in texts:
            handle.write(text.replace("\n", " ") + "\n")
        path = handle.name
    try:
        spm.SentencePieceTrainer.train(
            input=path,
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="nmt_nfkc",
            num_threads=1,  # deterministic
            shuffle_input_sentence=False,
            minloglevel=2,
            **SPECIAL_IDS,
        )
    except RuntimeError as error:  # e.g. "Vocabulary size is too high (8000). Please set it to a value <= 2311."
        raise ValueError(
            f"SentencePiece could not train a {vocab_size}-piece vocabulary on this data: {error}. Lower vocab_size "
            "to the limit it names, or train on more text."
        ) from error
    finally:
        os.unlink(path)


def _vocab(model_path: str) -> dict[str, int]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=model_path)
    return {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}


def train_marian_tokenizer(
    train_dataset,
    source_lang: str,
    target_lang: str,
    output_dir: str,
    vocab_size: int = 8000,
    joint: bool = True,
    model_type: str = "unigram",
):
    """Train SentencePiece on a training split and save a ``MarianTokenizer`` to ``output_dir``.

    Args:
        train_dataset (`datasets.Dataset`): rows with a ``translation`` dict.
        source_lang (`str`), target_lang (`str`): the language keys.
        output_dir (`str`): receives ``source.spm``, ``target.spm``, ``vocab.json`` (and
            ``target_vocab.json`` when ``joint=False``) and the tokenizer config.
        vocab_size (`int`): pieces per SentencePiece model.
        joint (`bool`): one vocabulary for both languages (the paper's shared-embedding setup);
            ``False`` trains one model per language (``separate_vocabs=True``).
        model_type (`str`): SentencePiece ``unigram`` (Marian's choice) or ``bpe``.

    Returns:
        `transformers.MarianTokenizer`.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte fallback alone needs 259 pieces; use >= 300.")
    pairs = train_dataset["translation"]
    with tempfile.TemporaryDirectory() as work:
        if joint:
            texts = (p[lang] for p in pairs for lang in (source_lang, target_lang))
            _train_spm(texts, f"{work}/joint", vocab_size, model_type)
            source_model = target_model = f"{work}/joint.model"
        else:
            _train_spm((p[source_lang] for p in pairs), f"{work}/source", vocab_size, model_type)
            _train_spm((p[target_lang] for p in pairs), f"{work}/target", vocab_size, model_type)
            source_model, target_model = f"{work}/source.model", f"{work}/target.model"
        _save_marian_tokenizer(work, source_model, target_model, source_lang, target_lang, joint, output_dir)
    return load_tokenizer(output_dir)


def _save_marian_tokenizer(
    work: str, source_model: str, target_model: str, source_lang: str, target_lang: str, joint: bool, output_dir: str
) -> None:
    """Wrap trained SentencePiece models (and their vocabularies) in a ``MarianTokenizer`` saved to ``output_dir``."""
    import warnings

    from transformers import MarianTokenizer

    vocab_path = f"{work}/vocab.json"
    with open(vocab_path, "w", encoding="utf-8") as handle:
        json.dump(_vocab(source_model), handle, ensure_ascii=False)
    target_vocab_path = None
    if not joint:
        target_vocab_path = f"{work}/target_vocab.json"
        with open(target_vocab_path, "w", encoding="utf-8") as handle:
            json.dump(_vocab(target_model), handle, ensure_ascii=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        tokenizer = MarianTokenizer(
            source_spm=source_model,
            target_spm=target_model,
            vocab=vocab_path,
            target_vocab_file=target_vocab_path,
            source_lang=source_lang,
            target_lang=target_lang,
            separate_vocabs=not joint,
            model_max_length=512,
        )
    tokenizer.save_pretrained(output_dir)


TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json")


def load_tokenizer(path: str):
    """Load a ``MarianTokenizer`` with the punctuation normaliser pinned off (see the module doc).

    A local folder that lacks one of its files, or holds a damaged one, is a ``ValueError`` naming the folder and
    what to do; SentencePiece's and the JSON reader's own errors say neither.
    """
    import warnings

    from transformers import MarianTokenizer

    if os.path.isdir(path):
        missing = [name for name in TOKENIZER_FILES if not os.path.isfile(os.path.join(path, name))]
        if missing:
            raise ValueError(
                f"the tokenizer in {path} lacks {', '.join(missing)}; copy the files from the folder that training "
                "wrote (OUTPUT_DIR/model or OUTPUT_DIR/tokenizer), or save the tokenizer again."
            )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        try:
            tokenizer = MarianTokenizer.from_pretrained(path)
        except (RuntimeError, OSError, TypeError, ValueError) as error:  # SentencePiece, JSON and file errors
            if not os.path.isdir(path):
                raise
            raise ValueError(
                f"the tokenizer in {path} could not be read ({' '.join(str(error).split())[:200]}): one of "
                f"{', '.join(TOKENIZER_FILES)} or tokenizer_config.json is damaged; copy the files from the folder "
                "that training wrote, or save the tokenizer again."
            ) from error
    tokenizer.punc_normalizer = lambda text: text
    return tokenizer


def check_tokenizer_matches_model(tokenizer, config: ReservoirMarianConfig) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embeddings or special tokens."""
    vocab = len(tokenizer)
    target_vocab = len(tokenizer.target_encoder) if getattr(tokenizer, "separate_vocabs", False) else vocab
    problems = []
    if vocab != config.vocab_size:
        problems.append(f"the tokenizer has {vocab} source tokens but the model's vocab_size is {config.vocab_size}")
    if target_vocab != config.decoder_vocab_size:
        problems.append(
            f"the tokenizer has {target_vocab} target tokens but decoder_vocab_size is {config.decoder_vocab_size}"
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        problems.append(f"pad ids differ (tokenizer {tokenizer.pad_token_id}, model {config.pad_token_id})")
    if tokenizer.eos_token_id != config.eos_token_id:
        problems.append(f"eos ids differ (tokenizer {tokenizer.eos_token_id}, model {config.eos_token_id})")
    if problems:
        raise ValueError(
            "The tokenizer does not match the model: " + "; ".join(problems) + ". Use the tokenizer the model was "
            "trained with, or train a new model from this tokenizer."
        )
