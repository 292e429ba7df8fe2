"""Operators' own log rules (config `log_patterns`) over plain log files and the journal.

A rule is data (see `UserRule` in collectors/kernel_patterns.py): a regex, an event type
`Custom.<name>`, a level, temporary or permanent. This module tails the files and the
journal the rules name; the kernel-log collector applies the rules whose source is the
kernel log with the same `RuleMatcher`.

Files are tailed like `tail -F`: from the end when first seen at start (what was written
before the service ran is history, not news), from the saved position (device, inode,
offset in `state_dir/logfiles.json`) after a restart, from the start of a file that
appears later or replaces a rotated one. At most MAX_BYTES a file per cycle: a burst waits
for the next cycle instead of stretching this one. Lines are stamped with the collection
time: syslog's own timestamps have no year and no zone to trust.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from collectors.base import StateFile, read_text
from collectors.kernel_patterns import CUSTOM, INFO, UserRule
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch, Signal

log = logging.getLogger(__name__)

STATE_FILE = "logfiles.json"
KERNEL, JOURNAL = "kernel", "journal"
MAX_BYTES = 1 << 20  # per file (and from the journal) per cycle
MAX_LINE = 16384  # a longer line is cut there: a runaway writer cannot grow the buffer
MAX_EVIDENCE = 10  # matched lines kept on one folded signal
# journalctl is another process: a stalled journald must not stall the cycle.
JOURNAL_DEADLINE = 2.0
CONDITION_METRIC = "log_condition"


class RuleMatcher:
    """The rules of one source, and which permanent conditions hold now.

    Signals are folded per (rule, set/cleared) within one call, like repeats of a kernel
    fault within a cycle: a thousand matching lines are one signal with a count.
    """

    def __init__(self, rules: Sequence[UserRule], held: dict[str, float] | None = None) -> None:
        self.rules = tuple(rules)
        self.permanent = tuple(r for r in self.rules if r.permanent)
        self.held: dict[str, float] = {r.name: float(t) for r in self.permanent
                                       for n, t in (held or {}).items() if n == r.name}

    def match(self, items: Iterable[tuple[float, str, dict[str, str]]]) -> list[Signal]:
        folded: dict[tuple[str, str], list] = {}  # (rule, condition) -> [signal fields, count, lines]
        for ts, line, extra in items:
            for r in self.rules:
                if r.permanent and r.name in self.held:
                    # While held, a repeat says nothing new; only its clear line ends it.
                    if r.clear is not None and r.clear.search(line):
                        del self.held[r.name]
                        self._add(folded, r, "cleared", ts, line, extra, {})
                    continue
                m = r.regex.search(line)
                if m is None:
                    continue
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                if r.permanent:
                    self.held[r.name] = ts
                self._add(folded, r, "set" if r.permanent else "", ts, line, extra, groups)
        return [Signal(ts, CUSTOM, line, labels, n, tuple(lines)) for (ts, line, labels), n, lines in folded.values()]

    @staticmethod
    def _add(folded: dict, r: UserRule, condition: str, ts: float, line: str, extra: dict[str, str],
             groups: dict[str, str]) -> None:
        entry = folded.get((r.name, condition))
        if entry is not None:
            entry[1] += 1
            if len(entry[2]) < MAX_EVIDENCE:
                entry[2].append(line)
            return
        labels = {**groups, **extra, "type": r.event, "rule": r.name, "source": r.source,
                  "level": INFO if condition == "cleared" else r.level}
        if condition:
            labels["condition"] = condition
        folded[(r.name, condition)] = [(ts, line, labels), 1, [line]]

    def reboot(self, ts: float) -> list[Signal]:
        """A new boot ends every condition: the state a line described did not survive it."""
        out = [Signal(ts, CUSTOM, f"{r.event} cleared by a reboot",
                      {"type": r.event, "rule": r.name, "source": r.source, "level": INFO, "condition": "cleared"})
               for r in self.permanent if r.name in self.held]
        self.held.clear()
        return out

    def gauges(self, batch: Batch) -> None:
        for r in self.permanent:
            batch.add(CONDITION_METRIC, 1 if r.name in self.held else 0, rule=r.name)


def boot_id(proc: Path) -> str | None:
    try:
        return read_text(proc / "sys" / "kernel" / "random" / "boot_id").strip() or None
    except OSError:
        return None


class _Tail:
    """One log file, followed across rotation (rename + new file) and truncation."""

    def __init__(self, path: Path, saved: dict | None) -> None:
        self.path = path
        self.fd: int | None = None
        self.ident: tuple[int, int] | None = None
        self.offset = 0  # bytes of the open file consumed (into lines or `buf`)
        self.buf = b""
        self.missing = False
        self.refused = False
        # Where to start the first open: the saved place, else the end (history is not news).
        self._saved = saved
        self._first = True

    def position(self) -> dict | None:
        if self.ident is None:
            return None
        # The start of a line not yet complete: a restart reads it whole.
        return {"dev": self.ident[0], "ino": self.ident[1], "offset": self.offset - len(self.buf)}

    def read(self) -> list[str]:
        try:
            st = os.stat(self.path)
        except OSError as e:
            st = None
            if not self.missing:
                self.missing = True
                log.warning("log file %s is not readable (%s): its rules wait for it (logged once)",
                            self.path, e.strerror)
        lines: list[str] = []
        budget = MAX_BYTES
        if self.fd is not None:
            replaced = st is None or (st.st_dev, st.st_ino) != self.ident
            if not replaced and os.fstat(self.fd).st_size < self.offset:
                # Truncated in place (copytruncate, `> file`): what it holds now is new.
                self.offset, self.buf = 0, b""
            got, eof = self._drain(budget)
            lines += got
            budget -= sum(len(x) + 1 for x in got)
            if not (replaced and eof):
                return lines
            # Rotated and the old file read to its end: its last unterminated line is complete.
            if self.buf:
                lines.append(self.buf.decode("utf-8", "replace"))
            self._close()
        if st is None:
            # Created after the service started: all of it will be news.
            self._first = False
            return lines
        if self.missing:
            self.missing = False
            log.info("log file %s is readable again", self.path)
        if not self._open(st):
            return lines
        got, _ = self._drain(budget)
        return lines + got

    def _open(self, st: os.stat_result) -> bool:
        try:
            # O_NONBLOCK: a FIFO named by mistake must not hang the open; it is refused below.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if not self.missing:
                self.missing = True
                log.warning("log file %s cannot be opened (%s): its rules wait for it (logged once)",
                            self.path, e.strerror)
            return False
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            if not self.refused:
                self.refused = True
                log.warning("log file %s is not a regular file: not read (logged once)", self.path)
            return False
        self.fd, self.ident, self.buf = fd, (fst.st_dev, fst.st_ino), b""
        saved, first = self._saved, self._first
        self._saved, self._first = None, False
        if saved and (saved.get("dev"), saved.get("ino")) == self.ident and 0 <= saved.get("offset", -1) <= fst.st_size:
            self.offset = int(saved["offset"])
        elif first and not saved:
            self.offset = fst.st_size
        else:
            # Appeared after start, replaced while the service was down, or truncated below the
            # saved place: every line in it is one the service has not read.
            self.offset = 0
        return True

    def _drain(self, budget: int) -> tuple[list[str], bool]:
        """Complete lines from the open file, at most `budget` bytes; (lines, reached its end)."""
        assert self.fd is not None
        data = b""
        while budget > 0:
            chunk = os.pread(self.fd, min(budget, 65536), self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            budget -= len(chunk)
            data += chunk
        eof = budget > 0
        data = self.buf + data
        end = data.rfind(b"\n") + 1
        self.buf = data[end:]
        raw = data[:end].split(b"\n")[:-1] if end else []
        if len(self.buf) > MAX_LINE:
            raw.append(self.buf[:MAX_LINE])
            self.buf = b""  # the rest of the runaway line is dropped with it
        return [r[:MAX_LINE].decode("utf-8", "replace") for r in raw], eof

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.ident, self.offset, self.buf = None, None, 0, b""

    def close(self) -> None:
        self._close()


class _Journal:
    """systemd's journal through `journalctl -o json`, one bounded run a cycle.

    Each run starts after the cursor of the last entry read (kept across restarts), or at
    the service's start time the first time. A run that outlasts JOURNAL_DEADLINE or
    MAX_BYTES is killed; what it had not printed is read by the next run, after the cursor.
    """

    def __init__(self, journalctl: str, cursor: str | None, since: float) -> None:
        self.journalctl = journalctl
        self.cursor = cursor
        self.since = since
        self.failed = False
        self._zombies: list[subprocess.Popen] = []

    def read(self) -> list[tuple[float, str, dict[str, str]]]:
        args = [self.journalctl, "-o", "json", "--no-pager", "-q"]
        args += ["--after-cursor", self.cursor] if self.cursor else ["--since", f"@{int(self.since)}"]
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, close_fds=True)
        except OSError as e:
            self._fail(str(e))
            return []
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + JOURNAL_DEADLINE
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            for f in (proc.stdout, proc.stderr):
                os.set_blocking(f.fileno(), False)
                sel.register(f, selectors.EVENT_READ)
            while sel.get_map() and len(out) < MAX_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(left):
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        out += chunk
                    elif len(err) < 4096:
                        err += chunk
        done = proc.poll() is not None or not sel.get_map()
        self._reap(proc)
        rc = proc.returncode
        if done and rc not in (0, None) and not out:
            self._fail(f"exit {rc}: {err.decode(errors='replace').strip()[:300]}")
        items = []
        for raw in bytes(out).split(b"\n")[:-1] if b"\n" in out else []:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            msg = entry.get("MESSAGE")
            if isinstance(msg, list):  # journald's JSON gives non-UTF-8 messages as byte arrays
                msg = bytes(b for b in msg if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
            cursor = entry.get("__CURSOR")
            if isinstance(cursor, str):
                self.cursor = cursor
            if not isinstance(msg, str):
                continue
            try:
                ts = int(entry.get("__REALTIME_TIMESTAMP")) / 1e6
            except (TypeError, ValueError):
                ts = time.time()
            extra = {k: str(entry[f])[:200] for k, f in (("unit", "_SYSTEMD_UNIT"), ("identifier", "SYSLOG_IDENTIFIER"))
                     if isinstance(entry.get(f), str)}
            items.append((ts, msg[:MAX_LINE], extra))
        if items and self.failed:
            self.failed = False
        return items

    def _fail(self, why: str) -> None:
        if not self.failed:
            log.warning("journalctl failed (%s): journal rules see nothing until it works (logged once)", why)
        self.failed = True

    def _reap(self, proc: subprocess.Popen) -> None:
        for p in (proc, *self._zombies):
            if p.poll() is None:
                p.kill()
        self._zombies = []
        for p in (proc,):
            try:
                p.wait(0.2)
            except subprocess.TimeoutExpired:
                # Killed but not gone (stuck in the kernel): reaped by a later cycle, never waited on.
                self._zombies.append(p)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


class LogFilesCollector:
    """The rules whose source is a file or the journal; nothing to do without them."""

    name = "log_files"
    sources = ('files named by `log_patterns`', '`journalctl -o json` (one bounded run a cycle)')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._state = StateFile(settings.state_dir / STATE_FILE if settings.state_dir else None,
                                "log-file positions", log)
        rules = [r for r in settings.log_rules if r.source != KERNEL]
        by_source: dict[str, list[UserRule]] = {}
        for r in rules:
            by_source.setdefault(r.source, []).append(r)
        self._rules = by_source
        self._started = False
        self._tails: dict[str, _Tail] = {}
        self._journal: _Journal | None = None
        self._matchers: dict[str, RuleMatcher] = {}
        self._boot_id: str | None = None

    def _start(self, now: float) -> list[Signal]:
        self._started = True
        state = self._load()
        boot = boot_id(self.roots.proc)
        same_boot = boot is not None and state.get("boot_id") == boot
        self._boot_id = boot
        held = state.get("held", {}) if isinstance(state.get("held"), dict) else {}
        files = state.get("files", {}) if isinstance(state.get("files"), dict) else {}
        out: list[Signal] = []
        for source, rules in self._rules.items():
            matcher = RuleMatcher(rules, held.get(source))
            if not same_boot and state:
                out += matcher.reboot(now)
            self._matchers[source] = matcher
            if source == JOURNAL:
                exe = shutil.which("journalctl")
                if exe is None:
                    log.warning("journal rules (%s) skipped: journalctl is not installed (logged once)",
                                ", ".join(r.name for r in rules))
                    continue
                # A cursor names one entry of the journal for good, across boots too.
                cursor = state.get("journal_cursor")
                self._journal = _Journal(exe, cursor if isinstance(cursor, str) else None, now)
            else:
                saved = files.get(source)
                self._tails[source] = _Tail(self._file(source), saved if isinstance(saved, dict) else None)
        return out

    def _file(self, source: str) -> Path:
        p = Path(source)
        return self.roots.root / p.relative_to("/") if p.is_absolute() else self.roots.root / p

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        if not self._rules:
            return batch
        if not self._started:
            batch.signals += self._start(now)
        for source, tail in self._tails.items():
            lines = tail.read()
            if lines:
                batch.signals += self._matchers[source].match((now, line, {}) for line in lines)
        if self._journal is not None:
            items = self._journal.read()
            if items:
                batch.signals += self._matchers[JOURNAL].match(items)
        for m in self._matchers.values():
            m.gauges(batch)
        self._save()
        return batch

    def close(self) -> None:
        for t in self._tails.values():
            t.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _load(self) -> dict:
        return self._state.load("files are read from their end")

    def _save(self) -> None:
        self._state.save({
            "boot_id": self._boot_id,
            "files": {s: p for s, t in self._tails.items() if (p := t.position()) is not None},
            "held": {s: m.held for s, m in self._matchers.items() if m.held},
            "journal_cursor": self._journal.cursor if self._journal is not None else None})
