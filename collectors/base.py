"""What every collector shares: the protocol, counter-to-rate tracking, file reading."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Protocol

from diag.model import Batch


class Collector(Protocol):
    name: str
    # What it reads (files, calls, programs), for the reference table in the README.
    sources: tuple[str, ...]

    def collect(self, now: float) -> Batch: ...


class Parts:
    """Failures of a collector's independent parts: one file that cannot be read costs
    only the readings made from it, not the collector's others.

    Each failure is counted in the batch as `<part>:<error type>` (the cycle turns that
    into diag_collector_errors_total{kind=...}, so the metric alone names the file) and
    logged once per kind: a file missing from a container is missing every cycle.
    """

    __slots__ = ("log", "_logged")

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._logged: set[str] = set()

    def read_each(self, owner: Any, batch: Batch, proc: str, now: float,
                  readers: tuple[tuple[str, Callable[..., None]], ...]) -> None:
        """Calls each `read(owner, batch, proc, now)` of (file under proc, read) pairs, apart."""
        for part, read in readers:
            try:
                read(owner, batch, proc, now)
            except Exception as e:  # noqa: BLE001 - one file's failure leaves the others
                self.failed(batch, part, f"{proc}/{part}", e)

    def failed(self, batch: Batch, part: str, path: str, error: BaseException) -> None:
        kind = f"{part}:{type(error).__name__}"
        batch.errors.append(kind)
        if kind not in self._logged:
            self._logged.add(kind)
            why = error.strerror if isinstance(error, OSError) and error.strerror else error
            self.log.warning("reading %s failed (%s: %s): the readings made from it are missing, the "
                             "others are not; logged once per file and kind", path, type(error).__name__, why)


class StateFile:
    """A collector's position kept across restarts (JSON), written by temp + rename so a
    reader never sees half a file. No fsync: a position matters within one boot, and the
    page cache outlives a restart of the service. An unwritable file is logged once per
    outage; collecting goes on, and a restart then reads again from further back."""

    def __init__(self, path: Path | None, what: str, log: logging.Logger) -> None:
        self.path, self.what, self.log = path, what, log
        self._failed = False
        self._text: str | None = None

    def load(self, unreadable: str) -> dict:
        """The saved dict, or {} (logged, saying `unreadable`: what happens instead)."""
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self.log.warning("%s %s unreadable (%s): %s", self.what, self.path, e, unreadable)
            return {}

    def save(self, data: dict) -> None:
        if self.path is None:
            return
        text = json.dumps(data, sort_keys=True)
        if text == self._text:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, self.path)
            self._text = text
            self._failed = False
        except OSError as e:
            if not self._failed:
                self.log.warning("cannot save %s to %s: %s (logged once per outage)", self.what, self.path, e)
            self._failed = True


class Stalled(TimeoutError):
    """A call that may block on another process missed its deadline, or is skipped
    because an earlier call with the same key is still stuck."""


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    """One daemon thread taking jobs from its queue until it gets None."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn(*job.args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, who decides
                job.error = e
            job.done.set()


class DeadlineWorker:
    """Calls that can block on another process, run on one persistent worker thread with
    a deadline on each result.

    Reading /proc/<pid>/cmdline or environ takes that process's memory lock: a process
    stuck in a page fault on a hung mount (a stopped FUSE daemon, a dead NFS server)
    holds it, and the read sleeps uninterruptibly until the mount answers, maybe never.
    A thread cannot be killed, so a call that misses its deadline is abandoned: its
    worker stays stuck, the next call gets a fresh worker, and the key (the pid) is
    skipped while the stuck thread lives, so no cycle stacks a second thread on it. At
    most `max_stuck` threads are ever abandoned; past that every call is refused until
    one of them returns. Each stuck call is logged once, naming its key.
    """

    def __init__(self, kind: str, deadline: float, log: logging.Logger, max_stuck: int = 4) -> None:
        self.kind, self.deadline, self.log, self.max_stuck = kind, deadline, log, max_stuck
        # The idle worker, in a holder the finalizer shares: a collector dropped without
        # close() must not leave a thread waiting on its queue forever.
        self._idle: list[_Worker | None] = [None]
        self._finalizer = weakref.finalize(self, _end_idle, self._idle)
        # key -> (the stuck worker, monotonic time its call started)
        self._stuck: dict[Any, tuple[_Worker, float]] = {}

    def stuck(self) -> dict[Any, float]:
        """Keys whose call is still blocked, with the monotonic time each call started."""
        self._reap()
        return {k: since for k, (_, since) in self._stuck.items()}

    def _reap(self) -> None:
        if self._stuck:
            for key in [k for k, (w, _) in self._stuck.items() if not w.thread.is_alive()]:
                del self._stuck[key]

    def call(self, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the worker; raises Stalled past the deadline or while `key` is stuck."""
        self._reap()
        if key in self._stuck:
            raise Stalled(f"{self.kind} {key}: still blocked since {time.monotonic() - self._stuck[key][1]:.0f} s ago")
        if len(self._stuck) >= self.max_stuck:
            raise Stalled(f"{self.kind} {key}: not tried, {len(self._stuck)} earlier calls are still blocked")
        worker = self._idle[0]
        if worker is None:
            worker = self._idle[0] = _Worker(f"diag-{self.kind}")
        job = _Job(fn, args)
        started = time.monotonic()
        worker.jobs.put(job)
        if not job.done.wait(self.deadline):
            worker.jobs.put(None)  # it ends once its call returns; a fresh worker takes its place
            self._idle[0] = None
            self._stuck[key] = (worker, started)
            self.log.warning("%s %s did not answer within %.1f s: abandoned, and skipped until it returns",
                             self.kind, key, self.deadline)
            raise Stalled(f"{self.kind} {key}: no answer within {self.deadline} s")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        """Let the idle worker end; stuck ones end when their call returns (daemon threads).
        A later call starts a new worker."""
        _end_idle(self._idle)


def _end_idle(holder: list[_Worker | None]) -> None:
    if holder[0] is not None:
        holder[0].jobs.put(None)
        holder[0] = None


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

    def __len__(self) -> int:
        return len(self._prev)

    def sweep(self, now: float) -> None:
        """Forget every key not read at `now`: an interface or disk that went away.

        Without this, veth and loop churn grows the baselines without bound. Callers
        sweep only when the count of keys exceeds what this cycle read, so the usual
        cycle pays one len() and no walk.
        """
        self._prev = {k: v for k, v in self._prev.items() if v[1] == now}


class CounterNames:
    """The raw counter names of one device or interface, `prefix.<name>.<field>`, built
    once per name instead of every cycle. Bounded: veth and loop churn bring new names
    forever, so past `limit` names the memo starts over."""

    def __init__(self, prefix: str, fields: tuple[str, ...], limit: int = 4096) -> None:
        self.prefix, self.fields, self.limit = prefix, fields, limit
        self._names: dict[str, tuple[str, ...]] = {}

    def __call__(self, name: str) -> tuple[str, ...]:
        keys = self._names.get(name)
        if keys is None:
            if len(self._names) >= self.limit:
                self._names.clear()
            keys = self._names[name] = tuple(f"{self.prefix}.{name}.{f}" for f in self.fields)
        return keys


_CHUNK = 65536


def read_bytes(path: str | Path) -> bytes:
    """A whole file through raw os calls.

    io.open adds an fstat, a buffer object and a context manager: about 4 µs per small
    /proc file, a visible share of a cycle that reads a dozen of them. Reads until EOF
    because a multi-record seq_file (/proc/net/tcp) hands out one page per read.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _CHUNK)
        if not data:
            return data
        parts = [data]
        while True:
            more = os.read(fd, _CHUNK)
            if not more:
                break
            parts.append(more)
    finally:
        os.close(fd)
    return data if len(parts) == 1 else b"".join(parts)


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode("utf-8", "replace")


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


# header line -> (its first word, `Prefix.Field` names). The header lines of snmp and
# netstat only change with the kernel, so building ~200 names every cycle was wasted work.
_HEADER_KEYS: dict[bytes, tuple[bytes, list[str]]] = {}
_HEADER_CACHE_MAX = 64  # a handful per kernel; the bound only guards against odd input


def _header_keys(head: bytes) -> tuple[bytes, list[str]]:
    got = _HEADER_KEYS.get(head)
    if got is None:
        hp = head.split()
        prefix = hp[0].decode("utf-8", "replace").rstrip(":") if hp else ""
        got = (hp[0] if hp else b"", [f"{prefix}.{k.decode('utf-8', 'replace')}" for k in hp[1:]])
        if len(_HEADER_KEYS) >= _HEADER_CACHE_MAX:
            _HEADER_KEYS.clear()
        _HEADER_KEYS[head] = got
    return got


def read_header_pairs(path: str | Path) -> dict[str, float]:
    """/proc/net/snmp and /proc/net/netstat: header line then value line per prefix.

    Returns `Prefix.Field` keys, the names the kernel and nstat use (TcpExt.ListenOverflows).
    """
    out: dict[str, float] = {}
    lines = read_bytes(path).splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        first, keys = _header_keys(head)
        hv = vals.split()
        if not first or not hv or first != hv[0]:
            continue
        try:
            # float() takes ASCII bytes directly; zip stops at the shorter line as before.
            out.update(zip(keys, map(float, hv[1:])))
        except ValueError:  # a non-numeric value: keep the others, as the per-field loop did
            for k, v in zip(keys, hv[1:]):
                try:
                    out[k] = float(v)
                except ValueError:
                    continue
    return out
