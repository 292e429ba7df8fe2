"""Contacts, channels and contact groups on the Alerts page, through the Flask test client
over a real service, with a real DingTalk-like robot on loopback for the test-send: create,
edit (the secrets kept while never shown), test, delete, and a group used by a policy."""

from __future__ import annotations

import re

import pytest

from diag.web.app import create_app
from tests.alerting.test_chat_channels import BUSY, OK, SECRET, TOKEN, Robot
from tests.conftest import collected_service


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=0, alerting={"defaults": False})
    yield s
    s.close()


@pytest.fixture
def robot():
    r = Robot("dingtalk", secret=SECRET)
    yield r
    r.stop()


def _csrf(client) -> str:
    page = client.get("/alerts").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _post(client, path: str, data: dict) -> object:
    return client.post(path, data={**data, "csrf_token": _csrf(client)})


def _section(page: str, section_id: str) -> str:
    m = re.search(rf'<section class="card" id="{section_id}">(.*?)</section>', page, re.S)
    assert m, section_id
    return m.group(1)


def test_contact_lifecycle_on_the_alerts_page(service, robot):
    client = create_app(service).test_client()
    r = _post(client, "/alerts/contacts", {"name": "ops", "channels[0].type": "dingtalk",
                                           "channels[0].url": robot.url(), "channels[0].secret": SECRET,
                                           "channels[0].format": "json", "channels[0].address": "",
                                           "channels[1].type": "", "channels[1].url": ""})
    assert r.status_code == 303, r.get_data(as_text=True)[:500]
    (c,) = service.alerting.repo.list("contact")
    assert c["channels"] == [{"type": "dingtalk", "url": robot.url(), "format": "json", "address": None,
                              "headers": {}, "secret": SECRET}]
    page = client.get("/alerts").get_data(as_text=True)
    assert TOKEN not in page and SECRET not in page
    contacts = _section(page, "contacts")
    assert "ops" in contacts and f"DingTalk robot {robot.base}/*** · signed" in contacts

    # Edit: the form shows *** for the token and the secret; saved back, they are kept.
    form = client.get(f"/alerts?contact={c['contact_id']}").get_data(as_text=True)
    assert TOKEN not in form and SECRET not in form and 'value="***"' in form
    r = _post(client, f"/alerts/contacts/{c['contact_id']}", {
        "name": "ops team", "channels[0].type": "dingtalk", "channels[0].url": f"{robot.base}/***",
        "channels[0].secret": "***", "channels[0].format": "json", "channels[0].address": "",
        "channels[1].type": "wecom", "channels[1].url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=k2",
        "channels[1].secret": "", "channels[1].format": "json", "channels[1].address": ""})
    assert r.status_code == 303
    stored = service.alerting.repo.get("contact", c["contact_id"])
    assert stored["name"] == "ops team" and stored["channels"][0]["url"] == robot.url()
    assert stored["channels"][0]["secret"] == SECRET and stored["channels"][1]["type"] == "wecom"

    # A bad row is shown beside its field, nothing saved.
    r = _post(client, f"/alerts/contacts/{c['contact_id']}", {
        "name": "ops team", "channels[0].type": "slack", "channels[0].url": "not a url",
        "channels[0].secret": "", "channels[0].format": "json", "channels[0].address": ""})
    assert r.status_code == 422
    assert 'data-field="channels[0]"' in r.get_data(as_text=True) and "needs an http(s) url" in r.get_data(as_text=True)
    assert len(service.alerting.repo.get("contact", c["contact_id"])["channels"]) == 2

    # Test-send: the robot gets a signed message, the dead WeCom URL fails; both are shown.
    r = _post(client, f"/alerts/contacts/{c['contact_id']}/test", {})
    assert r.status_code == 200
    shown = _section(r.get_data(as_text=True), "contact-test")
    assert robot.signatures == [True] and "diag TEST" in robot.requests[0]["body"]["markdown"]["title"]
    assert shown.count("✓ delivered") == 1 and shown.count("✗ failed") == 1 and "errcode 0" in shown
    assert TOKEN not in r.get_data(as_text=True)

    # A group, used by a policy: the group cannot go, nor the contact in it.
    r = _post(client, "/alerts/groups", {"name": "oncall", "contacts": [c["contact_id"]]})
    assert r.status_code == 303
    (g,) = service.alerting.repo.list("contact_group")
    assert g["contacts"] == [c["contact_id"]]
    assert "ops team" in _section(client.get("/alerts").get_data(as_text=True), "contact-groups")
    service.alerting.save_policy({"name": "cpu", "conditions": [{"metric": "cpu_usage", "period": "1m",
                                                                  "comparison": ">", "threshold": 90}],
                                  "contact_groups": [g["contact_group_id"]]})
    r = _post(client, f"/alerts/groups/{g['contact_group_id']}/delete", {})
    assert r.status_code == 409 and "policies cpu notify" in r.get_data(as_text=True)
    r = _post(client, f"/alerts/contacts/{c['contact_id']}/delete", {})
    assert r.status_code == 409 and service.alerting.repo.exists("contact", c["contact_id"])
    r = _post(client, f"/alerts/groups/{g['contact_group_id']}", {"name": "oncall", "contacts": []})
    assert r.status_code == 303 and service.alerting.repo.get("contact_group", g["contact_group_id"])["contacts"] == []
    r = _post(client, f"/alerts/contacts/{c['contact_id']}/delete", {})
    assert r.status_code == 303 and service.alerting.repo.list("contact") == []


def test_a_group_naming_an_unknown_contact_is_refused_beside_the_field(service):
    client = create_app(service).test_client()
    r = _post(client, "/alerts/groups", {"name": "g", "contacts": ["c-nope"]})
    assert r.status_code == 422
    assert 'data-field="group.contacts[0]"' in r.get_data(as_text=True)
    assert service.alerting.repo.list("contact_group") == []


def test_a_failing_robot_test_names_its_errcode(service):
    robot = Robot("wecom", answers=[(200, BUSY["wecom"])])
    try:
        client = create_app(service).test_client()
        cid = service.alerting.save_contact({"name": "wx", "channels": [{"type": "wecom", "url": robot.url()}]})[
            "contact_id"]
        r = _post(client, f"/alerts/contacts/{cid}/test", {})
        assert r.status_code == 200
        text = r.get_data(as_text=True)
        assert "a channel failed" in text and "errcode 45009" in text and TOKEN not in text
    finally:
        robot.stop()
    assert OK  # the robots' answers are shared with the alerting tests
