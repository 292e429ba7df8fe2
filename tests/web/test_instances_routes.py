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


# -- forgetting an instance: DELETE /api/v1/instances/{id} ------------------------------------

GONE = "gone-web-7"


@pytest.fixture
def alerting_service(tmp_path):
    from tests.alerting.alerting_helpers import make_service

    s = make_service(tmp_path / "alerting")
    yield s
    s.close()


def _push_breaching_cpu(client, t0: float) -> None:
    """Four minutes of cpu_usage at 95 from an agent, the way an agent pushes them."""
    samples = [{"metric": "cpu_usage", "value": 95.0, "ts": t0 + i * 10} for i in range(24)]
    r = client.post("/api/v1/ingest", json={"instance_id": GONE, "hostname": GONE, "samples": samples})
    assert r.status_code == 202, r.get_json()


def test_a_forgotten_instance_leaves_lists_metrics_and_alerts_and_keeps_its_history(alerting_service):
    import time

    from tests.alerting.alerting_helpers import Receiver, policy, subscribe

    s = alerting_service
    client = create_app(s).test_client()
    receiver = Receiver()
    try:
        t0 = (time.time() // 60) * 60 - 6 * 60
        _push_breaching_cpu(client, t0)
        pid = policy(s, targets={"instances": [GONE]},
                     contact_groups=[subscribe(s, [{"type": "webhook", "url": receiver.url}])])
        s.alerting.evaluate(now=t0 + 4 * 60 + 5)
        assert [a["state"] for a in s.alerting.repo.alerts(None, pid)] == ["firing"]
        report_id = s.diagnose(GONE)["report_id"]
        s.events.detected(GONE, "Disk.Full", t0 - 2 * 86400, "/ is full")  # older than the overview's day

        assert client.delete(f"/api/v1/instances/{GONE}").status_code == 204

        assert GONE not in [i["instance_id"] for i in client.get("/api/v1/instances").get_json()["instances"]]
        assert client.get(f"/api/v1/instances/{GONE}").status_code == 404
        scrape = client.get("/metrics").get_data(as_text=True)
        assert f'instance_id="{s.instance_id}"' in scrape and GONE not in scrape
        overview = client.get("/")
        assert overview.status_code == 200 and GONE not in overview.get_data(as_text=True)
        # Its firing alert resolved, and the receiver is told so.
        assert [a["state"] for a in s.alerting.repo.alerts(None, pid)] == ["resolved"]
        s.alerting.deliver()
        assert [b["kind"] for b in receiver.bodies] == ["firing", "resolved"]
        # The evaluator no longer targets it, though its samples still breach.
        s.alerting.evaluate(now=t0 + 5 * 60 + 5)
        assert [a["state"] for a in s.alerting.repo.alerts(None, pid)] == ["resolved"]
        # Its history stays readable by its id until retention.
        q = client.get(f"/api/v1/query?metric=cpu_usage&instance_id={GONE}&start={t0}&end={t0 + 240}&step=60")
        assert [len(x["points"]) for x in q.get_json()["series"]] == [4]
        events = client.get(f"/api/v1/events?instance_id={GONE}").get_json()["events"]
        assert "Disk.Full" in [e["type"] for e in events]
        assert client.get(f"/api/v1/diagnoses/{report_id}").status_code == 200
    finally:
        receiver.stop()


def test_forgetting_twice_or_an_unknown_instance_is_a_404_that_changes_nothing(client, service):
    client.post("/api/v1/ingest", json={"instance_id": GONE, "samples": []})
    assert client.delete(f"/api/v1/instances/{GONE}").status_code == 204
    again = client.delete(f"/api/v1/instances/{GONE}")
    assert again.status_code == 404
    assert again.get_json()["error"]["message"] == f"no instance {GONE}"
    assert client.delete("/api/v1/instances/never-seen").status_code == 404
    assert [i["instance_id"] for i in client.get("/api/v1/instances").get_json()["instances"]] == [service.instance_id]


def test_the_servers_own_instance_cannot_be_forgotten(client, service):
    r = client.delete(f"/api/v1/instances/{service.instance_id}")
    assert r.status_code == 409
    assert "this server itself" in r.get_json()["error"]["message"]
    assert service.instances.get(service.instance_id) is not None


def test_a_forgotten_instance_that_reports_again_is_registered_anew(client, service):
    client.post("/api/v1/ingest", json={"instance_id": GONE, "hostname": "old-name", "samples": []})
    first = service.instances.get(GONE)["first_seen"]
    service.set_monitoring(GONE, False)
    assert client.delete(f"/api/v1/instances/{GONE}").status_code == 204
    r = client.post("/api/v1/ingest", json={"instance_id": GONE, "samples": []})
    assert r.status_code == 202
    back = client.get(f"/api/v1/instances/{GONE}").get_json()
    assert back["first_seen"] > first
    assert back["monitoring"] is True and back["health_status"] == "Initializing"
    assert back["hostname"] == ""  # nothing of the forgotten row is carried over
    assert service.instances.forgotten_at(GONE) is None


def test_forgetting_needs_the_admin_token(tmp_path):
    token = "t0ken-" + "x" * 20
    s = Service(load(env={"DIAG_TOKEN": token}, data_dir=str(tmp_path / "d")))
    try:
        s.instances.register(GONE)
        c = create_app(s).test_client()
        assert c.delete(f"/api/v1/instances/{GONE}").status_code == 401
        assert s.instances.get(GONE) is not None
        ok = c.delete(f"/api/v1/instances/{GONE}", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 204
        assert s.instances.get(GONE) is None
    finally:
        s.close()
