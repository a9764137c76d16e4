"""Keys of the YAML files the project reads (train configs, sweep configs): exact, or one error naming the key.

argparse matches an unambiguous prefix of a flag (``--learning_rat`` is ``--learning_rate``), which turns a misspelt
key of a config file into another setting without a word. Every parser here is built with ``allow_abbrev=False``,
and every file's keys are checked against the valid ones before use.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (difflib's ratio, at least 0.6), or None."""
    matches = difflib.get_close_matches(name, sorted(set(valid)), n=1)
    return matches[0] if matches else None


def unknown_key_message(key: str, valid: Iterable[str], where: str, kind: str = "key") -> str:
    """``<where>: unknown <kind> 'x'; did you mean 'y'?`` (or the valid names, when none is close)."""
    valid = sorted(set(valid))
    guess = closest(str(key), valid)
    hint = f"did you mean {guess!r}?" if guess else f"the valid {kind}s are {', '.join(valid)}."
    return f"{where}: unknown {kind} {key!r}; {hint}"


def check_keys(values: dict, valid: Iterable[str], where: str, more: str = "") -> None:
    """Refuse the first key of ``values`` that is not in ``valid``, naming it and the closest valid key.

    Args:
        values (`dict`): the file's mapping.
        valid (`Iterable[str]`): the keys the file may hold.
        where (`str`): the file, as the message names it.
        more (`str`): a sentence to add (where the valid keys are listed, e.g. ``see hf-reservoir train --help``).
    """
    valid = set(valid)
    for key in values:
        if key not in valid:
            raise ValueError(unknown_key_message(key, valid, where) + (f" {more}" if more else ""))


def dataclass_from_yaml(cls: type, path: str, more: str = ""):
    """An instance of the dataclass ``cls`` from the YAML mapping in ``path``: invalid YAML, a file that is not a
    mapping, an unknown key (with the closest valid one) and a missing required key are each one ``ValueError``
    naming the file; the dataclass's own checks (``__post_init__``) judge the values."""
    from dataclasses import MISSING, fields

    import yaml

    with open(path, encoding="utf-8") as handle:
        try:
            values = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of settings (key: value lines). {more}".strip())
    known = {f.name: f for f in fields(cls) if f.init}
    check_keys(values, known, path, more)
    missing = [
        n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in values
    ]
    if missing:
        raise ValueError(f"{path} lacks the required key(s) {', '.join(missing)}. {more}".strip())
    return cls(**values)
