"""Self-monitoring in /metrics: requests by route template, job durations, the batch cache."""

import json
import subprocess
import threading

import pytest

from prometheus_client.parser import text_string_to_metric_families

from diag.web import metrics_fastpath
from diag.web.app import create_app
from tests.conftest import collected_service, http, need_tool
from tests.faults.helpers import wait_for


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data")
    yield s
    s.close()


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _count(text: str, **labels: str) -> float:
    key = ("diag_http_request_duration_seconds_count", frozenset(labels.items()))
    return _samples(text).get(key, 0.0)


def test_requests_counted_by_template_method_and_status_class(service, monkeypatch):
    monkeypatch.setattr(metrics_fastpath, "MAX_AGE", 0.0)  # no cached /metrics body between scrapes
    client = create_app(service).test_client()
    for _ in range(3):
        client.get("/api/v1/diagnoses/no-such-report")
    client.get("/api/v1/instances")
    client.get("/nothing/here")
    client.post("/healthz")
    text = client.get("/metrics").data.decode()
    # One series for every unknown id: the template, not the path.
    assert _count(text, endpoint="/api/v1/diagnoses/<report_id>", method="GET", status="4xx") == 3
    assert _count(text, endpoint="/api/v1/instances", method="GET", status="2xx") == 1
    assert _count(text, endpoint="unmatched", method="GET", status="4xx") == 1
    assert _count(text, endpoint="unmatched", method="POST", status="4xx") == 1  # 405: no rule either
    assert "no-such-report" not in text and "/nothing/here" not in text
    assert _count(text, endpoint="/metrics", method="GET", status="2xx") == 0  # observed after it answers
    assert _count(client.get("/metrics").data.decode(), endpoint="/metrics", method="GET", status="2xx") == 1


def test_batch_part_follows_each_new_collection(service):
    client = create_app(service).test_client()
    first = client.get("/metrics").data
    assert client.get("/metrics").data.count(b"# TYPE diag_load_1 gauge") == 1
    batch = service.collect()
    text = client.get("/metrics").data.decode()
    assert text != first.decode()
    mem = next(s for s in batch.samples if s.metric == "mem_used")
    got = [v for (name, _), v in _samples(text).items() if name == "diag_mem_used_bytes"]
    assert got == [pytest.approx(mem.value)]


def test_openmetrics_has_one_terminator_at_the_end(service):
    client = create_app(service).test_client()
    for _ in range(2):  # the second answer comes from the cache
        body = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}).data
        assert body.count(b"# EOF") == 1 and body.endswith(b"# EOF\n")
        assert b"# TYPE diag_load_1 gauge" in body and b"diag_http_request_duration_seconds" in body


def test_served_metrics_time_jobs_and_requests_and_pass_promtool(serve):
    promtool = need_tool("promtool")
    p = serve("--interval", "1s")
    http("GET", p.url + "/api/v1/query?metric=cpu_usage")

    def scraped() -> str | None:
        text = http("GET", p.url + "/metrics")[2].decode()
        s = _samples(text)
        ran = s.get(("diag_job_duration_seconds_count", frozenset({("task", "collect")})), 0)
        return text if ran >= 2 else None

    text = wait_for(scraped, timeout=30)
    assert text, "no collect job timed"
    s = _samples(text)
    assert s[("diag_job_duration_seconds_sum", frozenset({("task", "collect")}))] > 0
    assert _count(text, endpoint="/api/v1/query", method="GET", status="2xx") == 1
    assert s[("diag_store_size_bytes", frozenset())] > 0
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0 and check.stdout + check.stderr == b"", check.stdout + check.stderr
    assert json.loads(http("GET", p.url + "/healthz")[2])["status"] == "ok"


def test_scrapes_within_a_second_share_one_body_but_a_new_collection_shows_at_once(service):
    client = create_app(service).test_client()
    first = client.get("/metrics").data
    assert client.get("/metrics").data == first  # the request counters inside did not move: cached
    service.collect()
    assert client.get("/metrics").data != first


def test_a_scrape_during_a_render_gets_the_previous_body_at_once(service):
    app = create_app(service)
    client = app.test_client()
    first = client.get("/metrics").data
    service.collect()  # the cached body is now out of date
    fast = app.extensions["diag"]["metrics"]
    got: list[bytes] = []
    with fast._lock:  # as if another request were rendering the new body
        scrape = threading.Thread(target=lambda: got.append(client.get("/metrics").data), daemon=True)
        scrape.start()
        scrape.join(timeout=10)
        assert not scrape.is_alive(), "the scrape waited for the render"
    assert got == [first]
    fresh = client.get("/metrics").data  # no render running: this one renders
    assert fresh != first and b"# TYPE diag_load_1 gauge" in fresh
