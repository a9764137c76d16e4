import json

import pytest

from hf_reservoir import ReservoirMarianConfig, place_reservoir_layers
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    "num_layers, k, placement, layout",
    [
        (7, 2, "alternating", "LLRLRLL"),
        (7, 3, "alternating", "LRLRLRL"),
        (7, 1, "alternating", "LLLRLLL"),
        (6, 2, "alternating", "LLRLRL"),  # odd leftover: the extra regular layer goes to the bottom
        (8, 3, "alternating", "LLRLRLRL"),
        (5, 3, "alternating", "RLRLR"),
        (4, 0, "alternating", "LLLL"),
        (7, 2, "middle", "LLLRRLL"),
        (6, 2, "middle", "LLRRLL"),
        (7, 2, "bottom", "RRLLLLL"),
        (7, 2, "top", "LLLLLRR"),
    ],
)
def test_placement_layouts(num_layers, k, placement, layout):
    config = ReservoirMarianConfig(
        encoder_layers=num_layers, num_encoder_reservoir_layers=k, reservoir_placement=placement
    )
    assert config.encoder_layout == layout
    assert place_reservoir_layers(num_layers, k, placement) == [i for i, c in enumerate(layout) if c == "R"]


def test_explicit_layers_and_types_round_trip(tmp_path):
    config = tiny_config(encoder_reservoir_layers=[4, 1], reservoir_type=["ffn", "cnn"])
    assert config.encoder_layout == "LRLLRLL"
    assert config.encoder_reservoir_types == {1: "ffn", 4: "cnn"}
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "reservoir-marian"
    assert saved["encoder_reservoir_layers"] == [1, 4]
    reloaded = ReservoirMarianConfig.from_pretrained(tmp_path)
    assert reloaded.encoder_layout == config.encoder_layout
    assert reloaded.encoder_reservoir_types == config.encoder_reservoir_types


def test_reservoir_type_is_stored_per_reservoir_layer_whatever_its_given_form(tmp_path):
    # One parse, at construction: a string, a list of one and a full list all become one type per reservoir layer.
    for given in ("ffn", ["ffn"], ["ffn", "ffn"]):
        assert tiny_config(num_encoder_reservoir_layers=2, reservoir_type=given).reservoir_type == ["ffn", "ffn"]
    assert tiny_config(reservoir_type="ffn").reservoir_type == []  # no reservoirs: no types
    # A config.json written before the per-layer form (one string) loads into it and saves it.
    tiny_config(num_encoder_reservoir_layers=2).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["reservoir_type"] == ["transformer", "transformer"]
    saved["reservoir_type"] = "cnn"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    reloaded = ReservoirMarianConfig.from_pretrained(tmp_path)
    assert reloaded.reservoir_type == ["cnn", "cnn"] and reloaded.encoder_reservoir_types == {2: "cnn", 4: "cnn"}


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"reservoir_type": "lstm", "num_encoder_reservoir_layers": 1}, ["reservoir_type", "lstm", "bigru"]),
        ({"reservoir_type": ["ffn", "cnn", "ffn"], "num_encoder_reservoir_layers": 2}, ["has 3 entries", "one type"]),
        ({"reservoir_type": 3}, ["reservoir_type", "string"]),
        ({"reservoir_placement": "random"}, ["reservoir_placement", "random", "alternating"]),
        ({"reservoir_init": "xavier"}, ["reservoir_init", "xavier", "orthogonal"]),
        ({"layernorm_position": "sandwich"}, ["layernorm_position", "sandwich", "pre"]),
        ({"encoder_reservoir_layers": "0,1"}, ["encoder_reservoir_layers", "'0,1'", "list"]),
        ({"encoder_reservoir_layers": [0, 9]}, ["encoder_reservoir_layers", "[9]", "0 to 6"]),
        ({"encoder_reservoir_layers": [2, 2]}, ["encoder_reservoir_layers", "twice"]),
        ({"encoder_reservoir_layers": [1, 3], "num_encoder_reservoir_layers": 3}, ["disagrees"]),
        ({"num_encoder_reservoir_layers": 5}, ["num_encoder_reservoir_layers=5", "at most 4", "middle"]),
        ({"num_encoder_reservoir_layers": 9}, ["num_encoder_reservoir_layers=9", "between 0"]),
        ({"num_encoder_reservoir_layers": -1}, ["num_encoder_reservoir_layers=-1", "non-negative"]),
        ({"decoder_reservoir_layers": [2]}, ["decoder_reservoir_layers", "decoder_layers=2"]),
        ({"reservoir_seed": -3}, ["reservoir_seed", "non-negative"]),
        ({"reservoir_cnn_kernel_size": 4}, ["reservoir_cnn_kernel_size", "odd"]),
        ({"reservoir_storage": "disk"}, ["reservoir_storage", "disk", "seed"]),
    ],
)
def test_bad_values_raise_clear_value_error(overrides, words):
    with pytest.raises(ValueError) as excinfo:
        tiny_config(**overrides)
    message = str(excinfo.value)
    for word in words:
        assert word in message, message
