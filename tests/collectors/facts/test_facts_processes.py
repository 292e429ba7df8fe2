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
