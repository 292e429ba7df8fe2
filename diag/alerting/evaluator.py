"""One evaluation cycle: every enabled policy, in its effective window, over its target
instances that are not Maintaining; metric conditions from aligned period buckets,
event conditions from the events recorded since the last cycle.

Conditions that read the same series the same way (metric, label filter, period,
statistic) share one store query over all instances, so 1,000 policies on 100
instances cost one query per distinct reading, not 100,000.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diag.alerting import labels, notices, semantics, windows
from diag.alerting.policy import Condition, Policy
from diag.alerting.semantics import FIRE, INSUFFICIENT, KEEP, OK, PENDING

EVENT_HOLD = 15 * 60  # an event alert stays firing this long after its last event (checks.base.RECENT)
_QUIET = (OK, INSUFFICIENT, KEEP)


def alert_id(policy_id: str, condition: str, instance_id: str, series: str = "") -> str:
    """The alert's id; an alert with no series labels keeps the id it had before alerts
    were per series, so ids in links and silences survive the upgrade."""
    key = f"{policy_id}|{condition}|{instance_id}" + (f"|{series}" if series else "")
    return "a-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Reading:
    """One store query's result, as a (instance, series) x bucket matrix (NaN = missing).
    A row's series is `labels.series_key` of its labels, '' for a metric with one series."""

    starts: np.ndarray
    rows: dict[tuple[str, str], np.ndarray]

    @functools.cached_property
    def matrix(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        """(row keys, row x bucket matrix), built once for all conditions reading it."""
        ids = list(self.rows)
        return ids, (np.vstack([self.rows[i] for i in ids]) if ids else np.empty((0, len(self.starts))))


@dataclass
class Change:
    """A verdict that moves an alert, with what the notice needs."""

    key: tuple[str, str, str, str]  # policy, condition, instance, series
    policy_id: str
    policy: Policy
    verdict: str
    value: float | None
    severity: str
    conds: list[tuple[int, Condition, dict]] = field(default_factory=list)
    event: dict[str, Any] | None = None
    event_index: int | None = None
    started_at: float | None = None


def _series_keys(df: pd.DataFrame) -> np.ndarray:
    """Each row's series key, computed once per distinct label set rather than per row."""
    keys = [k for k in df.columns if k not in ("instance_id", "ts", "value")]
    if not keys:
        return np.full(len(df), "", dtype=object)
    codes = df.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    firsts = df[keys].groupby(codes, sort=False).first()
    text = {code: labels.series_key({k: v for k, v in zip(keys, vals) if isinstance(v, str)})
            for code, vals in zip(firsts.index, firsts.itertuples(index=False))}
    return np.array([text[c] for c in codes], dtype=object)


def read(store: Any, key: tuple, now: float, buckets: int, stats: dict[str, float]) -> Reading:
    metric, filt, period, statistic = key
    cur = math.floor(now / period) * period  # the open bucket starts here and does not count
    start = cur - buckets * period
    starts = start + period * np.arange(buckets, dtype=float)
    t0 = time.perf_counter()
    df = store.query(metric, labels=dict(filt) or None, start=start, end=cur, step=period, agg=statistic)
    stats["store_seconds"] = stats.get("store_seconds", 0.0) + time.perf_counter() - t0
    rows: dict[tuple[str, str], np.ndarray] = {}
    if len(df):
        df = df[df["ts"] >= start]
        inst, ts, vals = df["instance_id"].to_numpy(), df["ts"].to_numpy(dtype=float), df["value"].to_numpy(dtype=float)
        series = _series_keys(df)
        idx = ((ts - start) / period).round().astype(int)
        ok = (idx >= 0) & (idx < buckets)
        inst, series, idx, vals = inst[ok], series[ok], idx[ok], vals[ok]
        # One code per (instance, series), in numpy: pandas' MultiIndex costs more than the store here.
        iu, ic = np.unique(inst, return_inverse=True)
        su, sc = np.unique(series, return_inverse=True)
        pu, pos = np.unique(ic * len(su) + sc, return_inverse=True)
        mat = np.full((len(pu), buckets), np.nan)
        mat[pos, idx] = vals
        rows = {(str(iu[p // len(su)]), str(su[p % len(su)])): mat[k] for k, p in enumerate(pu.tolist())}
    return Reading(starts, rows)


def _verdicts(r: Reading, c: Condition, mode: str) -> tuple[dict[str, list[tuple[str, tuple]]], tuple]:
    """Per instance in the reading, each of its series with (verdict, newest value, run, run
    start); and the verdict of a series with no data at all. Rows without a gap are decided with
    numpy at once; rows with missing periods go through `semantics.decide`."""
    n, width = c.consecutive, 2 * c.consecutive
    ids, full = r.matrix
    none_v = semantics.decide(["M"] * width, n, mode)
    nothing = (none_v, None, width if mode == "breaching" else 0, float(r.starts[-width]) if mode == "breaching" else None)
    if not ids:
        return {}, nothing
    m = full[:, -width:]
    miss = np.isnan(m)
    with np.errstate(invalid="ignore"):
        b = semantics.OPS[c.comparison](m, c.threshold) & ~miss
    fire = b[:, -n:].all(1)
    newest_b = b[:, -1]
    # run of breaching periods ending now (the message's "for how long")
    rev = b[:, ::-1]
    run = np.where(rev.all(1), width, np.argmin(rev, axis=1))
    out: dict[str, list[tuple[str, tuple]]] = {}
    starts = r.starts[-width:].tolist()
    # Lists, not numpy scalars: this loop runs once per (condition, instance, series).
    rows = zip(ids, miss.any(1).tolist(), fire.tolist(), newest_b.tolist(), m[:, -1].tolist(), run.tolist())
    for k, ((iid, series), gap, fires, newest_breaches, newest, rn) in enumerate(rows):
        if gap:
            values = [None if math.isnan(v) else float(v) for v in m[k]]
            cls = semantics.classify(values, c.comparison, c.threshold)
            v = semantics.decide(cls, n, mode)
            newest = next((x for x in reversed(values) if x is not None), None)
            rn = 0
            for x in reversed(cls):
                if x != "B" and not (x == "M" and mode == "breaching"):
                    break
                rn += 1
        else:
            v = FIRE if fires else PENDING if newest_breaches else OK
        got = (series, (v, newest, rn, starts[width - rn] if rn else None))
        if iid in out:
            out[iid].append(got)
        else:
            out[iid] = [got]
    return out, nothing


def metric_changes(store: Any, jobs: list[tuple[str, Policy, list[str]]], alerts: dict, now: float,
                   stats: dict[str, float], everything: bool = False) -> list[Change]:
    """Verdicts for every (policy, condition, instance, series) whose alert would move (or
    every one, for a policy test). `match: all` is one alert per instance, each condition
    judged on its most alarming series."""
    want: dict[tuple, int] = defaultdict(int)
    for _, p, _ in jobs:
        for c in p.conditions:
            k = _reading_key(c)
            want[k] = max(want[k], 2 * c.consecutive)
    stats.setdefault("store_seconds", 0.0)
    readings = {k: read(store, k, now, n, stats) for k, n in want.items()}
    stats["queries"] = stats.get("queries", 0) + len(readings)
    alerted: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (pid, cond, iid, series), row in alerts.items():
        if row["state"] in ("pending", "firing"):
            alerted[(pid, cond)][iid].append(series)
    out: list[Change] = []
    for pid, p, targets in jobs:
        if not p.conditions:
            continue
        per_cond = []
        for i, c in enumerate(p.conditions):
            r = readings[_reading_key(c)]
            per_cond.append((i, c, r, *_verdicts(r, c, p.missing_data)))
        quiet_firing = not p.contact_groups  # nobody to re-notify: a firing alert that stays firing is no change
        if p.match == "all":
            for iid in targets:
                group = [(i, c, *_worst(verdicts.get(iid), nothing, c)) for i, c, _, verdicts, nothing in per_cond]
                v = semantics.combine([got[0] for _, _, _, got in group])
                key = (pid, "all", iid, "")
                if everything or _moves(v, alerts.get(key), p, now, quiet_firing):
                    out.append(_change(key, p, v, group))
            continue
        for i, c, _, verdicts, nothing in per_cond:
            cond_key = f"conditions[{i}]"
            live_of = alerted.get((pid, cond_key), {})
            for iid in targets:
                each, live = verdicts.get(iid), live_of.get(iid)
                if each is None or live is not None:
                    each = _each_series(each, nothing, live or ())
                for series, got in each:
                    key = (pid, cond_key, iid, series)
                    if everything or _moves(got[0], alerts.get(key), p, now, quiet_firing):
                        out.append(_change(key, p, got[0], [(i, c, series, got)]))
    return out


def _each_series(present: list[tuple[str, tuple]] | None, nothing: tuple,
                 alerted: Iterable[str]) -> list[tuple[str, tuple]]:
    """(series, verdict) for each series of the instance in the reading, and for each
    series with a live alert that the reading no longer has (its data stopped: the
    missing-data treatment decides). An instance with no data at all is judged as one
    series-less alert, as before alerts were per series."""
    if not present:
        return [("", nothing)] + [(s, nothing) for s in alerted if s]
    seen = {s for s, _ in present}
    # A series-less alert of an instance whose data now has series is one from before the
    # upgrade: its series' own alerts take over, so it clears.
    return present + [(s, nothing if s else (OK, None, 0, None)) for s in alerted if s not in seen]


_ALARM = {FIRE: 0, PENDING: 1}


def _worst(present: list[tuple[str, tuple]] | None, nothing: tuple, c: Condition) -> tuple[str, tuple]:
    """The instance's most alarming series for this condition: firing before pending, then
    the farthest past the threshold."""
    if not present:
        return "", nothing
    sign = -1.0 if c.comparison not in ("<", "<=") else 1.0

    def rank(x: tuple[str, tuple]) -> tuple:
        v = x[1]
        return _ALARM.get(v[0], 2), math.inf if v[1] is None else sign * v[1]

    return min(present, key=rank)


def _moves(v: str, prev: dict[str, Any] | None, p: Policy, now: float, quiet_firing: bool) -> bool:
    """Whether this verdict changes the alert (or is due a re-notification)."""
    state = prev["state"] if prev is not None else "ok"
    if v in _QUIET and state in ("ok", "resolved"):
        return False
    if v == PENDING and state in ("pending", "firing"):
        return False
    return not (v == FIRE and state == "firing" and (
        quiet_firing or acknowledged(prev, now)
        or (prev["last_notified_at"] is not None and now - prev["last_notified_at"] < p.silence)))


def acknowledged(row: dict[str, Any] | None, now: float) -> bool:
    """Someone is on it: an acknowledgement of this episode that has not expired (no repeats)."""
    if row is None:
        return False
    detail = row.get("detail") or {}
    if isinstance(detail, str):
        detail = json.loads(detail) if detail not in ("", "{}") else {}
    ack = detail.get("ack")
    return bool(ack) and ack.get("episode") == row.get("episode") and now < float(ack.get("until", 0))


def _change(key: tuple[str, str, str, str], p: Policy, v: str, group: list[tuple[int, Condition, str, tuple]]) -> Change:
    """`group`: (condition index, condition, series, (verdict, newest value, run, run start))."""
    conds = [(i, c, {"value": got[1], "run": got[2], "series": labels.series_labels(s)}) for i, c, s, got in group]
    starts = [got[3] for _, _, _, got in group if got[3] is not None]
    return Change(key, key[0], p, v, group[0][3][1], _severity(p, group), conds,
                  started_at=min(starts) if starts else None)


def _severity(p: Policy, group: list) -> str:
    if len(group) == 1:
        return group[0][1].severity
    order = {"critical": 0, "warning": 1, "info": 2}
    return min((x[1].severity for x in group), key=order.__getitem__)


def _reading_key(c: Condition) -> tuple:
    return (c.metric, tuple(sorted(c.labels.items())), c.period, c.statistic)


def event_changes(new_events: list[dict[str, Any]], jobs: list[tuple[str, Policy, list[str]]],
                  alerts: dict, now: float) -> list[Change]:
    """A matching new event fires its (policy, event condition, instance) alert; an event
    alert with no new event for EVENT_HOLD resolves (events have no recovery notice)."""
    out: dict[tuple[str, str, str, str], Change] = {}
    for pid, p, targets in jobs:
        if not p.event_conditions:
            continue
        tset = set(targets)
        for e in new_events:
            if e["instance_id"] not in tset:
                continue
            for i, ec in enumerate(p.event_conditions):
                if ec.matches(e["type"], e["level"]):
                    key = (pid, f"event_conditions[{i}]", e["instance_id"], "")
                    out[key] = Change(key, pid, p, FIRE, None, ec.effective_severity(), event=e, event_index=i,
                                      started_at=e["publish_time"])
        for i in range(len(p.event_conditions)):
            for iid in targets:
                key = (pid, f"event_conditions[{i}]", iid, "")
                prev = alerts.get(key)
                if key in out or prev is None or prev["state"] != "firing":
                    continue
                last = json.loads(prev["detail"] or "{}").get("last_event_at") or prev["fired_at"] or 0
                if now - last >= EVENT_HOLD:
                    out[key] = Change(key, pid, p, OK, None, prev["severity"])
    return list(out.values())


def active_jobs(policies: list[tuple[str, Policy]], instances: list[dict[str, Any]], held: set[str],
                now: float) -> list[tuple[str, Policy, list[str]]]:
    """(policy id, policy, target instance ids) for every policy evaluated now."""
    jobs = []
    everyone = [i["instance_id"] for i in instances if i["instance_id"] not in held]
    for pid, p in policies:
        if not p.enabled or not windows.active(p.effective, now):
            continue
        if p.targets.instances == ["*"] and not p.targets.labels:
            targets = everyone
        else:
            targets = [i["instance_id"] for i in instances
                       if i["instance_id"] not in held and p.targets.selects(i["instance_id"], i["labels"])]
        jobs.append((pid, p, targets))
    return jobs


def message_for(change: Change, alert: dict[str, Any], status: str, kind: str, instance: dict[str, Any],
                base_url: str, now: float) -> dict[str, Any]:
    p = change.policy
    if change.event is not None:
        ec = p.event_conditions[change.event_index or 0]
        return notices.event_notice(change.policy_id, p, ec, change.event, alert=alert, kind=kind,
                                    instance=instance, base_url=base_url, now=now)
    return notices.metric_notice(change.policy_id, p, change.key[1], change.conds, alert=alert, status=status,
                                 kind=kind, instance=instance, base_url=base_url, now=now)
