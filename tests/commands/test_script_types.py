"""Issue 20, row 5 on a real `diag serve`: Python and Perl scripts run by real interpreters
with their parameters as variables (a hostile value arrives verbatim), perl missing is
refused, clone, the library of public commands run for real, and send-file's fields."""

import base64
import json
import os
import time
import uuid

import pytest

from diag.commands import delivery, runner
from diag.commands.engine import Commands, Settings
from diag.commands.model import CommandError
from diag.commands.runner import Execution
from diag.db import Database
from diag.events import EventLog
from tests.conftest import http

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(srv, method, path, body=None, headers=AUTH):
    status, _, raw = http(method, srv.url + "/api/v1" + path, body, headers)
    return status, (json.loads(raw) if raw else None)


def until_final(srv, invoke_id, deadline=120):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        _, inv = call(srv, "GET", f"/invocations/{invoke_id}")
        if inv["status"] not in ("Running", "Stopping"):
            return inv
        time.sleep(0.1)
    raise AssertionError(f"still {inv['status']}: {inv}")


@pytest.fixture
def srv(serve):
    return serve("--enable-commands", env={"DIAG_TOKEN": TOKEN})


def local_id(srv):
    return call(srv, "GET", "/instances")[1]["instances"][0]["instance_id"]


def run(srv, body):
    status, inv = call(srv, "POST", "/run-command", {"instance_ids": [local_id(srv)], **body})
    assert status == 201, inv
    inv = until_final(srv, inv["invoke_id"])
    return inv["instances"][0]["records"][0]


def test_python_and_perl_get_hostile_values_verbatim(srv):
    pwned = f"/tmp/pwned-{uuid.uuid4().hex}"
    value = f"'); __import__('os').system('touch {pwned}'); (' $(touch {pwned}) @{{[ `touch {pwned}` ]}}"
    py = "import sys\nv = {{v}}\nprint(repr(v), sys.version_info[0], {{diag::InstanceId}})"
    rec = run(srv, {"type": "RunPythonScript", "content": py, "parameters": {"v": value}, "name": "py"})
    assert (rec["status"], rec["exit_code"]) == ("Finished", 0), rec
    assert rec["output"] == f"{value!r} 3 {local_id(srv)}\n"
    pl = 'print "v={{v}}|", length({{v}}), "\\n";'
    rec = run(srv, {"type": "RunPerlScript", "content": pl, "parameters": {"v": value}, "name": "pl"})
    assert (rec["status"], rec["exit_code"]) == ("Finished", 0), rec
    assert rec["output"] == f"v={value}|{len(value)}\n"
    assert not os.path.exists(pwned)
    rec = run(srv, {"type": "RunPythonScript", "content": "import sys; sys.exit(4)", "name": "exit"})
    assert (rec["exit_code"], rec["error_code"]) == (4, "ExitCodeNonzero")


def test_a_python_placeholder_in_a_string_or_comment_is_refused(srv):
    for content in ["print('{{v}}')", "x = 1  # {{v}}", 'print(f"{{v}}")', 'print("""\n{{v}}\n""")']:
        status, err = call(srv, "POST", "/commands", {"name": "p", "type": "RunPythonScript", "content": content})
        assert status == 422 and err["error"]["field"] == "content", (content, err)
    status, err = call(srv, "POST", "/commands", {"name": "p", "type": "RunRubyScript", "content": "puts 1"})
    assert status == 422 and err["error"]["field"] == "type"


def test_perl_missing_is_refused_here_and_fails_the_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "PATH", str(tmp_path))  # a machine whose PATH has no perl
    db = Database(tmp_path / "diag.db")
    e = Commands(db, EventLog(db), Settings(local_id="i-local"), local_boot_id="b")
    try:
        cmd = {"command_id": "c-1", "name": "pl", "type": "RunPerlScript", "content": "print 1", "parameters": [],
               "timeout": 10.0, "working_dir": "", "username": ""}
        with pytest.raises(CommandError) as err:
            e.invoke(cmd, ["i-local"], {}, "Once", None, None, {"who": "t"})
        assert (err.value.status, err.value.field) == (422, "type") and "perl" in err.value.message
        e.invoke(cmd, ["i-agent"], {}, "Once", None, None, {"who": "t"})  # an agent may have perl
    finally:
        e.close()
        db.close()
    r = Execution("print 1", timeout=10, kind="RunPerlScript").run()
    assert (r.status, r.error_code) == ("Failed", "ExecutionException") and "perl is not installed" in r.error_info


def test_clone(srv):
    _, cmd = call(srv, "POST", "/commands", {"name": "orig", "content": "echo {{a}}", "timeout": 30,
                                             "type": "RunShellScript", "tags": ["t"]})
    status, copy = call(srv, "POST", f"/commands/{cmd['command_id']}/clone")
    assert status == 201, copy
    assert copy["command_id"] != cmd["command_id"] and copy["name"] == "orig-copy"
    assert {k: copy[k] for k in ("content", "timeout", "parameters", "tags")} == \
        {"content": "echo {{a}}", "timeout": 30, "parameters": ["a"], "tags": ["t"]}
    status, other = call(srv, "POST", f"/commands/{cmd['command_id']}/clone",
                         {"name": "py", "type": "RunPythonScript", "content": "print({{b}})"})
    assert status == 201 and (other["name"], other["parameters"]) == ("py", ["b"])
    assert call(srv, "GET", f"/commands/{cmd['command_id']}")[1]["content"] == "echo {{a}}"  # the original stays
    assert call(srv, "POST", "/commands/c-nosuch/clone")[0] == 404
    status, err = call(srv, "POST", f"/commands/{cmd['command_id']}/clone", {"timeout": 1})
    assert status == 422 and err["error"]["field"] == "timeout"
    assert len(call(srv, "GET", "/commands")[1]["commands"]) == 3


EXPECT = {"disk-usage-report": "== inodes (df -i) ==", "disk-resize-diagnostic": "result: ",
          "network-diagnostics": "== routes ==", "collect-logs": "== kernel log, last lines =="}


def test_the_library_is_listed_enabled_one_by_one_and_runs(srv):
    status, lib = call(srv, "GET", "/command-library")
    assert status == 200
    assert {c["library_id"]: c["enabled"] for c in lib["commands"]} == {k: False for k in EXPECT}
    assert call(srv, "GET", "/commands")[1]["commands"] == []  # nothing enabled by itself
    status, cmd = call(srv, "POST", "/command-library/disk-usage-report/enable")
    assert status == 201 and cmd["library_id"] == "disk-usage-report" and cmd["name"] == "diag-disk-usage-report"
    status, err = call(srv, "POST", "/command-library/disk-usage-report/enable")
    assert status == 409 and cmd["command_id"] in err["error"]["message"]
    assert call(srv, "POST", "/command-library/no-such/enable")[0] == 404
    listed = {c["library_id"]: c for c in call(srv, "GET", "/command-library")[1]["commands"]}
    assert listed["disk-usage-report"]["enabled"] and listed["disk-usage-report"]["command_id"] == cmd["command_id"]
    assert not listed["collect-logs"]["enabled"]
    ids = {"disk-usage-report": cmd["command_id"]}
    for lid in EXPECT:
        if lid not in ids:
            status, c = call(srv, "POST", f"/command-library/{lid}/enable")
            assert status == 201, c
            ids[lid] = c["command_id"]
    for lid, cid in ids.items():
        status, inv = call(srv, "POST", f"/commands/{cid}/invoke", {"instance_ids": [local_id(srv)]})
        assert status == 201, inv
        rec = until_final(srv, inv["invoke_id"], 300)["instances"][0]["records"][0]
        assert (rec["status"], rec["exit_code"]) == ("Finished", 0), (lid, rec)
        assert EXPECT[lid] in rec["output"], (lid, rec["output"][:2000])
    assert call(srv, "DELETE", f"/commands/{ids['collect-logs']}")[0] == 204  # disabling
    listed = {c["library_id"]: c for c in call(srv, "GET", "/command-library")[1]["commands"]}
    assert not listed["collect-logs"]["enabled"] and listed["collect-logs"]["command_id"] is None


def test_send_file_checks_every_field(srv, tmp_path):
    base = {"instance_ids": [local_id(srv)], "name": "f.txt", "content": base64.b64encode(b"hi").decode(),
            "target_dir": str(tmp_path)}
    status, err = call(srv, "POST", "/files", {**base, "FileMode": "0600"})
    assert status == 400 and err["error"]["field"] == "FileMode", err
    for extra, field in [({"timeout": 9}, "timeout"), ({"timeout": 86401}, "timeout"), ({"timeout": "2d"}, "timeout"),
                         ({"timeout": True}, "timeout"), ({"mode": 644}, "mode"), ({"overwrite": "yes"}, "overwrite"),
                         ({"owner": "Bad Name"}, "owner"), ({"description": 5}, "description"),
                         ({"content_encoding": "Hex"}, "content_encoding"), ({"content": "***"}, "content"),
                         ({"name": "a/b"}, "name"), ({"target_dir": "rel"}, "target_dir")]:
        status, err = call(srv, "POST", "/files", {**base, **extra})
        assert status == 422 and err["error"]["field"] == field, (extra, err)
    status, inv = call(srv, "POST", "/files", {**base, "content": "plain text\n", "content_encoding": "PlainText",
                                               "timeout": "30s", "description": "d", "mode": "0600"})
    assert status == 201 and inv["timeout"] == 30, inv
    done = until_final(srv, inv["invoke_id"])
    assert done["instances"][0]["records"][0]["status"] == "Finished"
    assert (tmp_path / "f.txt").read_text() == "plain text\n" and (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o600


def test_a_file_sends_timeout_bounds_an_agents_silence(tmp_path):
    """The record of a file sent to an agent that never reports fails at its own timeout
    (plus the delivery grace), not at a fixed 60 s."""
    db = Database(tmp_path / "diag.db")
    e = Commands(db, EventLog(db), Settings(local_id="i-local", delivery_timeout=10), local_boot_id="b")
    try:
        spec = {"file_name": "f", "content_b64": "aGk=", "target_dir": "/tmp", "mode": "0644", "owner": "",
                "group": "", "overwrite": False, "timeout": 15.0}
        inv = e.send_file(spec, ["i-agent"], {"who": "t"}, now=1000.0)
        got = delivery.poll(e, "i-agent", None, now=1001.0)
        assert got["tasks"][0]["timeout"] == 15.0
        e.tick(1001.0 + 15 + 10 - 1)
        assert e.invocation(inv["invoke_id"])["instances"][0]["records"][0]["status"] == "Running"
        e.tick(1001.0 + 15 + 10 + 1)
        rec = e.invocation(inv["invoke_id"])["instances"][0]["records"][0]
        assert (rec["status"], rec["error_code"]) == ("Failed", "ExecutionTimeout")
    finally:
        e.close()
        db.close()
