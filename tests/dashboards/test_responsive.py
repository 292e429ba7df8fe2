"""Every dashboard page in Debian's Chromium at a phone's width (390 px), a tablet's (768 px)
and a desktop's (1440 px): nothing wider than the viewport, the header above the page
instead of over it, no console error; and the time zone chosen in the header kept across
pages and used by every time a person reads. Screenshots go to test-artifacts/responsive/.

One `diag serve` and one browser for the module; one page per width, reused."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, http
from tests.dashboards.test_browser import _wait_for_data, browser  # noqa: F401 - the module's Chromium

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts" / "responsive"
TOKEN = "responsive-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ISO = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"

# Whatever sticks out of the viewport where a person can see it: an element's right edge,
# cut by every ancestor that clips or scrolls its overflow (a table scrolling inside its own
# box is fine; the page scrolling sideways is not). Also the header against the page.
_LAYOUT = """() => {
  const vw = window.innerWidth, out = [];
  for (const el of document.querySelectorAll('body *')) {
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden') continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    let right = r.right;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') right = Math.min(right, a.getBoundingClientRect().right);
    }
    if (right > vw + 1) {
      const cls = typeof el.className === 'string' && el.className ? '.' + el.className.split(' ').join('.') : '';
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + cls + ' right=' + Math.round(right));
    }
  }
  const header = document.querySelector('header.top').getBoundingClientRect();
  const main = document.querySelector('main').getBoundingClientRect();
  const spill = [...document.querySelectorAll('header.top *')].filter(el => {
    const r = el.getBoundingClientRect();
    return r.height > 0 && getComputedStyle(el).visibility !== 'hidden' &&
           (r.bottom > header.bottom + 1 || r.top < header.top - 1);
  }).map(el => el.tagName.toLowerCase() + ' ' + (el.textContent || '').trim().slice(0, 20));
  const scrolled = [...document.querySelectorAll('.scrollx')].filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => (e.closest('section[id]') || {id: '?'}).id + ': ' + e.scrollWidth + ' px in ' + e.clientWidth);
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: vw, wide: out.slice(0, 15), scrolled: scrolled,
          headerBottom: header.bottom, mainTop: main.top, headerHeight: header.height, spill: spill};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A service with something on every page: a firing alert, a scheduled maintenance,
    a report with a warning and a command offered for it, a finished command run."""
    from tests.conftest import ServeProcess, own_kmsg

    top = tmp_path_factory.mktemp("responsive")
    config = top / "diag.toml"  # any filesystem in use is over a 0 % line: storage.disk_usage warns
    config.write_text('[checks."storage.disk_usage"]\nwarning = 0\ncritical = 100\n')
    p = ServeProcess(top / "data", "--interval", "1s", "--kmsg", str(own_kmsg(top)), "--enable-commands",
                     "--config", str(config), env={"DIAG_TOKEN": TOKEN})
    p.wait_ready()
    try:
        api = p.url + "/api/v1"
        # first, so that its first periods run while the first diagnosis is made
        status, _, body = http("POST", api + "/alert-policies", {
            "name": "Any CPU at all", "conditions": [{"metric": "cpu_usage", "period": "3s", "comparison": ">=",
                                                      "threshold": 0, "severity": "warning"}]}, headers=AUTH)
        assert status == 201, body
        policy_id = json.loads(body)["policy_id"]
        iid = _wait_for_data(p.url)
        status, _, body = http("POST", api + "/events", {"instance_id": iid, "type": "SystemMaintenance.Reboot",
                                                          "not_before": time.time() + 3600, "duration": "1h"},
                               headers=AUTH)
        assert status in (200, 201), body
        status, _, body = http("POST", api + "/commands", {
            "name": "clear the journal", "type": "RunShellScript", "content": "echo cleared",
            "description": "journalctl --vacuum-size=200M, here only an echo", "check_ids": ["storage.disk_usage"]},
            headers=AUTH)
        assert status == 201, body
        command_id = json.loads(body)["command_id"]
        status, _, body = http("POST", f"{api}/commands/{command_id}/invoke", {"instance_ids": [iid]}, headers=AUTH)
        assert status == 201, body
        invoke_id = json.loads(body)["invoke_id"]
        # the first full report, made when the service started (_wait_for_data waited for it),
        # and a second to compare it with
        first = json.loads(http("GET", f"{api}/diagnoses?instance_id={iid}&limit=1")[2])["reports"][0]["report_id"]
        status, _, body = http("POST", api + "/diagnoses", {"instance_id": iid}, headers=AUTH)
        assert status == 201, body
        report_id = json.loads(body)["report_id"]
        deadline = time.monotonic() + 45
        while True:  # the alert fires once a period has ended
            _, _, alerts = http("GET", api + "/alerts?state=firing", headers=AUTH)
            if json.loads(alerts).get("alerts") or time.monotonic() > deadline:
                break
            time.sleep(1)
        yield {"proc": p, "iid": iid, "command_id": command_id, "invoke_id": invoke_id, "report_id": report_id,
               "first_report_id": first, "policy_id": policy_id}
    finally:
        p.stop()


def _pages(s: dict) -> dict[str, str]:
    iid = s["iid"]
    return {
        "overview": "/",
        "instance": f"/instances/{iid}?range=1h",
        "diagnosis": f"/diagnosis?instance_id={iid}&report={s['report_id']}",
        "diagnosis-compare": f"/diagnosis?instance_id={iid}&report={s['report_id']}"
                             f"&a={s['first_report_id']}&b={s['report_id']}",
        "events": "/events",
        "alerts": "/alerts",
        "alerts-edit-policy": f"/alerts?edit={s['policy_id']}",
        "commands": "/commands",
        "command-run": f"/commands/{s['command_id']}/run",
        "command-confirm": f"/commands/{s['command_id']}/confirm?instance_id={iid}&check_id=storage.disk_usage"
                           f"&report={s['report_id']}",
        "command-invocation": f"/commands/invocations/{s['invoke_id']}",
        "error": "/instances/no-such-instance",
    }


class Viewer:
    """One browser context and page at one width, with its console errors."""

    def __init__(self, browser, width: int, height: int, **context):  # noqa: F811
        self.width = width
        self.expect_404: str | None = None
        self.context = browser.new_context(viewport={"width": width, "height": height}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, m) -> None:
        # the error page's own 404 is what it is for; any other failed load is an error
        if m.type == "error" and not (m.text.startswith("Failed to load resource") and "404" in m.text
                                      and m.location.get("url") == self.expect_404):
            self.errors.append(f"{self.page.url}: {m.text}")

    def visit(self, url: str, name: str, status: int = 200) -> dict:
        self.expect_404 = url if status == 404 else None
        resp = self.page.goto(url, wait_until="load")  # the pages ask nothing more, but the charts (below)
        assert resp is not None and resp.status == status, (name, resp and resp.status)
        if "/instances/" in url and status == 200:
            self.page.wait_for_selector("#charts[data-drawn]")
        self.page.evaluate("() => document.fonts.ready")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # the page as it opens (what the layout test judges), then the whole length for a person to look at
        self.page.screenshot(path=str(ARTIFACTS / f"{name}-{self.width}.png"), full_page=True)
        return self.page.evaluate(_LAYOUT)

    def login(self, origin: str) -> None:
        self.page.goto(origin + "/login", wait_until="networkidle")
        self.page.fill("#token", TOKEN)
        with self.page.expect_navigation():
            self.page.click("form.form button.primary")


def _judge(layout: dict, name: str, width: int) -> list[str]:
    """What is wrong with one page's layout (nothing, when it fits)."""
    where = f"{name} at {width} px"
    assert layout["innerWidth"] == width, where
    wrong = []
    if layout["scrollWidth"] > width:
        wrong.append(f"{where}: the page is {layout['scrollWidth']} px wide")
    if layout["wide"]:
        wrong.append(f"{where}: past the right edge: {layout['wide']}")
    if layout["headerBottom"] > layout["mainTop"] + 0.5:
        wrong.append(f"{where}: the header ends at {layout['headerBottom']}, under the page's top {layout['mainTop']}")
    if width >= 1440 and layout["scrolled"]:  # on a desktop, no table hides columns in its scroll box
        wrong.append(f"{where}: a table scrolls in its box: {layout['scrolled']}")
    if layout["spill"]:
        wrong.append(f"{where}: outside the header's box: {layout['spill']}")
    return wrong


@pytest.mark.parametrize("width,height", [(390, 844), (1440, 900)])
def test_every_page_fits_the_screen(browser, site, width, height):  # noqa: F811
    """Every page at 390 px (then the instance page at 768 px) and at 1440 px."""
    origin = site["proc"].url
    v = Viewer(browser, width, height)
    try:
        # logged out first: the login page (a token is set), then every page logged in
        wrong = _judge(v.visit(origin + "/login", "login"), "login", width)
        v.login(origin)
        for name, path in _pages(site).items():
            status = 404 if name == "error" else 200
            wrong += _judge(v.visit(origin + path, name, status), name, width)
        if width == 390:  # and a tablet, in the same tab (plotly.js is cached): the charts' page
            v.page.set_viewport_size({"width": 768, "height": 1024})
            v.width = 768
            wrong += _judge(v.visit(f"{origin}/instances/{site['iid']}", "instance"), "instance", 768)
        assert wrong == [], "\n".join(wrong)
        assert v.errors == [], v.errors
    finally:
        v.context.close()


def test_the_menu_folds_and_the_chosen_time_zone_is_kept(browser, site):  # noqa: F811
    """On a phone in Japan: the Menu button opens the header's links (still above the page),
    the browser's zone is offered beside UTC, and once chosen every page's times, the range
    inputs and the charts' time axis are in it, on later pages too."""
    origin, iid = site["proc"].url, site["iid"]
    v = Viewer(browser, 390, 844, timezone_id="Asia/Tokyo")
    page = v.page
    try:
        page.goto(origin + "/", wait_until="networkidle")
        assert not page.is_visible("header nav") and page.is_visible("header button.menu")
        page.click("header button.menu")
        assert page.is_visible("header nav a:has-text('Events')") and page.is_visible("#tz")
        assert page.get_attribute("header button.menu", "aria-expanded") == "true"
        layout = page.evaluate(_LAYOUT)
        assert _judge(layout, "overview, menu open", 390) == [] and layout["headerHeight"] > 100
        page.screenshot(path=str(ARTIFACTS / "menu-open-390.png"))
        assert page.locator("#tz option").all_inner_texts() == ["UTC", "Asia/Tokyo (this browser)"]
        assert re.search(ISO + " UTC", page.inner_text("main"))
        with page.expect_navigation():
            page.select_option("#tz", "Asia/Tokyo")
        assert page.evaluate("document.documentElement.dataset.tz") == "Asia/Tokyo"
        cookie = {c["name"]: c for c in v.context.cookies()}["diag_tz"]
        assert cookie["value"] == "Asia/Tokyo" and cookie["expires"] > time.time() + 300 * 86400

        page.goto(f"{origin}/instances/{iid}?range=1h", wait_until="networkidle")
        page.wait_for_selector("#charts[data-drawn]")
        assert page.get_attribute(".rangebar input[name=start]", "type") == "text"
        end = page.input_value(".rangebar input[name=end]")
        wall = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + 9 * 3600))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", end) and abs(_minutes(end) - _minutes(wall)) <= 2, (end, wall)
        assert re.search(ISO + " JST → " + ISO + " JST", page.inner_text("#rangeinfo"))
        # a custom range typed in the zone's wall time: the page and the time axis say the same
        start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + 9 * 3600 - 1800))
        page.fill(".rangebar input[name=start]", start)
        page.fill(".rangebar input[name=end]", end)
        with page.expect_navigation():
            page.click(".rangebar button")
        page.wait_for_selector("#charts[data-drawn]")
        assert page.inner_text("#rangeinfo").startswith(f"{start}:00 JST → {end}:00 JST")
        axis = page.evaluate("document.getElementById('chart-cpu').layout.xaxis.range[0]")
        if isinstance(axis, (int, float)):  # milliseconds, as the server sent them (moved by the zone's offset)
            axis = time.strftime("%Y-%m-%d %H:%M", time.gmtime(axis / 1000))
        assert str(axis).startswith(start), axis  # plotly's UTC axis shows the wall time
        page.goto(f"{origin}/diagnosis?instance_id={iid}&report={site['report_id']}", wait_until="networkidle")
        report = page.inner_text("#report")
        assert re.search("Report of " + ISO + " JST", report) and " UTC" not in page.inner_text("#report h2")
        page.screenshot(path=str(ARTIFACTS / "diagnosis-tokyo-390.png"))

        page.click("header button.menu")
        with page.expect_navigation():
            page.select_option("#tz", "UTC")
        assert re.search("Report of " + ISO + " UTC", page.inner_text("#report"))
        assert v.errors == [], v.errors
    finally:
        v.context.close()


def _minutes(wall: str) -> float:
    return time.mktime(time.strptime(wall, "%Y-%m-%d %H:%M")) / 60
