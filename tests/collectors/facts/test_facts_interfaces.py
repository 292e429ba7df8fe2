"""Interfaces, addresses and prefix lengths: fixture trees, and the live machine against `ip -j addr`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from collectors.facts.interfaces import interfaces
from collectors.roots import Roots
from tests.conftest import need_tool

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def by_name(roots: Roots) -> dict[str, dict]:
    ifaces, err = interfaces(roots)
    assert err is None
    return {i["name"]: i for i in ifaces}


def test_two_interfaces_with_prefixes():
    i = by_name(Roots.under(FIX / "running"))
    assert sorted(i) == ["eth0", "eth1", "lo"]
    assert (i["eth0"]["up"], i["eth0"]["loopback"], i["eth0"]["mtu"]) == (True, False, 1500)
    assert i["eth1"]["mtu"] == 9000
    assert i["lo"]["up"] is True and i["lo"]["loopback"] is True  # operstate "unknown", IFF_UP set
    v4 = {n: [a for a in x["addresses"] if a["family"] == "inet"] for n, x in i.items()}
    assert v4["eth0"] == [{"family": "inet", "address": "172.16.5.20", "prefixlen": 20,
                           "netmask": "255.255.240.0", "dynamic": True}]  # flags 0 in diag_addr_flags.json
    # The gatewayed 10.8.0.0/16 route on eth1 does not decide anything.
    assert v4["eth1"] == [{"family": "inet", "address": "192.0.2.10", "prefixlen": 26,
                           "netmask": "255.255.255.192", "dynamic": False}]
    assert v4["lo"] == [{"family": "inet", "address": "127.0.0.1", "prefixlen": 8,
                         "netmask": "255.0.0.0", "dynamic": False}]
    v6 = [a for a in i["eth0"]["addresses"] if a["family"] == "inet6"]
    assert v6 == [
        {"family": "inet6", "address": "2001:db8:5::20", "prefixlen": 64,
         "netmask": "ffff:ffff:ffff:ffff::", "dynamic": True},  # SLAAC: IFA_F_PERMANENT absent
        {"family": "inet6", "address": "fe80::f816:3eff:fe12:3456", "prefixlen": 64,
         "netmask": "ffff:ffff:ffff:ffff::", "dynamic": False},
    ]


def test_down_interface_and_loopback_without_main_route():
    i = by_name(Roots.under(FIX / "bare"))
    assert i["eth1"]["up"] is False and i["eth1"]["addresses"] == []
    assert [(a["address"], a["prefixlen"]) for a in i["eth0"]["addresses"]] == [("10.1.2.3", 24)]
    assert [(a["address"], a["prefixlen"]) for a in i["lo"]["addresses"]] == [("127.0.0.1", 8), ("::1", 128)]


def test_fixture_without_flags_file_reads_ipv4_as_static():
    i = by_name(Roots.under(FIX / "bare"))
    assert not any(a["dynamic"] for a in i["eth0"]["addresses"])


def test_unreadable_tree_gives_an_error_not_an_exception(tmp_path):
    ifaces, err = interfaces(Roots.under(tmp_path))
    assert ifaces == [] and err


def test_live_matches_ip_addr():
    need_tool("ip")
    ip = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True, text=True).stdout)
    ours = by_name(Roots())
    assert ours["lo"]["up"] is True
    assert {"family": "inet", "address": "127.0.0.1", "prefixlen": 8, "netmask": "255.0.0.0",
            "dynamic": False} in ours["lo"]["addresses"]
    for link in ip:
        mine = ours[link["ifname"]]
        assert mine["mtu"] == link["mtu"]
        assert mine["up"] == ("UP" in link["flags"] and link["operstate"] in ("UP", "UNKNOWN"))
        want = sorted((a["family"], a["local"], a["prefixlen"], bool(a.get("dynamic")))
                      for a in link["addr_info"] if a["family"] in ("inet", "inet6"))
        got = sorted((a["family"], a["address"], a["prefixlen"], a["dynamic"]) for a in mine["addresses"])
        assert got == want, link["ifname"]
