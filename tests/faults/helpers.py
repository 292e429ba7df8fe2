"""Real faults made on this machine (as root) and cleaned up after."""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import http



def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("making real faults (mounts, /dev/kmsg) needs root")


@contextmanager
def tmpfs(path: Path, options: str):
    """A small tmpfs mounted at `path`, unmounted after, whatever happens."""
    need_root()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "diagtest", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def diagnose(url: str, *checks: str, instance_id: str | None = None, window: str = "1h") -> dict:
    body: dict = {"window": window}
    if checks:
        body["checks"] = list(checks)
    if instance_id:
        body["instance_id"] = instance_id
    status, _, raw = http("POST", url + "/api/v1/diagnoses", body)
    assert status == 201, raw
    return json.loads(raw)


def result(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def wait_for(predicate, timeout: float = 60, every: float = 0.5):
    """Poll until `predicate()` returns something truthy; that value, or the last one."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = predicate()
    return value


def health(url: str, instance_id: str) -> dict:
    status, _, raw = http("GET", f"{url}/api/v1/instances/{instance_id}/health")
    assert status == 200, raw
    return json.loads(raw)


def memory_cgroup_root() -> tuple[Path, str]:
    """(where to make a memory cgroup, "v1" or "v2"); skips when there is none."""
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, "v1"
    for v2 in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        try:
            if "memory" in (v2 / "cgroup.controllers").read_text().split():
                return v2, "v2"
        except OSError:
            continue
    pytest.skip("no memory cgroup controller mounted (neither v1 memory nor v2 with memory enabled)")
