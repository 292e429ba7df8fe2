"""A Prometheus-compatible HTTP API under /prometheus, over the embedded store.

Grafana's Prometheus data source (URL http://host:8080/prometheus) and other Prometheus
clients use it; the product's own /api/v1/query keeps its contract. Parameters come from
the query string or a form POST, as Prometheus takes them; answers have Prometheus' JSON
shapes, errors `{"status":"error","errorType":...,"error":...}` with its status codes
(bad_data 400, execution 422, timeout and unavailable 503). Reads need what every other
read needs (diag.web.auth: the admin token when reads are protected), for POST too.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

import orjson
import promql_parser as pp
from flask import Blueprint, Response, current_app, request

import diag
from diag import catalogue
from diag.promql import Engine
from diag.promql.errors import BadData, PromQLError
from diag.promql.source import StoreSource, parse_selector
from diag.store.types import StoreError
from diag.web.parts import parts

bp = Blueprint("prometheus_api", __name__, url_prefix="/prometheus/api/v1")

METHODS = ["GET", "POST"]
# The PromQL semantics this API follows (the differential test runs them on this version);
# Grafana reads the version to decide which features a Prometheus data source has.
PROMETHEUS_VERSION = "2.42.0"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _ok(data) -> Response:
    return Response(orjson.dumps({"status": "success", "data": data}), mimetype="application/json")


def _error(e: PromQLError) -> Response:
    body = {"status": "error", "errorType": e.error_type, "error": e.message}
    return Response(orjson.dumps(body), status=e.status, mimetype="application/json")


@bp.errorhandler(PromQLError)
def _promql_error(e: PromQLError):
    return _error(e)


@bp.errorhandler(StoreError)
def _store_error(e: StoreError):
    err = PromQLError(f"the store could not answer: {e}")
    err.error_type, err.status = "unavailable", 503
    return _error(err)


def _engine() -> Engine:
    ext = current_app.extensions["diag"]
    eng = ext.get("promql_engine")
    if eng is None:
        eng = ext["promql_engine"] = Engine(ext["parts"].points)
    return eng


def parse_time(name: str, text: str) -> int:
    """Prometheus' parseTime: unix seconds (rounded to the millisecond) or RFC 3339; in ms."""
    try:
        t = float(text)
    except ValueError:
        t = None
    if t is not None:
        if not math.isfinite(t):
            raise BadData(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp")
        whole = math.trunc(t)
        return int(whole) * 1000 + int(round((t - whole) * 1000))
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadData(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp") from None
    if dt.tzinfo is None:
        raise BadData(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp")
    return int(round(dt.timestamp() * 1000))


def parse_duration_ms(name: str, text: str) -> int:
    """Prometheus' parseDuration: seconds as a float, or a duration like 1m30s; in ms (truncated)."""
    try:
        d = float(text)
    except ValueError:
        d = None
    if d is not None:
        if not math.isfinite(d) or abs(d) > 9.2e9:
            raise BadData(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid duration")
        return int(d * 1000)
    try:
        td = pp.parse_duration(text)
    except Exception:  # the parser's ValueError, or anything it raises on odd input
        raise BadData(f"invalid parameter \"{name}\": cannot parse \"{text}\" to a valid duration") from None
    return (td.days * 86_400 + td.seconds) * 1000 + td.microseconds // 1000


def _param(name: str) -> str | None:
    return request.values.get(name)


def _timeout() -> float | None:
    text = _param("timeout")
    if not text:
        return None
    ms = parse_duration_ms("timeout", text)
    return max(ms, 1) / 1000.0


@bp.route("/query", methods=METHODS)
def query():
    t = parse_time("time", _param("time")) if _param("time") else int(time.time() * 1000)
    res = _engine().instant(_param("query") or "", t, timeout=_timeout())
    return _ok(res.data)


@bp.route("/query_range", methods=METHODS)
def query_range():
    start = parse_time("start", _param("start") or "")
    end = parse_time("end", _param("end") or "")
    if end < start:
        raise BadData("invalid parameter \"end\": end timestamp must not be before start time")
    step = parse_duration_ms("step", _param("step") or "")
    if step <= 0:
        raise BadData("invalid parameter \"step\": zero or negative query resolution step widths are not "
                      "accepted. Try a positive integer")
    res = _engine().range(_param("query") or "", start, end, step, timeout=_timeout())
    return _ok(res.data)


def _selectors(required: bool = False):
    texts = request.values.getlist("match[]")
    if not texts:
        if required:
            raise BadData("no match[] parameter provided")
        return None
    return [parse_selector(t) for t in texts]


def _source() -> StoreSource:
    return StoreSource(parts().points)


def _check_range() -> None:
    """start/end are checked as Prometheus does; the catalogue's series are listed whatever their age."""
    for name in ("start", "end"):
        if _param(name):
            parse_time(name, _param(name))


@bp.route("/labels", methods=METHODS)
def labels():
    _check_range()
    names: set[str] = set()
    for lab in _source().label_sets(_selectors()):
        names.update(lab)
    return _ok(sorted(names))


@bp.route("/label/<name>/values", methods=["GET"])
def label_values(name: str):
    if not _LABEL_NAME.match(name):
        raise BadData(f"invalid label name: \"{name}\"")
    _check_range()
    values = {lab[name] for lab in _source().label_sets(_selectors()) if name in lab}
    return _ok(sorted(values))


@bp.route("/series", methods=METHODS)
def series():
    _check_range()
    return _ok(_source().label_sets(_selectors(required=True)))


@bp.route("/metadata", methods=["GET"])
def metadata():
    limit_text = _param("limit")
    try:
        limit = int(limit_text) if limit_text else -1
    except ValueError:
        raise BadData("limit must be a number") from None
    only = _param("metric")
    store = parts().store
    out: dict[str, list[dict]] = {}
    for name in store.metric_names():
        if only and name != only:
            continue
        if 0 <= limit <= len(out):
            break
        m = catalogue.BY_NAME.get(name)
        if m is None:
            out[name] = [{"type": "unknown", "help": "", "unit": ""}]
        else:
            # Every stored series is a gauge: rates are stored per second, deltas per interval.
            out[name] = [{"type": "gauge", "help": m.description, "unit": m.unit}]
    return _ok(out)


@bp.route("/status/buildinfo", methods=["GET"])
def buildinfo():
    return _ok({"version": PROMETHEUS_VERSION, "revision": f"diag-{diag.__version__}", "branch": "diag",
                "buildUser": "", "buildDate": "", "goVersion": ""})


@bp.route("/query_exemplars", methods=METHODS)
def query_exemplars():
    return _ok([])  # the store keeps no exemplars; Grafana's Explore asks anyway
