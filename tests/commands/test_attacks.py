"""Issue 15's attacks on remote commands, done for real against one `diag serve` with commands
on: parameter quoting bypasses, a hostile `type`, send-file edge cases, and a child that
leaves the process group before the timeout."""

import base64
import os
import time
import uuid

import pytest

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
        rec = _run(srv, BYPASSES[name], {"v": value})
        assert not os.path.exists(marker), (name, value, rec)
        assert rec["status"] == "Finished", rec
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
