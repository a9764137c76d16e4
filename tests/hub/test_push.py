"""Seed-only reservoirs, tamper checks, generated model cards and the (mocked) upload."""

import json
import os
from unittest import mock

import pytest
import torch

from hf_reservoir import ReservoirMarianMTModel
from hf_reservoir.hub.push import push_folder
from tests.conftest import REPO_ROOT, tiny_config
from tests.models.reservoir_marian.test_remote_code import run_fresh


def reservoir_model():
    return ReservoirMarianMTModel(
        tiny_config(
            num_encoder_reservoir_layers=2,
            reservoir_type=["bigru", "cnn"],
            decoder_reservoir_layers=[1],
            layernorm_position="pre",
        )
    ).eval()


def test_seed_only_is_smaller_by_the_reservoir_bytes_and_loads_identically(tmp_path, batch):
    model = reservoir_model()
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "seed", reservoir_storage="seed")
    reservoir_bytes = sum(
        p.numel() * p.element_size() for layer in model.reservoir_layers().values() for p in layer.parameters()
    )

    def tensor_bytes(path):  # a safetensors file is an 8-byte header length, the JSON header, then the data
        raw = path.read_bytes()
        return len(raw) - 8 - int.from_bytes(raw[:8], "little")

    full, seed = tensor_bytes(tmp_path / "full/model.safetensors"), tensor_bytes(tmp_path / "seed/model.safetensors")
    assert full - seed == reservoir_bytes
    config = json.loads((tmp_path / "seed/config.json").read_text())
    assert config["reservoir_storage"] == "seed" and set(config["reservoir_checksums"]) == {
        "encoder.2",
        "encoder.4",
        "decoder.1",
    }
    assert model.config.reservoir_storage == "weights"  # saving does not change the live model
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path / "seed").eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    assert not any(p.requires_grad for layer in loaded.reservoir_layers().values() for p in layer.parameters())


@pytest.mark.parametrize("storage", ["weights", "seed"])
def test_exported_folder_loads_as_remote_code_in_a_fresh_process(storage, batch, tmp_path):
    model = reservoir_model()
    model.save_pretrained(tmp_path / "model", reservoir_storage=storage)
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "decoder_input_ids": batch["labels"],
    }
    out = run_fresh(tmp_path / "model", inputs, tmp_path)
    with torch.no_grad():
        assert torch.equal(out["logits"], model(**inputs).logits)
    assert torch.equal(
        out["generated"],
        model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=6, num_beams=2
        ),
    )


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "checksum":
            config["reservoir_checksums"]["encoder.2"] = "0" * 64
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "tamper, message",
    [
        ({"checksum": True}, r"\['encoder.2'\] regenerated .* do not match"),
        ({"reservoir_seed": 1234}, r"reservoir_seed=1234 do not match"),
    ],
)
def test_tampered_seed_checkpoints_fail_clearly(tmp_path, tamper, message):
    reservoir_model().save_pretrained(tmp_path, reservoir_storage="seed")
    edit_config(tmp_path, **tamper)
    with pytest.raises(ValueError, match=message):
        ReservoirMarianMTModel.from_pretrained(tmp_path)


def test_truncated_weights_fail_clearly(tmp_path):
    reservoir_model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        ReservoirMarianMTModel.from_pretrained(tmp_path)


def test_pickle_weights_need_an_explicit_opt_in(tmp_path):
    model = reservoir_model()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle weights"):
        ReservoirMarianMTModel.from_pretrained(tmp_path)
    loaded = ReservoirMarianMTModel.from_pretrained(tmp_path, allow_pickle=True)
    assert torch.equal(loaded.model.encoder.layers[0].fc1.weight, model.model.encoder.layers[0].fc1.weight)


def test_seed_storage_refuses_edited_reservoirs(tmp_path):
    model = reservoir_model()
    with torch.no_grad():
        model.model.encoder.layers[2].gru.weight_ih_l0.add_(1.0)
    with pytest.raises(ValueError, match="no longer equal"):
        model.save_pretrained(tmp_path, reservoir_storage="seed")


def save_model_with_tokenizer(tokenizer_dir, model_dir, **overrides):
    """A tiny untrained model folder with the real test tokenizer, as training would leave it."""
    from hf_reservoir.corpus.tokenization import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    config = tiny_config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        num_encoder_reservoir_layers=2,
        **overrides,
    )
    ReservoirMarianMTModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def fake_results():
    """A results.json as training writes it (values arbitrary: this checks rendering, not training)."""
    return {
        "convergence": {
            "peak_bleu": 12.5,
            "time_to_peak_seconds": 600.0,
            "step_at_peak": 900,
            "seconds_per_epoch": 700.0,
            "aucc_budget_seconds": 1000.0,
            "aucc_bleu_hours": 0.0025,
            "aucc_normalized": 9.0,
        },
        "validation": {"bleu": 12.25, "chrf": 40.5},
        "test": {"bleu": 11.75, "chrf": 39.0},
        "test_by_source": {"help": {"pairs": 10, "bleu": 20.0, "chrf": 50.0}},
        "parameters": {"trainable": 1000, "total": 1500},
        "source_lang": "de",
        "target_lang": "en",
        "corpus_stats": {
            "packages": {"trans-de-en": "1.9-6"},
            "licenses": {"ding": "GPL-2.0-or-later"},
            "kept": {"ding": 5},
            "splits": {"train": 5},
        },
        "training": {"learning_rate": 0.002, "evaluation_num_beams": 1},
        "final_num_beams": 5,
        "hardware": "CPU (x86_64, 2 threads), torch 2.13.0",
    }


def test_mocked_upload_calls_the_hub_api_in_order(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    api = mock.MagicMock()
    api.upload_folder.return_value = mock.Mock(commit_url="https://hub/commit/1")
    url = push_folder(str(folder), "someone/model", private=True, revision="v1", api=api)
    assert url == "https://hub/commit/1"
    api.create_repo.assert_called_once_with(repo_id="someone/model", private=True, exist_ok=True, repo_type="model")
    api.create_branch.assert_called_once_with(repo_id="someone/model", branch="v1", exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["folder_path"] == str(folder) and kwargs["revision"] == "v1" and kwargs["repo_id"] == "someone/model"
    assert [c[0] for c in api.method_calls] == ["create_repo", "create_branch", "upload_folder"]


@pytest.mark.slow
def test_push_command_dry_run_and_mocked_upload(tokenizer_dir, tmp_path, capsys):
    from hf_reservoir.cli import main

    model_dir = tmp_path / "model"
    save_model_with_tokenizer(tokenizer_dir, model_dir)
    with mock.patch("huggingface_hub.HfApi", side_effect=AssertionError("dry run must not touch the Hub")):
        assert main(["push", str(model_dir), "someone/model", "--dry_run", "--seed_only"]) == 0
    out = capsys.readouterr().out
    assert "Would upload" in out and "model.safetensors" in out and "modeling_reservoir.py" in out

    uploaded = {}

    def record(**kwargs):
        uploaded["files"] = sorted(os.listdir(kwargs["folder_path"]))
        return mock.Mock(commit_url="https://hub/commit/2")

    with mock.patch("huggingface_hub.HfApi") as api_class:
        api_class.return_value.upload_folder.side_effect = record
        assert main(["push", str(model_dir), "someone/model", "--private", "--token", "hf_x"]) == 0
    api_class.assert_called_once_with(token="hf_x")
    api_class.return_value.create_repo.assert_called_once_with(
        repo_id="someone/model", private=True, exist_ok=True, repo_type="model"
    )
    assert {"config.json", "model.safetensors", "modeling_reservoir.py", "vocab.json"} <= set(uploaded["files"])


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    from hf_reservoir.cli import main

    assert main(["push", str(tmp_path), "someone/model", "--dry_run"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_no_test_touches_the_network():
    """Offline mode holds in this process (huggingface_hub read it at import), and the socket guard stops what
    offline mode would not."""
    import socket

    import huggingface_hub.constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    from tests.conftest import NETWORK_ATTEMPTS, NetworkBlocked

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True  # the value the Hub client acts on, not the variable
    with pytest.raises(OfflineModeIsEnabled):
        huggingface_hub.HfApi().model_info("gpt2")
    before = len(NETWORK_ATTEMPTS)
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=5)
    assert len(NETWORK_ATTEMPTS) == before + 1
    NETWORK_ATTEMPTS.pop()
    assert REPO_ROOT
