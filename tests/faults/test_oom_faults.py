"""A real OOM kill in a memory cgroup, seen through a real Service reading the live /dev/kmsg.

What this 6.18 kernel prints for a cgroup v1 kill at a 32M limit (facility 0, one report):

    python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
    CPU: 1 UID: 0 PID: 19900 Comm: python3 Not tainted 6.18.44 ...
    Call Trace: ... mem_cgroup_out_of_memory ... try_charge_memcg ...
    memory: usage 32768kB, limit 32768kB, failcnt 88
    Memory cgroup stats for /diag-oom-probe: ...
    oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/diag-oom-probe,task_memcg=/diag-oom-probe,task=python3,pid=19900,uid=0
    Memory cgroup out of memory: Killed process 19900 (python3) total-vm:42264kB, anon-rss:32512kB, file-rss:6644kB, ...
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import collected_service
from tests.faults.helpers import memory_cgroup_root, need_root

LIMIT = 32 * 1024 * 1024
COMM = "diag-oom-hog"  # the kernel names the victim by its comm (15 characters at most)

# The child joins the cgroup itself before it allocates, so nothing else is charged there.
HOG = f"""
import ctypes, sys
ctypes.CDLL(None).prctl(15, b"{COMM}", 0, 0, 0)  # PR_SET_NAME
with open(sys.argv[1], "w") as f:
    f.write("0")
hoard = []
while True:
    hoard.append(bytearray(1 << 20))
"""


@contextmanager
def memory_cgroup(limit: int):
    """A memory cgroup limited to `limit` bytes without swap to spill into; removed after."""
    need_root()
    root, version = memory_cgroup_root()
    cg = root / f"diag-oom-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        if version == "v1":
            (cg / "memory.limit_in_bytes").write_text(str(limit))
            try:  # memsw may not go below the limit; equal means no swap for this group
                (cg / "memory.memsw.limit_in_bytes").write_text(str(limit))
            except OSError:
                pass  # no swap accounting: then swap off or not, the limit still holds RAM
        else:
            (cg / "memory.max").write_text(str(limit))
            if (cg / "memory.swap.max").exists():
                (cg / "memory.swap.max").write_text("0")
        yield cg, version
    finally:
        for _ in range(50):  # a killed task leaves its cgroup a moment after it is reaped
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"could not remove {cg}")


def _oom(report: dict) -> dict:
    (check,) = [c for c in report["checks"] if c["id"] == "performance.oom"]
    return check


def test_a_real_oom_kill_in_a_memory_cgroup_is_reported_then_clears(tmp_path):
    need_root()
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable")
    with memory_cgroup(LIMIT) as (cg, version):
        # The first cycle reads the ring buffer as it is: older faults are history before `started`.
        service = collected_service(tmp_path / "data")
        started = time.time()
        child = subprocess.Popen([sys.executable, "-c", HOG, str(cg / "cgroup.procs")])
        try:
            assert child.wait(60) == -9, "the hog was not killed by the OOM killer"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        try:
            iid = service.instance_id
            deadline = time.monotonic() + 20
            mine: list[dict] = []
            while not mine and time.monotonic() < deadline:
                service.collect()
                mine = [e for e in service.events.list(iid, types=["Kernel.OOMKill"])
                        if e["details"]["labels"].get("pid") == str(child.pid)]
                time.sleep(0.3)
            assert mine, [e["details"] for e in service.events.list(iid, types=["Kernel.OOMKill"])]
            (event,) = mine
            labels = event["details"]["labels"]
            assert (event["level"], labels["process"], labels["constraint"]) == ("CRITICAL", COMM, "CONSTRAINT_MEMCG")
            assert labels.get("memcg", "").endswith(cg.name), labels  # task_memcg=/diag-oom-...
            assert "Killed process" in event["details"]["message"] and started - 2 <= event["publish_time"] <= time.time() + 2
            assert any("invoked oom-killer" in line or "oom-kill:constraint=" in line
                       for line in event["details"]["lines"]), event["details"]["lines"]
            seen_at = time.time()

            # The kill in the window: critical, naming the process, with the cgroup advice.
            report = service.diagnose(iid, window=time.time() - started + 5, check_ids=["performance.oom"])
            got = _oom(report)
            assert got["status"] == "critical", got
            assert f"{COMM} (pid {child.pid})" in got["message"], got["message"]
            assert [k["pid"] for k in got["evidence"]["kills"]] == [str(child.pid)]
            assert "inside a memory cgroup" in got["recommendation"]

            # Cycles go on after the kill; a window that starts after it (the check's lookback
            # clipped to the diagnosis window, as a short lookback would) no longer holds it.
            for _ in range(4):
                time.sleep(1.0)
                service.collect()
            end = time.time()
            cleared = _oom(service.diagnose(iid, window=end - seen_at - 0.5, now=end, check_ids=["performance.oom"]))
            assert cleared["status"] == "ok" and cleared["message"] == "no OOM kill in the lookback", cleared
        finally:
            service.close()
    assert not cg.exists()
