"""collectors.base: raw whole-file reads, the cached snmp/netstat header names, and
DeadlineWorker, which runs calls that can block on another process."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from collectors.base import DeadlineWorker, Stalled, read_bytes, read_header_pairs, read_text


def test_read_bytes_reads_past_one_chunk(tmp_path: Path):
    data = os.urandom(200_000)  # more than one 64 KiB os.read
    (tmp_path / "big").write_bytes(data)
    assert read_bytes(str(tmp_path / "big")) == data
    assert read_bytes(tmp_path / "big") == data  # a Path works as well as a str
    (tmp_path / "empty").write_bytes(b"")
    assert read_bytes(tmp_path / "empty") == b""


def test_read_bytes_multi_record_seq_file():
    # /proc/self/mountinfo is a seq_file that hands out whole records one buffer at a time.
    for _ in range(5):
        a = read_bytes("/proc/self/mountinfo")
        b = Path("/proc/self/mountinfo").read_bytes()
        if a == b:
            break
    assert a == b and a.endswith(b"\n")


def test_read_bytes_missing_raises_and_closes(tmp_path: Path):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "absent")
    with pytest.raises(IsADirectoryError):
        read_text(tmp_path)  # open() of a directory succeeds; its read fails: no fd left open
    assert len(os.listdir("/proc/self/fd")) == before


def _write(path: Path, rows: list[tuple[str, list[str], list[str]]]) -> None:
    path.write_text("".join(f"{p}: {' '.join(h)}\n{p}: {' '.join(v)}\n" for p, h, v in rows))


def test_header_pairs_follow_a_changed_header(tmp_path: Path):
    f = tmp_path / "netstat"
    _write(f, [("TcpExt", ["SyncookiesSent", "ListenOverflows"], ["1", "2"]), ("IpExt", ["InNoRoutes"], ["3"])])
    assert read_header_pairs(f) == {"TcpExt.SyncookiesSent": 1.0, "TcpExt.ListenOverflows": 2.0,
                                    "IpExt.InNoRoutes": 3.0}
    # Same file, a kernel with one field more and the order changed: the cached names must not be reused.
    _write(f, [("TcpExt", ["ListenOverflows", "ListenDrops", "SyncookiesSent"], ["5", "6", "7"])])
    assert read_header_pairs(f) == {"TcpExt.ListenOverflows": 5.0, "TcpExt.ListenDrops": 6.0,
                                    "TcpExt.SyncookiesSent": 7.0}


def test_header_pairs_skip_bad_values_and_mismatched_lines(tmp_path: Path):
    f = tmp_path / "snmp"
    f.write_text("Tcp: RtoMin MaxConn Odd\nTcp: 200 -1 x\nUdp: InDatagrams\nIp: 4\nIcmp: InMsgs\n")
    # A non-numeric value drops only its own field; a value line of another prefix is no pair;
    # a trailing header without its value line is ignored.
    assert read_header_pairs(f) == {"Tcp.RtoMin": 200.0, "Tcp.MaxConn": -1.0}


def test_header_pairs_live_match_a_plain_parse():
    for name in ("snmp", "netstat"):
        for _ in range(5):
            text = Path(f"/proc/net/{name}").read_text()
            got = read_header_pairs(f"/proc/net/{name}")
            lines = text.splitlines()
            want = {}
            for head, vals in zip(lines[::2], lines[1::2]):
                prefix = head.split(":")[0]
                want.update({f"{prefix}.{k}": float(v) for k, v in zip(head.split()[1:], vals.split()[1:])})
            if got == want:  # counters may move between the two reads; retry then
                break
        assert got == want and len(got) > 20, name


def test_deadline_worker_refuses_every_call_past_max_stuck_and_recovers():
    release = threading.Event()
    w = DeadlineWorker("cmdline", 0.05, logging.getLogger("test"), max_stuck=2)
    for pid in (1, 2):
        with pytest.raises(Stalled):
            w.call(pid, release.wait)
    assert set(w.stuck()) == {1, 2}
    with pytest.raises(Stalled, match="2 earlier calls are still blocked"):
        w.call(3, lambda: "never run")  # a third thread would stack on the same hung mount
    release.set()
    for _ in range(100):
        if not w.stuck():
            break
        time.sleep(0.01)
    assert w.call(3, lambda: "answered") == "answered"
    w.close()


def test_deadline_worker_hands_back_the_calls_own_error():
    w = DeadlineWorker("cmdline", 1.0, logging.getLogger("test"))
    with pytest.raises(FileNotFoundError):
        w.call(1, read_bytes, "/proc/no-such-pid/cmdline")
    assert w.stuck() == {}  # an error is an answer, not a stall
    w.close()


def test_a_dropped_deadline_worker_ends_its_thread():
    w = DeadlineWorker("cmdline", 1.0, logging.getLogger("test"))
    w.call(1, int, "5")
    thread = w._idle[0].thread
    del w
    gc.collect()
    thread.join(1.0)
    assert not thread.is_alive()
