"""The Commands pages through the Flask test client, over a real service with its real
commands engine running scripts on this machine: off means 404, on means the login and
the CSRF token, the form saves what the JSON API then serves, errors sit beside their
field, output is escaped, and a command offered beside a failing check runs only after
the confirmation is posted."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import collected_service
from diag.service import Service
from diag.web.app import create_app

TOKEN = "cmd-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVIL = '<script>alert("x")</script>'
# Any filesystem in use is over a 0 % warning line, so storage.disk_usage warns on real data.
DISK_WARNS = {"storage.disk_usage": {"warning": 0.0, "critical": 100.0}}


def _service(tmp_path, **flags) -> Service:
    return collected_service(tmp_path / "data", collections=2, pause=0.2, **flags)


@pytest.fixture
def enabled(tmp_path):
    s = _service(tmp_path, token=TOKEN, enable_commands=True, checks=DISK_WARNS)
    yield s
    s.close()


def _csrf(client, path: str = "/") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _login(client) -> str:
    r = client.post("/login", data={"csrf_token": _csrf(client, "/login"), "token": TOKEN})
    assert r.status_code == 303
    return _csrf(client)  # a login starts a new session, with a new CSRF token


def _form(csrf: str, **fields) -> dict[str, object]:
    base = {"csrf_token": csrf, "name": "hello", "description": "", "content": "echo hello", "working_dir": "",
            "timeout": "60", "username": "", "tags": ""}
    return {**base, **fields}


def _saved(client, csrf: str, **fields) -> dict:
    r = client.post("/commands/save", data=_form(csrf, **fields))
    assert r.status_code == 303, r.get_data(as_text=True)
    api = client.get("/api/v1/commands", headers=AUTH).get_json()["commands"]
    return next(c for c in api if c["name"] == fields.get("name", "hello"))


def _run(client, service, csrf: str, command_id: str, **fields) -> str:
    data = {"csrf_token": csrf, "instance_ids": service.instance_id, "repeat_mode": "Once", **fields}
    r = client.post(f"/commands/{command_id}/run", data=data)
    assert r.status_code == 303, r.get_data(as_text=True)
    service.commands.drain()
    return r.headers["Location"]


def test_disabled_the_pages_are_404_and_not_in_the_nav(tmp_path):
    s = _service(tmp_path)  # no token, so every change is allowed: only "disabled" stands in the way
    try:
        assert s.commands is None
        client = create_app(s).test_client()
        csrf = _csrf(client)
        assert ">Commands</a>" not in client.get("/").get_data(as_text=True)
        for path in ("/commands", "/commands/c-1/run", "/commands/c-1/confirm?instance_id=x&check_id=y",
                     "/commands/invocations/t-1"):
            assert client.get(path, headers={"Accept": "text/html"}).status_code == 404, path
        for path in ("/commands/save", "/commands/c-1/save", "/commands/c-1/delete", "/commands/c-1/run",
                     "/commands/invocations/t-1/stop"):
            assert client.post(path, data=_form(csrf)).status_code == 404, path
        tables = {r["name"] for r in s.db.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "commands" not in tables  # nothing was built, nothing saved
    finally:
        s.close()


def test_enabled_every_page_needs_the_login_and_every_post_the_csrf_token(enabled):
    client = create_app(enabled).test_client()
    csrf = _csrf(client)
    assert ">Commands</a>" in client.get("/").get_data(as_text=True)
    r = client.get("/commands")
    assert r.status_code == 303 and r.headers["Location"] == "/login?next=/commands"
    r = client.post("/commands/save", data=_form(csrf))
    assert r.status_code == 303 and r.headers["Location"].startswith("/login")
    assert enabled.commands.repo.commands() == []
    csrf = _login(client)
    assert client.get("/commands").status_code == 200
    for data, headers in ((_form(""), {}), (_form("forged"), {}), (_form(csrf), {"Origin": "http://evil.example"})):
        assert client.post("/commands/save", data=data, headers=headers).status_code == 403
    assert enabled.commands.repo.commands() == []
    cmd = _saved(client, csrf)
    for path in (f"/commands/{cmd['command_id']}/run", f"/commands/{cmd['command_id']}/delete"):
        assert client.post(path, data={"instance_ids": enabled.instance_id}).status_code == 403
    assert enabled.commands.repo.invocations() == [] and enabled.commands.repo.command(cmd["command_id"])


def test_a_command_saved_through_the_form_is_in_the_json_api(enabled):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    cmd = _saved(client, csrf, name="clear journal", description="vacuum it", content="journalctl --vacuum-size={{size}}",
                 working_dir="/tmp", timeout="5m", tags="disk, cleanup", check_ids=["storage.disk_usage"])
    assert cmd["parameters"] == ["size"] and cmd["timeout"] == 300 and cmd["working_dir"] == "/tmp"
    assert cmd["tags"] == ["disk", "cleanup"] and cmd["check_ids"] == ["storage.disk_usage"]
    assert cmd["content"] == "journalctl --vacuum-size={{size}}" and cmd["description"] == "vacuum it"
    html = client.get("/commands").get_data(as_text=True)
    assert f'id="command-{cmd["command_id"]}"' in html
    r = client.post(f"/commands/{cmd['command_id']}/save",
                    data=_form(csrf, name="clear journal", content="echo a\r\necho b\r\n", timeout="90"))
    assert r.status_code == 303
    got = client.get(f"/api/v1/commands/{cmd['command_id']}", headers=AUTH).get_json()
    assert got["content"] == "echo a\necho b\n" and got["timeout"] == 90 and got["check_ids"] == []
    r = client.post(f"/commands/{cmd['command_id']}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert client.get(f"/api/v1/commands/{cmd['command_id']}", headers=AUTH).status_code == 404


@pytest.mark.parametrize("field, value", [
    ("working_dir", "relative/dir"),
    ("timeout", "2s"),
    ("username", "Not A User"),
    ("name", "  "),
    ("content", "cat <<EOF\n{{x}}\nEOF\n"),  # a placeholder no quoting can keep inert
    ("check_ids", ["storage.disk_usage", "no.such_check"]),
])
def test_a_bad_field_shows_its_error_beside_the_field(enabled, field, value):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    r = client.post("/commands/save", data=_form(csrf, **{field: value}))
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    # the message is inside the field's own box, after its input
    box = re.search(rf'<div class="field bad">\s*<(?:input|textarea|select) id="c-[a-z_]+" name="{field}".*?</div>',
                    html, re.S)
    assert box, html
    assert re.search(rf'<span class="err" role="alert" data-field="{field}">[^<]+</span>', box.group(0))
    assert html.count('class="err"') == 1
    assert enabled.commands.repo.commands() == []


def test_run_form_errors_sit_beside_their_field_and_nothing_runs(enabled):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    cmd = _saved(client, csrf, content="echo {{who}}")
    path = f"/commands/{cmd['command_id']}/run"
    for data, field in (({"parameters.who": "x"}, "instance_ids"),
                        ({"instance_ids": enabled.instance_id, "parameters.who": "x", "repeat_mode": "Period"},
                         "frequency"),
                        ({"instance_ids": "no-such-instance", "parameters.who": "x"}, "instance_ids"),
                        ({"instance_ids": enabled.instance_id, "parameters.who": "x", "timeout": "1s"}, "timeout")):
        r = client.post(path, data={"csrf_token": csrf, **data})
        assert r.status_code == 422, (data, r.status_code)
        assert re.search(rf'data-field="{field}">[^<]+<', r.get_data(as_text=True)), data
    assert enabled.commands.repo.invocations() == []


def test_output_and_names_are_escaped_and_the_run_is_shown(enabled):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    cmd = _saved(client, csrf, name=EVIL, content="printf '%s\\n' {{v}}; echo done >&2; exit 3")
    page = _run(client, enabled, csrf, cmd["command_id"], **{"parameters.v": EVIL})
    html = client.get(page).get_data(as_text=True)
    assert EVIL not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    inv = enabled.commands.invocation(page.rsplit("/", 1)[1])
    rec = inv["instances"][0]["records"][0]
    assert rec["output"].startswith(EVIL) and rec["exit_code"] == 3 and rec["error_code"] == "ExitCodeNonzero"
    assert re.search(r'class="exit-code">3<', html) and "ExitCodeNonzero" in html
    assert 'data-autoreload' not in html  # finished: nothing left to refresh for
    listing = client.get("/commands").get_data(as_text=True)
    assert EVIL not in listing and page in listing


def test_stop_ends_a_running_invocation(enabled):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    cmd = _saved(client, csrf, content="sleep 600", timeout="600")
    r = client.post(f"/commands/{cmd['command_id']}/run", data={"csrf_token": csrf,
                                                                "instance_ids": enabled.instance_id})
    page = r.headers["Location"]
    invoke_id = page.rsplit("/", 1)[1]
    running = client.get(page).get_data(as_text=True)
    assert 'id="stop"' in running and "data-autoreload" in running  # Running or Pending: both refresh
    r = client.post(f"{page}/stop", data={"csrf_token": csrf})
    assert r.status_code == 303
    enabled.commands.drain()
    inv = enabled.commands.invocation(invoke_id)
    assert inv["status"] == "Stopped", inv
    assert 'id="stop"' not in client.get(page).get_data(as_text=True)


def test_a_tagged_command_is_offered_beside_a_failing_check_and_runs_only_after_confirming(enabled, tmp_path):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    fix = _saved(client, csrf, name="clear the journal", content=f"touch {marker}; echo cleared",
                 check_ids=["storage.disk_usage", "state.stopped"])
    _saved(client, csrf, name="untagged", content="echo no")
    report = enabled.diagnose()
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status["storage.disk_usage"] == "warning", status  # the configured 0 % line
    assert status["state.stopped"] not in ("warning", "critical")
    html = client.get("/diagnosis").get_data(as_text=True)
    disk = re.search(r'id="check-storage\.disk_usage".*?(?=<div class="check )', html, re.S).group(0)
    link = re.search(r'href="(/commands/[^"]+/confirm\?[^"]+)"[^>]*>Run ‘clear the journal’', disk)
    assert link, disk
    assert "untagged" not in html  # offered only beside the checks it is tagged with
    stopped = re.search(r'id="check-state\.stopped".*?(?=<div class="check |</section>)', html, re.S).group(0)
    assert "/confirm?" not in stopped  # tagged, but that check is fine
    # a browser that is not logged in sees no offer at all
    assert "/confirm?" not in create_app(enabled).test_client().get("/diagnosis").get_data(as_text=True)

    url = link.group(1).replace("&amp;", "&")
    page = client.get(url).get_data(as_text=True)
    assert f"touch {marker}; echo cleared" in page and enabled.instance_id in page
    assert not marker.exists() and enabled.commands.repo.invocations() == []  # looking runs nothing
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert form["instance_ids"] == enabled.instance_id and form["check_id"] == "storage.disk_usage"
    action = re.search(r'<form method="post" action="([^"]+)"', page.split('id="confirm"')[1]).group(1)
    assert client.post(action, data={k: v for k, v in form.items() if k != "csrf_token"}).status_code == 403
    enabled.commands.drain()
    assert not marker.exists() and enabled.commands.repo.invocations() == []
    r = client.post(action, data=form)
    assert r.status_code == 303
    enabled.commands.drain()
    assert marker.exists()
    inv = enabled.commands.invocation(r.headers["Location"].rsplit("/", 1)[1])
    assert inv["command_id"] == fix["command_id"] and inv["status"] == "Finished"
    assert inv["audit"]["check_id"] == "storage.disk_usage" and inv["audit"]["via"] == "dashboard"
    # the confirmation is only for a check the command is tagged with
    bad = url.replace("check_id=storage.disk_usage", "check_id=storage.readonly")
    assert client.get(bad, headers={"Accept": "text/html"}).status_code == 404


def test_the_json_api_takes_and_checks_check_ids(enabled):
    client = create_app(enabled).test_client()
    r = client.post("/api/v1/commands", headers=AUTH,
                    json={"name": EVIL, "content": "echo x", "check_ids": ["storage.disk_usage", "nope"]})
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "check_ids[1]"
    r = client.post("/api/v1/commands", headers=AUTH, json={"name": EVIL, "content": "echo x",
                                                            "check_ids": ["storage.disk_usage"]})
    assert r.status_code == 201 and r.get_json()["check_ids"] == ["storage.disk_usage"]
    cid = r.get_json()["command_id"]
    r = client.put(f"/api/v1/commands/{cid}", headers=AUTH, json={"content": "echo y"})
    assert r.get_json()["check_ids"] == ["storage.disk_usage"]  # a field left out keeps its value
    assert client.post("/api/v1/commands", headers=AUTH, json={"name": "n", "content": "echo x"}
                       ).get_json()["check_ids"] == []
    enabled.diagnose()
    _login(client)
    html = client.get("/diagnosis").get_data(as_text=True)
    assert "/confirm?" in html and EVIL not in html  # offered, and its name escaped


def test_a_python_command_keeps_its_type_and_clone_copies_it(enabled):
    client = create_app(enabled).test_client()
    csrf = _login(client)
    cmd = _saved(client, csrf, name="py", type="RunPythonScript", content="print({{n}})")
    assert (cmd["type"], cmd["parameters"]) == ("RunPythonScript", ["n"])
    page = client.get(f"/commands?edit={cmd['command_id']}").get_data(as_text=True)
    assert '<option value="RunPythonScript" selected>' in page
    r = client.post(f"/commands/{cmd['command_id']}/clone", data={"csrf_token": csrf})
    assert r.status_code == 303 and "edit=" in r.headers["Location"]
    api = client.get("/api/v1/commands", headers=AUTH).get_json()["commands"]
    copy = next(c for c in api if c["name"] == "py-copy")
    assert (copy["type"], copy["content"]) == ("RunPythonScript", "print({{n}})")
    assert copy["command_id"] != cmd["command_id"]
    assert client.post(f"/commands/{cmd['command_id']}/clone", data={}).status_code in (400, 403)  # no CSRF token
