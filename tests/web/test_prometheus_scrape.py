"""A real Prometheus scraping a real `diag serve` (issue 17 item 1): with `honor_labels` on
and off, the scrape's own `job` and `instance` labels stay intact (no label of ours is called
so), and Prometheus keeps each family's type as /metrics declares it."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from diag import catalogue
from tests.conftest import ServeProcess, free_port, need_tool

pytestmark = pytest.mark.slow

JOBS = {"diag-honor": True, "diag-plain": False}  # job name -> honor_labels


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scrape")
    serve = ServeProcess(tmp / "data", "--interval", "1s")
    serve.wait_ready()
    target = serve.url.removeprefix("http://")
    config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n" + "".join(
        f"  - job_name: {job}\n    honor_labels: {str(honor).lower()}\n"
        f"    static_configs:\n      - targets: ['{target}']\n" for job, honor in JOBS.items())
    (tmp / "prometheus.yml").write_text(config)
    port = free_port()
    log = open(tmp / "prometheus.log", "w+b")
    prom = subprocess.Popen([need_tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def query(q: str) -> list[dict]:
        with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}), timeout=10) as r:
            return json.loads(r.read())["data"]["result"]

    try:
        deadline = time.monotonic() + 60
        while True:
            assert prom.poll() is None, log.read().decode(errors="replace")[-2000:]
            try:
                # both jobs have scraped the collect task's runs and a rate that needs two collections
                if (len(query('diag_job_runs_total{task="collect"}')) == len(JOBS)
                        and len(query("diag_cpu_usage_ratio")) == len(JOBS)):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus scraped nothing in 60 s"
            time.sleep(0.5)
        yield query, url, target
    finally:
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()
        assert serve.stop() == 0, serve.output()


def test_the_scrape_keeps_its_job_and_instance_labels_with_honor_labels_on_and_off(scraped):
    query, _, target = scraped
    runs = query("diag_job_runs_total")
    assert {r["metric"]["job"] for r in runs} == set(JOBS)
    assert {r["metric"]["instance"] for r in runs} == {target}
    assert all("task" in r["metric"] for r in runs)
    # nothing was renamed out of the way (exported_*) by either job, on any series
    assert query('count({exported_job!=""})') == [] and query('count({exported_instance!=""})') == []
    assert {r["metric"]["job"] for r in query('count by (job) ({__name__=~"diag_.+"})')} == set(JOBS)


def test_prometheus_keeps_the_declared_types_and_units(scraped):
    _, url, _ = scraped
    with urllib.request.urlopen(url + "/api/v1/metadata", timeout=10) as r:
        meta = json.loads(r.read())["data"]
    assert meta["diag_cpu_usage_ratio"][0]["type"] == "gauge"
    # an OpenMetrics scrape keys a counter's metadata by its family, the name without _total
    assert (meta.get("diag_oom_kills") or meta["diag_oom_kills_total"])[0]["type"] == "counter"
    for m in catalogue.METRICS:
        if m.kind == "delta":  # a per-interval count is no gauge of its own there, only its counter
            assert m.name not in meta and all(x["type"] == "counter" for x in meta.get(f"diag_{m.name}", [])), m.name
        elif m.exposition_name in meta:
            assert meta[m.exposition_name][0]["type"] == "gauge", m.exposition_name
