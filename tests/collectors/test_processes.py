"""ProcessesCollector: top processes from the fixture tree (exact) and from this machine."""

from __future__ import annotations

import heapq
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from collectors.processes import REFRESH_CYCLES, ProcessesCollector, full_name
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import HOST_T0, HOST_T1
from diag.model import Batch

PAGE = os.sysconf("SC_PAGE_SIZE")


def run_fixture(top: int = 5) -> tuple[Batch, Batch]:
    c = ProcessesCollector(HOST_T0, CollectorSettings(top_processes=top))
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def brief(rows: list[dict]) -> list[tuple]:
    return [(r["pid"], r["name"], r["cpu_percent"], r["rss_bytes"]) for r in rows]


def test_fixture_first_cycle_ranks_memory_only():
    b, _ = run_fixture()
    assert b.processes["by_cpu"] == []  # no interval yet
    # RSS pages at t0: 202 51200, 101 25600, 707 4096, 606 512, 303 256, 404 200
    assert brief(b.processes["by_memory"]) == [
        (202, "postgres", None, 51200 * PAGE),
        (101, "python3", None, 25600 * PAGE),
        (707, "oldjob", None, 4096 * PAGE),
        (606, "idle-daemon", None, 512 * PAGE),
        (303, "a) b (c)", None, 256 * PAGE),
    ]


def test_fixture_top_by_cpu():
    _, b = run_fixture()
    # utime+stime deltas over 10 s, 100 % = 1000 ticks at USER_HZ 100:
    # 101 +500; 202 +150; 505 started after t0 with 50; 707 is a new process on a reused pid
    # (starttime changed) with 40; 303 +20 (comm with spaces and ')'); 606 idle; 404 exited.
    hz = os.sysconf("SC_CLK_TCK")
    assert [(r["pid"], r["name"]) for r in b.processes["by_cpu"]] == [
        (101, "python3"),
        (202, "postgres"),
        (505, "make"),
        (707, "newjob"),
        (303, "a) b (c)"),
    ]
    got = [r["cpu_percent"] for r in b.processes["by_cpu"]]
    assert got == [ticks / hz / 10 * 100 for ticks in (500, 150, 50, 40, 20)]
    if hz == 100:
        assert got == [50.0, 15.0, 5.0, 4.0, 2.0]
    assert brief(b.processes["by_memory"])[:3] == [
        (202, "postgres", got[1], 51200 * PAGE),
        (101, "python3", got[0], 25600 * PAGE),
        (505, "make", got[2], 1024 * PAGE),
    ]
    assert [r["pid"] for r in b.processes["by_memory"]][3:] == [606, 303]
    assert b.processes["by_memory"][3]["cpu_percent"] == 0.0


def test_top_n_setting():
    _, b = run_fixture(top=2)
    assert [r["pid"] for r in b.processes["by_cpu"]] == [101, 202]
    assert [r["pid"] for r in b.processes["by_memory"]] == [202, 101]


def test_counters_going_backwards_give_no_negative_value():
    c = ProcessesCollector(HOST_T1, CollectorSettings(top_processes=50))
    c.collect(1000.0)
    c.roots = HOST_T0
    b = c.collect(1010.0)
    rows = b.processes["by_cpu"] + b.processes["by_memory"]
    assert all(r["cpu_percent"] is None or r["cpu_percent"] >= 0 for r in rows)
    assert 101 not in [r["pid"] for r in b.processes["by_cpu"]]  # its ticks went down


def _stat_fds() -> set[str]:
    """Paths of /proc/<pid>/stat files this test process holds open."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/proc/") and target.endswith("/stat"):
            out.add(target)
    return out


def test_live_machine_own_process_burning_cpu():
    c = ProcessesCollector(Roots(), CollectorSettings(top_processes=10_000))
    c.collect(time.time())
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pass
    b = c.collect(time.time())
    by_pid = {r["pid"]: r for r in b.processes["by_cpu"]}
    me = by_pid[os.getpid()]
    assert me["name"] == Path("/proc/self/comm").read_text().rstrip("\n")
    assert 20 < me["cpu_percent"] <= 110  # one core; wall clock and tick accounting differ a little
    cpu = [r["cpu_percent"] for r in b.processes["by_cpu"]]
    assert cpu == sorted(cpu, reverse=True) and all(v > 0 for v in cpu)
    mine = {r["pid"]: r for r in b.processes["by_memory"]}[os.getpid()]
    statm_rss = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    assert abs(mine["rss_bytes"] - statm_rss) < 16 * 1024 * 1024
    listed = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert len(b.processes["by_memory"]) <= len(listed) + 5
    c.close()


def test_live_machine_forgets_exited_processes():
    c = ProcessesCollector(Roots(), CollectorSettings(top_processes=10_000))
    child = subprocess.Popen(["sleep", "60"])
    # Other collectors of this test process (a Service of an earlier test not yet collected
    # by the cyclic GC) may hold stat files too: only this collector's count here.
    others = _stat_fds()
    try:
        b = c.collect(time.time())
        assert child.pid in {r["pid"] for r in b.processes["by_memory"]}
        held = _stat_fds() - others
        assert f"/proc/{child.pid}/stat" in held  # kept open between cycles on the live system
    finally:
        child.kill()
        child.wait()
    c.collect(time.time() + 2)
    assert f"/proc/{child.pid}/stat" not in _stat_fds()
    c.close()
    assert not (_stat_fds() & held)


def _stat_line(pid: int, name: str, ticks: int, rss: int, start: int = 1200) -> str:
    """A /proc/<pid>/stat line in the kernel's layout (from the fixture's 101), with
    utime = ticks, stime 0, the given starttime and rss pages."""
    return (f"{pid} ({name}) S 1 {pid} {pid} 0 -1 4194304 98 0 0 0 {ticks} 0 0 0 20 0 1 0 {start} 3133440 {rss} "
            "18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 1 1 1 1 1 1 1 0\n")


def _tree(top: Path, procs: dict[int, tuple[int, int]]) -> Roots:
    for pid, (ticks, rss) in procs.items():
        (top / "proc" / str(pid)).mkdir(parents=True, exist_ok=True)
        (top / "proc" / str(pid) / "stat").write_text(_stat_line(pid, f"p{pid}", ticks, rss))
    return Roots.under(top)


def test_ties_rank_in_listing_order_like_nlargest(tmp_path: Path):
    # Many equal RSS values and equal CPU deltas: the order among equals must be the
    # /proc listing order, which is what heapq.nlargest (the earlier ranking) gives.
    t0 = {pid: (100, 10 * (pid % 3)) for pid in range(2000, 2040)}
    t1 = {pid: (100 + 5 * (pid % 4), 10 * (pid % 3)) for pid in range(2000, 2040)}
    c = ProcessesCollector(_tree(tmp_path / "a", t0), CollectorSettings(top_processes=7))
    c.collect(1000.0)
    roots = _tree(tmp_path / "b", t1)
    c.roots = roots
    b = c.collect(1010.0)
    listing = [int(p) for p in os.listdir(roots.proc) if p.isdigit()]
    want_mem = heapq.nlargest(7, listing, key=lambda p: t1[p][1])
    want_cpu = heapq.nlargest(7, [p for p in listing if t1[p][0] > t0[p][0]], key=lambda p: t1[p][0] - t0[p][0])
    assert [r["pid"] for r in b.processes["by_memory"]] == want_mem
    assert [r["pid"] for r in b.processes["by_cpu"]] == want_cpu
    hz = os.sysconf("SC_CLK_TCK")
    for r in b.processes["by_memory"]:
        assert r["name"] == f"p{r['pid']}"
        assert r["cpu_percent"] == (t1[r["pid"]][0] - t0[r["pid"]][0]) * 100.0 / hz / 10
        assert r["rss_bytes"] == t1[r["pid"]][1] * PAGE


def _reads_of(monkeypatch, pid: int) -> list[str]:
    """Names of /proc/<pid>/ files the collector reads through kept descriptors, in order."""
    seen: list[str] = []
    real = os.pread

    def pread(fd: int, n: int, off: int) -> bytes:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(f"/proc/{pid}/"):
            seen.append(target.rsplit("/", 1)[1])
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", pread)
    return seen


def _wait_asleep(pid: int) -> None:
    """Until the process has finished starting: its run time stops moving."""
    last = None
    for _ in range(100):
        now = Path(f"/proc/{pid}/schedstat").read_text()
        if now == last:
            return
        last = now
        time.sleep(0.05)
    raise AssertionError(f"process {pid} kept running")


def test_live_idle_process_is_skipped_on_schedstat_but_refreshed(monkeypatch):
    c = ProcessesCollector(Roots(), CollectorSettings(top_processes=10_000))
    child = subprocess.Popen(["sleep", "60"])
    try:
        _wait_asleep(child.pid)
        c.collect(time.time())
        reads = _reads_of(monkeypatch, child.pid)
        for _ in range(REFRESH_CYCLES * 2):
            b = c.collect(time.time())
            assert child.pid in {r["pid"] for r in b.processes["by_memory"]}
        # schedstat every cycle; stat only on its refresh turn, once per REFRESH_CYCLES
        assert reads.count("schedstat") == REFRESH_CYCLES * 2
        assert reads.count("stat") == 2
    finally:
        child.kill()
        child.wait()
        c.close()


def test_live_sleeping_process_that_wakes_is_ranked_in_the_next_cycle():
    burn = "import sys, time\nsys.stdin.readline()\nend = time.monotonic() + 0.4\nwhile time.monotonic() < end: pass\nprint(flush=True)\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    c = ProcessesCollector(Roots(), CollectorSettings(top_processes=10_000))
    try:
        time.sleep(0.3)  # interpreter start-up done; now it sleeps in readline
        for _ in range(REFRESH_CYCLES + 1):
            b = c.collect(time.time())
        assert child.pid not in {r["pid"] for r in b.processes["by_cpu"]}
        child.stdin.write("go\n")
        child.stdin.flush()
        child.stdout.readline()  # it has burnt its 0.4 s
        b = c.collect(time.time())
        mine = {r["pid"]: r for r in b.processes["by_cpu"]}[child.pid]
        assert mine["cpu_percent"] > 0
    finally:
        child.kill()
        child.wait()
        c.close()


def tree_with_a_cut_name(tmp_path: Path) -> Roots:
    """t0 with python3 (pid 101) renamed to the 15 bytes the kernel keeps of systemd-networkd."""
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    stat = tmp_path / "proc" / "101" / "stat"
    stat.write_bytes(stat.read_bytes().replace(b"(python3)", b"(systemd-network)"))
    (tmp_path / "proc" / "101" / "cmdline").write_bytes(b"/lib/systemd/systemd-networkd\0--debug\0")
    return Roots.under(tmp_path)


def names(b: Batch) -> dict[int, str]:
    return {r["pid"]: r["name"] for r in b.processes["by_memory"]}


def test_a_name_the_kernel_cut_is_completed_from_argv0(tmp_path: Path):
    c = ProcessesCollector(tree_with_a_cut_name(tmp_path), CollectorSettings())
    assert names(c.collect(1000.0))[101] == "systemd-networkd"
    assert names(c.collect(1010.0))[202] == "postgres"  # short names are never looked up


def test_a_rewritten_argv_is_no_name():
    assert full_name("systemd-network", b"networkd: worker 3\0") == "systemd-network"  # setproctitle
    assert full_name("kworker/u16:3-e", b"") == "kworker/u16:3-e"  # kernel threads have no argv
    assert full_name("systemd-network", b"/lib/systemd/systemd-networkd\0") == "systemd-networkd"


def test_a_blocked_cmdline_read_costs_one_deadline_and_is_not_stacked(tmp_path: Path, caplog):
    # A process faulting on a hung mount holds its memory lock; reading its cmdline then
    # sleeps until the mount answers. The fake reader sleeps until the test releases it.
    hung_mount_answers = threading.Event()
    calls: list[str] = []

    def read(path: str) -> bytes:
        calls.append(path)
        hung_mount_answers.wait(10)
        return Path(path).read_bytes()

    c = ProcessesCollector(tree_with_a_cut_name(tmp_path), CollectorSettings())
    c.read_cmdline = read
    c.cmdlines.deadline = 0.2
    threads = threading.active_count()
    with caplog.at_level(logging.WARNING, logger="collectors.processes"):
        t0 = time.monotonic()
        first = c.collect(1000.0)
        took_first = time.monotonic() - t0
        t0 = time.monotonic()
        second = c.collect(1010.0)
        took_second = time.monotonic() - t0
    assert 0.2 <= took_first < 0.4  # the deadline, not the hung read
    assert took_second < 0.1  # the stuck pid is skipped, not waited on again
    assert names(first)[101] == names(second)[101] == "systemd-network"  # its comm meanwhile
    assert first.errors == second.errors == ["pid/cmdline:Stalled"]  # counted every cycle
    assert len(calls) == 1 and threading.active_count() <= threads + 1  # one stuck thread, no second
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "cmdline 101" in logged[0], logged

    hung_mount_answers.set()
    for _ in range(100):  # the stuck thread returns and ends
        if not c.cmdlines.stuck():
            break
        time.sleep(0.01)
    third = c.collect(1020.0)
    assert names(third)[101] == "systemd-networkd" and third.errors == []
    c.close()


def test_an_odd_stat_line_costs_only_that_process(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    (tmp_path / "proc" / "202" / "stat").write_bytes(b"202 (postgres) S 1 2 3\n")  # cut short
    b = ProcessesCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert [r["pid"] for r in b.processes["by_memory"]] == [101, 707, 606, 303, 404]
    assert b.errors == ["pid/stat:IndexError"]
