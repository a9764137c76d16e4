"""The training command's flags: a YAML/JSON config file turned into flags, parsed with ``HfArgumentParser`` into
the four argument dataclasses, with exact keys and one-line errors ([`~hf_reservoir.utils.config_keys`])."""

from __future__ import annotations

import json
import os

from ..utils.config_keys import check_keys, unknown_key_message


def config_file_to_argv(path: str, scalar_fields: set[str] | None = None, keys: set[str] | None = None) -> list[str]:
    """Turn a YAML/JSON mapping into ``--key value`` flags, so that later flags override it.

    A list given for one of ``scalar_fields`` (arguments that take one value) is refused with its name,
    instead of becoming a stray value that the parser would report as an unknown argument. With ``keys``, a key
    not among them is refused as a key of the file, with the closest valid one.
    """
    import yaml

    if not os.path.isfile(path):
        raise ValueError(
            f"the config file {path} does not exist; check the path (e.g. training/configs/demo_cpu.yaml)."
        )
    with open(path, encoding="utf-8") as handle:
        try:
            values = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            where = " ".join(str(error).split())  # one line
            raise ValueError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {where}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of argument names to values.")
    if keys is not None:
        check_keys(
            {str(k).replace("-", "_"): v for k, v in values.items()},
            keys,
            path,
            "Every key is a flag of `hf-reservoir train --help`, spelt in full.",
        )
    argv = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list) and key in (scalar_fields or ()):
            if len(value) != 1:
                raise ValueError(
                    f"{path}: {key} takes one value, but the file gives the list {value!r}; write one value."
                )
            value = value[0]
        argv.append(f"--{key}")
        if isinstance(value, dict):  # e.g. lr_scheduler_kwargs, fsdp_config: the Trainer parses JSON strings
            argv.append(json.dumps(value))
        elif isinstance(value, list):
            argv.extend(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def _one_line_error(message: str):
    raise SystemExit(f"error: hf-reservoir train: {message} (see `hf-reservoir train --help`)")


def parse_training_argv(argv: list[str]):
    """Parse ``[CONFIG_FILE] [--flag value ...]`` into (model, data, training, convergence) arguments."""
    from transformers import HfArgumentParser, Seq2SeqTrainingArguments

    from .arguments import ConvergenceArguments, DataArguments, ModelArguments

    classes = (ModelArguments, DataArguments, ConvergenceArguments, Seq2SeqTrainingArguments)
    parser = HfArgumentParser(classes)
    parser.allow_abbrev = False  # --learning_rat is not --learning_rate (utils/config_keys.py)
    parser.error = _one_line_error  # argparse's usage screen and "prog: error:" become one `error:` line
    flags = {s[2:].replace("-", "_") for a in parser._actions for s in a.option_strings if s.startswith("--")}
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        # Which options take one value, as the parser built them (not as the fields are annotated).
        scalars = {a.dest for a in parser._actions if a.option_strings and a.nargs not in ("+", "*")}
        argv = config_file_to_argv(argv[0], scalars, flags) + argv[1:]
    model_args, data_args, convergence_args, training_args, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        what = (
            unknown_key_message(flag.lstrip("-"), flags, "hf-reservoir train", "flag")
            if flag.startswith("-")
            else (f"hf-reservoir train: {flag!r} is a value without a flag")
        )
        raise SystemExit(f"error: {what} See `hf-reservoir train --help`.")
    return model_args, data_args, training_args, convergence_args
