"""Every input a user can give ends in a result or one clear error (docs/usage.md, "What never ends in a traceback").

Property-based tests (Hypothesis) over the user-facing commands, called in-process through `hf_reservoir.cli.main`:
for generated inputs (texts of any length, script and control character, empty and huge lines; data folders with any
subset of split files and line counts; TSV and JSONL files with random damage; YAML files with random keys and values
of wrong types; flags with out-of-range numbers; model folders with a file missing or damaged), every call ends
either in a result that keeps every input line (exit 0), or in exit status 2 with exactly one line that starts
``error:``. Never a traceback, never a silent drop.

The number of examples per property is ``HF_RESERVOIR_PROPERTY_EXAMPLES`` (default 12: about two minutes for the
file on 2 cores); a long search: ``HF_RESERVOIR_PROPERTY_EXAMPLES=300 python -m pytest -m properties``. Inputs the
search found that once failed are kept as ``@example``s, so they run every time.
"""

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hf_reservoir.cli import main
from tests.conftest import save_tiny_model_with_tokenizer

pytestmark = pytest.mark.properties

EXAMPLES = int(os.environ.get("HF_RESERVOIR_PROPERTY_EXAMPLES", "12"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text of every kind a user may paste: any script, control characters, line and paragraph separators, NUL.
ANY_CHAR = st.characters(codec="utf-8", exclude_categories=["Cs"])
LINE = st.one_of(
    st.text(ANY_CHAR, max_size=40).map(lambda s: s.replace("\n", " ")),
    st.just(""),
    st.just("   "),
    st.sampled_from(
        ["Wählen Sie Extras.", "日本語の文です。", "\x00\x07\x1b[31m", "a\u2028b\u2029c", "x\ry", "\ufeff"]
    ),
    st.integers(200, 3000).map(lambda n: "Satz " * n),  # far beyond the 64-token position table
)
LINES = st.lists(LINE, max_size=6)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_tiny_model_with_tokenizer(folder, [f"Satz {i} wählen Sie Extras" for i in range(200)])
    return str(folder)


def run(argv: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """``hf-reservoir ARGV`` in-process: (exit status, stdout, stderr). Any exception but SystemExit propagates, so
    a traceback fails the property."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="strict")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse's own errors
                code = exit_.code if isinstance(exit_.code, int) else 2
                if isinstance(exit_.code, str):
                    err.write(exit_.code + "\n")
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def assert_result_or_one_error(code: int, err: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err, err
    if code == 0:
        assert not errors, err
    else:
        assert code == 2 and len(errors) == 1, (code, err)


@PROPERTY
@given(lines=LINES, trailing_newline=st.booleans(), batch_size=st.integers(-2, 5))
@example(lines=["a\u2028b", ""], trailing_newline=True, batch_size=1)
@example(lines=["\ufeff"], trailing_newline=False, batch_size=1)
def test_translate_keeps_every_line(model_dir, lines, trailing_newline, batch_size):
    text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    code, out, err = run(["translate", model_dir, "--num_beams", "1", "--batch_size", str(batch_size)], text.encode())
    assert_result_or_one_error(code, err)
    if code == 0:
        expected = text.removeprefix("\ufeff").split("\n")
        if expected and expected[-1] == "":
            expected.pop()
        produced = out.split("\n")[:-1] if out else []
        assert len(produced) == len(expected), (lines, out)
        for source, target in zip(expected, produced):
            assert bool(source.strip()) or target == "", "a blank line stays blank, in place"
    else:
        assert batch_size < 1 and "batch_size" in err


@PROPERTY
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe\x00")
def test_translate_any_bytes(model_dir, data):
    code, out, err = run(["translate", model_dir, "--num_beams", "1"], data)
    assert_result_or_one_error(code, err)
    if code != 0:
        assert "not valid utf-8" in err


SPLIT_FILES = [f"{split}.{lang}" for split in ("train", "validation", "test") for lang in ("de", "en")]


@PROPERTY
@given(
    files=st.dictionaries(st.sampled_from(SPLIT_FILES), st.lists(LINE, max_size=4), max_size=6),
    split=st.sampled_from(["validation", "test", "train", "dev", ""]),
)
@example(files={"validation.de": ["", "", "", "0"], "validation.en": ["", "", "", "0"]}, split="validation")
def test_evaluate_on_any_folder_of_split_files(model_dir, files, split):
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "data")
        os.makedirs(data)
        for name, lines in files.items():
            with open(os.path.join(data, name), "w", encoding="utf-8", newline="") as handle:
                handle.write("".join(line + "\n" for line in lines))
        out_dir = os.path.join(folder, "out")
        argv = ["evaluate", model_dir, "--split", split, "--data_path", data, "--output_dir", out_dir]
        code, out, err = run([*argv, "--num_beams", "1"])
        assert_result_or_one_error(code, err)
        if code == 0:
            pairs = list(zip(files[f"{split}.de"], files[f"{split}.en"]))
            kept = [p for p in pairs if p[0].strip() and p[1].strip()]
            with open(os.path.join(out_dir, "generated_predictions.txt"), encoding="utf-8") as handle:
                assert len(handle.read().split("\n")) - 1 == len(kept)
            if len(kept) < len(pairs):  # blank pairs are left out, never silently
                assert f"{len(pairs) - len(kept)} pairs with an empty source or reference were left out" in out


def damaged(text: str, cuts: list[tuple[int, str]]) -> str:
    for at, insert in cuts:
        at = at % (len(text) + 1)
        text = text[:at] + insert + text[at + 1 :]
    return text


DAMAGE = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["\t", "\n", '"', "{", "}", ":", "", "\x00"])))


@PROPERTY
@given(
    fmt=st.sampled_from(["tsv", "jsonl"]), rows=st.lists(st.tuples(LINE, LINE), min_size=1, max_size=4), cuts=DAMAGE
)
@example(fmt="tsv", rows=[("", "x\ry")], cuts=[])  # found: csv refused a bare carriage return with a traceback
def test_evaluate_on_damaged_tsv_and_jsonl(model_dir, fmt, rows, cuts):
    if fmt == "tsv":
        text = "de\ten\n" + "".join(f"{a.replace(chr(9), ' ')}\t{b.replace(chr(9), ' ')}\n" for a, b in rows)
    else:
        text = "".join(json.dumps({"de": a, "en": b}, ensure_ascii=False) + "\n" for a, b in rows)
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "data")
        os.makedirs(data)
        with open(os.path.join(data, f"test.{fmt}"), "w", encoding="utf-8", newline="") as handle:
            handle.write(damaged(text, cuts))
        out = os.path.join(folder, "out")
        argv = ["evaluate", model_dir, "--split", "test", "--data_path", data, "--output_dir", out, "--num_beams", "1"]
        code, _, err = run(argv)
        assert_result_or_one_error(code, err)


YAML_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(ANY_CHAR, max_size=12),
    st.lists(st.one_of(st.integers(-3, 9), st.text(max_size=6)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
SWEEP_KEYS = ["train_config", "output_dir", "models", "updatable_layers", "reservoir_layers", "seeds", "sharing"]
SWEEP_KEYS += ["parallel_lanes", "threads_per_lane", "slice_seconds", "budget_seconds", "target_fractions", "lanes"]
SWEEP_KEYS += ["target_bleu", "model_overrides", "train_overrides", "collect_dir", "sedes", "modles", "x"]


@PROPERTY
@given(values=st.dictionaries(st.sampled_from(SWEEP_KEYS), YAML_VALUE, max_size=8))
@example(values={"train_config": "t.yaml", "output_dir": "o", "models": ["regular"], "seeds": "1"})
def test_sweep_files_with_any_keys_and_values(values):
    import yaml

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "sweep.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(values, handle, allow_unicode=True)
        code, _, err = run(["sweep", path, "--list"])
        assert_result_or_one_error(code, err)


TRAIN_KEYS = ["learning_rate", "learning_rat", "max_steps", "max_step", "encoder_layers", "d_model", "dropout"]
TRAIN_KEYS += ["num_encoder_reservoir_layers", "reservoir_type", "max_tokens", "eval_steps", "patience"]
TRAIN_KEYS += ["target_bleu", "budget_seconds", "vocab_size", "seed", "lr_cooldown", "save_interval_seconds"]


@PROPERTY
@given(values=st.dictionaries(st.sampled_from(TRAIN_KEYS), YAML_VALUE, max_size=6))
@example(values={"learning_rate": False})  # found: argparse's usage screen instead of one error line
def test_train_configs_with_any_keys_and_values(values):
    """Every generated config points at a data folder that does not exist, so none trains: the keys and values are
    judged before that, or the missing data is the one error."""
    import yaml

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "train.yaml")
        values = {**values, "output_dir": os.path.join(folder, "out"), "data_path": os.path.join(folder, "none")}
        values["build_corpus"] = False
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(values, handle, allow_unicode=True)
        code, _, err = run(["train", path])
        assert code == 2, err  # never trains: the data folder does not exist
        assert_result_or_one_error(code, err)


@PROPERTY
@given(
    command=st.sampled_from(["translate", "evaluate", "probe"]),
    flag=st.sampled_from(["--num_beams", "--batch_size", "--max_length", "--max_source_length", "--limit"]),
    value=st.one_of(st.integers(-(10**6), 10**6).map(str), st.sampled_from(["", "1.5", "nan", "x", "0"])),
)
@example(command="translate", flag="--max_length", value="66")  # found: an IndexError past the decoder's positions
@example(command="translate", flag="--num_beams", value="1000000")  # found: a million beams filled the memory
def test_out_of_range_numbers_in_flags(model_dir, command, flag, value):
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "data")
        os.makedirs(data)
        for split in ("train", "validation", "test"):
            for lang, text in (("de", "Satz 1 wählen Sie\n"), ("en", "sentence 1\n")):
                with open(os.path.join(data, f"{split}.{lang}"), "w", encoding="utf-8") as handle:
                    handle.write(text * 30)
        out = os.path.join(folder, "out")
        argv = {
            "translate": ["translate", model_dir],
            "evaluate": ["evaluate", model_dir, "--data_path", data, "--output_dir", out],
            "probe": ["probe", model_dir, "--data_path", data, "--output_dir", out, "--tasks", "length"],
        }[command]
        code, _, err = run([*argv, flag, value], b"Satz 1\n" if command == "translate" else None)
        assert_result_or_one_error(code, err)


MODEL_FILES = ["config.json", "model.safetensors", "generation_config.json", "source.spm", "target.spm", "vocab.json"]
MODEL_FILES += ["tokenizer_config.json"]


@PROPERTY
@given(
    name=st.sampled_from(MODEL_FILES),
    damage=st.sampled_from(["missing", "empty", "truncated", "garbage"]),
)
@example(name="source.spm", damage="empty")  # found: SentencePiece's "unk is not defined" traceback
@example(name="source.spm", damage="missing")  # found: a TypeError from the tokenizer's constructor
def test_model_folders_with_a_missing_or_damaged_file(model_dir, name, damage):
    with tempfile.TemporaryDirectory() as folder:
        copy = shutil.copytree(model_dir, os.path.join(folder, "model"))
        path = os.path.join(copy, name)
        if not os.path.exists(path):
            return
        if damage == "missing":
            os.remove(path)
        else:
            with open(path, "rb") as handle:
                data = handle.read()
            data = {"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00\xff{not a file"}[damage]
            with open(path, "wb") as handle:
                handle.write(data)
        code, out, err = run(["translate", copy, "--num_beams", "1"], b"Satz 1\n\nSatz 2\n")
        assert_result_or_one_error(code, err)
        if code == 0:
            assert len(out.split("\n")) - 1 == 3
