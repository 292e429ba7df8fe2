"""Application groups: which group a process's CPU and memory are summed into.

A process belongs to its executable's group by default (comm, or argv[0]'s basename
where the kernel cut comm to 15 bytes), as Glances lists processes; kernel threads,
which have no executable and one name per CPU or work queue (kworker/3:1-events), are one
group `kernel`. Operators' groups (config `app_groups`) are data, as Netdata's
apps_groups.conf: a group name and the process names or globs it takes. A process goes to
the first group, in config order, with a pattern that matches its name; only a process no
operator group takes falls back to the default. The group "other" is what the collector
folds everything beyond its top N into, so no operator group may be called that.

The checks live here, with the groups they guard; the settings model (diag/settings/)
calls them for server and agent alike.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

KERNEL = "kernel"
OTHER = "other"
# Wider than any name a process can have (full_name() keeps argv[0] up to 64 bytes).
MAX_NAME = 128
# Memoised names: the set of executable names on a host is small, but a bound keeps a
# host that runs uniquely named processes (build ids in argv[0]) from growing it.
_MEMO_MAX = 4096


class AppGroupError(ValueError):
    """A bad `app_groups` entry; `loc` is its field path under app_groups."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.loc = message, loc


def check_group_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise AppGroupError(f"a group name is a non-empty string of at most {MAX_NAME} characters")
    if name == OTHER:
        raise AppGroupError(f"{OTHER!r} is where the groups beyond the top N are folded; pick another name")
    return name


def check_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_NAME:
        raise AppGroupError(f"a process name or glob is a non-empty string of at most {MAX_NAME} characters")
    return pattern


def parse_app_groups(value: Any) -> dict[str, tuple[str, ...]]:
    """`{group: [name or glob, ...]}` checked, in config order; AppGroupError names the field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AppGroupError("must be a mapping of group name to a list of process names or globs")
    out: dict[str, tuple[str, ...]] = {}
    for name, patterns in value.items():
        try:
            check_group_name(name)
        except AppGroupError as e:
            raise AppGroupError(e.message, (str(name),)) from None
        if not isinstance(patterns, list) or not patterns:
            raise AppGroupError("must be a non-empty list of process names or globs", (name,))
        for i, p in enumerate(patterns):
            try:
                check_pattern(p)
            except AppGroupError as e:
                raise AppGroupError(e.message, (name, i)) from None
        out[name] = tuple(patterns)
    return out


class AppGroups:
    """Process name -> group, by the operators' groups and then the executable."""

    def __init__(self, groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        # One regex per group, the group's globs as alternatives: fnmatchcase semantics
        # (process names are case-sensitive), matched in config order.
        self._rules = [(re.compile("|".join(fnmatch.translate(p) for p in pats)), group)
                       for group, pats in (groups or {}).items()]
        self._memo: dict[tuple[str, bool], str] = {}

    def of(self, name: str, kernel_thread: bool = False) -> str:
        key = (name, kernel_thread)
        group = self._memo.get(key)
        if group is None:
            group = next((g for rx, g in self._rules if rx.match(name)), KERNEL if kernel_thread else name)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[key] = group
        return group
