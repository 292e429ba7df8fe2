"""Value types of the store: levels, retention, maintenance report, errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from diag.settings.defaults import RETENTION

RAW = 0
# Roll-up levels by resolution in seconds. Each level's rows live in blocks of
# BLOCK[level] seconds (one blob per series per block), so a 31-day query at 1 h reads
# two blobs per series instead of 744 rows.
LEVELS: tuple[int, ...] = (60, 300, 3600, 86400)
BLOCK: dict[int, int] = {60: 86400, 300: 7 * 86400, 3600: 30 * 86400, 86400: 360 * 86400}
AGGS = ("avg", "min", "max", "sum", "count", "last")


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each level is kept, in seconds (spec: raw 48 h; 1m/5m/1h 31 d; 1d 180 d)."""

    raw: float = RETENTION["raw"]
    m1: float = RETENTION["m1"]
    m5: float = RETENTION["m5"]
    h1: float = RETENTION["h1"]
    d1: float = RETENTION["d1"]

    def for_level(self, level: int) -> float:
        return {RAW: self.raw, 60: self.m1, 300: self.m5, 3600: self.h1, 86400: self.d1}[level]


@dataclass(slots=True)
class Deletion:
    """One thing maintenance removed: `reason` is `retention` or `size_cap`."""

    reason: str
    level: int  # 0 = raw chunks, else the roll-up resolution in seconds
    before: float  # everything of this level older than this ts is gone
    rows: int
    points: int
    bytes: int


@dataclass(slots=True)
class MaintenanceReport:
    """What one `maintain(now)` did; the caller turns `size_cap` deletions into events."""

    now: float
    compacted_batches: int = 0
    compacted_points: int = 0
    chunks_written: int = 0
    rollup_blocks_written: int = 0
    deletions: list[Deletion] = field(default_factory=list)
    disk_full: bool = False  # compaction could not be written; the head keeps its data
    size_before: int = 0
    size_after: int = 0
    seconds: float = 0.0

    @property
    def size_cap_hit(self) -> bool:
        return any(d.reason == "size_cap" for d in self.deletions)


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreFullError(StoreError):
    """The disk (or the database's page limit) is full: the write was not stored.

    The store stays usable: reads work, and writes succeed again once space is freed.
    HTTP maps this to 507 Insufficient Storage.
    """

    http_status = 507


class StoreClosedError(StoreError):
    """A write or query after `close()`."""
