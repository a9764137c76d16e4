"""The command line's settings (hf_reservoir/trainer/arguments.py): the reservoir flags derived from the config."""

import pytest

from hf_reservoir import ReservoirMarianConfig
from hf_reservoir.trainer.arguments import ModelArguments


def test_the_reservoir_flags_are_derived_from_the_config():
    """Every field the config adds to MarianConfig is a flag with the config's default and its docstring's help,
    and a field added to a config becomes a flag without a second declaration."""
    from dataclasses import fields

    from transformers import MarianConfig

    from hf_reservoir import ReservoirMarianConfig
    from hf_reservoir.trainer.arguments import config_field_help, reservoir_flags

    marian = {f.name for f in fields(MarianConfig)}
    added = {f.name: f for f in fields(ReservoirMarianConfig) if f.name not in marian}
    del added["reservoir_checksums"]  # written at save time, never set by hand
    flags = {f.name: f for f in fields(ModelArguments)}
    assert set(added) <= set(flags), set(added) - set(flags)
    docs = config_field_help()
    # Checked against the docstring itself, not only against config_field_help (the function under test): each
    # flag's help is the text of its own field's entry, which follows the entry's name.
    docstring = " ".join((ReservoirMarianConfig.__doc__ or "").split())
    for name, config_field in added.items():
        assert flags[name].metadata["help"] == docs[name] and len(docs[name]) > 20, name
        entry = docstring.index(f"{name} (`")
        assert docstring.find(docs[name], entry) == docstring.index("): ", entry) + 3, name
        if name == "reservoir_type":  # None: not given, so the config's default applies
            assert flags[name].default is None
            given = ModelArguments(num_encoder_reservoir_layers=2).config_kwargs()
            assert "reservoir_type" not in given  # the config's default, in its per-layer form
            assert ReservoirMarianConfig(**given).reservoir_type == [config_field.default] * 2
            continue
        assert flags[name].default == config_field.default, name

    class WiderConfig(ReservoirMarianConfig):
        """A config with one more reservoir knob.

        Args:
            reservoir_gain (`float`, defaults to 1.0):
                Scale of the reservoir outputs.
        """

        reservoir_gain: float = 1.0

    derived = {name: (kind, spec) for name, kind, spec in reservoir_flags(WiderConfig)}
    assert derived["reservoir_gain"][0] is float and derived["reservoir_gain"][1].default == 1.0
    assert derived["reservoir_gain"][1].metadata["help"] == "Scale of the reservoir outputs."

    class UndocumentedConfig(ReservoirMarianConfig):
        reservoir_gain: float = 1.0

    with pytest.raises(ValueError, match="UndocumentedConfig.reservoir_gain has no entry in the class docstring"):
        reservoir_flags(UndocumentedConfig)


def test_a_reservoir_type_without_a_count_is_refused():
    with pytest.raises(ValueError, match=r"reservoir_type=\['bigru'\] was given without reservoir layers"):
        ModelArguments(reservoir_type=["bigru"])
    ModelArguments(reservoir_type=["bigru"], num_encoder_reservoir_layers=0)  # explicitly none: allowed
    with pytest.raises(ValueError, match="unknown type"):
        ReservoirMarianConfig(reservoir_type="lstm", num_encoder_reservoir_layers=0)
