"""The dashboard through the Flask test client, over a real service that collected this
machine twice: escaping, CSRF refusals, the login, plotly.js serving, the policy form."""

from __future__ import annotations

import gzip
import re
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import collected_service, own_kmsg
from dashboards import figures
from diag.config import load
from diag.service import Service
from diag.web.app import create_app

TOKEN = "dash-s3cret"
EVIL = '<script>alert("x")</script>'
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _service(tmp_path, **flags):
    # A kernel log of its own: counted events must be the test's, not real faults other tests left.
    return collected_service(tmp_path / "data", collections=2, pause=0.2,  # CPU rates need ticks between
                             paths={"kmsg": str(own_kmsg(tmp_path))}, **flags)


@pytest.fixture
def service(tmp_path):
    s = _service(tmp_path)
    yield s
    s.close()


@pytest.fixture
def locked(tmp_path):
    s = _service(tmp_path, token=TOKEN)
    yield s
    s.close()


def _csrf(client, path: str = "/") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _counts(service) -> dict[str, int]:
    tables = [r["name"] for r in service.db.read("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: service.db.read(f'SELECT COUNT(*) AS n FROM "{t}"')[0]["n"] for t in tables if t != "kv"}


def _dashboard_posts(app) -> list[str]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("dash.") and (rule.methods or set()) & MUTATING and rule.endpoint != "dash.login":
            out.append(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"x-\1", rule.rule))
    return out


def test_secret_is_made_once_with_mode_0600(tmp_path, service):
    create_app(service)
    path = service.config.data_dir / "dashboard-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert len(first) >= 32
    app2 = create_app(service)
    assert app2.secret_key == first == path.read_bytes()


def test_session_cookie_is_httponly_strict_and_secure(service):
    client = create_app(service).test_client()
    r = client.get("/")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie


def test_every_page_answers_and_is_escaped(service):
    service.instances.register("evil-1", hostname=EVIL, labels={"role": EVIL})
    service.events.detected(service.instance_id, "Disk.IOError", 1e9 * 1.7, EVIL, fold_key="x")
    service.diagnose()
    client = create_app(service).test_client()
    iid = service.instance_id
    for path in ("/", f"/instances/{iid}", "/instances/evil-1", "/diagnosis", "/diagnosis?instance_id=evil-1",
                 "/events?since=60d", "/alerts", "/login"):
        r = client.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 200, path
        html = r.get_data(as_text=True)
        assert EVIL not in html, path
        assert "Content-Security-Policy" in r.headers and "default-src 'self'" in r.headers["Content-Security-Policy"]
        # nothing from another origin: every src/href is on this site (or a fragment)
        for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert ref.startswith(("/", "#", "?", "data:")) and not ref.startswith("//"), (path, ref)
    overview = client.get("/").get_data(as_text=True)
    assert "&lt;script&gt;" in overview


def test_health_state_is_named_beside_its_colour(service):
    service.diagnose()
    html = create_app(service).test_client().get("/").get_data(as_text=True)
    state = service.health_of(service.instance_id)["health_status"]
    assert re.search(rf'class="state state-{state}"[^>]*>.*?{state}</span>', html, re.S)


def test_every_dashboard_post_refuses_without_the_csrf_token(service):
    app = create_app(service)
    client = app.test_client()
    token = _csrf(client)
    service.events.schedule(service.instance_id, "SystemMaintenance.Reboot", 4e9, 3600)
    posts = _dashboard_posts(app)
    assert "/diagnosis/run" in posts and "/alerts/policies" in posts and "/events/schedule" in posts
    before = _counts(service)
    for path in posts:
        for data, headers in (({}, {}), ({"csrf_token": "forged"}, {}),
                              ({"csrf_token": token}, {"Origin": "http://evil.example"})):
            r = client.post(path, data=data, headers=headers)
            assert r.status_code == 403, (path, data, headers, r.status_code)
    assert _counts(service) == before


def test_csrf_header_works_for_fetch_and_form_field_for_forms(service):
    client = create_app(service).test_client()
    token = _csrf(client)
    n = len(service.reports.list(service.instance_id))
    r = client.post("/diagnosis/run", data={"csrf_token": token, "window": "1h"})
    assert r.status_code == 303 and "report=" in r.headers["Location"]
    r = client.post("/diagnosis/run", data={"window": "1h"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 303
    assert len(service.reports.list(service.instance_id)) == n + 2


def test_with_a_token_changes_need_the_login(locked):
    app = create_app(locked)
    client = app.test_client()
    token = _csrf(client)
    before = _counts(locked)
    r = client.post("/events/schedule", data={"csrf_token": token, "instance_id": locked.instance_id,
                                              "type": "SystemMaintenance.Reboot", "not_before": "2099-01-01T10:00",
                                              "duration": "1h"})
    assert r.status_code == 303 and r.headers["Location"].startswith("/login")
    assert _counts(locked) == before
    r = client.post("/login", data={"csrf_token": token, "token": "wrong"})
    assert r.status_code == 401 and "not the admin token" in r.get_data(as_text=True)
    r = client.post("/login", data={"csrf_token": token, "token": TOKEN, "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert TOKEN not in r.headers["Set-Cookie"]
    token = _csrf(client)  # a new session at login: a new CSRF token
    r = client.post("/events/schedule", data={"csrf_token": token, "instance_id": locked.instance_id,
                                              "type": "SystemMaintenance.Reboot", "not_before": "2099-01-01T10:00",
                                              "duration": "1h"})
    assert r.status_code == 303, r.get_data(as_text=True)
    assert locked.events.list(locked.instance_id, status="Scheduled")


def test_schedule_errors_are_shown_beside_their_field(service):
    client = create_app(service).test_client()
    r = client.post("/events/schedule", data={"csrf_token": _csrf(client), "instance_id": service.instance_id,
                                              "type": "SystemMaintenance.Reboot", "not_before": "2099-01-01T10:00",
                                              "duration": "soon"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert re.search(r'id="f-duration" name="duration" value="soon".*?<span class="err" id="err-duration"', html, re.S)
    assert not service.events.list(status="Scheduled")


def test_policy_form_errors_name_the_row_the_user_typed_in(service):
    client = create_app(service).test_client()
    n = len(service.alerting.repo.list("policy"))
    form = {"csrf_token": _csrf(client), "name": "two rows", "enabled": "on", "conditions_rows": "2",
            "conditions[1].metric": "cpu_usage", "conditions[1].threshold": "lots", "conditions[1].period": "5m"}
    r = client.post("/alerts/policies", data=form)
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert re.search(r'data-field="conditions\[1\]\.threshold">[^<]+<', html)
    assert len(service.alerting.repo.list("policy")) == n
    form["conditions[1].threshold"] = "85"
    r = client.post("/alerts/policies", data=form)
    assert r.status_code == 303
    saved = [p for p in service.alerting.repo.list("policy") if p["name"] == "two rows"]
    assert saved and saved[0]["conditions"][0]["threshold"] == 85.0 and saved[0]["source"] == "dashboard"


def test_policy_form_takes_the_metrics_name_and_keeps_the_display_name(service):
    """Issue 17: the form offers and accepts /metrics names; the policy is kept under the
    catalogue's name with the threshold in its unit (0.85 of a ratio is 85 %)."""
    client = create_app(service).test_client()
    assert '<option value="diag_cpu_usage_ratio" data-unit="0-1"' in client.get("/alerts").get_data(as_text=True)
    form = {"csrf_token": _csrf(client), "name": "by exposed name", "enabled": "on", "conditions_rows": "1",
            "conditions[0].metric": "diag_cpu_usage_ratio", "conditions[0].threshold": "0.85",
            "conditions[0].comparison": ">", "conditions[0].period": "5m"}
    assert client.post("/alerts/policies", data=form).status_code == 303
    (saved,) = [p for p in service.alerting.repo.list("policy") if p["name"] == "by exposed name"]
    assert (saved["conditions"][0]["metric"], saved["conditions"][0]["threshold"]) == ("cpu_usage", 85.0)


def test_plotly_is_the_vendored_basic_bundle_under_half_the_full_one_and_cached(service):
    """The partial bundle (scatter, bar) of the plotly.js version the plotly package bundles:
    the same charts for under half the bytes (issue 19 item 6), its licence beside it."""
    import plotly

    from dashboards import views

    full = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    client = create_app(service).test_client()
    html = client.get(f"/instances/{service.instance_id}").get_data(as_text=True)
    url = re.search(r'<script src="([^"]*plotly[^"]*)"', html).group(1)
    r = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
    assert "immutable" in r.headers["Cache-Control"]
    served = gzip.decompress(r.data)
    assert served == views.PLOTLY_JS.read_bytes()
    assert len(served) * 2 < len(full) and len(r.data) * 2 < len(gzip.compress(full, 6))
    version = re.search(rb"plotly\.js v(\S+)", full[:200]).group(1).decode()
    assert re.search(rb"plotly\.js \(basic - minified\) v(\S+)", served[:200]).group(1).decode() == version
    assert views.PLOTLY_VERSION.endswith(version)
    assert "MIT License" in views.PLOTLY_JS.with_name(f"plotly-{views.PLOTLY_VERSION}.LICENSE").read_text()
    again = client.get(url, headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and not again.data


def test_api_errors_stay_json(service):
    client = create_app(service).test_client()
    r = client.get("/api/v1/nothing-here", headers={"Accept": "text/html"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "NotFound"
    r = client.get("/instances/nope", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "text/html" in r.content_type


def test_the_instance_page_switches_monitoring_off_and_on(service):
    client = create_app(service).test_client()
    page = f"/instances/{service.instance_id}"
    token = _csrf(client, page)
    assert "Switch monitoring off" in client.get(page).get_data(as_text=True)
    r = client.post(f"{page}/monitoring", data={"csrf_token": token, "monitoring": "off"})
    assert r.status_code == 303 and r.headers["Location"].endswith(page)
    html = client.get(page).get_data(as_text=True)
    assert "Switch monitoring on" in html and "NotApplicable" in html
    assert service.health_of(service.instance_id)["health_status"] == "NotApplicable"
    client.post(f"{page}/monitoring", data={"csrf_token": token, "monitoring": "on"})
    assert service.instances.get(service.instance_id)["monitoring"] is True


def test_a_machine_that_is_gone_is_forgotten_from_its_page(service):
    client = create_app(service).test_client()
    service.instances.register("old-vm", hostname="old-vm")
    page = "/instances/old-vm"
    token = _csrf(client, page)
    assert 'id="forget-instance"' in client.get(page).get_data(as_text=True)
    assert 'id="forget-instance"' not in client.get(f"/instances/{service.instance_id}").get_data(as_text=True)
    assert client.post(f"{page}/forget", data={}).status_code == 403  # no CSRF token: nothing happens
    assert service.instances.get("old-vm") is not None
    r = client.post(f"{page}/forget", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    assert service.instances.get("old-vm") is None and "old-vm" not in client.get("/").get_data(as_text=True)
    assert client.get(page).status_code == 404
    assert client.post(f"/instances/{service.instance_id}/forget", data={"csrf_token": token}).status_code == 409


def _figures(html: str) -> dict:
    import json

    return json.loads(re.search(r'<script type="application/json" id="figures">(.*?)</script>', html, re.S).group(1))


def _points(fig: dict) -> int:
    return sum(y is not None for t in fig["data"] if t["name"] != "events" for y in t["y"])


def test_a_custom_range_page_and_a_bad_one_falls_back_with_its_notice(service):
    from datetime import datetime, timezone

    client = create_app(service).test_client()
    page = f"/instances/{service.instance_id}"
    now = time.time()

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M")

    start, end = iso(now - 1800), iso(now + 120)
    r = client.get(f"{page}?range=custom&start={start}&end={end}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.search(r'<span class="seg custom on">', html) and 'class="notice bad"' not in html
    # typed with a T (RFC 3339's form), shown back in the page's 24-hour format
    shown = start.replace("T", " "), end.replace("T", " ")
    assert f'name="start" value="{shown[0]}"' in html and f'name="end" value="{shown[1]}"' in html
    assert 'id="autorefresh"' not in html  # a fixed range does not move with the clock
    figs = _figures(html)
    t0 = datetime.strptime(start, "%Y-%m-%dT%H:%M").replace(tzinfo=timezone.utc).timestamp()
    assert figs["cpu"]["layout"]["xaxis"]["range"][0] == int(t0 * 1000)
    assert _points(figs["cpu"]) > 0 and _points(figs["memory"]) > 0
    assert f"range=custom&amp;start={start}" in html  # auto-refresh and reloads ask for the same range

    r = client.get(f"{page}?range=custom&start=yesterday-ish&end={end}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    notice = re.search(r'<p class="notice bad">(.*?)</p>', html, re.S)
    assert notice and notice.group(1).startswith("custom range: ") and "showing the last 24 h" in notice.group(1)
    assert re.search(r'class="seg on" href="[^"]*range=24h"', html)
    assert _points(_figures(html)["cpu"]) > 0
    r = client.get(f"{page}?range=custom&start={end}&end={start}")
    assert "the start must be before the end; showing the last 24 h" in r.get_data(as_text=True)


def test_one_event_is_one_event_and_no_event_leaves_no_open_div(service):
    service.events.detected(service.instance_id, "Disk.IOError", time.time(), "I/O error on sda", fold_key="sda")
    client = create_app(service).test_client()
    html = client.get("/events?type=Disk.IOError&since=24h").get_data(as_text=True)
    assert re.search(r'id="event-count">1 event</p>', html)
    service.events.detected(service.instance_id, "Disk.IOError", time.time(), "I/O error on sdb", fold_key="sdb")
    html = client.get("/events?type=Disk.IOError&since=24h").get_data(as_text=True)
    assert re.search(r'id="event-count">2 events</p>', html)
    html = client.get("/events?type=SystemMaintenance.Reboot&since=1h").get_data(as_text=True)
    assert "No event." in html and re.search(r'id="event-count">0 events</p>', html)
    assert html.count("<div") == html.count("</div>")


def _copy_report(service, report: dict, **change) -> dict:
    import copy
    import uuid

    new = copy.deepcopy(report)
    new["report_id"] = "r-" + uuid.uuid4().hex[:12]
    new["created_at"] = report["created_at"] + 60
    for check in new["checks"]:
        check.update(change.get(check["id"], {}))
    service.reports.save(new)
    return new


def test_the_comparison_names_changed_messages_of_passing_checks(service):
    first = service.diagnose()
    ok = next(c for c in first["checks"] if c["status"] == "ok")
    client = create_app(service).test_client()
    same = _copy_report(service, first)
    html = client.get(f"/diagnosis?a={first['report_id']}&b={same['report_id']}").get_data(as_text=True)
    section = re.search(r'<section class="card diff" id="comparison">.*?</section>', html, re.S).group(0)
    assert "Nothing changed: every check has the same status and message." in section

    moved = _copy_report(service, first, **{ok["id"]: {"message": ok["message"] + " (and now more)"}})
    html = client.get(f"/diagnosis?a={first['report_id']}&b={moved['report_id']}").get_data(as_text=True)
    section = re.search(r'<section class="card diff" id="comparison">.*?</section>', html, re.S).group(0)
    assert "Nothing changed" not in section
    assert "Every check has the same status; only passing checks' messages changed" in section
    assert "1 passing with a changed message" in section
    changed = re.search(r'<details id="changed">.*?</details>', section, re.S).group(0)
    assert "1 passing check with a changed message" in changed
    assert f"<code>{ok['id']}</code>" in changed and "(and now more)" in changed


def test_a_passing_check_shows_no_severity_and_a_failing_one_says_severity(service):
    report = service.diagnose()
    ok = next(c for c in report["checks"] if c["status"] == "ok")
    bad = _copy_report(service, report, **{ok["id"]: {"status": "warning"}})
    html = create_app(service).test_client().get(f"/diagnosis?report={report['report_id']}").get_data(as_text=True)
    block = re.search(rf'<div class="check s-ok-row" id="check-{re.escape(ok["id"])}">.*?</div>\s*<div>', html,
                      re.S).group(0)
    assert "severity:" not in block
    assert f'<div class="muted small">{ok["severity"].replace("_", "-")}</div>' not in block
    html = create_app(service).test_client().get(f"/diagnosis?report={bad['report_id']}").get_data(as_text=True)
    block = re.search(rf'<div class="check s-warning-row" id="check-{re.escape(ok["id"])}">.*?</div>\s*<div>', html,
                      re.S).group(0)
    assert f'<div class="muted small">severity: {ok["severity"].replace("_", "-")}</div>' in block


def test_pages_answer_with_a_notice_when_the_metrics_engine_is_down(tmp_path):
    from tests.conftest import free_port

    s = Service(load(env={}, data_dir=str(tmp_path / "d"), store_url=f"http://127.0.0.1:{free_port()}"))
    try:
        client = create_app(s).test_client()
        html = {"Accept": "text/html"}
        page = client.get(f"/instances/{s.instance_id}", headers=html)
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert 'id="store-error"' in text and "unreachable" in text
        charts = client.get(f"/instances/{s.instance_id}/charts")
        assert charts.status_code == 200 and "unreachable" in charts.get_json()["store_error"]
        for path in ("/", "/alerts", "/events", f"/diagnosis?instance_id={s.instance_id}"):
            assert client.get(path, headers=html).status_code == 200, path
    finally:
        s.close()


def test_the_charts_json_is_what_a_range_switch_draws(service):
    client = create_app(service).test_client()
    r = client.get(f"/instances/{service.instance_id}/charts?range=6h", headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.get_json()
    assert set(body["figures"]) == {c.key for c in figures.CHARTS}
    rng = body["range"]
    assert (rng["key"], rng["live"], rng["error"]) == ("6h", True, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", rng["start_input"]) and " → " in rng["info_html"]
    events = body["events_html"]  # the table only: the page keeps its heading
    assert "Events" not in events and ("<table" in events or "No event" in events)
    bad = client.get(f"/instances/{service.instance_id}/charts?range=1y").get_json()["range"]
    assert bad["key"] == "24h" and bad["error"] == "unknown range '1y'"
    assert client.get("/instances/nope/charts", headers={"Accept": "application/json"}).status_code == 404
