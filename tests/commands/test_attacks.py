"""Issue 15's attacks on remote commands, done for real against one `diag serve` with commands
on: parameter quoting bypasses, a hostile `type`, send-file edge cases, and a child that
leaves the process group before the timeout."""

import base64
import os
import time
import uuid

import pytest

from diag.commands import parameters
from diag.commands.runner import Execution
from tests.conftest import ServeProcess
from tests.commands.test_api import AUTH, TOKEN, call, local_id, until_final


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # One server for the module: each attack is a few requests, a start is seconds.
    p = ServeProcess(tmp_path_factory.mktemp("attacks") / "data", "--enable-commands", env={"DIAG_TOKEN": TOKEN})
    try:
        p.wait_ready()
        yield p
    finally:
        p.stop()


def _run(srv, content, params, timeout=None):
    body = {"content": content, "instance_ids": [local_id(srv)], "parameters": params}
    if timeout is not None:
        body["timeout"] = timeout
    status, inv = call(srv, "POST", "/run-command", body)
    assert status == 201, inv
    return until_final(srv, inv["invoke_id"])["instances"][0]["records"][0]


def _unlinted(template, value):
    """The rewrite without the lint's refusals: every placeholder becomes its expansion."""
    var = parameters.env_name("v")
    return parameters.PLACEHOLDER.sub(f'${{{var}+"${{{var}}}"}}', template), {var: value}


# Each template is one where the old placeholder scanner and bash read the quoting differently.
BYPASSES = {
    # a comment right after $( : the scanner saw a quote open, bash a comment
    "comment_after_subst_open": "echo $(#'\nprintf '%s' {{v}})",
    # $(...)#' : bash sees a literal # and a quote, the scanner a comment
    "hash_after_subst": "echo $(true)#'\n{{v}}'",
    # a case pattern's ) inside "$(...)": the scanner left the substitution, bash did not
    "case_in_quoted_subst": "printf '%s' \"$(case x in x) printf '%s' {{v}};; esac)\"",
}


@pytest.mark.parametrize("name", sorted(BYPASSES))
def test_parameter_bypass_runs_no_code(srv, name):
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    for value in (f"$(touch {marker})", f"x; touch {marker}", f"'; touch {marker}; '", f"`touch {marker}`"):
        status, inv = call(srv, "POST", "/run-command", {"content": BYPASSES[name], "instance_ids": [local_id(srv)],
                                                         "parameters": {"v": value}})
        if status == 422:  # the lint refusing an unclear context is safe too
            assert inv["error"]["field"] == "content"
        else:
            assert status == 201, inv
            assert until_final(srv, inv["invoke_id"])["status"] == "Finished"
        assert not os.path.exists(marker), (name, value, inv)
        # Safety must not hang on the lint: the rewritten script, run for real, runs no value.
        script, env = parameters.substitute(BYPASSES[name], {"v": value}, {}) if status == 201 else _unlinted(
            BYPASSES[name], value)
        assert Execution(script, timeout=10, env=env).run().status == "Finished"
        assert not os.path.exists(marker), (name, value, script)
    if name == "case_in_quoted_subst":
        assert _run(srv, BYPASSES[name], {"v": "a  b $(x)"})["output"] == "a  b $(x)"


def test_parameter_inside_arithmetic_is_refused(srv):
    # Inside (( )) bash expands as in double quotes, and it evaluates array subscripts in a
    # value (a[$(cmd)]) even from a variable: no quoting makes a value inert there.
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    for content in ("(( n = {{v}} )); echo $n", "(( n = '{{v}}' ))", "echo $(( {{v}} + 1 ))",
                    "x=1\nif ((\n x > {{v}} )); then echo; fi", "echo $[ {{v}} ]", "let n={{v}}",
                    "[[ {{v}} -gt 1 ]]", "eval echo {{v}}"):
        status, err = call(srv, "POST", "/run-command", {"content": content, "instance_ids": [local_id(srv)],
                                                         "parameters": {"v": f"a[$(touch {marker})]"}})
        assert status == 422 and err["error"]["field"] == "content", (content, err)
    assert not os.path.exists(marker)


def test_parameters_still_arrive_verbatim(srv):
    value = "a  b * $(id) `id` \"q\" ' \\ \n;{{x}}"
    rec = _run(srv, "printf '[%s]' {{v}} \"<{{v}}>\" \"$(printf '%s' {{v}})\"; x={{v}}; printf '%s' \"$x\"\n"
                    "printf ' %s' {{diag::InstanceId}}", {"v": value})
    assert rec["output"] == f"[{value}][<{value}>][{value}]{value} {local_id(srv)}"


def test_put_command_refuses_an_empty_or_null_type(srv):
    status, cmd = call(srv, "POST", "/commands", {"name": f"t-{uuid.uuid4().hex[:6]}", "content": "true"})
    assert status == 201
    for bad in ("", None, "RunBatScript"):
        status, err = call(srv, "PUT", f"/commands/{cmd['command_id']}", {"type": bad})
        assert status == 422 and err["error"]["field"] == "type", (bad, err)
    status, err = call(srv, "POST", "/commands", {"name": "t", "content": "true", "type": ""})
    assert status == 422 and err["error"]["field"] == "type"


def _file(srv, target_dir, name="f.txt", **extra):
    return call(srv, "POST", "/files", {"instance_ids": [local_id(srv)], "name": name, "target_dir": str(target_dir),
                                        "content": base64.b64encode(b"#!/bin/sh\nid\n").decode(), **extra})


def test_send_file_edge_cases_answer_clearly(srv, tmp_path):
    long = "n" * 250  # valid (NAME_MAX is 255 bytes), but the temporary name built from it was not
    status, inv = _file(srv, tmp_path, long)
    assert status == 201, inv
    rec = until_final(srv, inv["invoke_id"])["instances"][0]["records"][0]
    assert rec["status"] == "Finished", rec
    assert (tmp_path / long).read_bytes().startswith(b"#!/bin/sh")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    for name, target, field in [("é" * 128, tmp_path, "name"), ("x", "/proc", "target_dir"),
                                ("x", "/proc/sys/kernel", "target_dir"), ("x", "/sys/../proc/self", "target_dir"),
                                ("x", "/dev/shm", "target_dir")]:
        status, err = _file(srv, target, name)
        assert status == 422 and err["error"]["field"] == field, (name, target, err)


@pytest.mark.parametrize("mode", ["6755", "4755", "2755", "1777", "04755"])
def test_send_file_refuses_setuid_setgid_sticky_without_the_allow_list(srv, tmp_path, mode):
    status, err = _file(srv, tmp_path, "tool", mode=mode)
    assert status == 403 and err["error"]["field"] == "mode", err
    assert not (tmp_path / "tool").exists()


def test_file_allow_list_entries_limit_mode_and_owner(tmp_path):
    d = tmp_path / "target"
    d.mkdir()
    config = tmp_path / "diag.yaml"
    config.write_text("commands:\n  allow:\n"
                      f"    - 'file:{d}/app.conf mode=0640 owner=root group=root'\n"
                      f"    - 'file:{d}/tool mode=4755 owner=root'\n"
                      f"    - 'file:{d}/plain'\n")
    p = ServeProcess(tmp_path / "data", "--enable-commands", "--config", str(config), env={"DIAG_TOKEN": TOKEN})
    try:
        p.wait_ready()
        refused = [("app.conf", {"mode": "0644", "owner": "root", "group": "root"}),  # more bits than allowed
                   ("app.conf", {"mode": "0640", "owner": "nobody", "group": "root"}),
                   ("app.conf", {"mode": "0640"}),  # the entry names the owner: it must be asked for
                   ("tool", {"mode": "6755", "owner": "root"}),  # setgid too: more than the entry
                   ("plain", {"mode": "4755"}),  # no mode in the entry: no special bits
                   ("other", {"mode": "0644"})]
        for name, extra in refused:
            status, err = _file(p, d, name, **extra)
            assert status == 403 and err["error"]["field"] in ("mode", "target_dir"), (name, extra, err)
            assert not (d / name).exists()
        for name, extra, want in [("app.conf", {"mode": "0640", "owner": "root", "group": "root"}, 0o640),
                                  ("app.conf", {"mode": "0600", "owner": "root", "group": "root",
                                                "overwrite": True}, 0o600),
                                  ("tool", {"mode": "4755", "owner": "root"}, 0o4755),
                                  ("plain", {"mode": "0644"}, 0o644)]:
            status, inv = _file(p, d, name, **extra)
            assert status == 201, (name, extra, inv)
            assert until_final(p, inv["invoke_id"])["status"] == "Finished"
            assert (d / name).stat().st_mode & 0o7777 == want
    finally:
        p.stop()
