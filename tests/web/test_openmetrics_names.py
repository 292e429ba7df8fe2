"""/metrics by the book (issue 17 item 1; issue 15, defect 19 before it): a `diag_` namespace,
the base unit at the end of every name, `_total` on every counter, one family per name, no
per-interval count as a gauge, no label of ours called `job` or `instance`; the scrape of a
real `diag serve` parses with prometheus_client's OpenMetrics parser and passes promtool."""

from __future__ import annotations

import gzip
import re
import subprocess
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from diag import catalogue
from tests.conftest import ServeProcess, http, need_tool

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# Per unit, what an exposed name ends with: the base unit, and nothing but it.
UNIT_NAMES = {"ratio", "seconds", "bytes", "bytes_per_second", "per_second", "celsius", "watts", "rpm"}
SCRAPE_LABELS = {"job", "instance"}


def expected_suffix(m: catalogue.Metric) -> str:
    unit = m.base_unit
    return ("_" + unit if unit else "") + ("_total" if m.kind == "counter" else "")


@pytest.mark.parametrize("m", [m for m in catalogue.METRICS + catalogue.COUNTERS if m.kind != "delta"],
                         ids=lambda m: m.name)
def test_every_exposed_name_has_the_namespace_and_its_unit(m):
    name = m.exposition_name
    assert re.fullmatch(r"diag_[a-z0-9_]+", name), name
    assert name.endswith(expected_suffix(m)), (name, m.unit)
    assert m.base_unit == "" or m.base_unit in UNIT_NAMES
    # no other unit word hiding in the name (`_ms`, `_percent`, `_bps`...)
    assert not re.search(r"_(ms|milliseconds|percent|bps|iops|bits|kb|mb)(_|$)", name), name
    assert not (m.kind != "counter" and name.endswith(("_total", "_created", "_count", "_sum", "_bucket", "_info")))
    assert not SCRAPE_LABELS & set(m.labels)


def test_per_interval_counts_are_exposed_as_their_counters_only():
    deltas = [m for m in catalogue.METRICS if m.kind == "delta"]
    assert deltas and all(m.exposition_name == "" for m in deltas)
    assert all(catalogue.BY_NAME[m.counter].kind == "counter" for m in deltas)


def test_no_two_entries_share_a_family():
    """In OpenMetrics a counter's family is its name without `_total`: none may meet a gauge's."""
    families = [m.exposition_name.removesuffix("_total") if m.kind == "counter" else m.exposition_name
                for m in catalogue.METRICS + catalogue.COUNTERS if m.exposition_name]
    assert len(families) == len(set(families)), sorted(f for f in families if families.count(f) > 1)
    assert len(catalogue.BY_EXPOSED) == len(families)
    # and no exposed name is another entry's display name, so either name says one metric
    assert not set(catalogue.BY_EXPOSED) & set(catalogue.BY_NAME)


@pytest.mark.parametrize("name,value,exposed", [("cpu_usage", 80.0, 0.8), ("disk_await_read", 2.5, 0.0025),
                                                ("net_in", 8e9, 1e9), ("mem_total", 8e9, 8e9)])
def test_values_convert_exactly_both_ways(name, value, exposed):
    m = catalogue.BY_NAME[name]
    assert catalogue.to_exposed(m, value) == exposed and catalogue.from_exposed(m, exposed) == value


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    p = ServeProcess(tmp_path_factory.mktemp("om") / "data", "--interval", "1s")
    p.wait_ready()
    yield p
    assert p.stop() == 0, p.output()


def _scrape(live, accept: str = OPENMETRICS) -> bytes:
    """A scrape once the counters of the per-interval counts and the rates exist (a second collection)."""
    deadline = time.monotonic() + 20
    while True:
        status, headers, body = http("GET", live.url + "/metrics", headers={"Accept": accept})
        assert status == 200 and headers["Content-Type"].startswith(accept.split(";")[0])
        if b"# TYPE diag_oom_kills counter" in body or b"# TYPE diag_oom_kills_total counter" in body:
            if b"diag_cpu_usage_ratio{" in body:
                return body
        assert time.monotonic() < deadline, "no oom_kills counter and cpu_usage after 20 s"
        time.sleep(0.5)


@pytest.mark.slow
def test_openmetrics_scrape_parses_and_every_family_is_by_the_book(live):
    text = _scrape(live).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["diag_oom_kills"].type == "counter" and "diag_oom_kills_total" in text
    assert families["diag_cpu_usage_ratio"].type == "gauge" and families["diag_cpu_usage_ratio"].unit == "ratio"
    for name, fam in families.items():
        # process_* and python_*: the client library's standard self-metrics, named for every exporter alike
        assert name.startswith(("diag_", "process_", "python_")), name
        for s in fam.samples:
            assert not SCRAPE_LABELS & set(s.labels), (s.name, s.labels)
            if fam.type == "gauge" and name in catalogue.BY_EXPOSED and catalogue.BY_EXPOSED[name].unit == "percent":
                assert 0 <= s.value <= 1 or name == "diag_container_cpu_usage_ratio", (s.name, s.value)
    # no per-interval count is a gauge: the catalogue's deltas have no family of their own
    for m in catalogue.METRICS:
        if m.kind == "delta":
            assert f"diag_{m.name}" not in families or families[f"diag_{m.name}"].type == "counter", m.name
    assert "diag_job_runs" in families and all("task" in s.labels for s in families["diag_job_runs"].samples)


@pytest.mark.slow
def test_openmetrics_and_text_scrapes_pass_promtool(live):
    promtool = need_tool("promtool")
    body = _scrape(live, "text/plain")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    # exit 0 and nothing said: neither an invalid exposition (1) nor a lint finding (3)
    assert r.returncode == 0 and r.stdout + r.stderr == b"", (r.stdout + r.stderr).decode()[:2000]
    # promtool lints the Prometheus text format: on OpenMetrics a counter's HELP names its family
    # (`diag_oom_kills`), so it says "no help text" for `diag_oom_kills_total` (and a histogram's
    # `_created`), and only that
    body = _scrape(live, OPENMETRICS)
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    findings = (r.stdout + r.stderr).decode().splitlines()
    assert r.returncode in (0, 3) and findings, findings
    assert [f for f in findings if not re.fullmatch(r"[a-z0-9_]+_(total|created) no help text", f)] == []


@pytest.mark.slow
def test_gzip_when_asked(live):
    _scrape(live, "text/plain")
    status, headers, body = http("GET", live.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert b"# TYPE diag_cpu_usage_ratio gauge" in gzip.decompress(body)
    status, headers, plain = http("GET", live.url + "/metrics")
    assert headers.get("Content-Encoding") is None and b"# TYPE diag_cpu_usage_ratio gauge" in plain
