"""Inhibition rules, as Alertmanager's: while a *source* alert fires, the *target* alerts
that share its `equal` labels send no notice (their state still moves and is shown).

Sources are the firing alerts and two facts about instances, written as alerts so that a
rule can name them: `alertname="InstanceNotReporting"` (its health says it stopped
reporting) and `alertname="InstanceMaintaining"` (a maintenance is executing on it). The
default rule, created once (deleting it sticks), lets either inhibit every other alert of
that instance: a machine that stops reporting pages once, not once per disk and check.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from diag.alerting import matchers as m
from diag.alerting.policy import PolicyError, parse
from diag.alerting.repository import new_id
from diag.alerting.silences import Comment
from diag.db import Database

NOT_REPORTING, MAINTAINING = "InstanceNotReporting", "InstanceMaintaining"
DEFAULT_SEEDED = "alerting:inhibit_default"
DEFAULT_RULE = {
    "name": "an instance that stopped reporting or is in maintenance",
    "source": [{"name": "alertname", "op": "=~", "value": f"{NOT_REPORTING}|{MAINTAINING}"}],
    # Not the instance's own events (Instance.StateChange says it stopped): those must still be heard.
    "target": [{"name": "event_type", "op": "!~", "value": "Instance\\..*"}],
    "equal": ["instance_id"],
    "comment": "its disk, CPU and check alerts follow from it: one notice, not one per alert",
}


class RuleError(ValueError):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name: str
    source: list[m.Matcher]
    target: list[m.Matcher]
    equal: tuple[str, ...]

    def could_be_source(self, alertname: str) -> bool:
        """Whether an alert of a policy with this name may match the source (its other
        labels unknown yet): false only when an `alertname` matcher refuses the name."""
        return all(mt.matches({"alertname": alertname}) for mt in self.source if mt.name == "alertname")


def _name(v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= 200:
        raise ValueError("must be a string of 1 to 200 characters")
    return v


def _matchers(given: Any) -> list[dict[str, str]]:
    if isinstance(given, dict):  # {label: value}: equality matchers (Alertmanager's source_match)
        if len(given) > m.MAX_MATCHERS or not all(isinstance(v, str) for v in given.values()):
            raise ValueError(f"a map of at most {m.MAX_MATCHERS} labels to string values")
        given = [{"name": k, "op": "=", "value": v} for k, v in given.items()]
    if not isinstance(given, list) or not all(isinstance(x, dict) for x in given):
        raise ValueError("must be {label: value} or a list of matchers {name, op, value}")
    try:
        return m.dump(m.parse_all(given))
    except m.MatcherError as e:
        raise ValueError(str(e)) from None


_NO_SOURCE = "a rule needs at least one source matcher"


def _source(given: Any) -> list[dict[str, str]]:
    out = _matchers(given)
    if not out:
        raise ValueError(_NO_SOURCE)
    return out


def _equal(v: Any) -> list[str]:
    if not isinstance(v, list) or len(v) > 20 or not all(
            isinstance(x, str) and len(x) <= m.MAX_NAME and m.NAME.fullmatch(x) for x in v):
        raise ValueError("must be a list of label names")
    return v


def _matchers_schema(min_items: int) -> dict[str, Any]:
    return {"oneOf": [{"type": "array", "items": m.MATCHER_SCHEMA, "minItems": min_items, "maxItems": m.MAX_MATCHERS},
                      {**m.LABEL_MAP_SCHEMA, "minProperties": min_items}]}


class RuleBody(BaseModel):
    """An inhibition rule as the API and the Alerts page's form give it."""

    # Its validator and its schema in the API document. The checks are before-validators:
    # their messages (the page shows them) and fields are the API's as they were.

    # `name` is required; a missing one reads as "" so that its message is the same.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["name"]})
    name: Annotated[str, BeforeValidator(_name),
                    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200})] = Field("", validate_default=True)
    comment: Comment = ""
    source: Annotated[list[dict[str, str]], BeforeValidator(_source),
                      WithJsonSchema(_matchers_schema(1))] = Field([], validate_default=True)
    target: Annotated[list[dict[str, str]], BeforeValidator(_matchers), WithJsonSchema(_matchers_schema(0))] = []
    equal: Annotated[list[str], BeforeValidator(_equal),
                     WithJsonSchema({"type": "array", "items": m.LABEL_NAME_SCHEMA, "maxItems": 20})] = []


def validate(body: Any) -> dict[str, Any]:
    """The rule as stored, or RuleError naming the field that is wrong: an unknown field
    first, then the first problem in the body's order (name, comment, source, target, equal)."""
    if not isinstance(body, dict):
        raise RuleError(None, "must be a JSON object")
    try:
        return parse(RuleBody, body).model_dump()
    except PolicyError as e:
        unknown = sorted(p.get("field") or "" for p in e.errors if p["message"] == "unknown field")
        if unknown:
            raise RuleError(unknown[0], "unknown field") from None
        # A source without matchers was refused after the target's matchers were read.
        first = next((p for p in e.errors if p["message"] != _NO_SOURCE or
                      not any(q.get("field") == "target" for q in e.errors)), e.errors[0])
        raise RuleError(first.get("field"), first["message"]) from None


class Rules:
    def __init__(self, db: Database) -> None:
        self.db = db

    def seed_default(self) -> None:
        if self.db.get_kv(DEFAULT_SEEDED) is None:
            self.put(DEFAULT_RULE)
            self.db.set_kv(DEFAULT_SEEDED, 1)

    def list(self) -> list[dict[str, Any]]:
        return [{"rule_id": r["rule_id"], **json.loads(r["body"]), "created_at": r["created_at"]}
                for r in self.db.read("SELECT * FROM alert_inhibit_rules ORDER BY created_at, rule_id")]

    def get(self, rule_id: str) -> dict[str, Any] | None:
        return next((r for r in self.list() if r["rule_id"] == rule_id), None)

    def put(self, body: Any, rule_id: str | None = None) -> dict[str, Any]:
        rule = validate(body)
        rule_id = rule_id or new_id("i-")
        with self.db.write() as c:
            c.execute("INSERT INTO alert_inhibit_rules (rule_id, body, created_at) VALUES (?, ?, ?) "
                      "ON CONFLICT(rule_id) DO UPDATE SET body = excluded.body", (rule_id, json.dumps(rule), time.time()))
        got = self.get(rule_id)
        assert got is not None
        return got

    def delete(self, rule_id: str) -> bool:
        with self.db.write() as c:
            return c.execute("DELETE FROM alert_inhibit_rules WHERE rule_id = ?", (rule_id,)).rowcount > 0

    def compiled(self) -> list[Rule]:
        return [Rule(r["rule_id"], r["name"], m.load(r["source"]), m.load(r["target"]),
                     tuple(r["equal"])) for r in self.list()]


def instance_sources(instances: list[dict[str, Any]], maintaining: set[str]) -> list[dict[str, str]]:
    """The instance facts a rule can name as its source."""
    from diag.health import _stopped

    out = []
    for i in instances:
        if _stopped(i.get("health_reasons")):
            out.append({"alertname": NOT_REPORTING, "instance_id": i["instance_id"]})
        if i["instance_id"] in maintaining:
            out.append({"alertname": MAINTAINING, "instance_id": i["instance_id"]})
    return out


class Inhibitor:
    """Answers "which rule inhibits these labels?" for one evaluation cycle's sources."""

    def __init__(self, rules: list[Rule], sources: list[dict[str, str]]) -> None:
        self._by_rule = [(r, [s for s in sources if m.matches(r.source, s)]) for r in rules]

    def inhibits(self, labels: dict[str, str]) -> tuple[Rule, dict[str, str]] | None:
        """The rule and the source alert that inhibit an alert with these labels, if any.
        An alert never inhibits itself (Alertmanager's rule for one matching both sides)."""
        for rule, sources in self._by_rule:
            if not sources or not m.matches(rule.target, labels):
                continue
            for s in sources:
                if s == labels:
                    continue
                if all(s.get(k, "") == labels.get(k, "") for k in rule.equal):
                    return rule, s
        return None
