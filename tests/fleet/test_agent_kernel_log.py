"""A real agent process pushes its kernel lines to a real `diag serve`; they are read back
through GET /api/v1/instances/{id}/kernel-log and on the instance's Kernel log page."""

from __future__ import annotations

import json
import time

import pytest
from tests.conftest import http
from tests.fleet.fleet_helpers import AgentProcess, Server, get_json, kmsg_record, wait_for

ADMIN, INGEST = "admin-token-klog", "ingest-token-klog"


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, "--interval", "1s", env={"DIAG_TOKEN": ADMIN, "DIAG_INGEST_TOKEN": INGEST}).start()
    yield s
    s.stop()


def _lines(server: Server, iid: str, query: str = "") -> list[dict]:
    status, body = get_json(server.url + f"/api/v1/instances/{iid}/kernel-log{query}")
    assert status == 200, body
    return body["lines"]


def test_an_agents_kernel_lines_reach_the_server_and_read_back(tmp_path, server):
    kmsg = tmp_path / "agent.kmsg"
    now = time.time()
    kmsg.write_text(kmsg_record(1, "Linux version 6.18.0", at=now - 30, prio=5)
                    + kmsg_record(2, "<script>alert(1)</script> in a driver's name", at=now - 20, prio=3))
    agent = AgentProcess(tmp_path, server.url, "--instance-id", "klog-a", "--kmsg", str(kmsg), "--interval", "1s",
                         "--token", INGEST)
    try:
        got = wait_for(lambda: [ln for ln in _lines_or_none(server, "klog-a") or [] if ln["seq"] == 2],
                       "the agent's kernel lines", 40, agent)
        assert got[0]["message"] == "<script>alert(1)</script> in a driver's name"
        assert got[0]["level"] == "err" and got[0]["priority"] == 3
        assert got[0]["ts"] == pytest.approx(now - 20, abs=1.5)  # the boot clock's µs, as the agent read them

        # a line printed later arrives with a later batch, and each line is kept once
        with kmsg.open("a") as f:
            f.write(kmsg_record(3, "nvme nvme0: I/O 17 QID 2 timeout, aborting", prio=4))
        wait_for(lambda: any(ln["seq"] == 3 for ln in _lines(server, "klog-a")), "the later line", 30, agent)
        time.sleep(2.5)  # a few more batches, with nothing new in the kernel log
        lines = _lines(server, "klog-a")
        assert [ln["seq"] for ln in lines] == [1, 2, 3]
        assert [ln["seq"] for ln in _lines(server, "klog-a", "?level=warning")] == [2, 3]

        status, _, page = http("GET", server.url + "/instances/klog-a/kernel-log", headers={"Accept": "text/html"})
        assert status == 200
        html = page.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; in a driver&#39;s name" in html
        assert "nvme nvme0: I/O 17 QID 2 timeout, aborting" in html
    finally:
        assert agent.stop() == 0, agent.output()


def test_a_batch_from_an_agent_without_kernel_lines_is_still_taken(server):
    # What an agent from before kernel lines sends: samples and signals only.
    body = {"instance_id": "klog-old", "batch_id": "klog-old:1", "hostname": "old",
            "samples": [{"metric": "uptime", "labels": {}, "value": 12.0, "ts": time.time()}], "signals": []}
    status, _, answer = http("POST", server.url + "/api/v1/ingest", body, headers={"Authorization": f"Bearer {INGEST}"})
    assert status == 202, answer
    assert json.loads(answer)["accepted"] == 1
    assert _lines(server, "klog-old") == []


def _lines_or_none(server: Server, iid: str) -> list[dict] | None:
    status, body = get_json(server.url + f"/api/v1/instances/{iid}/kernel-log")
    return body["lines"] if status == 200 else None  # 404 until the agent's first batch
