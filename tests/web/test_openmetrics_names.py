"""The OpenMetrics scrape of a real `diag serve` is valid (issue 15, defect 19): in
OpenMetrics a counter's family drops `_total`, so a per-interval gauge `oom_kills` beside
the raw counter `oom_kills_total` was the family `oom_kills` twice, refused by promtool
("second HELP line for metric name oom_kills") and by prometheus_client's own parser."""

from __future__ import annotations

import subprocess
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from diag import catalogue
from tests.conftest import ServeProcess, http, need_tool

pytestmark = pytest.mark.slow

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def test_no_gauge_shares_a_family_name_with_a_counter():
    counters = {c.name.removesuffix("_total") for c in catalogue.COUNTERS}
    assert sorted(m.name for m in catalogue.METRICS if m.exposition_name in counters) == []


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    p = ServeProcess(tmp_path_factory.mktemp("om") / "data", "--interval", "1s")
    p.wait_ready()
    yield p
    assert p.stop() == 0, p.output()


def _scrape(live, accept: str = OPENMETRICS) -> bytes:
    """A scrape once the per-interval gauges exist (they need a second collection)."""
    deadline = time.monotonic() + 20
    while True:
        status, headers, body = http("GET", live.url + "/metrics", headers={"Accept": accept})
        assert status == 200 and headers["Content-Type"].startswith(accept.split(";")[0])
        if b"# TYPE oom_kills gauge" in body or b"# TYPE oom_kills_delta gauge" in body:
            return body
        assert time.monotonic() < deadline, "no per-interval oom_kills gauge after 20 s"
        time.sleep(0.5)


def test_openmetrics_scrape_parses(live):
    text = _scrape(live).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    # The raw counters keep their names; the per-interval counts are their own gauges.
    assert families["oom_kills"] == "counter" and families["oom_kills_delta"] == "gauge"
    assert "oom_kills_total " in text or "oom_kills_total{" in text
    assert families["tcp_listen_overflows"] == "counter" and families["tcp_listen_overflows_delta"] == "gauge"


def test_openmetrics_and_text_scrapes_pass_promtool(live, tmp_path):
    promtool = need_tool("promtool")
    for accept in (OPENMETRICS, "text/plain"):
        body = _scrape(live, accept)
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
        # promtool exits 3 for lint findings only, 1 for an invalid exposition.
        assert r.returncode in (0, 3) and b"error while linting" not in r.stderr, (accept, r.stderr.decode()[:2000])
