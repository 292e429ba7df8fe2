"""Alertmanager kept true, as Prometheus keeps it: firing alerts re-sent every minute with
endsAt a few minutes ahead, and a resolve when the condition clears, the policy is disabled
or deleted, or the instance is forgotten. Against a recording HTTP receiver (the body an
Alertmanager gets) and a real Alertmanager."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from tests.alerting.alerting_helpers import T0, policy, put, states, subscribe
from tests.alerting.test_series_alerts import FS, disks

from diag.alerting.notifiers.payloads import rfc3339

COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90, "severity": "critical"}]
KEY = ("web1", "conditions[0]")
AHEAD = 240  # 4 x max(evaluation interval 10 s, resend delay 1 m)


def am(url: str) -> dict:
    return {"type": "alertmanager", "url": url}


def sent(receiver) -> list[tuple[str, str]]:
    """(labels' mountpoint or instance, endsAt) of each alert Alertmanager was sent."""
    return [(a["labels"].get("mountpoint", a["labels"]["instance_id"]), a["endsAt"])
            for body in receiver.bodies for a in body]


def test_a_firing_alert_is_re_sent_every_minute_with_ends_at_ahead_then_resolved(svc, receiver):
    pid = policy(svc, contact_groups=[subscribe(svc, [am(receiver.url)])], conditions=COND)
    put(svc, "web1", "cpu_usage", T0, [95] * 5 + [10])
    for t in (61, 91, 121, 181, 361):
        svc.alerting.evaluate(now=T0 + t)
        svc.alerting.deliver(now=T0 + t)
    assert states(svc, pid)[KEY] == "resolved"
    # fired at 61, re-sent at 121 and 181 (not at 91: a minute had not passed), resolved at 361
    # (the minutes between were evaluated by nobody here: no resend without an evaluation)
    assert sent(receiver) == [("web1", rfc3339(T0 + 61 + AHEAD)), ("web1", rfc3339(T0 + 121 + AHEAD)),
                              ("web1", rfc3339(T0 + 181 + AHEAD)), ("web1", rfc3339(T0 + 361))]
    assert receiver.bodies[1][0]["annotations"] == receiver.bodies[0][0]["annotations"]
    # the resends leave no history and no pile of rows behind them
    assert [h["detail"] for h in svc.alerting.repo.history() if h["kind"] == "notification"] == ["resolved", "firing"]
    assert svc.db.read("SELECT COUNT(*) AS n FROM alert_outbox WHERE kind = 'refresh'")[0]["n"] == 1


def test_alertmanager_is_told_of_the_resolve_even_without_recovery_notices(svc, receiver):
    policy(svc, contact_groups=[subscribe(svc, [am(receiver.url)])], conditions=COND, notify_recovery=False)
    put(svc, "web1", "cpu_usage", T0, [95, 10])
    for t in (61, 121):
        svc.alerting.evaluate(now=T0 + t)
        svc.alerting.deliver(now=T0 + t)
    assert sent(receiver) == [("web1", rfc3339(T0 + 61 + AHEAD)), ("web1", rfc3339(T0 + 121))]


def test_a_resend_waits_while_the_alert_is_muted(svc, receiver):
    pid = policy(svc, contact_groups=[subscribe(svc, [am(receiver.url)])], conditions=COND)
    put(svc, "web1", "cpu_usage", T0, [95] * 3)
    svc.alerting.evaluate(now=T0 + 61)
    svc.alerting.repo.add_silence(alert_id=None, policy_id=pid, instance_id=None, duration=600, comment="",
                                  now=T0 + 62)
    svc.alerting.evaluate(now=T0 + 181)
    svc.alerting.deliver(now=T0 + 181)
    assert sent(receiver) == [("web1", rfc3339(T0 + 61 + AHEAD))]  # Alertmanager lets it expire


def test_disabling_a_policy_resolves_its_firing_alert_on_every_channel(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}, am(receiver.url)])
    pid = policy(svc, contact_groups=[group], conditions=COND)
    put(svc, "web1", "cpu_usage", T0, [95, 95])
    svc.alerting.evaluate(now=T0 + 61)
    svc.alerting.deliver(now=T0 + 61)
    svc.alerting.patch_policy(pid, {"enabled": False})
    assert states(svc, pid)[KEY] == "resolved"
    (change,) = [h for h in svc.alerting.repo.history() if h["kind"] == "state"][:1]
    assert (change["from_state"], change["to_state"], change["detail"]) == (
        "firing", "resolved", "the policy was disabled")
    svc.alerting.deliver()
    webhook, alertmanager = receiver.bodies[2:]  # the outbox sends in order of queueing
    assert webhook["status"] == "resolved" and "the policy was disabled" in webhook["message"]
    (alert,) = alertmanager
    resolved_at = svc.alerting.repo.alerts(None, pid)[0]["resolved_at"]
    assert alert["endsAt"] == rfc3339(resolved_at)
    svc.alerting.evaluate(now=T0 + 121)  # a disabled policy is not evaluated: it stays resolved
    assert states(svc, pid)[KEY] == "resolved"


def test_forget_instance_resolves_that_instances_firing_alerts(svc, receiver):
    pid = policy(svc, targets={"instances": ["web1", "db1"]}, contact_groups=[subscribe(svc, [am(receiver.url)])],
                 conditions=FS)
    disks(svc, "web1", T0, [97, 97], [98, 98])
    disks(svc, "db1", T0, [99, 99], [10, 10])
    svc.alerting.evaluate(now=T0 + 61)
    svc.alerting.deliver(now=T0 + 61)
    assert len(receiver.bodies) == 3

    assert svc.alerting.forget_instance("web1", now=T0 + 70) == 2
    got = {(a["instance_id"], a["series"]["mountpoint"]): a["state"] for a in svc.alerting.repo.alerts(None, pid)}
    assert got == {("web1", "/"): "resolved", ("web1", "/data"): "resolved", ("db1", "/"): "firing"}
    svc.alerting.deliver()
    assert sorted(sent(receiver)[3:]) == [("/", rfc3339(T0 + 70)), ("/data", rfc3339(T0 + 70))]
    assert {a["labels"]["instance_id"] for body in receiver.bodies[3:] for a in body} == {"web1"}
    assert svc.alerting.forget_instance("web1", now=T0 + 80) == 0  # nothing of it fires any more


# -- a real Alertmanager ------------------------------------------------------------------


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_real_alertmanager_keeps_a_firing_alert_active_past_its_first_ends_at(svc, alertmanager):
    now = time.time()
    first = now - AHEAD + 2  # the first send's endsAt is 2 s from now
    put(svc, "web1", "cpu_usage", first // 60 * 60 - 60, [95] * 8)
    pid = policy(svc, contact_groups=[subscribe(svc, [am(alertmanager.url)])], conditions=COND)
    svc.alerting.evaluate(now=first)
    assert svc.alerting.deliver() == {"delivered": 1}
    (a,) = alertmanager.alerts(policy_id=pid)
    assert abs(_ts(a["endsAt"]) - (now + 2)) < 1
    svc.alerting.evaluate(now=now)  # four minutes later in the service's clock: a resend
    assert svc.alerting.deliver() == {"delivered": 1}
    time.sleep(max(0.0, now + 3 - time.time()))  # past the first endsAt
    (a,) = alertmanager.alerts(policy_id=pid)
    assert a["status"]["state"] == "active" and _ts(a["endsAt"]) > now + AHEAD - 1


@pytest.mark.slow
def test_real_alertmanager_resolves_the_alert_of_a_deleted_policy(svc, alertmanager):
    now = time.time()
    put(svc, "web1", "cpu_usage", now // 60 * 60 - 120, [95, 95])
    pid = policy(svc, contact_groups=[subscribe(svc, [am(alertmanager.url)])], conditions=COND)
    svc.alerting.evaluate(now=now)
    assert svc.alerting.deliver() == {"delivered": 1}
    assert len(alertmanager.alerts(policy_id=pid)) == 1
    assert svc.alerting.delete_policy(pid)
    assert svc.alerting.deliver() == {"delivered": 1}
    assert alertmanager.alerts(policy_id=pid) == []
    assert svc.alerting.repo.alerts(None, pid) == []


@pytest.mark.slow
def test_real_alertmanager_holds_two_alerts_for_two_full_filesystems(svc, alertmanager):
    now = time.time()
    disks(svc, "web1", now // 60 * 60 - 120, [97, 97], [98, 98])
    pid = policy(svc, name="disk full", contact_groups=[subscribe(svc, [am(alertmanager.url)])], conditions=FS)
    svc.alerting.evaluate(now=now)
    assert svc.alerting.deliver() == {"delivered": 2}
    got = {a["labels"]["mountpoint"]: a for a in alertmanager.alerts(policy_id=pid)}
    assert set(got) == {"/", "/data"}
    assert {a["labels"]["alertname"] for a in got.values()} == {"DiskFull"}
    assert (got["/"]["labels"]["device"], got["/data"]["labels"]["device"]) == ("vda1", "vdb")
    assert {a["status"]["state"] for a in got.values()} == {"active"}


def test_an_edited_policy_resolves_the_alerts_it_no_longer_makes(svc, receiver):
    conds = COND + [{"metric": "mem_usage", "period": "1m", "comparison": ">", "threshold": 90}]
    pid = policy(svc, targets={"instances": ["web1", "db1"]}, contact_groups=[subscribe(svc, [am(receiver.url)])],
                 conditions=conds)
    for instance in ("web1", "db1"):
        put(svc, instance, "cpu_usage", T0, [95, 95])
        put(svc, instance, "mem_usage", T0, [95, 95])
    svc.alerting.evaluate(now=T0 + 61)
    assert set(states(svc, pid).values()) == {"firing"} and len(states(svc, pid)) == 4
    svc.alerting.patch_policy(pid, {"targets": {"instances": ["db1"]}, "conditions": COND})
    assert states(svc, pid) == {("web1", "conditions[0]"): "resolved", ("web1", "conditions[1]"): "resolved",
                                ("db1", "conditions[0]"): "firing", ("db1", "conditions[1]"): "resolved"}
