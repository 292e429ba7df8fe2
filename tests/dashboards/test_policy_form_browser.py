"""The policy form in Debian's Chromium against a real `diag serve`: every bad field marked
at once beside itself, metrics picked from the catalogue's list with their units and
descriptions, "Test" on an event-only policy sending a simulated event's notice to a real
local receiver, and the form in one column at a phone's width. Screenshots go to
test-artifacts/dashboards/."""

from __future__ import annotations

import json
import re

import pytest

from diag import catalogue
from tests.alerting.alerting_helpers import Receiver
from tests.conftest import http
from tests.dashboards.test_browser import ARTIFACTS, Watched, browser  # noqa: F401 - pytest finds fixtures by name
from tests.dashboards.test_responsive import _LAYOUT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import ServeProcess, own_kmsg

    top = tmp_path_factory.mktemp("serve")
    p = ServeProcess(top / "data", "--interval", "1s", "--kmsg", str(own_kmsg(top)))
    p.wait_ready()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def watched(browser, served):  # noqa: F811
    w = Watched(browser, served.url)
    yield w
    w.context.close()


def _policies(url: str) -> list[dict]:
    return json.loads(http("GET", f"{url}/api/v1/alert-policies")[2])["policies"]


def _shot(page, selector: str, name: str) -> None:
    """One section of the page, as a reader checking the layout would look at it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(selector).screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_three_bad_fields_show_three_errors_each_beside_its_field(watched, served):
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{served.url}/alerts#policy-form", wait_until="networkidle")
    before = len(_policies(served.url))
    page.fill("#p-name", "")  # no name,
    page.select_option('select[name="conditions[0].metric"]', "cpu_usage")
    page.fill('input[name="conditions[0].threshold"]', "ninety")  # no number,
    page.fill("#p-silence", "1m")  # and a repeat shorter than 5 minutes
    with page.expect_navigation():
        page.click("#save-policy")
    errors = page.locator("#policy-form .err")
    assert errors.count() == 3, errors.all_inner_texts()
    assert sorted(e.get_attribute("data-field") for e in errors.all()) == \
        ["conditions[0].threshold", "name", "silence"]
    # each in the box of its own input, visible, saying something
    for box in ('.field:has(#p-name)', 'td:has(input[name="conditions[0].threshold"])', '.field:has(#p-silence)'):
        err = page.locator(f"{box} .err")
        assert err.count() == 1 and err.is_visible() and err.inner_text().strip(), box
    assert "5m and 24h" in page.inner_text('.field:has(#p-silence) .err')
    assert "3 problems, each marked beside its field" in page.inner_text("#form-problems")
    # what the user chose is shown back, and nothing was saved
    assert page.input_value('input[name="conditions[0].threshold"]') == "ninety"
    assert page.input_value('select[name="conditions[0].metric"]') == "cpu_usage"
    assert len(_policies(served.url)) == before
    _shot(page, "#policy-form", "policy-form-three-errors")
    # Chromium logs the page's own 422 status; any other console error is the page's fault
    assert [e for e in watched.errors if "status of 422" not in e] == []


def test_metrics_are_picked_from_the_catalogue_with_unit_and_description(watched, served):
    page = watched.page
    page.goto(f"{served.url}/alerts#policy-form", wait_until="networkidle")
    metric = 'select[name="conditions[0].metric"]'
    groups = page.eval_on_selector_all(f"{metric} optgroup", "gs => gs.map(g => g.label)")
    assert {"CPU", "Memory", "Filesystem"} <= set(groups)
    cpu = page.locator(f'{metric} optgroup[label="CPU"] option[value="cpu_usage"]')
    assert cpu.inner_text().startswith("cpu_usage (%): ")
    assert cpu.get_attribute("title") == catalogue.get("cpu_usage").description
    # every catalogue metric is offered, and every one with a unit says it
    options = page.eval_on_selector_all(f"{metric} option[value]:not([value=''])",
                                        "os => os.map(o => [o.value, o.textContent])")
    offered = dict(options)
    assert set(catalogue.BY_NAME) <= set(offered)
    for name, m in catalogue.BY_NAME.items():
        if m.unit in ("bytes", "bytes/s", "celsius", "ms"):
            assert re.match(rf"{name} \(\S+\): ", offered[name]), offered[name]
    # picking one shows its description under the list and its unit after the threshold
    page.select_option(metric, "mem_used")
    row = page.locator("tr.cond").first
    assert row.locator(".metric-about").inner_text() == catalogue.get("mem_used").description
    assert row.locator(".unit").inner_text() == "B"
    assert "periods in a row" in row.locator("td.c-consecutive").inner_text()
    _shot(page, "#policy-form", "policy-form-metric")
    assert watched.errors == []


def test_test_on_an_event_only_policy_sends_a_simulated_event_to_its_contacts(watched, served):
    receiver = Receiver()
    try:
        status, _, body = http("POST", f"{served.url}/api/v1/contacts",
                               {"name": "hook", "channels": [{"type": "webhook", "url": receiver.url}]})
        assert status == 201, body
        status, _, body = http("POST", f"{served.url}/api/v1/contact-groups",
                               {"name": "oncall", "contacts": [json.loads(body)["contact_id"]]})
        assert status == 201, body
        group = json.loads(body)["contact_group_id"]
        page = watched.page  # a disabled policy of kernel events at CRITICAL, made in the form
        page.goto(f"{served.url}/alerts", wait_until="networkidle")
        page.fill("#p-name", "OOM kills")
        page.uncheck("#p-enabled")
        page.select_option('select[name="event_conditions[0].type"]', "Kernel.*")
        page.select_option('select[name="event_conditions[0].level"]', "CRITICAL")
        page.check(f'#p-groups input[value="{group}"]')
        with page.expect_navigation():
            page.click("#save-policy")
        mine = [p for p in _policies(served.url) if p["name"] == "OOM kills"]
        assert len(mine) == 1 and mine[0]["contact_groups"] == [group] and mine[0]["enabled"] is False
        assert mine[0]["event_conditions"] == [{"type": "Kernel.*", "level": "CRITICAL", "severity": None}]
        pid = mine[0]["policy_id"]
        with page.expect_navigation():
            page.locator(f"#policy-{pid} button", has_text="Test").click()
        result = page.inner_text("#test-result")
        assert "disabled" not in result and "targets no instance" not in result
        simulated = page.inner_text("#simulated")
        assert re.search(r"sample Kernel\.\S+ event at CRITICAL", simulated) and "marked as a test" in simulated
        row = page.locator("#test-result .test-row")
        assert row.count() == 1 and "fires" in row.inner_text()
        # the channel named as the history names it, its path masked (a webhook's path may be its token)
        assert f"test notice delivered: webhook/json:http://127.0.0.1:{receiver.port}/" in row.inner_text()
        assert "/hook" not in row.inner_text()
        # the receiver got the notice once, a real one of the event's kind, saying it is a test
        assert len(receiver.bodies) == 1
        notice = receiver.bodies[0]
        assert notice["kind"] == "test" and notice["message"].startswith("[TEST] OOM kills on ")
        assert notice["policy_id"] == pid and notice["condition"] == "event_conditions[0]"
        # no alert was stored; the send is in the history as a test of this policy
        assert json.loads(http("GET", f"{served.url}/api/v1/alerts")[2])["alerts"] == []
        history = page.inner_text("#history")
        assert "test" in history and "OOM kills" in history and "delivered" in history
        _shot(page, "#test-result", "policy-test-simulated-event")
        assert watched.errors == []
    finally:
        receiver.stop()


@pytest.mark.parametrize("width", [390, 1440])
def test_the_form_fits_the_screen_in_one_column_on_a_phone(browser, served, width):  # noqa: F811
    w = Watched(browser, served.url)
    try:
        page = w.page
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{served.url}/alerts", wait_until="networkidle")
        page.locator("#policy-form").scroll_into_view_if_needed()
        layout = page.evaluate(_LAYOUT)
        assert layout["scrollWidth"] <= width and layout["wide"] == [], layout
        label, name = page.locator('label[for="p-name"]').bounding_box(), page.locator("#p-name").bounding_box()
        metric = page.locator('select[name="conditions[0].metric"]').bounding_box()
        threshold = page.locator('input[name="conditions[0].threshold"]').bounding_box()
        form = page.locator("#policy-form form").bounding_box()
        if width == 390:  # one column: each label above its field, fields as wide as the form
            assert name["y"] >= label["y"] + label["height"] - 1 and abs(name["x"] - label["x"]) < 2
            assert metric["width"] > form["width"] * 0.9 and threshold["y"] > metric["y"] + metric["height"]
        else:  # two columns: the label beside its field, a condition on one line
            assert name["x"] > label["x"] + label["width"] and abs(name["y"] - label["y"]) < 20
            assert abs(threshold["y"] - metric["y"]) < 20
        _shot(page, "#policy-form", f"policy-form-{width}")
        assert w.errors == []
    finally:
        w.context.close()
