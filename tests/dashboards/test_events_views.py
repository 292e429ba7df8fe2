"""The Events page's lifecycle: ask first, accept, reschedule; detected events in an operator's words."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest

from diag.web.app import create_app
from tests.conftest import collected_service, own_kmsg


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=1, paths={"kmsg": str(own_kmsg(tmp_path))})
    yield s
    s.close()


def _csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/events").get_data(as_text=True)).group(1)


def test_ask_first_accept_and_reschedule_from_the_page(service):
    client = create_app(service).test_client()
    token = _csrf(client)
    r = client.post("/events/schedule", data={"csrf_token": token, "instance_id": service.instance_id,
                                              "type": "SystemMaintenance.Reboot", "not_before": "2099-01-01 10:00",
                                              "duration": "1h", "inquire": "1"})
    assert r.status_code == 303, r.get_data(as_text=True)
    [e] = service.events.list(status="Inquiring")
    page = client.get("/events").get_data(as_text=True)
    assert "waiting for your answer" in page and f"/events/{e['event_id']}/accept" in page

    r = client.post(f"/events/{e['event_id']}/reschedule", data={"csrf_token": token, "not_before": "2099-01-02 11:30"})
    assert r.status_code == 303
    moved = service.events.get(e["event_id"])
    assert moved["not_before"] == datetime(2099, 1, 2, 11, 30, tzinfo=timezone.utc).timestamp()
    assert moved["finish_time"] - moved["not_before"] == 3600

    r = client.post(f"/events/{e['event_id']}/accept", data={"csrf_token": token})
    assert r.status_code == 303 and "accepted" in r.headers["Location"]
    assert service.events.get(e["event_id"])["status"] == "Scheduled"
    again = client.post(f"/events/{e['event_id']}/accept", data={"csrf_token": token})
    assert again.status_code == 409 and "cannot be accepted" in again.get_data(as_text=True)

    bad = client.post(f"/events/{e['event_id']}/reschedule", data={"csrf_token": token, "not_before": "next week"})
    assert bad.status_code == 422 and "a start time like" in bad.get_data(as_text=True)
    past = client.post(f"/events/{e['event_id']}/reschedule", data={"csrf_token": token, "not_before": "2001-01-01 00:00"})
    assert past.status_code == 409 and "in the past" in past.get_data(as_text=True)
    assert service.events.get(e["event_id"])["not_before"] == moved["not_before"]


def test_detected_events_read_ongoing_then_detected_with_first_and_last_time(service):
    client = create_app(service).test_client()
    now = time.time()
    service.events.detected(service.instance_id, "Network.LinkDown", now - 3600, "eth9 down", fold_key="eth9")
    service.events.detected(service.instance_id, "Network.LinkDown", now - 3300, "eth9 down again", fold_key="eth9")
    service.events.detected(service.instance_id, "Kernel.OOMKill", now - 30, "Killed process 42 (java)")
    for ago in (120, 60, 5):  # a task still blocked, reported every minute
        service.events.detected(service.instance_id, "Kernel.HungTask", now - ago, "task dd blocked", fold_key="dd")
    page = client.get("/events?type=Network.LinkDown").get_data(as_text=True)
    assert re.search(r'title="API status: Executed">detected<', page)  # its repeats stopped long ago
    assert "(× 2)" in page and re.search(r"first \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, last \d{4}-", page)
    page = client.get("/events?type=Kernel.OOMKill").get_data(as_text=True)
    assert re.search(r'title="API status: Executed">detected<', page)  # once: a happening, not a state
    page = client.get("/events?type=Kernel.HungTask").get_data(as_text=True)
    assert re.search(r'title="API status: Executed">ongoing<', page) and "(× 3)" in page
