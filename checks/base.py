"""What a check is, what it may read, and what it returns.

A check is data (id, category, name, severity, lookback, thresholds, recommendation)
plus one pure function `evaluate(ctx, check) -> CheckResult`. It reads only its
`CheckContext`: series from the store as pandas frames, events, a facts snapshot,
the clock. It never imports Flask, the store or the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import pandas as pd

from collectors.settings import BandwidthCap

Status = Literal["ok", "warning", "critical", "unknown", "not_applicable"]
Severity = Literal["critical", "non_critical"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "critical", "unknown", "not_applicable")

# A happening (kernel fault, I/O error) counts as "now" for this long (PRODUCT.md).
RECENT = 15 * 60
DEFAULT_LOOKBACK = 12 * 3600


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # Filled from the check's own recommendation when empty; set it to be more specific
    # (which process, which sysctl, which directory).
    recommendation: str = ""


class CheckContext(Protocol):
    """What a check may read. The diagnosis engine provides it, over the store and event log."""

    now: float
    instance_id: str
    # The diagnosis window: [start, end]. A check's lookback is clipped to it.
    start: float
    end: float
    # Collection interval in seconds (a "sample" is expected this often).
    interval: float
    # When monitoring of this instance began (first sample ever), or None if unknown.
    monitoring_since: float | None
    # Bandwidth caps per scope, as the collectors take them: {"public": BandwidthCap(inbound, outbound)}.
    bandwidth_caps: Mapping[str, BandwidthCap]
    # Service ports to check for listeners and firewall drops (default [22]).
    service_ports: Sequence[int]

    def series(self, metric: str, lookback: float | None = None, *, step: float | None = None,
               agg: str = "avg", labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Long frame with columns ts, value and one per label, over [end - lookback, end]
        (lookback None: the whole window), bucketed by step (None: raw points)."""
        ...

    def latest(self, metric: str, labels: Mapping[str, str] | None = None,
               max_age: float | None = None) -> pd.DataFrame:
        """The last point of each matching series (columns ts, value, labels...)."""
        ...

    def events(self, types: Sequence[str] | None = None, lookback: float | None = None) -> list[dict[str, Any]]:
        """Events of these types (`Kernel.HungTask`...) in the lookback, oldest first:
        dicts with event_id, type, level, status, publish_time, details (message, labels,
        count, lines, kind), and last_time when repeats were folded into the event (the
        checks take last_time, else publish_time, as when the happening last happened)."""
        ...

    def facts(self) -> dict[str, Any] | None:
        """The latest facts snapshot (see collectors/facts), or None when none was taken."""
        ...

    def facts_age(self) -> float | None:
        """Seconds since the facts snapshot was taken."""
        ...

    def top_processes(self, at: float | None = None) -> dict[str, Any]:
        """The top processes {"by_cpu": [...], "by_memory": [...], "ts": taken at}: at the
        latest collection, or in the 5 minutes holding `at` ({} when none was kept)."""
        ...

    def plugin_result(self, name: str) -> dict[str, Any] | None:
        """The last run of the configured plugin `name` (collectors.plugins.PluginRun as a
        dict: status, message, exit_code, started, duration, user, long_output, perfdata),
        None when it has not run, {"status": "not_applicable", "message"} on an instance
        it does not run on."""
        ...


Evaluate = Callable[[CheckContext, "Check"], CheckResult]


# The label that names the check an event was raised by (its source), on the wire as in
# alert notices; the event log writes it, the checks read it.
SOURCE_LABEL = "check_id"


@dataclass(frozen=True, slots=True)
class RaisedEvent:
    """An event a check's result is, besides a status (PRODUCT.md "Events"); `source` is the
    check's id, so a check can tell its own findings from the happenings it judges."""

    type: str
    message: str
    fold_key: str
    labels: Mapping[str, str]
    source: str


@dataclass(frozen=True, slots=True)
class Raises:
    """Which event a check raises when its result is critical. `findings`: one event per
    finding of the result (each `(message, fold key, labels)`); None: one for the result."""

    type: str
    findings: Callable[[CheckResult], Sequence[tuple[str, str, Mapping[str, str]]]] | None = None

    def events(self, check_id: str, result: CheckResult) -> list[RaisedEvent]:
        if result.status != "critical":
            return []
        if self.findings is None:
            return [RaisedEvent(self.type, result.message, check_id, {}, check_id)]
        return [RaisedEvent(self.type, message, key, labels, check_id)
                for message, key, labels in self.findings(result)]


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    category: str
    name: str
    severity: Severity
    description: str
    recommendation: str
    evaluate: Evaluate
    lookback: float = DEFAULT_LOOKBACK
    thresholds: Mapping[str, float] = field(default_factory=dict)
    raises: Raises | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "name": self.name, "severity": self.severity,
                "lookback": self.lookback, "thresholds": dict(self.thresholds),
                "description": self.description, "recommendation": self.recommendation}


def level_status(check: Check, now_hit: bool, earlier_hit: bool) -> Status:
    """PRODUCT.md's rule: a critical-severity check is `critical` while its condition holds
    now and `warning` when it held only earlier in the lookback; a non-critical check is at
    most `warning`."""
    if now_hit:
        return "critical" if check.severity == "critical" else "warning"
    if earlier_hit:
        return "warning"
    return "ok"


def two_level(value: float, warning: float, critical: float, severity: Severity) -> Status:
    """A two-level threshold sets the status directly (capped at warning for non-critical)."""
    if value >= critical:
        return "critical" if severity == "critical" else "warning"
    if value >= warning:
        return "warning"
    return "ok"
