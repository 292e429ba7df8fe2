"""Command-line flags drawn from the settings model: each flag's help is its field's
description, followed by the field's default and its environment variable.

A flag's value reaches the loader as written (a string), so the model checks it as it
checks the file; a flag left out is None and changes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from diag.units import parse_duration


def add(parser: argparse.ArgumentParser, model: type[BaseModel], names: Iterable[str],
        env: Mapping[str, str] = {}) -> None:
    """A flag for each named field of `model` (`data_dir` -> `--data-dir`; a section's field by
    its dotted path, `alerting.notify_webhook` -> `--notify-webhook`, its value in `dest(name)`)."""
    var_of = {key: var for var, key in env.items()}
    for name in names:
        field = _field(model, name)
        if not field.description:
            raise ValueError(f"{model.__name__}.{name} has no description to be a flag's help")
        help_ = f"{field.description} (default: {shown(field)}"
        help_ += f"; env {var_of[name]})" if name in var_of else ")"
        flag = "--" + dest(name).replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action="store_true", default=None, help=help_)
        else:
            parser.add_argument(flag, default=None, metavar=dest(name).upper(), help=help_)


def dest(name: str) -> str:
    """The argparse attribute holding the flag of the setting `name`."""
    return name.rsplit(".", 1)[-1]


def _field(model: type[BaseModel], name: str) -> FieldInfo:
    *sections, last = name.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    return model.model_fields[last]


def shown(field: FieldInfo) -> str:
    """The default as a user would write it: 10s, 8080, data, none."""
    value: Any = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (int, float)) and any(getattr(m, "func", None) is parse_duration for m in field.metadata):
        return f"{value:g}s"
    return str(value)
