"""NetCountersCollector: fixture deltas, every raw counter kept, real drops on loopback."""

from __future__ import annotations

import errno
import shutil
import socket
import time

import pytest

from collectors.netcounters import NetCountersCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.collectors.node_exporter import scrape_fixture
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch


def values(batch: Batch) -> dict[str, float]:
    return {s.metric: s.value for s in batch.samples}


def totals(batch: Batch) -> dict[tuple[str, str], float]:
    return {(s.metric, s.labels.get("proto", "")): s.value for s in batch.totals}


def run_fixture() -> tuple[Batch, Batch]:
    c = NetCountersCollector(HOST_T0, CollectorSettings())
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def test_fixture_deltas_and_totals():
    first, b = run_fixture()
    assert first.samples == []
    # t0 -> t1: ListenOverflows 12 -> 19, ListenDrops 15 -> 24, Udp RcvbufErrors 40 -> 140 and
    # Udp6 5 -> 25, SndbufErrors 2 -> 5 and 1 -> 2, softnet dropped 0x10+0x05 -> 0x1a+0x0f.
    assert values(b) == {"tcp_listen_overflows": 7, "tcp_listen_drops": 9, "udp_rcvbuf_errors": 120,
                         "udp_sndbuf_errors": 4, "softnet_dropped": 20}
    assert totals(b) == {("tcp_listen_overflows_total", ""): 19, ("tcp_listen_drops_total", ""): 24,
                         ("udp_rcvbuf_errors_total", "udp"): 140, ("udp_rcvbuf_errors_total", "udp6"): 25,
                         ("udp_sndbuf_errors_total", "udp"): 5, ("udp_sndbuf_errors_total", "udp6"): 2,
                         ("softnet_dropped_total", ""): 41}
    for s in b.samples + b.totals:
        assert set(s.labels) == set(get(s.metric).labels), s


def _raw_fixture_counters(top) -> dict[str, float]:
    """Every value in the fixture files, parsed here independently of the collector."""
    out: dict[str, float] = {}
    for name in ("snmp", "netstat"):
        lines = (top / "net" / name).read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            prefix = head.split(":")[0]
            out.update({f"{prefix}.{k}": float(v) for k, v in zip(head.split()[1:], vals.split()[1:])})
    for line in (top / "net" / "snmp6").read_text().splitlines():
        k, v = line.split()
        for p in ("UdpLite6", "Udp6", "Icmp6", "Ip6"):
            if k.startswith(p):
                k = p + "." + k[len(p):]
                break
        out[k] = float(v)
    return out


def test_every_raw_value_kept_by_kernel_name():
    _, b = run_fixture()
    raw = _raw_fixture_counters(HOST_T1.proc)
    assert b.counters == {**raw, "softnet.dropped": 41}
    assert b.counters["Udp6.RcvbufErrors"] == 25
    assert b.counters["TcpExt.ListenOverflows"] == 19
    assert b.counters["Icmp6.InMsgs"] == raw["Icmp6.InMsgs"]


def test_counters_going_backwards_give_no_negative_numbers():
    c = NetCountersCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    assert c.collect(1010.0).samples == []  # every watched counter went back: new baseline
    c.roots = HOST_T1
    assert values(c.collect(1020.0))["tcp_listen_overflows"] == 7


def test_ipv6_disabled_is_a_missing_reading(tmp_path):
    # A kernel booted with ipv6.disable=1 has no /proc/net/snmp6: UDP deltas are Udp's alone.
    for t, src in (("t0", HOST_T0), ("t1", HOST_T1)):
        shutil.copytree(src.proc / "net", tmp_path / t / "proc" / "net")
        (tmp_path / t / "proc" / "net" / "snmp6").unlink()
    c = NetCountersCollector(Roots.under(tmp_path / "t0"), CollectorSettings())
    c.collect(1000.0)
    c.roots = Roots.under(tmp_path / "t1")
    b = c.collect(1010.0)
    assert values(b)["udp_rcvbuf_errors"] == 100
    assert ("udp_rcvbuf_errors_total", "udp6") not in totals(b)
    assert b.errors == []  # a kernel without IPv6, not a failure


@pytest.mark.parametrize("missing", ["snmp", "netstat", "snmp6", "softnet_stat"])
def test_a_file_that_cannot_be_read_costs_only_its_counters(tmp_path, missing):
    for t, src in (("t0", HOST_T0), ("t1", HOST_T1)):
        shutil.copytree(src.proc / "net", tmp_path / t / "proc" / "net")
    # A directory in the file's place: it exists (so snmp6 is not "no IPv6") but reads EISDIR.
    broken = tmp_path / "t1" / "proc" / "net" / missing
    broken.unlink()
    broken.mkdir()
    c = NetCountersCollector(Roots.under(tmp_path / "t0"), CollectorSettings())
    whole = c.collect(1000.0)
    c.roots = Roots.under(tmp_path / "t1")
    b = c.collect(1010.0)
    assert b.errors == [f"net/{missing}:IsADirectoryError"]
    lost = {k for k in whole.counters if k not in b.counters}
    prefixes = {"snmp": ("Ip.", "Icmp.", "IcmpMsg.", "Tcp.", "Udp.", "UdpLite."), "netstat": ("TcpExt.", "IpExt.", "MPTcpExt."),
                "snmp6": ("Ip6.", "Icmp6.", "Udp6.", "UdpLite6."), "softnet_stat": ("softnet.",)}[missing]
    assert lost and all(k.startswith(prefixes) for k in lost), lost
    kept = values(b)
    # each delta is there unless its own counter was in the broken file
    assert ("tcp_listen_overflows" in kept) == (missing != "netstat")
    assert ("udp_rcvbuf_errors" in kept) == (missing != "snmp")
    assert ("softnet_dropped" in kept) == (missing != "softnet_stat")


def test_totals_match_node_exporter():
    text = scrape_fixture("--collector.netstat", "--collector.softnet")
    theirs = {}
    for line in text.splitlines():
        if line.startswith(("node_netstat_", "node_softnet_dropped_total")):
            name, v = line.rsplit(" ", 1)
            theirs[name] = float(v)
    t = totals(NetCountersCollector(HOST_T1, CollectorSettings()).collect(1000.0))
    assert t[("tcp_listen_overflows_total", "")] == theirs["node_netstat_TcpExt_ListenOverflows"]
    assert t[("tcp_listen_drops_total", "")] == theirs["node_netstat_TcpExt_ListenDrops"]
    assert t[("udp_rcvbuf_errors_total", "udp")] == theirs["node_netstat_Udp_RcvbufErrors"]
    assert t[("udp_rcvbuf_errors_total", "udp6")] == theirs["node_netstat_Udp6_RcvbufErrors"]
    assert t[("udp_sndbuf_errors_total", "udp6")] == theirs["node_netstat_Udp6_SndbufErrors"]
    assert t[("softnet_dropped_total", "")] == sum(v for k, v in theirs.items() if k.startswith("node_softnet_dropped_total"))



# ---- this machine


def _kernel(name: str, field: str) -> float:
    with open(f"/proc/net/{name}") as f:
        lines = f.read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        h, v = head.split(), vals.split()
        if h[0] == field.split(".")[0] + ":":
            return float(v[h.index(field.split(".")[1])])
    raise KeyError(field)


def test_live_udp_receive_buffer_overflow():
    c = NetCountersCollector(Roots(), CollectorSettings())
    c.collect(time.time())
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel rounds up to its minimum
        rx.bind(("127.0.0.1", 0))
        for _ in range(500):  # never read: the buffer fills after a few datagrams
            tx.sendto(b"x" * 1400, rx.getsockname())
    finally:
        rx.close()
        tx.close()
    before = _kernel("snmp", "Udp.RcvbufErrors")
    b = c.collect(time.time())
    after = _kernel("snmp", "Udp.RcvbufErrors")
    assert values(b)["udp_rcvbuf_errors"] >= 400
    assert before <= totals(b)[("udp_rcvbuf_errors_total", "udp")] <= after


def test_live_tcp_accept_queue_overflow():
    c = NetCountersCollector(Roots(), CollectorSettings())
    c.collect(time.time())
    srv = socket.socket()
    clients = []
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)  # never accepted
        for _ in range(20):
            s = socket.socket()
            s.setblocking(False)
            clients.append(s)
            err = s.connect_ex(srv.getsockname())
            assert err in (0, errno.EINPROGRESS, errno.EAGAIN)
        time.sleep(0.3)  # let loopback finish the handshakes it can
        before = _kernel("netstat", "TcpExt.ListenOverflows")
        b = c.collect(time.time())
        after = _kernel("netstat", "TcpExt.ListenOverflows")
    finally:
        for s in clients:
            s.close()
        srv.close()
    assert values(b)["tcp_listen_overflows"] >= 1
    assert before <= totals(b)[("tcp_listen_overflows_total", "")] <= after


def _kernel_all() -> dict[str, float]:
    """Every counter of /proc/net/snmp, netstat (header/value line pairs) and snmp6 (name value)."""
    out: dict[str, float] = {}
    for name in ("snmp", "netstat"):
        lines = open(f"/proc/net/{name}").read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            h, v = head.split(), vals.split()
            out.update({f"{h[0][:-1]}.{k}": float(x) for k, x in zip(h[1:], v[1:])})
    for line in open("/proc/net/snmp6").read().splitlines():
        k, v = line.split()
        proto = next(p for p in ("Ip6", "Icmp6", "UdpLite6", "Udp6") if k.startswith(p))
        out[f"{proto}.{k[len(proto):]}"] = float(v)
    return out


def test_live_every_raw_counter_is_the_kernels():
    before = _kernel_all()
    b = NetCountersCollector(Roots(), CollectorSettings(raw_counters=True)).collect(time.time())
    after = _kernel_all()
    got = {k: v for k, v in b.counters.items() if k in before}
    assert len(got) >= 100 and {"TcpExt.ListenOverflows", "Udp.RcvbufErrors", "Udp6.RcvbufErrors"} <= set(got)
    for k, v in got.items():  # read between the two readings: within them (counters only grow)
        assert min(before[k], after[k]) <= v <= max(before[k], after[k]), k
