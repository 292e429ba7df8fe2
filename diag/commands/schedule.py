"""When an invocation runs: now, `at(RFC3339)`, `rate(5m)`, a Quartz-style cron (seconds first,
optional year and time zone, day of week 1-7 = MON-SUN as seed 001 has it), or at boot.

Cron is translated onto APScheduler's CronTrigger (day_of_week 0 = Monday there); what it
cannot express (`W`, `LW`, `L-n`, both day fields constrained) is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from diag.units import parse_duration

REPEAT_MODES = ("Once", "Period", "NextRebootOnly", "EveryReboot")
RATE_MIN, RATE_MAX = 60, 7 * 86400
CRON_MIN_GAP = 10
_DAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
_NTH = {"1": "1st", "2": "2nd", "3": "3rd", "4": "4th", "5": "5th"}
_PLAIN = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")
_YEAR = re.compile(r"^[\d*,/-]+$")


class ScheduleError(ValueError):
    def __init__(self, message: str, field: str = "frequency"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Schedule:
    kind: str  # now | at | rate | cron | boot
    periodic: bool
    every: float = 0.0
    at: float = 0.0
    cron: CronTrigger | None = None

    def first(self, created: float) -> float | None:
        """The first run; a rate waits one interval first (seed 001: not run on creation)."""
        if self.kind == "now":
            return created
        if self.kind == "at":
            return self.at
        if self.kind == "rate":
            return created + self.every
        if self.kind == "cron":
            return self.next_after(created, created)
        return None

    def next_after(self, now: float, created: float) -> float | None:
        """The next run strictly after `now`; fixed-rate runs stay on created + k*every."""
        if self.kind == "rate":
            k = int((now - created) // self.every) + 1
            return created + k * self.every
        if self.kind == "cron":
            assert self.cron is not None
            prev = datetime.fromtimestamp(now, timezone.utc)
            nxt = self.cron.get_next_fire_time(None, prev)
            if nxt is not None and nxt.timestamp() <= now:  # CronTrigger may return `now` itself
                nxt = self.cron.get_next_fire_time(None, datetime.fromtimestamp(now + 1, timezone.utc))
            return nxt.timestamp() if nxt else None
        return None


def parse(repeat_mode: str, frequency: str | None, timeout: float, now: float) -> Schedule:
    if repeat_mode not in REPEAT_MODES:
        raise ScheduleError(f"must be one of {', '.join(REPEAT_MODES)}", "repeat_mode")
    frequency = (frequency or "").strip()
    if repeat_mode in ("NextRebootOnly", "EveryReboot"):
        if frequency:
            raise ScheduleError(f"{repeat_mode} takes no frequency")
        return Schedule("boot", periodic=repeat_mode == "EveryReboot")
    if not frequency:
        if repeat_mode == "Period":
            raise ScheduleError("Period needs a frequency: rate(5m), at(2026-12-01T17:30:00+08:00) or a cron")
        return Schedule("now", periodic=False)
    if frequency.startswith("at("):
        return Schedule("at", periodic=False, at=_at(frequency, now))
    if repeat_mode == "Once":
        raise ScheduleError("Once runs now or at(...); use Period for rate(...) or a cron")
    if frequency.startswith("rate("):
        return Schedule("rate", periodic=True, every=_rate(frequency, timeout))
    return Schedule("cron", periodic=True, cron=cron(frequency, timeout, now))


def _at(text: str, now: float) -> float:
    if not text.endswith(")"):
        raise ScheduleError("write at(2026-12-01T17:30:00+08:00)")
    try:
        when = datetime.fromisoformat(text[3:-1].strip())
    except ValueError:
        raise ScheduleError(f"{text[3:-1]!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise ScheduleError("at(...) needs a UTC offset, e.g. 2026-12-01T17:30:00+08:00")
    if when.timestamp() < now:
        raise ScheduleError("at(...) is in the past")
    return when.timestamp()


def _rate(text: str, timeout: float) -> float:
    if not text.endswith(")"):
        raise ScheduleError("write rate(5m)")
    try:
        every = parse_duration(text[5:-1].strip())
    except (ValueError, TypeError):
        raise ScheduleError(f"{text[5:-1]!r} is not a duration like 90s, 5m, 2h, 1d") from None
    if not RATE_MIN <= every <= RATE_MAX:
        raise ScheduleError("a rate must be between 60s and 7d")
    if every <= timeout:
        raise ScheduleError(f"a rate must be longer than the timeout ({timeout:g}s)")
    return every


def cron(text: str, timeout: float, now: float) -> CronTrigger:
    tokens = text.split()
    tz: ZoneInfo | timezone = timezone.utc
    if len(tokens) in (7, 8) and not _YEAR.match(tokens[-1]):
        try:
            tz = ZoneInfo(tokens[-1])
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"{tokens[-1]!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        tokens = tokens[:-1]
    if len(tokens) not in (6, 7):
        raise ScheduleError("a cron takes 6 or 7 fields, seconds first: sec min hour day month weekday [year] [zone]")
    for name, tok in zip(("second", "minute", "hour", "day", "month", "day of week", "year"), tokens):
        if re.search(r"(?<!\d)00\d", tok):
            raise ScheduleError(f"{name} {tok!r}: at most one leading zero")
    sec, minute, hour, dom, month, dow = tokens[:6]
    year = tokens[6] if len(tokens) == 7 else "*"
    for name, tok in (("second", sec), ("minute", minute), ("hour", hour), ("year", year)):
        _plain(name, tok)
    month = ",".join(_month(p) for p in month.split(","))
    day, day_of_week = _days(dom, dow)
    try:
        trigger = CronTrigger(second=sec, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                              year=year, timezone=tz)
    except ValueError as e:
        raise ScheduleError(f"{text!r}: {e}") from None
    _check_gap(trigger, text, timeout, now)
    return trigger


def _plain(name: str, tok: str) -> None:
    for part in tok.split(","):
        if not _PLAIN.match(part):
            raise ScheduleError(f"{name} {part!r}: use numbers with * , - /")


def _month(part: str) -> str:
    names = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    for i, m in enumerate(names, 1):
        part = re.sub(rf"\b{m}\b", str(i), part.upper())
    _plain("month", part)
    return part


def _days(dom: str, dow: str) -> tuple[str, str]:
    """(day, day_of_week) for CronTrigger; `L`, `nL` and `n#k` move into its day field."""
    dom_free, dow_free = dom in ("?", "*"), dow in ("?", "*")
    if dom == "?" and dow == "?":  # "no specific value" in both says nothing about the day: Quartz refuses it too
        raise ScheduleError("? stands for one of day of month and day of week, not both: write * or a value in the other")
    if not dom_free and not dow_free:
        raise ScheduleError("set the day of month or the day of week, not both: write ? in the other")
    day = "*"
    if not dom_free:
        if "W" in dom.upper():
            raise ScheduleError(f"day {dom!r}: W (nearest weekday) cannot be honoured by this scheduler")
        parts = []
        for p in dom.split(","):
            if p.upper() == "L":
                parts.append("last")
            elif "L" in p.upper():
                raise ScheduleError(f"day {p!r}: only a bare L (last day of the month) is supported")
            else:
                _plain("day", p)
                parts.append(p)
        day = ",".join(parts)
    if dow_free:
        return day, "*"
    up = dow.upper()
    for i, name in enumerate(_DAYS, 1):
        up = re.sub(rf"\b{name}\b", str(i), up)
    if up == "L":
        return day, "6"  # a bare L in the day-of-week field is its last day, Sunday
    if "#" in up or "L" in up:
        positions = []
        for p in up.split(","):
            m = re.fullmatch(r"([1-7])(?:#([1-5])|L)", p)
            if not m:
                raise ScheduleError(f"day of week {p!r}: use n#k (k-th weekday n) or nL (last weekday n), not mixed")
            positions.append(f"{_NTH[m.group(2)] if m.group(2) else 'last'} {_DAYS[int(m.group(1)) - 1].lower()}")
        return ",".join(positions), "*"
    out = []
    for p in up.split(","):
        if not _PLAIN.match(p):
            raise ScheduleError(f"day of week {p!r}: use 1-7 or MON-SUN (1 = Monday) with * , - / ? L #")
        m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(/\d+)?", p)
        assert m is not None
        nums = [int(x) for x in (m.group(2), m.group(3)) if x]
        if any(not 1 <= x <= 7 for x in nums):
            raise ScheduleError(f"day of week {p!r}: days are 1-7 (1 = Monday)")
        if len(nums) == 2 and nums[0] > nums[1]:
            raise ScheduleError(f"day of week {p!r}: a range may not wrap past Sunday; split it (e.g. 6-7,1)")
        head = "*" if m.group(1) == "*" else "-".join(str(x - 1) for x in nums)
        out.append(head + (m.group(4) or ""))
    return day, ",".join(out)


def _check_gap(trigger: CronTrigger, text: str, timeout: float, now: float) -> None:
    """Seed 001: the shortest gap must be at least the timeout and at least 10 s; checked on the
    next 64 runs, which catches every sub-minute pattern and the common minute ones."""
    t = datetime.fromtimestamp(now, timezone.utc)
    fires = []
    for _ in range(64):
        t = trigger.get_next_fire_time(None, t)
        if t is None:
            break
        fires.append(t.timestamp())
        t = datetime.fromtimestamp(t.timestamp() + 1, timezone.utc)
    if not fires:
        raise ScheduleError(f"{text!r} never runs again")
    gaps = [b - a for a, b in zip(fires, fires[1:])]
    if gaps and min(gaps) < max(CRON_MIN_GAP, timeout):
        raise ScheduleError(f"{text!r} runs {min(gaps):g}s apart; the gap must be at least the timeout "
                            f"({timeout:g}s) and at least {CRON_MIN_GAP}s")
