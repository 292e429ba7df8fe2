"""Start and stop: was the last stop clean, are the databases whole, and stopping on a
signal without deadlocking.

A damaged database is moved aside and reported, never silently overwritten: the
operator can still try to recover data from the moved file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

# How long SIGTERM waits for running jobs (the service's, the agent's loop): a collection ends
# within its collectors' budgets and a facts snapshot within its deadline, so only a job
# stuck past those is left.
STOP_WAIT_S = 5.0

MARKER = "running.pid"


class StartRefused(RuntimeError):
    """The service must not start on this data dir now; the message says why and what to do."""


LOCK = "lock"
_held_locks: dict[Path, int] = {}  # open for the life of the process: closing one releases its flock


def lock_data_dir(data_dir: Path) -> None:
    """Hold an exclusive flock on `data_dir/lock` until the process ends.

    Two services on one data dir would write the same databases, each take the other's
    `running.pid` for an unclean stop, and the first to stop would delete it under the
    other. The kernel drops the lock when the process dies, however it dies.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir.resolve()
    if key in _held_locks:
        return
    path = data_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StartRefused(f"{data_dir} is in use by another diag serve (pid {holder}, holding {path}); "
                           "stop that one first, or give this one another --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = fd


# Only these say the file itself is damaged. Anything else (locked by another process,
# an I/O error, no permission) says nothing about the file, and moving it aside would
# start the service empty over data that is whole.
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
# A lock held at start-up for longer than this is another program working on the file.
CHECK_TIMEOUT_S = 5.0
# How long SIGTERM waits for running jobs (`diag serve`) or the agent's loop: a collection
# ends within its collectors' budgets and a facts snapshot within its deadline, so only a
# job stuck past those is left.
STOP_WAIT_S = 5.0


def _is_corruption(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT  # extended codes carry the primary one in the low byte
    msg = str(e).lower()
    return "malformed" in msg or "not a database" in msg


def check_database(path: Path) -> str | None:
    """None when `path` is absent or whole; moves it (and its WAL) aside and says where
    when it is corrupt; raises StartRefused when it cannot be read for another reason."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CHECK_TIMEOUT_S)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as e:
        if not _is_corruption(e):
            raise StartRefused(f"cannot read {path}: {e}. It is left as it is: this is no sign of damage. "
                               "Check that no other program holds it (fuser -v " f"{path}), and the disk "
                               "(dmesg), then start again") from None
        verdict = str(e)
    if verdict == "ok":
        return None
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    log.error("%s is damaged (%s); moved it to %s and started a new one", path, verdict, aside)
    return f"{path.name} was damaged ({verdict}); moved to {aside.name}"


def _held_marker(path: Path) -> Path:
    return path.with_name(path.name + ".held")


def check_held(path: Path) -> None:
    """Refuse to start when `path` once held data and is now missing or empty.

    SQLite opens a 0-byte file as a new, empty database: policies, tokens and history
    would be gone without a word. The marker beside it is the evidence that it was not
    always empty."""
    marker = _held_marker(path)
    if not marker.exists():
        return
    size = 0
    for suffix in ("", "-wal"):
        try:
            size += os.path.getsize(str(path) + suffix)
        except FileNotFoundError:
            pass
    if size == 0:
        state = "is empty (0 bytes)" if path.exists() else "is missing"
        raise StartRefused(f"{path} {state}, yet it held data (since {marker.read_text().strip() or '?'}, "
                           f"says {marker}). Restore it from a backup; or, to start with an empty one, "
                           f"delete {marker}")


def mark_held(path: Path) -> None:
    """Leave the evidence that `path` holds data (see check_held)."""
    marker = _held_marker(path)
    if marker.exists():
        return
    try:
        if os.path.getsize(path) == 0:
            return
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    except OSError as e:  # a full disk must not stop the start; the next start writes it
        log.warning("cannot write %s: %s", marker, e)


def mark_running(data_dir: Path) -> bool:
    """Leave a marker that a clean stop removes; True when the previous run left one
    (it was killed, crashed, or the machine went down under it)."""
    marker = data_dir / MARKER
    unclean = marker.exists()
    if unclean:
        log.warning("the previous run did not stop cleanly (found %s)", marker)
    marker.write_text(str(os.getpid()))
    return unclean


def mark_stopped(data_dir: Path) -> None:
    try:
        (data_dir / MARKER).unlink()
    except FileNotFoundError:
        pass


def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` when one of `signals` arrives. Call from the main thread.

    A Python signal handler runs in the main thread between two bytecodes, possibly
    while that thread holds the lock inside `stop` (in `Event.wait`, or in the `set`
    of a first SIGTERM when a second one follows, as `make run` stopped by its process
    group gets): calling `stop.set()` there deadlocks. So the handlers do nothing, the
    signal numbers come through the wakeup fd, and a thread of its own sets the event.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    for sig in signals:
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch(reader: socket.socket, writer: socket.socket) -> None:  # holds both open while it runs
        wanted = set(signals)
        while data := reader.recv(64):
            if wanted.intersection(data):
                stop.set()

    threading.Thread(target=watch, args=(reader, writer), name="signals", daemon=True).start()
