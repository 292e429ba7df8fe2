"""Traffic volume (issue 20): a policy on bytes per period, evaluated on what the network
collector read from a /proc/net/dev whose counters advance, stored in the real store."""

from __future__ import annotations

from pathlib import Path

from collectors.network import NetworkCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from tests.alerting.alerting_helpers import T0, policy, states, subscribe

HEADER = ("Inter-|   Receive                                                |  Transmit\n"
          " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n")


def write_dev(path: Path, counters: dict[str, tuple[int, int]]) -> None:
    lines = [f"{name:>6}: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n" for name, (rx, tx) in counters.items()]
    path.write_text(HEADER + "".join(lines))


def collect_into(svc, tmp_path: Path, sent_per_interval) -> None:
    """Collections every 10 s from T0 for 10 minutes, stored for web1: eth0 sends
    sent_per_interval(k) bytes before collection k, eth1 a steady 1 kB."""
    dev = tmp_path / "proc" / "net" / "dev"
    dev.parent.mkdir(parents=True)
    c = NetworkCollector(Roots.under(tmp_path), CollectorSettings())
    tx = {"eth0": 5_000_000_000, "eth1": 7_000}
    for k in range(60):
        if k:
            tx["eth0"] += sent_per_interval(k)
            tx["eth1"] += 1_000
        write_dev(dev, {"eth0": (1_000, tx["eth0"]), "eth1": (1_000, tx["eth1"])})
        svc.store.write("web1", c.collect(T0 + 10 * k).samples)


def test_outbound_bytes_per_5_minutes(svc, receiver, tmp_path):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, name="outbound volume", contact_groups=[group],
                 conditions=[{"metric": "net_out_bytes", "statistic": "sum", "period": "5m", "comparison": ">",
                              "threshold": 100e6, "consecutive": 1, "severity": "warning"}])
    # 1 MB per 10 s in the first five minutes (29 MB: the first collection is a baseline),
    # then 10 MB per 10 s: exactly 300 MB in the second.
    collect_into(svc, tmp_path, lambda k: 1_000_000 if k < 30 else 10_000_000)

    svc.alerting.evaluate(now=T0 + 300 + 1)
    assert states(svc, pid) == {}
    svc.alerting.evaluate(now=T0 + 600 + 1)
    assert states(svc, pid) == {("web1", "conditions[0]"): "firing"}
    svc.alerting.deliver()
    (body,) = receiver.bodies
    # the busiest interface is named, with the period's exact volume
    assert "net_out_bytes interface=eth0 scope=private sum over 5m is 3e+08 B (> 1e+08 B" in body["message"]

    # The same volume through the query API's store read: sum per 5-minute bucket.
    f = svc.store.query("net_out_bytes", instance_id="web1", labels={"interface": "eth0"}, start=T0,
                        end=T0 + 600, step=300, agg="sum")
    assert f["value"].tolist() == [29e6, 300e6]


def test_under_the_threshold_stays_quiet(svc, tmp_path):
    pid = policy(svc, name="outbound volume",
                 conditions=[{"metric": "net_out_bytes", "statistic": "sum", "period": "5m", "comparison": ">",
                              "threshold": 100e6, "consecutive": 1}])
    collect_into(svc, tmp_path, lambda k: 3_000_000)  # 90 MB per 5 minutes
    for now in (T0 + 301, T0 + 601):
        svc.alerting.evaluate(now=now)
        assert states(svc, pid) == {}
    f = svc.store.query("net_out_bytes", instance_id="web1", labels={"interface": "eth0"}, start=T0 + 300,
                        end=T0 + 600, step=300, agg="sum")
    assert f["value"].tolist() == [90e6]
