"""Silences with matchers: a silence covers exactly the alerts its matchers match, from its
start to its end, over the real store, database and outbox."""

from __future__ import annotations

from tests.alerting.alerting_helpers import T0, policy, put, subscribe


def test_a_silence_covers_exactly_its_matchers_and_its_time(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    cond = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90, "consecutive": 1}]
    policy(svc, name="cpu high", contact_groups=[group], targets={"instances": ["web1", "db1"]}, conditions=cond,
           silence="5m")
    policy(svc, name="cpu very high", contact_groups=[group], targets={"instances": ["web1"]},
           conditions=[{**cond[0], "threshold": 94}], silence="5m")
    svc.alerting.repo.add_silence(
        matchers=[{"name": "instance_id", "op": "=", "value": "web1"}, {"name": "alertname", "op": "=~", "value": "CpuH.*"}],
        starts_at=T0 + 5 * 60, ends_at=T0 + 15 * 60, comment="web1 load test", now=T0, created_by="local")
    for inst in ("web1", "db1"):
        put(svc, inst, "cpu_usage", T0, [95] * 20)

    def sent_between(a: int, b: int) -> list[tuple[str, str]]:
        before = len(receiver.bodies)
        for k in range(a, b):
            svc.alerting.evaluate(now=T0 + k * 60 + 1)
            svc.alerting.deliver()
        return sorted((x["policy_name"], x["instance_id"]) for x in receiver.bodies[before:])

    # before the start: all three alerts are sent
    assert sent_between(1, 2) == [("cpu high", "db1"), ("cpu high", "web1"), ("cpu very high", "web1")]
    # during it (repeats every 5 m at 6m and 11m): only "cpu high" on web1 is muted
    assert sent_between(2, 12) == [("cpu high", "db1"), ("cpu high", "db1"), ("cpu very high", "web1"),
                                   ("cpu very high", "web1")]
    # after its end (15m) the muted alert repeats again
    assert ("cpu high", "web1") in sent_between(12, 17)


def test_a_silence_from_an_alert_row_covers_that_alert_only(svc, receiver):
    from diag.alerting.repository import muted

    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group], targets={"instances": ["web1", "db1"]},
                 conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    for inst in ("web1", "db1"):
        put(svc, inst, "cpu_usage", T0, [95])
    svc.alerting.evaluate(now=T0 + 61)
    rows = {a["instance_id"]: a for a in svc.alerting.repo.alerts(["firing"], pid)}
    labels = svc.alerting.labels_of(rows["web1"])
    assert labels["alertname"] == "CpuHigh" and labels["instance_id"] == "web1" and labels["hostname"] == "web1"
    s = svc.alerting.repo.add_silence(matchers=[{"name": k, "op": "=", "value": v} for k, v in labels.items()],
                                      duration=3600, comment="", now=T0 + 62)
    assert muted([s], rows["web1"]["alert_id"], pid, "web1", labels, T0 + 63) == s
    assert muted([s], rows["db1"]["alert_id"], pid, "db1", svc.alerting.labels_of(rows["db1"]), T0 + 63) is None
