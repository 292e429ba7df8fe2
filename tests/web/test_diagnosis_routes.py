"""Checks, diagnoses (JSON, HTML, Markdown), instances and events through the Flask app."""

import time

import pytest

from checks import catalogue
from tests.conftest import collected_service
from diag.web.app import create_app


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    s = collected_service(tmp_path_factory.mktemp("data"), collections=2, pause=0.2)
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def test_a_report_keeps_its_health_reasons(client, service):
    # Monitoring off makes the state NotApplicable, which has a reason whatever the machine.
    service.set_monitoring(service.instance_id, False)
    try:
        posted = client.post("/api/v1/diagnoses", json={"window": "1h"}).get_json()
    finally:
        service.set_monitoring(service.instance_id, True)
    assert posted["health_status"] == "NotApplicable" and posted["health_reasons"]
    got = client.get(f"/api/v1/diagnoses/{posted['report_id']}").get_json()
    assert got["health_reasons"] == posted["health_reasons"]
    assert got["health_status"] == posted["health_status"]


def test_checks_list_the_whole_catalogue(client):
    got = client.get("/api/v1/checks").get_json()["checks"]
    assert [c["id"] for c in got] == [c.id for c in catalogue.ALL]
    assert set(got[0]) >= {"id", "category", "name", "severity", "lookback", "thresholds", "description"}


def test_a_diagnosis_is_stored_listed_and_rendered(client, service):
    r = client.post("/api/v1/diagnoses", json={"window": "1h", "checks": ["storage.disk_usage", "performance.cpu"]})
    assert r.status_code == 201
    report = r.get_json()
    assert [c["id"] for c in report["checks"]] == ["storage.disk_usage", "performance.cpu"]
    assert all(c["duration_ms"] >= 0 and c["severity"] in ("critical", "non_critical") for c in report["checks"])
    assert sum(report["summary"].values()) == 2
    listed = client.get(f"/api/v1/diagnoses?instance_id={service.instance_id}&limit=5").get_json()["reports"]
    assert listed[0]["report_id"] == report["report_id"]
    same = client.get(f"/api/v1/diagnoses/{report['report_id']}").get_json()
    assert same["checks"] == report["checks"]
    md = client.get(f"/api/v1/diagnoses/{report['report_id']}?format=md")
    assert md.content_type.startswith("text/markdown") and b"`storage.disk_usage`" in md.data
    html = client.get(f"/api/v1/diagnoses/{report['report_id']}", headers={"Accept": "text/html"})
    assert html.content_type.startswith("text/html") and b"<h2>Storage</h2>" in html.data


def test_html_report_escapes_what_it_shows(client, service):
    evil = "<script>alert(1)</script>"
    service.events.detected(service.instance_id, "Disk.IOError", time.time(), evil, labels={"device": evil})
    rid = client.post("/api/v1/diagnoses", json={"checks": ["storage.io_errors"]}).get_json()["report_id"]
    page = client.get(f"/api/v1/diagnoses/{rid}?format=html").data
    assert b"<script>alert(1)" not in page and b"&lt;script&gt;" in page


@pytest.mark.parametrize("body, status, field", [
    ({"window": "forever"}, 422, "window"), ({"window": "10s"}, 422, "window"),
    ({"checks": ["storage.nope"]}, 422, "checks[0]"), ({"checks": []}, 422, "checks"),
    ({"instance_id": "no-such-host"}, 404, "instance_id"), ({"instance_id": "bad id!"}, 422, "instance_id"),
])
def test_bad_diagnosis_requests(client, body, status, field):
    before = len(client.get("/api/v1/diagnoses?limit=1000").get_json()["reports"])
    r = client.post("/api/v1/diagnoses", json=body)
    assert r.status_code == status and r.get_json()["error"]["field"] == field
    assert len(client.get("/api/v1/diagnoses?limit=1000").get_json()["reports"]) == before


def test_unknown_report_and_instance_are_404(client):
    assert client.get("/api/v1/diagnoses/r-nope").status_code == 404
    assert client.get("/api/v1/instances/nope").status_code == 404
    assert client.get("/api/v1/instances/nope/health").status_code == 404


def test_instances_carry_their_health(client, service):
    service.collect()  # fresh data, so the state cannot turn InsufficientData between the calls below
    report = service.diagnose()  # a full one: the state is no longer Initializing
    got = client.get("/api/v1/instances").get_json()["instances"]
    me = next(i for i in got if i["instance_id"] == service.instance_id)
    want = service.health_of(service.instance_id)
    assert me["health_status"] == want["health_status"] == report["health_status"]
    assert me["health_reasons"] == want["health_reasons"] == report["health_reasons"]
    assert me["latest_report_id"] == report["report_id"]
    one = client.get(f"/api/v1/instances/{service.instance_id}").get_json()
    assert {"health_status", "health_reasons", "latest_report_id", "hostname", "labels"} <= set(one)
    assert one["health_status"] == want["health_status"]


@pytest.mark.parametrize("body, field", [({"type": "Kernel.Panic"}, "type"),
                                         ({"type": "SystemMaintenance.Reboot", "duration": "5s"}, "duration"),
                                         ({"type": "SystemMaintenance.Reboot", "not_before": "tomorrow"}, "not_before")])
def test_bad_maintenance_requests(client, body, field):
    r = client.post("/api/v1/events", json=body)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == field


def test_events_filter_by_type_and_bad_filters(client, service):
    service.events.detected(service.instance_id, "Network.LinkDown", time.time(), "eth9 down")
    got = client.get("/api/v1/events?type=Network.LinkDown").get_json()["events"]
    assert got and {e["type"] for e in got} == {"Network.LinkDown"}
    assert client.get("/api/v1/events?status=Done").status_code == 400
    assert client.get("/api/v1/events?since=yesterday").status_code == 400


def test_an_inquiring_maintenance_is_accepted_rescheduled_and_refused_once_running(client, service):
    soon = time.time() + 3600
    e = client.post("/api/v1/events", json={"type": "SystemMaintenance.Reboot", "not_before": soon,
                                            "duration": "30m", "inquire": True}).get_json()
    assert e["status"] == "Inquiring"
    moved = client.patch(f"/api/v1/events/{e['event_id']}", json={"not_before": soon + 600})
    assert moved.status_code == 200 and moved.get_json()["not_before"] == soon + 600
    assert moved.get_json()["finish_time"] == soon + 600 + 1800  # the same 30 minutes
    accepted = client.post(f"/api/v1/events/{e['event_id']}/accept")
    assert accepted.status_code == 200 and accepted.get_json()["status"] == "Scheduled"
    again = client.post(f"/api/v1/events/{e['event_id']}/accept")
    assert again.status_code == 409 and "Scheduled" in again.get_json()["error"]["message"]
    # Once executing it can no longer move.
    now = client.post("/api/v1/events", json={"type": "SystemMaintenance.Stop", "not_before": "now"}).get_json()
    assert now["status"] == "Executing"
    r = client.patch(f"/api/v1/events/{now['event_id']}", json={"not_before": soon})
    assert r.status_code == 409
    client.post(f"/api/v1/events/{now['event_id']}/cancel")  # 409 too; the window ends by itself
    assert client.post("/api/v1/events/e-nope/accept").status_code == 404


@pytest.mark.parametrize("body, status, field", [
    ({"not_before": time.time() - 86400}, 409, "not_before"),
    ({"not_before": "someday"}, 422, "not_before"),
    ({}, 422, "not_before"),
    ({"not_before": "now", "duration": "1h"}, 422, "duration"),
])
def test_bad_reschedules_change_nothing(client, service, body, status, field):
    e = client.post("/api/v1/events", json={"type": "SystemMaintenance.Stop", "not_before": time.time() + 7200}).get_json()
    r = client.patch(f"/api/v1/events/{e['event_id']}", json=body)
    assert r.status_code == status and r.get_json()["error"]["field"] == field
    assert service.events.get(e["event_id"])["not_before"] == e["not_before"]
    bad = client.post("/api/v1/events", json={"type": "SystemMaintenance.Stop", "inquire": "yes"})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "inquire"
