"""The instance page's charts in Debian's Chromium against a real `diag serve` a few seconds
old: one zoom for every chart, kept across auto-refresh and in the link; range switches
without a page load; event markers that say what they are; a young instance's range
fitted to its data; the partial plotly bundle (issue 19 items 3 and 6)."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest

from tests.dashboards.test_browser import ALWAYS, _DRAWN, Watched, _wait_for_data, browser  # noqa: F401
from tests.fleet.fleet_helpers import hung_task

pytestmark = pytest.mark.slow

# Every chart's x range on the axis, in ms (plotly writes a range the user dragged as text).
_RANGES = """() => Object.fromEntries([...document.querySelectorAll('.plot')].map(el => [el.dataset.key,
    el._fullLayout.xaxis.range.map(v => typeof v === 'number' ? v
                                       : Date.parse(v.slice(0, 23).replace(' ', 'T') + 'Z'))]))"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.conftest import ServeProcess

    top = tmp_path_factory.mktemp("charts")
    kmsg = top / "own.kmsg"
    kmsg.touch()
    p = ServeProcess(top / "data", "--interval", "1s", "--kmsg", str(kmsg))
    p.wait_ready()
    try:
        iid = _wait_for_data(p.url)
        with kmsg.open("a") as f:  # an event for the kernel chart's markers
            f.write(hung_task(1, "kworker/0:1", 4242))
        yield p, iid
    finally:
        p.stop()


@pytest.fixture
def watched(browser, served):  # noqa: F811
    w = Watched(browser, served[0].url)
    yield w
    w.context.close()


def _same(a: list[float], b: list[float]) -> bool:
    return abs(a[0] - b[0]) < 2 and abs(a[1] - b[1]) < 2


def test_a_zoom_is_shared_by_every_chart_kept_across_refresh_and_in_the_link(watched, served):
    proc, iid = served
    page = watched.page
    page.goto(f"{proc.url}/instances/{iid}?range=1h", wait_until="networkidle")
    whole = page.evaluate(_RANGES)
    drag = page.locator("#chart-cpu .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)  # a drag along the time axis, as a person zooms
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
    page.mouse.up()
    page.wait_for_function("() => !document.getElementById('zoominfo').hidden")
    zoomed = page.evaluate(_RANGES)
    cpu = zoomed["cpu"]
    assert cpu[1] - cpu[0] < (whole["cpu"][1] - whole["cpu"][0]) / 3
    assert all(_same(r, cpu) for r in zoomed.values()), zoomed
    # the picker and the link say what the charts show
    assert "range=custom&start=" in page.url
    assert page.input_value("input[name=start]") == time.strftime("%Y-%m-%d %H:%M", time.gmtime(cpu[0] / 1000))
    assert page.inner_text("#zoominfo").startswith("zoomed to ")

    drawn = page.get_attribute("#charts", "data-drawn")
    with page.expect_response(lambda r: "/charts?" in r.url and r.status == 200, timeout=25_000) as got:
        pass
    # the refresh still follows the live range (a zoom under a minute wide asks for no data of its own)...
    assert "range=1h" in got.value.url
    page.wait_for_function("(d) => document.getElementById('charts').dataset.drawn !== d", arg=drawn)
    after = page.evaluate(_RANGES)
    assert all(_same(r, cpu) for r in after.values()), after  # ...and the zoom stays

    page.click("#zoomreset")
    back = page.evaluate(_RANGES)
    assert all(r[1] - r[0] > (cpu[1] - cpu[0]) * 2 for r in back.values()), back
    assert page.is_hidden("#zoominfo") and "range=1h" in page.url
    assert watched.errors == [] and watched.foreign() == []


def test_a_range_switch_fetches_data_without_loading_the_page(watched, served):
    import plotly

    proc, iid = served
    page = watched.page
    documents: list[str] = []
    page.on("request", lambda r: documents.append(r.url) if r.resource_type == "document" else None)
    with page.expect_response(lambda r: "/plotly-" in r.url) as bundle:
        page.goto(f"{proc.url}/instances/{iid}", wait_until="networkidle")
    full = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").stat().st_size
    assert len(bundle.value.body()) * 2 < full  # the partial bundle the browser ran
    page.evaluate("() => { window.samePage = true; }")
    assert len(documents) == 1

    with page.expect_response(lambda r: "/charts?range=6h" in r.url and r.status == 200) as got:
        page.click(".rangebar a.seg[data-range='6h']")
    page.wait_for_function("() => document.querySelector('.rangebar .seg.on').textContent === '6h'")
    assert page.evaluate("() => window.samePage") is True and len(documents) == 1
    assert page.url.endswith("?range=6h")  # the link shares the range
    assert got.value.json()["range"]["key"] == "6h"
    # the range line is the answer's (a minutes-old instance: its 6 h fitted to its data)
    assert page.inner_text("#rangeinfo") == got.value.json()["range"]["info_html"].strip()
    drawn = page.evaluate(_DRAWN)
    assert all(drawn[k]["points"] > 0 for k in ALWAYS), drawn

    # the custom range too; it does not move with the clock, so it stops the refresh
    page.fill("input[name=start]", time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() - 1800)))
    page.fill("input[name=end]", time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + 60)))
    with page.expect_response(lambda r: "/charts?range=custom" in r.url and r.status == 200):
        page.click(".rangebar button:has-text('Show')")
    page.wait_for_function("() => document.querySelector('.rangebar .seg.custom').classList.contains('on')")
    assert "range=custom" in page.url and page.locator("#autorefresh").count() == 0
    with page.expect_response(lambda r: "/charts?range=1h" in r.url):
        page.click(".rangebar a.seg[data-range='1h']")
    page.wait_for_selector("#autorefresh")
    assert page.evaluate("() => window.samePage") is True and len(documents) == 1
    assert watched.errors == [] and watched.foreign() == []


def test_events_are_markers_on_the_kernel_chart_that_say_what_they_are(watched, served):
    proc, iid = served
    page = watched.page
    deadline = time.monotonic() + 20
    while True:  # the hung task is read within a collection or two
        page.goto(f"{proc.url}/instances/{iid}?range=1h", wait_until="networkidle")
        marker = page.locator("#chart-kernel .scatterlayer .trace path.point").last
        names = page.evaluate("() => document.getElementById('chart-kernel').data.map(t => t.name)")
        if "events" in names or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "events" in names
    for key in ("cpu", "memory", "fs_usage"):  # no lines without words on the other charts
        assert page.evaluate(f"() => (document.getElementById('chart-{key}').layout.shapes || []).length") == 0
    marker.scroll_into_view_if_needed()
    box = marker.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#chart-kernel .hoverlayer text")
    hover = page.evaluate("() => document.querySelector('#chart-kernel .hoverlayer').textContent")
    assert "Kernel." in hover and "kworker/0:1" in hover, hover
    assert "events" in page.inner_text("#legend-kernel")
    assert watched.errors == []


def test_a_young_instance_fills_its_range_and_every_legend_has_last_min_max(watched, served):
    proc, iid = served
    page = watched.page
    page.goto(f"{proc.url}/instances/{iid}", wait_until="networkidle")
    assert "fitted to this instance's data" in page.inner_text("#rangeinfo")
    ranges = page.evaluate(_RANGES)
    assert ranges["cpu"][1] - ranges["cpu"][0] < 30 * 60_000  # minutes old: not an hour of empty axis
    drawn = page.evaluate(_DRAWN)
    for key in ALWAYS:
        assert drawn[key]["points"] > 0, (key, drawn[key])
    rows = page.locator("#legend-cpu tbody tr")
    assert rows.count() == len(drawn["cpu"]["traces"])
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[0] == "total" and all(c.endswith(" %") for c in cells[1:]), cells
    rows.first.click()  # a legend row hides its series, and it stays hidden
    assert page.evaluate("() => document.getElementById('chart-cpu').data[0].visible") == "legendonly"
    assert "off" in (rows.first.get_attribute("class") or "")
    assert watched.errors == []


def test_a_zoom_much_narrower_than_the_range_fetches_its_window_at_a_finer_step(watched, served):
    proc, iid = served
    page = watched.page
    page.goto(f"{proc.url}/instances/{iid}?range=custom&start=-1h&end=now", wait_until="networkidle")
    assert "one point per 60 s" in page.inner_text("#rangeinfo")
    with page.expect_response(lambda r: "/charts?range=custom" in r.url and r.status == 200) as got:
        # as a drag would: plotly reports the new range of the chart
        page.evaluate("() => Plotly.relayout('chart-cpu', {'xaxis.range': [Date.now() - 300000, Date.now()]})")
    assert "one point per 10 s" in got.value.json()["range"]["info_html"]
    # the charts drew the window's points, 10 s apart (the hour's were 60 s apart)
    page.wait_for_function("() => { const x = document.getElementById('chart-cpu').data[0].x;"
                           " return x.length > 1 && x[1] - x[0] === 10000; }")
    zoomed = page.evaluate(_RANGES)
    assert all(_same(r, zoomed["cpu"]) for r in zoomed.values()), zoomed
    assert abs(zoomed["cpu"][1] - zoomed["cpu"][0] - 300_000) < 2
    assert watched.errors == []


def _minute(offset: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + offset))


def test_on_a_phone_a_swipe_over_a_chart_scrolls_the_page_instead_of_zooming(browser, served):  # noqa: F811
    """With plotly's drag-to-zoom a finger on a chart zoomed it and the page could not be
    scrolled past the charts (it was stuck, scrollY unchanged)."""
    proc, iid = served
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        # a custom two minutes: at 1440 px plotly labels every 10 or 20 s
        q = urllib.parse.urlencode({"range": "custom", "start": _minute(-60), "end": _minute(60)})
        page.goto(f"{proc.url}/instances/{iid}?{q}", wait_until="networkidle")
        page.wait_for_function("() => document.querySelector('#chart-cpu')._fullLayout")
        assert page.evaluate("() => matchMedia('(pointer: coarse)').matches")
        # about four time labels on a phone-wide chart, level: tilted, the first ran off the left edge
        ticks = page.evaluate("""() => [...document.querySelectorAll('#chart-cpu .xtick text')].map(
            t => [t.getAttribute('transform') || '', t.getBoundingClientRect().left])""")
        assert 2 <= len(ticks) <= 5 and not [t for t, left in ticks if "rotate" in t or left < 0], ticks
        # asked of every chart, since plotly tilts them whenever its own choice is dense (10 s
        # steps over a young instance's minute)
        assert set(page.evaluate("() => [...document.querySelectorAll('.plot')].map(el => el._fullLayout.xaxis.nticks)")) == {4}
        chart = page.locator("#chart-cpu")
        chart.scroll_into_view_if_needed()
        before = page.evaluate(_RANGES)["cpu"]
        box = chart.bounding_box()
        y0 = page.evaluate("() => scrollY")
        cdp = context.new_cdp_session(page)  # a one-finger swipe upwards that starts on the chart
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for i in range(1, 11):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y - 20 * i}]})
            time.sleep(0.02)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_function(f"() => scrollY > {y0 + 100}", timeout=5_000)
        assert _same(page.evaluate(_RANGES)["cpu"], before)
    finally:
        context.close()
