"""Effective windows: the days and hours, in the policy's own time zone, in which a
policy is evaluated at all (Alibaba's 有效时段). Outside them nothing changes state."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from diag.alerting.policy import DAYS, Effective


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def active(effective: Effective | None, now: float) -> bool:
    """True when `now` falls inside the window. A window whose end is before its start
    runs past midnight (22:00-06:00), and belongs to the day it starts on."""
    if effective is None:
        return True
    local = datetime.fromtimestamp(now, _zone(effective.timezone))
    minute = local.hour * 60 + local.minute
    start, end = _minutes(effective.start), _minutes(effective.end)
    day = DAYS[local.weekday()]
    if start < end:
        return day in effective.days and start <= minute < end
    if minute >= start:
        return day in effective.days
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return minute < end and yesterday in effective.days
