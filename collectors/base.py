"""What every collector shares: the protocol, counter-to-rate tracking, file reading."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from diag.model import Batch


class Collector(Protocol):
    name: str

    def collect(self, now: float) -> Batch: ...


class Rates:
    """Turns monotonic kernel counters into rates and per-interval deltas.

    Keeps the previous reading per key. The first reading gives no value, and a counter
    that goes backwards (reboot, wrap, device re-created) starts a new baseline instead
    of giving a negative number.
    """

    __slots__ = ("_prev",)

    def __init__(self) -> None:
        self._prev: dict[object, tuple[float, float]] = {}

    def delta(self, key: object, value: float, now: float) -> float | None:
        prev = self._prev.get(key)
        self._prev[key] = (value, now)
        if prev is None or value < prev[0] or now <= prev[1]:
            return None
        return value - prev[0]

    def rate(self, key: object, value: float, now: float) -> float | None:
        prev = self._prev.get(key)
        d = self.delta(key, value, now)
        if d is None or prev is None:
            return None
        return d / (now - prev[1])

    def elapsed(self, key: object, now: float) -> float | None:
        """Seconds since `key` was last read (before this cycle's update)."""
        prev = self._prev.get(key)
        return None if prev is None else now - prev[1]


def read_text(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def read_int(path: Path) -> int | None:
    """An integer file such as /sys/class/net/eth0/speed; None when absent or unreadable."""
    try:
        return int(read_text(path).strip())
    except (OSError, ValueError):
        return None


def read_key_values(path: Path) -> dict[str, float]:
    """`key value [unit]` lines (meminfo, vmstat) as {key: value}; a trailing ':' dropped."""
    out: dict[str, float] = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0].rstrip(":")] = float(parts[1])
            except ValueError:
                continue
    return out


def read_header_pairs(path: Path) -> dict[str, float]:
    """/proc/net/snmp and /proc/net/netstat: header line then value line per prefix.

    Returns `Prefix.Field` keys, the names the kernel and nstat use (TcpExt.ListenOverflows).
    """
    out: dict[str, float] = {}
    lines = read_text(path).splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        hp, hv = head.split(), vals.split()
        if not hp or not hv or hp[0] != hv[0]:
            continue
        prefix = hp[0].rstrip(":")
        for k, v in zip(hp[1:], hv[1:]):
            try:
                out[f"{prefix}.{k}"] = float(v)
            except ValueError:
                continue
    return out
