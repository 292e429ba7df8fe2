"""PrometheusStore: the ReadStore protocol over a Prometheus-compatible HTTP query API.

For a fleet that outgrows one SQLite file: agents serve `/metrics`, an engine
(Prometheus, VictoriaMetrics, Thanos, Mimir) scrapes them with `honor_labels: true`,
and the service reads back through `/api/v1/query_range`, `/api/v1/query`,
`/api/v1/series` and `/api/v1/label/.../values`. It has no write side: the engine owns
ingestion. It is also an InstanceSource: the service lists the instances it has data of.

Bucket alignment matches SqliteStore: a bucket [b, b+step) is stamped b. Both engines
evaluate `f_over_time(m[step])` at T over the left-open window (T-step, T]; evaluating
at T = b + step - 1 ms (timestamps are kept in ms) makes that [b, b+step), and the
answer is stamped back to b.

Names and units are the catalogue's on this side and /metrics' on the engine's: a gauge is
asked for by its exposition name and its values divided back by the entry's scale
(`diag_cpu_usage_ratio` 0.8 is `cpu_usage` 80); a per-interval count, which /metrics only
exposes as its counter, is the rise of that counter between consecutive samples, summed
over the counter's labels the count does not have (`proto` of the UDP counters).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import requests

from diag import catalogue

from .query import bucket_range
from .types import MaintenanceReport, StoreError

EPS = 0.001  # one millisecond: the engines' timestamp resolution
# Above this many buckets per series query_range is refused by Prometheus (11,000);
# finer queries read the raw samples with one range-vector instant query instead.
MAX_POINTS = 10_000
RAW_MAX_STEP = 1.0
# After the engine failed to answer, queries fail at once for this long instead of each
# waiting out its own timeout.
RETRY_AFTER = 15.0
LATEST_LOOKBACK = 3600.0  # how far back `latest` looks when no max_age is given
SCRAPE_LABELS = ("job", "instance")  # added by the scraper, not ours
_FUNC = {"avg": "avg_over_time", "min": "min_over_time", "max": "max_over_time", "sum": "sum_over_time",
         "count": "count_over_time", "last": "last_over_time"}
# A per-interval count's first sample needs the counter's sample before it: looked for this far back.
DELTA_LOOKBEHIND = 600.0


class EngineError(StoreError):
    """The metrics engine could not answer (a bad answer here; EngineUnavailable: no answer).

    The API says 424 Failed Dependency: this service works, the engine it depends on did
    not, and a 5xx would page whoever watches this service for another one's outage."""

    http_status = 424
    code = "MetricsEngineError"


class EngineUnavailable(EngineError):
    """The engine is down, unreachable or too slow."""

    code = "MetricsEngineUnavailable"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dur(seconds: float) -> str:
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class PrometheusStore:
    """Reads our metrics from an engine; `url` is its base, e.g. http://127.0.0.1:8428."""

    def __init__(self, url: str, *, timeout: float = 10.0, session: requests.Session | None = None,
                 retry_after: float = RETRY_AFTER) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_after = retry_after
        self._http = session or requests.Session()
        self._down: tuple[float, str] | None = None  # (monotonic time it failed, why)

    # -- the engine's HTTP API ---------------------------------------------------------------

    def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        down = self._down
        if down is not None and time.monotonic() - down[0] < self.retry_after:
            # A diagnosis asks dozens of queries: one timeout each would hold it for minutes.
            raise EngineUnavailable(f"{down[1]} ({time.monotonic() - down[0]:.0f}s ago; "
                                    f"asked again after {self.retry_after:g}s)")
        try:
            r = self._http.post(self.url + path, data=params, timeout=self.timeout)
        except requests.RequestException as e:
            why = (f"the metrics engine at {self.url} did not answer within {self.timeout:g}s"
                   if isinstance(e, requests.Timeout) else
                   f"the metrics engine at {self.url} is unreachable: {type(e).__name__}")
            self._down = (time.monotonic(), why)
            raise EngineUnavailable(why) from None
        self._down = None
        try:
            body = r.json()
        except ValueError:
            raise EngineError(f"the metrics engine at {self.url} answered {r.status_code} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error", "") if isinstance(body, dict) else ""
            raise EngineError(f"the metrics engine at {self.url} answered {r.status_code}: {str(err)[:300]}")
        return body.get("data")

    def selector(self, metric: str, instance_id: str | None, labels: Mapping[str, Any] | None) -> str:
        known = catalogue.BY_NAME.get(metric)
        if known is not None and known.kind == "delta":
            known = catalogue.BY_NAME[known.counter]
        name = known.exposition_name if known else metric
        parts = [f"instance_id={_quote(instance_id)}"] if instance_id else []
        for key, want in (labels or {}).items():
            if not isinstance(want, str):  # re.Pattern or an RE2 pattern: PromQL's engine is RE2 too
                parts.append(f"{key}=~{_quote(want.pattern)}")  # PromQL regexes are anchored, like fullmatch
            else:
                parts.append(f"{key}={_quote(want)}")
        return name + "{" + ",".join(parts) + "}"

    # -- the ReadStore protocol: the engine scrapes the samples, so there is no write side -----

    def query(self, metric: str, *, instance_id: str | None = None, labels: Mapping[str, Any] | None = None,
              start: float, end: float, step: float, agg: str = "avg") -> pd.DataFrame:
        """Aligned buckets [floor(start/step)*step, end) as SqliteStore gives them, long form."""
        lo, hi = bucket_range(start, end, step, agg)
        sel = self.selector(metric, instance_id, labels)
        keys = self._keys(metric)
        if self._is_delta(metric):
            return self._frame(self._bucket(self._deltas(metric, sel, keys, lo, hi), step, agg), keys, metric, agg)
        if step <= RAW_MAX_STEP or (hi - lo) / step > MAX_POINTS:
            return self._bucket_raw(metric, sel, keys, lo, hi, step, agg)
        by = ",".join(["instance_id", *keys])
        expr = f"max by ({by}) ({_FUNC[agg]}({sel}[{_dur(step)}]))"
        data = self._get("/api/v1/query_range", [("query", expr), ("start", f"{lo + step - EPS:.3f}"),
                                                 ("end", f"{hi - EPS:.3f}"), ("step", _dur(step)), ("nocache", "1")])
        rows = []
        for r in data.get("result", []):
            for t, v in r.get("values", []):
                rows.append((r["metric"], float(round(float(t) + EPS - step, 3)), float(v)))
        return self._frame(rows, keys, metric, agg)

    def latest(self, metric: str, *, instance_id: str | None = None, labels: Mapping[str, Any] | None = None,
               max_age: float | None = None, now: float | None = None) -> pd.DataFrame:
        """The last point of each matched series within `max_age` (else the last hour), its own ts."""
        keys = self._keys(metric)
        window = max_age if max_age is not None else LATEST_LOOKBACK
        if self._is_delta(metric):
            hi = (now if now is not None else time.time()) + EPS
            got = self._deltas(metric, self.selector(metric, instance_id, labels), keys, hi - window, hi)
            return self._frame([(lab, float(ts[-1]), float(v[-1])) for lab, ts, v in got], keys, metric)
        params = [("query", f"{self.selector(metric, instance_id, labels)}[{_dur(window)}]")]
        if now is not None:
            params.append(("time", f"{now:.3f}"))
        data = self._get("/api/v1/query", params)
        rows = [(r["metric"], float(r["values"][-1][0]), float(r["values"][-1][1]))
                for r in data.get("result", []) if r.get("values")]
        return self._frame(rows, keys, metric)

    def series(self, metric: str | None = None, *, instance_id: str | None = None,
               labels: Mapping[str, Any] | None = None) -> list[dict]:
        if metric is None:
            sel = "{" + (f"instance_id={_quote(instance_id)}" if instance_id else 'instance_id!=""') + "}"
        else:
            sel = self.selector(metric, instance_id, labels)
        out, seen = [], set()
        for m in self._get("/api/v1/series", [("match[]", sel)]):
            name = self._canonical(m.get("__name__", ""))
            if not m.get("instance_id"):
                continue
            lab = {k: v for k, v in m.items() if k not in ("__name__", "instance_id", *SCRAPE_LABELS)}
            if metric is not None and self._is_delta(metric):  # the counter's series, as the count's
                name, lab = metric, {k: lab.get(k, "") for k in self._keys(metric)}
            key = (m["instance_id"], name, tuple(sorted(lab.items())))
            if key not in seen:
                seen.add(key)
                out.append({"instance_id": m["instance_id"], "metric": name, "labels": lab})
        return out

    def metric_names(self, instance_id: str | None = None) -> list[str]:
        match = f"{{instance_id={_quote(instance_id)}}}" if instance_id else '{instance_id!=""}'
        names = {self._canonical(n) for n in self._get("/api/v1/label/__name__/values", [("match[]", match)]) or []}
        return sorted(names | {m.name for m in catalogue.METRICS if m.kind == "delta" and m.counter in names})

    # -- fleet -------------------------------------------------------------------------------------

    def instance_ids(self) -> list[str]:
        """The instances the engine has data of: the `instance_id` label's values."""
        return sorted(self._get("/api/v1/label/instance_id/values", []) or [])

    def last_seen(self) -> dict[str, float]:
        """Each instance's newest uptime sample time within the engine's lookback (5 min by
        default): an instance silent for longer keeps the last time the service saw."""
        name = catalogue.BY_NAME["uptime"].exposition_name
        data = self._get("/api/v1/query", [("query", f'max by (instance_id) (timestamp({name}{{instance_id!=""}}))')])
        return {r["metric"]["instance_id"]: float(r["value"][1]) for r in data.get("result", [])
                if r.get("metric", {}).get("instance_id")}

    # -- service hooks, so the Service treats both stores alike ---------------------------------

    def maintain(self, now: float) -> MaintenanceReport:
        return MaintenanceReport(now=now)  # retention and compaction are the engine's

    def size_bytes(self) -> int | None:
        return None

    def keeps(self) -> dict:
        return {"kind": "remote", "head_span_seconds": None, "levels": [], "size_cap_bytes": None}

    def close(self) -> None:
        self._http.close()

    # -- helpers ------------------------------------------------------------------------------------

    def _raw(self, sel: str, lo: float, hi: float) -> list[tuple[dict, np.ndarray, np.ndarray]]:
        """Each matched series' raw samples in [lo, hi): (labels, ts, values)."""
        data = self._get("/api/v1/query", [("query", f"{sel}[{_dur(hi - lo)}]"), ("time", f"{hi - EPS:.3f}")])
        out = []
        for r in data.get("result", []):
            pts = np.array([(float(t), float(v)) for t, v in r.get("values", [])], dtype=float).reshape(-1, 2)
            if len(pts):
                out.append((r["metric"], pts[:, 0], pts[:, 1]))
        return out

    @staticmethod
    def _bucket(series: list[tuple[dict, np.ndarray, np.ndarray]], step: float, agg: str) -> list[tuple[dict, float, float]]:
        """Raw points bucketed here like SqliteStore does."""
        rows = []
        for labels, ts, vals in series:
            pts = pd.DataFrame({"ts": (ts // step) * step, "value": vals})
            grouped = pts.groupby("ts", sort=True)["value"]
            values = grouped.last() if agg == "last" else grouped.agg(agg if agg != "avg" else "mean")
            rows.extend((labels, float(t), float(v)) for t, v in values.items())
        return rows

    def _bucket_raw(self, metric: str, sel: str, keys: list[str], lo: float, hi: float, step: float,
                    agg: str) -> pd.DataFrame:
        """Fine steps: the raw samples in [lo, hi), bucketed here."""
        return self._frame(self._bucket(self._raw(sel, lo, hi), step, agg), keys, metric, agg)

    def _deltas(self, metric: str, sel: str, keys: list[str], lo: float,
                hi: float) -> list[tuple[dict, np.ndarray, np.ndarray]]:
        """A per-interval count in [lo, hi) from its counter: each sample's rise over the one
        before (after a reset, its value), as the collector computes it, summed per label set
        of the count."""
        sums: dict[tuple, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for labels, ts, vals in self._raw(sel, lo - DELTA_LOOKBEHIND, hi):
            rise = np.diff(vals)
            rise = np.where(rise < 0, vals[1:], rise)
            key = (labels.get("instance_id", ""), *(labels.get(k, "") for k in keys))
            for t, d in zip(ts[1:].tolist(), rise.tolist()):
                if t >= lo:
                    sums[key][t] += d
        return [({"instance_id": key[0], **dict(zip(keys, key[1:]))},
                 np.array(sorted(by_ts), dtype=float), np.array([by_ts[t] for t in sorted(by_ts)], dtype=float))
                for key, by_ts in sums.items() if by_ts]

    @staticmethod
    def _is_delta(metric: str) -> bool:
        known = catalogue.BY_NAME.get(metric)
        return known is not None and known.kind == "delta"

    @staticmethod
    def _keys(metric: str) -> list[str]:
        known = catalogue.BY_NAME.get(metric)
        return sorted(known.labels) if known else []

    @staticmethod
    def _canonical(exposed: str) -> str:
        m = catalogue.BY_EXPOSED.get(exposed)
        return m.name if m else exposed

    @staticmethod
    def _frame(rows: list[tuple[dict, float, float]], keys: list[str], metric: str, agg: str = "last") -> pd.DataFrame:
        """Long form like SqliteStore: instance_id, ts, value, one column per label key."""
        if not keys and rows and metric not in catalogue.BY_NAME:  # a user's metric: its own labels
            keys = sorted({k for m, _, _ in rows for k in m} - {"__name__", "instance_id", *SCRAPE_LABELS})
        if not rows:
            return pd.DataFrame({"instance_id": pd.Series([], dtype=object), "ts": pd.Series([], dtype=float),
                                 "value": pd.Series([], dtype=float)})
        values = np.array([v for _, _, v in rows], dtype=float)
        known = catalogue.BY_NAME.get(metric)
        if known is not None and known.scale != 1.0 and agg != "count":  # back to the catalogue's unit, without float noise
            values = np.round(values / known.scale, 9)
        cols: dict[str, list] = {"instance_id": [m.get("instance_id") for m, _, _ in rows],
                                 "ts": [t for _, t, _ in rows], "value": values}
        for k in keys:
            cols[k] = [m.get(k, "") for m, _, _ in rows]
        return pd.DataFrame(cols).sort_values(["instance_id", *keys, "ts"], kind="stable").reset_index(drop=True)
