"""Benchmark: the dashboard's instance page, over 24 h and over 31 days.

Data: the series this machine really has (one real collection gives the metric and
label sets: cores, interfaces, disks, filesystems...), filled with a random walk for 31
days at 1 min and the last 24 h at 10 s, written through the store and then compacted
(roll-ups built, raw past 48 h dropped), as a month-old service would hold them.

Measured in-process through the Flask app (the server's time, no network), median and
90th percentile of repeated warm runs, with `Accept-Encoding: gzip` as a browser sends:
- GET /instances/<id>?range=24h and ?range=31d (target: under 300 ms and 500 ms);
- the bytes transferred: the page itself, the auto-refresh JSON, and the static assets a
  first visit loads (plotly.js compressed; cached for a year after that);
- in Debian's Chromium (Playwright), the 24 h page served over HTTP: cold load (navigation
  to every chart drawn, empty cache) and a range switch, with the full plotly.js bundle the
  plotly package ships ("before": swapped in for the page's own) and with the partial bundle
  the page loads ("after"), in the same run; and the JavaScript bytes of each.

Run: `.venv/bin/python bench/dashboard.py` (about a minute), or `--quick`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diag.config import load  # noqa: E402
from diag.model import Sample  # noqa: E402
from diag.service import Service  # noqa: E402
from diag.web.app import create_app  # noqa: E402

TARGETS = {"24h": 0.300, "31d": 0.500}
CHROMIUM = "/usr/bin/chromium"
FULL_PLOTLY = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# every chart has drawn its SVG and the page script has run
_ALL_DRAWN = """() => document.getElementById('charts').dataset.drawn &&
    [...document.querySelectorAll('.plot')].every(el => el.querySelector('.main-svg'))"""


def fill(service: Service, days: float, now: float) -> int:
    """History for every series of a real collection; returns the points written."""
    service.collect()
    time.sleep(1)
    shapes = [(s.metric, s.labels, s.value) for s in service.collect().samples]
    rng = np.random.default_rng(7)
    base = np.array([v for _, _, v in shapes], dtype=float)
    written = 0
    # 1 min over the month up to the last day, then 10 s: two collection rates, as after an upgrade
    stamps = np.concatenate([np.arange(now - days * 86400, now - 86400, 60.0), np.arange(now - 86400, now, 10.0)])
    level = base.copy()
    batch: list[Sample] = []
    for ts in stamps:
        level = np.abs(level + rng.normal(0, 1, level.size) * (np.abs(base) * 0.02 + 0.1))
        for (metric, labels, _), v in zip(shapes, level):
            batch.append(Sample(metric, labels, round(float(min(v, 100.0) if "usage" in metric else v), 2), float(ts)))
        if len(batch) >= 50_000:
            service.store.write(service.instance_id, batch)
            written += len(batch)
            batch = []
    if batch:
        service.store.write(service.instance_id, batch)
        written += len(batch)
    service.maintain(now)
    return written


def count_points(page: str) -> int:
    """The data points (non-null y values) in the figures embedded in an instance page."""
    m = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    if m is None:
        return 0
    figs = json.loads(m.group(1))  # tojson escapes <, > and & as \u00XX: plain JSON
    return sum(y is not None for f in figs.values() for t in f["data"] if t.get("name") != "events"
               for y in t.get("y", []))


def timed(client, path: str, runs: int) -> tuple[list[float], int, int]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(path, headers={"Accept-Encoding": "gzip", "Accept": "text/html"})
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code)
    raw = client.get(path, headers={"Accept": "text/html"}).data
    return times, len(r.data), len(raw)


def in_chromium(app, iid: str, runs: int) -> None:
    """Cold load and range switch in Chromium, before (full plotly.js) and after (the page's own)."""
    import logging
    import os
    import threading

    from werkzeug.serving import make_server

    if not os.path.exists(CHROMIUM):
        print("chromium: not installed, browser figures skipped")
        return
    from playwright.sync_api import sync_playwright

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request in the report
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/instances/{iid}?range=24h"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            print(f"{'in Chromium, 24 h page':<34}{'cold ms':>10}{'switch ms':>10}{'JS bytes':>12}{'JS gzip':>10}")
            variants = (("before: full plotly.js", FULL_PLOTLY.read_bytes()), ("after: partial bundle", None))
            for label, bundle in variants:
                colds, switches, js = [], [], (0, 0)
                for _ in range(runs):
                    ctx = browser.new_context(viewport={"width": 1440, "height": 900})  # an empty cache
                    page = ctx.new_page()
                    if bundle is not None:
                        full = bundle
                        page.route("**/plotly-*.min.js", lambda route: route.fulfill(
                            body=full, content_type="text/javascript"))
                    scripts: list = []
                    page.on("response", lambda r: scripts.append(r) if r.request.resource_type == "script" else None)
                    page.goto(url)
                    page.wait_for_function(_ALL_DRAWN, timeout=60_000)
                    colds.append(page.evaluate("() => performance.now()"))
                    bodies = [r.body() for r in scripts]
                    js = (sum(map(len, bodies)), sum(len(gzip.compress(b, 6)) for b in bodies))
                    # before: a range was a page load; after: a fetch and a redraw
                    t = time.perf_counter()
                    if bundle is not None:
                        page.goto(url.replace("range=24h", "range=6h"))
                        page.wait_for_function(_ALL_DRAWN, timeout=60_000)
                    else:
                        drawn = page.get_attribute("#charts", "data-drawn")
                        page.click(".rangebar a.seg[data-range='6h']")
                        page.wait_for_function("(d) => document.getElementById('charts').dataset.drawn !== d",
                                               arg=drawn, timeout=60_000)
                    switches.append((time.perf_counter() - t) * 1000)
                    ctx.close()
                print(f"{label:<34}{statistics.median(colds):>10.0f}{statistics.median(switches):>10.0f}"
                      f"{js[0]:>12,}{js[1]:>10,}")
            browser.close()
    finally:
        server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 days of history, fewer runs")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--browser-runs", type=int, default=5, help="cold loads in Chromium per variant")
    args = ap.parse_args()
    days, runs = (3, 5) if args.quick else (31, args.runs)
    with tempfile.TemporaryDirectory() as d:
        service = Service(load(env={}, data_dir=d))
        try:
            now = time.time()
            t = time.perf_counter()
            points = fill(service, days, now)
            series = len(service.store.series(instance_id=service.instance_id))
            print(f"history: {series} series, {points:,} points over {days} days, "
                  f"written and compacted in {time.perf_counter() - t:.1f} s")
            client = create_app(service).test_client()
            iid = service.instance_id
            client.get(f"/instances/{iid}")  # warm: templates compiled, connections open
            print(f"{'what':<34}{'median ms':>10}{'p90 ms':>9}{'gzip bytes':>12}{'raw bytes':>11}{'points':>9}"
                  f"{'target':>11}")
            ok = True
            empty = []
            for key in ("1h", "24h", "7d", "31d"):
                times, gz, raw = timed(client, f"/instances/{iid}?range={key}", runs)
                # a fast page that draws nothing is no result: count what the charts hold
                n = count_points(client.get(f"/instances/{iid}?range={key}").get_data(as_text=True))
                if n == 0:
                    empty.append(key)
                med, p90 = statistics.median(times), sorted(times)[int(0.9 * (len(times) - 1))]
                target = TARGETS.get(key)
                mark = "" if target is None else ("ok" if med < target else "MISSED")
                ok &= target is None or med < target
                print(f"{'instance page, ' + key:<34}{med * 1000:>10.1f}{p90 * 1000:>9.1f}{gz:>12,}{raw:>11,}{n:>9,}"
                      f"{(f'<{target * 1000:.0f} ' + mark) if target else '':>11}")
            if empty:
                print(f"FAILED: the instance page's charts hold no data point over {', '.join(empty)}: "
                      "the timings above measured an empty page", file=sys.stderr)
                return 2
            for key in ("24h", "31d"):
                times, gz, raw = timed(client, f"/instances/{iid}/charts?range={key}", runs)
                print(f"{'auto-refresh JSON, ' + key:<34}{statistics.median(times) * 1000:>10.1f}"
                      f"{sorted(times)[int(0.9 * (len(times) - 1))] * 1000:>9.1f}{gz:>12,}{raw:>11,}")
            html = client.get(f"/instances/{iid}").get_data(as_text=True)
            assets = re.findall(r'(?:src|href)="(/dashboard-static/[^"]+)"', html)
            total = 0
            for a in assets:
                r = client.get(a, headers={"Accept-Encoding": "gzip"})
                total += len(r.data)
                print(f"  asset {a:<44}{len(r.data):>12,} bytes ({r.headers.get('Cache-Control', 'no cache header')})")
            print(f"first visit, 24 h page + assets: {timed(client, f'/instances/{iid}?range=24h', 1)[1] + total:,} bytes; "
                  f"later visits: the page only (plotly.js is cached immutable)")
            for key in ("", "diagnosis", "events", "alerts"):
                times, gz, _ = timed(client, f"/{key}", max(3, runs // 3))
                print(f"{'page /' + key:<34}{statistics.median(times) * 1000:>10.1f}{max(times) * 1000:>9.1f}{gz:>12,}")
            in_chromium(client.application, iid, 3 if args.quick else args.browser_runs)
        finally:
            service.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
