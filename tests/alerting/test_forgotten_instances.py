"""Alerting.forget_instance: the alerts of an instance being forgotten resolve the way a
cleared condition resolves them, and no other instance's alerts move."""

from __future__ import annotations

from tests.alerting.alerting_helpers import T0, policy, put, states, subscribe


def test_pending_and_firing_alerts_of_the_instance_resolve_and_others_stay(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, targets={"instances": ["web1", "db1"]}, contact_groups=[group])
    put(svc, "web1", "cpu_usage", T0, [95, 95, 95])
    put(svc, "db1", "cpu_usage", T0, [95, 95, 95])
    svc.alerting.evaluate(now=T0 + 3 * 60 + 5)
    assert states(svc, pid) == {("web1", "conditions[0]"): "firing", ("db1", "conditions[0]"): "firing"}

    assert svc.alerting.forget_instance("web1", now=T0 + 3 * 60 + 10) == 1
    assert states(svc, pid) == {("web1", "conditions[0]"): "resolved", ("db1", "conditions[0]"): "firing"}
    svc.alerting.deliver()
    assert sorted((b["kind"], b["instance_id"]) for b in receiver.bodies) == [
        ("firing", "db1"), ("firing", "web1"), ("resolved", "web1")]
    assert svc.alerting.forget_instance("web1", now=T0 + 3 * 60 + 20) == 0  # nothing left to resolve


def test_a_pending_alert_clears_without_a_notice(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group])
    put(svc, "web1", "cpu_usage", T0, [95])
    svc.alerting.evaluate(now=T0 + 60 + 5)
    assert states(svc, pid) == {("web1", "conditions[0]"): "pending"}
    assert svc.alerting.forget_instance("web1", now=T0 + 60 + 10) == 1
    assert states(svc, pid) == {("web1", "conditions[0]"): "ok"}
    [alert] = svc.alerting.repo.alerts(None, pid)
    moves = [(h["from_state"], h["to_state"]) for h in svc.alerting.repo.history(alert_id=alert["alert_id"])
             if h["kind"] == "state"]
    assert ("pending", "ok") in moves
    svc.alerting.deliver()
    assert receiver.bodies == []


def test_an_event_alert_resolves_without_a_notice_as_when_its_hold_ends(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    svc.alerting.evaluate(now=T0)
    pid = policy(svc, conditions=[], event_conditions=[{"type": "Kernel.*", "level": "CRITICAL"}],
                 contact_groups=[group])
    svc.events.detected("web1", "Kernel.SoftLockup", T0 + 3, "soft lockup on CPU#1")
    svc.alerting.evaluate(now=T0 + 10)
    assert states(svc, pid) == {("web1", "event_conditions[0]"): "firing"}
    assert svc.alerting.forget_instance("web1", now=T0 + 20) == 1
    assert states(svc, pid) == {("web1", "event_conditions[0]"): "resolved"}
    svc.alerting.deliver()
    assert [b["kind"] for b in receiver.bodies] == ["firing"]
