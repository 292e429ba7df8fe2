"""Parsing of the human forms used in config, CLI and API: durations, sizes, bit rates."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
               "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40}

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps|b)?(?:/s)?\s*$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_duration(value: str | int | float) -> float:
    """'10s', '5m', '12h', '7d', '250ms' or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use forms like 30s, 5m, 12h, 7d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(value: str | int | float) -> int:
    """'500MiB', '2GB', '1048576' -> bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use forms like 512MiB, 2GB)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


def parse_bitrate(value: str | int | float) -> float:
    """'100Mbit', '1Gbps', '5000000' -> bit/s (decimal prefixes, as links are sold)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _RATE.match(str(value))
    if not m:
        raise ValueError(f"not a bit rate: {value!r} (use forms like 100Mbit, 1Gbps)")
    return float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]


def parse_time(value: str, now: float) -> float:
    """A query time: UNIX seconds, RFC 3339, `now`, or relative to now like `-1h`."""
    from datetime import datetime

    v = value.strip()
    if v == "now":
        return now
    if v.startswith("-"):
        return now - parse_duration(v[1:])
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use UNIX seconds, RFC 3339, 'now' or '-1h')") from None
    if dt.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone (add Z or +08:00)")
    return dt.timestamp()
