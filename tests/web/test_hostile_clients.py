"""Issue 15: attacks from hostile clients, each against a real `diag serve` where the
process matters (a frozen process, a listening socket) and the Flask test client
elsewhere. Every test here failed before its fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import urllib.parse

import pytest

from tests.conftest import ROOT, collected_service, free_port, http
from diag.config import ConfigError, check_listen, load
from diag.web.app import create_app

TOKEN = "hostile-admin-token"
WEBHOOK = "https://hooks.example.com/services/T000/B000/s3cretPathToken?key=s3cretQueryKey"
HEADER_SECRET = "Bearer s3cretHeaderValue"
SECRETS = ("s3cretPathToken", "s3cretQueryKey", "s3cretHeaderValue")
CONTACT = {"name": "ops", "channels": [{"type": "webhook", "url": WEBHOOK,
                                        "headers": {"Authorization": HEADER_SECRET}}]}


def _csrf(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data")
    yield s
    s.close()


# -- 2: ReDoS ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_catastrophic_regex_does_not_freeze_the_service(serve):
    srv = serve()
    now = time.time()
    # A long label value makes (.+)+! backtrack for ages under a backtracking engine.
    mount = "/" + "a" * 40
    status, _, body = http("POST", srv.url + "/api/v1/ingest", {"instance_id": "redos-1", "samples": [
        {"metric": "fs_usage", "labels": {"device": "/dev/x", "fstype": "ext4", "mountpoint": mount},
         "value": 50.0, "ts": now - 30}]})
    assert status == 202, body
    base = f"{srv.url}/api/v1/query?metric=fs_usage&instance_id=redos-1&start={now - 600}&end={now}&step=60&"
    t0 = time.monotonic()
    try:
        status, _, body = http("GET", base + "mountpoint=~(.%2B)%2B!", timeout=5)
    except OSError as e:
        pytest.fail(f"the evil regex held the service: {e}")
    assert time.monotonic() - t0 < 5
    assert status == 200 and json.loads(body)["series"] == [], body
    status, _, body = http("GET", srv.url + "/healthz", timeout=2)
    assert status == 200, body
    # PromQL semantics: anchored at both ends.
    assert json.loads(http("GET", base + "mountpoint=~/a%2B")[2])["series"][0]["labels"]["mountpoint"] == mount
    assert json.loads(http("GET", base + "mountpoint=~a%2B")[2])["series"] == []
    assert json.loads(http("GET", base + "mountpoint=~/a")[2])["series"] == []


def test_a_regex_the_linear_engine_refuses_is_a_400(service):
    client = create_app(service).test_client()
    for bad in ("~(?=a)", "~(a", "~a{1000}{1000}", "~" + "a" * 5000):
        r = client.get("/api/v1/query?metric=fs_usage&mountpoint=" + urllib.parse.quote(bad))
        assert r.status_code == 400, (bad, r.get_data(as_text=True))
        assert r.get_json()["error"]["field"] == "mountpoint"


# -- 6: secrets and reads beyond loopback -------------------------------------------------------

def _no_secret(text: str) -> None:
    for s in SECRETS:
        assert s not in text


@pytest.mark.slow
def test_beyond_loopback_reads_need_the_token_and_secrets_are_never_returned(serve):
    srv = serve("--host", "0.0.0.0", env={"DIAG_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = http("POST", srv.url + "/api/v1/contacts", CONTACT, headers=auth)
    assert status == 201, body
    _no_secret(body.decode())
    contact_id = json.loads(body)["contact_id"]
    for path in ("/api/v1/contacts", f"/api/v1/contacts/{contact_id}", "/api/v1/alert-policies", "/metrics"):
        status, _, body = http("GET", srv.url + path)
        assert status == 401, (path, status, body[:200])
        _no_secret(body.decode(errors="replace"))
    status, _, body = http("GET", srv.url + "/", headers={"Accept": "text/html"})  # urllib follows the redirect
    assert status == 200 and b'name="token"' in body, "the overview is shown without a login"
    for path in ("/api/v1/contacts", f"/api/v1/contacts/{contact_id}"):
        status, _, body = http("GET", srv.url + path, headers=auth)
        assert status == 200
        _no_secret(body.decode())
    got = json.loads(body)
    channel = got["channels"][0]
    assert channel["url"].startswith("https://hooks.example.com/") and channel["headers"].keys() == {"Authorization"}
    assert status == 200 and http("GET", srv.url + "/healthz")[0] == 200


def test_secrets_are_write_only_and_a_returned_contact_can_be_saved_back(service):
    client = create_app(service).test_client()
    r = client.post("/api/v1/contacts", json=CONTACT)
    assert r.status_code == 201
    shown = r.get_json()
    _no_secret(r.get_data(as_text=True))
    cid = shown["contact_id"]
    # What a GET shows, sent back unchanged, keeps the stored secrets.
    r = client.put(f"/api/v1/contacts/{cid}", json={"name": "ops 2", "channels": shown["channels"]})
    assert r.status_code == 200, r.get_json()
    _no_secret(r.get_data(as_text=True))
    stored = service.alerting.repo.get("contact", cid)
    assert stored["name"] == "ops 2"
    assert stored["channels"][0]["url"] == WEBHOOK
    assert stored["channels"][0]["headers"] == {"Authorization": HEADER_SECRET}
    # A new value replaces it.
    new = {"name": "ops", "channels": [{"type": "webhook", "url": "https://other.example.com/h/new-s3cret"}]}
    assert client.put(f"/api/v1/contacts/{cid}", json=new).status_code == 200
    assert service.alerting.repo.get("contact", cid)["channels"][0]["url"] == "https://other.example.com/h/new-s3cret"
    client.put(f"/api/v1/contacts/{cid}", json=CONTACT)
    # Every other read that shows a channel: the policy test and the delivery history.
    g = client.post("/api/v1/contact-groups", json={"name": "g", "contacts": [cid]}).get_json()
    p = client.post("/api/v1/alert-policies", json={
        "name": "any event", "targets": {"instances": ["*"]}, "event_conditions": [{"type": "Kernel.OOMKill"}],
        "contact_groups": [g["contact_group_id"]]}).get_json()
    r = client.post(f"/api/v1/alert-policies/{p['policy_id']}/test", json={"event": {"type": "Kernel.OOMKill"}})
    assert r.status_code == 200 and r.get_json()["results"][0]["notifications"], r.get_json()
    _no_secret(r.get_data(as_text=True))
    from diag.alerting.repository import Repository

    with service.db.write() as c:
        Repository.add_history(c, time.time(), "delivery", alert_id="a-1", channel=f"webhook/json:{WEBHOOK}",
                               outcome="retry", detail="attempt 1: ConnectionError: HTTPSConnectionPool(host="
                               "'hooks.example.com', port=443): Max retries exceeded with url: "
                               "/services/T000/B000/s3cretPathToken?key=s3cretQueryKey (Caused by x)")
    r = client.get("/api/v1/alerts/history")
    assert r.status_code == 200 and r.get_json()["history"][0]["channel"].startswith("webhook/json:https://hooks.")
    _no_secret(r.get_data(as_text=True))
    page = client.get("/alerts")
    assert page.status_code == 200 and "hooks.example.com" in page.get_data(as_text=True)
    _no_secret(page.get_data(as_text=True))


# -- 7: protect_reads covers the pages -----------------------------------------------------------

def test_protect_reads_covers_every_dashboard_page(tmp_path):
    s = collected_service(tmp_path / "data", token=TOKEN, protect_reads=True)
    try:
        app = create_app(s)
        client = app.test_client()
        pages = []
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("dash.") or "GET" not in (rule.methods or ()):
                continue
            if rule.endpoint in ("dash.login", "dash.static", "dash.plotly_js"):
                continue
            pages.append(re.sub(r"<(?:[^:>]+:)?([^>]+)>", s.instance_id, rule.rule))
        assert f"/instances/{s.instance_id}/charts" in pages and "/" in pages
        leaked = []
        for path in pages:
            r = client.get(path, headers={"Accept": "text/html"})
            if r.status_code not in (302, 303, 401):
                leaked.append((path, r.status_code))
        assert leaked == []
        r = client.get(f"/instances/{s.instance_id}/charts")
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "Unauthorized"
        r = client.get("/", headers={"Accept": "text/html"})
        assert r.headers["Location"].startswith("/login")
        assert client.get(f"/instances/{s.instance_id}/charts",
                          headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        token = _csrf(client)
        assert client.post("/login", data={"csrf_token": token, "token": TOKEN}).status_code == 303
        assert client.get("/").status_code == 200
        assert client.get(f"/instances/{s.instance_id}/charts").status_code == 200
    finally:
        s.close()


# -- 14: the login's next ------------------------------------------------------------------------

@pytest.mark.parametrize("nxt", ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/ /evil.example",
                                 "/\\evil.example", "//evil.example", "https://evil.example/", "/\x00/evil.example",
                                 "/\u2028/evil.example"])
def test_login_never_redirects_off_site(tmp_path, nxt):
    s = collected_service(tmp_path / "data", token=TOKEN)
    try:
        client = create_app(s).test_client()
        r = client.get("/login?next=" + urllib.parse.quote(nxt))
        assert r.status_code == 200
        assert '<input type="hidden" name="next" value="/">' in r.get_data(as_text=True)
        r = client.post("/login", data={"csrf_token": _csrf(client), "token": TOKEN, "next": nxt})
        assert r.status_code == 303 and r.headers["Location"] == "/", r.headers.get("Location")
    finally:
        s.close()


def test_login_keeps_a_path_on_this_site(tmp_path):
    s = collected_service(tmp_path / "data", token=TOKEN)
    try:
        client = create_app(s).test_client()
        r = client.post("/login", data={"csrf_token": _csrf(client), "token": TOKEN, "next": "/alerts?x=1"})
        assert r.status_code == 303 and r.headers["Location"] == "/alerts?x=1"
    finally:
        s.close()


# -- 15: DNS rebinding ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_rebound_host_name_is_refused_without_a_token(serve):
    srv = serve()
    port = srv.port
    before = json.loads(http("GET", srv.url + "/api/v1/contacts")[2])["contacts"]
    for method, path, body in (("POST", "/api/v1/contacts", CONTACT), ("GET", "/api/v1/contacts", None),
                               ("GET", "/metrics", None), ("GET", "/", None)):
        status, headers, got = http(method, srv.url + path, body, headers={"Host": f"rebind.evil.example:{port}"})
        assert status in (403, 421), (method, path, status)
        assert json.loads(got)["error"]["code"]
    assert json.loads(http("GET", srv.url + "/api/v1/contacts")[2])["contacts"] == before
    for host in (f"localhost:{port}", "localhost", f"127.0.0.1:{port}", f"127.1.2.3:{port}", f"[::1]:{port}",
                 "LOCALHOST"):
        assert http("GET", srv.url + "/healthz", headers={"Host": host})[0] == 200, host


def test_host_names_that_only_look_loopback_are_refused(service):
    client = create_app(service).test_client()
    for host in ("127.0.0.1.evil.example", "localhost.evil.example", "evil.example", "[::1].evil.example",
                 "0.0.0.0", "[::ffff:7f00:1]", "2130706433", "localhost:abc", "127.0.0.1:80:80"):
        r = client.get("/api/v1/instances", headers={"Host": host})
        assert r.status_code in (403, 421), host
        assert r.get_json()["error"]["code"]


def test_with_a_token_any_host_name_is_served(tmp_path):
    s = collected_service(tmp_path / "data", token=TOKEN)
    try:
        client = create_app(s).test_client()
        assert client.get("/api/v1/instances", headers={"Host": "monitor.example.com"}).status_code == 200
    finally:
        s.close()


# -- 16: times out of range ---------------------------------------------------------------------

@pytest.mark.parametrize("params", ["end=inf", "end=1e400", "start=nan", "start=-inf", "start=-1e308&end=1e308",
                                    "end=-inf"])
def test_query_times_out_of_range_are_a_400(service, params):
    client = create_app(service).test_client()
    r = client.get("/api/v1/query?metric=cpu_usage&" + params)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["error"]["field"] in ("start", "end")


@pytest.mark.parametrize("path", ["/api/v1/alerts/history?since=inf", "/api/v1/events?since=1e400",
                                  "/api/v1/events?until=nan"])
def test_other_times_out_of_range_are_a_400(service, path):
    r = create_app(service).test_client().get(path)
    assert r.status_code == 400, r.get_data(as_text=True)


# -- 18: the loopback check resolves the name ------------------------------------------------------

_FAKE_DNS = textwrap.dedent("""
    import socket, sys
    real = socket.getaddrinfo
    def fake(host, *a, **k):
        # The attacker's DNS: a name that starts like a loopback address but is every interface.
        if host in ("127.anywhere", "localhost.anywhere"):
            host = "0.0.0.0"
        return real(host, *a, **k)
    socket.getaddrinfo = fake
    from diag.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.anywhere", "localhost.anywhere"])
def test_a_name_that_resolves_beyond_loopback_is_refused_without_a_token(tmp_path, host):
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("DIAG_")}
    proc = subprocess.Popen([sys.executable, "-c", _FAKE_DNS, "serve", "--host", host, "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"diag serve --host {host} started without a token: {out.decode()[-500:]}")
    assert proc.returncode != 0
    assert b"token" in out


def test_check_listen_resolves_every_address(monkeypatch):
    import socket

    real = socket.getaddrinfo

    def fake(host, *a, **k):
        if host == "both.example":  # one loopback address, one not
            return real("127.0.0.1", *a, **k) + real("0.0.0.0", *a, **k)
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    for host in ("127.0.0.1", "127.9.9.9", "localhost", "::1", "[::1]"):
        check_listen(load(env={}, host=host))
    for host in ("0.0.0.0", "both.example", "::", "", "no-such-host.invalid"):
        with pytest.raises(ConfigError):
            check_listen(load(env={}, host=host))
        check_listen(load(env={"DIAG_TOKEN": TOKEN}, host=host))
