"""Routing, inhibition rules and matcher silences through the HTTP API, over a real service."""

from __future__ import annotations

import time

import pytest

from diag.web.app import create_app
from tests.conftest import collected_service

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">=", "threshold": 90}]


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=0, token=TOKEN)
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def test_a_silence_with_matchers_a_start_and_an_end(client, service):
    start = time.time() + 600
    body = {"matchers": [{"name": "instance_id", "value": service.instance_id},
                         {"name": "alertname", "op": "=~", "value": "cpu.*"}],
            "starts_at": start, "ends_at": start + 3600, "comment": "load test"}
    assert client.post("/api/v1/silences", json=body).status_code == 401
    r = client.post("/api/v1/silences", json=body, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    s = r.get_json()
    assert s["matchers"][1] == {"name": "alertname", "op": "=~", "value": "cpu.*"} and s["matchers"][0]["op"] == "="
    assert s["starts_at"] == start and s["ends_at"] == start + 3600 and s["created_by"].startswith("admin-token:")
    assert client.get(f"/api/v1/silences/{s['silence_id']}").get_json()["comment"] == "load test"


@pytest.mark.parametrize("change, field", [
    ({"matchers": [{"name": "a", "op": "=~", "value": "("}]}, "matchers"),
    ({"matchers": ["instance_id=web1"]}, "matchers"),
    ({"matchers": []}, "matchers"),
    ({"matchers": [{"name": "a", "op": "~", "value": "b"}]}, "matchers"),
    ({"ends_at": 1000}, "ends_at"),
    ({"duration": "1h", "ends_at": time.time() + 7200}, "duration"),
    ({"starts_at": "soon"}, "starts_at"),
    ({"ends_at": None}, "ends_at"),  # found by schemathesis: null is not "left out"
    ({"alert_id": "a-x"}, "alert_id"),
])
def test_a_bad_matcher_silence_is_refused_and_changes_nothing(client, change, field):
    body = {"matchers": [{"name": "instance_id", "value": "web1"}], **change}
    r = client.post("/api/v1/silences", json=body, headers=AUTH)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == field, r.get_json()
    assert client.get("/api/v1/silences").get_json()["silences"] == []


def test_routing_on_a_policy_and_a_contact_group(client):
    r = client.post("/api/v1/alert-policies", json={"name": "cpu", "conditions": COND,
                                                    "routing": {"group_by": ["instance_id"], "group_wait": "10s"}},
                    headers=AUTH)
    assert r.status_code == 201
    assert r.get_json()["routing"] == {"group_by": ["instance_id"], "group_wait": 10.0, "group_interval": 300.0,
                                       "repeat_interval": 14400.0}
    bad = client.post("/api/v1/alert-policies", json={"name": "x", "conditions": COND,
                                                      "routing": {"repeat_interval": "30s"}}, headers=AUTH)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "routing.repeat_interval"
    g = client.post("/api/v1/contact-groups", json={"name": "ops", "routing": {"group_interval": "10m"}}, headers=AUTH)
    assert g.status_code == 201 and g.get_json()["routing"]["group_interval"] == 600
    assert client.get("/api/v1/alert-groups").get_json() == {"groups": []}


def test_inhibition_rules_listed_added_and_deleted(client):
    [default] = client.get("/api/v1/inhibit-rules").get_json()["rules"]
    assert default["equal"] == ["instance_id"]
    body = {"name": "down hides warnings", "source": [{"name": "alertname", "value": "host down"}],
            "target": {"severity": "warning"}, "equal": ["instance_id"]}  # a map: equality matchers
    assert client.post("/api/v1/inhibit-rules", json=body).status_code == 401
    r = client.post("/api/v1/inhibit-rules", json=body, headers=AUTH)
    assert r.status_code == 201 and r.get_json()["target"] == [{"name": "severity", "op": "=", "value": "warning"}]
    bad = client.post("/api/v1/inhibit-rules", json={**body, "source": [{"name": "a", "op": "=~", "value": "["}]},
                      headers=AUTH)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "source"
    long_label = client.post("/api/v1/inhibit-rules", json={**body, "equal": ["A" * 101]}, headers=AUTH)
    assert long_label.status_code == 422 and long_label.get_json()["error"]["field"] == "equal"
    assert len(client.get("/api/v1/inhibit-rules").get_json()["rules"]) == 2
    assert client.delete(f"/api/v1/inhibit-rules/{r.get_json()['rule_id']}", headers=AUTH).status_code == 204
    assert client.delete(f"/api/v1/inhibit-rules/{r.get_json()['rule_id']}", headers=AUTH).status_code == 404
