"""The diagnosis engine: runs checks over a window of one instance's data and makes a report.

`StoreContext` is the `CheckContext` over the real store, event log and facts; checks
stay pure functions of it. A check that raises becomes `unknown` with the error, and
the others still run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import pandas as pd

from checks import catalogue as check_catalogue
from checks.base import STATUSES, Check, CheckResult, RaisedEvent
from collectors.settings import BandwidthCap
from diag.health import HealthState

log = logging.getLogger(__name__)

# Raw points are asked for as millisecond buckets, the finest both stores keep (Prometheus
# engines store milliseconds): two collections can share a second (a late cycle, then an
# on-time one), never a millisecond.
RAW_STEP = 0.001


def _key(labels: Mapping[str, Any] | None) -> tuple:
    return tuple(sorted(labels.items(), key=lambda kv: kv[0])) if labels else ()


class StoreContext:
    """What a check may read, for one instance and window, backed by the service's parts."""

    def __init__(self, *, store, events, instance_id: str, start: float, end: float, now: float,
                 interval: float, monitoring_since: float | None,
                 bandwidth_caps: Mapping[str, BandwidthCap],
                 service_ports: Sequence[int], facts: Callable[[], tuple[dict | None, float | None]],
                 processes: Callable[[float | None], dict[str, Any]],
                 plugins: Callable[[str], dict[str, Any] | None] = lambda name: None) -> None:
        self._store, self._events = store, events
        self._plugins = plugins
        self.instance_id, self.start, self.end, self.now = instance_id, start, end, now
        self.interval, self.monitoring_since = interval, monitoring_since
        self.bandwidth_caps, self.service_ports = bandwidth_caps, service_ports
        self._facts, self._processes = facts, processes
        self._facts_cache: tuple[dict | None, float | None] | None = None
        # Several checks read the same series (kernel_signals, cpu_usage, disk_*): one
        # store query each per diagnosis, and each check gets its own copy to change.
        self._frames: dict[tuple, pd.DataFrame] = {}

    def _once(self, key: tuple, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = read()
        return frame.copy()

    def series(self, metric: str, lookback: float | None = None, *, step: float | None = None,
               agg: str = "avg", labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        start = self.start if lookback is None else max(self.start, self.end - lookback)

        def read() -> pd.DataFrame:
            frame = self._store.query(metric, instance_id=self.instance_id, labels=labels, start=start, end=self.end,
                                      step=step or RAW_STEP, agg=agg if step else "last")
            if not step:
                frame["ts"] = frame["ts"].round(3)  # bucket starts, without float noise
            return frame.drop(columns=["instance_id"], errors="ignore")

        return self._once(("series", metric, start, step, agg, _key(labels)), read)

    def latest(self, metric: str, labels: Mapping[str, str] | None = None,
               max_age: float | None = None) -> pd.DataFrame:
        def read() -> pd.DataFrame:
            frame = self._store.latest(metric, instance_id=self.instance_id, labels=labels, max_age=max_age)
            return frame.drop(columns=["instance_id"], errors="ignore")

        return self._once(("latest", metric, max_age, _key(labels)), read)

    def events(self, types: Sequence[str] | None = None, lookback: float | None = None) -> list[dict[str, Any]]:
        since = self.start if lookback is None else max(self.start, self.end - lookback)
        got = self._events.list(self.instance_id, types=types, since=since, until=self.end)
        return sorted((e for e in got if e["status"] == "Executed"), key=lambda e: e["publish_time"])

    def facts(self) -> dict[str, Any] | None:
        return self._facts_pair()[0]

    def facts_age(self) -> float | None:
        taken = self._facts_pair()[1]
        return None if taken is None else max(0.0, self.now - taken)

    def _facts_pair(self) -> tuple[dict | None, float | None]:
        if self._facts_cache is None:
            self._facts_cache = self._facts()
        return self._facts_cache

    def top_processes(self, at: float | None = None) -> dict[str, Any]:
        return self._processes(at)

    def plugin_result(self, name: str) -> dict[str, Any] | None:
        return self._plugins(name)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One check's result in a report, with the check that produced it."""

    check: Check
    result: CheckResult
    duration_ms: float

    @property
    def status(self) -> str:
        return self.result.status

    def to_json(self) -> dict[str, Any]:
        c, r = self.check, self.result
        return {"id": c.id, "category": c.category, "name": c.name, "severity": c.severity,
                "status": r.status, "message": r.message, "evidence": r.evidence,
                "recommendation": r.recommendation or (c.recommendation if r.status in ("warning", "critical") else ""),
                "duration_ms": self.duration_ms}

    def __getitem__(self, key: str) -> Any:
        """Read like the report line it becomes (report["checks"][i]["status"])."""
        return self.to_json()[key]

    def raised(self) -> list[RaisedEvent]:
        """The events this result is, as the check's catalogue entry says."""
        return self.check.raises.events(self.check.id, self.result) if self.check.raises else []


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    report_id: str
    instance_id: str
    created_at: float
    start: float
    end: float
    health: HealthState
    checks: tuple[CheckOutcome, ...]
    full: bool

    def to_json(self) -> dict[str, Any]:
        summary = {s: 0 for s in STATUSES}
        for c in self.checks:
            summary[c.status] += 1
        return {"report_id": self.report_id, "instance_id": self.instance_id, "created_at": self.created_at,
                "window": {"start": self.start, "end": self.end}, "health_status": self.health.status,
                "health_reasons": self.health.reasons, "summary": summary, "full": self.full,
                "checks": [c.to_json() for c in self.checks]}


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnosis:
    """What one diagnosis pass finds: the report, the health it sets, the events its checks raised."""

    report: Report
    events: list[RaisedEvent]

    @property
    def health(self) -> HealthState:
        return self.report.health


def run_checks(ctx: StoreContext, checks: Sequence[Check]) -> list[CheckOutcome]:
    out = []
    for check in checks:
        t0 = time.perf_counter()
        try:
            result = check.evaluate(ctx, check)
            if result.status not in STATUSES:
                raise ValueError(f"check returned status {result.status!r}")
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            log.exception("check %s failed", check.id)
            result = CheckResult("unknown", f"the check failed: {type(e).__name__}: {e}", {"error": repr(e)})
        out.append(CheckOutcome(check, result, round((time.perf_counter() - t0) * 1000, 3)))
    return out


def configured(overrides: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """The catalogue with the config's threshold overrides applied."""
    return [dataclasses.replace(c, thresholds={**c.thresholds, **overrides[c.id]}) if c.id in overrides else c
            for c in check_catalogue.ALL]


def select(checks: Sequence[Check], check_ids: Sequence[str] | None) -> list[Check]:
    """The checks asked for, in catalogue order; KeyError names an unknown id."""
    if not check_ids:
        return list(checks)
    known = {c.id for c in checks}  # the catalogue's and the configured plugins'
    unknown = [c for c in check_ids if c not in known]
    if unknown:
        raise KeyError(unknown[0])
    wanted = set(check_ids)
    return [c for c in checks if c.id in wanted]


def diagnose(ctx: StoreContext, checks: Sequence[Check], *, full: bool,
             judge: Callable[[list[dict[str, Any]], str], HealthState]) -> Diagnosis:
    """Run the checks and judge the instance's health from their results (`judge(checks'
    JSON, report id)`): report, health and events from one pass."""
    outcomes = tuple(run_checks(ctx, checks))
    report_id = "r-" + uuid.uuid4().hex[:16]
    state = judge([c.to_json() for c in outcomes], report_id)
    report = Report(report_id, ctx.instance_id, ctx.now, ctx.start, ctx.end, state, outcomes, full)
    return Diagnosis(report, [e for c in outcomes for e in c.raised()])
