"""Training: the script's checks, end to end on the real corpus, and exact resume."""

import json
import os
import sys

import pytest
import torch
import yaml

from hf_reservoir.corpus.batching import TokenBatchSampler
from hf_reservoir.trainer.arguments import ConvergenceArguments, DataArguments, ModelArguments
from hf_reservoir.trainer.convergence import ConvergenceCallback
from hf_reservoir.trainer.run import run_training
from tests.conftest import REPO_ROOT, tiny_config, tiny_training_config

sys.path.insert(0, os.path.join(REPO_ROOT, "training"))
import train as train_script  # noqa: E402

TINY_MODEL = dict(
    d_model=64,
    encoder_layers=5,
    decoder_layers=1,
    encoder_ffn_dim=128,
    decoder_ffn_dim=128,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    num_encoder_reservoir_layers=2,
    reservoir_type=["ffn"],
    layernorm_position="pre",
    dropout=0.0,
    max_position_embeddings=128,
)


def tiny_args(corpus_dir, tokenizer_dir, output_dir, **training):
    from transformers import Seq2SeqTrainingArguments

    model_args = ModelArguments(**TINY_MODEL)
    data_args = DataArguments(
        data_path=str(corpus_dir),
        tokenizer_path=str(tokenizer_dir),
        max_train_samples=3000,
        max_eval_samples=60,
        max_source_length=48,
        max_target_length=48,
    )
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=3e-3,
        lr_scheduler_type="inverse_sqrt",
        warmup_steps=30,
        max_steps=300,
        eval_strategy="steps",
        eval_steps=100,
        save_strategy="steps",
        save_steps=100,
        predict_with_generate=True,
        generation_max_length=48,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=50,
        seed=3,
        adam_beta2=0.98,
        label_smoothing_factor=0.1,
        metric_for_best_model="bleu",
        load_best_model_at_end=True,
        save_total_limit=None,
    )
    settings.update(training)
    return model_args, data_args, Seq2SeqTrainingArguments(**settings), ConvergenceArguments(evaluate_test=False)


def test_bad_reservoir_type_in_a_config_file_fails_before_training(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"output_dir: {tmp_path}/out\nreservoir_type: lstm\nnum_encoder_reservoir_layers: 2\n"
        f"data_path: {tmp_path}/nowhere\n"
    )
    assert train_script.main([str(config)]) == 2
    err = capsys.readouterr().err
    assert "reservoir_type" in err and "lstm" in err and not (tmp_path / "out").exists()


def test_missing_data_path_fails_before_training(tmp_path, capsys):
    assert train_script.main(["--output_dir", str(tmp_path / "out"), "--data_path", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "prepare_data.py" in err


def test_unknown_flag(tmp_path):
    with pytest.raises(SystemExit, match="unknown flag 'reservoir_flavour'"):
        train_script.parse(["--output_dir", str(tmp_path), "--reservoir_flavour", "x"])


def test_config_file_flags_are_overridden_by_the_command_line(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {"output_dir": "a", "reservoir_type": ["ffn", "cnn"], "num_encoder_reservoir_layers": 2, "d_model": 128}
        )
    )
    model_args, _, training_args, _ = train_script.parse([str(config), "--d_model", "64"])
    assert model_args.d_model == 64 and model_args.reservoir_type == ["ffn", "cnn"]
    assert training_args.output_dir == "a"


def test_zero_final_beams_is_refused_before_training(tmp_path):
    model_args, data_args, training_args, _ = tiny_args(str(tmp_path / "no-corpus"), None, tmp_path / "run")
    with pytest.raises(ValueError, match="final_num_beams must be at least 1, got 0"):
        run_training(model_args, data_args, training_args, ConvergenceArguments(final_num_beams=0))


def test_cooldown_without_an_end_is_refused_before_training(tmp_path):
    """A cool-down needs an end: the budget (wall-clock) or max_steps; with neither it is refused."""
    model_args, data_args, training_args, _ = tiny_args(
        str(tmp_path / "no-corpus"), None, tmp_path / "run", max_steps=-1
    )
    with pytest.raises(ValueError, match="lr_cooldown=0.3 decays the learning rate to 0 where training ends, but"):
        run_training(model_args, data_args, training_args, ConvergenceArguments(lr_cooldown=0.3))
    assert not (tmp_path / "run").exists()


def test_evaluation_splits_generate_longest_first():
    from hf_reservoir.evaluation.inference import longest_first

    assert longest_first([[1], [1, 2, 3], [1, 2], [4, 5, 6], []]) == [1, 3, 2, 0, 4]  # ties keep their order


def test_per_source_scores_need_predictions_in_dataset_order():
    import numpy as np

    from hf_reservoir.evaluation.metrics import check_dataset_order

    labels = [[7, 8, 9, 0], [5, 0], [6, 6, 0]]
    returned = np.array([[7, 8, 9, 0], [5, 0, -100, -100], [6, 6, 0, 2]])  # 2 = pad, where batches were joined
    check_dataset_order(returned, labels, pad_token_id=2)
    with pytest.raises(RuntimeError, match="Test prediction 1 does not belong to test pair 1"):
        check_dataset_order(returned[[0, 2, 1]], labels, pad_token_id=2)
    with pytest.raises(RuntimeError, match="2 rows for 3 test pairs"):
        check_dataset_order(returned[:2], labels, pad_token_id=2)


def test_evaluation_keeps_its_order_when_training_groups_by_length(tmp_path):
    from transformers import Seq2SeqTrainingArguments

    from hf_reservoir import ReservoirMarianMTModel
    from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), train_sampling_strategy="group_by_length", report_to="none", use_cpu=True
    )
    trainer = ReservoirSeq2SeqTrainer(model=ReservoirMarianMTModel(tiny_config()), args=args)
    # Any order given is kept (a length-grouped sampler would reorder these by length).
    data = [{"input_ids": [5] * n} for n in (1, 3, 7, 9, 2)]
    assert list(trainer._get_eval_sampler(data)) == [0, 1, 2, 3, 4]


def test_bad_length_buckets_are_refused_with_the_value_to_change(tmp_path):
    with pytest.raises(ValueError, match="ascending"):
        TokenBatchSampler([3, 5], max_tokens=64, buckets=[16, 8])
    with pytest.raises(ValueError, match=r"ends below the longest example \(40 tokens\); add a bucket of at least 40"):
        TokenBatchSampler([3, 40], max_tokens=64, buckets=[8, 16])
    with pytest.raises(ValueError, match="above max_tokens=64"):
        TokenBatchSampler([3, 5], max_tokens=64, buckets=[8, 128])
    # Before training: the last bucket must hold max_source_length and max_target_length (48 here).
    model_args, data_args, training_args, convergence = tiny_args(str(tmp_path / "no-corpus"), None, tmp_path / "run")
    data_args.max_tokens, data_args.length_buckets = 2000, [16, 32]
    with pytest.raises(ValueError, match=r"ends below max_source_length/max_target_length \(48 tokens\)"):
        run_training(model_args, data_args, training_args, convergence)
    data_args.max_tokens = None
    with pytest.raises(ValueError, match="needs max_tokens"):
        run_training(model_args, data_args, training_args, convergence)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_end_to_end_training_improves_bleu_and_reloads(corpus_dir, tokenizer_dir, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    from hf_reservoir.corpus.tokenization import load_tokenizer

    model_args, data_args, training_args, _ = tiny_args(corpus_dir, tokenizer_dir, tmp_path / "run")
    final = ConvergenceArguments(final_num_beams=3)
    report = run_training(model_args, data_args, training_args, final)
    assert report["final_num_beams"] == 3 and report["training"]["evaluation_num_beams"] == 1
    by_source = report["test_by_source"]  # computed only when check_dataset_order accepts the predictions
    assert set(by_source) == {"help", "ui", "ding"}
    assert sum(s["pairs"] for s in by_source.values()) == report["data"]["run_splits"]["test"]
    evaluations = json.loads((tmp_path / "run" / "convergence.json").read_text())["evaluations"]
    assert [e["step"] for e in evaluations] == [100, 200, 300]
    assert max(e["bleu"] for e in evaluations[1:]) > evaluations[0]["bleu"]
    assert report["convergence"]["peak_bleu"] == max(e["bleu"] for e in evaluations)
    assert (tmp_path / "run" / "convergence.png").exists() and (tmp_path / "run" / "results.json").exists()
    # The saved folder decodes as the reported final scores were decoded.
    generation = json.loads((tmp_path / "run" / "model" / "generation_config.json").read_text())
    assert generation["num_beams"] == 3
    model = AutoModelForSeq2SeqLM.from_pretrained(report["model_dir"]).eval()
    assert not any(p.requires_grad for p in model.model.encoder.layers[1].parameters())
    tokenizer = load_tokenizer(report["model_dir"])
    inputs = tokenizer(["Wählen Sie Extras - Optionen."], return_tensors="pt")
    text = tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0], skip_special_tokens=True)
    assert isinstance(text, str) and text.strip()

    # `hf-reservoir evaluate`, with no flag but the split, scores the saved model as training did: the model folder's
    # scoring.json gives it training's lengths (48 here, not the position table), batch size and beams.
    from hf_reservoir.cli import main as cli_main

    out = tmp_path / "eval"
    argv = ["evaluate", report["model_dir"], "--data_path", str(corpus_dir), "--split", "test", "--output_dir"]
    assert cli_main([*argv, str(out)]) == 0
    scored = json.loads((out / "results.json").read_text())
    assert scored["num_beams"] == 3 and scored["pairs"] == report["data"]["run_splits"]["test"]
    recorded = (scored["max_source_length"], scored["max_target_length"], scored["batch_size"])
    assert recorded == (48, 48, training_args.per_device_eval_batch_size)
    assert scored["bleu"] == pytest.approx(report["test"]["bleu"], abs=1e-6)
    assert scored["chrf"] == pytest.approx(report["test"]["chrf"], abs=1e-6)
    assert scored["signature"]["bleu"].startswith("nrefs:1") and set(scored["by_source"]) == {"help", "ui", "ding"}
    assert len((out / "generated_predictions.txt").read_text().splitlines()) == scored["pairs"]


@pytest.mark.slow
def test_a_fixed_step_run_reaches_the_same_bleu_on_a_slower_machine(corpus_dir, tokenizer_dir, tmp_path):
    """The main job's stopping rule (max_steps with a step-based cool-down) does not depend on speed."""
    import time

    from transformers import TrainerCallback

    class SlowMachine(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.05)  # inside the training clock: the step itself is slower

    common = dict(max_steps=40, eval_steps=20, save_steps=20, warmup_steps=10, load_best_model_at_end=False)
    cooldown = ConvergenceArguments(evaluate_test=False, lr_cooldown=0.25)
    runs = {}
    for name, callbacks in (("fast", []), ("slow", [SlowMachine()])):
        model_args, data_args, training_args, _ = tiny_args(corpus_dir, tokenizer_dir, tmp_path / name, **common)
        runs[name] = run_training(model_args, data_args, training_args, cooldown, callbacks=callbacks)
    fast, slow = runs["fast"]["convergence"], runs["slow"]["convergence"]
    assert fast["stopped_by"] == slow["stopped_by"] == "max_steps"
    assert fast["steps_trained"] == slow["steps_trained"] == 40
    assert runs["fast"]["validation"]["bleu"] == runs["slow"]["validation"]["bleu"]
    assert runs["fast"]["validation"]["loss"] == pytest.approx(runs["slow"]["validation"]["loss"], abs=1e-6)
    # The slow run's clock holds its sleeps (those after logged or evaluated steps fall in excluded intervals).
    # No comparison with the fast run's seconds: two runs taken one after the other on a loaded machine can
    # differ by more than the sleeps (CI measured 26.9 s fast against 13.5 s slow); pairing is the sweep's job.
    assert slow["train_seconds"] >= 40 * 0.05 * 0.75
    assert "cool-down to 0 over the last 25% of the 40 steps" in runs["fast"]["training"]["lr_scheduler"]


@pytest.mark.slow
def test_push_to_hub_uploads_the_card_and_the_remote_code(corpus_dir, tokenizer_dir, tmp_path):
    from unittest import mock

    uploaded = {}

    def record(**kwargs):
        uploaded["files"] = sorted(os.listdir(kwargs["folder_path"]))
        uploaded["card"] = open(os.path.join(kwargs["folder_path"], "README.md"), encoding="utf-8").read()
        return mock.Mock(commit_url="https://hub/commit/1")

    common = dict(max_steps=20, eval_steps=20, save_steps=20, warmup_steps=5, load_best_model_at_end=False)
    hub = dict(push_to_hub=True, hub_model_id="someone/tiny-reservoir", hub_token="hf_x", hub_private_repo=True)
    model_args, data_args, training_args, convergence_args = tiny_args(
        corpus_dir, tokenizer_dir, tmp_path / "run", **common, **hub
    )
    with mock.patch("huggingface_hub.HfApi") as api_class:
        api_class.return_value.upload_folder.side_effect = record
        report = run_training(model_args, data_args, training_args, convergence_args)
    api_class.assert_called_once_with(token="hf_x")
    api_class.return_value.create_repo.assert_called_once_with(
        repo_id="someone/tiny-reservoir", private=True, exist_ok=True, repo_type="model"
    )
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "modeling_reservoir.py",
        "configuration_reservoir.py",
    } <= set(uploaded["files"])
    assert "someone/tiny-reservoir" in uploaded["card"] and report["hub_commit"] == "https://hub/commit/1"


def test_push_to_hub_without_a_token_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    model_args, data_args, training_args, _ = tiny_args(
        str(tmp_path / "no-corpus"), None, tmp_path / "run", push_to_hub=True, hub_model_id="someone/x"
    )
    with pytest.raises(ValueError, match="no Hub token for the upload: pass --hub_token"):
        run_training(model_args, data_args, training_args, ConvergenceArguments())
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_resume_continues_the_same_curve(corpus_dir, tokenizer_dir, tmp_path):
    from transformers import TrainerCallback

    common = dict(max_steps=60, eval_steps=20, save_steps=20, warmup_steps=10, load_best_model_at_end=False)
    full = run_training(*tiny_args(corpus_dir, tokenizer_dir, tmp_path / "full", **common))

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 30:
                raise KeyboardInterrupt("simulated interruption after the checkpoint at step 20")

    with pytest.raises(KeyboardInterrupt):
        run_training(*tiny_args(corpus_dir, tokenizer_dir, tmp_path / "split", **common), callbacks=[Crash()])
    resumed = run_training(
        *tiny_args(corpus_dir, tokenizer_dir, tmp_path / "split", resume_from_checkpoint="last", **common)
    )

    def curve(run):
        return json.loads((tmp_path / run / "convergence.json").read_text())["evaluations"]

    assert [e["step"] for e in curve("split")] == [e["step"] for e in curve("full")] == [20, 40, 60]
    assert [e["bleu"] for e in curve("split")] == [e["bleu"] for e in curve("full")]
    for a, b in zip(curve("split"), curve("full")):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert resumed["convergence"]["num_evaluations"] == 3
    # The resumed clock continued the first run's clock instead of starting at zero: the second process started
    # at step 20 from the clock the checkpoint held (its value at the step-20 evaluation), and its history keeps
    # the interrupted first process (no end) before it.
    first, second = resumed["history"]
    assert first["from_step"] == 0 and first["ended"] is None
    assert second["from_step"] == 20 and second["ended"] >= second["started"] >= first["started"]
    assert second["clock"] == pytest.approx(curve("split")[0]["train_seconds"]) and second["clock"] > 0
    assert resumed["convergence"]["train_seconds"] > second["clock"]
    assert full["validation"]["bleu"] == pytest.approx(resumed["validation"]["bleu"])
    torch.testing.assert_close(
        torch.tensor(full["validation"]["loss"]), torch.tensor(resumed["validation"]["loss"]), atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_patience_stops_a_real_run_at_the_right_evaluation(corpus_dir, tokenizer_dir, tmp_path):
    """--patience 2 in a real Trainer run: with the learning rate at 0 the model never changes, so BLEU never
    beats the first evaluation, and the run must stop at the third (steps 10, 20, 30), not at max_steps."""
    from hf_reservoir.cli import main as cli_main

    config = tmp_path / "train.yaml"
    values = tiny_training_config(corpus_dir, tokenizer_dir, learning_rate=0.0, max_steps=200, evaluate_test=False)
    config.write_text(yaml.safe_dump({**values, "output_dir": str(tmp_path / "run"), "patience": 2}))
    assert cli_main(["train", str(config)]) == 0
    convergence = json.loads((tmp_path / "run" / "convergence.json").read_text())
    assert [e["step"] for e in convergence["evaluations"]] == [10, 20, 30]
    assert convergence["summary"]["stopped_by"] == "patience" and convergence["summary"]["steps_trained"] == 30
    assert json.loads((tmp_path / "run" / "results.json").read_text())["convergence"]["stopped_by"] == "patience"


@pytest.mark.slow
def test_target_bleu_stops_a_real_run_at_the_first_evaluation_and_keeps_its_checkpoint(
    corpus_dir, tokenizer_dir, tmp_path
):
    """--target_bleu 0 in a real Trainer run: every BLEU reaches 0, so the run stops at the first evaluation (step
    10 of 200), says it stopped at the target, and saves a checkpoint of that step although save_steps is 100."""
    from hf_reservoir.cli import main as cli_main

    config = tmp_path / "train.yaml"
    values = tiny_training_config(corpus_dir, tokenizer_dir, max_steps=200, evaluate_test=False)
    values.update(output_dir=str(tmp_path / "run"), target_bleu=0.0, save_strategy="steps", save_steps=100)
    config.write_text(yaml.safe_dump(values))
    assert cli_main(["train", str(config)]) == 0
    convergence = json.loads((tmp_path / "run" / "convergence.json").read_text())
    assert [e["step"] for e in convergence["evaluations"]] == [10]
    assert convergence["summary"]["stopped_by"] == "target" and convergence["summary"]["steps_trained"] == 10
    assert os.path.isdir(tmp_path / "run" / "checkpoint-10")
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())["recipe"]
    assert recipe["stopping"]["target_bleu"] == 0.0


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n in os.listdir(os.path.join(REPO_ROOT, "training", "configs"))
        if n.endswith(".yaml") and "sweep" not in n
    ),
)
def test_shipped_configs_parse_and_validate(name):
    from hf_reservoir import ReservoirMarianConfig

    model_args, data_args, training_args, convergence_args = train_script.parse(
        [os.path.join(REPO_ROOT, "training", "configs", name)]
    )
    config = ReservoirMarianConfig(**model_args.config_kwargs())
    if name.startswith("iwslt14"):
        assert (config.d_model, config.encoder_ffn_dim, config.encoder_attention_heads, config.decoder_layers) == (
            512,
            1024,
            4,
            2,
        )
        assert training_args.learning_rate == 5e-4 and training_args.warmup_steps == 4000
        assert (training_args.adam_beta1, training_args.adam_beta2) == (0.9, 0.98)
        assert training_args.label_smoothing_factor == 0.1 and training_args.generation_num_beams == 5
        assert model_args.dropout == 0.3 and training_args.weight_decay == 1e-4
        assert convergence_args.lr_cooldown == 0  # the paper's schedule, unchanged
        assert not training_args.logging_nan_inf_filter  # no host sync per step on a GPU
        expected = name.removeprefix("iwslt14_").removesuffix(".yaml")
        assert config.encoder_layout == ("LLLLLL" if expected == "regular" else "LLLRLRLL")
        if expected != "regular":
            assert set(config.encoder_reservoir_types.values()) == {expected}
    else:
        # The demo: the paper's placement rule, sized for 2 CPU cores; beam 5 for the final scores.
        assert config.encoder_layout == "LRLRL" and data_args.build_corpus
        assert convergence_args.final_num_beams == 5 and training_args.generation_num_beams == 1
        # The same work on every machine: a fixed number of steps with a step-based cool-down, no budget.
        assert training_args.max_steps > 0 and convergence_args.budget_seconds is None
        assert 0 < convergence_args.lr_cooldown < 1
        ConvergenceCallback(lr_cooldown=convergence_args.lr_cooldown)


@pytest.mark.slow
def test_english_to_another_language(fr_corpus_dir, tmp_path):
    """en->fr on the real fr-en corpus: a short run trains its own tokenizer, scores French with 13a, records the
    signature, and its card names the pair and its sources."""
    model_args, data_args, training_args, convergence = tiny_args(
        fr_corpus_dir,
        None,
        tmp_path / "run",
        max_steps=20,
        eval_steps=20,
        save_steps=20,
        warmup_steps=5,
        load_best_model_at_end=False,
    )
    data_args.source_lang, data_args.target_lang, data_args.vocab_size = "en", "fr", 1000
    data_args.tokenizer_path = None  # trained on the run's own data, into OUTPUT_DIR/tokenizer
    report = run_training(model_args, data_args, training_args, convergence)
    assert (report["source_lang"], report["target_lang"]) == ("en", "fr")
    assert "tok:13a" in report["signature"]["bleu"] and report["signature"]["chrf"].startswith("nrefs:1")
    assert report["corpus_stats"]["pair"] == "fr-en" and "test" in report["data"]["run_splits"]
    card = (tmp_path / "run" / "model" / "README.md").read_text(encoding="utf-8")
    assert "fr-en" in card and "libreoffice-help-fr" in card and "Ding" not in card
    assert "- en\n- fr" in card or "- en\n  - fr" in card or "language:\n- en\n- fr" in card
