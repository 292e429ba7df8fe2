"""A FUSE daemon stopped with SIGSTOP (a dead sshfs or s3fs server) and a loop device over a
file on that mount, made for real through a running `diag serve`: collection keeps its
interval, the stuck mount and the device that completes no I/O are reported, and both
clear once the daemon runs again.

What the kernel shows (6.x): statvfs on the mount blocks until the daemon runs; the loop
device's diskstats line keeps "I/Os currently in progress" at 1 and its completed counts
still while io_ticks rises. A direct writer sits in D state in submit_bio_wait, which waits
in slices shorter than hung_task_timeout_secs, so it never gets a hung-task line (seen for
600 s): the finding must come from the in-flight count. A buffered writer's fsync waits
in folio_wait_bit, and that one the kernel reports ("INFO: task dd:<pid> blocked for
more than N seconds"), with the timeout lowered for the test and restored after.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT, http, need_tool
from tests.faults.helpers import diagnose, need_root, result, wait_for

INTERVAL = 2.0
HANG_SECONDS = 8  # storage.io_hang's threshold, lowered so the fault lasts seconds, not minutes


def need_fuse() -> None:
    need_root()
    missing = None
    if not os.path.exists("/dev/fuse"):
        missing = "/dev/fuse is missing"
    else:
        try:
            import fuse  # noqa: F401 - fusepy, the test daemon's library (loads libfuse2)
        except (ImportError, OSError, EnvironmentError) as e:
            missing = f"fusepy or libfuse2 is not installed ({e}; pip install -e .[test], make system-deps)"
    if missing:
        (pytest.fail if IN_CI else pytest.skip)(missing)


@dataclass
class Fuse:
    mnt: Path
    daemon: subprocess.Popen
    loops: list[str] = field(default_factory=list)
    writers: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        os.kill(self.daemon.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.daemon.pid, signal.SIGCONT)

    def loop(self, name: str) -> str:
        """A loop device over a file of the mount (attach it while the daemon runs)."""
        dev = subprocess.run(["losetup", "-f", "--show", str(self.mnt / name)], check=True, capture_output=True,
                             text=True).stdout.strip()
        self.loops.append(dev)
        return dev


def _mounted(path: Path) -> str | None:
    """The mount's type, from the table alone (a stat of a frozen mount would hang)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        if f[4] == str(path):
            return f[f.index("-", 6) + 1]
    return None


@contextmanager
def fuse_mount(tmp_path: Path):
    """The test daemon serving tmp_path/back (a 64 MiB disk.img) at tmp_path/mnt; every
    fault is undone after, whatever happens: SIGCONT, writers waited, loops detached,
    unmounted (lazily if it must be), the daemon ended."""
    need_fuse()
    need_tool("losetup")
    back, mnt = tmp_path / "back", tmp_path / "mnt"
    back.mkdir()
    mnt.mkdir()
    with open(back / "disk.img", "wb") as f:
        f.truncate(64 << 20)
    log = open(tmp_path / "fuse.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "tests.faults.fuse_daemon", str(back), str(mnt)], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    fx = Fuse(mnt, daemon)
    try:
        if not wait_for(lambda: _mounted(mnt) == "fuse.diagtest" or daemon.poll() is not None, timeout=15, every=0.1) \
                or daemon.poll() is not None:
            raise AssertionError(f"the FUSE daemon did not mount: {(tmp_path / 'fuse.log').read_text()}")
        yield fx
    finally:
        fx.cont()
        for w in fx.writers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
        for dev in fx.loops:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
        if subprocess.run(["umount", str(mnt)], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        assert _mounted(mnt) is None


@contextmanager
def hung_task_timeout(seconds: int):
    """kernel.hung_task_timeout_secs lowered; it and the report budget (hung_task_warnings,
    which each report spends) restored after."""
    knobs = [Path("/proc/sys/kernel/hung_task_timeout_secs"), Path("/proc/sys/kernel/hung_task_warnings")]
    if not all(k.exists() for k in knobs):
        yield False  # a kernel without CONFIG_DETECT_HUNG_TASK: the in-flight count still tells
        return
    saved = [k.read_text() for k in knobs]
    if Path("/proc/sys/kernel/hung_task_panic").read_text().strip() != "0":
        pytest.skip("kernel.hung_task_panic is set: a real hung task would reboot this machine")
    try:
        knobs[0].write_text(str(seconds))
        yield True
    finally:
        for k, v in zip(knobs, saved):
            k.write_text(v)


def diskstats(dev: str) -> list[int]:
    name = os.path.basename(dev)
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == name:
            return [int(x) for x in f[3:]]
    raise AssertionError(f"{name} not in /proc/diskstats")


def last_collection(url: str) -> float | None:
    try:
        return json.loads(http("GET", url + "/healthz", timeout=2)[2]).get("last_collection")
    except (OSError, ValueError):
        return None


def collections_during(url: str, seconds: float) -> list[float]:
    """The times of the collections stored over the next `seconds`, from /healthz."""
    seen: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = last_collection(url)
        if t and (not seen or t != seen[-1]):
            seen.append(t)
        time.sleep(0.1)
    return seen


def metric_lines(url: str, name: str) -> list[str]:
    text = http("GET", url + "/metrics")[2].decode()
    return [line for line in text.splitlines() if line.startswith(name)]


def test_a_stopped_fuse_daemon_and_a_loop_device_over_it_are_found_while_collection_keeps_its_interval(
        serve, tmp_path):
    with fuse_mount(tmp_path) as fx:
        cfg = tmp_path / "diag.toml"
        cfg.write_text(f'[checks."storage.io_hang"]\nseconds = {HANG_SECONDS}\n')
        p = serve("--interval", f"{INTERVAL:g}s", "--config", str(cfg))
        mnt = str(fx.mnt)
        loop = fx.loop("disk.img")
        subprocess.run(["dd", "if=/dev/zero", f"of={loop}", "bs=4k", "count=4", "oflag=direct"], check=True,
                       capture_output=True)
        check = lambda: result(diagnose(p.url, "storage.io_hang", window="10m"), "storage.io_hang")  # noqa: E731
        # A FUSE mount is asked in a thread, and says it answers.
        assert wait_for(lambda: any(f'mountpoint="{mnt}"' in line and line.endswith(" 0.0")
                                    for line in metric_lines(p.url, "diag_fs_stuck_seconds")), timeout=20), \
            metric_lines(p.url, "diag_fs_stuck_seconds")

        before = collections_during(p.url, 3 * INTERVAL)
        with hung_task_timeout(3) as detects:
            stopped = time.time()
            fx.stop()
            for how in (["oflag=direct"], ["conv=fsync"]):  # in flight only; in flight and a hung task
                fx.writers.append(subprocess.Popen(["dd", "if=/dev/zero", f"of={loop}", "bs=4k", "count=1",
                                                    f"seek={300 + len(fx.writers)}", *how],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            during = collections_during(p.url, HANG_SECONDS + 6 * INTERVAL)
        stats = diskstats(loop)
        # iostats.rst: field 9 I/Os in progress; 1 and 5 reads and writes completed
        assert stats[8] >= 1, stats
        times = sorted(set(before + during))
        gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
        # Never more than one interval late: a gap of at most two intervals (plus jitter).
        assert during and max(gaps) <= 2 * INTERVAL + 0.5, gaps
        assert during[-1] > stopped + HANG_SECONDS
        print(f"collection gaps with the daemon stopped (interval {INTERVAL:g} s): max {max(gaps):.3f} s, {gaps}")

        got = wait_for(lambda: (c := check())["status"] == "critical"
                       and any(h["device"] == os.path.basename(loop) and h["ongoing"] for h in c["evidence"]["hangs"])
                       and c, timeout=30)
        assert got, check()
        [m] = [m for m in got["evidence"]["stuck_mounts"] if m["mountpoint"] == mnt]
        assert m["fstype"] == "fuse.diagtest" and m["ongoing"] and m["finding"]
        assert abs(m["since"] - stopped) <= INTERVAL + 1.5, (m, stopped)
        assert f"{mnt} (fuse.diagtest) has not answered statvfs since" in got["message"]
        print(f"loop diskstats during the hang: {stats}; storage.io_hang: {got['status']}: {got['message']}")
        if detects:
            hung = [e for e in got["evidence"].get("hung_tasks", []) if e["time"] >= stopped - 5]
            assert any("dd" in json.dumps(e) for e in hung), got["evidence"].get("hung_tasks")
            print(f"hung tasks: {[e['message'] for e in hung]}")
        assert f"{os.path.basename(loop)}: I/O in flight and none completed" in got["message"]
        stuck = [line for line in metric_lines(p.url, "diag_fs_stuck_seconds") if f'mountpoint="{mnt}"' in line]
        assert stuck and float(stuck[0].rsplit(" ", 1)[1]) >= HANG_SECONDS, stuck
        errors = metric_lines(p.url, "diag_collector_errors")
        assert any('collector="filesystem"' in e and 'kind="TimeoutError"' in e for e in errors), errors
        # The mount cost its own readings only: the filesystem collector itself never stalled.
        assert 'diag_collector_stalls_total{collector="filesystem"} 0.0' in metric_lines(p.url, "diag_collector_stalls")
        logged = [line for line in p.output().splitlines() if mnt in line and "is stuck" in line]
        assert len(logged) == 1, p.output()

        # The daemon runs again: the writer finishes, the mount answers, nothing is ongoing.
        fx.cont()
        for w in fx.writers:
            assert w.wait(20) == 0
        cleared = wait_for(lambda: (c := check())["status"] != "critical"
                           and not any(h["ongoing"] for h in c["evidence"]["hangs"])
                           and not any(m["ongoing"] for m in c["evidence"].get("stuck_mounts", [])) and c,
                           timeout=30)
        assert cleared, check()
        assert re.search(r"answers again now", cleared["message"]), cleared["message"]
        print(f"after SIGCONT: {cleared['status']}: {cleared['message']}")
        assert any(f'mountpoint="{mnt}"' in line and line.endswith(" 0.0") for line in metric_lines(p.url, "diag_fs_stuck_seconds"))
        assert diskstats(loop)[8] == 0
