"""The textfile convention: `*.prom` files in one directory (config `textfile_dir`),
in node_exporter's textfile collector format, become series of this instance.

The producer's side of the contract, as with node_exporter: write the file elsewhere in
the same filesystem (a name not ending in `.prom`, e.g. `name.prom.$$`) and rename it
into place. A rename swaps the inode whole, so the file this collector opens is either
the old version or the new one, never half of one; the collector reads the inode it
opened to its end, so a rename during the read cannot mix the two. A producer that
writes in place can still be caught mid-write: a file whose text does not end in a
newline is taken for such a half-written file and refused as an error.

Rules, node_exporter's where it has them:
- only regular files whose name ends in `.prom`; anything else in the directory is ignored;
- client-side timestamps are not supported: a file with one is an error;
- one series in two files (or twice in one) is an error: the first file, by name, keeps it;
- `textfile_scrape_error{file}` is 1 for a file that could not be used this cycle, and
  `textfile_mtime_seconds{file}` the modification time of the version whose values are stored.

Unlike node_exporter, a file that turns bad (a syntax error, a timestamp, over its cap)
keeps the series of its last good version: a producer's bug then shows as the error
metric, not as gaps in every chart and a policy gone silent. Each file's error is logged
once while it lasts.

Bounded: at most `textfile_max_series_per_file` series from a file and
`textfile_max_series` in all; beyond either the rest are dropped, the file is flagged
and logged. A file larger than MAX_FILE_BYTES is not read at all.

Parsing is prometheus_client's text parser. It names a counter's samples the
OpenMetrics way, `<name>_total`, so `# TYPE jobs counter` + `jobs 3` is stored as
`jobs_total`; a name that is a metric of the catalogue is refused, since the service's
own series hold it.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag import catalogue
from diag.model import Batch, Sample

log = logging.getLogger(__name__)

SUFFIX = ".prom"
# A file is read whole into memory and parsed every time it changes: 4 MiB is ~50,000
# series of typical length, far past the default caps, and bounds one cycle's cost.
MAX_FILE_BYTES = 4 << 20
# Labels the service adds or uses itself (the /metrics instance label, the query API's
# parameters): a file's series may not carry them.
RESERVED_LABELS = frozenset({"instance_id", "metric", "start", "end", "step", "agg"})
# The ingest API's bounds (diag/web/validate.py): an agent pushes these series, and one
# series past them would have its whole batch refused by the server.
MAX_NAME = 200
MAX_LABELS = 32
MAX_LABEL_NAME = 100
MAX_LABEL_VALUE = 512
# Names of this collector's own series; a file may not use them either.
OWN = ("textfile_scrape_error", "textfile_mtime_seconds")

Key = tuple  # (metric, *sorted label items)


class TextfileError(ValueError):
    """Why one file could not be used, said so an operator can fix the file."""


# A file's problem: (kind, message). The kind goes to diag_collector_errors_total{kind}
# as `textfile:<kind>` (a few fixed values, never a file name); the message to the log.
Problem = tuple[str, str]


class _File:
    """What is known of one file: the identity of the version last read, and the
    series of its last good version (kept through later bad versions)."""

    __slots__ = ("seen", "good", "mtime", "error")

    def __init__(self) -> None:
        self.seen: tuple[int, int, int, int] | None = None  # (dev, ino, mtime_ns, size) last read
        # (key, metric, labels, value): the labels dict is built once per version and shared
        # by every cycle's Sample (nothing downstream mutates a sample's labels).
        self.good: list[tuple[Key, str, dict[str, str], float]] = []
        self.mtime: float | None = None  # of the good version; None: never read well
        self.error: Problem | None = None  # of the version last read, or None when it was good


def parse(text: str, max_series: int) -> list[tuple[Key, str, dict[str, str], float]]:
    """The series of one file's text, in file order; TextfileError names what is wrong.

    More than `max_series` is not an error here: the caller flags it, keeping the first
    `max_series`, so the parse stops there instead of reading the rest."""
    if text and not text.endswith("\n"):
        raise TextfileError("the last line has no newline: a file caught while being written? "
                            "write it under another name and rename it into place")
    types: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line[7:].split(" ", 1)[0]
            if name in types:
                raise TextfileError(f"second TYPE line for {name}")
            types.add(name)
    out: list[tuple[Key, str, dict[str, str], float]] = []
    seen: set[Key] = set()
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.timestamp is not None:
                    raise TextfileError(f"{s.name} has a timestamp; textfile metrics may not carry one "
                                        "(they take the time of the collection)")
                _check_names(s.name, s.labels)
                key = (s.name, *sorted(s.labels.items()))
                if key in seen:
                    raise TextfileError(f"{_show(key)} appears twice")
                seen.add(key)
                if not math.isfinite(s.value):
                    continue  # NaN and ±Inf are valid exposition but not storable values
                out.append((key, s.name, dict(s.labels), float(s.value)))
                if len(out) > max_series:
                    return out
    except TextfileError:
        raise
    except ValueError as e:  # the parser's own syntax errors
        raise TextfileError(f"syntax error: {e}") from None
    return out


def _check_names(name: str, labels: dict[str, str]) -> None:
    if name in catalogue.BY_NAME or name in OWN:
        raise TextfileError(f"{name} is a metric of the service itself; name yours otherwise")
    if len(name) > MAX_NAME:
        raise TextfileError(f"{name[:40]}...: a metric name is at most {MAX_NAME} characters")
    if len(labels) > MAX_LABELS:
        raise TextfileError(f"{name}: more than {MAX_LABELS} labels")
    for k, v in labels.items():
        if k in RESERVED_LABELS:
            raise TextfileError(f"{name}: the label {k!r} is reserved by the service")
        if len(k) > MAX_LABEL_NAME:
            raise TextfileError(f"{name}: a label name is at most {MAX_LABEL_NAME} characters")
        if len(v) > MAX_LABEL_VALUE:
            raise TextfileError(f"{name}: the value of label {k!r} is longer than {MAX_LABEL_VALUE} characters")


def _show(key: Key) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in key[1:])
    return f"{key[0]}{{{labels}}}" if labels else key[0]


class TextfileCollector:
    name = "textfile"
    sources = ('`textfile_dir`/*.prom',)

    def __init__(self, roots: Roots, settings: CollectorSettings) -> None:
        self.dir = settings.textfile_dir
        self.max_per_file = settings.textfile_max_series_per_file
        self.max_total = settings.textfile_max_series
        self._files: dict[str, _File] = {}
        self._logged: dict[str, Problem] = {}  # file (or "." for the directory) -> problem last logged
        # (each file's name, version and problem; the series to store; each file's problem after the merge)
        self._merged: tuple[tuple, list[tuple[str, dict[str, str], float]], dict[str, Problem | None]] = ((), [], {})

    def collect(self, now: float) -> Batch:
        batch = Batch(ts=now)
        if self.dir is None:
            return batch
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(SUFFIX))
        except OSError as e:
            self._say(batch, ".", ("read", f"cannot list the directory: {e.strerror or e}"))
            batch.add("textfile_scrape_error", 1.0, file=".")
            return batch
        self._recovered(".")
        present = set(names)
        for gone in [n for n in self._files if n not in present]:
            del self._files[gone]
            self._logged.pop(gone, None)
        problems = {name: self._read(name, self._files.setdefault(name, _File())) for name in names}
        # Which series each file gives, and each file's problem, change only with the files:
        # the merge (duplicates, the cap) is redone only then, not for every unchanged cycle.
        versions = tuple((name, self._files[name].seen, problems[name]) for name in names)
        if versions != self._merged[0]:
            self._merged = (versions, *self._merge(names, problems))
        _, rows, merged = self._merged
        batch.samples.extend([Sample(metric, labels, value, now) for metric, labels, value in rows])
        for name in names:
            f, problem = self._files[name], merged[name]
            if problem is None:
                self._recovered(name)
            else:
                self._say(batch, name, problem)
            if f.mtime is not None:
                batch.add("textfile_mtime_seconds", f.mtime, file=name)
            batch.add("textfile_scrape_error", 0.0 if problem is None else 1.0, file=name)
        return batch

    def _merge(self, names: list[str], problems: dict[str, Problem | None]
               ) -> tuple[list[tuple[str, dict[str, str], float]], dict[str, Problem | None]]:
        """The series to store, files in name order, and each file's problem after the
        duplicates across files and the overall cap."""
        taken: set[Key] = set()
        rows: list[tuple[str, dict[str, str], float]] = []
        merged: dict[str, Problem | None] = {}
        for name in names:
            problem = problems[name]
            for key, metric, labels, value in self._files[name].good:
                if key in taken:
                    problem = problem or ("duplicate", f"{_show(key)} is also in a file before it (by name), "
                                                       "which keeps it")
                    continue
                if len(taken) >= self.max_total:
                    problem = problem or ("cap", f"the textfiles hold more than textfile_max_series "
                                                 f"({self.max_total}) series; the rest are dropped")
                    break
                taken.add(key)
                rows.append((metric, labels, value))
            merged[name] = problem
        return rows, merged

    def _read(self, name: str, f: _File) -> Problem | None:
        """Reads and parses `name` when it changed since the last cycle; its problem, or None."""
        path = self.dir / name
        try:
            st = os.stat(path)
            if f.seen == (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size):
                return f.error  # unchanged: neither read nor parsed again
            # O_NONBLOCK: opening a FIFO named *.prom must not hang the cycle waiting for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)  # the inode actually opened: a rename after this cannot change it
                if not stat.S_ISREG(st.st_mode):
                    raise TextfileError("not a regular file")
                if st.st_size > MAX_FILE_BYTES:
                    raise TextfileError(f"larger than {MAX_FILE_BYTES >> 20} MiB")
                data = _read_all(fd)
            finally:
                os.close(fd)
            f.seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            series = parse(data.decode("utf-8"), self.max_per_file)
        except OSError as e:
            f.seen = None  # tried again next cycle
            return ("read", f"cannot read: {e.strerror or e}")
        except UnicodeDecodeError as e:
            f.error = ("format", f"not UTF-8 text: {e}")
            return f.error
        except TextfileError as e:
            f.seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            f.error = ("format", str(e))
            return f.error
        f.error = None
        if len(series) > self.max_per_file:
            del series[self.max_per_file:]
            f.error = ("cap", f"more than textfile_max_series_per_file ({self.max_per_file}) series; "
                              f"the first {self.max_per_file} are kept")
        f.good, f.mtime = series, st.st_mtime
        return f.error

    def _say(self, batch: Batch, name: str, problem: Problem) -> None:
        """Counts a problem every cycle, and logs it once while it lasts (a new one anew)."""
        batch.errors.append(f"textfile:{problem[0]}")
        if self._logged.get(name) != problem:
            self._logged[name] = problem
            where = self.dir if name == "." else self.dir / name
            log.warning("textfile %s: %s (textfile_scrape_error{file=%r} is 1%s)", where, problem[1], name,
                        "" if name == "." else "; the file's last good values are kept")

    def _recovered(self, name: str) -> None:
        if self._logged.pop(name, None) is not None:
            log.info("textfile %s reads well again", self.dir if name == "." else self.dir / name)


def _read_all(fd: int) -> bytes:
    parts = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > MAX_FILE_BYTES:  # grew after the fstat
            raise TextfileError(f"larger than {MAX_FILE_BYTES >> 20} MiB")
        parts.append(chunk)
