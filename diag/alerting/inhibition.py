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
from typing import Any

from diag.alerting import matchers as m
from diag.alerting.repository import new_id
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


def validate(body: Any) -> dict[str, Any]:
    """The rule as stored, or RuleError naming the field that is wrong."""
    if not isinstance(body, dict):
        raise RuleError(None, "must be a JSON object")
    unknown = set(body) - {"name", "source", "target", "equal", "comment"}
    if unknown:
        raise RuleError(sorted(unknown)[0], "unknown field")
    name, comment = body.get("name", ""), body.get("comment", "")
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise RuleError("name", "must be a string of 1 to 200 characters")
    if not isinstance(comment, str) or len(comment) > 1024:
        raise RuleError("comment", "must be a string of at most 1024 characters")
    out: dict[str, Any] = {"name": name, "comment": comment}
    for f in ("source", "target"):
        given = body.get(f, [])
        if isinstance(given, dict):  # {label: value}: equality matchers (Alertmanager's source_match)
            if len(given) > m.MAX_MATCHERS or not all(isinstance(v, str) for v in given.values()):
                raise RuleError(f, f"a map of at most {m.MAX_MATCHERS} labels to string values")
            given = [{"name": k, "op": "=", "value": v} for k, v in given.items()]
        if not isinstance(given, list) or not all(isinstance(x, dict) for x in given):
            raise RuleError(f, "must be {label: value} or a list of matchers {name, op, value}")
        try:
            out[f] = m.dump(m.parse_all(given))
        except m.MatcherError as e:
            raise RuleError(f, str(e)) from None
    if not out["source"]:
        raise RuleError("source", "a rule needs at least one source matcher")
    equal = body.get("equal", [])
    if not isinstance(equal, list) or len(equal) > 20 or not all(
            isinstance(x, str) and len(x) <= m.MAX_NAME and m.NAME.fullmatch(x) for x in equal):
        raise RuleError("equal", "must be a list of label names")
    out["equal"] = equal
    return out


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
