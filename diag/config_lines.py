"""Where a setting is written in a YAML or TOML config file, for errors that name the line.

Shared by the server's config (diag/config.py) and the agent's (diag/agent/config.py),
which stays light: yaml and the stdlib only.
"""

from __future__ import annotations

import yaml


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
