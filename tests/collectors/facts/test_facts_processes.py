"""Finding processes by name."""

from __future__ import annotations

import os
from pathlib import Path

from collectors.facts.processes import cmdline, named, ppid, scan

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def test_fixture_scan():
    proc = FIX / "running" / "proc"
    procs = scan(proc)
    assert [(p.pid, p.comm) for p in procs] == [
        (1, "systemd"), (455, "dhclient"), (640, "systemd-resolve"), (812, "sshd"), (2301, "sshd")]
    assert [p.pid for p in named(procs, ("sshd",))] == [812, 2301]
    assert [p.pid for p in named(procs, ("systemd-resolved",))] == [640]  # 15-character comm
    assert cmdline(proc, 2301) == "sshd: root@pts/0"
    assert ppid(proc, 2301) == 812
    assert cmdline(proc, 99999) == "" and ppid(proc, 99999) is None


def test_live_finds_this_process():
    procs = scan(Path("/proc"))
    me = [p for p in procs if p.pid == os.getpid()]
    assert me and me[0].comm == Path("/proc/self/comm").read_text().strip()
    assert ppid(Path("/proc"), os.getpid()) == os.getppid()
    assert cmdline(Path("/proc"), os.getpid()).split()[0] == Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()


def test_a_stuck_cmdline_read_is_abandoned_logged_once_and_never_stacked(tmp_path, caplog):
    """A real blocking read: the DHCP client's cmdline is a FIFO with no writer, so open(2)
    blocks in the kernel as a read under a held memory lock does on a hung mount."""
    import logging
    import shutil
    import threading
    import time

    from collectors import facts
    from collectors.facts import processes
    from collectors.roots import Roots

    top = tmp_path / "host"
    shutil.copytree(FIX / "running", top, symlinks=True)
    fifo = top / "proc" / "455" / "cmdline"
    text = fifo.read_bytes()
    fifo.unlink()
    os.mkfifo(fifo)
    before = processes.CMDLINES.stalls
    threads = threading.active_count()
    with caplog.at_level(logging.WARNING, logger="collectors.facts.processes"):
        t0 = time.monotonic()
        s = facts.snapshot(Roots.under(top), 1.0)
        took = time.monotonic() - t0
        assert processes.CMDLINE_DEADLINE_S <= took < processes.CMDLINE_DEADLINE_S + 2
        assert s["dhcp_clients"] == [{"pid": 455, "name": "dhclient", "cmdline": ""}]  # still listed
        assert f"{fifo}" in s["errors"]["dhcp_clients"]
        for _ in range(3):
            t0 = time.monotonic()
            s = facts.snapshot(Roots.under(top), 2.0)
            assert time.monotonic() - t0 < 0.5  # skipped at once, not waited on again
            assert "still blocked" in s["errors"]["dhcp_clients"]
        assert processes.CMDLINES.stalls - before == 4
        assert threading.active_count() <= threads + 2  # the stuck reader and one fresh worker, no more
    stuck = [r for r in caplog.records if str(fifo) in r.getMessage()]
    assert len(stuck) == 1, [r.getMessage() for r in caplog.records]

    fd = os.open(fifo, os.O_WRONLY)  # a reader waits, so this opens at once and frees it
    try:
        plain = fifo.with_name("cmdline.plain")
        plain.write_bytes(text)
        plain.replace(fifo)
        os.write(fd, text)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 5
    while processes.CMDLINES.worker.stuck() and time.monotonic() < deadline:
        time.sleep(0.02)
    s = facts.snapshot(Roots.under(top), 3.0)
    assert s["dhcp_clients"][0]["cmdline"].startswith("/sbin/dhclient -1 -4")
    assert "dhcp_clients" not in s["errors"]
