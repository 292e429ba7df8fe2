"""The Kernel log page in Chromium at a phone's width (390 px) and a laptop's, against a
real `diag serve` reading a kmsg file: the lines read in full, nothing runs from them, and
the page never scrolls sideways as a whole."""

from __future__ import annotations

import time

import pytest

from tests.dashboards.test_browser import ARGS, CHROMIUM, Watched, browser  # noqa: F401 - the fixture
from tests.fleet.fleet_helpers import kmsg_record

pytestmark = pytest.mark.slow

LONG = "usb 1-1.4: " + "x" * 300 + "-no-spaces-to-break-at"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import ServeProcess

    top = tmp_path_factory.mktemp("klog")
    kmsg = top / "own.kmsg"
    now = time.time()
    kmsg.write_text(kmsg_record(1, "<script>window.__ran = 1</script><img src=x onerror=\"window.__ran = 2\">",
                                at=now - 20, prio=3)
                    + kmsg_record(2, LONG, at=now - 10, prio=6))
    p = ServeProcess(top / "data", "--interval", "1s", "--kmsg", str(kmsg))
    p.wait_ready()
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.parametrize("width", [390, 1366])
def test_the_kernel_log_page_reads_in_full_and_runs_nothing(browser, served, width):  # noqa: F811
    from tests.conftest import http
    import json

    _, _, body = http("GET", served.url + "/api/v1/instances")
    iid = json.loads(body)["instances"][0]["instance_id"]
    w = Watched(browser, served.url)
    try:
        w.context.close()
        w.context = browser.new_context(viewport={"width": width, "height": 800})
        w.page = w.context.new_page()
        w.page.on("console", lambda m: w.errors.append(m.text) if m.type == "error" else None)
        w.page.on("pageerror", lambda e: w.errors.append(str(e)))
        w.page.on("request", lambda r: w.requests.append(r.url))
        deadline = time.monotonic() + 20
        while True:
            resp = w.page.goto(f"{served.url}/instances/{iid}/kernel-log", wait_until="networkidle")
            assert resp is not None and resp.status == 200
            if w.page.locator("table.kernel-log tbody tr").count() == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows = w.page.locator("table.kernel-log tbody tr")
        assert rows.count() == 2
        assert "<script>window.__ran = 1</script>" in rows.nth(0).inner_text()
        assert LONG in rows.nth(1).inner_text().replace("\n", "")
        assert w.page.evaluate("() => window.__ran === undefined")  # neither the script nor the onerror ran
        # the page as a whole fits the viewport: a long line wraps or scrolls inside its card
        assert w.page.evaluate("() => document.documentElement.scrollWidth") <= width
        # every row's text is on screen horizontally, the time first, in ISO 8601 UTC
        box = rows.nth(1).locator("code").bounding_box()
        assert box is not None and box["x"] + min(box["width"], 50) <= width
        shown = w.page.locator("table.kernel-log time").first
        assert shown.inner_text().replace("\n", "") == shown.get_attribute("datetime")
        assert shown.get_attribute("datetime").endswith("Z")
        assert w.shot(f"kernel-log-{width}").stat().st_size > 5_000
        assert w.errors == [] and w.foreign() == []
        # the instance page links here
        w.page.goto(f"{served.url}/instances/{iid}", wait_until="domcontentloaded")
        w.page.get_by_role("link", name="Kernel log →").click()
        w.page.wait_for_url(f"**/instances/{iid}/kernel-log")
    finally:
        w.context.close()
