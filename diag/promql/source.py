"""Series and raw points from the embedded store, under the names PromQL sees.

A stored series (instance, metric, labels) is the PromQL series
`{__name__=<metric>, instance=<instance id>, <labels>}`: the metric under its catalogue
name, as the dashboard, the seeds and /api/v1/query name it, or under its exposition name
(as /metrics spells it: `diag_cpu_usage_ratio` selects cpu_usage's series, named so, with the
values in /metrics' unit, 0-1 for the percent), and the instance as `instance`, the
label a Prometheus user groups hosts by. A label of the store's own called `instance`
becomes `exported_instance`, as a Prometheus scrape renames a clashing target label.
Label regexes run on RE2 (diag.store.query.compile_matcher): linear time, anchored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import promql_parser as pp

from diag import catalogue
from diag.promql.errors import BadData, ExecutionError, Unavailable
from diag.store import PointStore
from diag.store.query import compile_matcher

NAME = "__name__"
INSTANCE = "instance"
# Prometheus marks a series that ended with this NaN (value.StaleNaN); a stored one ends the series too.
STALE_NAN_BITS = 0x7FF0000000000002
_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}  # pp.MatchOp is not hashable


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    op: str  # "=", "!=", "=~", "!~"
    name: str
    value: str
    regex: object | None = None  # compiled RE2 for =~ and !~

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = self.regex.fullmatch(have) is not None  # type: ignore[union-attr]
        return hit if self.op == "=~" else not hit


def matcher(op: str, name: str, value: str) -> LabelMatcher:
    if op in ("=~", "!~"):
        try:
            return LabelMatcher(op, name, value, compile_matcher(value))
        except ValueError as e:
            raise BadData(f"parse error: error parsing regexp {value!r}: {e}") from None
    if op not in ("=", "!="):
        raise BadData(f"parse error: unknown matcher {op!r}")
    return LabelMatcher(op, name, value)


def from_ast(selector: pp.VectorSelector) -> list[LabelMatcher]:
    """The matchers of a parsed vector selector, the metric name as `__name__="..."`."""
    if selector.matchers.or_matchers:
        raise BadData("parse error: 'or' between label matchers is not PromQL 2.x")
    out = [matcher("=", NAME, selector.name)] if selector.name else []
    for m in selector.matchers.matchers:
        out.append(matcher(_OPS[str(m.op).rpartition(".")[2]], m.name, m.value))
    return out


def parse_selector(text: str) -> list[LabelMatcher]:
    """A `match[]` parameter: a series selector such as `up{job="x"}`."""
    from diag.promql.parse import parse

    expr = parse(text)
    if not isinstance(expr, pp.VectorSelector):
        raise BadData(f"invalid parameter \"match[]\": {text!r} is not a series selector")
    if expr.offset or expr.at:
        raise BadData(f"invalid parameter \"match[]\": {text!r} is not a plain series selector")
    return from_ast(expr)


@dataclass(frozen=True, slots=True)
class ExposedSeries:
    """A stored series selected by its /metrics name: its values times `scale` there."""

    info: object  # diag.store.series.SeriesInfo
    scale: float

    @property
    def sid(self) -> int:
        return self.info.sid  # type: ignore[attr-defined]


def series_labels(info) -> dict[str, str]:
    out = {NAME: info.metric, INSTANCE: info.instance_id}
    for k, v in info.labels.items():
        if v == "":  # an empty value is no label in PromQL
            continue
        out["exported_instance" if k == INSTANCE else k] = v
    return out


class StoreSource:
    """Selects series and reads their points for one query (points are counted against
    `max_samples`, as Prometheus' query.max-samples bounds what one query holds)."""

    def __init__(self, store: PointStore | None, max_samples: int = 20_000_000) -> None:
        if store is None:
            raise Unavailable("the Prometheus-compatible API reads the embedded store; with store_url "
                              "set, point Grafana at that engine instead")
        self.store = store
        self.max_samples = max_samples
        self.loaded = 0

    def select(self, matchers: Sequence[LabelMatcher]) -> list[tuple[dict[str, str], object]]:
        """(labels, SeriesInfo) of every stored series all matchers accept, in series-id order."""
        names = [m.value for m in matchers if m.name == NAME and m.op == "="]
        instances = [m.value for m in matchers if m.name == INSTANCE and m.op == "="]
        rest = list(matchers)
        exposed = catalogue.BY_EXPOSED.get(names[0]) if names else None
        if names:
            canonical = exposed.name if exposed else names[0]
            rest = [m for m in matchers if not (m.name == NAME and m.op == "=" and m.value == names[0])]
            rest.append(LabelMatcher("=", NAME, canonical))
            candidates = self.store.series_infos(canonical, instance_id=instances[0] if instances else None)
        elif any(m.name == NAME for m in matchers):
            # a name regex: pick the metrics first, not every series of the store
            on_name = [m for m in matchers if m.name == NAME]
            candidates = [info for metric in self.store.metric_names()
                          if all(m.matches({NAME: metric}) for m in on_name)
                          for info in self.store.series_infos(metric)]
        else:
            candidates = self.store.series_infos(None)
        out = []
        for info in candidates:
            labels = series_labels(info)
            if all(m.matches(labels) for m in rest):
                if exposed is not None:
                    out.append(({**labels, NAME: exposed.exposition_name}, ExposedSeries(info, exposed.scale)))
                else:
                    out.append((labels, info))
        out.sort(key=lambda li: li[1].sid)
        return out

    def points(self, infos: Sequence[object], lo_ms: int, hi_ms: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per series id, its points with lo_ms <= t <= hi_ms: (t in int64 ms, values)."""
        if not infos:
            return {}
        scales = {i.sid: i.scale for i in infos if isinstance(i, ExposedSeries) and i.scale != 1.0}
        stored = [i.info if isinstance(i, ExposedSeries) else i for i in infos]
        sid, ts, vals = self.store.points(stored, start=lo_ms / 1000.0, end=(hi_ms + 1) / 1000.0)
        self.loaded += int(ts.size)
        if self.loaded > self.max_samples:
            raise ExecutionError("query processing would load too many samples into memory in query execution")
        t_ms = np.round(ts * 1000.0).astype(np.int64)
        keep = (t_ms >= lo_ms) & (t_ms <= hi_ms)
        if not keep.all():
            sid, t_ms, vals = sid[keep], t_ms[keep], vals[keep]
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if sid.size == 0:
            return out
        cuts = np.flatnonzero(np.diff(sid)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [sid.size]])
        for a, b in zip(starts.tolist(), ends.tolist()):
            t, v = t_ms[a:b], vals[a:b]
            if t.size > 1 and not (np.diff(t) > 0).all():  # two points in one millisecond: keep the first
                first = np.concatenate([[True], np.diff(t) > 0])
                t, v = t[first], v[first]
            scale = scales.get(int(sid[a]))
            if scale is not None:
                v = np.where(is_stale(v), v, v * scale)
            out[int(sid[a])] = (t, v)
        return out

    def label_sets(self, selectors: Iterable[Sequence[LabelMatcher]] | None) -> list[dict[str, str]]:
        """The label sets of the series any selector matches (every series without one), unique."""
        seen: dict[tuple, dict[str, str]] = {}
        groups = list(selectors) if selectors is not None else [None]
        for matchers in groups:
            if matchers is None:
                found = [series_labels(info) for info in self.store.series_infos(None)]
            else:
                found = [labels for labels, _ in self.select(matchers)]
            for labels in found:
                seen.setdefault(tuple(sorted(labels.items())), labels)
        return [seen[k] for k in sorted(seen)]


def is_stale(values: np.ndarray) -> np.ndarray:
    return values.view(np.int64) == STALE_NAN_BITS
