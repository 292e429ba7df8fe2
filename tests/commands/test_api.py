"""The HTTP side on a real `diag serve`: off by default, the token always, injection-proof
parameters, send file, and agents (registered over HTTP) polling their own tasks only."""

import base64
import json
import subprocess
import sys
import time
import uuid

from diag.commands.agent_tasks import TaskClient
from tests.conftest import ROOT, free_port, http

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(srv, method, path, body=None, headers=AUTH):
    status, _, raw = http(method, srv.url + "/api/v1" + path, body, headers)
    return status, (json.loads(raw) if raw else None)


def until_final(srv, invoke_id, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        _, inv = call(srv, "GET", f"/invocations/{invoke_id}")
        if inv["status"] not in ("Running", "Stopping"):
            return inv
        time.sleep(0.1)
    raise AssertionError(f"still {inv['status']}: {inv}")


def local_id(srv):
    return call(srv, "GET", "/instances")[1]["instances"][0]["instance_id"]


def test_disabled_by_default_every_endpoint_is_404(serve, tmp_path):
    srv = serve(env={"DIAG_TOKEN": TOKEN})
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    body = {"content": f"touch {marker}", "instance_ids": [local_id(srv)]}
    for method, path in [("GET", "/commands"), ("POST", "/commands"), ("GET", "/commands/c-1"),
                         ("PUT", "/commands/c-1"), ("DELETE", "/commands/c-1"), ("POST", "/commands/c-1/invoke"),
                         ("POST", "/run-command"), ("GET", "/invocations"), ("GET", "/invocations/t-1"),
                         ("POST", "/invocations/t-1/stop"), ("POST", "/files"),
                         ("POST", "/agents/x/tasks/r-1/result"), ("GET", f"/agents/{local_id(srv)}/tasks")]:
        status, err = call(srv, method, path, body)
        assert status == 404, (method, path, status)
    assert not marker.exists()


def test_enabling_without_a_token_refuses_to_start(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DIAG_COMMANDS": "1"}
    p = subprocess.run([sys.executable, "-m", "diag.cli", "serve", "--port", str(free_port()), "--data-dir",
                        str(tmp_path / "d")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "without an admin token" in p.stderr
    p = subprocess.run([sys.executable, "-m", "diag.cli", "serve", "--enable-commands", "--port", str(free_port()),
                        "--data-dir", str(tmp_path / "e")], cwd=ROOT, env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "without an admin token" in p.stderr


def test_token_required_even_on_loopback(serve):
    srv = serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})
    assert call(srv, "GET", "/commands", headers={})[0] == 401
    assert call(srv, "GET", "/commands", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call(srv, "GET", "/commands")[0] == 200


def test_injection_value_arrives_verbatim(serve, tmp_path):
    srv = serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})
    pwned = f"/tmp/pwned-{uuid.uuid4().hex}"
    value = f"$(touch {pwned}); ;rm -rf x"
    status, cmd = call(srv, "POST", "/commands", {"name": "echo", "content": "printf '%s' {{v}}",
                                                  "working_dir": str(tmp_path)})
    assert status == 201 and cmd["parameters"] == ["v"]
    (tmp_path / "x").mkdir()
    status, inv = call(srv, "POST", f"/commands/{cmd['command_id']}/invoke",
                       {"instance_ids": [local_id(srv)], "parameters": {"v": value}})
    assert status == 201
    inv = until_final(srv, inv["invoke_id"])
    rec = inv["instances"][0]["records"][0]
    assert (inv["status"], rec["exit_code"], rec["output"]) == ("Finished", 0, value)
    assert not __import__("os").path.exists(pwned)
    assert (tmp_path / "x").is_dir()


def test_validation_names_the_field(serve):
    srv = serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})
    cases = [({"name": "a", "content": "x" * (16 * 1024 + 1)}, "content"),
             ({"name": "a", "content": " ".join(f"{{{{p{i}}}}}" for i in range(21))}, "content"),
             ({"name": "", "content": "true"}, "name"),
             ({"name": "a", "content": "true", "timeout": 5}, "timeout"),
             ({"name": "a", "content": "cat <<EOF\n{{v}}\nEOF"}, "content")]
    for body, field in cases:
        status, err = call(srv, "POST", "/commands", body)
        assert status in (413, 422) and err["error"]["field"] == field, (body, err)
    _, cmd = call(srv, "POST", "/commands", {"name": "p", "content": "echo {{a}}"})
    iid = local_id(srv)
    for params, field in [({}, "parameters.a"), ({"a": "1", "b": "2"}, "parameters.b")]:
        status, err = call(srv, "POST", f"/commands/{cmd['command_id']}/invoke",
                           {"instance_ids": [iid], "parameters": params})
        assert status == 422 and err["error"]["field"] == field
    status, err = call(srv, "POST", f"/commands/{cmd['command_id']}/invoke",
                       {"instance_ids": [iid], "parameters": {"a": "1"}, "repeat_mode": "Period",
                        "frequency": "rate(30s)"})
    assert status == 422 and err["error"]["field"] == "frequency"
    assert call(srv, "GET", "/invocations")[1]["invocations"] == []  # nothing half-written


def test_send_file(serve, tmp_path):
    srv = serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})
    body = {"instance_ids": [local_id(srv)], "name": "f.txt", "content": base64.b64encode(b"hello").decode(),
            "target_dir": str(tmp_path), "mode": "0600"}
    status, inv = call(srv, "POST", "/files", body)
    assert status == 201 and until_final(srv, inv["invoke_id"])["status"] == "Finished"
    assert (tmp_path / "f.txt").read_bytes() == b"hello" and (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o600
    _, inv = call(srv, "POST", "/files", {**body, "content": base64.b64encode(b"other").decode()})
    inv = until_final(srv, inv["invoke_id"])
    assert inv["status"] == "Failed" and inv["instances"][0]["records"][0]["error_code"] == "FileAlreadyExists"
    status, err = call(srv, "POST", "/files", {**body, "content": base64.b64encode(b"x" * 40000).decode()})
    assert status == 413


def register(srv, instance_id):
    _, act = call(srv, "POST", "/activations", {"count": 1})
    status, reg = call(srv, "POST", "/agents/register", {"activation_id": act["activation_id"],
                                                         "activation_code": act["activation_code"],
                                                         "instance_id": instance_id})
    assert status == 201
    return reg["agent_token"]


def test_agent_over_http_runs_its_task_and_only_its_own(serve):
    srv = serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})
    a, b = f"i-a-{uuid.uuid4().hex[:6]}", f"i-b-{uuid.uuid4().hex[:6]}"
    token_a, token_b = register(srv, a), register(srv, b)
    status, inv = call(srv, "POST", "/run-command", {"content": "echo from {{diag::InstanceId}}", "instance_ids": [a]})
    assert status == 201
    # b may not read a's tasks, nor answer them
    assert http("GET", f"{srv.url}/api/v1/agents/{a}/tasks", headers={"Authorization": f"Bearer {token_b}"})[0] == 403
    client = TaskClient(srv.url, a, token_a)
    assert client.poll_once() == 1
    client.join(60)
    done = until_final(srv, inv["invoke_id"])
    rec = done["instances"][0]["records"][0]
    assert (done["status"], rec["output"]) == ("Finished", f"from {a}\n")
    status, _, _ = http("POST", f"{srv.url}/api/v1/agents/{a}/tasks/{rec['task_id']}/result", {"status": "Failed"},
                        {"Authorization": f"Bearer {token_b}"})
    assert status == 403
