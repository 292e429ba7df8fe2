"""The health state of an instance, from its latest diagnosis, maintenance and data freshness.

Precedence, first match wins (PRODUCT.md): NotApplicable, Maintaining, Initializing,
Impaired, InsufficientData, Warning, Ok. A check's status decides, not its severity.
An `unknown` check is not a passed one: when the core checks, or most checks, cannot be
judged, the state is InsufficientData, never Ok.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checks.state import silent
from diag.report_format import when
from diag.settings.stale import stale_after

STATES = ("Ok", "Impaired", "Warning", "Maintaining", "Initializing", "InsufficientData", "NotApplicable")
# Without these the machine cannot be judged at all (InsufficientData).
CORE_CHECKS = ("performance.cpu", "performance.memory")
# When more than this share of the applicable checks cannot be judged, "no check failed"
# says nothing: an agent with 23 of 30 checks unknown is not Ok.
UNKNOWN_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class HealthState:
    instance_id: str
    status: str
    reasons: list[dict[str, Any]]
    evaluated_at: float
    latest_report_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "health_status": self.status, "health_reasons": self.reasons,
                "evaluated_at": self.evaluated_at, "latest_report_id": self.latest_report_id}


def judge(inst: Mapping[str, Any], checks: Sequence[Mapping[str, Any]] | None, report_id: str | None, *,
          maintenance: dict[str, Any] | None, now: float, interval: float, stopped_after: float) -> HealthState:
    """The instance's health at `now` from a full report's checks (None: no report yet):
    the one place a diagnosis and a look at an instance between diagnoses both judge it."""
    state, reasons = compute(monitoring=inst["monitoring"], maintenance=maintenance, checks=checks,
                             last_sample=inst["last_seen"], now=now, interval=interval, stopped_after=stopped_after)
    return HealthState(inst["instance_id"], state, reasons, now, report_id)


def compute(*, monitoring: bool, maintenance: dict[str, Any] | None, checks: Sequence[Mapping[str, Any]] | None,
            last_sample: float | None, now: float, interval: float,
            stopped_after: float = 300) -> tuple[str, list[dict[str, Any]]]:
    """(state, health_reasons). `checks` are the latest full report's results (None: no report yet);
    `stopped_after` is the state.stopped check's threshold, so health and the check agree."""
    if not monitoring:
        return "NotApplicable", [{"check_id": None, "status": "not_applicable", "message": "monitoring is off"}]
    if maintenance is not None:
        until = when(maintenance["finish_time"])
        return "Maintaining", [{"check_id": None, "status": "maintenance", "event_id": maintenance["event_id"],
                                "message": f"{maintenance['type']} is executing until {until}"}]
    age = None if last_sample is None else now - last_sample
    if checks is None:
        return "Initializing", [{"check_id": None, "status": "initializing",
                                 "message": "monitoring just started; no full diagnosis yet"}]
    results = [c for c in checks if c.get("id") != "state.stopped"]
    # state.stopped's "now" part is judged here from the freshness of the data, not from the
    # report (which may be minutes old); what it found earlier in the lookback still counts.
    earlier = _stopped_earlier(checks)
    stopped = silent(last_sample, now, stopped_after)
    critical = [_reason(c) for c in results if c["status"] == "critical"]
    if stopped:
        msg = "no sample ever" if age is None else f"no sample for {age:.0f}s (since {when(last_sample)})"
        critical.insert(0, {"check_id": "state.stopped", "status": "critical", "message": msg})
    if critical:
        return "Impaired", critical
    if age is not None and age >= stale_after(interval):
        return "InsufficientData", [{"check_id": "state.stopped", "status": "unknown",
                                     "message": f"no sample for {age:.0f}s (3 intervals of {interval:g}s)"}]
    warning = [_reason(c) for c in results if c["status"] == "warning"]
    if earlier is not None:
        warning.insert(0, earlier)
    unjudged = _unjudged(results)
    if unjudged:
        # PRODUCT.md's precedence puts InsufficientData before Warning; the warnings found
        # are still reasons, so a judged problem is not hidden behind the grey.
        return "InsufficientData", unjudged + warning
    if warning:
        return "Warning", warning
    return "Ok", []


def _unjudged(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reasons the machine cannot be judged: an unknown core check, or most applicable
    checks unknown (with a count first, then each check and why); [] when it can be."""
    unknown = [c for c in results if c["status"] == "unknown"]
    core = [c for c in unknown if c["id"] in CORE_CHECKS]
    applicable = [c for c in results if c["status"] != "not_applicable"]
    most = len(unknown) > UNKNOWN_SHARE * len(applicable)
    if not core and not most:
        return []
    reasons = [_reason(c) for c in core]
    if most:
        reasons.append({"check_id": None, "status": "unknown",
                        "message": f"{len(unknown)} of {len(applicable)} applicable checks cannot be judged"})
        reasons += [_reason(c) for c in unknown if c["id"] not in CORE_CHECKS]
    return reasons


def _reason(c: Mapping[str, Any]) -> dict[str, Any]:
    return {"check_id": c["id"], "status": c["status"], "message": c["message"]}


def _stopped_earlier(checks: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The warning part of the report's state.stopped: a silence in the lookback that is over.
    A `critical` there meant "silent at that diagnosis"; once samples arrive again (which the
    caller checks before using this) it is a silence in the lookback, so a warning too."""
    c = next((c for c in checks if c.get("id") == "state.stopped"), None)
    if c is None or c["status"] not in ("warning", "critical"):
        return None
    if c["status"] == "warning":
        return _reason(c)
    return {"check_id": c["id"], "status": "warning", "message": f"was silent at the last diagnosis: {c['message']}"}


def _stopped(reasons: list[dict[str, Any]] | None) -> bool:
    return any(r.get("check_id") == "state.stopped" and r.get("status") == "critical" for r in reasons or ())


def running_change(before: list[dict[str, Any]] | None, after: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(state, cause) when the health reasons say the machine stopped reporting or is back."""
    was, now = _stopped(before), _stopped(after)
    if was == now:
        return None
    if now:
        msg = next(r["message"] for r in after if r.get("check_id") == "state.stopped")
        return "Stopped", msg
    return "Running", "reporting again"
