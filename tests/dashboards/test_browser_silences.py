"""Silencing and acknowledging a firing alert from its row in Chromium (Playwright), against
a real `diag serve`: acknowledge it, then silence what matches its labels (prefilled,
edited) and see the silence on the row and in the Silences card. Screenshots go to
test-artifacts/dashboards/."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import http
from tests.dashboards.test_browser import Watched, browser  # noqa: F401 - pytest finds fixtures by name

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path):
    from tests.conftest import ServeProcess, own_kmsg

    p = ServeProcess(tmp_path / "data", "--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
    p.wait_ready()
    try:
        yield p
    finally:
        p.stop()


def _firing(url: str) -> dict:
    status, _, body = http("POST", url + "/api/v1/alert-policies", {
        "name": "Any CPU at all", "conditions": [{"metric": "cpu_usage", "period": "2s", "comparison": ">=",
                                                  "threshold": 0, "severity": "warning"}]})
    assert status == 201, body
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        alerts = json.loads(http("GET", url + "/api/v1/alerts?state=firing")[2])["alerts"]
        if alerts:
            return alerts[0]
        time.sleep(0.5)
    raise AssertionError("the alert did not fire")


def test_acknowledge_then_silence_a_firing_alert_from_its_row(browser, served):  # noqa: F811
    alert = _firing(served.url)
    w = Watched(browser, served.url)
    page = w.page
    page.goto(f"{served.url}/alerts", wait_until="networkidle")
    row = page.locator("#firing tbody tr").first
    row.locator('input[name="comment"]').first.fill("looking at it")
    with page.expect_navigation():
        row.locator("button", has_text="Ack").click()
    row = page.locator("#firing tbody tr").first
    assert "acknowledged by local" in row.inner_text() and "looking at it" in row.inner_text()

    row.locator("summary", has_text="Silence").click()
    row.locator('select[name="scope"]').select_option("matchers")
    prefilled = row.locator('textarea[name="matchers"]').input_value().splitlines()
    assert 'alertname="AnyCPUAtAll"' in prefilled and f'instance_id="{alert["instance_id"]}"' in prefilled
    assert 'severity="warning"' in prefilled
    row.locator('textarea[name="matchers"]').fill('alertname=~"AnyCPU.*"\n' + f'instance_id="{alert["instance_id"]}"')
    row.locator('select[name="duration"]').select_option("3h")
    row.locator('input[name="comment"]').last.fill("load test tonight")
    with page.expect_navigation():
        row.locator("button", has_text="Silence").click()
    assert "silenced what matches 2 matcher(s)" in page.locator("p.notice.good").inner_text()
    row = page.locator("#firing tbody tr").first
    assert "🔇 silenced until" in row.inner_text() and "load test tonight" in row.inner_text()
    card = page.locator("section#silences").inner_text()
    assert 'alertname=~"AnyCPU.*"' in card and "by local" in card
    [s] = json.loads(http("GET", served.url + "/api/v1/silences")[2])["silences"]
    assert abs(s["ends_at"] - s["starts_at"] - 3 * 3600) < 2
    listed = json.loads(http("GET", served.url + "/api/v1/alerts?state=firing")[2])["alerts"]
    assert listed[0]["silenced_by"] == s["silence_id"]
    w.shot("alerts-acknowledged-and-silenced")
    assert w.errors == []
