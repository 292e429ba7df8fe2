"""Kernel log: faults found in /dev/kmsg (hung tasks, lockups, OOM kills, I/O errors...).

Reads kmsg records (`prio,seq,usec,flags;message`), groups each report (a first line and
the call trace, register dump or memory report after it) and turns the first line of
each report into a finding, by the catalogue in `collectors/kernel_patterns.py`. Within
one cycle, repeats of one fault fold into one `Signal` with a count; across cycles that
is the event log's work.

The position (boot id + last sequence number) is kept in `state_dir/kmsg.json`, so a
restart of the service neither repeats nor skips a record. A panic kept in pstore from
the previous boot is reported once (see `collectors/pstore.py`).

Operators' rules for the kernel log (config `log_patterns` with `source: kernel`) see the
records the catalogue does not know, from any facility: an operator who names a line wants
it, whoever wrote it. Their permanent conditions are kept in the same state file, per boot.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import deque
from pathlib import Path

from collectors.base import StateFile, read_text
from collectors.kernel_patterns import KINDS, SIGNAL_KINDS, SUPPRESSED, classify
from collectors.log_files import KERNEL, RuleMatcher
from collectors.pstore import find_pstore_panics
from collectors.roots import Roots
from collectors.state import read_btime
from collectors.settings import CollectorSettings
from diag.model import Batch, KernelLine, Signal

log = logging.getLogger(__name__)

STATE_FILE = "kmsg.json"
# Lines of a report kept as a finding's evidence (context lines are kept beyond it).
MAX_LINES = 30
# A report's lines are printed within milliseconds; a record later than this after the
# previous one of the report (or from another facility, such as a user-space write) ends it.
REPORT_GAP_US = 1_000_000
# Kernel lines handed on per cycle (to the server's kernel-log store, or an agent's batch,
# which must stay within the ingest bound); more wait for the next cycles, so the boot's
# lines of a first read of the whole ring buffer still arrive. Beyond MAX_BACKLOG waiting
# (a driver printing thousands a second) the oldest go: the store keeps the newest anyway.
# Lines still waiting when the process stops are not read again (the position is past them).
MAX_LINES_PER_CYCLE = 1000
MAX_BACKLOG = 10_000
# /dev/kmsg returns one record per read(); EINVAL if the buffer is smaller than the record.
READ_SIZE = 16384

Record = tuple[int, int, int, str]  # (syslog priority, sequence number, monotonic µs, message)


def parse_record(text: str) -> Record | None:
    """`prio,seq,usec,flags[,...];message`; None for a line that is not a record."""
    head, sep, msg = text.partition(";")
    if not sep:
        return None
    fields = head.split(",", 3)
    try:
        return int(fields[0]), int(fields[1]), int(fields[2]), msg
    except (ValueError, IndexError):
        return None


class _Report:
    """One kernel report being assembled: its first line, labels and evidence lines."""

    __slots__ = ("kind", "facility", "last_usec", "labels", "lines", "finding", "usec", "seq", "prio", "message")

    def __init__(self, kind: str, rec: Record, labels: dict[str, str], finding: bool) -> None:
        self.kind = kind
        self.prio, self.seq, self.usec, self.message = rec
        self.facility = self.prio >> 3
        self.last_usec = self.usec
        self.labels = labels
        self.lines: list[str] = []
        self.finding = finding


class ReportAssembler:
    """Feeds records in order; returns each new finding. Keeps the open report across
    calls, so a report split over two cycles is still one report."""

    def __init__(self, user_records: bool = False) -> None:
        self.open: _Report | None = None
        # Records written from user space (`echo > /dev/kmsg`) never carry the kernel
        # facility (the kernel rewrites facility 0 to LOG_USER), so by default they are no
        # finding: a kernel fault is what the kernel said, not a script imitating it.
        self.user_records = user_records
        # Kernel lines that the kernel's own rate limits dropped, as its notices counted them.
        self.suppressed = 0

    def feed(self, rec: Record) -> _Report | None:
        prio, _seq, usec, msg = rec
        cur = self.open
        if prio >> 3 == 0 and (m := SUPPRESSED.match(msg)):
            self.suppressed += int(m["count"])
            return None
        continues = (cur is not None and prio >> 3 == cur.facility and 0 <= usec - cur.last_usec <= REPORT_GAP_US
                     and KINDS[cur.kind].traced)
        hit = classify(msg) if prio >> 3 == 0 or self.user_records else None
        if hit is not None:
            pat, labels = hit
            same = continues and cur is not None and cur.kind == pat.kind
            if pat.role == "finding" or (pat.role == "follow" and not same):
                rep = _Report(pat.kind, rec, labels, True)
                if same and cur is not None and not cur.finding:
                    # The header opened this report: its lines and labels are the finding's context.
                    rep.lines, rep.labels = cur.lines, {**cur.labels, **labels}
                self.open = rep
                return rep
            if pat.role == "header":
                self.open = _Report(pat.kind, rec, labels, False)
                self.open.lines.append(msg)
                return None
            if pat.role == "context" and same and cur is not None:
                for k, v in labels.items():
                    cur.labels.setdefault(k, v)
                cur.lines.append(msg)
                cur.last_usec = usec
                return None
        if continues and cur is not None:
            if len(cur.lines) < MAX_LINES:
                cur.lines.append(msg)
            cur.last_usec = usec
        else:
            self.open = None
        return None


class _DeviceReader:
    """The real /dev/kmsg: one fd kept open, one record per non-blocking read()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.overruns = 0

    def read(self) -> list[Record]:
        out: list[Record] = []
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return out
            except BrokenPipeError:
                # Records were overwritten before we read them; the next read gives the
                # oldest one left. The gap in sequence numbers says how many were lost.
                self.overruns += 1
                continue
            if not data:
                return out
            # Only the first line is the record; ` KEY=value` dictionary lines follow it.
            end = data.find(b"\n")
            rec = parse_record(data[: end if end >= 0 else len(data)].decode("utf-8", "replace"))
            if rec is not None:
                out.append(rec)

    def close(self) -> None:
        os.close(self.fd)


class _FileReader:
    """A file in kmsg format (a fixture, or a saved copy): new lines since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.overruns = 0

    def read(self) -> list[Record]:
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < self.offset:
                self.offset = 0  # replaced or truncated: start over; seq numbers skip what was seen
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        out: list[Record] = []
        for line in data[:end].decode("utf-8", "replace").split("\n"):
            if line and line[0] != " ":  # a leading space marks a dictionary line
                rec = parse_record(line)
                if rec is not None:
                    out.append(rec)
        return out

    def close(self) -> None:
        pass


def _read_boot_id(proc: Path) -> str | None:
    try:
        return read_text(proc / "sys" / "kernel" / "random" / "boot_id").strip() or None
    except OSError:
        return None


class KernelLogCollector:
    name = "kernel_log"
    sources = ('/dev/kmsg', '/sys/fs/pstore')

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.roots = roots
        self._state = StateFile(settings.state_dir / STATE_FILE if settings.state_dir else None,
                                "kernel-log position", log)
        self._reader: _DeviceReader | _FileReader | None = None
        self._assembler = ReportAssembler(settings.kmsg_user_records)
        self._totals = dict.fromkeys(SIGNAL_KINDS, 0)
        self._btime = 0
        self._boot_id: str | None = None
        # The last record read in this boot (by this process or, from the state file, before
        # a restart); records up to it are skipped, also when a kmsg file is re-read.
        self._last_seq: int | None = None
        self._pstore_seen: list[str] = []
        self._pstore_done = False
        # Records overwritten before they were read (sequence gaps on the device).
        self.lost = 0
        rules = [r for r in settings.log_rules if r.source == KERNEL]
        self._user = RuleMatcher(rules) if rules else None
        self._user_pending: list[Signal] = []
        self._lines: deque[KernelLine] = deque(maxlen=MAX_BACKLOG)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __del__(self) -> None:
        try:
            if getattr(self, "_reader", None) is not None:
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def collect(self, now: float) -> Batch:
        if self._reader is None:
            self._start()
        reader = self._reader
        assert reader is not None
        batch = Batch(ts=now)
        counts = dict.fromkeys(SIGNAL_KINDS, 0)

        if self._user_pending:
            batch.signals += self._user_pending
            self._user_pending = []
        records = reader.read()
        if records:
            self._process(records, reader, counts, batch)
        if self._user is not None:
            self._user.gauges(batch)
        if not self._pstore_done:
            self._pstore_done = True
            self._check_pstore(counts, batch)
        backlog = self._lines
        for _ in range(min(len(backlog), MAX_LINES_PER_CYCLE)):
            batch.kernel_lines.append(backlog.popleft())

        for kind in SIGNAL_KINDS:
            n = counts[kind]
            self._totals[kind] += n
            batch.add("kernel_signals", n, kind=kind)
            batch.add_total("kernel_signals_total", self._totals[kind], kind=kind)
        batch.add_total("kernel_log_lost_total", self.lost)
        batch.add_total("kernel_log_suppressed_total", self._assembler.suppressed)
        return batch

    def _start(self) -> None:
        self._btime = read_btime(self.roots.proc)
        self._boot_id = _read_boot_id(self.roots.proc)
        state = self._load()
        seq = state.get("seq")
        if self._boot_id is not None and state.get("boot_id") == self._boot_id and isinstance(seq, int):
            self._last_seq = seq
        self._pstore_seen = [str(k) for k in state.get("pstore", [])]
        if self._user is not None:
            held = state.get("held")
            if isinstance(held, dict) and held:
                self._user = RuleMatcher(self._user.rules, held)
                if self._boot_id is None or state.get("boot_id") != self._boot_id:
                    self._user_pending = self._user.reboot(time.time())
        fd = os.open(self.roots.kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if stat.S_ISCHR(os.fstat(fd).st_mode):
            self._reader = _DeviceReader(fd)
        else:
            os.close(fd)
            self._reader = _FileReader(self.roots.kmsg)

    def _process(self, records: list[Record], reader: _DeviceReader | _FileReader, counts: dict[str, int], batch: Batch) -> None:
        folds: dict[tuple[str, ...], list] = {}  # fold key -> [first report, count]
        device = isinstance(reader, _DeviceReader)
        last = self._last_seq
        user: list[tuple[float, str, dict[str, str]]] = []
        lines = self._lines
        for rec in records:
            seq = rec[1]
            if last is not None:
                if seq <= last:
                    continue
                if device and seq > last + 1:
                    self.lost += seq - last - 1
            last = seq
            lines.append(KernelLine(self._btime + rec[2] / 1e6, rec[0] & 7, seq, rec[3]))
            rep = self._assembler.feed(rec)
            if rep is None:
                # Appended after the catalogue: a line it knows is never an operator's too.
                if self._user is not None and classify(rec[3]) is None:
                    user.append((self._btime + rec[2] / 1e6, rec[3], {"seq": str(seq), "priority": str(rec[0] & 7)}))
                continue
            counts[rep.kind] += 1
            labels = rep.labels
            key = (rep.kind, *(labels.get(k, "") for k in KINDS[rep.kind].fold))
            entry = folds.get(key)
            if entry is None:
                folds[key] = [rep, 1]
            else:
                entry[1] += 1
        for rep, n in folds.values():
            labels = dict(rep.labels)
            labels["seq"] = str(rep.seq)
            labels["priority"] = str(rep.prio & 7)
            ts = self._btime + rep.usec / 1e6
            batch.signals.append(Signal(ts, rep.kind, rep.message, labels, n, tuple(rep.lines)))
        if user and self._user is not None:
            # Conditions set or cleared here are saved with the position just below.
            batch.signals += self._user.match(user)
        if last is not None and last != self._last_seq:
            self._last_seq = last
            self._save()

    def _check_pstore(self, counts: dict[str, int], batch: Batch) -> None:
        found = find_pstore_panics(self.roots.pstore, set(self._pstore_seen))
        if found is None:
            return
        signals, remember, present = found
        for sig in signals:
            batch.signals.append(sig)
            counts[sig.kind] += 1
        # Forget files that are gone (systemd-pstore archives them), keep the rest.
        seen = [k for k in self._pstore_seen if k in present] + remember
        if seen != self._pstore_seen:
            self._pstore_seen = seen
            self._save()

    def _load(self) -> dict:
        return self._state.load("reading the whole buffer")

    def _save(self) -> None:
        data = {"boot_id": self._boot_id, "seq": self._last_seq, "pstore": self._pstore_seen}
        if self._user is not None:
            data["held"] = self._user.held
        self._state.save(data)
