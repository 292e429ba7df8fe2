"""The bundled library of public commands (seed 001, 公共命令): read-only diagnostics an
admin enables one by one (POST /api/v1/command-library/{id}/enable), which saves them as
ordinary commands. Shipped as YAML files beside this module; each is checked as a command
body is, so a bad file fails at load (and in tests), never at run time."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
LIBRARY_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, dict[str, Any]]:
    """library_id -> the command as model.command returns it, plus library_id; by id."""
    from diag.commands import model

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(HERE.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        lid = path.stem
        if not LIBRARY_ID.match(lid):
            raise ValueError(f"{path}: the file name is no library id")
        try:
            cmd = model.command(raw)
        except model.CommandError as e:
            raise ValueError(f"{path}: {e.field}: {e.message}") from None
        out[lid] = {"library_id": lid, **cmd}
    return out
