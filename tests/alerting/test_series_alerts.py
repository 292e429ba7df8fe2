"""Alerts per series: a policy on a multi-series metric (filesystems, disks, interfaces)
gives each breaching series its own alert, state, history and notices, labelled with the
series' labels; over the real embedded store and database."""

from __future__ import annotations

from tests.alerting.alerting_helpers import T0, policy, put, subscribe

FS = [{"metric": "fs_usage", "period": "1m", "comparison": ">=", "threshold": 90, "severity": "critical"}]


def disks(svc, instance: str, start: float, root: list, data: list) -> None:
    """fs_usage of `/` and `/data`, one value per minute from `start`."""
    put(svc, instance, "fs_usage", start, root, labels={"mountpoint": "/", "device": "vda1", "fstype": "ext4"})
    put(svc, instance, "fs_usage", start, data, labels={"mountpoint": "/data", "device": "vdb", "fstype": "xfs"})


def by_mountpoint(svc, policy_id: str) -> dict[str, str]:
    return {a["series"]["mountpoint"]: a["state"] for a in svc.alerting.repo.alerts(None, policy_id)}


def test_two_full_filesystems_are_two_alerts_each_with_its_mountpoint(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, name="disk full", contact_groups=[group], conditions=FS)
    disks(svc, "web1", T0, [97, 50], [98, 99])  # / recovers in the second minute, /data does not
    svc.alerting.evaluate(now=T0 + 61)
    alerts = svc.alerting.repo.alerts(None, pid)
    assert by_mountpoint(svc, pid) == {"/": "firing", "/data": "firing"}
    assert len({a["alert_id"] for a in alerts}) == 2
    assert {a["series"]["device"] for a in alerts} == {"vda1", "vdb"}
    svc.alerting.deliver()
    first = {b["labels"]["mountpoint"]: b for b in receiver.bodies}
    assert set(first) == {"/", "/data"}
    assert {b["labels"]["alertname"] for b in first.values()} == {"DiskFull"}
    assert "mountpoint=/data" in first["/data"]["message"] and "98 %" in first["/data"]["message"]
    assert first["/"]["series"] == {"device": "vda1", "fstype": "ext4", "mountpoint": "/"}

    svc.alerting.evaluate(now=T0 + 121)
    assert by_mountpoint(svc, pid) == {"/": "resolved", "/data": "firing"}
    svc.alerting.deliver()
    assert [(b["status"], b["labels"]["mountpoint"]) for b in receiver.bodies[2:]] == [("resolved", "/")]
    resolved = next(a for a in alerts if a["series"]["mountpoint"] == "/")["alert_id"]
    assert [h["to_state"] for h in svc.alerting.repo.history(alert_id=resolved) if h["kind"] == "state"] == [
        "resolved", "firing"]


def test_the_alert_of_a_filesystem_that_is_gone_resolves_for_want_of_data(svc):
    pid = policy(svc, conditions=FS)
    disks(svc, "web1", T0, [97, 97, 97], [98])  # /data unmounted after its first minute
    svc.alerting.evaluate(now=T0 + 61)
    assert by_mountpoint(svc, pid) == {"/": "firing", "/data": "firing"}
    svc.alerting.evaluate(now=T0 + 181)  # /data is no longer in the reading at all
    assert by_mountpoint(svc, pid) == {"/": "firing", "/data": "resolved"}


def test_a_single_series_metric_keeps_one_alert_per_instance(svc):
    pid = policy(svc, conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    put(svc, "web1", "cpu_usage", T0, [95])
    svc.alerting.evaluate(now=T0 + 61)
    (a,) = svc.alerting.repo.alerts(None, pid)
    assert a["series"] == {} and a["state"] == "firing"
