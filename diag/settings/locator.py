"""Where a setting is written in a YAML or TOML file, and the one error that says so:
`path:line: field: message`. Server and agent files are read and located here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # the agent imports ConfigError from here: importing it must load no pydantic
    from pydantic import ValidationError


class ConfigError(Exception):
    """A config problem, located: `path:line: field: message`."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        where = ":".join(str(p) for p in (path, line) if p is not None)
        super().__init__(" ".join(p for p in (f"{where}:" if where else "", f"{field}:" if field else "", message) if p))


def located(e: ValidationError, text: str, path: str | None) -> ConfigError:
    """The first problem pydantic found, at its line of the file when the file has it."""
    errors = e.errors()
    # An unknown key first: a misspelt setting is what the reader must fix, whatever else is off.
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in err["loc"] if p != "[key]"]  # a bad dict key: the key's own path
    return at(loc, message(err), text, path)


def at(loc: list[str], msg: str, text: str, path: str | None) -> ConfigError:
    """`msg` about the field at `loc`, with the file and line only when the file writes it."""
    line = line_of(text, loc, path) if path is not None else None
    return ConfigError(msg, path if line else None, line, ".".join(loc))


def message(err: Any) -> str:
    """pydantic's message, said as a config file's reader would want it."""
    if err["type"] == "extra_forbidden":
        return "unknown setting"
    if err["type"] == "literal_error":  # "'A' or 'B' or 'C'", as the agent's errors always read
        return "Input should be " + str(err["ctx"]["expected"]).replace(", ", " or ")
    bound = _BOUNDS.get(err["type"])
    if bound:
        word, key = bound
        return f"must be {word} {err['ctx'][key]}"
    return str(err["msg"]).removeprefix("Value error, ")


_BOUNDS = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
           "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}


def line_of(text: str, loc: list[str], path: str) -> int | None:
    """The line where the field at `loc` (or its nearest existing parent) is written."""
    if path.endswith(".toml"):
        return toml_line(text, loc)
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
            node = node.value[int(key)]  # a list item (app_groups' patterns): its own line
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def toml_line(text: str, loc: list[str]) -> int | None:
    """TOML keeps no positions; find `key =` under the table header naming the parents."""
    best = None
    table: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("["):
            table = [p.strip().strip('"') for p in line.strip("[]").split(".")]
            if table == loc[: len(table)]:
                best = best or n
            continue
        if "=" in line and not line.startswith("#"):
            key = [p.strip().strip('"') for p in line.split("=", 1)[0].split(".")]
            full = table + key
            if full == loc[: len(full)]:
                best = n
    return best


def read_file(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", str(path)) from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except tomllib.TOMLDecodeError as e:
        message, line, column = _toml_error(e, text)
        raise ConfigError(message if column is None else f"{message} (column {column})", str(path), line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(str(getattr(e, "problem", e)), str(path), mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", str(path), 1)
    return text, data


_TOML_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)


def _toml_error(e: tomllib.TOMLDecodeError, source: str) -> tuple[str, int | None, int | None]:
    """Message, line and column of a TOML syntax error in `source`.

    tomllib has `lineno`/`colno` only from Python 3.14; before, the position exists only
    in the text, as "Invalid value (at line 2, column 8)" or "(at end of document)".
    """
    line, column = getattr(e, "lineno", None), getattr(e, "colno", None)
    text = str(e)
    m = _TOML_AT.match(text)
    if m:
        return m.group(1), line or int(m.group(2)), column or int(m.group(3))
    message = text.split(" (at ")[0]
    if line is None and text.endswith("(at end of document)"):
        line = max(1, len(source.splitlines()))  # an unclosed bracket or string: its last line
    return message, line, column
