"""Connectivity diagnosis: the route step over fixture facts, and the whole walk against a real
network namespace (a veth pair, a TCP listener inside, real iptables rules) and the local host."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from diag import connectivity
from tests.conftest import free_port


def _facts(eth_up=True, defaults=None):
    return {
        "interfaces": [
            {"name": "lo", "up": True, "loopback": True, "operstate": "unknown",
             "addresses": [{"family": "inet", "address": "127.0.0.1", "prefixlen": 8}]},
            {"name": "eth0", "up": eth_up, "loopback": False, "operstate": "up" if eth_up else "down",
             "addresses": [{"family": "inet", "address": "192.0.2.2", "prefixlen": 24},
                           {"family": "inet6", "address": "2001:db8::2", "prefixlen": 64}]},
            {"name": "eth1", "up": True, "loopback": False, "operstate": "up",
             "addresses": [{"family": "inet", "address": "10.0.0.2", "prefixlen": 8}]},
            {"name": "eth2", "up": True, "loopback": False, "operstate": "up",
             "addresses": [{"family": "inet", "address": "10.1.2.3", "prefixlen": 24}]},
        ],
        "routes": {"default_v4": [{"gateway": "192.0.2.1", "interface": "eth0", "metric": 100},
                                  {"gateway": "10.0.0.1", "interface": "eth1", "metric": 50}]
                   if defaults is None else defaults, "default_v6": [], "error": None},
    }


# -- the route step over fixture facts ------------------------------------------------------------

def test_the_longest_connected_prefix_wins():
    s = connectivity.route_step(_facts(), "10.1.2.9", "i-1")
    assert s["verdict"] == "ok" and s["evidence"]["interface"] == "eth2" and s["evidence"]["prefixlen"] == 24
    s = connectivity.route_step(_facts(), "10.9.9.9", "i-1")
    assert s["evidence"]["interface"] == "eth1" and s["evidence"]["prefixlen"] == 8


def test_an_address_in_no_connected_network_takes_the_default_route_of_lowest_metric():
    s = connectivity.route_step(_facts(), "198.51.100.7", "i-1")
    assert s["verdict"] == "ok"
    assert s["evidence"] == {"interface": "eth1", "gateway": "10.0.0.1", "metric": 50, "default_route": True,
                             "operstate": "up", "up": True}
    assert "default route via 10.0.0.1" in s["message"]


def test_a_connected_network_on_a_down_interface_is_the_problem():
    s = connectivity.route_step(_facts(eth_up=False), "192.0.2.77", "i-1")
    assert s["verdict"] == "problem" and "eth0 is down" in s["message"]


def test_no_route_at_all_is_a_problem_and_ipv6_uses_its_own_defaults():
    s = connectivity.route_step(_facts(defaults=[]), "198.51.100.7", "i-1")
    assert s["verdict"] == "problem" and "no IPv4 default route" in s["message"]
    s = connectivity.route_step(_facts(), "2001:db8:ffff::1", "i-1")
    assert s["verdict"] == "problem" and "IPv6" in s["message"]
    assert connectivity.route_step(_facts(), "2001:db8::99", "i-1")["evidence"]["interface"] == "eth0"


def test_own_and_loopback_addresses_and_missing_facts():
    s = connectivity.route_step(_facts(), "10.1.2.3", "i-1")
    assert s["verdict"] == "ok" and s["evidence"]["local_address"] is True
    assert connectivity.route_step(_facts(), "127.0.0.9", "i-1")["evidence"]["interface"] == "lo"
    assert connectivity.route_step(None, "10.1.2.3", "i-1")["verdict"] == "unknown"


def test_a_monitored_destination_is_probed_at_an_address_the_source_shares_a_network_with():
    dst = {"interfaces": [
        {"name": "eth0", "up": True, "loopback": False, "addresses": [{"family": "inet", "address": "203.0.113.5",
                                                                          "prefixlen": 24}]},
        {"name": "eth1", "up": True, "loopback": False, "addresses": [{"family": "inet", "address": "10.1.2.50",
                                                                          "prefixlen": 24}]}]}
    assert connectivity.destination_address("i-2", dst, _facts(), same=False) == ("10.1.2.50", "")
    assert connectivity.destination_address("i-2", None, _facts(), same=False)[0] is None
    assert connectivity.destination_address("i-1", None, None, same=True)[0] == "127.0.0.1"


def test_a_remote_destinations_firewall_is_read_from_its_facts_only_for_the_ports_it_checked():
    facts = {"sshd": {"ports": [22]}, "firewall": {"tool": "iptables", "rules_checked": 3, "error": None, "drops": [
        {"port": 22, "proto": "tcp", "family": "inet", "chain": "INPUT", "rule": "-A INPUT -p tcp --dport 22 -j DROP"}]}}
    s = connectivity.destination_firewall_step("tcp", 22, "i-2", facts, None, "inet", local=False)
    assert s["verdict"] == "problem" and "--dport 22 -j DROP" in s["message"]
    assert connectivity.destination_firewall_step("tcp", 443, "i-2", facts, None, "inet", False)["verdict"] == "unknown"
    assert connectivity.destination_firewall_step("udp", 22, "i-2", facts, None, "inet", False)["verdict"] == "unknown"
    assert connectivity.destination_firewall_step("tcp", 22, None, None, None, "inet", False)["verdict"] == \
        "not_applicable"


def test_the_listener_step_matches_wildcards_and_names_a_listener_on_another_address():
    socks = [{"proto": "tcp", "family": "inet", "address": "127.0.0.1", "port": 5432, "process": "postgres"},
             {"proto": "tcp", "family": "inet6", "address": "::", "port": 443, "process": "nginx"}]
    assert connectivity.listener_step("tcp", 443, "i", "10.0.0.5", socks, None)["verdict"] == "ok"
    s = connectivity.listener_step("tcp", 5432, "i", "10.0.0.5", socks, None)
    assert s["verdict"] == "problem" and "only on 127.0.0.1" in s["message"]
    assert connectivity.listener_step("udp", 443, "i", "10.0.0.5", socks, None)["verdict"] == "problem"


# -- real parts ---------------------------------------------------------------------------------

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or
                                 shutil.which("iptables", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None,
                                 reason="needs root, iproute2 and iptables")

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def _iptables() -> str:
    return shutil.which("iptables", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))


@pytest.fixture
def service(tmp_path):
    from diag.config import load
    from diag.service import Service

    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    yield s
    s.close()


def _walk(service, **kw):
    kw.setdefault("dest_id", None)
    kw.setdefault("address", None)
    kw.setdefault("protocol", "tcp")
    kw.setdefault("timeout", 1.0)
    t0 = time.monotonic()
    out = connectivity.diagnose(service.parts.connectivity, service.instance_id, **kw)
    assert time.monotonic() - t0 < 10
    return out, {s["step"]: s for s in out["steps"]}


@needs_netns
def test_a_namespace_behind_a_veth_reachable_refused_and_dropped(tmp_path):
    from diag.config import load
    from diag.service import Service

    ns, n = f"dconn{os.getpid()}", os.getpid() % 200 + 20
    host_if, ns_if = f"dch{n}", f"dcn{n}"
    host_ip, ns_ip = f"10.251.{n}.1", f"10.251.{n}.2"
    port, closed = 18080, 18081
    listener = None
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/24", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["addr", "add", f"{ns_ip}/24", "dev", ns_if], ["link", "set", ns_if, "up"],
                    ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, str(port)],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        # The service starts after the veth exists: its first facts snapshot holds it.
        service = Service(load(env={}, data_dir=str(tmp_path / "data")))
        try:
            out, steps = _walk(service, address=ns_ip, port=port)
            assert out["verdict"] == "reachable", out
            assert steps["probe"]["evidence"]["outcome"] == "connected"
            assert steps["source_route"]["verdict"] == "ok" and steps["source_route"]["evidence"]["interface"] == host_if
            assert steps["destination_firewall"]["verdict"] == "not_applicable"
            assert steps["destination_listener"]["verdict"] == "not_applicable"

            out, steps = _walk(service, address=ns_ip, port=closed)
            assert out["verdict"] == "unreachable" and steps["probe"]["evidence"]["outcome"] == "refused"
            assert out["first_problem"]["step"] == "probe"

            subprocess.run(["ip", "netns", "exec", ns, _iptables(), "-I", "INPUT", "-p", "tcp", "--dport", str(port),
                            "-j", "DROP"], check=True)
            out, steps = _walk(service, address=ns_ip, port=port, timeout=1.0)
            assert out["verdict"] == "unreachable"
            assert steps["probe"]["evidence"]["outcome"] == "timed_out", steps["probe"]
            assert 900 <= steps["probe"]["evidence"]["elapsed_ms"] < 3000

            # The far end down: the veth loses its carrier and keeps its route; the route step
            # names the interface first. (An interface set down loses its connected route instead.)
            subprocess.run(["ip", "-n", ns, "link", "set", ns_if, "down"], check=True)
            # No new snapshot is taken: the route step reads this host's links as they are now.
            out, steps = _walk(service, address=ns_ip, port=port, timeout=0.5)
            assert steps["source_route"]["verdict"] == "problem" and f"{host_if} is down" in \
                steps["source_route"]["message"]
            assert out["verdict"] == "unreachable" and out["first_problem"]["step"] == "source_route"
        finally:
            service.close()
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_netns
def test_the_local_instance_as_destination_listener_and_a_real_host_drop_rule(service):
    port = free_port()
    out, steps = _walk(service, dest_id=service.instance_id, port=port)
    assert out["destination"]["address"] == "127.0.0.1"
    assert steps["destination_listener"]["verdict"] == "problem"
    assert "nothing listens" in steps["destination_listener"]["message"]
    assert steps["probe"]["evidence"]["outcome"] == "refused" and out["verdict"] == "unreachable"
    assert out["first_problem"]["step"] == "destination_listener"

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen(4)
        out, steps = _walk(service, dest_id=service.instance_id, port=port)
        assert steps["destination_listener"]["verdict"] == "ok" and out["verdict"] == "reachable", out
        assert steps["destination_firewall"]["verdict"] == "ok", steps["destination_firewall"]
        assert steps["source_firewall"]["verdict"] == "ok", steps["source_firewall"]

        rule = ["INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
        subprocess.run([_iptables(), "-I", *rule], check=True)
        try:
            out, steps = _walk(service, dest_id=service.instance_id, port=port, timeout=1.0)
        finally:
            subprocess.run([_iptables(), "-D", *rule], check=True)
    fw = steps["destination_firewall"]
    assert fw["verdict"] == "problem", fw
    assert f"--dport {port} -j DROP" in fw["message"] and fw["evidence"]["drops"][0]["port"] == port
    assert steps["probe"]["evidence"]["outcome"] == "timed_out"
    assert out["verdict"] == "unreachable" and out["first_problem"]["step"] == "destination_firewall"


@needs_netns
def test_a_host_output_drop_is_named_by_the_source_firewall_step(service):
    port = free_port()
    rule = ["OUTPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"]
    subprocess.run([_iptables(), "-I", *rule], check=True)
    try:
        out, steps = _walk(service, address="127.0.0.1", port=port, timeout=0.5)
    finally:
        subprocess.run([_iptables(), "-D", *rule], check=True)
    s = steps["source_firewall"]
    assert s["verdict"] == "problem" and f"--dport {port} -j DROP" in s["message"], s
    assert out["first_problem"]["step"] == "source_firewall"


def test_udp_refused_and_icmp_to_loopback(service):
    port = free_port()
    out, steps = _walk(service, address="127.0.0.1", port=port, protocol="udp")
    assert steps["probe"]["evidence"]["outcome"] == "refused"  # ICMP port unreachable from lo
    assert steps["destination_firewall"]["verdict"] == "not_applicable"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", port))
        out, steps = _walk(service, address="127.0.0.1", port=port, protocol="udp", timeout=0.3)
        assert steps["probe"]["evidence"]["outcome"] == "no_answer" and out["verdict"] == "unknown"
    out, steps = _walk(service, address="127.0.0.1", port=1, protocol="icmp")
    if os.geteuid() == 0:
        assert steps["probe"]["evidence"]["outcome"] == "echo_reply" and out["verdict"] == "reachable", out
    else:
        assert steps["probe"]["verdict"] in ("ok", "unknown")


def test_an_agent_source_is_walked_from_its_facts_and_its_probe_is_unknown_with_the_reason(service):
    agent = "i-agent-conn"
    facts = {**_facts(), "listening": [{"proto": "tcp", "family": "inet", "address": "0.0.0.0", "port": 8443,
                                        "pids": [], "process": "caddy"}],
             "sshd": {"ports": [22]}, "firewall": {"tool": "nft", "rules_checked": 4, "drops": [], "error": None}}
    service.instances.register(agent, hostname="agent-1")
    service.set_facts(agent, facts, time.time())
    out = connectivity.diagnose(service.parts.connectivity, agent, None, "198.51.100.7", 443, "tcp", 1.0)
    steps = {s["step"]: s for s in out["steps"]}
    assert steps["source_route"]["evidence"]["gateway"] == "10.0.0.1"
    assert steps["source_firewall"]["verdict"] == "unknown"
    assert steps["probe"]["verdict"] == "unknown" and "remote commands are not enabled" in steps["probe"]["message"]
    assert out["verdict"] == "unknown" and out["first_problem"] is None
    # This server towards the agent: probed at the address it shares a network with, its
    # listener and firewall from its facts.
    out = connectivity.diagnose(service.parts.connectivity, service.instance_id, agent, None, 8443, "tcp", 0.3)
    steps = {s["step"]: s for s in out["steps"]}
    assert out["destination"]["address"] in ("192.0.2.2", "10.0.0.2", "10.1.2.3")
    assert steps["destination_listener"]["verdict"] == "ok" and "caddy" in steps["destination_listener"]["message"]
    assert steps["destination_firewall"]["verdict"] == "unknown"  # 8443 is not a port its snapshot judged


@needs_netns
def test_a_native_nftables_output_chain_makes_the_source_firewall_unknown_not_ok(service):
    nft = shutil.which("nft", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if nft is None:
        pytest.skip("needs nft")
    table = f"diagconn{os.getpid()}"
    subprocess.run([nft, "add", "table", "inet", table], check=True)
    try:
        subprocess.run([nft, "add", "chain", "inet", table, "out",
                        "{ type filter hook output priority 0 ; policy accept ; }"], check=True)
        out, steps = _walk(service, address="127.0.0.1", port=free_port(), timeout=0.3)
    finally:
        subprocess.run([nft, "delete", "table", "inet", table], check=False)
    s = steps["source_firewall"]
    assert s["verdict"] == "unknown" and f"inet {table} out" in s["message"], s


SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:out-rules - [0:0]
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -j out-rules
-A out-rules -d 10.9.9.0/24 -p tcp -m tcp --dport 443 -j DROP
-A out-rules ! -d 10.0.0.0/8 -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A out-rules -o eth1 -p tcp -m tcp --dport 5432 -j DROP
COMMIT
"""


@pytest.mark.parametrize("dest, iface, port, verdict", [
    ("10.9.9.7", "eth0", 443, "drop"),     # -d holds it
    ("10.0.0.5", "eth0", 443, None),       # another network: the rule is not ours
    ("198.51.100.1", "eth0", 25, "drop"),  # ! -d 10/8 holds it
    ("10.0.0.5", "eth0", 25, None),
    ("10.0.0.5", "eth1", 5432, "drop"),    # -o by the route's interface
    ("10.0.0.5", "eth0", 5432, None),
    ("10.9.9.7", "lo", 443, "accept"),     # -o lo is accepted first
    ("10.0.0.5", None, 5432, None),        # interface unknown: the -o rule is not judged a match
])
def test_outbound_rules_are_judged_for_the_destination_and_the_routes_interface(dest, iface, port, verdict):
    from collectors.facts import iptables_rules

    got = connectivity.output_verdict(iptables_rules.parse_save(SAVE), port, dest, iface)
    assert got["verdict"] == verdict, got
    assert got["rules_checked"] == 2 and got["policy"] == "ACCEPT"


def test_an_agent_towards_itself_reads_its_own_listener_from_its_facts(service):
    agent = "i-agent-self"
    facts = {**_facts(), "listening": [{"proto": "tcp", "family": "inet", "address": "127.0.0.1", "port": 5432,
                                        "pids": [], "process": "postgres"}]}
    service.instances.register(agent, hostname="agent-self")
    service.set_facts(agent, facts, time.time())
    out = connectivity.diagnose(service.parts.connectivity, agent, agent, None, 5432, "tcp", 0.5)
    steps = {s["step"]: s for s in out["steps"]}
    assert out["destination"]["address"] == "127.0.0.1"
    assert steps["destination_listener"]["verdict"] == "ok" and "postgres" in steps["destination_listener"]["message"]
    assert steps["source_route"]["evidence"]["interface"] == "lo"
