"""The dashboard in Debian's Chromium (Playwright), against a real `diag serve` collecting
this machine every second. Screenshots of every page go to test-artifacts/dashboards/."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT, http

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "dashboards"
TOKEN = "browser-s3cret"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        (pytest.fail if IN_CI else pytest.skip)("chromium is not installed (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        # In CI a missing playwright is a broken setup, not a reason to run nothing.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _wait_for_data(url: str, timeout: float = 40) -> str:
    """The local instance once it has samples for the charts and its first full diagnosis."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = http("GET", url + "/api/v1/instances")
        inst = json.loads(body)["instances"][0]
        _, _, q = http("GET", f"{url}/api/v1/query?metric=cpu_usage&start=-5m&step=10s")
        if inst["health_status"] != "Initializing" and json.loads(q)["series"]:
            return inst["instance_id"]
        time.sleep(0.5)
    raise AssertionError("no data and no diagnosis in time")


class Watched:
    """A page whose console errors and requests are recorded."""

    def __init__(self, browser, origin: str):
        self.origin = origin
        self.context = browser.new_context(viewport={"width": 1366, "height": 768})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def foreign(self) -> list[str]:
        return [u for u in self.requests if not (u.startswith(self.origin + "/") or u.startswith("data:"))]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import ServeProcess, own_kmsg

    top = tmp_path_factory.mktemp("serve")
    # A kernel log of its own: a real fault another test left in the host's ring buffer
    # would fire a default event alert before the one the firing-alert test waits for.
    p = ServeProcess(top / "data", "--interval", "1s", "--kmsg", str(own_kmsg(top)))
    p.wait_ready()
    try:
        iid = _wait_for_data(p.url)
        yield p, iid
    finally:
        p.stop()


@pytest.fixture
def watched(browser, served):
    w = Watched(browser, served[0].url)
    yield w
    w.context.close()


def test_every_page_loads_clean_and_stays_on_its_origin(watched, served):
    proc, iid = served
    pages = {"overview": "/", "instance": f"/instances/{iid}", "instance-31d": f"/instances/{iid}?range=31d",
             "diagnosis": "/diagnosis", "alerts": "/alerts", "events": "/events", "login": "/login"}
    for name, path in pages.items():
        resp = watched.page.goto(proc.url + path, wait_until="networkidle")
        assert resp is not None and resp.status == 200, (name, resp and resp.status)
        assert watched.shot(name).stat().st_size > 10_000
        assert watched.errors == [], (name, watched.errors)
    assert watched.requests and watched.foreign() == []
    assert any("/plotly-" in u for u in watched.requests)


# What plotly drew, per chart: the data points (non-null y values, the event markers
# left out), the trace names, and whether it says "no data in this range".
_DRAWN = """() => Object.fromEntries([...document.querySelectorAll('.plot')].map(el => [el.dataset.key, {
    points: (el.data || []).filter(t => t.name !== 'events')
        .reduce((n, t) => n + (t.y || []).filter(y => y !== null && y !== undefined).length, 0),
    traces: (el.data || []).map(t => t.name),
    empty: ((el.layout || {}).annotations || []).some(a => a.text === 'no data in this range')}]))"""
# Charts of what every Linux machine has while it runs: CPU, memory, a network interface, a
# block device with some I/O, a mounted filesystem, processes (application groups). Disk await needs I/O completed in the
# range, which an idle machine may not have; the kernel chart's counters are often zero.
ALWAYS = ("cpu", "memory", "apps_cpu", "apps_memory", "bandwidth", "disk_iops", "disk_bps", "disk_util", "fs_usage")


def test_charts_hold_data_points_and_refresh(watched, served):
    from dashboards import figures

    proc, iid = served
    page = watched.page
    page.goto(f"{proc.url}/instances/{iid}?range=1h", wait_until="networkidle")
    drawn = page.evaluate(_DRAWN)
    assert set(drawn) == {c.key for c in figures.CHARTS}
    for key in ALWAYS:
        assert drawn[key]["points"] > 0, (key, drawn[key])
    # disk await: points, or no trace and the chart says so
    assert drawn["disk_await"]["points"] > 0 or (drawn["disk_await"]["empty"] and not drawn["disk_await"]["traces"])
    kernel = {line.name for line in figures.BY_KEY["kernel"].lines}
    assert kernel <= set(drawn["kernel"]["traces"]), drawn["kernel"]
    assert drawn["kernel"]["points"] > 0  # counts of zero are points too: the counters were read
    assert page.locator("#chart-cpu .main-svg .scatterlayer path.js-line").count() > 0
    assert page.locator("#chart-apps_memory .main-svg .scatterlayer path.js-fill").count() > 0  # stacked areas

    # auto-refresh: a fetch of /charts, then the charts, the health panel and the time stamp
    # all come from its answer
    page.evaluate("() => document.querySelector('#health .healthline').dataset.old = 'yes'")
    first = page.get_attribute("#charts", "data-drawn")
    with page.expect_response(lambda r: "/charts?" in r.url and r.status == 200, timeout=25_000) as got:
        pass
    body = got.value.json()
    page.wait_for_function("(at) => document.getElementById('refreshed').dataset.at === at",
                           arg=str(body["generated_at"]), timeout=5_000)
    assert page.get_attribute("#charts", "data-drawn") != first
    assert page.locator("#health .healthline").count() == 1
    assert page.locator("#health [data-old]").count() == 0  # the panel was replaced
    assert page.inner_text("#refreshed").startswith("updated ")
    assert page.evaluate(_DRAWN)["cpu"]["points"] >= drawn["cpu"]["points"]

    page.goto(f"{proc.url}/instances/{iid}?range=31d", wait_until="networkidle")
    month = page.evaluate(_DRAWN)
    for key in ("cpu", "memory", "fs_usage"):
        assert month[key]["points"] > 0, (key, month[key])
    assert page.locator(".rangebar .seg.on").inner_text() == "31d"
    assert watched.errors == [] and watched.foreign() == []


def test_run_diagnosis_shows_a_new_report(watched, served):
    proc, iid = served
    before = {r["report_id"] for r in json.loads(http("GET", f"{proc.url}/api/v1/diagnoses?instance_id={iid}")[2])["reports"]}
    watched.page.goto(f"{proc.url}/diagnosis", wait_until="networkidle")
    with watched.page.expect_navigation():
        watched.page.click("#run-diagnosis")
    after = json.loads(http("GET", f"{proc.url}/api/v1/diagnoses?instance_id={iid}")[2])["reports"]
    new = [r["report_id"] for r in after if r["report_id"] not in before]
    assert len(new) >= 1
    assert f"report={new[0]}" in watched.page.url or new[0] in watched.page.inner_text("#report")
    assert new[0] in watched.page.inner_text("#report")
    # every category of the catalogue is on the page, each check with a status
    for category in ("Storage", "Performance", "State", "Network", "Access"):
        assert watched.page.locator("#report h3", has_text=category).count() == 1
    assert watched.page.locator("#report .check").count() == len(json.loads(http("GET", f"{proc.url}/api/v1/checks")[2])["checks"])
    watched.page.click("#history button")  # compare the two newest
    watched.page.wait_for_selector("#comparison")
    watched.shot("diagnosis-compare")
    assert watched.errors == []


def test_problems_only_hides_passing_checks_and_a_health_reason_links_to_its_check(watched, served):
    proc, iid = served
    page = watched.page
    page.goto(f"{proc.url}/diagnosis?instance_id={iid}", wait_until="networkidle")
    rows = page.locator("#report .check")
    total = rows.count()
    passing = page.locator("#report .check.s-ok-row, #report .check.s-not_applicable-row").count()
    assert total >= passing > 0
    assert not page.locator(".all-pass-note").is_visible()
    page.check("#problems-only")
    shown = [r for r in range(total) if rows.nth(r).is_visible()]
    assert len(shown) == total - passing
    assert page.locator(".all-pass-note").is_visible() == (not shown)  # an empty page says why
    assert all("s-ok-row" not in (rows.nth(r).get_attribute("class") or "") for r in shown)
    page.uncheck("#problems-only")
    assert sum(rows.nth(r).is_visible() for r in range(total)) == total
    # The instance page's health reasons that name a check link to it in the latest report.
    page.goto(f"{proc.url}/instances/{iid}", wait_until="networkidle")
    links = page.locator("#health ul.reasons a[href*='#check-']")
    if links.count():
        href = links.first.get_attribute("href")
        page.goto(proc.url + href, wait_until="networkidle")
        target = href.rsplit("#", 1)[1]
        assert page.locator(f"[id='{target}']").is_visible()
    assert watched.errors == []


def test_a_firing_alert_reads_as_its_condition(watched, served):
    proc, iid = served
    status, _, body = http("POST", f"{proc.url}/api/v1/alert-policies", {
        "name": "Any CPU at all", "conditions": [{"metric": "cpu_usage", "period": "10s", "comparison": ">=",
                                                  "threshold": 0, "severity": "warning"}]})
    assert status == 201, body
    page = watched.page
    deadline = time.monotonic() + 45
    while True:  # the service evaluates every interval (1 s); a 10 s period has to end first
        page.goto(proc.url + "/", wait_until="networkidle")
        if page.locator("#firing .alert-row").count() or time.monotonic() > deadline:
            break
        time.sleep(2)
    row = page.locator("#firing .alert-row", has_text="Any CPU at all")
    assert row.count() == 1, page.inner_text("#firing")
    text = row.inner_text()
    assert iid in text and "cpu_usage avg over 10s >= 0 %" in text and "conditions[" not in text
    # The value now and the value it fired at, each with its unit.
    assert re.fullmatch(r"[\d.]+ % now\n[\d.]+ % at firing", row.locator("td.num").inner_text())
    watched.shot("overview-firing")
    page.goto(proc.url + "/alerts", wait_until="networkidle")
    alerts = page.inner_text("#firing")
    assert "Any CPU at all" in alerts and "cpu_usage avg over 10s >= 0 %" in alerts and "conditions[" not in alerts
    watched.shot("alerts-firing")
    pid = json.loads(body)["policy_id"]
    with page.expect_navigation():
        page.locator(f"#policy-{pid} button", has_text="Test").click()
    result = page.locator("#test-result .test-row")
    assert result.count() == 1 and "cpu_usage avg over 10s >= 0 %" in result.inner_text()
    watched.shot("alerts-test")
    assert watched.errors == [] and watched.foreign() == []


def test_a_policy_created_through_the_form_is_listed_and_in_the_api(watched, served):
    proc, _ = served
    page = watched.page
    page.goto(f"{proc.url}/alerts", wait_until="networkidle")
    page.fill("#p-name", "Browser CPU <b>hot</b>")
    page.select_option('select[name="conditions[0].metric"]', "cpu_usage")
    page.fill('input[name="conditions[0].threshold"]', "95")
    page.select_option('select[name="conditions[0].severity"]', "critical")
    with page.expect_navigation():
        page.click("#save-policy")
    assert page.locator(".policy-name", has_text="Browser CPU <b>hot</b>").count() == 1
    policies = json.loads(http("GET", f"{proc.url}/api/v1/alert-policies")[2])["policies"]
    mine = [p for p in policies if p["name"] == "Browser CPU <b>hot</b>"]
    assert len(mine) == 1 and mine[0]["conditions"][0]["threshold"] == 95 and mine[0]["enabled"]
    row = page.locator(f"#policy-{mine[0]['policy_id']}")
    with page.expect_navigation():
        row.locator("button", has_text="enabled").click()
    assert json.loads(http("GET", f"{proc.url}/api/v1/alert-policies/{mine[0]['policy_id']}")[2])["enabled"] is False
    watched.shot("alerts-created")
    assert watched.errors == []


def test_a_bad_form_value_shows_its_error_beside_the_field(watched, served):
    proc, _ = served
    page = watched.page
    page.goto(f"{proc.url}/alerts", wait_until="networkidle")
    page.fill("#p-name", "bad threshold")
    page.select_option('select[name="conditions[0].metric"]', "cpu_usage")
    page.fill('input[name="conditions[0].threshold"]', "ninety")
    with page.expect_navigation():
        page.click("#save-policy")
    err = page.locator('.err[data-field="conditions[0].threshold"]')
    assert err.is_visible() and err.inner_text()
    # beside the field: in the same table cell as the input
    assert page.locator('td:has(input[name="conditions[0].threshold"]) .err').count() == 1
    assert page.input_value('input[name="conditions[0].threshold"]') == "ninety"
    watched.shot("alerts-error")
    policies = json.loads(http("GET", f"{proc.url}/api/v1/alert-policies")[2])["policies"]
    assert not [p for p in policies if p["name"] == "bad threshold"]
    page.goto(f"{proc.url}/events", wait_until="networkidle")
    page.fill("#f-duration", "forever")
    with page.expect_navigation():
        page.click("#schedule-form button.primary")
    assert page.locator("#err-duration").is_visible()
    watched.shot("events-error")


def test_login_keeps_a_secure_httponly_cookie_on_loopback(browser, tmp_path):
    from tests.conftest import ServeProcess

    proc = ServeProcess(tmp_path / "data", "--interval", "1s", env={"DIAG_TOKEN": TOKEN})
    proc.wait_ready()
    w = Watched(browser, proc.url)
    try:
        page = w.page
        page.goto(proc.url + "/events", wait_until="networkidle")
        with page.expect_navigation():
            page.click("#schedule-form button.primary")  # not logged in: sent to the login page
        assert "/login" in page.url
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("button.primary")
        cookies = {c["name"]: c for c in w.context.cookies()}
        c = cookies["diag_session"]
        assert c["secure"] and c["httpOnly"] and c["sameSite"] == "Strict"  # Chromium kept it on http://127.0.0.1
        assert TOKEN not in c["value"]
        page.goto(proc.url + "/events", wait_until="networkidle")
        with page.expect_navigation():
            page.click("#schedule-form button.primary")
        assert "scheduled SystemMaintenance.Reboot" in page.inner_text(".notice")
        _, _, body = http("GET", proc.url + "/api/v1/events?status=Scheduled")
        assert len(json.loads(body)["events"]) == 1
        page.once("dialog", lambda d: d.accept())  # "Cancel SystemMaintenance.Reboot?"
        with page.expect_navigation():
            page.locator("button", has_text="Cancel").first.click()
        _, _, body = http("GET", proc.url + "/api/v1/events?status=Canceled")
        assert len(json.loads(body)["events"]) == 1
        w.shot("events-logged-in")
        assert w.errors == [] and w.foreign() == []
    finally:
        w.context.close()
        proc.stop()


def test_commands_save_run_and_read_the_output(browser, tmp_path):
    from playwright.sync_api import expect

    from tests.conftest import ServeProcess

    config = tmp_path / "diag.toml"  # any filesystem in use is over a 0 % line: storage.disk_usage warns
    config.write_text('[checks."storage.disk_usage"]\nwarning = 0\ncritical = 100\n')
    proc = ServeProcess(tmp_path / "data", "--interval", "1s", "--enable-commands", "--config", str(config),
                        env={"DIAG_TOKEN": TOKEN})
    proc.wait_ready()
    w = Watched(browser, proc.url)
    try:
        page = w.page
        page.goto(proc.url + "/", wait_until="networkidle")
        with page.expect_navigation():
            page.click("header nav a:has-text('Commands')")
        assert "/login" in page.url  # the page itself needs the login, reading too
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("button.primary")
        assert page.url.endswith("/commands")
        page.fill("#c-name", "say hello")
        page.fill("#c-content", "echo hello")
        with page.expect_navigation():
            page.click("#save-command")
        row = page.locator("tr", has=page.locator(".command-name", has_text="say hello"))
        with page.expect_navigation():
            row.locator("a", has_text="Run").click()
        local = json.loads(http("GET", proc.url + "/api/v1/instances")[2])["instances"][0]["instance_id"]
        assert page.is_checked(f'input[name="instance_ids"][value="{local}"]')
        w.shot("commands-run-form")
        with page.expect_navigation():
            page.click("#run-command")
        expect(page.locator(f"#instance-{local} pre.output")).to_have_text("hello\n", timeout=30_000)
        expect(page.locator("h1 .runstate")).to_have_text("✓ Finished", timeout=30_000)
        assert page.inner_text(".exit-code") == "0"
        w.shot("commands-run")
        invoke_id = page.inner_text("#invoke-id")
        _, _, body = http("GET", f"{proc.url}/api/v1/invocations/{invoke_id}",
                          headers={"Authorization": f"Bearer {TOKEN}"})
        inv = json.loads(body)
        assert inv["status"] == "Finished" and inv["instances"][0]["records"][0]["output"] == "hello\n"
        page.goto(proc.url + "/commands", wait_until="networkidle")
        assert page.locator("#invocations a", has_text="say hello").count() == 1
        w.shot("commands")

        # a command tagged with a check is offered beside it when it warns, and runs after the confirmation
        page.fill("#c-name", "clear the journal")
        page.fill("#c-content", "echo cleared")
        page.select_option("#c-checks", ["storage.disk_usage"])
        with page.expect_navigation():
            page.click("#save-command")
        page.goto(proc.url + "/diagnosis", wait_until="networkidle")
        with page.expect_navigation():
            page.click("#run-diagnosis")
        check = page.locator('[id="check-storage.disk_usage"]')
        assert "warning" in check.inner_text()
        w.shot("commands-offer")
        with page.expect_navigation():
            check.locator("a", has_text="Run ‘clear the journal’").click()
        assert page.inner_text("#script") == "echo cleared" and local in page.inner_text("#confirm")
        w.shot("commands-confirm")
        with page.expect_navigation():
            page.click("#confirm-run")
        expect(page.locator(f"#instance-{local} pre.output")).to_have_text("cleared\n", timeout=30_000)
        assert "storage.disk_usage" in page.inner_text("#summary")
        assert w.errors == [] and w.foreign() == []
    finally:
        w.context.close()
        proc.stop()
