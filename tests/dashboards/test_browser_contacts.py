"""Contacts and channels on the Alerts page in Chromium (Playwright), against a real
`diag serve` and a real DingTalk-like robot on loopback that verifies the signature:
create a contact with a signed DingTalk channel, test-send it, put it in a group, edit it
without retyping the secret, and delete both. Screenshots go to test-artifacts/dashboards/."""

from __future__ import annotations

import json

import pytest

from tests.alerting.test_chat_channels import SECRET, TOKEN, Robot
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


def test_a_dingtalk_contact_is_created_tested_grouped_edited_and_deleted(browser, served):  # noqa: F811
    robot = Robot("dingtalk", secret=SECRET)
    w = Watched(browser, served.url)
    page = w.page
    page.on("dialog", lambda d: d.accept())  # the delete buttons ask first
    try:
        page.goto(f"{served.url}/alerts", wait_until="networkidle")
        page.fill("#c-name", "DingTalk ops")
        page.select_option('select[name="channels[0].type"]', "dingtalk")
        page.fill('input[name="channels[0].url"]', robot.url())
        page.fill('input[name="channels[0].secret"]', SECRET)
        with page.expect_navigation():
            page.click("#save-contact")
        row = page.locator("#contacts tr", has_text="DingTalk ops")
        assert row.count() == 1 and "· signed" in row.inner_text()
        assert TOKEN not in page.content() and SECRET not in page.content()
        (c,) = json.loads(http("GET", f"{served.url}/api/v1/contacts")[2])["contacts"]

        with page.expect_navigation():
            row.locator("button", has_text="Test").click()
        result = page.locator("#contact-test")
        assert "✓ delivered" in result.inner_text() and "errcode 0" in result.inner_text()
        assert robot.signatures == [True]
        assert robot.requests[0]["body"]["markdown"]["title"].startswith("diag TEST info: Test notification")
        w.shot("alerts-contact-tested")

        page.fill("#g-name", "oncall")
        page.check(f'input[name="contacts"][value="{c["contact_id"]}"]')
        with page.expect_navigation():
            page.click("#save-group")
        assert "DingTalk ops" in page.locator("#contact-groups tr", has_text="oncall").inner_text()

        # Edit the name only: the token and the secret stay as stored.
        with page.expect_navigation():
            page.locator("#contacts tr", has_text="DingTalk ops").locator("a", has_text="Edit").click()
        assert page.input_value('input[name="channels[0].secret"]') == "***"
        assert TOKEN not in page.content()
        page.fill("#c-name", "DingTalk on-call")
        with page.expect_navigation():
            page.click("#save-contact")
        with page.expect_navigation():
            page.locator("#contacts tr", has_text="DingTalk on-call").locator("button", has_text="Test").click()
        assert robot.signatures == [True, True] and len(robot.requests) == 2
        w.shot("alerts-contacts")

        with page.expect_navigation():
            page.locator("#contact-groups tr", has_text="oncall").locator("button", has_text="Delete").click()
        with page.expect_navigation():
            page.locator("#contacts tr", has_text="DingTalk on-call").locator("button", has_text="Delete").click()
        assert json.loads(http("GET", f"{served.url}/api/v1/contacts")[2])["contacts"] == []
        assert json.loads(http("GET", f"{served.url}/api/v1/contact-groups")[2])["contact_groups"] == []
        assert w.errors == [] and w.foreign() == []
    finally:
        w.context.close()
        robot.stop()
