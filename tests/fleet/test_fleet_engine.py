"""End to end: VictoriaMetrics scrapes a real agent; `diag serve --store-url` diagnoses it.
And with the engine down, the API answers (a JSON 424, `unknown` checks), never a 5xx."""

from __future__ import annotations

import json
import time

from tests.conftest import free_port, http
from tests.fleet.fleet_helpers import AgentProcess, Server, get_json, wait_for
from tests.fleet.vm_helpers import VictoriaMetrics

ADMIN = "admin-e2e"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_victoriametrics_scraping_an_agent_feeds_the_diagnosis(tmp_path):
    agent_port = free_port()
    scrape = tmp_path / "scrape.yml"
    scrape.write_text("scrape_configs:\n  - job_name: diag-agents\n    scrape_interval: 2s\n    honor_labels: true\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n")
    vm = VictoriaMetrics(tmp_path, f"-promscrape.config={scrape}")
    server = Server(tmp_path, "--interval", "2s", "--store-url", vm.url, env={"DIAG_TOKEN": ADMIN,
                                                                            "DIAG_INGEST_TOKEN": "ing"})
    agent = None
    try:
        server.start()
        (tmp_path / "e.kmsg").write_text("")
        agent = AgentProcess(tmp_path, server.url, "--instance-id", "scraped-1", "--listen", f"127.0.0.1:{agent_port}",
                             "--interval", "1s", "--kmsg", str(tmp_path / "e.kmsg"), "--token", "ing", name="e")
        status, body = wait_for(lambda: (lambda r: r if r[0] == 200 and r[1]["series"] else None)(
            get_json(server.url + "/api/v1/query?metric=cpu_usage&instance_id=scraped-1&start=-10m&step=10s",
                     ADMIN)), "cpu_usage of the scraped agent in VictoriaMetrics", 60, agent)
        assert body["series"][0]["instance_id"] == "scraped-1"
        _, _, raw = http("POST", server.url + "/api/v1/diagnoses", {"instance_id": "scraped-1"}, headers=AUTH)
        checks = {c["id"]: c for c in json.loads(raw)["checks"]}
        assert checks["performance.cpu"]["status"] in ("ok", "warning", "critical")  # it had data
        assert checks["state.stopped"]["status"] == "ok"
        # A pushed batch: its samples are the engine's to scrape, its signals are kept once.
        batch = {"instance_id": "scraped-1", "batch_id": "scraped-1:b1", "signals": [],
                 "samples": [{"metric": "cpu_usage", "labels": {}, "value": 1.0, "ts": time.time()}]}
        first = json.loads(http("POST", server.url + "/api/v1/ingest", batch, headers=AUTH)[2])
        again = json.loads(http("POST", server.url + "/api/v1/ingest", batch, headers=AUTH)[2])
        assert (first["duplicate"], first["samples_stored"], first["accepted"]) == (False, False, 0)
        assert again["duplicate"] is True
        # the engine down: the API still answers, with a JSON 424 and unknown checks
        vm.stop()
        status, body = get_json(server.url + "/api/v1/query?metric=cpu_usage&instance_id=scraped-1", ADMIN)
        assert status == 424 and "metrics engine" in body["error"]["message"]
        assert body["error"]["code"] == "MetricsEngineUnavailable"
        status, _, raw = http("POST", server.url + "/api/v1/diagnoses", {"instance_id": "scraped-1"}, headers=AUTH)
        assert status == 201
        cpu = next(c for c in json.loads(raw)["checks"] if c["id"] == "performance.cpu")
        assert cpu["status"] == "unknown" and "unreachable" in cpu["message"]
    finally:
        if agent is not None:
            agent.stop()
        server.stop()
        vm.stop()
