"""Issue 18's "done when": a fresh `make run` with the README's one command sends a real
notice to a local webhook when a filesystem fills, through the one-click disk policy as
it ships (its threshold and period read from diag/alerting/defaults.py, nothing shortened)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.alerting.alerting_helpers import Receiver
from tests.conftest import ROOT, free_port, http
from tests.faults.helpers import need_root, tmpfs

from diag.alerting import defaults

INTERVAL = 1.0


def usage(path: Path) -> float:
    """Space used as the collector reads it (df's): used / (used + available to users)."""
    st = os.statvfs(path)
    used = st.f_blocks - st.f_bfree
    return used / (used + st.f_bavail) * 100.0


def fill_to(path: Path, percent: float) -> None:
    with open(path / "blob", "wb") as f:
        while usage(path) < percent:
            f.write(b"\0" * 4096)
            f.flush()


def make_run(port: int, data_dir: Path, hook: str, log: Path) -> subprocess.Popen:
    venv = Path(sys.prefix)
    argv = ["make", "run", f"VENV={venv}", f"PORT={port}", f"DATA_DIR={data_dir}", f"NOTIFY={hook}"]
    if (venv / ".installed-stamp").exists():
        # The suite runs from the venv `make test` installed: never reinstall it from here (a
        # git worktree's newer pyproject.toml would point the shared venv at the worktree).
        argv[1:1] = ["-o", f"{venv}/.installed-stamp"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIAG_")}
    # This checkout's code, also when the venv's editable install points at another checkout.
    env.update(DIAG_INTERVAL=f"{INTERVAL:g}s", PYTHONPATH=str(ROOT))
    # Output to a file: an unread pipe fills up and blocks the service's logging.
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
def test_make_run_with_notify_sends_a_firing_notice_when_a_filesystem_fills(tmp_path):
    need_root()
    disk = defaults.policies(INTERVAL)["default-disk"]
    warning = min(c["threshold"] for c in disk["conditions"])
    critical = max(c["threshold"] for c in disk["conditions"])
    # Aligned buckets of `period`: the first one closed after the fill breaches, then one
    # cycle evaluates it and the outbox sends within its deliver_every (2 s).
    period, consecutive = disk["conditions"][0]["period"], disk["conditions"][0]["consecutive"]
    target = warning + min(3.0, (critical - warning) / 2)  # above warning, below critical
    receiver = Receiver()
    port, log = free_port(), tmp_path / "make-run.log"
    proc = make_run(port, tmp_path / "data", receiver.url, log)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        with tmpfs(tmp_path / "fills", "size=1m") as mnt:
            # Filled as soon as mounted, so each reading of the new mountpoint is above the threshold.
            fill_to(mnt, target)
            filled = time.monotonic()
            deadline = filled + consecutive * period + 10 * INTERVAL + 30
            notice = None
            while notice is None and time.monotonic() < deadline:
                notice = next((b for b in list(receiver.bodies) if b.get("policy_id") == "default-disk"
                               and (b.get("series") or {}).get("mountpoint") == str(mnt)), None)
                time.sleep(0.2)
            took = time.monotonic() - filled
            assert notice is not None, f"no notice within {took:.0f} s; got {receiver.bodies!r:.2000}"
            print(f"fill to notice: {took:.1f} s (period {period:g} s, consecutive {consecutive})")
            assert notice["status"] == "firing" and notice["severity"] == "warning"
            assert warning <= notice["value"] < critical
    finally:
        stop(proc)
        receiver.stop()


def _healthy(port: int) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200
    except OSError:
        return False
