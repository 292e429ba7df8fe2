"""ConnectionsCollector: fixture /proc/net/tcp{,6} (exact), and netlink against /proc live."""

from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path

import pytest

from collectors import connections
from collectors.connections import (
    TCP_STATES,
    ConnectionsCollector,
    proc_tcp_states,
    sock_diag_tcp_states,
    sockstat_time_wait,
)
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.conftest import HOST_T0, HOST_T1
from diag.model import Batch

PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = 10


def states(batch: Batch) -> dict[str, float]:
    return {s.labels["state"]: s.value for s in batch.samples if s.metric == "tcp_connections"}


def one(batch: Batch, metric: str) -> float | None:
    found = [s.value for s in batch.samples if s.metric == metric]
    return found[0] if found else None


def expected(**nonzero: int) -> dict[str, float]:
    return {name: float(nonzero.get(name, 0)) for name in TCP_STATES.values()}


def test_fixture_t0():
    b = ConnectionsCollector(HOST_T0, CollectorSettings()).collect(1000.0)
    # tcp: 0A 0A 01 08 01 04; tcp6: 0A 01 01
    assert states(b) == expected(LISTEN=3, ESTABLISHED=4, CLOSE_WAIT=1, FIN_WAIT1=1)
    assert one(b, "conntrack_usage") == 0.0
    # file-nr "1024 0 9223372036854775807": the max is huge, the share tiny but exact
    assert one(b, "file_handles_usage") == 1024 * 100.0 / 9223372036854775807


def test_fixture_t1():
    c = ConnectionsCollector(HOST_T0, CollectorSettings(raw_counters=True))
    c.collect(1000.0)
    c.roots = HOST_T1
    b = c.collect(1010.0)
    # tcp: 0A 0A 01 06 06 02 03 09; tcp6: 0A 01 0B 05 07
    assert states(b) == expected(
        LISTEN=3, ESTABLISHED=2, TIME_WAIT=2, SYN_SENT=1, SYN_RECV=1, LAST_ACK=1, CLOSING=1, FIN_WAIT2=1, CLOSE=1
    )
    assert one(b, "conntrack_usage") == 25.0  # 65536 / 262144
    assert one(b, "file_handles_usage") == 1.0  # 2000 / 200000
    assert (b.counters["nf_conntrack_count"], b.counters["nf_conntrack_max"]) == (65536, 262144)
    assert (b.counters["fs.file-nr.allocated"], b.counters["fs.file-nr.unused"], b.counters["fs.file-nr.max"]) == (
        2000, 0, 200000)


def test_no_conntrack_module_and_no_ipv6(tmp_path: Path):
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    shutil.rmtree(tmp_path / "proc" / "sys" / "net" / "netfilter")
    (tmp_path / "proc" / "net" / "tcp6").unlink()
    b = ConnectionsCollector(Roots.under(tmp_path), CollectorSettings(raw_counters=True)).collect(1000.0)
    assert one(b, "conntrack_usage") is None
    assert "nf_conntrack_count" not in b.counters and "nf_conntrack_max" not in b.counters  # absent, not 0
    assert states(b) == expected(LISTEN=2, ESTABLISHED=2, CLOSE_WAIT=1, FIN_WAIT1=1)
    assert b.errors == []  # both are how some kernels are, not failures


def copy_of_t0(tmp_path: Path) -> Path:
    shutil.copytree(HOST_T0.proc, tmp_path / "proc")
    return tmp_path / "proc"


def test_without_net_tcp_conntrack_and_file_handles_are_still_read(tmp_path: Path, caplog):
    proc = copy_of_t0(tmp_path)
    (proc / "net" / "tcp").unlink()
    c = ConnectionsCollector(Roots.under(tmp_path), CollectorSettings())
    with caplog.at_level(logging.WARNING, logger="collectors.connections"):
        batches = [c.collect(1000.0 + 10 * n) for n in range(3)]
    for b in batches:
        assert states(b) == {}  # IPv6 counts alone would read as a drop in connections
        assert one(b, "conntrack_usage") == 0.0
        assert one(b, "file_handles_usage") == 1024 * 100.0 / 9223372036854775807
        assert b.errors == ["net/tcp:FileNotFoundError"]  # counted every cycle...
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and f"{proc}/net/tcp" in logged[0], logged  # ...logged once, naming the file


def test_a_bad_file_nr_costs_only_file_handle_usage(tmp_path: Path):
    proc = copy_of_t0(tmp_path)
    (proc / "sys" / "fs" / "file-nr").write_text("not numbers\n")
    b = ConnectionsCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "file_handles_usage") is None
    assert states(b) == expected(LISTEN=3, ESTABLISHED=4, CLOSE_WAIT=1, FIN_WAIT1=1)
    assert one(b, "conntrack_usage") == 0.0
    assert b.errors == ["file-nr:ValueError"]


def test_an_unreadable_conntrack_count_is_an_error_but_a_missing_module_is_not(tmp_path: Path):
    proc = copy_of_t0(tmp_path)
    (proc / "sys" / "net" / "netfilter" / "nf_conntrack_count").write_text("garbage\n")
    b = ConnectionsCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0)
    assert one(b, "conntrack_usage") is None
    assert one(b, "file_handles_usage") is not None and states(b)
    assert b.errors == ["nf_conntrack:ValueError"]
    shutil.rmtree(proc / "sys" / "net" / "netfilter")
    assert ConnectionsCollector(Roots.under(tmp_path), CollectorSettings()).collect(1000.0).errors == []


def test_a_netlink_dump_that_gets_no_answer_gives_up_at_its_deadline():
    # A socket pair whose other end never answers stands for a stalled sock_diag dump.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            connections._count_dump(a, b"request", [0] * 16, time.monotonic() + 0.2)
        assert 0.2 <= time.monotonic() - t0 < 0.5
        assert a.gettimeout() is None  # still a blocking socket: no poll() before each recv


def test_a_stalled_netlink_dump_is_counted_and_this_cycle_reads_proc(monkeypatch, caplog):
    def stalled(legacy: bool, states: int = 0, timeout: float = 0) -> list[int]:
        raise TimeoutError("sock_diag: no answer by the deadline")

    monkeypatch.setattr(connections, "sock_diag_tcp_states", stalled)
    c = ConnectionsCollector(Roots(), CollectorSettings())
    with caplog.at_level(logging.WARNING, logger="collectors.connections"):
        first, second = c.collect(time.time()), c.collect(time.time() + 1)
    assert set(states(first)) == set(TCP_STATES.values())  # from /proc/net/tcp
    assert first.errors == second.errors == ["sock_diag:TimeoutError"]
    assert c.tcp_source == "legacy"  # a stall is not a refusal: netlink is tried again next cycle
    assert len(caplog.records) == 1 and "sock_diag" in caplog.records[0].getMessage()


def _agree(read_a, read_b, index: int | None = None, tries: int = 5) -> tuple[list[int], list[int]]:
    """Both readings, retried while other processes change the socket table in between."""
    for _ in range(tries):
        a, b = read_a(), read_b()
        if (a[index] == b[index]) if index is not None else (a == b):
            break
        time.sleep(0.05)
    return a, b


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-dump", "v2-per-family"])
def test_live_netlink_and_proc_agree(legacy: bool):
    def netlink() -> list[int]:
        return sock_diag_tcp_states(legacy)

    with socket.socket() as l4, socket.socket(socket.AF_INET6) as l6:
        l4.bind(("127.0.0.1", 0))
        l4.listen()
        l6.bind(("::1", 0))
        l6.listen()
        nl, pr = _agree(netlink, lambda: proc_tcp_states(PROC_TCP), LISTEN)
        assert nl[LISTEN] == pr[LISTEN] >= 2
        # And the whole table, with established pairs of our own in it, IPv4 and IPv6.
        with socket.create_connection(l4.getsockname()) as c4, socket.create_connection(l6.getsockname()[:2]) as c6:
            a4, _ = l4.accept()
            a6, _ = l6.accept()
            with a4, a6:
                nl, pr = _agree(netlink, lambda: proc_tcp_states(PROC_TCP))
                assert nl == pr
                assert nl[1] >= 4


def test_live_collector_counts_our_listening_socket():
    c = ConnectionsCollector(Roots(), CollectorSettings())
    c.tcp_states_every = 1  # a dump each cycle, to compare with the kernel at once

    def listening() -> int:
        return int(states(c.collect(time.time()))["LISTEN"])

    for _ in range(5):  # another process may open or close a listener meanwhile
        before = listening()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            during = listening()
        after = listening()
        if during - before == 1 and during - after == 1:
            break
    assert (during - before, during - after) == (1, 1)
    assert c.tcp_source in ("legacy", "v2")  # the live path really was netlink, not /proc


def test_live_other_readings():
    b = ConnectionsCollector(Roots(), CollectorSettings(raw_counters=True)).collect(time.time())
    assert set(states(b)) == set(TCP_STATES.values())
    allocated, free, maximum = (int(v) for v in Path("/proc/sys/fs/file-nr").read_text().split())
    assert one(b, "file_handles_usage") == pytest.approx((allocated - free) * 100.0 / maximum, rel=0.2, abs=1e-9)
    assert b.counters["fs.file-nr.max"] == maximum  # the limit does not move under a test
    assert b.counters["fs.file-nr.allocated"] == pytest.approx(allocated, rel=0.2)
    count = Path("/proc/sys/net/netfilter/nf_conntrack_count")
    if count.exists():
        assert b.counters["nf_conntrack_max"] == int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    if count.exists():  # the collector's reading lies between two readings of the kernel's count
        limit = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
        before = int(count.read_text())
        usage = one(ConnectionsCollector(Roots(), CollectorSettings()).collect(time.time()), "conntrack_usage")
        after = int(count.read_text())
        assert min(before, after) * 100.0 / limit <= usage <= max(before, after) * 100.0 / limit
    else:
        assert one(b, "conntrack_usage") is None


def test_live_time_wait_comes_from_sockstat_and_matches_the_dump():
    # Closing the client side first leaves it in TIME_WAIT for a minute.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        for _ in range(20):
            client = socket.create_connection(server.getsockname())
            conn, _ = server.accept()
            client.close()
            conn.close()
    c = ConnectionsCollector(Roots(), CollectorSettings())

    def collected() -> list[int]:
        tw = int(states(c.collect(time.time()))["TIME_WAIT"])
        return [tw]

    ours, dumped = _agree(collected, lambda: [sock_diag_tcp_states(True)[6]])
    assert ours == dumped and ours[0] >= 20


def test_live_collector_takes_time_wait_from_sockstat(monkeypatch):
    monkeypatch.setattr(connections, "sockstat_time_wait", lambda proc: 123456)
    got = states(ConnectionsCollector(Roots(), CollectorSettings()).collect(time.time()))
    assert got["TIME_WAIT"] == 123456


def test_sockstat_without_a_tw_field_is_none(tmp_path: Path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "sockstat").write_text("sockets: used 8\nTCP: inuse 1 orphan 0\n")
    assert sockstat_time_wait(tmp_path) is None
    assert sockstat_time_wait(tmp_path / "missing") is None


def test_live_states_are_dumped_every_third_cycle_and_time_wait_each_cycle(monkeypatch):
    dumps, sockstat_reads = [], []
    real = connections.sock_diag_tcp_states

    def counted(*args, **kwargs) -> list[int]:
        dumps.append(1)
        return real(*args, **kwargs)

    def time_wait(proc) -> int:  # a count that moves every read, to see which cycle used which
        sockstat_reads.append(1)
        return 1000 + len(sockstat_reads)

    monkeypatch.setattr(connections, "sock_diag_tcp_states", counted)
    monkeypatch.setattr(connections, "sockstat_time_wait", time_wait)
    c = ConnectionsCollector(Roots(), CollectorSettings())
    assert c.tcp_states_every == connections.TCP_STATES_EVERY == 3
    seen = [states(c.collect(time.time() + i)) for i in range(7)]
    assert len(dumps) == 3  # cycles 1, 4 and 7
    assert [s["LISTEN"] for s in seen[:3]] == [seen[0]["LISTEN"]] * 3  # repeated between dumps
    assert [s["TIME_WAIT"] for s in seen] == [1001 + i for i in range(7)]  # fresh every cycle
