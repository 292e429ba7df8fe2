"""The system log of each instance: the kernel lines it printed, kept for reading later
(Alibaba's GetInstanceConsoleOutput; `GET /api/v1/instances/{id}/kernel-log`).

Lines come from the server's own kernel-log collector and from agents' batches. They are
rows in diag.db beside the events they explain, not in the metric store: that one holds
numbers only, and with `--store-url` it is an outside engine, while the kernel log must be
kept either way. diag.db's writes go through its one write lock, one transaction each.

Bounded two ways: at most `max_lines` per instance (the newest stay; the excess of an
instance is deleted in the transaction that added it, so the bound holds at every commit)
and none older than `keep` seconds (deleted by maintenance with the other retention).
"""

from __future__ import annotations

from collections.abc import Iterable

from diag.db import Database
from diag.model import KernelLine

# Syslog severities, as `dmesg --level` and `journalctl -p` name them.
LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
DEFAULT_MAX_LINES = 5000
DEFAULT_KEEP = 7 * 86400.0
MAX_LIMIT = 5000


def parse_level(value: str) -> int:
    """A severity by name (`err`, also `error`, `warn`, `panic`) or number 0-7, exactly
    (the OpenAPI document lists these; anything else is refused, not guessed at)."""
    v = {"error": "err", "warn": "warning", "panic": "emerg"}.get(value, value)
    if v in LEVEL_NAMES:
        return LEVEL_NAMES.index(v)
    if len(v) == 1 and v in "01234567":
        return int(v)
    raise ValueError(f"must be a syslog severity: {', '.join(LEVEL_NAMES)} or 0-7")


class KernelLog:
    def __init__(self, db: Database, max_lines: int = DEFAULT_MAX_LINES, keep: float = DEFAULT_KEEP) -> None:
        self.db = db
        self.max_lines = int(max_lines)
        self.keep = float(keep)

    def add(self, instance_id: str, lines: Iterable[KernelLine]) -> int:
        """Store the lines (those already kept are skipped); returns how many were new."""
        rows = [(instance_id, float(ln.ts), int(ln.seq), int(ln.level), ln.message) for ln in lines]
        if not rows:
            return 0
        with self.db.write() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO kernel_lines VALUES (?, ?, ?, ?, ?)", rows)
            added = c.total_changes - before
            if added:
                # The oldest beyond the bound go; the primary key's order makes this an index walk.
                c.execute(
                    "DELETE FROM kernel_lines WHERE instance_id = ? AND (ts, seq) <= "
                    "(SELECT ts, seq FROM kernel_lines WHERE instance_id = ? ORDER BY ts DESC, seq DESC "
                    "LIMIT 1 OFFSET ?)", (instance_id, instance_id, self.max_lines))
        return added

    def lines(self, instance_id: str, *, since: float | None = None, until: float | None = None,
              max_level: int = 7, limit: int = 1000) -> tuple[list[dict], bool]:
        """Lines in [since, until] at `max_level` or more severe, oldest first: the newest
        `limit` of them, and whether older ones matched beyond it."""
        sql = "SELECT ts, seq, level, message FROM kernel_lines WHERE instance_id = ? AND level <= ?"
        args: list = [instance_id, max_level]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts <= ?"
            args.append(until)
        rows = self.db.read(sql + " ORDER BY ts DESC, seq DESC LIMIT ?", (*args, limit + 1))
        more = len(rows) > limit
        out = [{"ts": r["ts"], "seq": r["seq"], "priority": r["level"], "level": LEVEL_NAMES[r["level"]],
                "message": r["message"]} for r in reversed(rows[:limit])]
        return out, more

    def expire(self, now: float) -> int:
        with self.db.write() as c:
            return c.execute("DELETE FROM kernel_lines WHERE ts < ?", (now - self.keep,)).rowcount
