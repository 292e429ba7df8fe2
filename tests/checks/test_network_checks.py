"""Network checks: public address, cloud-only rows, bandwidth, kernel drops, limits, NIC errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.checks.context import TableContext, evaluate, facts_snapshot

NOW = 1_800_000_000.0


def test_public_ip_is_informational():
    ctx = TableContext(NOW)
    assert evaluate("network.public_ip", ctx).status == "unknown"
    ctx.set_facts(facts_snapshot(NOW))  # 10.0.0.5 only
    r = evaluate("network.public_ip", ctx)
    assert r.status == "ok" and r.evidence["addresses"] == [] and "no public address" in r.message
    eth1 = {"name": "eth1", "up": True, "loopback": False, "mtu": 1500,
            "addresses": [{"family": "inet", "address": "81.2.69.142", "prefixlen": 24, "dynamic": False},
                          {"family": "inet", "address": "100.64.3.2", "prefixlen": 10, "dynamic": False},
                          {"family": "inet6", "address": "2a01:4f8::1", "prefixlen": 64, "dynamic": False},
                          {"family": "inet6", "address": "fd00::5", "prefixlen": 64, "dynamic": False}]}
    facts = facts_snapshot(NOW)
    facts["interfaces"].append(eth1)
    ctx.set_facts(facts)
    r = evaluate("network.public_ip", ctx)
    assert r.status == "ok"
    assert [a["address"] for a in r.evidence["addresses"]] == ["81.2.69.142", "2a01:4f8::1"]


def test_public_ip_from_the_scope_label():
    ctx = TableContext(NOW)
    ctx.add("net_in", ctx.times(60), 1e6, interface="ens5", scope="public")
    r = evaluate("network.public_ip", ctx)
    assert r.status == "ok" and r.evidence["public_interfaces"] == ["ens5"]


@pytest.mark.parametrize("check_id", ["network.ddos_blackhole", "network.public_ip_arrears"])
def test_cloud_only_rows(check_id):
    r = evaluate(check_id, TableContext(NOW))
    assert r.status == "not_applicable"
    assert r.message == "cloud provider feature: no DDoS black hole / billing on a self-hosted machine"


@pytest.mark.parametrize("check_id", ["network.instance_expired", "network.account_arrears"])
def test_billing_rows_are_their_own_checks_and_never_apply(check_id):
    # Even on a host full of data (a cloud VM's own metrics look the same): billing state
    # is the provider's, and nothing on the machine shows it.
    from tests.checks.context import fill_healthy

    for ctx in (TableContext(NOW), fill_healthy(TableContext(NOW))):
        r = evaluate(check_id, ctx)
        assert r.status == "not_applicable"
        assert r.message.startswith("cloud provider feature: a self-hosted machine has no subscription term")
    from checks.catalogue import get

    c = get(check_id)
    assert (c.category, c.severity) == ("network", "critical")


def test_bandwidth():
    ctx = TableContext(NOW)
    assert evaluate("network.bandwidth", ctx).status == "unknown"
    ctx.add("net_in", ctx.times(3600), 1e6, interface="eth0", scope="private")
    r = evaluate("network.bandwidth", ctx)
    assert r.status == "not_applicable" and "no bandwidth cap" in r.message
    ts = ctx.times(43200)
    ctx.add("bandwidth_usage_in", ts, 20.0, scope="public")
    out = np.where((ts >= NOW - 7200) & (ts < NOW - 6600), 95.0, 20.0)  # 10 min at 95 %
    ctx.add("bandwidth_usage_out", ts, out, scope="public")
    r = evaluate("network.bandwidth", ctx)
    assert r.status == "warning"
    [over] = [p for p in r.evidence["peaks"] if p["buckets_over"]]
    assert over["direction"] == "out" and over["scope"] == "public" and over["peak"] == 95.0
    assert over["buckets_over"] == 2 and over["at"] == NOW - 7200
    assert "iftop" in r.recommendation and "lsof -i" in r.recommendation


def test_bandwidth_ok_below_the_line():
    ctx = TableContext(NOW)
    ctx.add("bandwidth_usage_in", ctx.times(3600), 89.0, scope="private")
    assert evaluate("network.bandwidth", ctx).status == "ok"


# A phrase only the advice for that kind contains.
DROP_ADVICE = {"tcp_listen_overflows": "accept queue overflowed", "tcp_listen_drops": "tcp_max_syn_backlog",
               "udp_rcvbuf_errors": "SO_RCVBUF", "udp_sndbuf_errors": "SO_SNDBUF",
               "softnet_dropped": "net.core.netdev_max_backlog"}


def drops_ctx(**rises: float) -> TableContext:
    ctx = TableContext(NOW)
    ts = ctx.times(3600)
    for metric in DROP_ADVICE:
        v = np.zeros(ts.size)
        if metric in rises:
            v[[10, 20]] = rises[metric] / 2
        ctx.add(metric, ts, v)
    return ctx


def test_kernel_drops_ok_unknown():
    assert evaluate("network.kernel_drops", drops_ctx()).status == "ok"
    assert evaluate("network.kernel_drops", TableContext(NOW)).status == "unknown"


@pytest.mark.parametrize("metric", list(DROP_ADVICE))
def test_kernel_drops_each_kind(metric):
    r = evaluate("network.kernel_drops", drops_ctx(**{metric: 8}))
    assert r.status == "warning"
    assert r.evidence["counts"] == {metric: {"count": 8.0, "intervals": 2, "last_at": NOW - 3590 + 200}}
    assert DROP_ADVICE[metric] in r.recommendation
    assert not [a for m, a in DROP_ADVICE.items() if m != metric and a in r.recommendation]


def test_kernel_drops_accept_queue_names_somaxconn_and_backlog():
    r = evaluate("network.kernel_drops", drops_ctx(tcp_listen_overflows=3, udp_rcvbuf_errors=5))
    assert "net.core.somaxconn" in r.recommendation and "backlog" in r.recommendation
    assert "net.core.rmem_max" in r.recommendation and "net.core.rmem_default" in r.recommendation


def test_connection_limit():
    ctx = TableContext(NOW)
    assert evaluate("network.connection_limit", ctx).status == "unknown"
    ts = ctx.times(3600)
    ctx.add("conntrack_usage", ts, 40.0)
    ctx.add("file_handles_usage", ts, np.where(ts == NOW - 1000, 92.0, 3.0))
    r = evaluate("network.connection_limit", ctx)
    assert r.status == "warning" and r.evidence["peaks"]["file_handles_usage"] == {"peak": 92.0, "at": NOW - 1000}
    assert "fs.file-max" in r.recommendation and "nf_conntrack_max" not in r.recommendation
    ctx2 = TableContext(NOW)
    ctx2.add("file_handles_usage", ts, 3.0)
    assert evaluate("network.connection_limit", ctx2).status == "ok"
    ctx2.event("Network.ConntrackFull", NOW - 50, level="WARN", message="nf_conntrack: table full, dropping packet")
    r = evaluate("network.connection_limit", ctx2)
    assert r.status == "warning" and "net.netfilter.nf_conntrack_max" in r.recommendation


def test_nic_errors_need_three_windows():
    ctx = TableContext(NOW)
    assert evaluate("network.nic_errors", ctx).status == "unknown"
    ts = ctx.times(43200)
    v = np.zeros(ts.size)
    v[[100, 700, 1300]] = 0.5  # errors in three different 5-min windows
    ctx.add("net_in_errors", ts, v, interface="eth0", scope="public")
    ctx.add("net_in_drops", ts, 0.0, interface="eth0", scope="public")
    r = evaluate("network.nic_errors", ctx)
    assert r.status == "warning"
    [row] = r.evidence["interfaces"]
    assert row["interface"] == "eth0" and row["buckets_with_errors"] == 3
    assert "ethtool -S eth0" in r.recommendation
    ctx2 = TableContext(NOW)
    v[1300] = 0
    ctx2.add("net_in_errors", ts, v, interface="eth0", scope="public")
    assert evaluate("network.nic_errors", ctx2).status == "ok"
