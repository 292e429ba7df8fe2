"""Times as a person reads them on the dashboard: one 24-hour ISO-like format
(`2026-12-05 03:04:05 UTC`), in UTC or in the zone the person chose in the header.

The choice is the `diag_tz` cookie, set by dash.js (only the browser knows its own zone):
"UTC" or an IANA name such as "Europe/Paris". Anything else reads as UTC, so a stale or
forged cookie cannot break a page.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from flask import g, has_request_context, request

from diag.units import parse_time

COOKIE = "diag_tz"
UTC = "UTC"
# What the range and maintenance inputs show and read first: no seconds, no zone.
INPUT_FORMAT = "%Y-%m-%d %H:%M"
_INPUT = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)$")
# A UTC time inside a message (diag's own messages use report_format.when, or RFC 3339).
_UTC_IN_TEXT = re.compile(r"\b(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.\d+)?(?: ?UTC|Z|\+00:00)")


def _zone_of(name: str | None) -> tuple[str, tzinfo]:
    if not name or name == UTC or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        return UTC, timezone.utc
    try:
        return name, ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return UTC, timezone.utc


def chosen() -> tuple[str, tzinfo]:
    """The zone this request's person chose: its name and the tzinfo."""
    if not has_request_context():
        return UTC, timezone.utc
    if "diag_tz" not in g:
        g.diag_tz = _zone_of(request.cookies.get(COOKIE))
    return g.diag_tz


def zone_name() -> str:
    return chosen()[0]


def _abbrev(dt: datetime) -> str:
    return "UTC" if dt.tzinfo is timezone.utc else (dt.strftime("%Z") or dt.strftime("%z"))


def when(ts: float | None, tz: tzinfo | None = None) -> str:
    """`2026-12-05 03:04:05 UTC`, or the same in the chosen zone with its abbreviation
    (`2026-12-05 04:04:05 CET`); "-" for no time."""
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(ts, tz or chosen()[1])
    return dt.strftime("%Y-%m-%d %H:%M:%S ") + _abbrev(dt)


def input_value(ts: float | None, tz: tzinfo | None = None) -> str:
    """A time for a text input, in the chosen zone: `2026-12-05 03:04`."""
    return "" if ts is None else datetime.fromtimestamp(ts, tz or chosen()[1]).strftime(INPUT_FORMAT)


def parse_input(value: str, now: float, tz: tzinfo | None = None) -> float:
    """A time typed into an input: `2026-12-05 03:04` (or with a T, or seconds) in the
    chosen zone, or any form the API takes (RFC 3339 with its offset, -1h, UNIX seconds)."""
    v = value.strip()
    m = _INPUT.match(v)
    if m:
        return datetime.fromisoformat(f"{m[1]}T{m[2]}").replace(tzinfo=tz or chosen()[1]).timestamp()
    return parse_time(v, now)


def localize(text: str | None) -> str:
    """A message with its UTC times written in the chosen zone and format."""
    if not text:
        return text or ""
    tz = chosen()[1]

    def repl(m: re.Match[str]) -> str:
        dt = datetime.fromisoformat(f"{m[1]}T{m[2]}").replace(tzinfo=timezone.utc)
        return when(dt.timestamp(), tz)

    return _UTC_IN_TEXT.sub(repl, text)


# Evidence keys that hold a time (UNIX seconds) in the checks' reports.
_TIME_KEY = re.compile(r"^(at|ts|time|since|until|start|end|first|last)$"
                       r"|_(ts|time|at|since|until|sample)$|^(last|first)_")


def readable_evidence(value: Any, key: str = "") -> Any:
    """A check's evidence with its UNIX times written as times (`2026-12-05 03:04:05 UTC`):
    a value under a time-like key and within 2001-2099. The JSON link keeps the numbers."""
    if isinstance(value, dict):
        return {k: readable_evidence(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [readable_evidence(v, key) for v in value]
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and 1e9 <= value < 4.1e9
            and _TIME_KEY.search(key)):
        return when(value)
    return value
