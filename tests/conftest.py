import os
import random
import socket

# Nothing in the test suite may reach the Hub. huggingface_hub reads these once, when it is first imported, so they
# are set here, before anything below imports transformers (and it); subprocesses inherit them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_reservoir import ReservoirMarianConfig  # noqa: E402


class NetworkBlocked(OSError):
    """A test tried to open a connection to another machine."""


# Every attempt, for tests that check that a code path tried nothing. Loopback (DDP's rendezvous) and Unix
# sockets stay allowed.
NETWORK_ATTEMPTS: list = []
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _is_local(host) -> bool:
    return isinstance(host, str) and (host in ("localhost", "::1", "") or host.startswith("127."))


def _guard(address) -> None:
    if isinstance(address, tuple) and not _is_local(address[0]):
        NETWORK_ATTEMPTS.append(address)
        raise NetworkBlocked(f"a test tried to connect to {address}; tests must not use the network")


def _guarded_connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _guard(address)
    return _connect(sock, address)


def _guarded_connect_ex(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _guard(address)
    return _connect_ex(sock, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    _guard((host, "name lookup"))  # a name lookup is the first step of every download
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo

TINY = dict(
    vocab_size=96,
    d_model=32,
    encoder_layers=7,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    max_position_embeddings=64,
    pad_token_id=95,
    decoder_start_token_id=95,
    eos_token_id=0,
    forced_eos_token_id=0,
    dropout=0.0,
)


def tiny_config(**overrides) -> ReservoirMarianConfig:
    """A small config for fast tests; any field can be overridden."""
    return ReservoirMarianConfig(**{**TINY, **overrides})


@pytest.fixture
def batch():
    """Two source rows, the second right-padded, with labels."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 90, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    input_ids[1, 6:] = TINY["pad_token_id"]
    labels = torch.randint(1, 90, (2, 7), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Kept for code that reads the variables at call time (datasets, our own checks); the import-time readers
    # got them above.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """The real de-en corpus, built once per pytest run (downloads the .deb files once per machine)."""
    from hf_reservoir.corpus.build import build_corpus

    path = tmp_path_factory.mktemp("corpus") / "de-en"
    build_corpus(str(path))
    return path


@pytest.fixture(scope="session")
def fr_corpus_dir(tmp_path_factory):
    """The real fr-en corpus, built once per pytest run (the .deb files cached per machine, as for de-en)."""
    from hf_reservoir.corpus.build import build_corpus

    path = tmp_path_factory.mktemp("corpus") / "fr-en"
    build_corpus(str(path), pair="fr-en")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(corpus_dir, tmp_path_factory):
    """A joint 2,000-piece MarianTokenizer trained on the corpus's training split."""
    from hf_reservoir.corpus.loading import load_parallel_corpus
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    corpus = load_parallel_corpus(str(corpus_dir))
    train_marian_tokenizer(corpus["train"], "de", "en", str(path), vocab_size=2000)
    return path


def tiny_training_config(corpus_dir, tokenizer_dir, **overrides) -> dict:
    """A training YAML's values for a tiny model on 2,000 corpus pairs: a few seconds of training."""
    return {
        "data_path": str(corpus_dir),
        "tokenizer_path": str(tokenizer_dir),
        "max_train_samples": 2000,
        "max_eval_samples": 40,
        "max_source_length": 48,
        "max_target_length": 48,
        "d_model": 32,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "decoder_layers": 1,
        "layernorm_position": "pre",
        "per_device_train_batch_size": 32,
        "learning_rate": 0.003,
        "max_steps": 30,
        "eval_strategy": "steps",
        "eval_steps": 10,
        "save_strategy": "no",
        "predict_with_generate": True,
        "generation_max_length": 32,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "per_device_eval_batch_size": 40,
        **overrides,
    }


def save_tiny_model_with_tokenizer(folder, german: list[str], vocab_size: int = 300, **overrides):
    """A tiny untrained model with a real SentencePiece tokenizer trained on ``german`` (English: the same with
    "Satz" as "sentence"), saved together in ``folder``, as training saves them. Returns the tokenizer."""
    from datasets import Dataset

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    pairs = Dataset.from_dict({"translation": [{"de": g, "en": g.replace("Satz", "sentence")} for g in german]})
    tokenizer = train_marian_tokenizer(pairs, "de", "en", str(folder), vocab_size)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = tiny_config(
        vocab_size=len(tokenizer),
        decoder_vocab_size=len(tokenizer),
        decoder_start_token_id=ids["pad_token_id"],
        forced_eos_token_id=ids["eos_token_id"],
        **ids,
        **overrides,
    )
    torch.manual_seed(0)
    ReservoirMarianMTModel(config).save_pretrained(folder)
    return tokenizer


SYLLABLES = "ba ke lo mi nu ra se ti vo we za ch sch ei au".split()
# 400 made-up German words and their "translations" (reversed): enough text for a 300-piece tokenizer.
WORDS_DE = sorted({"".join(random.Random(i).choices(SYLLABLES, k=3)) for i in range(400)})
WORDS_EN = [word[::-1] for word in WORDS_DE]


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory):
    """A parallel text corpus of 400 / 20 / 20 word-for-word pairs: enough for a tokenizer and a few steps."""
    folder = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    for split, count in (("train", 400), ("dev", 20), ("test", 20)):
        rows = [[rng.randrange(len(WORDS_DE)) for _ in range(rng.randint(3, 9))] for _ in range(count)]
        (folder / f"{split}.de").write_text("".join(" ".join(WORDS_DE[i] for i in r) + "\n" for r in rows), "utf-8")
        (folder / f"{split}.en").write_text("".join(" ".join(WORDS_EN[i] for i in r) + "\n" for r in rows), "utf-8")
    return folder


@pytest.fixture(scope="session")
def text_tokenizer_dir(text_corpus, tmp_path_factory):
    """A 300-piece MarianTokenizer trained on :func:`text_corpus`: for tests that need a real tokenizer but not the
    real corpus (the quick loop, ``-m "not slow"``, builds no corpus)."""
    from hf_reservoir.corpus.loading import load_parallel_corpus
    from hf_reservoir.corpus.tokenization import train_marian_tokenizer

    path = tmp_path_factory.mktemp("text_tokenizer")
    train_marian_tokenizer(load_parallel_corpus(str(text_corpus))["train"], "de", "en", str(path), vocab_size=300)
    return path


REAL_CORPUS_FIXTURES = ("corpus_dir", "fr_corpus_dir", "tokenizer_dir")


def pytest_collection_modifyitems(config, items):
    """The quick loop (``-m "not slow"``) builds no corpus and downloads nothing: a test that uses the real corpus
    (built from Debian packages) must carry the slow mark, or the whole run stops here naming it."""
    unmarked = [
        item.nodeid
        for item in items
        if set(REAL_CORPUS_FIXTURES) & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow")
    ]
    if unmarked:
        raise pytest.UsageError(
            f"{', '.join(unmarked)} use the real corpus ({' or '.join(REAL_CORPUS_FIXTURES)}) without the slow mark; "
            "mark them @pytest.mark.slow, or use the text_corpus / text_tokenizer_dir fixtures."
        )


class FakeClock:
    """A clock the test moves by hand (the convergence callback reads time through it)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drive(callback, clock, script, args, progress=None, max_steps=0):
    """Run the callback (and a progress callback after it) through steps.

    `script` items: ("step", seconds), ("eval", seconds, bleu) or ("epoch",).
    """
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    state.is_world_process_zero = True
    followers = [c for c in (progress,) if c is not None]
    for c in (callback, *followers):
        c.on_train_begin(args, state, control)
    callback.on_epoch_begin(args, state, control)
    for item in script:
        if item[0] == "step":
            callback.on_step_begin(args, state, control)
            clock.now += item[1]
            state.global_step += 1
            state.epoch = state.global_step / 3  # three steps per epoch
            for c in (callback, *followers):
                c.on_step_end(args, state, control)
        elif item[0] == "eval":
            clock.now += item[1]  # evaluation time, which must not count
            for c in (callback, *followers):
                c.on_evaluate(args, state, control, metrics={"eval_bleu": item[2], "eval_chrf": 1.0})
        elif item[0] == "epoch":
            callback.on_epoch_end(args, state, control)
            callback.on_epoch_begin(args, state, control)
        if control.should_training_stop:
            break
    return state, control
