"""Real agents against a real server: two instances apart, registration, and an outage."""

from __future__ import annotations

import json
import re
import sqlite3
import stat

import pytest
from tests.conftest import http
from tests.fleet.fleet_helpers import AgentProcess, Server, get_json, hung_task, kmsg_record, wait_for

ADMIN, INGEST = "admin-token-fleet", "ingest-token-fleet"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, "--interval", "1s", env={"DIAG_TOKEN": ADMIN, "DIAG_INGEST_TOKEN": INGEST}).start()
    yield s
    s.stop()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.stop()


def _instances(server: Server) -> dict[str, dict]:
    status, body = get_json(server.url + "/api/v1/instances")
    assert status == 200
    return {i["instance_id"]: i for i in body["instances"]}


def _diagnose(server: Server, instance_id: str) -> dict[str, dict]:
    status, _, body = http("POST", server.url + "/api/v1/diagnoses", {"instance_id": instance_id}, headers=AUTH)
    assert status == 201, body
    report = json.loads(body)
    assert report["instance_id"] == instance_id
    return {c["id"]: c for c in report["checks"]}


def test_two_agents_are_two_instances_and_a_kernel_line_shows_only_in_its_own(tmp_path, server, agents):
    kmsg_a, kmsg_b = tmp_path / "a.kmsg", tmp_path / "b.kmsg"
    kmsg_a.write_text(kmsg_record(1, "agent a booted quietly", prio=6))
    kmsg_b.write_text(kmsg_record(1, "agent b booted quietly", prio=6))
    # a: the shared ingest token; b: registers once with an activation and keeps its own token
    status, _, body = http("POST", server.url + "/api/v1/activations", {"count": 1, "expires_in": "1h"}, headers=AUTH)
    assert status == 201
    act = json.loads(body)
    a = AgentProcess(tmp_path, server.url, "--instance-id", "fleet-a", "--kmsg", str(kmsg_a), "--interval", "1s",
                     "--token", INGEST, name="a")
    b = AgentProcess(tmp_path, server.url, "--instance-id", "fleet-b", "--kmsg", str(kmsg_b), "--interval", "1s",
                     "--activation-id", act["activation_id"], "--activation-code", act["activation_code"], name="b")
    agents += [a, b]
    wait_for(lambda: {"fleet-a", "fleet-b"} <= {i for i, v in _instances(server).items() if v["last_seen"]},
             "both agents' data", 40, a, b)
    token_file = b.data_dir / "agent-token"
    assert token_file.read_text().startswith("dat_")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    with kmsg_a.open("a") as f:
        f.write(hung_task(2, "kworker/u8:3", 4242))

    def hung_event() -> bool:
        _, body = get_json(server.url + "/api/v1/events?instance_id=fleet-a")
        return any(e["type"] == "Kernel.HungTask" for e in body["events"])

    wait_for(hung_event, "the hung-task event of fleet-a", 30, a)
    # An agent's first push has no CPU usage yet (a rate needs two readings): wait for a
    # pushed sample of each before asking whether each was diagnosed over its own.
    for agent, iid in ((a, "fleet-a"), (b, "fleet-b")):
        wait_for(lambda: (lambda r: r[0] == 200 and r[1]["series"])(
            get_json(server.url + f"/api/v1/query?metric=cpu_usage&instance_id={iid}&start=-10m&step=10s", ADMIN)),
            f"a cpu_usage sample of {iid}", 30, agent)
    checks_a, checks_b = _diagnose(server, "fleet-a"), _diagnose(server, "fleet-b")
    assert checks_a["state.kernel_fault"]["status"] == "critical"
    assert "4242" in json.dumps(checks_a["state.kernel_fault"]) or "kworker" in checks_a["state.kernel_fault"]["message"]
    assert checks_b["state.kernel_fault"]["status"] == "ok"
    # both diagnosed over their own pushed data: CPU has samples for each
    assert checks_a["performance.cpu"]["status"] != "unknown" and checks_b["performance.cpu"]["status"] != "unknown"
    listed = _instances(server)
    for iid in ("fleet-a", "fleet-b"):
        assert listed[iid]["health_status"] in ("Ok", "Warning", "Impaired", "InsufficientData")
    _, ev_b = get_json(server.url + "/api/v1/events?instance_id=fleet-b")
    assert not any(e["type"] == "Kernel.HungTask" for e in ev_b["events"])


def _buffer_counts(data_dir) -> tuple[int, int]:
    """(batches ever made, batches still waiting) from the agent's buffer file."""
    db = sqlite3.connect(data_dir / "buffer.db")
    try:
        made = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
        waiting = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return (made[0] if made else 0), waiting
    finally:
        db.close()


def _stored_uptime_points(server: Server, instance_id: str) -> list[float]:
    # Every batch carries exactly one uptime sample: stored points = stored batches.
    status, body = get_json(server.url + f"/api/v1/query?metric=uptime&instance_id={instance_id}"
                            "&start=-1h&step=1s&agg=count")
    assert status == 200, body
    return [v for s in body["series"] for _, v in s["points"]]


def test_batches_buffered_while_the_server_is_away_all_arrive_once(tmp_path, server, agents):
    kmsg = tmp_path / "c.kmsg"
    kmsg.write_text("")
    a = AgentProcess(tmp_path, server.url, "--instance-id", "fleet-c", "--kmsg", str(kmsg), "--interval", "1s",
                     "--token", INGEST, name="c")
    agents.append(a)
    wait_for(lambda: sum(_stored_uptime_points(server, "fleet-c")) >= 2, "the first batches", 30, a)
    server.stop()
    wait_for(lambda: _buffer_counts(a.data_dir)[1] >= 4, "4 batches buffered while the server is away", 30, a)
    server.start()
    wait_for(lambda: _buffer_counts(a.data_dir)[1] == 0 and "server is back" in a.output(),
             "the buffer to drain", 60, a)
    a.stop()
    made, waiting = _buffer_counts(a.data_dir)
    points = _stored_uptime_points(server, "fleet-c")
    assert sum(points) == made - waiting  # every batch made and sent is stored, none twice
    assert made - waiting >= 6


def test_a_full_buffer_drops_the_oldest_and_the_server_hears_the_count(tmp_path, server, agents):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("buffer_batches: 3\nlabels:\n  role: db\n")
    a = AgentProcess(tmp_path, server.url, "--config", str(cfg), "--instance-id", "fleet-d", "--kmsg",
                     str(tmp_path / "none.kmsg"), "--interval", "1s", "--token", INGEST, name="d")
    (tmp_path / "none.kmsg").write_text("")
    agents.append(a)
    wait_for(lambda: "fleet-d" in _instances(server), "the agent's first batch", 30, a)
    server.stop()
    wait_for(lambda: _buffer_counts(a.data_dir)[0] >= 8, "more batches than the buffer holds", 30, a)
    server.start()

    def dropped_event():
        _, body = get_json(server.url + "/api/v1/events?instance_id=fleet-d")
        return [e for e in body["events"] if e["type"] == "Agent.BatchesDropped"]

    wait_for(dropped_event, "the dropped-batches event", 60, a)
    wait_for(lambda: _buffer_counts(a.data_dir)[1] == 0, "the buffer to drain", 60, a)
    a.stop()
    made, waiting = _buffer_counts(a.data_dir)
    sent = sum(_stored_uptime_points(server, "fleet-d"))
    told = sum(int(re.search(r"dropped (\d+) batches", e["details"]["message"]).group(1)) for e in dropped_event())
    # Every batch made was sent, is still waiting, or was dropped; and the server heard of every drop.
    assert told == made - sent - waiting >= 5
    assert _instances(server)["fleet-d"]["labels"] == {"role": "db"}


def test_a_restarted_agent_reports_no_old_kernel_line_again(tmp_path, server, agents):
    kmsg = tmp_path / "k.kmsg"
    kmsg.write_text(hung_task(2, "kworker/u8:3", 4242))
    args = ("--instance-id", "fleet-k", "--kmsg", str(kmsg), "--interval", "1s", "--token", INGEST)

    def hung_count() -> int:
        _, body = get_json(server.url + "/api/v1/events?instance_id=fleet-k&type=Kernel.HungTask")
        return sum(e["details"]["count"] for e in body["events"])

    a = AgentProcess(tmp_path, server.url, *args, name="k")
    agents.append(a)
    wait_for(lambda: hung_count() == 1, "the hung task reported once", 30, a)
    a.stop()
    sent = sum(_stored_uptime_points(server, "fleet-k"))
    b = AgentProcess(tmp_path, server.url, *args, name="k")  # same data dir: its kernel-log position
    agents.append(b)
    wait_for(lambda: sum(_stored_uptime_points(server, "fleet-k")) >= sent + 3, "batches after the restart", 30, b)
    assert hung_count() == 1  # the old line was not sent again
    with kmsg.open("a") as f:  # and a new line still is
        f.write(hung_task(3, "kworker/u8:4", 4343))
    wait_for(lambda: hung_count() == 2, "the new hung task", 30, b)
