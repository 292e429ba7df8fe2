"""Checks of one field of a request, shared by the API's hand validators (diag/web/validate.py)
and the use cases that read a request themselves (a connectivity question): each refusal is
an ApiError naming the field."""

from __future__ import annotations

import math
from typing import Any

from diag.errors import ApiError


def finite(value: Any, field: str) -> float:
    """A JSON number (not a boolean), finite: 422 naming `field` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, "must be a number", field)
    f = float(value)
    if not math.isfinite(f):
        raise ApiError(422, "must be a finite number", field)
    return f
