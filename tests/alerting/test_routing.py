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


def test_a_pending_group_survives_a_restart_and_a_sent_one_is_not_sent_again(tmp_path, receiver):
    from tests.alerting.alerting_helpers import Receiver

    am = Receiver()
    try:
        svc = make_service(tmp_path / "data")
        svc.instances.register("web1", hostname="web1")
        pid = ten_alert_policy(svc, receiver)
        contact = svc.alerting.repo.list("contact")[0]
        svc.alerting.save_contact({"name": contact["name"], "channels": [
            *contact["channels"], {"type": "alertmanager", "url": f"http://127.0.0.1:{am.port}"}]},
            contact["contact_id"])
        put(svc, "web1", "cpu_usage", T0, [99] * 10)
        tick(svc, T0 + 61)
        assert receiver.bodies == [] and len(svc.alerting.repo.alerts(["firing"], pid)) == 10
        # Alertmanager groups by itself: each alert goes to it at once
        assert sum(len(b) for b in am.bodies) == 10
        svc.close()

        svc = make_service(tmp_path / "data")  # the group waited in diag.db
        tick(svc, T0 + 75)
        assert receiver.bodies == []  # still within group_wait
        tick(svc, T0 + 91)
        assert [b["kind"] for b in webhooks(receiver)] == ["firing"] and len(webhooks(receiver)[0]["alerts"]) == 10
        svc.close()

        svc = make_service(tmp_path / "data")
        for k in range(2, 9):
            tick(svc, T0 + k * 60 + 31)
        assert len(webhooks(receiver)) == 1  # unchanged within repeat_interval: not sent again
        [group] = svc.alerting.repo.db.read("SELECT sends FROM alert_groups")
        assert group["sends"] == 1
        svc.close()
    finally:
        am.stop()


def test_acknowledging_the_firing_alerts_stops_the_group_repeats(svc, receiver):
    pid = ten_alert_policy(svc, receiver)
    put(svc, "web1", "cpu_usage", T0, [99] * 30)
    tick(svc, T0 + 61)
    tick(svc, T0 + 91)
    for a in svc.alerting.repo.alerts(["firing"], pid):
        svc.alerting.ack(a["alert_id"], "local", "on it", 3600, now=T0 + 120)
    for k in range(2, 25):  # repeat_interval 10m: without the acknowledgements, repeats at 11m31s and 21m31s
        tick(svc, T0 + k * 60 + 31)
    assert [b["kind"] for b in webhooks(receiver)] == ["firing"]


def test_route_of_a_contact_group_groups_every_policy_notifying_it_by_instance(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    g = svc.alerting.repo.get("contact_group", group)
    svc.alerting.save_group({"name": g["name"], "contacts": g["contacts"],
                             "routing": {"group_by": ["instance_id"], "group_wait": "1m"}}, group)
    for name, metric in (("cpu", "cpu_usage"), ("memory", "mem_usage")):
        svc.alerting.save_policy({"name": name, "targets": {"instances": ["web1", "db1"]}, "contact_groups": [group],
                                  "conditions": [{"metric": metric, "period": "1m", "comparison": ">",
                                                  "threshold": 90}]})
        for inst in ("web1", "db1"):
            put(svc, inst, metric, T0, [95] * 3)
    tick(svc, T0 + 61)
    tick(svc, T0 + 121)
    bodies = webhooks(receiver)
    assert sorted((b["group_labels"]["instance_id"], len(b["alerts"])) for b in bodies) == [("db1", 2), ("web1", 2)]
    assert {a["policy_name"] for a in bodies[0]["alerts"]} == {"cpu", "memory"}


def test_routing_settings_are_validated(svc):
    from diag.alerting.policy import PolicyError

    body = {"name": "x", "conditions": TEN[:1]}
    for routing, field in (({"group_wait": "2h"}, "routing.group_wait"), ({"repeat_interval": "1m"},
                           "routing.repeat_interval"), ({"group_by": ["not a label"]}, "routing.group_by"),
                           ({"group_interval": "05m"}, "routing.group_interval"), ({"wait": "1m"}, "routing.wait")):
        try:
            svc.alerting.save_policy({**body, "routing": routing})
            raise AssertionError(f"{routing} was taken")
        except PolicyError as e:
            assert e.field == field, (routing, e.field)
    saved = svc.alerting.save_policy({**body, "routing": {}})
    assert saved["routing"] == {"group_by": ["policy_id", "instance_id"], "group_wait": 30.0, "group_interval": 300.0,
                                "repeat_interval": 14400.0}


def test_an_alertmanager_format_webhook_gets_the_group_as_alertmanager_would_send_it(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url, "format": "alertmanager"}])
    pid = svc.alerting.save_policy({"name": "cpu steps", "targets": {"instances": ["web1"]}, "conditions": TEN[:3],
                                    "contact_groups": [group], "routing": {"group_wait": "0s"}})["policy_id"]
    put(svc, "web1", "cpu_usage", T0, [99])
    tick(svc, T0 + 61)
    [body] = receiver.bodies
    assert len(body["alerts"]) == 3 and {a["status"] for a in body["alerts"]} == {"firing"}
    assert body["groupLabels"]["instance_id"] == "web1" and body["commonLabels"]["policy_id"] == pid
    # each alert its own condition, so its own alertname (the exported rule's: issue 17)
    assert "condition" not in body["commonLabels"] and "alertname" not in body["commonLabels"]
    assert sorted(a["labels"]["alertname"] for a in body["alerts"]) == ["CpuSteps_0", "CpuSteps_1", "CpuSteps_2"]
