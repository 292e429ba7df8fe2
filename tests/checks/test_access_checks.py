"""Access checks over facts snapshots, plus CPU and bandwidth now."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.checks.context import TableContext, evaluate, facts_snapshot

NOW = 1_800_000_000.0
FACT_CHECKS = ["access.sshd", "access.ssh_files", "access.root_login", "access.nic_config", "access.default_route",
               "access.firewall", "access.port_listening"]


def ctx_with(**parts) -> TableContext:
    ctx = TableContext(NOW)
    ctx.set_facts(facts_snapshot(NOW - 120, **parts), taken_at=NOW - 120)
    return ctx


def sshd(**changes) -> dict:
    s = copy.deepcopy(facts_snapshot(0)["sshd"])
    s.update(changes)
    return s


@pytest.mark.parametrize("check_id", FACT_CHECKS)
def test_healthy_facts_pass_and_say_their_age(check_id):
    r = evaluate(check_id, ctx_with())
    assert r.status == "ok", r.message
    assert r.evidence["facts_age_seconds"] == 120 and "(facts 2 min old)" in r.message


@pytest.mark.parametrize("check_id", FACT_CHECKS)
def test_no_facts_is_unknown(check_id):
    r = evaluate(check_id, TableContext(NOW))
    assert r.status == "unknown" and r.message == "no facts snapshot yet"


def test_unreadable_part_is_unknown():
    r = evaluate("access.firewall", ctx_with(firewall={"tool": None, "drops": [], "error": "iptables: Permission denied"}))
    assert r.status == "unknown" and "Permission denied" in r.message


@pytest.mark.parametrize("check_id", ["access.sshd", "access.ssh_files", "access.root_login"])
def test_no_ssh_server_is_not_applicable(check_id):
    r = evaluate(check_id, ctx_with(sshd=sshd(installed=False, binary=None, running=False, pids=[], ports=[])))
    assert r.status == "not_applicable" and r.message == "no SSH server installed"


def test_sshd_installed_but_stopped_is_critical():
    r = evaluate("access.sshd", ctx_with(sshd=sshd(running=False, pids=[], ports=[])))
    assert r.status == "critical" and "systemctl start sshd" in r.recommendation


def test_sshd_under_socket_activation_is_ok_and_says_systemd_holds_the_port():
    # Ubuntu >= 22.10: ssh.socket listens (pid 1), no sshd process until a client connects.
    r = evaluate("access.sshd", ctx_with(sshd=sshd(running=False, pids=[], ports=[22], socket_activated=True)))
    assert r.status == "ok", r.message
    assert "systemd holds port 22" in r.message and r.evidence["socket_activated"] is True
    # The same facts without the socket: installed and nothing listening for it is critical.
    r = evaluate("access.sshd", ctx_with(sshd=sshd(running=False, pids=[], ports=[22], socket_activated=False)))
    assert r.status == "critical"


def test_ssh_files():
    keys = [{"path": "/etc/ssh/ssh_host_rsa_key", "exists": False}, {"path": "/etc/ssh/ssh_host_ecdsa_key", "exists": False},
            {"path": "/etc/ssh/ssh_host_ed25519_key", "exists": True}]
    assert evaluate("access.ssh_files", ctx_with(sshd=sshd(host_keys=keys))).status == "ok"  # one default key is enough
    none = [dict(k, exists=False) for k in keys]
    r = evaluate("access.ssh_files", ctx_with(sshd=sshd(host_keys=none)))
    assert r.status == "critical" and "ssh-keygen -A" in r.recommendation
    explicit = sshd(host_keys=keys[:1], settings={"hostkey": ["/etc/ssh/ssh_host_rsa_key"]})
    assert evaluate("access.ssh_files", ctx_with(sshd=explicit)).status == "critical"
    r = evaluate("access.ssh_files", ctx_with(sshd=sshd(config_exists=False)))
    assert r.status == "critical" and "config /etc/ssh/sshd_config" in r.message
    r = evaluate("access.ssh_files", ctx_with(sshd=sshd(privsep_dir={"path": "/var/empty/sshd", "exists": False})))
    assert r.status == "critical" and "/var/empty/sshd" in r.message
    # /run/sshd appears when the service starts: missing while sshd is stopped is normal.
    stopped = sshd(running=False, privsep_dir={"path": "/run/sshd", "exists": False})
    assert evaluate("access.ssh_files", ctx_with(sshd=stopped)).status == "ok"


def test_root_login_is_reported():
    r = evaluate("access.root_login", ctx_with(sshd=sshd(settings={"permitrootlogin": "no"})))
    assert r.status == "ok" and "PermitRootLogin no" in r.message and r.evidence["permitrootlogin"] == "no"
    r = evaluate("access.root_login", ctx_with(sshd=sshd(settings={})))
    assert r.status == "ok" and "prohibit-password (OpenSSH default)" in r.message


def test_nic_config():
    facts = facts_snapshot(0)
    down = copy.deepcopy(facts["interfaces"])
    down[1]["up"] = False
    assert evaluate("access.nic_config", ctx_with(interfaces=down)).status == "critical"
    r = evaluate("access.nic_config", ctx_with(dhcp_clients=[]))
    assert r.status == "critical" and "10.0.0.5 (eth0)" in r.message
    static = copy.deepcopy(facts["interfaces"])
    static[1]["addresses"][0]["dynamic"] = False
    assert evaluate("access.nic_config", ctx_with(interfaces=static, dhcp_clients=[])).status == "ok"


def test_default_route_missing_is_critical():
    r = evaluate("access.default_route", ctx_with(routes={"default_v4": [], "default_v6": []}))
    assert r.status == "critical" and "ip route add default" in r.recommendation


def test_firewall():
    r = evaluate("access.firewall", ctx_with(firewall={"tool": None, "rules_checked": 0, "drops": [], "error": None}))
    assert r.status == "ok" and r.message.startswith("no iptables/nft rules found")
    rule = "-A INPUT -p tcp --dport 22 -j DROP"
    fw = {"tool": "iptables", "rules_checked": 3, "error": None,
          "drops": [{"port": 22, "proto": "tcp", "chain": "INPUT", "rule": rule}]}
    r = evaluate("access.firewall", ctx_with(firewall=fw))
    assert r.status == "critical" and rule in r.message and r.evidence["drops"][0]["rule"] == rule


def test_port_listening():
    ctx = ctx_with(listening=[])
    r = evaluate("access.port_listening", ctx)
    assert r.status == "critical" and r.evidence["missing"] == [22]
    ctx = ctx_with()
    ctx.service_ports = [22, 443]
    r = evaluate("access.port_listening", ctx)
    assert r.status == "critical" and r.evidence["missing"] == [443]
    ctx = ctx_with(listening=[{"proto": "tcp", "family": "inet", "address": "127.0.0.1", "port": 22, "pids": [1],
                               "process": "sshd"}])
    assert evaluate("access.port_listening", ctx).status == "warning"
    ctx = ctx_with(sshd=sshd(installed=False, running=False, ports=[]), listening=[])
    r = evaluate("access.port_listening", ctx)
    assert r.status == "not_applicable" and "port 22 skipped" in r.message


def test_cpu_load_now():
    ctx = TableContext(NOW)
    assert evaluate("access.cpu_load_now", ctx).status == "unknown"
    ts = ctx.times(600)
    ctx.add("cpu_usage", ts, np.where(ts == NOW, 85.0, 10.0))
    ctx.processes = {"by_cpu": [{"pid": 9, "name": "ffmpeg", "cpu_percent": 80.0, "rss_bytes": 1}], "by_memory": []}
    r = evaluate("access.cpu_load_now", ctx)
    assert r.status == "warning" and "ffmpeg" in r.message and r.evidence["value"] == 85.0
    ctx.at(NOW + 600)  # the agent went quiet: this is no "now" any more
    assert evaluate("access.cpu_load_now", ctx).status == "unknown"
    ctx2 = TableContext(NOW)
    ctx2.add("cpu_usage", ts, 79.9)
    assert evaluate("access.cpu_load_now", ctx2).status == "ok"


def test_bandwidth_now():
    ctx = TableContext(NOW)
    ctx.add("net_in", ctx.times(60), 1.0, interface="eth0", scope="public")
    assert evaluate("access.bandwidth_now", ctx).status == "not_applicable"
    ctx.add("bandwidth_usage_in", ctx.times(60), 91.0, scope="public")
    ctx.add("bandwidth_usage_out", ctx.times(60), 10.0, scope="public")
    r = evaluate("access.bandwidth_now", ctx)
    assert r.status == "warning" and "public in 91 %" in r.message
    ctx2 = TableContext(NOW)
    ctx2.add("bandwidth_usage_out", ctx2.times(60), 89.0, scope="private")
    assert evaluate("access.bandwidth_now", ctx2).status == "ok"
