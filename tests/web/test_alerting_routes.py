"""The Alerting endpoints of API.md through the Flask app, over a real service."""

from __future__ import annotations

import subprocess
import time

import pytest

from diag.web.app import create_app
from tests.conftest import collected_service, need_tool

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLICY = {"name": "cpu", "conditions": [{"metric": "cpu_usage", "period": "1m", "comparison": ">=", "threshold": 90,
                                         "consecutive": 3, "severity": "critical"}]}


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=0, token=TOKEN)
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def test_defaults_exist_and_are_removable(client, service):
    ids = {p["policy_id"]: p for p in client.get("/api/v1/alert-policies").get_json()["policies"]}
    assert {"default-cpu", "default-memory", "default-bandwidth", "default-disk", "default-kernel-faults",
            "default-unexpected-reboot"} <= set(ids)
    from checks import catalogue

    disk = ids["default-disk"]["conditions"]
    assert [c["threshold"] for c in disk] == [catalogue.get("storage.disk_usage").thresholds[k]
                                              for k in ("warning", "critical")]
    cpu = ids["default-cpu"]["conditions"][0]
    assert (cpu["statistic"], cpu["period"], cpu["consecutive"]) == ("avg", 300, 3)
    assert client.delete("/api/v1/alert-policies/default-cpu", headers=AUTH).status_code == 204
    from diag.alerting import defaults

    assert defaults.create_once(service.alerting) == []  # deleted stays deleted
    assert client.get("/api/v1/alert-policies/default-cpu").status_code == 404


def test_policy_crud(client):
    r = client.post("/api/v1/alert-policies", json=POLICY, headers=AUTH)
    assert r.status_code == 201
    p = r.get_json()
    pid = p["policy_id"]
    assert p["id"] == pid and p["silence"] == 86400 and p["missing_data"] == "insufficient"
    assert client.get(f"/api/v1/alert-policies/{pid}").get_json()["name"] == "cpu"
    r = client.patch(f"/api/v1/alert-policies/{pid}", json={"enabled": False}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["enabled"] is False and r.get_json()["conditions"][0]["threshold"] == 90
    r = client.put(f"/api/v1/alert-policies/{pid}", json={**POLICY, "name": "cpu2"}, headers=AUTH)
    assert r.get_json()["name"] == "cpu2" and r.get_json()["enabled"] is True
    assert client.delete(f"/api/v1/alert-policies/{pid}", headers=AUTH).status_code == 204
    assert client.delete(f"/api/v1/alert-policies/{pid}", headers=AUTH).status_code == 404


@pytest.mark.parametrize("change, field", [
    ({"conditions": [{**POLICY["conditions"][0], "metric": "no_such_metric"}]}, "conditions[0].metric"),
    ({"conditions": [{**POLICY["conditions"][0], "comparison": "=>"}]}, "conditions[0].comparison"),
    ({"conditions": [{**POLICY["conditions"][0], "threshold": "high"}]}, "conditions[0].threshold"),
    ({"conditions": [{**POLICY["conditions"][0], "period": "5s"}]}, "conditions[0].period"),
    ({"targets": {"instances": []}}, "targets"),
    ({"contact_groups": ["g-nope"]}, "contact_groups[0]"),
    ({"silence": "1m"}, "silence"),
    ({"missing_data": "maybe"}, "missing_data"),
    ({"effective": {"timezone": "Mars/Base"}}, "effective.timezone"),
    ({"event_conditions": [{"type": "Kernel.Nope"}]}, "event_conditions[0].type"),
    ({"bogus": 1}, "bogus"),
])
def test_validation_names_the_field(client, change, field):
    r = client.post("/api/v1/alert-policies", json={**POLICY, **change}, headers=AUTH)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == field
    assert client.get("/api/v1/alert-policies").get_json()["policies"][-1]["name"] != "cpu"  # nothing half-written


def test_a_body_bad_in_three_places_names_all_three(client):
    """The first problem stays `field` and `message`, as before; `errors` lists every one,
    shape and references alike (an unknown metric beside a bad threshold)."""
    n = len(client.get("/api/v1/alert-policies").get_json()["policies"])
    body = {**POLICY, "silence": "1m", "conditions": [{**POLICY["conditions"][0], "threshold": "high"},
                                                     {**POLICY["conditions"][0], "metric": "no_such_metric"}]}
    r = client.post("/api/v1/alert-policies", json=body, headers=AUTH)
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["code"] == "InvalidParameter" and err["field"] == "conditions[0].threshold" and err["message"]
    assert [e["field"] for e in err["errors"]] == ["conditions[0].threshold", "silence", "conditions[1].metric"]
    assert all(e["message"] for e in err["errors"]) and err["errors"][0]["message"] == err["message"]
    assert "no_such_metric" in err["errors"][2]["message"]
    assert len(client.get("/api/v1/alert-policies").get_json()["policies"]) == n


def test_mutations_need_the_token(client):
    assert client.post("/api/v1/alert-policies", json=POLICY).status_code == 401
    assert client.post("/api/v1/silences", json={"instance_id": "x"}).status_code == 401
    assert client.post("/api/v1/contacts", json={}).status_code == 401
    assert client.get("/api/v1/alert-policies").status_code == 200


def test_contacts_groups_and_conflicts(client):
    r = client.post("/api/v1/contacts", json={"name": "ops", "channels": [{"type": "email"}]}, headers=AUTH)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "channels[0]"
    c = client.post("/api/v1/contacts", json={"name": "ops", "channels": [
        {"type": "webhook", "url": "http://127.0.0.1:9/x", "format": "alertmanager"},
        {"type": "email", "address": "ops@example.com"}]}, headers=AUTH).get_json()
    g = client.post("/api/v1/contact-groups", json={"name": "oncall", "contacts": [c["contact_id"]]},
                    headers=AUTH)
    assert g.status_code == 201
    gid = g.get_json()["contact_group_id"]
    assert client.get("/api/v1/contact-groups").get_json()["contact_groups"][0]["contacts"] == [c["contact_id"]]
    p = client.post("/api/v1/alert-policies", json={**POLICY, "contact_groups": [gid]}, headers=AUTH)
    assert p.status_code == 201
    assert client.delete(f"/api/v1/contact-groups/{gid}", headers=AUTH).status_code == 409
    assert client.delete(f"/api/v1/contacts/{c['contact_id']}", headers=AUTH).status_code == 409
    assert client.get("/api/v1/contacts/c-nope").status_code == 404


def test_test_endpoint_renders_and_sends_nothing(client, service):
    c = client.post("/api/v1/contacts", json={"name": "ops", "channels": [
        {"type": "webhook", "url": "http://127.0.0.1:9/x", "format": "alibaba"}]}, headers=AUTH).get_json()
    gid = client.post("/api/v1/contact-groups", json={"name": "g", "contacts": [c["contact_id"]]},
                      headers=AUTH).get_json()["contact_group_id"]
    r = client.post("/api/v1/alert-policies/default-kernel-faults", headers=AUTH)
    assert r.status_code == 405
    client.patch("/api/v1/alert-policies/default-kernel-faults", json={"contact_groups": [gid]}, headers=AUTH)
    r = client.post("/api/v1/alert-policies/default-kernel-faults/test", headers=AUTH,
                    json={"event": {"type": "Kernel.HungTask", "message": "task kworker blocked for 120 s"}})
    assert r.status_code == 200
    (res,) = r.get_json()["results"]
    assert res["instance_id"] == service.instance_id and res["would_notify"] == "firing"
    assert "Kernel.HungTask" in res["message"] and "blocked for 120 s" in res["message"]
    assert res["notifications"][0]["payload"]["name"] == "Instance:Kernel.HungTask:Executed"
    assert service.alerting.outbox.counts() == {} and service.alerting.repo.alerts(None) == []
    r = client.post("/api/v1/alert-policies/default-cpu/test", headers=AUTH)
    assert r.status_code == 200 and r.get_json()["sent"] is False
    r = client.post("/api/v1/alert-policies/default-cpu/test", json={"event": {"type": "Nope"}}, headers=AUTH)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "event.type"


def test_silences_listed_and_removable(client, service):
    r = client.post("/api/v1/silences", json={"instance_id": service.instance_id, "duration": "2h",
                                              "comment": "nightly backup"}, headers=AUTH)
    assert r.status_code == 201
    s = r.get_json()
    assert s["ends_at"] - s["created_at"] == 7200
    assert [x["silence_id"] for x in client.get("/api/v1/silences").get_json()["silences"]] == [s["silence_id"]]
    bad = client.post("/api/v1/silences", json={"instance_id": "a", "policy_id": "b"}, headers=AUTH)
    assert bad.status_code == 422
    assert client.post("/api/v1/silences", json={"policy_id": "p-nope"}, headers=AUTH).status_code == 404
    assert client.delete(f"/api/v1/silences/{s['silence_id']}", headers=AUTH).status_code == 204
    assert client.get("/api/v1/silences").get_json()["silences"] == []


def test_alerts_history_and_metrics(client, service):
    assert client.get("/api/v1/alerts").get_json() == {"alerts": []}
    assert client.get("/api/v1/alerts?state=bogus").status_code == 400
    assert client.get("/api/v1/alerts/history?since=-1h").get_json() == {"history": []}
    assert client.get("/api/v1/alerts/history?since=yesterday").status_code == 400
    text = client.get("/metrics").get_data(as_text=True)
    assert 'diag_alerts{severity="critical",state="firing"} 0.0' in text
    assert 'diag_alert_outbox{state="pending"} 0.0' in text


def test_metrics_pass_promtool(client, service, tmp_path):
    promtool = need_tool("promtool")
    service.collect()
    service.alerting.evaluate(now=time.time())
    text = client.get("/metrics").get_data()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert b"diag_alert" not in r.stdout + r.stderr, (r.stdout + r.stderr).decode()


def test_a_policy_read_can_be_put_back_changed(client):
    created = client.post("/api/v1/alert-policies", json=POLICY, headers=AUTH).get_json()
    read = client.get(f"/api/v1/alert-policies/{created['policy_id']}").get_json()
    read["name"] = "cpu, renamed"
    r = client.put(f"/api/v1/alert-policies/{created['policy_id']}", json=read, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["name"] == "cpu, renamed" and r.get_json()["policy_id"] == created["policy_id"]


def _firing_alert(service) -> dict:
    """A firing alert of an event policy, raised by a real event."""
    service.alerting.save_policy({"name": "oom", "event_conditions": [{"type": "Kernel.OOMKill"}]})
    service.events.detected(service.instance_id, "Kernel.OOMKill", time.time(), "Killed process 42 (java)")
    service.alerting.evaluate()
    [a] = service.alerting.repo.alerts(["firing"])
    return a


def test_ack_records_who_and_until_and_refuses_what_needs_none(client, service):
    a = _firing_alert(service)
    url = f"/api/v1/alerts/{a['alert_id']}/ack"
    assert client.post(url, json={"comment": "on it"}).status_code == 401  # the admin token, as every change
    r = client.post(url, json={"comment": "on it", "expires_in": "2h"}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    ack = r.get_json()["detail"]["ack"]
    assert ack["comment"] == "on it" and ack["until"] - ack["at"] == 7200
    assert ack["by"].startswith("admin-token:") and TOKEN not in ack["by"]
    for body, field in (({"expires_in": "30d"}, "expires_in"), ({"expires_in": "soon"}, "expires_in"),
                        ({"comment": 5}, "comment"), ({"who": "me"}, "who")):
        bad = client.post(url, json=body, headers=AUTH)
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == field, body
    assert client.post("/api/v1/alerts/a-nope/ack", json={}, headers=AUTH).status_code == 404
    # The alert resolves: an acknowledgement is no longer wanted.
    with service.db.write() as c:
        c.execute("UPDATE alerts SET state = 'resolved' WHERE alert_id = ?", (a["alert_id"],))
    assert client.post(url, json={}, headers=AUTH).status_code == 409
