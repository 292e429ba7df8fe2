"""Remote commands on a real registered `diag agent`: the command runs there and its
output reaches the server; an agent that is gone gives AgentNotOnline."""

import json
import time

import pytest

from tests.conftest import http
from tests.fleet.fleet_helpers import AgentProcess, Server, wait_for

TOKEN = "admin-token-commands"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(server, method, path, body=None):
    status, _, raw = http(method, server.url + "/api/v1" + path, body, AUTH)
    return status, (json.loads(raw) if raw else None)


@pytest.fixture
def server(tmp_path):
    cfg = tmp_path / "commands.yaml"
    cfg.write_text("commands:\n  delivery_timeout: 10s\n")
    s = Server(tmp_path, "--interval", "1s", "--enable-commands", "--config", str(cfg),
               env={"DIAG_TOKEN": TOKEN}).start()
    yield s
    s.stop()


def registered_agent(tmp_path, server, instance_id):
    status, act = call(server, "POST", "/activations", {"count": 1, "expires_in": "1h"})
    assert status == 201, act
    return AgentProcess(tmp_path, server.url, "--instance-id", instance_id, "--interval", "1s",
                        "--activation-id", act["activation_id"], "--activation-code", act["activation_code"],
                        name=instance_id)


def final(server, invoke_id, agent):
    def done():
        inv = call(server, "GET", f"/invocations/{invoke_id}")[1]
        return inv if inv["status"] not in ("Running", "Stopping") else None
    return wait_for(done, f"invocation {invoke_id} to end", 60, agent)


def test_a_command_runs_on_the_agent_and_its_output_reaches_the_server(tmp_path, server):
    agent = registered_agent(tmp_path, server, "cmd-agent-1")
    try:
        wait_for(lambda: (agent.data_dir / "agent-token").exists(), "registration", 30, agent)
        status, inv = call(server, "POST", "/run-command",
                           {"content": "echo ran on {{diag::InstanceId}}; exit 3", "instance_ids": ["cmd-agent-1"]})
        assert status == 201, inv
        done = final(server, inv["invoke_id"], agent)
        rec = done["instances"][0]["records"][0]
        assert (done["status"], rec["status"], rec["exit_code"]) == ("Finished", "Finished", 3)
        assert rec["output"] == "ran on cmd-agent-1\n" and rec["error_code"] == "ExitCodeNonzero"
    finally:
        agent.stop()


def test_an_agent_that_is_gone_gives_agent_not_online(tmp_path, server):
    agent = registered_agent(tmp_path, server, "cmd-agent-2")
    wait_for(lambda: (agent.data_dir / "agent-token").exists(), "registration", 30, agent)
    agent.stop()
    status, inv = call(server, "POST", "/run-command", {"content": "echo never", "instance_ids": ["cmd-agent-2"]})
    assert status == 201, inv
    started = time.monotonic()
    done = final(server, inv["invoke_id"], agent)
    rec = done["instances"][0]["records"][0]
    assert (done["status"], rec["error_code"]) == ("Failed", "AgentNotOnline")
    assert time.monotonic() - started >= 5  # it waited for the delivery timeout first


def test_python_and_perl_scripts_run_on_the_agent(tmp_path, server):
    agent = registered_agent(tmp_path, server, "cmd-agent-3")
    try:
        wait_for(lambda: (agent.data_dir / "agent-token").exists(), "registration", 30, agent)
        value = "a'b\"c $(id) `id`"
        for kind, content in [("RunPythonScript", "v = {{v}}\nprint(len(v), v, {{diag::InstanceId}})"),
                              ("RunPerlScript", 'print length({{v}}), " {{v}} ", {{diag::InstanceId}}, "\\n";')]:
            status, inv = call(server, "POST", "/run-command", {"type": kind, "content": content, "parameters": {"v": value},
                                                                "instance_ids": ["cmd-agent-3"]})
            assert status == 201, inv
            rec = final(server, inv["invoke_id"], agent)["instances"][0]["records"][0]
            assert (rec["status"], rec["exit_code"]) == ("Finished", 0), rec
            assert rec["output"] == f"{len(value)} {value} cmd-agent-3\n", (kind, rec)
    finally:
        agent.stop()
