"""Small validators for request bodies and parameters; each failure names its field."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from flask import request

from diag.web.errors import ApiError

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_LABEL_VALUE = 512


def finite(value: Any, field: str) -> float:
    """A JSON number (not a boolean), finite: 422 naming `field` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, "must be a number", field)
    f = float(value)
    if not math.isfinite(f):
        raise ApiError(422, "must be a finite number", field)
    return f


MAX_DEPTH = 32
# UNIX seconds a query may name: well past any retention either way, and small enough that
# spans, bucket counts and datetimes built from them stay finite (end=1e400 parsed as inf).
MAX_ABS_TIME = 1e11


def time_param(value: str, now: float, field: str) -> float:
    """A time query parameter (UNIX seconds, RFC 3339, now, -1h), refused with a 400 unless finite
    and within MAX_ABS_TIME."""
    from diag.units import parse_time

    try:
        t = parse_time(value, now)
    except (ValueError, OverflowError) as e:
        raise ApiError(400, str(e), field) from None
    if not (math.isfinite(t) and abs(t) <= MAX_ABS_TIME):
        raise ApiError(400, f"{value[:40]!r} is not a time within {MAX_ABS_TIME:.0e} s of 1970", field)
    return t


def json_body(walk: bool = True) -> dict[str, Any]:
    """The request's JSON object. Nesting is bounded: thousands of brackets make the parser
    give up (400), and with `walk` the parsed body may be at most MAX_DEPTH deep. A route
    with large flat bodies (ingest) passes walk=False and bounds its free-form parts itself."""
    if not request.is_json:
        raise ApiError(400, "the body must be a JSON object (Content-Type: application/json)")
    try:
        # orjson: a third of the stdlib parser's time on an agent's batch, and it refuses
        # runaway nesting (over 1,024 levels) with an error instead of recursing.
        body = orjson.loads(request.get_data(cache=True))
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "ecursion" in str(e):
            raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels") from None
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if walk:
        too_deep(body, "")
    return body


def too_deep(value: Any, field: str) -> None:
    """Refuse `value` when it nests deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            if d > MAX_DEPTH:
                raise ApiError(400, f"nested deeper than {MAX_DEPTH} levels", field or None)
            stack.extend((x, d + 1) for x in v)


def string(value: Any, field: str, pattern: re.Pattern[str] | None = None, max_len: int = 512) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(422, f"must be a non-empty string of at most {max_len} characters", field)
    if pattern is not None and not pattern.match(value):
        raise ApiError(422, f"{value[:80]!r} is not a valid name ({pattern.pattern})", field)
    return value


def labels(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 32:
        raise ApiError(422, "must be an object of at most 32 label names to string values", field)
    out = {}
    for k, v in value.items():
        string(k, f"{field}.{k}", LABEL_NAME, 100)
        if not isinstance(v, str) or len(v) > MAX_LABEL_VALUE:
            raise ApiError(422, f"must be a string of at most {MAX_LABEL_VALUE} characters", f"{field}.{k}")
        out[k] = v
    return out
