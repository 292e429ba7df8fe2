"""Switching monitoring of an instance off and on through PATCH /api/v1/instances/{id}."""


import pytest

from tests.conftest import collected_service
from diag.config import load
from diag.service import Service
from diag.web.app import create_app


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def test_monitoring_off_is_not_applicable_and_nothing_is_diagnosed(client, service):
    iid = service.instance_id
    r = client.patch(f"/api/v1/instances/{iid}", json={"monitoring": False})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["monitoring"] is False
    assert r.get_json()["health_status"] == "NotApplicable"
    assert client.get(f"/api/v1/instances/{iid}/health").get_json()["health_status"] == "NotApplicable"
    listed = {i["instance_id"]: i for i in client.get("/api/v1/instances").get_json()["instances"]}
    assert listed[iid]["health_status"] == "NotApplicable"

    service.diagnose_all()  # the scheduled job: nothing runs for it
    assert client.get(f"/api/v1/diagnoses?instance_id={iid}").get_json()["reports"] == []
    changes = [e for e in client.get(f"/api/v1/events?instance_id={iid}&type=Instance.HealthChanged")
               .get_json()["events"]]
    assert any(e["details"]["labels"].get("to") == "NotApplicable" for e in changes)

    r = client.patch(f"/api/v1/instances/{iid}", json={"monitoring": True})
    assert r.get_json()["monitoring"] is True
    assert r.get_json()["health_status"] == "Initializing"  # no full report yet
    service.diagnose_all()
    reports = client.get(f"/api/v1/diagnoses?instance_id={iid}").get_json()["reports"]
    assert len(reports) == 1
    assert client.get(f"/api/v1/instances/{iid}/health").get_json()["health_status"] != "NotApplicable"


@pytest.mark.parametrize("body, field", [
    ({"monitoring": "no"}, "monitoring"), ({}, "monitoring"), ({"monitoring": False, "hostname": "x"}, "hostname"),
])
def test_bad_changes_are_refused_and_change_nothing(client, service, body, field):
    r = client.patch(f"/api/v1/instances/{service.instance_id}", json=body)
    assert r.status_code == 422
    assert r.get_json()["error"]["field"] == field
    assert service.instances.get(service.instance_id)["monitoring"] is True


def test_unknown_instance_is_404(client):
    assert client.patch("/api/v1/instances/nope", json={"monitoring": False}).status_code == 404


def test_switching_needs_the_admin_token(tmp_path):
    s = Service(load(env={"DIAG_TOKEN": "t0ken-" + "x" * 20}, data_dir=str(tmp_path / "d")))
    try:
        c = create_app(s).test_client()
        url = f"/api/v1/instances/{s.instance_id}"
        assert c.patch(url, json={"monitoring": False}).status_code == 401
        ok = c.patch(url, json={"monitoring": False}, headers={"Authorization": "Bearer t0ken-" + "x" * 20})
        assert ok.status_code == 200
    finally:
        s.close()


def test_switching_a_diagnosed_instance_records_one_change(client, service):
    iid = service.instance_id
    service.diagnose(iid)
    before = service.health_of(iid)["health_status"]
    client.patch(f"/api/v1/instances/{iid}", json={"monitoring": False})
    changes = [e for e in client.get(f"/api/v1/events?instance_id={iid}&type=Instance.HealthChanged")
               .get_json()["events"] if e["details"]["labels"].get("to") == "NotApplicable"]
    assert len(changes) == 1 and changes[0]["details"]["count"] == 1  # not folded twice into one
    assert changes[0]["details"]["labels"]["from"] == before


def state_changes(client, iid: str) -> list[tuple[str, str]]:
    events = client.get(f"/api/v1/events?instance_id={iid}&type=Instance.StateChange").get_json()["events"]
    return [(e["details"]["labels"]["state"], e["details"]["labels"]["cause"]) for e in reversed(events)]


def test_a_machine_that_stops_reporting_and_comes_back_changes_state_twice(client, service):
    iid = service.instance_id
    service.diagnose(iid)
    seen = service.instances.get(iid)["last_seen"]
    assert state_changes(client, iid) == []
    silent = service.health_of(iid, seen + service.stopped_after + 1)  # no sample for 5 minutes
    assert silent["health_status"] == "Impaired"
    [(state, cause)] = state_changes(client, iid)
    assert state == "Stopped" and cause.startswith("no sample for 301s (since 20")  # a time a person reads
    service.health_of(iid, seen + service.stopped_after + 60)  # still silent: no second event
    assert len(state_changes(client, iid)) == 1
    back = seen + service.stopped_after + 90
    service.collect(back)  # the agent (here: the collector) is back
    service.health_of(iid, back + 1)
    assert state_changes(client, iid)[1:] == [("Running", "reporting again")], state_changes(client, iid)


def test_monitoring_off_and_on_are_state_changes(client, service):
    iid = service.instance_id
    client.patch(f"/api/v1/instances/{iid}", json={"monitoring": False})
    client.patch(f"/api/v1/instances/{iid}", json={"monitoring": False})  # no change, no event
    client.patch(f"/api/v1/instances/{iid}", json={"monitoring": True})
    assert state_changes(client, iid) == [("Unmonitored", "monitoring switched off"), ("Monitored", "monitoring switched on")]
