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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diag.alerting import notices, semantics, windows
from diag.alerting.policy import Condition, Policy
from diag.alerting.semantics import FIRE, INSUFFICIENT, KEEP, OK, PENDING

EVENT_HOLD = 15 * 60  # an event alert stays firing this long after its last event (checks.base.RECENT)
_QUIET = (OK, INSUFFICIENT, KEEP)


def alert_id(policy_id: str, condition: str, instance_id: str) -> str:
    return "a-" + hashlib.sha256(f"{policy_id}|{condition}|{instance_id}".encode()).hexdigest()[:16]


@dataclass
class Reading:
    """One store query's result, as an instance x bucket matrix (NaN = missing)."""

    starts: np.ndarray
    rows: dict[str, np.ndarray]
    frame: pd.DataFrame

    @functools.cached_property
    def matrix(self) -> tuple[list[str], np.ndarray]:
        """(instance ids, instance x bucket matrix), built once for all conditions reading it."""
        ids = list(self.rows)
        return ids, (np.vstack([self.rows[i] for i in ids]) if ids else np.empty((0, len(self.starts))))

    @functools.cached_property
    def label_keys(self) -> list[str]:
        return [k for k in self.frame.columns if k not in ("instance_id", "ts", "value")]

    def worst_series(self, instance_id: str, largest: bool) -> dict[str, str]:
        """The labels of the series behind the newest multi-series bucket value (which
        disk, which scope)."""
        keys = self.label_keys
        if not keys:
            return {}
        f = self.frame
        sub = f[(f["instance_id"] == instance_id) & (f["ts"] == float(self.starts[-1]))]
        if sub.empty:
            return {}
        r = sub.loc[sub["value"].idxmax() if largest else sub["value"].idxmin()]
        return {k: r[k] for k in keys if isinstance(r[k], str)}


@dataclass
class Change:
    """A verdict that moves an alert, with what the notice needs."""

    key: tuple[str, str, str]
    policy_id: str
    policy: Policy
    verdict: str
    value: float | None
    severity: str
    conds: list[tuple[int, Condition, dict]] = field(default_factory=list)
    event: dict[str, Any] | None = None
    event_index: int | None = None
    started_at: float | None = None


def read(store: Any, key: tuple, now: float, buckets: int, stats: dict[str, float]) -> Reading:
    metric, labels, period, statistic, largest = key
    cur = math.floor(now / period) * period  # the open bucket starts here and does not count
    start = cur - buckets * period
    starts = start + period * np.arange(buckets, dtype=float)
    t0 = time.perf_counter()
    df = store.query(metric, labels=dict(labels) or None, start=start, end=cur, step=period, agg=statistic)
    stats["store_seconds"] = stats.get("store_seconds", 0.0) + time.perf_counter() - t0
    rows: dict[str, np.ndarray] = {}
    if len(df):
        df = df[df["ts"] >= start]
        if len(df.columns) > 3:  # several series per instance (disks, scopes): the worst one counts
            g = df.groupby(["instance_id", "ts"], sort=False)["value"]
            red = g.max() if largest else g.min()
            inst = red.index.get_level_values(0).to_numpy()
            ts = red.index.get_level_values(1).to_numpy(dtype=float)
            vals = red.to_numpy(dtype=float)
        else:
            inst, ts, vals = df["instance_id"].to_numpy(), df["ts"].to_numpy(dtype=float), df["value"].to_numpy(dtype=float)
        idx = ((ts - start) / period).round().astype(int)
        ok = (idx >= 0) & (idx < buckets)
        inst, idx, vals = inst[ok], idx[ok], vals[ok]
        uniq, pos = np.unique(inst, return_inverse=True)
        mat = np.full((len(uniq), buckets), np.nan)
        mat[pos, idx] = vals
        rows = {str(u): mat[k] for k, u in enumerate(uniq)}
    return Reading(starts, rows, df)


def _verdicts(r: Reading, c: Condition, mode: str) -> tuple[dict[str, tuple], tuple]:
    """Per instance in the reading: (verdict, newest value, run, run start); and the
    verdict of an instance with no data at all. Rows without a gap are decided with
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
    out: dict[str, tuple] = {}
    starts = r.starts[-width:].tolist()
    # Lists, not numpy scalars: this loop runs once per (condition, instance).
    rows = zip(ids, miss.any(1).tolist(), fire.tolist(), newest_b.tolist(), m[:, -1].tolist(), run.tolist())
    for k, (iid, gap, fires, newest_breaches, newest, rn) in enumerate(rows):
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
        out[iid] = (v, newest, rn, starts[width - rn] if rn else None)
    return out, nothing


def metric_changes(store: Any, jobs: list[tuple[str, Policy, list[str]]], alerts: dict, now: float,
                   stats: dict[str, float], everything: bool = False) -> list[Change]:
    """Verdicts for every (policy, condition, instance) whose alert would move (or every
    one, for a policy test)."""
    want: dict[tuple, int] = defaultdict(int)
    for _, p, _ in jobs:
        for c in p.conditions:
            k = _reading_key(c)
            want[k] = max(want[k], 2 * c.consecutive)
    stats.setdefault("store_seconds", 0.0)
    readings = {k: read(store, k, now, n, stats) for k, n in want.items()}
    stats["queries"] = stats.get("queries", 0) + len(readings)
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
                group = [(i, c, r, *(v.get(iid) or nothing)) for i, c, r, v, nothing in per_cond]
                v = semantics.combine([x[3] for x in group])
                key = (pid, "all", iid)
                if everything or _moves(v, alerts.get(key), p, now, quiet_firing):
                    out.append(_change(key, p, v, iid, group))
            continue
        for i, c, r, verdicts, nothing in per_cond:
            cond_key = f"conditions[{i}]"
            for iid in targets:
                got = verdicts.get(iid) or nothing
                key = (pid, cond_key, iid)
                if everything or _moves(got[0], alerts.get(key), p, now, quiet_firing):
                    out.append(_change(key, p, got[0], iid, [(i, c, r, *got)]))
    return out


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


def _change(key: tuple[str, str, str], p: Policy, v: str, iid: str, group: list) -> Change:
    conds = [(i, c, {"value": newest, "run": run, "series": r.worst_series(iid, c.comparison not in ("<", "<="))})
             for i, c, r, _, newest, run, _ in group]
    starts = [x[6] for x in group if x[6] is not None]
    return Change(key, key[0], p, v, group[0][4], _severity(p, group), conds, started_at=min(starts) if starts else None)


def _severity(p: Policy, group: list) -> str:
    if len(group) == 1:
        return group[0][1].severity
    order = {"critical": 0, "warning": 1, "info": 2}
    return min((x[1].severity for x in group), key=order.__getitem__)


def _reading_key(c: Condition) -> tuple:
    return (c.metric, tuple(sorted(c.labels.items())), c.period, c.statistic, c.comparison not in ("<", "<="))


def event_changes(new_events: list[dict[str, Any]], jobs: list[tuple[str, Policy, list[str]]],
                  alerts: dict, now: float) -> list[Change]:
    """A matching new event fires its (policy, event condition, instance) alert; an event
    alert with no new event for EVENT_HOLD resolves (events have no recovery notice)."""
    out: dict[tuple[str, str, str], Change] = {}
    for pid, p, targets in jobs:
        if not p.event_conditions:
            continue
        tset = set(targets)
        for e in new_events:
            if e["instance_id"] not in tset:
                continue
            for i, ec in enumerate(p.event_conditions):
                if ec.matches(e["type"], e["level"]):
                    key = (pid, f"event_conditions[{i}]", e["instance_id"])
                    out[key] = Change(key, pid, p, FIRE, None, ec.effective_severity(), event=e, event_index=i,
                                      started_at=e["publish_time"])
        for i in range(len(p.event_conditions)):
            for iid in targets:
                key = (pid, f"event_conditions[{i}]", iid)
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
