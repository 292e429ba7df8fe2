"""Containers and cgroups against fixture trees of cgroup v1 and v2, a 500-cgroup bound, and
the kernel's own cgroups (a live cgroup with a memory limit whose process is OOM-killed,
found named in a real Service's report)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from collectors.cgroups import CgroupsCollector, classify
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import FIXTURES, collected_service
from tests.faults.helpers import memory_cgroup_root

A, B, C, D = "a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32
MiB = 1 << 20
PATHS = {  # cgroup path -> (container, runtime)
    f"/docker/{A}": ("web", "docker"),  # named by config.v2.json
    f"/system.slice/docker-{B}.scope": (B[:12], "docker"),  # no metadata: the short id
    f"/kubepods/burstable/pod0f1e2d3c-1111-2222-3333-444455556666/{C}": ("prod/api-7d9/server", "containerd"),
    f"/machine.slice/libpod-{D}.scope": ("db", "podman"),
    "/system.slice/nginx.service": ("nginx.service", "systemd"),
    "/process_api": ("/process_api", "cgroup"),
}


def _tree(tmp_path: Path, version: str) -> Path:
    top = tmp_path / version
    shutil.copytree(FIXTURES / "cgroups" / version, top)
    return top


def _bump(top: Path, version: str, path: str, *, cpu_ns: int = 0, read: int = 0, psi_some_us: int = 0,
          oom: int | None = None) -> None:
    """Move a unit's counters on, as the kernel would between two cycles."""
    cg = top / "sys/fs/cgroup"

    def add(f: Path, key: str | None, by: int) -> None:
        lines = f.read_text().splitlines()
        out = []
        for line in lines:
            if key is None:
                out.append(str(int(line) + by))
            elif line.startswith(key):
                head, _, n = line.rpartition("=" if "=" in key else " ")
                out.append(f"{head}{'=' if '=' in key else ' '}{int(n) + by}")
            else:
                out.append(line)
        f.write_text("\n".join(out) + "\n")

    if version == "v1":
        add(cg / f"cpuacct{path}/cpuacct.usage", None, cpu_ns)
        add(cg / f"blkio{path}/blkio.throttle.io_service_bytes_recursive", "8:0 Read", read)
        if psi_some_us:
            text = (cg / f"unified{path}/memory.pressure").read_text()
            old = int(text.split("total=")[1].split()[0])
            (cg / f"unified{path}/memory.pressure").write_text(text.replace(f"total={old}\n", f"total={old + psi_some_us}\n", 1))
        if oom is not None:
            (cg / f"memory{path}/memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom}\n")
    else:
        d = cg / path.lstrip("/")
        add(d / "cpu.stat", "usage_usec", cpu_ns // 1000)
        text = (d / "io.stat").read_text()
        rb = int(text.split("rbytes=")[1].split()[0])
        (d / "io.stat").write_text(text.replace(f"rbytes={rb} ", f"rbytes={rb + read} ", 1))
        if psi_some_us:
            text = (d / "memory.pressure").read_text()
            old = int(text.split("total=")[1].split()[0])
            (d / "memory.pressure").write_text(text.replace(f"total={old}\n", f"total={old + psi_some_us}\n", 1))
        if oom is not None:
            add(d / "memory.events", "oom_kill", oom - 0)
    if oom is not None:
        vm = top / "proc/vmstat"
        vm.write_text(vm.read_text().replace("oom_kill 7", "oom_kill 8"))


def _by(batch, metric: str) -> dict[str, tuple[str, str, float]]:
    return {s.labels["cgroup"]: (s.labels["container"], s.labels["runtime"], s.value)
            for s in batch.samples if s.metric == metric}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_runtime_is_named_and_measured(tmp_path, version):
    top = _tree(tmp_path, version)
    col = CgroupsCollector(Roots.under(top), CollectorSettings(top_containers=10))
    first = col.collect(100.0)
    assert [s.value for s in first.samples if s.metric == "containers"] == [6.0]
    # The conmon scope beside the podman container is not a container.
    assert {p: (n, r) for p, (n, r, _) in _by(first, "container_memory_used").items()} == PATHS
    _bump(top, version, f"/docker/{A}", cpu_ns=5_000_000_000, read=10240, psi_some_us=100_000, oom=1)
    _bump(top, version, "/system.slice/nginx.service", cpu_ns=1_000_000_000)
    b = col.collect(110.0)
    web = f"/docker/{A}"
    assert _by(b, "container_cpu_usage")[web] == ("web", "docker", pytest.approx(50.0))
    assert _by(b, "container_cpu_usage")["/system.slice/nginx.service"][2] == pytest.approx(10.0)
    assert _by(b, "container_cpu_usage")[f"/system.slice/docker-{B}.scope"][2] == 0.0
    # The working set: usage minus inactive page cache (900 - 20 MiB) against 1 GiB.
    assert _by(b, "container_memory_used")[web][2] == 880 * MiB
    assert _by(b, "container_memory_limit")[web][2] == 1024 * MiB
    assert _by(b, "container_memory_usage")[web][2] == pytest.approx(880 / 1024 * 100)
    assert f"/system.slice/docker-{B}.scope" not in _by(b, "container_memory_limit")  # unlimited
    assert _by(b, "container_io_read_bps")[web][2] == pytest.approx(1024.0)
    assert _by(b, "container_psi_memory_some")[web][2] == pytest.approx(1.0)
    assert _by(b, "container_oom_kills")[web][2] == 1.0
    assert _by(b, "container_oom_kills")[f"/machine.slice/libpod-{D}.scope"][2] == 0.0  # 2 before, none since
    totals = {s.labels["cgroup"]: s.value for s in b.totals if s.metric == "container_oom_kills_total"}
    assert totals[web] == 1.0 and totals[f"/machine.slice/libpod-{D}.scope"] == 2.0
    assert b.errors == []


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_oom_counters_are_read_only_when_the_host_counter_rose(tmp_path, version):
    top = _tree(tmp_path, version)
    col = CgroupsCollector(Roots.under(top), CollectorSettings(top_containers=10))
    col.collect(100.0)
    col.collect(110.0)
    # A kill the host's vmstat does not show cannot have happened: the cgroup's file is not read.
    cg = top / "sys/fs/cgroup"
    f = cg / (f"memory/docker/{A}/memory.oom_control" if version == "v1" else f"docker/{A}/memory.events")
    f.write_text(f.read_text().replace("oom_kill 0", "oom_kill 5"))
    assert _by(col.collect(120.0), "container_oom_kills")[f"/docker/{A}"][2] == 0.0
    vm = top / "proc/vmstat"
    vm.write_text(vm.read_text().replace("oom_kill 7", "oom_kill 12"))
    assert _by(col.collect(130.0), "container_oom_kills")[f"/docker/{A}"][2] == 5.0


def test_a_container_that_appears_oom_killed_after_the_first_walk_counts_its_kills(tmp_path):
    top = _tree(tmp_path, "v2")
    col = CgroupsCollector(Roots.under(top), CollectorSettings(top_containers=1))
    col.collect(100.0)
    new = top / "sys/fs/cgroup/system.slice/burst.service"
    shutil.copytree(top / "sys/fs/cgroup/system.slice/nginx.service", new)
    (new / "memory.events").write_text("oom 1\noom_kill 1\n")
    vm = top / "proc/vmstat"
    vm.write_text(vm.read_text().replace("oom_kill 7", "oom_kill 8"))
    b = col.collect(110.0)
    # Outside the top 1 by CPU and memory, yet reported: it was OOM-killed this interval.
    assert _by(b, "container_oom_kills")["/system.slice/burst.service"] == ("burst.service", "systemd", 1.0)


def test_classify_names_each_runtime_from_its_path():
    assert classify(None, f"docker-{A}.scope") == ("docker", A)
    assert classify(None, f"cri-containerd-{A}.scope") == ("containerd", A)
    assert classify(None, f"crio-{A}.scope") == ("cri-o", A)
    assert classify(None, f"libpod-{A}.scope") == ("podman", A)
    assert classify(None, f"libpod-conmon-{A}.scope") is None
    assert classify("docker", A) == ("docker", A)
    assert classify("podman", f"libpod-{A}") == ("podman", A)
    assert classify(None, "kubepods.slice") == "descend"
    assert classify(None, "kubepods") == "descend"
    assert classify("containerd", "pod1234") == "descend"
    assert classify(None, "cron.service") == ("systemd", "cron.service")
    assert classify(None, "session-4.scope") == ("systemd", "session-4.scope")


def _many(top: Path, n: int, over: int) -> None:
    """`n` docker containers under /docker in a v2 tree; the first `over` at 90 % of a limit."""
    cg = top / "sys/fs/cgroup"
    (cg / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (cg / "cgroup.controllers").write_text("cpu io memory\n")
    for i in range(n):
        d = cg / "docker" / f"{i:064x}"
        d.mkdir(parents=True)
        (d / "memory.current").write_text(f"{(90 if i < over else 10 + i % 50) * MiB}\n")
        (d / "memory.max").write_text(f"{100 * MiB}\n" if i < over else "max\n")
        (d / "memory.stat").write_text("inactive_file 0\n")
        (d / "memory.events").write_text("oom_kill 0\n")
        (d / "cpu.stat").write_text(f"usage_usec {i * 1000}\n")
        (d / "io.stat").write_text("")
        (d / "memory.pressure").write_text("some avg10=0 avg60=0 avg300=0 total=0\nfull avg10=0 avg60=0 avg300=0 total=0\n")
    (top / "proc").mkdir(parents=True, exist_ok=True)
    (top / "proc/vmstat").write_text("oom_kill 0\n")


def test_500_containers_give_at_most_the_top_n_plus_those_over_the_threshold(tmp_path):
    _many(tmp_path, 500, over=7)
    n = 5
    col = CgroupsCollector(Roots.under(tmp_path), CollectorSettings(top_containers=n))
    for t in range(12):
        if t:  # every container burns CPU, the highest-numbered the most
            for i in range(500):
                f = tmp_path / f"sys/fs/cgroup/docker/{i:064x}/cpu.stat"
                f.write_text(f"usage_usec {i * 1000 * (t + 1)}\n")
        b = col.collect(100.0 + 10 * t)
        assert [s.value for s in b.samples if s.metric == "containers"] == [500.0]
        for metric in ("container_memory_used", "container_cpu_usage", "container_oom_kills"):
            assert len(_by(b, metric)) <= 2 * n + 7, (t, metric)
    used = _by(b, "container_memory_used")
    near = {f"/docker/{i:064x}" for i in range(7)}
    assert near <= set(used)  # each of the 7 near its limit, though none is in a top 5
    usage = _by(b, "container_memory_usage")
    assert set(usage) == near and all(v == pytest.approx(90.0) for _, _, v in usage.values())
    # Read on a share of cycles, the busiest still rank first: 499..495.
    cpu = _by(b, "container_cpu_usage")
    busiest = sorted(cpu, key=lambda p: cpu[p][2], reverse=True)[:n]
    assert busiest == [f"/docker/{i:064x}" for i in range(499, 494, -1)]


def test_no_cgroup_filesystem_gives_no_series(tmp_path):
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    b = CgroupsCollector(Roots.under(tmp_path), CollectorSettings()).collect(1.0)
    assert b.samples == [] and b.errors == []


# -- live ------------------------------------------------------------------------------------

HOG = """
import sys
with open(sys.argv[1], "w") as f:
    f.write("0")
hoard = []
while True:
    hoard.append(bytearray(1 << 20))
"""


def test_a_real_container_oom_killed_at_its_limit_is_named_by_the_check(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    root, version = memory_cgroup_root()
    unit = f"diag-oom-{uuid.uuid4().hex[:8]}.service"
    cg = root / unit
    cg.mkdir()
    try:
        limit = 32 * MiB
        if version == "v1":
            (cg / "memory.limit_in_bytes").write_text(str(limit))
            try:
                (cg / "memory.memsw.limit_in_bytes").write_text(str(limit))
            except OSError:
                pass
        else:
            (cg / "memory.max").write_text(str(limit))
            if (cg / "memory.swap.max").exists():
                (cg / "memory.swap.max").write_text("0")
        # The first cycle finds the cgroup and takes its OOM counter as the baseline.
        service = collected_service(tmp_path / "data")
        try:
            started = time.time()
            child = subprocess.Popen([sys.executable, "-c", HOG, str(cg / "cgroup.procs")])
            try:
                assert child.wait(60) == -9, "the hog was not killed by the OOM killer"
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            service.collect()
            report = service.diagnose(service.instance_id, window=time.time() - started + 30,
                                      check_ids=["performance.container_memory"])
            (got,) = [c for c in report["checks"] if c["id"] == "performance.container_memory"]
            assert got["status"] == "critical", got
            assert unit in got["message"] and "OOM" in got["message"], got["message"]
            mine = [k for k in got["evidence"]["oom_kills"] if k["container"] == unit]
            assert len(mine) == 1, got["evidence"]
            (kill,) = mine
            assert kill["runtime"] == "systemd" and kill["kills"] >= 1 and kill["cgroup"] == f"/{unit}", kill
        finally:
            service.close()
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    assert not cg.exists()
