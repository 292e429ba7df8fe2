"""Evaluate a PromQL expression over the store, at one time or at every step of a range.

Semantics are those of Prometheus 2.x (the differential test runs the same queries on a
real Prometheus), in int64 milliseconds as Prometheus keeps time:

- an instant vector selector at t takes each series' newest sample in [t - 5m, t] unless it
  is a staleness marker; a range selector `[r]` at t takes the samples in [t - r, t];
  `offset` and `@` move t;
- `rate`, `increase`, `delta` extrapolate towards the window's edges as Prometheus'
  extrapolatedRate does (at most half an average interval beyond the first and last
  samples, never below a counter's zero), with counter resets corrected;
- vector matching (`on`, `ignoring`, `group_left/right`, `bool`, `and/or/unless`) with
  Prometheus' errors for many-to-many and duplicate label sets.

An instant vector over the evaluation steps is held as label sets plus two (series x step)
arrays, values and presence, so a 24 h range at 60 s is numpy work per series, not a
Python loop per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import promql_parser as pp

from diag.promql import source as src
from diag.promql.errors import BadData, ExecutionError, QueryTimeout
from diag.promql.parse import parse
from diag.store import PointStore
from diag.store.query import MAX_POINTS, compile_matcher  # MAX_POINTS: per series of a range query

LOOKBACK_MS = 300_000  # Prometheus' default --query.lookback-delta
SUBQUERY_STEP_MS = 60_000  # a subquery without a step uses the global evaluation interval (1m by default)
NAME = src.NAME


# -- values ---------------------------------------------------------------------------------------

@dataclass
class Vec:
    """An instant vector at every evaluation step."""

    labels: list[dict[str, str]]
    values: np.ndarray  # (series, steps) float64
    present: np.ndarray  # (series, steps) bool
    sample_ts: np.ndarray | None = None  # (series, steps) ms of the sample selected, for timestamp()
    order: str | None = None  # "asc"/"desc" after sort(), "keep" after topk: an instant query's order


@dataclass
class Scalar:
    values: np.ndarray  # (steps,)


@dataclass
class Str:
    value: str


@dataclass
class Range:
    """A range vector: each series' samples, and each step's closed window [lo, hi]."""

    labels: list[dict[str, str]]
    ts: list[np.ndarray]  # int64 ms, ascending
    vals: list[np.ndarray]
    lo: np.ndarray  # (steps,) ms
    hi: np.ndarray  # (steps,) ms
    range_ms: int


@dataclass
class InstantResult:
    data: dict


@dataclass
class RangeResult:
    data: dict


def _ms(d: timedelta | None) -> int:
    if not d:
        return 0
    return (d.days * 86_400 + d.seconds) * 1000 + d.microseconds // 1000


def _key(labels: dict[str, str]) -> tuple:
    return tuple(sorted(labels.items()))


def _drop_name(labels: dict[str, str]) -> dict[str, str]:
    if NAME not in labels:
        return labels
    out = dict(labels)
    del out[NAME]
    return out


def _empty_vec(steps: int) -> Vec:
    return Vec([], np.empty((0, steps)), np.zeros((0, steps), bool))


def _type_name(v: object) -> str:
    return {Vec: "instant vector", Scalar: "scalar", Str: "string", Range: "range vector"}[type(v)]


# -- formatting, as Prometheus' JSON has it --------------------------------------------------------

def format_value(v: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "+Inf" if v > 0 else "-Inf"
    r = repr(float(v))
    if "e" in r:
        return np.format_float_positional(v, unique=True, trim="-")
    return r[:-2] if r.endswith(".0") else r


def format_values(a: np.ndarray) -> list[str]:
    """format_value of every element, with numpy finding the few that need more than repr():
    a day of ten series is 14,410 values, and a call each cost more than the query."""
    a = np.asarray(a, dtype=np.float64)
    out = list(map(repr, a.tolist()))
    with np.errstate(invalid="ignore"):
        mag = np.abs(a)
        integral = (a == np.trunc(a)) & (mag < 1e16)
        odd = ~np.isfinite(a) | (mag >= 1e16) | ((mag < 1e-4) & (a != 0))
    for i in np.flatnonzero(integral).tolist():
        out[i] = out[i][:-2]  # repr(5.0) == "5.0"
    for i in np.flatnonzero(odd).tolist():
        out[i] = format_value(float(a[i]))
    return out


def format_time(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000.0


# -- the engine -----------------------------------------------------------------------------------

class Engine:
    """Evaluates queries over one store's raw points (none with --store-url: each query is
    refused as unavailable). `timeout` bounds one query (Prometheus: 2 min)."""

    def __init__(self, store: PointStore | None, *, lookback_ms: int = LOOKBACK_MS, max_samples: int = 20_000_000,
                 timeout: float = 120.0) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self.max_samples = max_samples
        self.timeout = timeout

    def parse(self, query: str) -> pp.Expr:
        return parse(query)

    def _evaluator(self, times: np.ndarray, start: int, end: int, timeout: float | None) -> "Evaluator":
        limit = self.timeout if timeout is None else min(timeout, self.timeout)
        return Evaluator(src.StoreSource(self.store, self.max_samples), times, start, end, self.lookback_ms,
                         time.monotonic() + limit)

    def instant(self, query: str, t_ms: int, *, timeout: float | None = None) -> InstantResult:
        expr = self.parse(query)
        ev = self._evaluator(np.array([t_ms], np.int64), t_ms, t_ms, timeout)
        val = ev.eval(expr)
        if isinstance(val, Scalar):
            return InstantResult({"resultType": "scalar", "result": [format_time(t_ms), format_value(val.values[0])]})
        if isinstance(val, Str):
            return InstantResult({"resultType": "string", "result": [format_time(t_ms), val.value]})
        if isinstance(val, Range):
            return InstantResult({"resultType": "matrix", "result": _range_result(val)})
        return InstantResult({"resultType": "vector", "result": _vector_result(val, t_ms)})

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int, *,
              timeout: float | None = None) -> RangeResult:
        if end_ms < start_ms:
            raise BadData("invalid parameter \"end\": end timestamp must not be before start time")
        if step_ms <= 0:
            raise BadData("invalid parameter \"step\": zero or negative query resolution step widths are not "
                          "accepted. Try a positive integer")
        if (end_ms - start_ms) // step_ms > MAX_POINTS:
            raise BadData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                          "resolution (?step=XX)")
        expr = self.parse(query)
        top = expr
        while isinstance(top, pp.ParenExpr):
            top = top.expr
        if isinstance(top, (pp.MatrixSelector, pp.SubqueryExpr)):
            raise BadData("invalid parameter \"query\": invalid expression type \"range vector\" for range query, "
                          "must be Scalar or instant Vector")
        if isinstance(top, pp.StringLiteral):
            raise BadData("invalid parameter \"query\": invalid expression type \"string\" for range query, "
                          "must be Scalar or instant Vector")
        times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ev = self._evaluator(times, start_ms, end_ms, timeout)
        val = ev.eval(expr)
        if isinstance(val, Scalar):
            val = Vec([{}], val.values[None, :].copy(), np.ones((1, times.size), bool))
        if not isinstance(val, Vec):
            raise BadData(f"invalid expression type \"{_type_name(val)}\" for range query, must be Scalar or "
                          "instant Vector")
        out = []
        t_fmt = np.array([format_time(int(t)) for t in times.tolist()], dtype=object)
        for i in _sorted_rows(val.labels):
            p = val.present[i]
            if not p.any():
                continue
            # (t, "v") tuples made by zip in C: orjson writes them as the [t, "v"] pairs Prometheus sends
            out.append({"metric": val.labels[i],
                        "values": list(zip(t_fmt[p].tolist(), format_values(val.values[i, p])))})
        return RangeResult({"resultType": "matrix", "result": out})


def _sorted_rows(labels: list[dict[str, str]]) -> list[int]:
    return sorted(range(len(labels)), key=lambda i: _key(labels[i]))


def _vector_result(val: Vec, t_ms: int) -> list[dict]:
    rows = [i for i in range(len(val.labels)) if val.present[i, 0]]
    if val.order in ("asc", "desc"):
        # sort() puts NaN last either way
        rows.sort(key=lambda i: (math.isnan(val.values[i, 0]),
                                 val.values[i, 0] if val.order == "asc" else -val.values[i, 0]))
    elif val.order != "keep":
        rows.sort(key=lambda i: _key(val.labels[i]))
    t = format_time(t_ms)
    return [{"metric": val.labels[i], "value": [t, format_value(float(val.values[i, 0]))]} for i in rows]


def _range_result(val: Range) -> list[dict]:
    out = []
    for i in _sorted_rows(val.labels):
        ts, vs = val.ts[i], val.vals[i]
        lo = np.searchsorted(ts, val.lo[0], "left")
        hi = np.searchsorted(ts, val.hi[0], "right")
        if hi <= lo:
            continue
        out.append({"metric": val.labels[i], "values": list(zip(map(format_time, ts[lo:hi].tolist()),
                                                                format_values(vs[lo:hi])))})
    return out


# -- evaluation -----------------------------------------------------------------------------------

ARITH = {"+", "-", "*", "/", "%", "^", "atan2"}
COMPARE = {"==", "!=", ">", "<", ">=", "<="}
SETOPS = {"and", "or", "unless"}


def _arith(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return np.true_divide(a, b)
        if op == "%":
            return np.fmod(a, b)
        if op == "^":
            return np.power(a, b)
        if op == "atan2":
            return np.arctan2(a, b)
    raise BadData(f"unsupported operator {op!r}")


def _compare(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return {"==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less,
                ">=": np.greater_equal, "<=": np.less_equal}[op](a, b)


class Evaluator:
    def __init__(self, source: src.StoreSource, times: np.ndarray, start: int, end: int, lookback_ms: int,
                 deadline: float) -> None:
        self.source = source
        self.times = times
        self.start, self.end = start, end
        self.lookback = lookback_ms
        self.deadline = deadline
        self.steps = times.size

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout("query timed out in query execution")

    def eval(self, node):
        self.check_deadline()
        if isinstance(node, pp.NumberLiteral):
            return Scalar(np.full(self.steps, float(node.val)))
        if isinstance(node, pp.StringLiteral):
            return Str(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.UnaryExpr):
            return self._negate(self.eval(node.expr))
        if isinstance(node, pp.VectorSelector):
            return self._vector_selector(node)
        if isinstance(node, pp.MatrixSelector):
            return self._matrix_selector(node)
        if isinstance(node, pp.SubqueryExpr):
            return self._subquery(node)
        if isinstance(node, pp.Call):
            return self._call(node)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node)
        raise BadData(f"unsupported expression {type(node).__name__}")

    # -- selectors ---------------------------------------------------------------------------------

    def _at_ms(self, at) -> int | None:
        if at is None:
            return None
        if at.type == pp.AtModifierType.Start:
            return self.start
        if at.type == pp.AtModifierType.End:
            return self.end
        d = at.at
        return int(round(d.timestamp() * 1000))

    def _eff(self, at, offset: timedelta | None) -> np.ndarray:
        at_ms = self._at_ms(at)
        base = self.times if at_ms is None else np.full(self.steps, at_ms, np.int64)
        return base - _ms(offset)

    def _vector_selector(self, vs: pp.VectorSelector) -> Vec:
        eff = self._eff(vs.at, vs.offset)
        selected = self.source.select(src.from_ast(vs))
        if not selected:
            return _empty_vec(self.steps)
        pts = self.source.points([info for _, info in selected], int(eff.min()) - self.lookback, int(eff.max()))
        labels, rows, present, stamps = [], [], [], []
        for lab, info in selected:
            got = pts.get(info.sid)
            if got is None:
                continue
            t, v = got
            idx = np.searchsorted(t, eff, "right") - 1
            ok = idx >= 0
            idx = np.maximum(idx, 0)
            st = t[idx]
            ok &= st >= eff - self.lookback
            val = v[idx]
            ok &= ~src.is_stale(val)
            if not ok.any():
                continue
            labels.append(lab)
            rows.append(val)
            present.append(ok)
            stamps.append(st)
        if not labels:
            return _empty_vec(self.steps)
        return Vec(labels, np.vstack(rows), np.vstack(present), np.vstack(stamps))

    def _matrix_selector(self, ms: pp.MatrixSelector) -> Range:
        vs = ms.vector_selector
        rng = _ms(ms.range)
        eff = self._eff(vs.at, vs.offset)
        selected = self.source.select(src.from_ast(vs))
        lo, hi = eff - rng, eff
        labels, tss, vals = [], [], []
        if selected:
            pts = self.source.points([info for _, info in selected], int(lo.min()), int(hi.max()))
            for lab, info in selected:
                got = pts.get(info.sid)
                if got is None:
                    continue
                t, v = got
                stale = src.is_stale(v)
                if stale.any():
                    t, v = t[~stale], v[~stale]
                labels.append(lab)
                tss.append(t)
                vals.append(v)
        return Range(labels, tss, vals, lo, hi, rng)

    def _subquery(self, sq: pp.SubqueryExpr) -> Range:
        rng = _ms(sq.range)
        step = _ms(sq.step) or SUBQUERY_STEP_MS
        eff = self._eff(sq.at, sq.offset)
        first = int(eff.min()) - rng
        first = (first // step) * step + (step if first % step else 0)
        last = int(eff.max())
        if (last - first) // step > 10 * MAX_POINTS:
            raise ExecutionError("subquery would evaluate too many steps")
        inner_times = np.arange(first, last + 1, step, dtype=np.int64)
        inner = Evaluator(self.source, inner_times, self.start, self.end, self.lookback, self.deadline)
        val = inner.eval(sq.expr)
        if isinstance(val, Scalar):
            val = Vec([{}], val.values[None, :].copy(), np.ones((1, inner_times.size), bool))
        if not isinstance(val, Vec):
            raise BadData(f"subquery is only allowed on instant vector, got {_type_name(val)}")
        labels, tss, vals = [], [], []
        for i, lab in enumerate(val.labels):
            p = val.present[i]
            if p.any():
                labels.append(lab)
                tss.append(inner_times[p])
                vals.append(val.values[i, p])
        return Range(labels, tss, vals, eff - rng, eff, rng)

    # -- functions ---------------------------------------------------------------------------------

    def _call(self, call: pp.Call):
        name = call.func.name
        args = call.args
        if name in RANGE_FUNCS:
            r = self.eval(args[0])
            if not isinstance(r, Range):
                raise BadData(f"expected type range vector in call to function \"{name}\", got {_type_name(r)}")
            return self._range_func(name, r)
        if name in MATH_FUNCS:
            v = self._vec_arg(name, args[0])
            with np.errstate(all="ignore"):
                values = MATH_FUNCS[name](v.values)
            return self._merge(Vec([_drop_name(x) for x in v.labels], values, v.present.copy()))
        if name == "round":
            v = self._vec_arg(name, args[0])
            nearest = self._scalar_arg(args[1]) if len(args) > 1 else np.ones(self.steps)
            with np.errstate(all="ignore"):
                inv = 1.0 / nearest
                values = np.floor(v.values * inv + 0.5) / inv
            return self._merge(Vec([_drop_name(x) for x in v.labels], values, v.present.copy()))
        if name in ("clamp", "clamp_min", "clamp_max"):
            v = self._vec_arg(name, args[0])
            lo = self._scalar_arg(args[1]) if name != "clamp_max" else None
            hi = self._scalar_arg(args[2] if name == "clamp" else args[1]) if name != "clamp_min" else None
            values, present = v.values.copy(), v.present.copy()
            if hi is not None:
                values = _go_min(values, hi[None, :])
            if lo is not None:
                values = _go_max(values, lo[None, :])
            if name == "clamp":
                present &= ~(hi < lo)[None, :]
            return self._merge(Vec([_drop_name(x) for x in v.labels], values, present))
        if name == "vector":
            s = self._scalar_arg(args[0])
            return Vec([{}], s[None, :].copy(), np.ones((1, self.steps), bool))
        if name == "scalar":
            v = self._vec_arg(name, args[0])
            count = v.present.sum(axis=0)
            out = np.full(self.steps, np.nan)
            if len(v.labels):
                first = np.argmax(v.present, axis=0)
                one = count == 1
                out[one] = v.values[first[one], np.flatnonzero(one)]
            return Scalar(out)
        if name == "time":
            return Scalar(self.times / 1000.0)
        if name == "timestamp":
            v = self._vec_arg(name, args[0])
            # Of a plain selector, the samples' own times; of anything else, the evaluation time.
            own = isinstance(args[0], pp.VectorSelector) and v.sample_ts is not None
            stamps = v.sample_ts if own else np.broadcast_to(self.times, v.values.shape)
            return self._merge(Vec([_drop_name(x) for x in v.labels], stamps / 1000.0, v.present.copy()))
        if name in ("sort", "sort_desc"):
            v = self._vec_arg(name, args[0])
            return Vec(v.labels, v.values, v.present, v.sample_ts, "asc" if name == "sort" else "desc")
        if name in ("absent", "absent_over_time"):
            v = self.eval(args[0])
            if name == "absent_over_time":
                if not isinstance(v, Range):
                    raise BadData(f"expected type range vector in call to function \"{name}\", got {_type_name(v)}")
                count = self._range_func("count_over_time", v)
                missing = ~count.present.any(axis=0)
                sel = args[0].vector_selector if isinstance(args[0], pp.MatrixSelector) else None
            else:
                v = self._vec_arg(name, args[0], v)
                missing = ~v.present.any(axis=0)
                sel = args[0] if isinstance(args[0], pp.VectorSelector) else None
            labels: dict[str, str] = {}
            if sel is not None:
                seen: set[str] = set()
                for m in sel.matchers.matchers:
                    if str(m.op).endswith(".Equal") and m.name != NAME:
                        if m.name in seen:
                            labels.pop(m.name, None)
                        else:
                            labels[m.name] = m.value
                        seen.add(m.name)
            return Vec([labels], np.ones((1, self.steps)), missing[None, :].copy())
        if name == "label_replace":
            return self._label_replace(args)
        if name == "label_join":
            return self._label_join(args)
        raise BadData(f"function \"{name}\" is not supported by this API (supported: "
                      f"{', '.join(sorted(SUPPORTED_FUNCTIONS))})")

    def _vec_arg(self, fname: str, node, value=None) -> Vec:
        v = self.eval(node) if value is None else value
        if not isinstance(v, Vec):
            raise BadData(f"expected type instant vector in call to function \"{fname}\", got {_type_name(v)}")
        return v

    def _scalar_arg(self, node) -> np.ndarray:
        v = self.eval(node)
        if not isinstance(v, Scalar):
            raise BadData(f"expected type scalar, got {_type_name(v)}")
        return v.values

    def _str_arg(self, node) -> str:
        v = self.eval(node)
        if not isinstance(v, Str):
            raise BadData(f"expected type string, got {_type_name(v)}")
        return v.value

    def _range_func(self, name: str, r: Range) -> Vec:
        n = self.steps
        labels, rows, present = [], [], []
        fn = RANGE_FUNCS[name]
        for i, lab in enumerate(r.labels):
            if i % 256 == 0:
                self.check_deadline()
            t, v = r.ts[i], r.vals[i]
            lo = np.searchsorted(t, r.lo, "left")
            hi = np.searchsorted(t, r.hi, "right")
            values, ok = fn(t, v, lo, hi, r)
            if not ok.any():
                continue
            labels.append(lab if name == "last_over_time" else _drop_name(lab))
            rows.append(values)
            present.append(ok)
        if not labels:
            return _empty_vec(n)
        # A function over a range vector: the output series must differ over the whole range.
        keys = [_key(x) for x in labels]
        if len(set(keys)) != len(keys):
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        return Vec(labels, np.vstack(rows), np.vstack(present))

    def _label_replace(self, args) -> Vec:
        v = self._vec_arg("label_replace", args[0])
        dst, repl, src_label, regex = (self._str_arg(a) for a in args[1:5])
        try:
            rx = compile_matcher(regex)
        except ValueError as e:
            raise BadData(f"invalid regular expression in label_replace(): {regex}: {e}") from None
        if not _valid_label_name(dst):
            raise BadData(f"invalid destination label name in label_replace(): {dst}")
        out = []
        for lab in v.labels:
            m = rx.fullmatch(lab.get(src_label, ""))
            if m is None:
                out.append(lab)
                continue
            value = _expand(repl, m, rx)
            new = dict(lab)
            if value:
                new[dst] = value
            else:
                new.pop(dst, None)
            out.append(new)
        return self._merge(Vec(out, v.values, v.present, v.sample_ts))

    def _label_join(self, args) -> Vec:
        v = self._vec_arg("label_join", args[0])
        strs = [self._str_arg(a) for a in args[1:]]
        dst, sep, srcs = strs[0], strs[1], strs[2:]
        if not _valid_label_name(dst):
            raise BadData(f"invalid destination label name in label_join(): {dst}")
        out = []
        for lab in v.labels:
            value = sep.join(lab.get(s, "") for s in srcs)
            new = dict(lab)
            if value:
                new[dst] = value
            else:
                new.pop(dst, None)
            out.append(new)
        return self._merge(Vec(out, v.values, v.present, v.sample_ts))

    # -- aggregation -------------------------------------------------------------------------------

    def _aggregate(self, agg: pp.AggregateExpr) -> Vec:
        op = str(agg.op)
        if op not in AGGREGATIONS:
            raise BadData(f"aggregation \"{op}\" is not supported by this API (supported: "
                          f"{', '.join(sorted(AGGREGATIONS))})")
        param = None
        if op in ("topk", "bottomk", "quantile"):
            param = self._scalar_arg(agg.param)
        v = self.eval(agg.expr)
        if not isinstance(v, Vec):
            raise BadData(f"expected type instant vector in aggregation expression, got {_type_name(v)}")
        mod = agg.modifier
        without = mod is not None and mod.type == pp.AggModifierType.Without
        grouping = list(mod.labels) if mod is not None else []
        groups: dict[tuple, list[int]] = {}
        out_labels: dict[tuple, dict[str, str]] = {}
        for i, lab in enumerate(v.labels):
            if without:
                drop = set(grouping) | {NAME}
                g = {k: val for k, val in lab.items() if k not in drop}
            else:
                g = {k: lab[k] for k in grouping if lab.get(k)}
            key = _key(g)
            groups.setdefault(key, []).append(i)
            out_labels.setdefault(key, g)
        if op in ("topk", "bottomk"):
            return self._topk(v, groups, param, op == "bottomk")
        labels, rows, present = [], [], []
        for key, idx in groups.items():
            P = v.present[idx]
            V = v.values[idx]
            cnt = P.sum(axis=0)
            ok = cnt > 0
            if not ok.any():
                continue
            with np.errstate(all="ignore"):
                if op == "sum":
                    val = np.where(P, V, 0.0).sum(axis=0)
                elif op == "avg":
                    val = np.where(P, V, 0.0).sum(axis=0) / cnt
                elif op == "count":
                    val = cnt.astype(float)
                elif op == "group":
                    val = np.ones(self.steps)
                elif op == "min":
                    val = np.fmin.reduce(np.where(P, V, np.nan), axis=0)
                elif op == "max":
                    val = np.fmax.reduce(np.where(P, V, np.nan), axis=0)
                elif op in ("stddev", "stdvar"):
                    mean = np.where(P, V, 0.0).sum(axis=0) / cnt
                    var = np.where(P, (V - mean) ** 2, 0.0).sum(axis=0) / cnt
                    val = np.sqrt(var) if op == "stddev" else var
                else:  # quantile
                    val = np.full(self.steps, np.nan)
                    for j in np.flatnonzero(ok):
                        val[j] = _quantile(float(param[j]), V[P[:, j], j])
            labels.append(out_labels[key])
            rows.append(val)
            present.append(ok)
        if not labels:
            return _empty_vec(self.steps)
        return Vec(labels, np.vstack(rows), np.vstack(present))

    def _topk(self, v: Vec, groups: dict[tuple, list[int]], param: np.ndarray, bottom: bool) -> Vec:
        keep = np.zeros_like(v.present)
        with np.errstate(invalid="ignore"):
            k = np.where(np.isfinite(param), param, 0).astype(np.int64)
            k = np.where(param >= 2**62, 2**62, k)
        for idx in groups.values():
            P = v.present[idx]
            V = v.values[idx]
            nan = np.isnan(V)
            score = -V if bottom else V
            # preferred first: present, then not NaN, then by value
            order = np.lexsort((-np.where(nan, 0, score), nan, ~P), axis=0)
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(idx))[:, None].repeat(self.steps, 1), axis=0)
            keep[idx] = P & (rank < k[None, :])
        rows = np.flatnonzero(keep.any(axis=1))
        return Vec([v.labels[i] for i in rows], v.values[rows], keep[rows], None,
                   "desc" if not bottom else "asc")

    # -- operators ---------------------------------------------------------------------------------

    def _negate(self, v):
        if isinstance(v, Scalar):
            return Scalar(-v.values)
        if isinstance(v, Vec):
            return self._merge(Vec([_drop_name(x) for x in v.labels], -v.values, v.present.copy()))
        raise BadData(f"unary expression only allowed on expressions of type scalar or instant vector, got "
                      f"{_type_name(v)}")

    def _binary(self, b: pp.BinaryExpr):
        op = str(b.op)
        mod = b.modifier
        return_bool = bool(mod and mod.return_bool)
        lhs, rhs = self.eval(b.lhs), self.eval(b.rhs)
        for side in (lhs, rhs):
            if not isinstance(side, (Vec, Scalar)):
                raise BadData("binary expression must contain only scalar and instant vector types")
        if op in SETOPS:
            if not (isinstance(lhs, Vec) and isinstance(rhs, Vec)):
                raise BadData(f"set operator \"{op}\" not allowed in binary scalar expression")
            return self._setop(op, lhs, rhs, mod)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            if op in COMPARE:
                return Scalar(_compare(op, lhs.values, rhs.values).astype(float))
            return Scalar(_arith(op, lhs.values, rhs.values))
        if isinstance(lhs, Vec) and isinstance(rhs, Scalar):
            return self._vec_scalar(op, lhs, rhs.values[None, :], False, return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vec):
            return self._vec_scalar(op, rhs, lhs.values[None, :], True, return_bool)
        return self._vec_vec(op, lhs, rhs, mod, return_bool)

    def _vec_scalar(self, op: str, v: Vec, s: np.ndarray, swap: bool, return_bool: bool) -> Vec:
        a, b = (s, v.values) if swap else (v.values, s)
        if op in COMPARE:
            keep = _compare(op, a, b)
            if return_bool:
                return self._merge(Vec([_drop_name(x) for x in v.labels], keep.astype(float), v.present.copy()))
            return Vec(v.labels, v.values.copy(), v.present & keep)
        return self._merge(Vec([_drop_name(x) for x in v.labels], _arith(op, a, b), v.present.copy()))

    def _signature(self, labels: dict[str, str], mod) -> tuple:
        matching = mod.matching if mod is not None else None
        if matching is not None and matching.type == pp.LabelModifierType.Include:
            return tuple((k, labels.get(k, "")) for k in sorted(matching.labels))
        ignored = set(matching.labels) if matching is not None else set()
        ignored.add(NAME)
        return tuple(sorted((k, x) for k, x in labels.items() if k not in ignored))

    def _setop(self, op: str, lhs: Vec, rhs: Vec, mod) -> Vec:
        steps = self.steps
        rsig: dict[tuple, np.ndarray] = {}
        for i, lab in enumerate(rhs.labels):
            s = self._signature(lab, mod)
            rsig[s] = rsig.get(s, np.zeros(steps, bool)) | rhs.present[i]
        if op in ("and", "unless"):
            present = np.zeros_like(lhs.present)
            for i, lab in enumerate(lhs.labels):
                there = rsig.get(self._signature(lab, mod), np.zeros(steps, bool))
                present[i] = lhs.present[i] & (there if op == "and" else ~there)
            return Vec(lhs.labels, lhs.values, present, lhs.sample_ts)
        lsig: dict[tuple, np.ndarray] = {}
        for i, lab in enumerate(lhs.labels):
            s = self._signature(lab, mod)
            lsig[s] = lsig.get(s, np.zeros(steps, bool)) | lhs.present[i]
        r_present = np.vstack([rhs.present[i] & ~lsig.get(self._signature(lab, mod), np.zeros(steps, bool))
                               for i, lab in enumerate(rhs.labels)]) if rhs.labels else np.zeros((0, steps), bool)
        return self._merge(Vec(lhs.labels + rhs.labels, np.vstack([lhs.values, rhs.values]),
                               np.vstack([lhs.present, r_present])))

    def _vec_vec(self, op: str, lhs: Vec, rhs: Vec, mod, return_bool: bool) -> Vec:
        card = mod.card if mod is not None else pp.VectorMatchCardinality.OneToOne
        one_to_many = card == pp.VectorMatchCardinality.OneToMany
        many, one = (rhs, lhs) if one_to_many else (lhs, rhs)
        include = list(mod.group_labels or []) if mod is not None else []
        steps = self.steps
        # The "one" side: at most one series per signature at each step.
        one_sig: dict[tuple, list[int]] = {}
        for i, lab in enumerate(one.labels):
            one_sig.setdefault(self._signature(lab, mod), []).append(i)
        for s, idx in one_sig.items():
            if len(idx) > 1 and (one.present[idx].sum(axis=0) > 1).any():
                side = "left" if one_to_many else "right"
                raise ExecutionError(f"found duplicate series for the match group {_fmt_sig(s)} on the {side} "
                                     "hand-side of the operation; many-to-many matching not allowed: matching "
                                     "labels must be unique on one side")
        if card == pp.VectorMatchCardinality.OneToOne:
            many_sig: dict[tuple, list[int]] = {}
            for i, lab in enumerate(many.labels):
                many_sig.setdefault(self._signature(lab, mod), []).append(i)
            for s, idx in many_sig.items():
                if len(idx) > 1 and s in one_sig and (many.present[idx].sum(axis=0) > 1).any():
                    raise ExecutionError("multiple matches for labels: many-to-one matching must be explicit "
                                         "(group_left/group_right)")
        on = mod is not None and mod.matching is not None and mod.matching.type == pp.LabelModifierType.Include
        match_labels = list(mod.matching.labels) if mod is not None and mod.matching is not None else []
        drop_name = op in ARITH or return_bool
        labels, rows, present = [], [], []
        for i, lab in enumerate(many.labels):
            idx = one_sig.get(self._signature(lab, mod))
            if not idx:
                continue
            for j in idx:  # one series of the one side per step at most: each j covers its own steps
                both = many.present[i] & one.present[j]
                if not both.any():
                    continue
                vl, vr = (one.values[j], many.values[i]) if one_to_many else (many.values[i], one.values[j])
                if op in COMPARE:
                    keep = _compare(op, vl, vr)
                    if return_bool:
                        value, ok = keep.astype(float), both
                    else:
                        value, ok = vl.copy(), both & keep
                else:
                    value, ok = _arith(op, vl, vr), both
                if not ok.any():
                    continue
                res = dict(lab)
                if drop_name:
                    res.pop(NAME, None)
                if card == pp.VectorMatchCardinality.OneToOne:
                    if on:
                        res = {k: x for k, x in res.items() if k in match_labels}
                    else:
                        for k in match_labels:
                            res.pop(k, None)
                for k in include:
                    x = one.labels[j].get(k, "")
                    if x:
                        res[k] = x
                    else:
                        res.pop(k, None)
                labels.append(res)
                rows.append(value)
                present.append(ok)
        if not labels:
            return _empty_vec(steps)
        out = Vec(labels, np.vstack(rows), np.vstack(present))
        if card != pp.VectorMatchCardinality.OneToOne:
            return self._merge(out, "multiple matches for labels: grouping labels must ensure unique matches")
        return self._merge(out)

    # -- label sets --------------------------------------------------------------------------------

    def _merge(self, v: Vec, message: str = "vector cannot contain metrics with the same labelset") -> Vec:
        """Series with one label set become one; two of them at the same step is an error,
        as Prometheus' rangeEval finds it."""
        groups: dict[tuple, list[int]] = {}
        for i, lab in enumerate(v.labels):
            groups.setdefault(_key(lab), []).append(i)
        if len(groups) == len(v.labels):
            return v
        labels, rows, present = [], [], []
        for idx in groups.values():
            if len(idx) == 1:
                i = idx[0]
                labels.append(v.labels[i])
                rows.append(v.values[i])
                present.append(v.present[i])
                continue
            P = v.present[idx]
            if (P.sum(axis=0) > 1).any():
                raise ExecutionError(message)
            first = np.argmax(P, axis=0)
            labels.append(v.labels[idx[0]])
            rows.append(v.values[idx][first, np.arange(self.steps)])
            present.append(P.any(axis=0))
        return Vec(labels, np.vstack(rows), np.vstack(present), None, v.order)


# -- range functions: (ts, values, window starts, window ends (exclusive indexes), range) ----------

def _windows(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indexes for ufunc.reduceat over the windows [lo, hi): interleaved, with one pad element."""
    idx = np.empty(lo.size * 2, np.int64)
    idx[0::2] = lo
    idx[1::2] = hi
    return idx, hi > lo


def _reduce(ufunc, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    idx, _ = _windows(lo, hi)
    padded = np.append(v, 0.0)
    with np.errstate(all="ignore"):
        return ufunc.reduceat(padded, idx)[0::2]


def _f_count(t, v, lo, hi, r):
    n = hi - lo
    return n.astype(float), n > 0


def _f_sum(t, v, lo, hi, r):
    return _reduce(np.add, v, lo, hi), hi > lo


def _f_avg(t, v, lo, hi, r):
    n = hi - lo
    with np.errstate(all="ignore"):
        return _reduce(np.add, v, lo, hi) / n, n > 0


def _f_min(t, v, lo, hi, r):
    return _reduce(np.fmin, v, lo, hi), hi > lo


def _f_max(t, v, lo, hi, r):
    return _reduce(np.fmax, v, lo, hi), hi > lo


def _f_last(t, v, lo, hi, r):
    ok = hi > lo
    return v[np.maximum(hi - 1, 0)] if v.size else np.zeros(lo.size), ok


def _f_present(t, v, lo, hi, r):
    return np.ones(lo.size), hi > lo


def _f_stdvar(t, v, lo, hi, r, sqrt=False):
    n = hi - lo
    out = np.full(lo.size, np.nan)
    for j in np.flatnonzero(n > 0):
        w = v[lo[j]:hi[j]]
        out[j] = np.var(w)
    return (np.sqrt(out) if sqrt else out), n > 0


def _f_stddev(t, v, lo, hi, r):
    return _f_stdvar(t, v, lo, hi, r, sqrt=True)


def _extrapolated(t, v, lo, hi, r: Range, counter: bool, rate: bool):
    ok = (hi - lo) >= 2
    if not v.size:
        return np.zeros(lo.size), ok
    first, last = np.minimum(lo, v.size - 1), np.maximum(hi - 1, 0)
    v0, v1 = v[first], v[last]
    result = v1 - v0
    if counter:
        prev = np.concatenate([[0.0], v[:-1]])
        corr = np.where(v < prev, prev, 0.0)
        corr[0] = 0.0
        cum = np.concatenate([[0.0], np.cumsum(corr)])
        # resets between the window's first and last sample: corr[first + 1 .. last]
        result = result + (cum[np.maximum(hi, first + 1)] - cum[np.minimum(first + 1, hi)])
    t0, t1 = t[first].astype(float), t[last].astype(float)
    with np.errstate(all="ignore"):
        to_start = (t0 - r.lo) / 1000.0
        to_end = (r.hi - t1) / 1000.0
        sampled = (t1 - t0) / 1000.0
        avg_gap = sampled / (hi - lo - 1)
        if counter:
            to_zero = sampled * (v0 / result)
            use_zero = (result > 0) & (v0 >= 0) & (to_zero < to_start)
            to_start = np.where(use_zero, to_zero, to_start)
        threshold = avg_gap * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, avg_gap / 2)
        interval = interval + np.where(to_end < threshold, to_end, avg_gap / 2)
        factor = interval / sampled
        if rate:
            factor = factor / (r.range_ms / 1000.0)
        return result * factor, ok


def _f_rate(t, v, lo, hi, r):
    return _extrapolated(t, v, lo, hi, r, True, True)


def _f_increase(t, v, lo, hi, r):
    return _extrapolated(t, v, lo, hi, r, True, False)


def _f_delta(t, v, lo, hi, r):
    return _extrapolated(t, v, lo, hi, r, False, False)


def _instant(t, v, lo, hi, r, rate: bool):
    ok = (hi - lo) >= 2
    if v.size < 2:
        return np.zeros(lo.size), ok
    last = np.maximum(hi - 1, 1)
    prev = last - 1
    vl, vp = v[last], v[prev]
    gap = (t[last] - t[prev]).astype(float)
    ok &= gap != 0
    with np.errstate(all="ignore"):
        if rate:
            value = np.where(vl < vp, vl, vl - vp) / (gap / 1000.0)
        else:
            value = vl - vp
    return value, ok


def _f_irate(t, v, lo, hi, r):
    return _instant(t, v, lo, hi, r, True)


def _f_idelta(t, v, lo, hi, r):
    return _instant(t, v, lo, hi, r, False)


def _counted(t, v, lo, hi, flags: np.ndarray):
    """How many of flags[i] (i >= 1: between sample i-1 and i) fall inside each window."""
    cum = np.concatenate([[0], np.cumsum(flags)])
    first = np.minimum(lo + 1, hi)
    return (cum[np.maximum(hi, first)] - cum[first]).astype(float), hi > lo


def _f_changes(t, v, lo, hi, r):
    if v.size == 0:
        return np.zeros(lo.size), hi > lo
    prev = np.concatenate([[v[0]], v[:-1]])
    flags = (v != prev) & ~(np.isnan(v) & np.isnan(prev))
    flags[0] = False
    return _counted(t, v, lo, hi, flags)


def _f_resets(t, v, lo, hi, r):
    if v.size == 0:
        return np.zeros(lo.size), hi > lo
    prev = np.concatenate([[v[0]], v[:-1]])
    flags = v < prev
    flags[0] = False
    return _counted(t, v, lo, hi, flags)


RANGE_FUNCS: dict[str, Callable] = {
    "rate": _f_rate, "increase": _f_increase, "delta": _f_delta, "irate": _f_irate, "idelta": _f_idelta,
    "avg_over_time": _f_avg, "min_over_time": _f_min, "max_over_time": _f_max, "sum_over_time": _f_sum,
    "count_over_time": _f_count, "last_over_time": _f_last, "present_over_time": _f_present,
    "stddev_over_time": _f_stddev, "stdvar_over_time": _f_stdvar, "changes": _f_changes, "resets": _f_resets,
}


def _sgn(x):
    return np.sign(x)


MATH_FUNCS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "sqrt": np.sqrt, "ln": np.log,
    "log2": np.log2, "log10": np.log10, "sgn": _sgn,
}

SUPPORTED_FUNCTIONS = set(RANGE_FUNCS) | set(MATH_FUNCS) | {
    "round", "clamp", "clamp_min", "clamp_max", "vector", "scalar", "time", "timestamp", "sort", "sort_desc",
    "absent", "absent_over_time", "label_replace", "label_join"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile"}


def _go_min(a, b):
    """Go's math.Min: NaN if either is NaN."""
    with np.errstate(invalid="ignore"):
        return np.minimum(a, b)


def _go_max(a, b):
    with np.errstate(invalid="ignore"):
        return np.maximum(a, b)


def _quantile(q: float, values: np.ndarray) -> float:
    if values.size == 0:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    s = np.sort(values)
    n = float(s.size)
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return float(s[int(lower)] * (1 - weight) + s[int(upper)] * weight)


def _fmt_sig(sig: tuple) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sig) + "}"


def _valid_label_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name) \
        and name.isascii()


def _expand(template: str, m, rx) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name, ${name}; $$ is a dollar; unknown names are empty."""
    out = []
    i = 0
    names = getattr(rx, "groupindex", {}) or {}
    groups = getattr(rx, "groups", 0)
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            if end < 0:
                out.append(c)
                i += 1
                continue
            name = template[i + 2:end]
            i = end + 1
        else:
            j = i + 1
            while j < len(template) and (template[j].isalnum() or template[j] == "_"):
                j += 1
            if j == i + 1:
                out.append(c)
                i += 1
                continue
            name = template[i + 1:j]
            i = j
        if name.isdigit():
            n = int(name)
            if n <= groups:
                out.append(m.group(n) or "")
        elif name in names:
            out.append(m.group(name) or "")
    return "".join(out)
