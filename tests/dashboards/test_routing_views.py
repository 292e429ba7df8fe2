"""The Alerts page's routing, inhibition and matcher silences, through the Flask test
client over a real service: a silence made from a firing row with its labels prefilled,
the alerts a silence or a rule keeps quiet marked on their rows, and the grouping settings
of a policy and a contact group saved from their forms and shown."""

from __future__ import annotations

import re
import time

import pytest

from diag.web.app import create_app
from tests.conftest import collected_service
from tests.dashboards.test_alerts_views import _csrf, _section, _text


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=0, alerting={"defaults": False})
    yield s
    s.close()


def _firing(service) -> dict:
    service.alerting.save_policy({"name": "oom", "event_conditions": [{"type": "Kernel.OOMKill"}]})
    service.events.detected(service.instance_id, "Kernel.OOMKill", time.time(), "Killed process 42 (java)")
    service.alerting.evaluate()
    [a] = service.alerting.repo.alerts(["firing"])
    return a


def test_silence_from_a_row_with_its_labels_prefilled_then_shown_on_the_row(service):
    a = _firing(service)
    client = create_app(service).test_client()
    row = _section(client.get("/alerts").get_data(as_text=True), "firing")
    prefilled = re.search(r'<textarea name="matchers"[^>]*>(.*?)</textarea>', row, re.S).group(1)
    lines = prefilled.replace("&#34;", '"').replace("&quot;", '"').splitlines()
    assert 'alertname="Oom_event0"' in lines and f'instance_id="{service.instance_id}"' in lines
    assert 'event_type="Kernel.OOMKill"' in lines
    token = _csrf(client)
    form = {"csrf_token": token, "scope": "matchers", "alert_id": a["alert_id"], "policy_id": a["policy_id"],
            "instance_id": a["instance_id"], "duration": "1h", "starts": "now", "comment": "java leak, known"}
    bad = client.post("/alerts/silences", data={**form, "matchers": 'alertname=~"("'})
    assert bad.status_code == 422 and service.alerting.repo.silences(time.time()) == []
    two = [x for x in lines if x.startswith(("alertname=", "instance_id="))]
    r = client.post("/alerts/silences", data={**form, "matchers": "\n".join(two)})
    assert r.status_code == 303
    [s] = service.alerting.repo.silences(time.time())
    assert s["matchers"] == [{"name": "alertname", "op": "=", "value": "Oom_event0"},
                             {"name": "instance_id", "op": "=", "value": service.instance_id}]
    assert s["created_by"] == "local" and s["comment"] == "java leak, known"
    page = client.get("/alerts").get_data(as_text=True)
    assert "🔇 silenced until" in _text(_section(page, "firing")) and "java leak, known" in _text(_section(page, "firing"))
    assert 'alertname="Oom_event0"' in _text(_section(page, "silences")).replace("&#34;", '"')
    # a silence that starts later covers nothing yet, and says so
    client.post(f"/alerts/silences/{s['silence_id']}/expire", data={"csrf_token": token})
    client.post("/alerts/silences", data={**form, "matchers": lines[0], "starts": "in 1h"})
    page = client.get("/alerts").get_data(as_text=True)
    assert "🔇" not in _section(page, "firing") and "(not yet)" in _text(_section(page, "silences"))


def test_an_inhibited_alert_is_marked_and_rules_are_added_and_deleted_from_the_page(service):
    _firing(service)
    client = create_app(service).test_client()
    token = _csrf(client)
    page = client.get("/alerts").get_data(as_text=True)
    assert "⛔" not in _section(page, "firing")
    assert "InstanceNotReporting" in _section(page, "inhibition")  # the default rule is shown
    bad = client.post("/alerts/inhibit-rules", data={"csrf_token": token, "name": "x", "source": "nope"})
    assert bad.status_code == 422
    r = client.post("/alerts/inhibit-rules", data={"csrf_token": token, "name": "kernel trouble hides oom",
                                                   "source": 'event_type="Kernel.OOMKill"',
                                                   "target": "", "equal": "instance_id"})
    assert r.status_code == 303
    # an alert never inhibits itself: a second firing alert is needed as the source
    service.alerting.save_policy({"name": "oom twice", "event_conditions": [{"type": "Kernel.OOMKill"}]})
    service.events.detected(service.instance_id, "Kernel.OOMKill", time.time() + 1, "Killed process 43 (java)",
                            fold_key="2")
    service.alerting.evaluate()
    row = _text(_section(client.get("/alerts").get_data(as_text=True), "firing"))
    assert row.count("⛔ inhibited by kernel trouble hides oom") == 2  # each by the other
    rule = next(x for x in service.alerting.inhibit_rules.list() if x["name"] == "kernel trouble hides oom")
    assert client.post(f"/alerts/inhibit-rules/{rule['rule_id']}/delete", data={"csrf_token": token}).status_code == 303
    assert "⛔" not in _section(client.get("/alerts").get_data(as_text=True), "firing")


def test_grouping_settings_of_a_policy_and_a_group_are_saved_from_their_forms_and_shown(service):
    client = create_app(service).test_client()
    token = _csrf(client)
    r = client.post("/alerts/groups", data={"csrf_token": token, "name": "ops", "routing.on": "on",
                                            "routing.group_by": "instance_id", "routing.group_wait": "1m",
                                            "routing.group_interval": "10m", "routing.repeat_interval": "2h"})
    assert r.status_code == 303
    [g] = service.alerting.repo.list("contact_group")
    assert g["routing"] == {"group_by": ["instance_id"], "group_wait": 60, "group_interval": 600, "repeat_interval": 7200}
    page = client.get("/alerts").get_data(as_text=True)
    assert "grouped by instance_id; first after 1m, changes every 10m, repeats every 2h" in _text(page)
    edit = client.get(f"/alerts?group={g['contact_group_id']}").get_data(as_text=True)
    assert 'name="routing.on" checked' in edit and 'value="10m"' in edit  # editing keeps it
    bad = client.post("/alerts/groups", data={"csrf_token": token, "name": "ops2", "routing.on": "on",
                                              "routing.group_by": "instance_id", "routing.group_wait": "3h"})
    assert bad.status_code == 422 and 'data-field="routing.group_wait"' in bad.get_data(as_text=True)
    policy = {"csrf_token": token, "name": "cpu", "conditions_rows": "1", "conditions[0].metric": "cpu_usage",
              "conditions[0].threshold": "90", "conditions[0].period": "1m", "enabled": "on", "silence": "1h",
              "routing.on": "on", "routing.group_by": "policy_id, instance_id", "routing.group_wait": "30s",
              "routing.group_interval": "5m", "routing.repeat_interval": "4h"}
    assert client.post("/alerts/policies", data=policy).status_code == 303
    [p] = service.alerting.repo.list("policy")
    assert p["routing"]["group_by"] == ["policy_id", "instance_id"] and p["routing"]["repeat_interval"] == 14400
    assert "grouped by policy_id, instance_id; first after 30s" in _text(_section(client.get("/alerts").get_data(as_text=True), "policies"))
    assert client.post("/alerts/policies", data={**policy, "name": "no grouping", "routing.on": ""}).status_code == 303
    assert service.alerting.repo.list("policy")[1]["routing"] is None
