"""The Connectivity page: through the Flask test client (the form runs the walk, errors name the
field, everything is escaped, CSRF and the login guard it) and in Chromium at 390 px."""

from __future__ import annotations

import re
import socket
import time

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app
from tests.conftest import free_port
from tests.dashboards.test_browser import Watched, browser  # noqa: F401 - the fixture

TOKEN = "conn-page-token"
EVIL = '<script>alert("x")</script>'


@pytest.fixture
def service(tmp_path):
    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    yield s
    s.close()


def _csrf(client, path: str = "/connectivity") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def test_the_form_runs_the_walk_and_lists_the_steps(service):
    c = create_app(service).test_client()
    page = c.get(f"/connectivity?source={service.instance_id}")
    assert page.status_code == 200 and b'id="connectivity-form"' in page.data
    port = free_port()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen(4)
        r = c.post("/connectivity", data={"csrf_token": _csrf(c), "source": service.instance_id, "kind": "address",
                                          "address": "127.0.0.1", "port": str(port), "protocol": "tcp"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "✓ reachable" in html
    assert html.count('<li id="step-') == 5 and 'id="step-probe"' in html
    # An instance as the destination: its listener is looked up, and the first problem named.
    r = c.post("/connectivity", data={"csrf_token": _csrf(c), "kind": "instance", "instance_id": service.instance_id,
                                      "port": str(port), "protocol": "tcp"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "✕ unreachable" in html
    assert "First problem, at <strong>destination_listener</strong>" in html and "nothing listens" in html


def test_bad_fields_are_named_and_every_value_is_escaped(service):
    c = create_app(service).test_client()
    tok = _csrf(c)
    r = c.post("/connectivity", data={"csrf_token": tok, "source": EVIL, "kind": "address",
                                      "address": "127.0.0.1", "port": "80"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "source:" in html
    assert EVIL not in html and "&lt;script&gt;" in html
    r = c.post("/connectivity", data={"csrf_token": tok, "kind": "address", "address": EVIL, "port": "80"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "destination.address:" in html and EVIL not in html
    r = c.post("/connectivity", data={"csrf_token": tok, "kind": "address", "address": "127.0.0.1", "port": "99999"})
    assert r.status_code == 400 and "port:" in r.get_data(as_text=True)


def test_without_csrf_or_login_nothing_is_probed(tmp_path):
    s = Service(load(env={"DIAG_TOKEN": TOKEN}, data_dir=str(tmp_path / "data")))
    try:
        c = create_app(s).test_client()
        form = {"kind": "address", "address": "127.0.0.1", "port": "80"}
        assert c.post("/connectivity", data=form).status_code == 403  # no CSRF token
        r = c.post("/connectivity", data={**form, "csrf_token": _csrf(c)})
        assert r.status_code == 303 and "/login" in r.headers["Location"]  # a token is set: log in first
    finally:
        s.close()


@pytest.mark.slow
def test_the_page_at_a_phones_width(browser, tmp_path):  # noqa: F811
    from tests.conftest import ServeProcess

    p = ServeProcess(tmp_path / "data", "--interval", "2s")
    p.wait_ready()
    port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    w = Watched(browser, p.url)
    try:
        w.context.close()
        w.context = browser.new_context(viewport={"width": 390, "height": 800})
        w.page = w.context.new_page()
        w.page.on("pageerror", lambda e: w.errors.append(str(e)))
        w.page.goto(p.url + "/connectivity", wait_until="networkidle")
        w.page.fill("input[name=address]", "127.0.0.1")
        w.page.fill("input[name=port]", str(port))
        w.page.click("#run-connectivity")
        w.page.wait_for_selector("#connectivity-result", timeout=15_000)
        assert w.page.locator("ol.conn-steps > li").count() == 5
        assert "reachable" in w.page.locator("#connectivity-result h2").inner_text()
        assert w.page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert w.errors == []
    finally:
        w.context.close()
        srv.close()
        assert p.stop() == 0, p.output()
