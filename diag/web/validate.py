"""Small validators for request bodies and parameters; each failure names its field."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from flask import request

from diag.web.errors import ApiError

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_LABEL_VALUE = 512


MAX_DEPTH = 32


def json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if _too_deep(raw):
        raise ApiError(400, f"the body is nested deeper than {MAX_DEPTH} levels")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "the body must be a JSON object (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _too_deep(raw: bytes) -> bool:
    """Deeper than MAX_DEPTH, judged on the text before parsing (a parser given thousands
    of nested brackets recurses until it fails). Strings are cut out first: their
    brackets are text."""
    brackets = np.frombuffer(_STRINGS.sub(b"", raw), dtype=np.uint8)
    steps = (brackets == 91).astype(np.int32) + (brackets == 123) - (brackets == 93) - (brackets == 125)
    return bool(steps.size) and int(np.cumsum(steps).max()) > MAX_DEPTH


def finite(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, "must be a number", field)
    f = float(value)
    if not math.isfinite(f):
        raise ApiError(422, "must be a finite number", field)
    return f


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
