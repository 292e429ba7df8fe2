"""The one loader of server and agent settings: defaults < file < environment < flags.

A bad value is refused with its file, line and field (diag/settings/locator.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from diag.settings.locator import ConfigError, at, located, read_file
from diag.settings.model import Config

M = TypeVar("M", bound=BaseModel)
# A check the model cannot make alone (it needs a catalogue): the first problem's field path
# and message, or None.
Problem = Callable[[Any], "tuple[list[str], str] | None"]

# Environment variable -> setting (a dotted path for a section's), for `diag serve`.
SERVER_ENV = {
    "DIAG_HOST": "host",
    "DIAG_PORT": "port",
    "DIAG_DATA_DIR": "data_dir",
    "DIAG_INTERVAL": "interval",
    "DIAG_STORE_URL": "store_url",
    "DIAG_TOKEN": "token",
    "DIAG_INGEST_TOKEN": "ingest_token",
    "DIAG_COMMANDS": "enable_commands",
    "DIAG_INSTANCE_ID": "instance_id",
    "DIAG_NOTIFY_WEBHOOK": "alerting.notify_webhook",
}


def load_model(model: type[M], path: str | Path | None, env: Mapping[str, str], env_map: Mapping[str, str],
               flags: Mapping[str, Any], problem: Problem | None = None, file_over_env: bool = False) -> M:
    """`model` from its defaults, the file at `path`, the variables of `env_map` set in `env`,
    then `flags` (a None flag was not given and changes nothing). With `file_over_env`, the
    environment comes before the file instead (the agent's order)."""
    where = None if path is None else str(path)
    text, data = ("", {}) if path is None else read_file(Path(path))
    for var, key in env_map.items():
        if env.get(var, "") != "" and not (file_over_env and key in data):
            _put(data, key, env[var])
    given = {k: v for k, v in flags.items() if v is not None}
    for key, value in given.items():
        _put(data, key, value)
    try:
        settings = model.model_validate(data)
    except ValidationError as e:
        err = located(e, text, where)
        # A flag's value: no line of the file.
        if err.field and any(err.field == k or err.field.startswith(k + ".") for k in given):
            err = ConfigError(err.message, field=err.field)
        raise err from None
    found = problem(settings) if problem is not None else None
    if found is not None:
        raise at(found[0], found[1], text, where)
    return settings


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (`alerting.notify_webhook`: in its section) over what the file says. A
    section the file writes as something else than a mapping is left for the model to refuse."""
    *sections, name = key.split(".")
    for section in sections:
        inner = data.get(section)
        if inner is None:
            inner = {}
        elif not isinstance(inner, dict):
            return
        data[section] = inner = dict(inner)
        data = inner
    data[name] = value


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None, **flags: Any) -> Config:
    """`diag serve`'s settings."""
    return load_model(Config, path, os.environ if env is None else env, SERVER_ENV, flags, _unknown_threshold)


def _unknown_threshold(config: Config) -> tuple[list[str], str] | None:
    """The first override naming a check or threshold the catalogue does not have."""
    from checks import catalogue

    for cid, values in config.checks.items():
        if cid not in catalogue.BY_ID:
            return ["checks", cid], f"unknown check {cid!r}"
        known = catalogue.BY_ID[cid].thresholds
        for key in values:
            if key not in known:
                return ["checks", cid, key], f"{cid} has no threshold {key!r} (it has {', '.join(known) or 'none'})"
    return None
