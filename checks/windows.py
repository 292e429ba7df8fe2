"""Shared pandas/numpy helpers for checks: per-series groups, runs of a held condition,
5-minute bucket peaks, per-interval count sums, and readable times for messages.

Every helper works on the long frames `CheckContext.series` returns (columns ts, value
and one per label) and never assumes their row order: the store may hand rows grouped
by series or by bucket.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd

from checks.base import Check, CheckContext

# A point later than this many intervals after the previous one breaks a run: a gap in
# collection is no evidence that a condition held through it.
GAP_FACTOR = 1.5


def label_keys(frame: pd.DataFrame) -> list[str]:
    """The label columns of a series frame (everything but ts and value)."""
    return [c for c in frame.columns if c not in ("ts", "value")]


def groups(frame: pd.DataFrame, keys: list[str] | None = None) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """(labels, ts, values) per series, each sorted by time."""
    if frame.empty:
        return
    keys = label_keys(frame) if keys is None else keys
    if not keys:
        order = np.argsort(frame["ts"].to_numpy(), kind="stable")
        yield {}, frame["ts"].to_numpy()[order], frame["value"].to_numpy(dtype=float)[order]
        return
    for key, sub in frame.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = {k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)) for k, v in zip(keys, key)}
        ts = sub["ts"].to_numpy()
        order = np.argsort(ts, kind="stable")
        yield labels, ts[order], sub["value"].to_numpy(dtype=float)[order]


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive points where a condition held. `seconds` counts the interval each point
    stands for (a rate or average covers the interval ending at its timestamp), so three
    10 s points hold for 30 s."""

    start: float
    end: float
    seconds: float
    peak: float
    points: int

    def to_json(self) -> dict[str, Any]:
        return {"start": float(self.start), "end": float(self.end), "seconds": round(float(self.seconds), 3),
                "peak": round(float(self.peak), 3), "points": int(self.points)}


def runs(ts: np.ndarray, mask: np.ndarray, values: np.ndarray, interval: float) -> list[Run]:
    """Runs of consecutive True points; a gap in the timestamps ends a run."""
    if ts.size == 0 or not mask.any():
        return []
    mask = np.asarray(mask, dtype=bool)
    n = ts.size
    gap = np.ones(n, dtype=bool)
    gap[1:] = np.diff(ts) > GAP_FACTOR * interval
    prev_on = np.concatenate(([False], mask[:-1]))
    next_on = np.concatenate((mask[1:], [False]))
    next_gap = np.concatenate((gap[1:], [True]))
    starts = np.flatnonzero(mask & (gap | ~prev_on))
    ends = np.flatnonzero(mask & (next_gap | ~next_on))
    # Peaks per run: reduceat spans [start_k, start_k+1), where points outside runs are -inf.
    peaks = np.maximum.reduceat(np.where(mask, values, -np.inf), starts)
    return [Run(float(ts[i]), float(ts[j]), float(ts[j] - ts[i] + interval), float(p), int(j - i + 1))
            for i, j, p in zip(starts, ends, peaks)]


def held(ts: np.ndarray, mask: np.ndarray, values: np.ndarray, interval: float, min_seconds: float) -> list[Run]:
    """Runs that held for at least `min_seconds`."""
    return [r for r in runs(ts, mask, values, interval) if r.seconds >= min_seconds]


@dataclass(frozen=True, slots=True)
class Peak:
    labels: dict[str, str]
    value: float
    at: float
    buckets_over: int
    buckets: int
    # True when no window was full yet (a new instance): the value is an average of what
    # exists, and no breach is concluded from it.
    partial: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.labels, "peak": round(self.value, 3), "at": float(self.at),
                "buckets_over": self.buckets_over, "buckets": self.buckets}


def window_peaks(ctx: CheckContext, metric: str, check: Check, threshold: float) -> tuple[list[Peak], int]:
    """Per series, the highest `window`-second average in the lookback (the store's avg
    roll-up), counting only buckets with at least half their expected points, so the
    partial bucket at either edge of the window cannot turn one spike into an "average".
    Also returns how many buckets had any point: data, but no full window yet, is not
    the same as no data."""
    step = float(check.thresholds.get("window_seconds", 300))
    avg = ctx.series(metric, check.lookback, step=step, agg="avg")
    if avg.empty:
        return [], 0
    cnt = ctx.series(metric, check.lookback, step=step, agg="count")
    keys = label_keys(avg)
    if not cnt.empty:
        merged = avg.merge(cnt.rename(columns={"value": "n"}), on=["ts", *keys], how="left")
        need = max(1.0, math.floor(0.5 * step / max(ctx.interval, 1e-9)))
        full = merged[merged["n"].isna() | (merged["n"] >= need)]
    else:
        full = avg
    partial = full.empty
    out = []
    for labels, ts, values in groups((avg if partial else full)[["ts", "value", *keys]], keys):
        ok = ~np.isnan(values)
        if not ok.any():
            continue
        i = int(np.nanargmax(values))
        over = 0 if partial else int((values[ok] >= threshold).sum())
        out.append(Peak(labels, float(values[i]), float(ts[i]), over, int(ok.sum()), partial))
    return out, len(avg)


def total_increase(frame: pd.DataFrame) -> tuple[float, int, float | None]:
    """For a per-interval count series: (sum, intervals that rose, time of the last rise)."""
    if frame.empty:
        return 0.0, 0, None
    v = frame["value"].to_numpy(dtype=float)
    rose = v > 0
    last = float(frame["ts"].to_numpy()[rose].max()) if rose.any() else None
    return float(np.nansum(v[rose])), int(rose.sum()), last


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def thresholds(check: Check) -> dict[str, float]:
    return {k: float(v) for k, v in check.thresholds.items()}
