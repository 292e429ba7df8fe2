"""Out of the box the default policies fire silently: the overview and the Alerts page say so,
and one step sends them to a contact group."""

from __future__ import annotations

import re

import pytest

from diag.web.app import create_app
from tests.conftest import collected_service, own_kmsg


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=1, paths={"kmsg": str(own_kmsg(tmp_path))},
                          alerting={"defaults": True})
    yield s
    s.close()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def test_nobody_is_notified_until_a_group_is_set_in_one_step(service):
    client = create_app(service).test_client()
    a = service.alerting
    enabled = [p for p in a.repo.list("policy") if p.get("enabled", True)]
    assert enabled and all(not p.get("contact_groups") for p in enabled)  # the one-click defaults

    overview = client.get("/").get_data(as_text=True)
    assert 'id="unheard"' in overview and f"{len(enabled)} enabled alert policies reach no contact" in overview
    page = client.get("/alerts").get_data(as_text=True)
    assert 'id="unheard"' in page and "Add a contact and a contact group" in page  # no group yet

    # A group whose contact has no channel does not count: still nobody hears.
    empty = a.save_group({"name": "nobody", "contacts": []})
    page = client.get("/alerts").get_data(as_text=True)
    assert 'action="/alerts/policies/notify"' in page
    r = client.post("/alerts/policies/notify", data={"csrf_token": _csrf(page), "group": empty["contact_group_id"]})
    assert r.status_code == 303
    assert 'id="unheard"' in client.get("/").get_data(as_text=True)

    ops = a.save_contact({"name": "ops", "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]})
    group = a.save_group({"name": "on-call", "contacts": [ops["contact_id"]]})
    page = client.get("/alerts").get_data(as_text=True)
    bad = client.post("/alerts/policies/notify", data={"csrf_token": _csrf(page), "group": "g-nope"})
    assert bad.status_code == 422
    r = client.post("/alerts/policies/notify", data={"csrf_token": _csrf(page), "group": group["contact_group_id"]})
    assert r.status_code == 303 and f"{len(enabled)}+policies+now+notify+on-call" in r.headers["Location"]
    assert all(group["contact_group_id"] in p["contact_groups"] for p in a.repo.list("policy") if p.get("enabled", True))
    assert 'id="unheard"' not in client.get("/").get_data(as_text=True)
    assert 'id="unheard"' not in client.get("/alerts").get_data(as_text=True)
