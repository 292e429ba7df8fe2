"""NetworkCollector against the fixture tree (exact numbers) and against this machine."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import time

import psutil
import pytest

from collectors.network import NetworkCollector
from collectors.roots import Roots
from collectors.settings import BandwidthCap, CollectorSettings
from tests.collectors.node_exporter import scrape_fixture
from tests.conftest import HOST_T0, HOST_T1
from diag.catalogue import get
from diag.model import Batch


def by_label(batch: Batch, metric: str, key: str = "interface") -> dict[str, float]:
    return {s.labels[key]: s.value for s in batch.samples + batch.totals if s.metric == metric}


def scopes(batch: Batch) -> dict[str, str]:
    return {s.labels["interface"]: s.labels["scope"] for s in batch.samples if s.metric == "net_in"}


def run_fixture(settings: CollectorSettings) -> tuple[Batch, Batch]:
    c = NetworkCollector(HOST_T0, settings)
    first = c.collect(1000.0)
    c.roots = HOST_T1  # same instance: rates and the scope cache carry over
    return first, c.collect(1010.0)


def test_fixture_rates_scopes_and_usage():
    first, b = run_fixture(CollectorSettings())
    # First reading: totals and link speeds, no rates yet.
    assert not [s for s in first.samples if s.metric.startswith(("net_in", "net_out", "bandwidth"))]
    assert by_label(first, "net_receive_bytes_total")["eth0"] == 86271556

    # fib_trie + route: eth0 192.0.2.2 (outside every private range) -> public; ens6 100.64.3.4
    # (RFC 6598) but also 2a01:4f8:... (global IPv6) -> public; eth1 10.0.0.5 + fd00::5,
    # docker0 172.17.0.1, veth fe80:: only -> private; lo skipped.
    assert scopes(b) == {"eth0": "public", "ens6": "public", "eth1": "private",
                         "docker0": "private", "veth9f3a1b2": "private"}
    # 10 s apart: eth0 rx +12,500,000 B = 10 Mbit/s, tx +2,500,000 B = 2 Mbit/s ...
    assert by_label(b, "net_in") == {"eth0": 10e6, "ens6": 1e6, "eth1": 100e6, "docker0": 1e6, "veth9f3a1b2": 2e6}
    assert by_label(b, "net_out") == {"eth0": 2e6, "ens6": 5e5, "eth1": 50e6, "docker0": 2e6, "veth9f3a1b2": 1e6}
    assert by_label(b, "net_in_packets")["eth0"] == 1000
    assert by_label(b, "net_out_packets")["eth0"] == 500
    assert by_label(b, "net_in_errors")["eth0"] == 1
    assert by_label(b, "net_in_drops")["eth0"] == 2
    assert by_label(b, "net_out_errors")["eth0"] == 0
    assert by_label(b, "net_out_drops")["eth0"] == 0.5
    assert by_label(b, "net_in_packets")["eth1"] == 10000
    # speed files: eth0 1000, eth1 and veth 10000 Mb/s; docker0 -1 and ens6 missing: unknown
    assert by_label(b, "net_link_speed") == {"eth0": 1e9, "eth1": 1e10, "veth9f3a1b2": 1e10}
    # no cap: traffic of the known-speed links against their summed speed
    usage_in, usage_out = by_label(b, "bandwidth_usage_in", "scope"), by_label(b, "bandwidth_usage_out", "scope")
    assert usage_in["public"] == pytest.approx(10e6 / 1e9 * 100)  # 1 %
    assert usage_out["public"] == pytest.approx(2e6 / 1e9 * 100)
    assert usage_in["private"] == pytest.approx((100e6 + 2e6) / 20e9 * 100)  # 0.51 %
    assert usage_out["private"] == pytest.approx((50e6 + 1e6) / 20e9 * 100)
    # raw totals at t1, lo excluded
    assert by_label(b, "net_receive_bytes_total") == {"eth0": 98771556, "eth1": 1025000000, "ens6": 6250000,
                                                      "veth9f3a1b2": 6500000, "docker0": 3250000}
    assert by_label(b, "net_transmit_drops_total")["eth0"] == 7
    assert by_label(b, "net_receive_errors_total")["eth0"] == 13
    for s in b.samples + b.totals:
        assert set(s.labels) == set(get(s.metric).labels), s


def test_fixture_caps_and_pins():
    settings = CollectorSettings(bandwidth_caps={"public": BandwidthCap(inbound=20e6)},
                                 interface_scopes={"docker0": "public"})
    _, b = run_fixture(settings)
    assert scopes(b)["docker0"] == "public"
    usage_in, usage_out = by_label(b, "bandwidth_usage_in", "scope"), by_label(b, "bandwidth_usage_out", "scope")
    # cap: every public interface's traffic, eth0 + ens6 + docker0 = 12 Mbit/s of 20
    assert usage_in["public"] == pytest.approx(60.0)
    # no outbound cap: back to link speed (eth0 only has one): 2 Mbit/s of 1000
    assert usage_out["public"] == pytest.approx(0.2)
    assert usage_in["private"] == pytest.approx((100e6 + 2e6) / 20e9 * 100)


def test_no_cap_and_no_speed_gives_no_usage():
    # Pin everything to a scope whose only interfaces have an unknown speed.
    _, b = run_fixture(CollectorSettings(interface_scopes={"docker0": "lab", "ens6": "lab"}))
    assert "lab" not in by_label(b, "bandwidth_usage_in", "scope")
    assert by_label(b, "net_in")["ens6"] == 1e6


def test_counters_going_backwards_give_no_rate():
    c = NetworkCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    b = c.collect(1010.0)
    assert all(s.value >= 0 for s in b.samples)
    assert by_label(b, "net_in") == {}  # every byte counter went back: a new baseline
    assert by_label(b, "net_out_errors")["eth0"] == 0  # unchanged counters still read 0
    assert "public" not in by_label(b, "bandwidth_usage_in", "scope")
    assert by_label(b, "net_receive_bytes_total")["eth0"] == 86271556


def test_scope_map_refreshes_at_most_once_a_minute():
    c = NetworkCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.settings = CollectorSettings(interface_scopes={"eth0": "private"})
    assert scopes(c.collect(1030.0))["eth0"] == "public"  # cached
    assert scopes(c.collect(1060.0))["eth0"] == "private"  # refreshed


def test_totals_match_node_exporter():
    text = scrape_fixture("--collector.netdev", "--no-collector.netdev.netlink")
    ours = NetworkCollector(HOST_T1, CollectorSettings()).collect(1000.0)
    pairs = {"receive_bytes": "bytes", "transmit_bytes": "bytes", "receive_packets": "packets",
             "transmit_packets": "packets", "receive_drops": "drop", "transmit_drops": "drop",
             "receive_errors": "errs", "transmit_errors": "errs"}
    for ours_name, theirs in pairs.items():
        direction = ours_name.split("_")[0]
        for iface, value in by_label(ours, f"net_{ours_name}_total").items():
            line = f'node_network_{direction}_{theirs}_total{{device="{iface}"}} '
            assert float(text.split(line, 1)[1].split()[0]) == value, line



# ---- this machine


def _read_dev() -> dict[str, tuple[int, int]]:
    out = {}
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, rest = line.split(":", 1)
            v = rest.split()
            out[name.strip()] = (int(v[0]), int(v[8]))
    return out


def _send_some_traffic() -> None:
    """A few UDP datagrams to the default gateway's discard port, so a real NIC moves."""
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            v = line.split()
            if v[1] == "00000000" and v[2] != "00000000":
                gw = socket.inet_ntoa(int(v[2], 16).to_bytes(4, "little"))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    for _ in range(50):
                        try:
                            s.sendto(b"x" * 1000, (gw, 9))
                        except OSError:
                            return
                return


def test_live_rates_match_proc_net_dev():
    c = NetworkCollector(Roots(), CollectorSettings())
    a0 = _read_dev()
    n0 = time.time()
    c.collect(n0)
    a1 = _read_dev()
    _send_some_traffic()
    time.sleep(0.3)
    b0 = _read_dev()
    n1 = time.time()
    b = c.collect(n1)
    b1 = _read_dev()
    net_in, net_out = by_label(b, "net_in"), by_label(b, "net_out")
    assert set(net_in) == set(a0) - {"lo"}
    for iface in net_in:
        for col, rate in ((0, net_in[iface]), (1, net_out[iface])):
            moved = rate * (n1 - n0) / 8  # bytes the collector saw between its two readings
            assert b0[iface][col] - a1[iface][col] - 1e-6 <= moved <= b1[iface][col] - a0[iface][col] + 1e-6
    for iface, total in by_label(b, "net_receive_bytes_total").items():
        assert b0[iface][0] <= total <= b1[iface][0]


def _expected_scope(addrs: list) -> str:
    private = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                 "169.254.0.0/16", "fe80::/10", "fc00::/7", "127.0.0.0/8", "::1/128")]
    for a in addrs:
        if a.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(a.address.split("%")[0])
        if not any(ip.version == n.version and ip in n for n in private):
            return "public"
    return "private"


def test_live_scope_agrees_with_getifaddrs():
    # psutil reads addresses over netlink/getifaddrs: an independent source for the tree parse.
    c = NetworkCollector(Roots(), CollectorSettings())
    c.collect(time.time() - 1)
    b = c.collect(time.time())
    addrs = psutil.net_if_addrs()
    for iface, scope in scopes(b).items():
        assert scope == _expected_scope(addrs.get(iface, [])), iface
    for iface, speed in by_label(b, "net_link_speed").items():
        with open(f"/sys/class/net/{iface}/speed") as f:
            assert speed == int(f.read()) * 1e6


def test_interface_born_between_refreshes_waits_for_its_scope(tmp_path):
    shutil.copytree(HOST_T1.proc / "net", tmp_path / "proc" / "net")
    dev = tmp_path / "proc" / "net" / "dev"
    dev.write_text(dev.read_text() + "  tun9:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0\n")
    c = NetworkCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.roots = Roots.under(tmp_path)
    b = c.collect(1010.0)
    assert "tun9" not in by_label(b, "net_in")  # no scope known yet: no sample under a guessed label
    assert by_label(b, "net_receive_bytes_total")["tun9"] == 1000
    dev.write_text(dev.read_text().replace("  tun9:    1000", "  tun9:    6000"))
    b = c.collect(1070.0)
    assert scopes(b)["tun9"] == "private"  # no address anywhere
    assert by_label(b, "net_in")["tun9"] == 5000 * 8 / 60


def test_fixture_raw_counters_by_kernel_name():
    assert run_fixture(CollectorSettings())[1].counters == {}  # only when asked for
    _, b = run_fixture(CollectorSettings(raw_counters=True))
    # t1 eth0: rx 98771556 B, 11990 pkts, errs 13, drop 27; tx 2621987 B, 6103 pkts, drop 7
    c = b.counters
    assert (c["netdev.eth0.rx_bytes"], c["netdev.eth0.rx_packets"], c["netdev.eth0.rx_errors"],
            c["netdev.eth0.rx_dropped"]) == (98771556, 11990, 13, 27)
    assert (c["netdev.eth0.tx_bytes"], c["netdev.eth0.tx_packets"], c["netdev.eth0.tx_dropped"]) == (2621987, 6103, 7)
    assert c["netdev.eth1.multicast"] == 12 and c["netdev.veth9f3a1b2.tx_compressed"] == 0
    assert c["netdev.lo.rx_bytes"] == 5193  # read, though lo gives no rate samples
    assert len([k for k in c if k.startswith("netdev.eth0.")]) == 16


def test_a_gone_interface_is_forgotten(tmp_path):
    # t0, t1, then a tree where the veth is gone (container stopped), then it is back.
    shutil.copytree(HOST_T1.proc / "net", tmp_path / "proc" / "net")
    dev = tmp_path / "proc" / "net" / "dev"
    t1_text = dev.read_text()
    dev.write_text("".join(line for line in t1_text.splitlines(True) if "veth9f3a1b2" not in line))
    gone = Roots.under(tmp_path)
    c = NetworkCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T1
    assert "veth9f3a1b2" in by_label(c.collect(1010.0), "net_in")
    c.roots = gone
    b = c.collect(1020.0)
    assert "veth9f3a1b2" not in by_label(b, "net_in") and "veth9f3a1b2" not in by_label(b, "net_receive_bytes_total")
    assert len(c.rates) == 4 * 8  # eth0, eth1, ens6, docker0: 8 columns each, nothing of the veth
    # A veth of the same name later is a new interface: a new baseline, no rate from the old one's counters.
    dev.write_text(t1_text)
    b = c.collect(1030.0)
    assert "veth9f3a1b2" not in by_label(b, "net_in")
    assert by_label(b, "net_in")["eth0"] == 0.0  # the others carry on (same counters as at 1020)


# -- traffic volume (issue 20) ----------------------------------------------------------------------

def samples_of(batch: Batch, metric: str) -> dict[str, tuple[float, dict[str, str]]]:
    """Only batch.samples (what is stored and pushed), not the /metrics totals."""
    return {s.labels["interface"]: (s.value, s.labels) for s in batch.samples if s.metric == metric}


def test_bytes_per_interval_and_stored_byte_counters():
    first, b = run_fixture(CollectorSettings())
    assert samples_of(first, "net_in_bytes") == {}  # a first reading is a baseline
    # The raw counters are samples from the first reading on, labelled as the catalogue says.
    assert samples_of(first, "net_receive_bytes_total")["eth0"] == (86271556, {"interface": "eth0"})
    assert samples_of(b, "net_transmit_bytes_total")["eth0"] == (2621987, {"interface": "eth0"})
    assert "lo" not in samples_of(b, "net_receive_bytes_total")
    # eth0 rx 86,271,556 -> 98,771,556 B and tx +2,500,000 B within the 10 s
    assert samples_of(b, "net_in_bytes")["eth0"] == (12_500_000, {"interface": "eth0", "scope": "public"})
    assert samples_of(b, "net_out_bytes")["eth0"][0] == 2_500_000
    # bytes = rate x interval on every interface (net_in is bit/s)
    for iface, (v, _) in samples_of(b, "net_in_bytes").items():
        assert v == pytest.approx(by_label(b, "net_in")[iface] / 8 * 10)


def test_a_missed_cycle_keeps_every_byte():
    # Two collections 30 s apart (two cycles lost to a stall): the volume is the whole rise,
    # and the rate is spread over the 30 s, not the 10 s interval.
    c = NetworkCollector(HOST_T0, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T1
    b = c.collect(1030.0)
    assert samples_of(b, "net_in_bytes")["eth0"][0] == 12_500_000
    assert by_label(b, "net_in")["eth0"] == pytest.approx(12_500_000 * 8 / 30)


def test_counters_going_backwards_give_no_volume():
    c = NetworkCollector(HOST_T1, CollectorSettings())
    c.collect(1000.0)
    c.roots = HOST_T0
    b = c.collect(1010.0)
    assert samples_of(b, "net_in_bytes") == {} and samples_of(b, "net_out_bytes") == {}
    assert samples_of(b, "net_receive_bytes_total")["eth0"][0] == 86271556
