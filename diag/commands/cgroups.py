"""A cgroup per remote-command run, so its timeout and stop reach every process it started.

A process group is not enough: any child can call `setsid` and leave it (issue 15). A
cgroup cannot be left without root, and a child is born into its parent's. One is made
under this process's own cgroup (so a service manager stopping us still covers the runs),
in the first hierarchy where that works:

- cgroup v2 (a `cgroup2` mount, unified or hybrid): `cgroup.kill` kills every member at
  once, fork races included; `cgroup.freeze` is the fallback on kernels before 5.14.
- cgroup v1 `freezer`: freeze, SIGKILL every member, thaw: a frozen process cannot fork.
- cgroup v1 `pids`: SIGKILL every member until none is left.

The systemd named hierarchy is left alone (systemd owns it). Where none is writable (not
root, a read-only /sys/fs/cgroup in a container), `create()` answers None and the caller
kills the process group only, as before.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DIR_NAME = "diag-commands"
KILL_DEADLINE_S = 5.0
V1_CONTROLLERS = ("freezer", "pids")


@dataclass
class Cgroup:
    path: Path
    parent: Path  # where processes a run leaves behind on a normal end go, before the rmdir
    version: int
    freezer: bool

    def add(self, pid: int) -> bool:
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
            return True
        except OSError as e:
            log.warning("cannot put command process %d into %s: %s; only its process group will be killed",
                        pid, self.path, e)
            return False

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup; returns once it is empty or after a deadline."""
        deadline = time.monotonic() + KILL_DEADLINE_S
        if self.version == 2 and _write(self.path / "cgroup.kill", "1"):
            self._wait_empty(deadline)
            return
        while time.monotonic() < deadline:
            frozen = self.freezer and self._freeze(True, deadline)
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if frozen:
                self._freeze(False, deadline)  # a SIGKILLed task dies once thawed
            if not pids or self._wait_empty(min(deadline, time.monotonic() + 0.5)):
                return
        log.warning("processes of %s still alive after SIGKILL: %s", self.path, self.pids())

    def release(self) -> None:
        """After the run: what it left running (a daemon it meant to start, after a normal end)
        moves to the parent cgroup, and the empty cgroup is removed."""
        for _ in range(20):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                _write(self.parent / "cgroup.procs", f"{pid}\n")
        self.remove()

    def remove(self) -> None:
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    break
                time.sleep(0.05)  # exiting members leave the cgroup a moment after they die
        log.warning("could not remove %s", self.path)

    def _wait_empty(self, deadline: float) -> bool:
        while True:
            if not self.pids():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _freeze(self, on: bool, deadline: float) -> bool:
        if self.version == 2:
            if not _write(self.path / "cgroup.freeze", "1" if on else "0"):
                return False
            while on and time.monotonic() < deadline:
                if "frozen 1" in _read(self.path / "cgroup.events"):
                    return True
                time.sleep(0.01)
            return not on
        if not _write(self.path / "freezer.state", "FROZEN" if on else "THAWED"):
            return False
        while on and time.monotonic() < deadline:
            if _read(self.path / "freezer.state").strip() == "FROZEN":
                return True
            time.sleep(0.01)
        return not on


STALE_AFTER = 60.0  # seconds: an empty run cgroup older than this belongs to no live run


def sweep(runs: Path, older_than: float = STALE_AFTER) -> int:
    """Remove the empty run cgroups a dead process left (an agent killed during a run never
    releases its run's cgroup); returns how many went. A live run's cgroup holds its
    processes (rmdir then fails with EBUSY); the age spares one just made and not yet filled."""
    gone = 0
    now = time.time()
    try:
        children = [c for c in runs.iterdir() if c.is_dir()]
    except OSError:
        return 0
    for child in children:
        try:
            if now - child.stat().st_mtime < older_than:
                continue
            child.rmdir()
            gone += 1
        except OSError:
            continue
    return gone


def create(proc: Path = Path("/proc")) -> Cgroup | None:
    """A new, empty cgroup for one run, or None where no hierarchy lets us make one."""
    for mount, own, version, freezer in _hierarchies(proc):
        parent = mount / own.lstrip("/")
        path = parent / DIR_NAME / uuid.uuid4().hex
        try:
            path.parent.mkdir(exist_ok=True)
            path.mkdir()
        except OSError:
            continue
        sweep(path.parent)
        if version == 2:
            freezer = (path / "cgroup.freeze").exists()
        return Cgroup(path, parent, version, freezer)
    return None


def _hierarchies(proc: Path) -> list[tuple[Path, str, int, bool]]:
    """(mount point, our cgroup in it, version, has a freezer), best first."""
    own: dict[str, str] = {}
    try:
        for line in (proc / "self/cgroup").read_text().splitlines():
            hid, controllers, path = line.split(":", 2)
            own["" if hid == "0" else controllers] = path
    except (OSError, ValueError):
        return []
    v2: list[tuple[Path, str, int, bool]] = []
    v1: dict[str, tuple[Path, str, int, bool]] = {}
    try:
        mounts = (proc / "self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in mounts:
        f = line.split()
        if len(f) < 4 or "ro" in f[3].split(","):
            continue
        mount = Path(f[1].replace("\\040", " "))
        if f[2] == "cgroup2" and "" in own:
            v2.append((mount, own[""], 2, False))
        elif f[2] == "cgroup":
            opts = f[3].split(",")
            for c in V1_CONTROLLERS:
                key = next((k for k in own if c in k.split(",")), None)
                if c in opts and key is not None and c not in v1:
                    v1[c] = (mount, own[key], 1, c == "freezer")
    return v2[:1] + [v1[c] for c in V1_CONTROLLERS if c in v1]


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
