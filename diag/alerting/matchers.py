"""Label matchers as Alertmanager writes them: `name=value`, `name!=value`, `name=~regex`,
`name!~regex`. A regex matches the whole value (Alertmanager anchors it); a label the alert
lacks reads as the empty string, so `team!=ops` matches an alert without `team`. Regexes
are compiled by RE2, as Alertmanager's Go regexps are: the same syntax, and a user's
pattern runs in linear time on every alert of every cycle."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from diag.store.query import compile_matcher

OPS = ("=~", "!~", "!=", "=")  # longest first: "=~" must not parse as "=" with a value "~..."
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_MATCHERS = 20
MAX_VALUE = 512
MAX_NAME = 100

# The API document's form of a matcher object and of a {label: value} map of equality
# matchers; a regex that does not compile is a 422 no schema can state.
_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_VALUE_SCHEMA = {"type": "string", "minLength": 0, "maxLength": MAX_VALUE}
MATCHER_SCHEMA = {"type": "object", "properties": {"name": _NAME_SCHEMA, "value": _VALUE_SCHEMA,
                                                  "op": {"type": "string", "enum": ["=", "!=", "=~", "!~"]}},
                  "additionalProperties": False, "required": ["name", "value"]}
LABEL_MAP_SCHEMA = {"type": "object", "maxProperties": MAX_MATCHERS, "additionalProperties": _VALUE_SCHEMA,
                    "propertyNames": {"pattern": _NAME_SCHEMA["pattern"], "maxLength": MAX_NAME}}
LABEL_NAME_SCHEMA = _NAME_SCHEMA


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _re: Any = field(default=None, compare=False, repr=False)  # compiled by RE2

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._re is not None
        hit = self._re.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse(text: Any) -> Matcher:
    """One matcher from `name<op>value` (the value may be double-quoted) or from
    {"name", "op", "value"}; raises MatcherError saying what is wrong."""
    if isinstance(text, dict):
        if set(text) - {"name", "op", "value"}:
            raise MatcherError(f"unknown field {sorted(set(text) - {'name', 'op', 'value'})[0][:80]!r} in a matcher")
        name, op, value = text.get("name"), text.get("op", "="), text.get("value")
        if not all(isinstance(x, str) for x in (name, op, value)):
            raise MatcherError("a matcher object needs string name, op and value")
    elif isinstance(text, str):
        m = NAME.match(text.strip())
        if m is None:
            raise MatcherError(f"{text[:80]!r} does not start with a label name")
        name, rest = m.group(0), text.strip()[m.end():].lstrip()
        op = next((o for o in OPS if rest.startswith(o)), "")
        value = rest[len(op):].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
    else:
        raise MatcherError("a matcher is a string like instance_id=\"web1\"")
    if NAME.fullmatch(name) is None or len(name) > MAX_NAME:
        raise MatcherError(f"{name[:80]!r} is not a label name")
    if op not in OPS:
        raise MatcherError(f"{str(text)[:80]!r}: the operator must be one of =, !=, =~, !~")
    if len(value) > MAX_VALUE:
        raise MatcherError(f"the value of {name} is longer than {MAX_VALUE} characters")
    rx = None
    if op in ("=~", "!~"):
        try:
            rx = compile_matcher(value)
        except ValueError as e:
            raise MatcherError(f"the regex of {name} does not compile: {e}") from None
    return Matcher(name, op, value, rx)


def parse_all(items: Any) -> list[Matcher]:
    if not isinstance(items, list) or len(items) > MAX_MATCHERS:
        raise MatcherError(f"matchers must be a list of at most {MAX_MATCHERS}")
    return [parse(x) for x in items]


def matches(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """All of them match (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def dump(matchers: list[Matcher]) -> list[dict[str, str]]:
    return [{"name": m.name, "op": m.op, "value": m.value} for m in matchers]


def load(stored: list[dict[str, str]]) -> list[Matcher]:
    """Matchers read back from the store (validated when written), compiled once per
    distinct list: a silence is matched against every alert in every cycle."""
    return list(_load(json.dumps(stored, sort_keys=True)))


@functools.lru_cache(maxsize=1024)
def _load(key: str) -> tuple[Matcher, ...]:
    return tuple(parse(m) for m in json.loads(key))
