"""Issue 15: the data dir under trouble, each against a real `diag serve`: a second
process on the same data dir, a database held locked by another program, an emptied
database file, a real full filesystem. Every test here failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ServeProcess, http, own_kmsg


def _exits(p: ServeProcess, timeout: float = 45) -> tuple[int, str]:
    """A `diag serve` that must refuse to start: its exit code and output."""
    try:
        rc = p.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        out = p.output()
        p.stop()
        pytest.fail(f"diag serve started instead of refusing: {out}")
    return rc, p.output()


def _served_once(data: Path) -> None:
    """A data dir that holds a few collections and was stopped cleanly."""
    p = ServeProcess(data, "--interval", "1s", "--kmsg", str(own_kmsg(data.parent)))
    try:
        p.wait_ready()
    finally:
        assert p.stop() == 0, p.output()


# -- 13: a second service on the same data dir -------------------------------------------------

def test_a_second_serve_on_the_same_data_dir_refuses_and_names_the_first(serve, tmp_path):
    first = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
    pid_file = first.data_dir / "running.pid"
    assert pid_file.read_text().strip() == str(first.proc.pid)
    second = ServeProcess(first.data_dir, "--interval", "1s")
    rc, out = _exits(second)
    assert rc != 0
    assert f"pid {first.proc.pid}" in out and "in use" in out, out
    # The refused one touched nothing: the first's marker is its own, and it still serves.
    assert pid_file.read_text().strip() == str(first.proc.pid)
    status, _, body = http("GET", first.url + "/healthz")
    assert status == 200, body
    events = json.loads(http("GET", first.url + "/api/v1/events?type=Service.UncleanStop")[2])
    assert not events.get("events"), events
    # Once the first has stopped, the data dir is free again.
    assert first.stop() == 0
    third = ServeProcess(first.data_dir, "--interval", "1s")
    try:
        third.wait_ready()
    finally:
        assert third.stop() == 0, third.output()


# -- 11: an error that is not damage -------------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_locked_database_is_not_moved_aside_and_the_service_refuses(tmp_path):
    data = tmp_path / "data"
    _served_once(data)
    db = data / "metrics.db"
    size = db.stat().st_size
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = ServeProcess(data, "--interval", "1s")
        rc, out = _exits(p)
        assert rc != 0
        assert "metrics.db" in out and "locked" in out, out
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert not list(data.glob("*.damaged-*")), list(data.iterdir())
    assert db.stat().st_size == size
    # Nothing was lost: with the lock gone the same history is served.
    again = ServeProcess(data, "--interval", "1s")
    try:
        again.wait_ready()
        status, _, body = http("GET", again.url + "/api/v1/events?type=Store.Error")
        assert status == 200 and not json.loads(body).get("events"), body
    finally:
        assert again.stop() == 0, again.output()


# -- 12: a database emptied to 0 bytes ------------------------------------------------------------

@pytest.mark.parametrize("name", ["diag.db", "metrics.db"])
def test_an_emptied_database_refuses_to_start(tmp_path, name):
    data = tmp_path / "data"
    _served_once(data)
    for suffix in ("-wal", "-shm"):
        Path(str(data / name) + suffix).unlink(missing_ok=True)
    os.truncate(data / name, 0)  # what a failed restore or a careless `> diag.db` leaves
    p = ServeProcess(data, "--interval", "1s")
    rc, out = _exits(p)
    assert rc != 0
    assert f"{name} is empty" in out and "held data" in out, out
    assert (data / name).stat().st_size == 0  # left as found, for the operator to restore
    # The way out the message names works: the operator chooses to start empty.
    (data / f"{name}.held").unlink()
    again = ServeProcess(data, "--interval", "1s")
    try:
        again.wait_ready()
    finally:
        assert again.stop() == 0, again.output()


# -- 17: a real full filesystem -------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 96 MiB tmpfs: a disk that really fills (ENOSPC), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    """Append to `path` until the filesystem has no byte left."""
    chunk = b"\0" * (1 << 20)
    with open(path, "ab", buffering=0) as f:  # a failed write raises now, not at close
        for _ in range(200):  # more MiB than the filesystem has
            try:
                f.write(chunk)
            except OSError:
                break
        for _ in range(1 << 12):  # the last partial MiB
            try:
                f.write(b"\0" * 256)
            except OSError:
                return


def _batch(i: int, now: float, series: int = 100, points: int = 80) -> dict:
    # Under the 1 MiB body limit; a new series set each time, so every batch takes new pages.
    return {"instance_id": "agent-full", "batch_id": f"full-{i}", "samples": [
        {"metric": "jobs", "labels": {"n": str(n), "b": str(i)}, "value": p / 7, "ts": now - points + p}
        for n in range(series) for p in range(points)]}


@pytest.mark.slow
def test_a_full_disk_answers_507_everywhere_and_healthz_says_so(small_fs):
    data = small_fs / "data"
    p = ServeProcess(data, "--interval", "1s", "--kmsg", str(own_kmsg(small_fs)))
    try:
        p.wait_ready()
        # The WAL stays small while tens of MiB go in: it is checkpointed long before
        # SQLite's default 1,000 pages (64 MiB here).
        wal, biggest = data / "metrics.db-wal", 0
        now = time.time()
        for i in range(150):  # 8,000 new series each: tens of MiB in all
            status, _, body = http("POST", p.url + "/api/v1/ingest", _batch(i, now), timeout=30)
            assert status == 202, body
            biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
        assert biggest <= 8 << 20, f"the WAL grew to {biggest / 2**20:.1f} MiB"

        ballast = small_fs / "ballast"
        statuses = []
        for i in range(60):  # each success had room (the service gives back its reserve): fill again
            _fill(ballast)
            status, _, body = http("POST", p.url + "/api/v1/ingest", _batch(1000 + i, time.time(), 50, 20), timeout=30)
            statuses.append(status)
            if status == 507:
                break
        assert statuses[-1] == 507 and 500 not in statuses, statuses
        status, _, body = http("GET", p.url + "/healthz")
        assert status == 503, body
        assert any("full" in f for f in json.loads(body)["failing"]), body

        # A route writing diag.db: 507 too, never 500.
        statuses = []
        for i in range(200):
            _fill(ballast)
            status, _, body = http("POST", p.url + "/api/v1/events", {
                "type": "SystemMaintenance.Reboot", "not_before": time.time() + 3600 + i, "duration": 60})
            statuses.append(status)
            if status >= 500:
                break
        assert statuses[-1] == 507, (statuses[-5:], body)
        status, _, body = http("GET", p.url + "/healthz")
        assert status == 503, body
    finally:
        out = p.output()
        p.stop()
    assert "Traceback" not in out or "disk is full" in out
