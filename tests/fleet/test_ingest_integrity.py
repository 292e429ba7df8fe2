"""Ingest under hostile or unlucky conditions (issue 15, defects 4, 8, 9 and 20's batch_id),
each against a real `diag serve` with its real SQLite files."""

from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import urlencode

import pytest

from tests.conftest import http

ADMIN, INGEST = "admin-tok-integrity", "ingest-tok-integrity"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def push(server, body: dict, token: str = INGEST) -> tuple[int, dict, dict]:
    status, headers, raw = http("POST", server.url + "/api/v1/ingest", body, bearer(token))
    return status, headers, json.loads(raw)


def events(server, instance_id: str, etype: str) -> list[dict]:
    q = urlencode({"instance_id": instance_id, "type": etype})
    return json.loads(http("GET", f"{server.url}/api/v1/events?{q}")[2])["events"]


def point_count(server, metric: str, instance_id: str) -> float:
    """How many points of `metric` the store counts over the last hour (every series)."""
    q = urlencode({"metric": metric, "instance_id": instance_id, "agg": "count", "start": "-1h", "step": "1h"})
    status, _, raw = http("GET", f"{server.url}/api/v1/query?{q}")
    assert status == 200, raw
    return sum(p[1] for s in json.loads(raw)["series"] for p in s["points"])


@pytest.fixture
def server(serve, tmp_path):
    return serve("--interval", "1h", "--kmsg", str(tmp_path / "own.kmsg"),
                 env={"DIAG_TOKEN": ADMIN, "DIAG_INGEST_TOKEN": INGEST})


# -- defect 4 ---------------------------------------------------------------------------------

def test_a_batch_whose_diag_db_write_failed_is_completed_by_its_retry(server):
    """The samples commit in metrics.db, then diag.db refuses the batch's OOM kill (a real
    SQLite error from the real file, raised by a trigger another connection installs). The
    agent's retry must store the kill, not be answered `duplicate: true` with it lost."""
    now = time.time()
    body = {"instance_id": "oom-1", "batch_id": "oom-1:b1", "hostname": "oom-host",
            "samples": [{"metric": "jobs_done", "labels": {}, "value": 3, "ts": now}],
            "signals": [{"ts": now, "kind": "oom_kill", "message": "Out of memory: Killed process 4242 (hog)",
                         "labels": {"pid": "4242", "process": "hog"}}]}
    diag_db = sqlite3.connect(server.data_dir / "diag.db", timeout=30, isolation_level=None)
    diag_db.execute("CREATE TRIGGER refuse_events BEFORE INSERT ON events "
                    "BEGIN SELECT RAISE(ABORT, 'diag.db refuses the write'); END")
    try:
        status, _, first = push(server, body)
        assert status == 500, first
        assert point_count(server, "jobs_done", "oom-1") == 1  # the first database did take it
    finally:
        diag_db.execute("DROP TRIGGER refuse_events")
        diag_db.close()

    status, _, retry = push(server, body)
    assert status == 202, retry
    assert (retry["duplicate"], retry["signals"]) == (False, 1)
    kills = events(server, "oom-1", "Kernel.OOMKill")
    assert len(kills) == 1 and kills[0]["details"]["labels"]["pid"] == "4242"
    assert point_count(server, "jobs_done", "oom-1") == 1  # the samples are not stored twice
    inst = json.loads(http("GET", server.url + "/api/v1/instances/oom-1")[2])
    assert inst["last_seen"] == pytest.approx(now) and inst["hostname"] == "oom-host"

    # Now it is whole: a third send is a duplicate that claims nothing and records nothing.
    status, _, again = push(server, body)
    assert status == 202 and again["duplicate"] is True
    assert (again["signals"], again["accepted"]) == (0, 0)
    kills = events(server, "oom-1", "Kernel.OOMKill")
    assert len(kills) == 1 and kills[0]["details"]["count"] == 1


# -- defect 20 (batch_id) -------------------------------------------------------------------

def test_a_null_batch_id_is_refused_as_the_document_says(server):
    spec = json.loads(http("GET", server.url + "/api/v1/openapi.json")[2])
    ingest = spec["paths"]["/api/v1/ingest"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch_id = ingest["properties"]["batch_id"]
    assert batch_id["type"] == "string" and not batch_id.get("nullable")  # what the validator must match
    status, _, body = push(server, {"instance_id": "null-1", "batch_id": None,
                                    "samples": [{"metric": "jobs_done", "value": 1, "ts": time.time()}]})
    assert status == 422 and body["error"]["field"] == "batch_id", body
    assert http("GET", server.url + "/api/v1/instances/null-1")[0] == 404


# -- defect 8 ---------------------------------------------------------------------------------

def test_the_shared_ingest_token_cannot_rewrite_an_agents_or_the_servers_instance(server):
    act = json.loads(http("POST", server.url + "/api/v1/activations", {"count": 1, "expires_in": "1h"},
                          bearer(ADMIN))[2])
    status, _, raw = http("POST", server.url + "/api/v1/agents/register", {
        "activation_id": act["activation_id"], "activation_code": act["activation_code"], "instance_id": "own-8"})
    assert status == 201, raw
    agent_token = json.loads(raw)["agent_token"]
    sample = [{"metric": "jobs_done", "value": 1, "ts": time.time()}]
    status, _, _ = push(server, {"instance_id": "own-8", "hostname": "db-1", "labels": {"env": "prod"},
                                 "samples": sample}, agent_token)
    assert status == 202
    local = next(i for i in json.loads(http("GET", server.url + "/api/v1/instances")[2])["instances"] if i["local"])

    # The shared token, used to move the agent's machine and the server out of their policies.
    status, _, body = push(server, {"instance_id": "own-8", "hostname": "evil", "labels": {"env": "dev"},
                                    "samples": sample})
    assert status == 403 and body["error"]["field"] == "instance_id", body
    status, _, body = push(server, {"instance_id": "own-8", "samples": sample})  # nor data in its name
    assert status == 403, body
    for rewrite in ({"hostname": "evil"}, {"labels": {"env": "dev"}}):
        status, _, body = push(server, {"instance_id": local["instance_id"], **rewrite, "samples": sample})
        assert status == 403, body

    own = json.loads(http("GET", server.url + "/api/v1/instances/own-8")[2])
    assert (own["hostname"], own["labels"]) == ("db-1", {"env": "prod"})
    after = json.loads(http("GET", server.url + f"/api/v1/instances/{local['instance_id']}")[2])
    assert (after["hostname"], after["labels"]) == (local["hostname"], local["labels"])

    # What the shared token is for still works: its own agents' instances, custom metrics.
    assert push(server, {"instance_id": "shared-8", "hostname": "web-1", "samples": sample})[0] == 202
    assert push(server, {"instance_id": local["instance_id"], "samples": sample})[0] == 202
    # The agent's own token and the admin's still write the agent's instance.
    assert push(server, {"instance_id": "own-8", "hostname": "db-2", "samples": sample}, agent_token)[0] == 202
    assert push(server, {"instance_id": "own-8", "hostname": "db-3", "samples": sample}, ADMIN)[0] == 202


# -- defect 9 ---------------------------------------------------------------------------------

def test_replays_series_floods_and_point_floods_are_bounded(serve, tmp_path):
    config = tmp_path / "bounds.yaml"
    config.write_text("ingest:\n  max_series_per_instance: 40\n  points_per_second: 50\n  points_burst: 300\n")
    server = serve("--config", str(config), "--interval", "1h", "--kmsg", str(tmp_path / "own.kmsg"),
                   env={"DIAG_TOKEN": ADMIN, "DIAG_INGEST_TOKEN": INGEST})
    now = time.time()
    one = {"instance_id": "dup-9", "samples": [{"metric": "jobs_done", "value": 2, "ts": now}]}
    for _ in range(5):  # the same point, sent again and again (and twice in one batch)
        assert push(server, {**one, "samples": one["samples"] * 2})[0] == 202
    assert point_count(server, "jobs_done", "dup-9") == 1

    flood = [{"metric": "flood", "labels": {"k": str(i)}, "value": 1, "ts": now} for i in range(30)]
    assert push(server, {"instance_id": "dup-9", "samples": flood})[0] == 202  # 31 series: within 40
    more = [{"metric": "flood", "labels": {"k": str(i)}, "value": 1, "ts": now} for i in range(30, 40)]
    status, headers, body = push(server, {"instance_id": "dup-9", "samples": more})
    assert status == 429 and body["error"]["code"] == "TooManySeries", body
    assert int(headers["Retry-After"]) > 0
    assert point_count(server, "flood", "dup-9") == 30  # none of the refused batch is stored
    assert push(server, {"instance_id": "dup-9", "samples": flood[:5]})[0] == 202  # known series still go

    # The token has spent ~50 of its 300; a 300-point batch must wait for the bucket.
    big = [{"metric": "flood", "labels": {"k": str(i % 30)}, "value": 1, "ts": now + 1 + i // 30}
           for i in range(300)]
    status, headers, body = push(server, {"instance_id": "dup-9", "samples": big})
    assert status == 429 and body["error"]["code"] == "TooManyPoints", body
    assert 1 <= int(headers["Retry-After"]) <= 6
    assert push(server, {"instance_id": "dup-9", "samples": big + big[:1]})[0] == 413  # never fits
    status, _, body = push(server, {"instance_id": "other-9", "samples": big[:10]}, ADMIN)
    assert status == 202, body  # another token's budget is its own
