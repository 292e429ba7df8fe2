"""Firewall drops from saved iptables-save and nft -j outputs, and the live machine's tools."""

from __future__ import annotations

from pathlib import Path

from collectors.facts import firewall as fw
from collectors.facts import iptables_rules, nft_rules
from collectors.roots import Roots

FW = Path(__file__).resolve().parents[2] / "fixtures" / "facts" / "firewall"


def text(name: str) -> str:
    return (FW / name).read_text()


def test_iptables_drop_reject_and_source_only_rule():
    drops, n = iptables_rules.drops(text("iptables-save.txt"), [22, 80, 443, 2222, 2223, 8080], "inet")
    assert n == 16  # filter rules only; the nat table's PREROUTING drop is not INPUT
    assert drops == [
        {"port": 22, "proto": "tcp", "family": "inet", "chain": "INPUT",
         "rule": '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "closed after the 2222 move" -j DROP'},
        {"port": 2222, "proto": "tcp", "family": "inet", "chain": "INPUT",
         "rule": "-A INPUT -p tcp -m tcp --dport 2222 -j REJECT --reject-with icmp-port-unreachable"},
        {"port": 8080, "proto": "tcp", "family": "inet", "chain": "INPUT",
         "rule": "-A INPUT -p tcp -m tcp --dport 8000:8999 -j DROP"},
    ]
    # Not counted: the source-only drop of 203.0.113.0/24, fail2ban's single address,
    # the brute-force `recent` rule, the UDP drop of 2223, the null-scan flags rule, and
    # INVALID-state drops.


def test_ip6tables_drop_policy_with_source_limited_accept():
    drops, _ = iptables_rules.drops(text("ip6tables-save.txt"), [22, 80, 2222], "inet6")
    assert drops == [{"port": 2222, "proto": "tcp", "family": "inet6", "chain": "INPUT", "rule": ":INPUT DROP"}]


def test_ufw_nested_chains_accept_and_policy():
    drops, _ = iptables_rules.drops(text("ufw-iptables-save.txt"), [22, 443, 8080], "inet")
    assert [(d["port"], d["rule"]) for d in drops] == [(8080, ":INPUT DROP")]


def test_a_rule_without_port_or_source_drops_every_port():
    save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n"
    drops, _ = iptables_rules.drops(save, [22, 3306], "inet")
    assert drops == [{"port": 3306, "proto": "tcp", "family": "inet", "chain": "INPUT", "rule": "-A INPUT -j DROP"}]


def test_jump_loop_terminates():
    save = "*filter\n:INPUT ACCEPT [0:0]\n:a - [0:0]\n:b - [0:0]\n-A INPUT -j a\n-A a -j b\n-A b -j a\nCOMMIT\n"
    assert iptables_rules.drops(save, [22], "inet")[0] == []


def test_nft_ruleset():
    drops, n = nft_rules.drops(text("nft-ruleset.json"), [22, 80, 2222, 5432, 8080, 9000])
    assert n == 13
    got = sorted((d["port"], d["family"], d["chain"], d["rule"]) for d in drops)
    assert got == [
        (2222, "inet", "inet filter input", 'tcp dport == 2222 reject'),
        (2222, "inet6", "inet filter input", 'tcp dport == 2222 reject'),
        (5432, "inet", "inet filter input", "policy drop"),
        (5432, "inet", "ip filter INPUT", "tcp dport == 5432 drop"),
        (5432, "inet6", "inet filter input", "policy drop"),
        (9000, "inet", "inet filter input", "policy drop"),
        (9000, "inet6", "inet filter input", "policy drop"),
    ]
    # 22 is accepted in the `services` chain; the source-only and rate-limited drops before
    # it are not counted; 8080 is accepted by the 8000-8099 range before its own drop.


def test_from_outputs_combines_families():
    out = fw.from_outputs([22, 2222], v4=text("iptables-save.txt"), v6=text("ip6tables-save.txt"))
    assert out["tool"] == "iptables" and out["error"] is None
    assert out["rules_checked"] == 16 + 6
    assert [(d["port"], d["family"]) for d in out["drops"]] == [(22, "inet"), (2222, "inet"), (2222, "inet6")]
    assert fw.from_outputs([22], nft_json=text("nft-ruleset.json"))["tool"] == "nft"


def test_fixture_tree_is_not_read():
    out = fw.firewall(Roots.under(FW), [22])
    assert out["tool"] is None and out["drops"] == [] and "live" in out["error"]


def test_live_tool_choice():
    out = fw.firewall(Roots(), [22])
    have = [t for t in ("iptables-save", "nft") if fw._which(t)]
    if not have:
        assert out == {"tool": None, "rules_checked": 0, "drops": [], "error": None}
    else:
        assert out["tool"] in ("iptables", "nft")
        # Without CAP_NET_ADMIN the tool refuses: that is an error naming it, not an exception.
        assert out["error"] is None or have[0].split("-")[0] in out["error"]
