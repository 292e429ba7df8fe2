"""What the pages show, read from the service: time ranges, chart data, the fleet at a glance."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import Any

from dashboards import figures, timefmt
from diag.events import EventLog
from diag.settings.stale import SERIES_FLOOR, stale_after
from diag.store import ReadStore
from diag.store.query import MAX_POINTS, default_step
from diag.store.types import StoreError

RANGES: dict[str, float] = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "31d": 31 * 86400}
MAX_EVENTS_ON_CHART = 200


@dataclass(frozen=True)
class Range:
    key: str  # one of RANGES, or "custom"
    start: float
    end: float
    step: float
    error: str | None = None
    fitted: bool = False  # a preset range cut to the instance's data, shorter than the preset

    @property
    def live(self) -> bool:
        """A range that ends now moves with the clock, so auto-refresh makes sense."""
        return self.key != "custom"


def parse_input_time(value: str, now: float, tz: tzinfo = timezone.utc) -> float:
    """A time from the custom-range and maintenance inputs: `2026-12-05 03:04` (or with a
    T) in the zone the page shows, or any form the API takes (RFC 3339, -1h, UNIX seconds)."""
    return timefmt.parse_input(value, now, tz)


def pick_range(args: dict[str, str], now: float | None = None, tz: tzinfo = timezone.utc) -> Range:
    """The range the picker asked for, its inputs read in `tz`; a bad custom range falls
    back to 24 h with a message."""
    now = time.time() if now is None else now
    key = args.get("range", "1h")
    if key == "custom":
        try:
            start = parse_input_time(args.get("start", ""), now, tz)
            end = parse_input_time(args.get("end", "") or "now", now, tz)
        except (ValueError, IndexError) as e:
            return _fallback(now, f"custom range: {e}")
        if not start < end:
            return _fallback(now, "custom range: the start must be before the end")
        step = default_step(start, end)
        if (end - start) / step > MAX_POINTS:
            return _fallback(now, f"custom range: more than {MAX_POINTS} points a series")
        return Range("custom", start, end, step)
    span = RANGES.get(key)
    if span is None:
        return _fallback(now, f"unknown range {key!r}")
    return Range(key, now - span, now, default_step(now - span, now))


def fit_to_data(store: ReadStore, inst: dict[str, Any], rng: Range) -> Range:
    """A preset range longer than a young instance's history, cut to start just before its
    first sample with a step to match: a 2-minute-old instance's 1 h view is then a line
    across the chart, not four dots at its right edge. Custom ranges are the user's; kept."""
    first_seen = inst.get("first_seen")
    span = rng.end - rng.start
    if not rng.live or first_seen is None or first_seen <= rng.start + span / 10:
        return rng  # history older than the range (first_seen is when this service first heard it)
    start, step = rng.start, rng.step
    # twice: the preset's step rounds the first sample down to its bucket (a minute at 1 h,
    # six hours at 31 d); the fitted window's finer step finds it to within seconds
    for _ in range(2):
        try:
            frame = store.query(figures.CHARTS[0].lines[0].metric, instance_id=inst["instance_id"],
                                start=start, end=rng.end, step=step)
        except StoreError:
            return rng
        if frame is None or frame.empty:
            return rng
        earliest = float(frame["ts"].min())
        if earliest <= rng.start + span / 10:
            return rng  # samples written with older times than first_seen (an import, a backfill)
        start = max(rng.start, earliest - (rng.end - earliest) / 10 - step)  # the first point clear of the edge
        step = default_step(start, rng.end)
    return Range(rng.key, start, rng.end, step, rng.error, fitted=True)


def _fallback(now: float, error: str) -> Range:
    return Range("24h", now - 86400, now, default_step(now - 86400, now), error)


def level_name(step: float) -> str:
    """The roll-up level the store answers a step from, as the page explains it."""
    for lv, name in ((86400, "1 day"), (3600, "1 h"), (300, "5 min"), (60, "1 min")):
        if step >= lv and math.isclose(step / lv, round(step / lv)):
            return f"{name} roll-ups"
    return "raw samples"


def chart_figures(store: ReadStore, events_log: EventLog, instance_id: str,
                  rng: Range) -> tuple[dict[str, dict], list[dict], str | None]:
    """Every chart of the instance page, the events marked on them, and why the charts
    are empty when the store could not answer (an engine behind --store-url that is down)."""
    events = events_log.list(instance_id, since=rng.start, until=rng.end, limit=MAX_EVENTS_ON_CHART)
    # Scheduled maintenance in the future is not on a time axis that ends now.
    marks = [e for e in events if rng.start <= e["publish_time"] <= rng.end]
    out: dict[str, dict] = {}
    failed: str | None = None
    for chart in figures.CHARTS:
        traces = []
        for line in chart.lines if failed is None else ():  # after one failure, ask no more
            try:
                frame = store.query(line.metric, instance_id=instance_id, start=rng.start, end=rng.end,
                                    step=rng.step, agg=line.agg)
            except StoreError as e:
                failed = str(e)
                break
            traces += figures.series_of(line, frame)
        out[chart.key] = figures.figure(chart, traces, rng.start, rng.end, marks)
    return out, events, failed


def _latest(store: ReadStore, metric: str, max_age: float) -> Any:
    try:
        return store.latest(metric, instance_id=None, max_age=max_age)
    except Exception:  # noqa: BLE001 - a store that cannot answer shows dashes, not a broken page
        return None


def glance(store: ReadStore, interval: float, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per instance: the latest CPU, memory and fullest-filesystem usage (None when stale)."""
    now = time.time() if now is None else now
    max_age = stale_after(interval, SERIES_FLOOR)
    out: dict[str, dict[str, Any]] = {}
    for metric in ("cpu_usage", "mem_usage"):
        frame = _latest(store, metric, max_age)
        if frame is not None and not frame.empty:
            for iid, v in zip(frame["instance_id"], frame["value"]):
                out.setdefault(iid, {})[metric] = float(v)
    frame = _latest(store, "fs_usage", max_age)
    if frame is not None and not frame.empty and "mountpoint" in frame.columns:
        for iid, g in frame.groupby("instance_id"):
            row = g.loc[g["value"].idxmax()]
            out.setdefault(str(iid), {})["fs_usage"] = float(row["value"])
            out[str(iid)]["fs_mount"] = str(row["mountpoint"])
    return out
