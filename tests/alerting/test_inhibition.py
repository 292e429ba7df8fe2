"""Inhibition rules: a stopped instance's disk alerts are not sent, a firing alert inhibits
the ones its rule names, and rules are validated and kept."""

from __future__ import annotations

from tests.alerting.alerting_helpers import T0, policy, put, states, subscribe

FS = {"device": "vda", "fstype": "ext4"}
STOPPED = [{"check_id": "state.stopped", "status": "critical", "message": "no sample for 5 minutes"}]


def disk_policy(svc, group: str) -> str:
    return policy(svc, name="disk full", targets={"instances": ["web1", "db1"]}, contact_groups=[group],
                  conditions=[{"metric": "fs_usage", "period": "1m", "comparison": ">=", "threshold": 90}])


def test_a_stopped_instances_disk_alerts_are_not_sent(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = disk_policy(svc, group)
    for inst in ("web1", "db1"):
        put(svc, inst, "fs_usage", T0, [97, 97, 97], labels={"mountpoint": "/data", **FS})
    svc.instances.set_health("web1", "Impaired", STOPPED, T0)
    svc.alerting.evaluate(now=T0 + 61)
    svc.alerting.deliver()
    assert states(svc, pid) == {("web1", "conditions[0]"): "firing", ("db1", "conditions[0]"): "firing"}
    assert [b["instance_id"] for b in receiver.bodies] == ["db1"]  # web1 fires, shown, but pages nobody
    [why] = [h["detail"] for h in svc.alerting.repo.history() if h["instance_id"] == "web1" and h["kind"] == "state"]
    assert why.startswith("inhibited by i-") and "InstanceNotReporting on web1" in why
    svc.instances.set_health("web1", "Healthy", [], T0 + 100)  # reporting again: its alert is heard now
    svc.alerting.evaluate(now=T0 + 121)
    svc.alerting.deliver()
    assert [(b["instance_id"], b["kind"]) for b in receiver.bodies] == [("db1", "firing"), ("web1", "firing")]


def test_a_firing_alert_inhibits_what_its_rule_names_on_the_same_instance(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    svc.alerting.inhibit_rules.put({"name": "down hides warnings",
                                    "source": [{"name": "alertname", "value": "HostDown"}],
                                    "target": [{"name": "severity", "value": "warning"}],
                                    "equal": ["instance_id"]})
    policy(svc, name="host down", contact_groups=[group], targets={"instances": ["web1"]},
           conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 98,
                        "severity": "critical"}])
    policy(svc, name="cpu busy", contact_groups=[group], targets={"instances": ["web1", "db1"]},
           conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 80,
                        "severity": "warning"}])
    put(svc, "web1", "cpu_usage", T0, [99])
    put(svc, "db1", "cpu_usage", T0, [85])
    svc.alerting.evaluate(now=T0 + 61)  # both fire in the same cycle: the source counts at once
    svc.alerting.deliver()
    assert sorted((b["policy_name"], b["instance_id"]) for b in receiver.bodies) == [
        ("cpu busy", "db1"), ("host down", "web1")]


def test_the_default_rule_is_created_once_and_a_deletion_sticks(tmp_path):
    from tests.alerting.alerting_helpers import make_service

    svc = make_service(tmp_path / "data")
    [rule] = svc.alerting.inhibit_rules.list()
    assert rule["equal"] == ["instance_id"] and "InstanceNotReporting" in rule["source"][0]["value"]
    assert svc.alerting.inhibit_rules.delete(rule["rule_id"])
    svc.close()
    svc = make_service(tmp_path / "data")
    assert svc.alerting.inhibit_rules.list() == []
    svc.close()


def test_rules_are_validated(svc):
    from diag.alerting.inhibition import RuleError

    for body, field in (({"name": "x", "source": []}, "source"),
                        ({"name": "x", "source": [{"name": "a", "op": "=~", "value": "("}]}, "source"),
                        ({"name": "x", "source": ["a=b"]}, "source"),
                        ({"name": "x", "source": [{"name": "a", "value": "b"}], "equal": ["a b"]}, "equal"),
                        ({"name": "", "source": [{"name": "a", "value": "b"}]}, "name")):
        try:
            svc.alerting.inhibit_rules.put(body)
            raise AssertionError(f"{body} was taken")
        except RuleError as e:
            assert e.field == field
    assert len(svc.alerting.inhibit_rules.list()) == 1  # the default rule only


def test_an_instance_in_maintenance_is_a_source_and_its_firing_alert_shows_as_inhibited(svc):
    import time

    pid = policy(svc, conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    now = time.time()
    put(svc, "web1", "cpu_usage", now // 60 * 60 - 120, [95, 95])
    svc.alerting.evaluate(now=now)
    [a] = svc.alerting.repo.alerts(["firing"], pid)
    assert svc.alerting.covering(now)(a)["inhibited_by"] is None
    svc.events.schedule("web1", "SystemMaintenance.Reboot", now + 1, 600, now=now)
    svc.alerting.evaluate(now=now + 30)
    inhibited = svc.alerting.covering(now + 30)(a)["inhibited_by"]
    assert inhibited["source"] == {"alertname": "InstanceMaintaining", "instance_id": "web1"}
