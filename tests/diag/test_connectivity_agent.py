"""The probe from an agent source runs on a real registered `diag agent` through the
remote-command channel; with commands off, it is `unknown` with the reason."""

import json
import socket
import time

import pytest

from tests.conftest import free_port, http
from tests.fleet.fleet_helpers import AgentProcess, Server, wait_for

TOKEN = "admin-token-connectivity"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(server, method, path, body=None):
    status, _, raw = http(method, server.url + "/api/v1" + path, body, AUTH, timeout=30)
    return status, (json.loads(raw) if raw else None)


@pytest.fixture
def server(tmp_path):
    cfg = tmp_path / "commands.yaml"
    cfg.write_text("commands:\n  delivery_timeout: 10s\n")
    s = Server(tmp_path, "--interval", "1s", "--enable-commands", "--config", str(cfg),
               env={"DIAG_TOKEN": TOKEN}).start()
    yield s
    s.stop()


def test_an_agent_sources_probe_runs_on_the_agent_through_remote_commands(tmp_path, server):
    status, act = call(server, "POST", "/activations", {"count": 1, "expires_in": "1h"})
    assert status == 201, act
    agent = AgentProcess(tmp_path, server.url, "--instance-id", "conn-agent-1", "--interval", "1s",
                         "--activation-id", act["activation_id"], "--activation-code", act["activation_code"],
                         name="conn-agent-1")
    port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    try:
        wait_for(lambda: (agent.data_dir / "agent-token").exists(), "registration", 30, agent)
        wait_for(lambda: call(server, "GET", "/instances/conn-agent-1")[0] == 200, "the agent's first batch", 30, agent)
        t0 = time.monotonic()
        status, got = call(server, "POST", "/connectivity", {"source": "conn-agent-1",
                                                             "destination": {"address": "127.0.0.1"}, "port": port})
        took = time.monotonic() - t0
        assert status == 200, got
        probe = got["steps"][-1]
        assert probe["verdict"] == "ok" and probe["evidence"]["outcome"] == "connected", probe
        assert probe["evidence"]["via"].startswith("remote command ")
        assert got["verdict"] == "reachable" and took < 10
        # A closed port: the agent's connect is refused.
        srv.close()
        status, got = call(server, "POST", "/connectivity", {"source": "conn-agent-1",
                                                             "destination": {"address": "127.0.0.1"}, "port": port})
        assert got["steps"][-1]["evidence"]["outcome"] == "refused" and got["verdict"] == "unreachable"
        # The probe is an ordinary audited invocation.
        status, invs = call(server, "GET", "/invocations")
        assert status == 200 and any(i["name"] == "diag-connectivity-probe" for i in invs["invocations"]), invs
    finally:
        srv.close()
        agent.stop()


def test_with_commands_off_an_agent_sources_probe_is_unknown_with_the_reason(tmp_path):
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    try:
        s.instances.register("conn-agent-2", hostname="a2")
        r = create_app(s).test_client().post("/api/v1/connectivity", json={
            "source": "conn-agent-2", "destination": {"address": "127.0.0.1"}, "port": 22})
        probe = r.get_json()["steps"][-1]
        assert probe["verdict"] == "unknown" and "remote commands are not enabled" in probe["message"]
        assert r.get_json()["steps"][0]["verdict"] == "unknown"  # no facts of it yet
    finally:
        s.close()


def test_an_allow_list_without_the_probe_keeps_it_off_the_agent(tmp_path):
    import hashlib

    from diag import connectivity, remote_probe
    from diag.config import load
    from diag.service import Service

    cfg = tmp_path / "c.yaml"
    cfg.write_text("commands:\n  allow: [uptime]\n")
    s = Service(load(cfg, env={"DIAG_TOKEN": TOKEN, "DIAG_COMMANDS": "1"}, data_dir=str(tmp_path / "data")))
    try:
        s.instances.register("conn-agent-3", hostname="a3")
        out = connectivity.diagnose(s.parts.connectivity, "conn-agent-3", None, "127.0.0.1", 22, "tcp", 1.0)
        probe = out["steps"][-1]
        digest = hashlib.sha256(remote_probe.script().encode()).hexdigest()
        assert probe["verdict"] == "unknown" and f"allow-list does not hold {remote_probe.NAME}@{digest}" in \
            probe["message"]  # what to add to the list, spelled out
        assert s.commands.repo.records_where("1 = 1", ()) == []  # nothing was sent
    finally:
        s.close()
    # Pinned by its digest, it is allowed (and waits for an agent that never polls: bounded).
    cfg.write_text(f"commands:\n  allow: ['{remote_probe.NAME}@{digest}']\n")
    s = Service(load(cfg, env={"DIAG_TOKEN": TOKEN, "DIAG_COMMANDS": "1"}, data_dir=str(tmp_path / "data2")))
    try:
        s.instances.register("conn-agent-3", hostname="a3")
        t0 = time.monotonic()
        out = connectivity.diagnose(s.parts.connectivity, "conn-agent-3", None, "127.0.0.1", 22, "tcp", 0.5)
        assert time.monotonic() - t0 < 0.5 + remote_probe.SLACK_S + 1
        probe = out["steps"][-1]
        assert probe["verdict"] == "unknown" and "did not run the probe within" in probe["message"], probe
    finally:
        s.close()
