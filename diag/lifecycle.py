"""Start and stop: was the last stop clean, are the databases whole, and stopping on a
signal without deadlocking.

A damaged database is moved aside and reported, never silently overwritten: the
operator can still try to recover data from the moved file.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "running.pid"


def check_database(path: Path) -> str | None:
    """None when `path` is absent or whole; else moves it (and its WAL) aside and says where."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
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
