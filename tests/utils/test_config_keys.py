"""Exact keys for the project's YAML files (hf_reservoir/utils/config_keys.py)."""

from dataclasses import dataclass, field

import pytest

from hf_reservoir.utils.config_keys import check_keys, closest, dataclass_from_yaml, unknown_key_message


@dataclass
class Settings:
    name: str
    seeds: list = field(default_factory=list)
    rate: float = 0.1


def test_the_closest_key_is_named_and_an_exact_key_passes():
    assert closest("sedes", ["seeds", "name"]) == "seeds" and closest("zzz", ["seeds"]) is None
    check_keys({"seeds": [1]}, ["seeds"], "f.yaml")
    with pytest.raises(ValueError, match=r"f.yaml: unknown key 'sedes'; did you mean 'seeds'\? more"):
        check_keys({"seeds": 1, "sedes": 2}, ["seeds"], "f.yaml", "more")
    assert "the valid flags are a, b." in unknown_key_message("zzz", ["b", "a"], "cmd", "flag")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nrat: 1\n", "unknown key 'rat'; did you mean 'rate'?"),
        ("seeds: [1]\n", "lacks the required key(s) name"),
        ("- x\n", "must hold a mapping"),
        ("name: [unclosed\n", "is not valid YAML"),
        ("", "must hold a mapping"),
    ],
)
def test_a_file_is_one_error_naming_it(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"s\.yaml") as error:
        dataclass_from_yaml(Settings, str(path))
    assert message in str(error.value)
    path.write_text("name: x\nseeds: [1, 2]\n")
    assert dataclass_from_yaml(Settings, str(path)) == Settings("x", [1, 2])
