"""Routing like Alertmanager's: grouped notices with group_wait, group_interval and
repeat_interval, kept across a restart, through the real store, database, outbox and a
local HTTP receiver."""

from __future__ import annotations

from tests.alerting.alerting_helpers import T0, make_service, put, subscribe

# Ten conditions on one metric (thresholds 50, 55 ... 95): at 99 all ten fire on web1.
TEN = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 50 + 5 * k, "consecutive": 1}
       for k in range(10)]
ROUTE = {"group_wait": "30s", "group_interval": "2m", "repeat_interval": "10m"}


def ten_alert_policy(svc, receiver, **routing) -> str:
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url},
                            {"type": "slack", "url": receiver.url.replace("/hook", "/slack")}])
    return svc.alerting.save_policy({"name": "cpu steps", "targets": {"instances": ["web1"]}, "conditions": TEN,
                                     "contact_groups": [group], "routing": {**ROUTE, **routing}})["policy_id"]


def tick(svc, at: float) -> None:
    svc.alerting.evaluate(now=at)
    svc.alerting.deliver(now=at)


def webhooks(receiver) -> list[dict]:
    return [b for b in receiver.bodies if "kind" in b]


def test_ten_alerts_of_one_instance_make_one_notice_after_group_wait_then_changes_and_repeats(svc, receiver):
    ten_alert_policy(svc, receiver)
    put(svc, "web1", "cpu_usage", T0, [99] * 6 + [92] * 14)  # at 6m the 95 threshold clears
    tick(svc, T0 + 61)  # all ten fire; the group waits 30 s for more
    assert receiver.bodies == [] and len(svc.alerting.repo.alerts(["firing"])) == 10
    tick(svc, T0 + 91)
    [first] = webhooks(receiver)
    assert first["kind"] == "firing" and first["condition"] == "group" and len(first["alerts"]) == 10
    assert first["message"].startswith("[FIRING: 10 firing]") and first["message"].count("FIRING: cpu_usage") == 10
    assert len(receiver.bodies) == 2  # and one Slack message: one per channel, not per alert
    for k in range(2, 7):  # unchanged group: no notice at each group_interval
        tick(svc, T0 + k * 60 + 31)
    assert len(webhooks(receiver)) == 1
    tick(svc, T0 + 7 * 60 + 1)  # the 95 alert resolves: a change, which waits for the group's next look
    assert len(webhooks(receiver)) == 1
    tick(svc, T0 + 7 * 60 + 31)  # looks at 3m31s, 5m31s, 7m31s (group_interval 2m after the first notice)
    changed = webhooks(receiver)
    assert [b["kind"] for b in changed] == ["firing", "firing"]
    assert changed[1]["message"].startswith("[FIRING: 9 firing, 1 resolved]") and len(changed[1]["alerts"]) == 10
    for k in range(8, 18):  # 9 still firing, unchanged: one repeat 10 min after the last notice
        tick(svc, T0 + k * 60 + 31)
    kinds = [b["kind"] for b in webhooks(receiver)]
    assert kinds == ["firing", "firing", "repeat"], kinds
    assert len(webhooks(receiver)[-1]["alerts"]) == 9
