"""The Alerts page and the alerts on the Overview, through the Flask test client, over a
real service that collected this machine: alerts that really fired (a metric condition
and an event condition), their notification delivered to a local webhook receiver, and
every policy action of the page (edit, enable/disable, delete, test)."""

from __future__ import annotations

import html as html_lib
import re
import time
from html.parser import HTMLParser
from typing import Any

import pytest

from werkzeug.datastructures import MultiDict

from dashboards import alert_text
from tests.conftest import collected_service
from diag.service import Service
from diag.web.app import create_app
from tests.alerting.alerting_helpers import Receiver, subscribe


def _service(tmp_path) -> Service:
    return collected_service(tmp_path / "data", collections=2, pause=1.0,
                             alerting={"defaults": False, "retry_base": 1, "retry_cap": 8})


@pytest.fixture
def service(tmp_path):
    s = _service(tmp_path)
    yield s
    s.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _csrf(client, path: str = "/alerts") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _text(page: str) -> str:
    """What a reader sees: tags dropped, entities decoded, blanks squeezed."""
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", page)))
    return re.sub(r" ([:,])", r"\1", text)


def _section(page: str, section_id: str) -> str:
    m = re.search(rf'<section class="card" id="{section_id}">(.*?)</section>', page, re.S)
    assert m, section_id
    return m.group(1)


def _next_minute_bucket_end() -> float:
    """A time just after the minute the collections fell in: that minute is then the
    newest complete 1 min period the evaluator reads."""
    return (time.time() // 60 + 1) * 60 + 1


CPU_POLICY = {"name": "CPU is busy at all", "description": "fires on any CPU reading",
              "conditions": [{"metric": "cpu_usage", "statistic": "avg", "period": "1m", "comparison": ">=",
                              "threshold": 0, "severity": "critical"}]}


def test_a_firing_alert_reads_as_its_policy_says_on_overview_and_alerts(service, receiver):
    group = subscribe(service, [{"type": "webhook", "url": receiver.url}])
    pid = service.alerting.save_policy({**CPU_POLICY, "contact_groups": [group]})["policy_id"]
    ev_pid = service.alerting.save_policy({
        "name": "Disk errors", "event_conditions": [{"type": "Disk.IOError", "severity": "critical"}]})["policy_id"]
    service.events.detected(service.instance_id, "Disk.IOError", time.time(), "I/O error on sda", fold_key="sda")
    now = _next_minute_bucket_end()
    service.alerting.evaluate(now=now)
    assert service.alerting.deliver(now=now) == {"delivered": 1}
    assert len(receiver.bodies) == 1
    firing = {a["policy_id"]: a for a in service.alerting.repo.alerts(["firing"])}
    assert set(firing) == {pid, ev_pid}
    cpu = firing[pid]
    assert cpu["condition"] == "conditions[0]" and isinstance(cpu["value"], float)
    value = f"{cpu['value']:.4g} %"

    client = create_app(service).test_client()
    overview = _text(_section(client.get("/").get_data(as_text=True), "firing"))
    assert "No alert is firing" not in overview
    assert f"CPU is busy at all cpu_usage avg over 1m >= 0 % {service.instance_id} {value}" in overview
    assert f"Disk errors event Disk.IOError {service.instance_id} –" in overview
    assert "conditions[0]" not in overview and "event_conditions[0]" not in overview

    page = client.get("/alerts").get_data(as_text=True)
    alerts = _text(_section(page, "firing"))
    assert f"critical CPU is busy at all {service.instance_id} cpu_usage avg over 1m >= 0 % {value}" in alerts
    assert "critical Disk errors" in alerts and "event Disk.IOError" in alerts
    assert "conditions[0]" not in alerts
    history = _section(page, "history")
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)
    delivered = [_text(r) for r in rows if "delivered" in r]
    assert len(delivered) == 1, [_text(r) for r in rows]
    assert "CPU is busy at all" in delivered[0] and "webhook" in delivered[0]
    assert any("ok → firing" in _text(r) and "CPU is busy at all" in _text(r) for r in rows)

    inst = _text(client.get(f"/instances/{service.instance_id}").get_data(as_text=True))
    assert f"CPU is busy at all: cpu_usage avg over 1m >= 0 %, now {value}" in inst


def test_condition_text_from_the_policy():
    policy = {"name": "p", "conditions": [
        {"metric": "cpu_usage", "labels": {}, "statistic": "avg", "period": 300.0, "comparison": ">=",
         "threshold": 90.0, "consecutive": 1, "severity": "warning"},
        {"metric": "fs_usage", "labels": {"mountpoint": "/"}, "statistic": "max", "period": 90.0, "comparison": ">",
         "threshold": 95.123456, "consecutive": 3, "severity": "critical"}],
        "event_conditions": [{"type": None, "level": "CRITICAL", "severity": None},
                             {"type": "Kernel.*", "level": None, "severity": "info"}]}
    assert alert_text.condition_text(policy, "conditions[0]") == "cpu_usage avg over 5m >= 90 %"
    assert alert_text.condition_text(policy, "conditions[1]") == \
        "fs_usage mountpoint=/ max over 90s > 95.12 % for 3 periods in a row"
    assert alert_text.condition_text(policy, "event_conditions[0]") == "event of any type at CRITICAL"
    assert alert_text.condition_text(policy, "event_conditions[1]") == "event Kernel.*"
    assert alert_text.condition_text(policy, "all").startswith("cpu_usage avg over 5m >= 90 % and fs_usage")
    # a policy edited since (or gone): the path, not a wrong condition
    assert alert_text.condition_text(policy, "conditions[7]") == "conditions[7]"
    assert alert_text.condition_text(None, "conditions[0]") == "conditions[0]"
    assert alert_text.event_severity(policy["event_conditions"][0]) == "critical"
    assert alert_text.event_severity(policy["event_conditions"][1]) == "info"
    assert alert_text.value_text(12345.678, "net_in") == "1.235e+04 bit/s"
    assert alert_text.value_text(None, "cpu_usage") == "–"


class _Form(HTMLParser):
    """The fields a browser would send for the form posting to `action`: text and hidden
    inputs, checked boxes, each select's chosen options (the first when none is), no
    named buttons (those are the "add a row" ones, not the save)."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside = action, False
        self.fields: list[tuple[str, str]] = []
        self._select: tuple[str, bool] | None = None
        self._options: list[tuple[str, bool]] = []
        self._option: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action", "").split("#")[0] == self.action
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((a["name"], a.get("value", "on")))
            else:
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._options = (a["name"], "multiple" in a), []
        elif tag == "option" and self._select is not None:
            self._option = [a.get("value"), "selected" in a, ""]

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None:
            value, chosen, label = self._option
            self._options.append((label if value is None else value, chosen))
            self._option = None
        elif tag == "select" and self._select is not None:
            name, multiple = self._select
            chosen = [v for v, c in self._options if c]
            if not chosen and not multiple and self._options:
                chosen = [self._options[0][0]]
            self.fields += [(name, v) for v in chosen]
            self._select = None
        elif tag == "form":
            self.inside = False


def _form(page: str, action: str) -> MultiDict:
    p = _Form(action)
    p.feed(page)
    assert p.fields, f"no form posting to {action}"
    return MultiDict(p.fields)


def _api_policy(client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/v1/alert-policies", json=body)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def test_an_event_conditions_severity_survives_a_save_through_the_edit_form(service):
    client = create_app(service).test_client()
    p = _api_policy(client, {"name": "kernel trouble", "event_conditions": [
        {"type": "Kernel.*", "level": "WARN", "severity": "critical"}], **{
        "conditions": [{"metric": "mem_usage", "comparison": ">", "threshold": 97.5, "period": "2m"}]}})
    pid = p["policy_id"]
    page = client.get(f"/alerts?edit={pid}").get_data(as_text=True)
    assert re.search(r'name="event_conditions\[0\]\.severity".*?<option selected>critical</option>', page, re.S)
    listed = _text(re.search(rf'<tr id="policy-{pid}".*?</tr>', page, re.S).group(0))
    assert "critical event Kernel.* at WARN" in listed
    fields = _form(page, f"/alerts/policies/{pid}")
    assert fields.getlist("event_conditions[0].severity") == ["critical"]
    r = client.post(f"/alerts/policies/{pid}", data=fields)
    assert r.status_code == 303, _text(r.get_data(as_text=True))[:2000]
    after = client.get(f"/api/v1/alert-policies/{pid}").get_json()
    assert after["event_conditions"] == [{"type": "Kernel.*", "level": "WARN", "severity": "critical"}]
    assert after["conditions"][0]["threshold"] == 97.5 and after["conditions"][0]["period"] == 120
    assert after["name"] == "kernel trouble" and after["source"] == p["source"]
    # and a severity left to the level stays left to it
    fields["event_conditions[0].severity"] = ""
    assert client.post(f"/alerts/policies/{pid}", data=fields).status_code == 303
    assert client.get(f"/api/v1/alert-policies/{pid}").get_json()["event_conditions"][0]["severity"] is None


def test_edit_shows_the_policy_and_saving_changes_it(service):
    client = create_app(service).test_client()
    pid = _api_policy(client, CPU_POLICY)["policy_id"]
    page = client.get(f"/alerts?edit={pid}").get_data(as_text=True)
    form = re.search(r'<section class="card" id="policy-form">.*?</section>', page, re.S).group(0)
    assert "Edit “CPU is busy at all”" in form and "Save policy" in form
    assert 'id="p-name" name="name" value="CPU is busy at all"' in form
    # the metric is picked from the catalogue's list: its option is the chosen one
    assert re.search(r'<select name="conditions\[0\]\.metric"[^>]*>.*?<option value="cpu_usage"[^>]* selected>',
                     form, re.S)
    assert 'name="conditions[0].threshold" value="0.0"' in form
    assert 'name="conditions[0].period" value="1m"' in form
    assert re.search(r'name="conditions\[0\]\.severity".*?<option selected>critical</option>', form, re.S)
    assert f'action="/alerts/policies/{pid}#policy-form"' in form
    assert client.get("/alerts?edit=p-nope", headers={"Accept": "text/html"}).status_code == 404

    fields = _form(page, f"/alerts/policies/{pid}")
    fields["name"], fields["conditions[0].threshold"], fields["silence"] = "CPU very busy", "85", "1h"
    r = client.post(f"/alerts/policies/{pid}", data=fields)
    assert r.status_code == 303 and f"#policy-{pid}" in r.headers["Location"]
    saved = service.alerting.repo.get("policy", pid)
    assert saved["name"] == "CPU very busy" and saved["conditions"][0]["threshold"] == 85
    assert saved["silence"] == 3600 and len(service.alerting.repo.list("policy")) == 1
    done = client.get(r.headers["Location"]).get_data(as_text=True)
    assert re.search(r'class="notice good"[^>]*>saved policy &#39;CPU very busy&#39;', done)
    assert "cpu_usage avg over 1m &gt;= 85 %" in done


def test_enable_disable_and_delete(service):
    client = create_app(service).test_client()
    pid = _api_policy(client, CPU_POLICY)["policy_id"]
    token = _csrf(client)
    r = client.post(f"/alerts/policies/{pid}/enabled", data={"csrf_token": token, "enabled": "off"})
    assert r.status_code == 303 and service.alerting.repo.get("policy", pid)["enabled"] is False
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "disabled &#39;CPU is busy at all&#39;" in page
    assert re.search(rf'<tr id="policy-{pid}".*?value="on" title="enable this policy">– disabled', page, re.S)
    r = client.post(f"/alerts/policies/{pid}/enabled", data={"csrf_token": token, "enabled": "on"})
    assert r.status_code == 303 and service.alerting.repo.get("policy", pid)["enabled"] is True
    assert re.search(rf'<tr id="policy-{pid}".*?value="off" title="disable this policy">✓ enabled',
                     client.get("/alerts").get_data(as_text=True), re.S)
    assert client.post("/alerts/policies/p-nope/enabled", data={"csrf_token": token, "enabled": "on"},
                       headers={"Accept": "text/html"}).status_code == 404

    r = client.post(f"/alerts/policies/{pid}/delete", data={"csrf_token": token})
    assert r.status_code == 303 and service.alerting.repo.get("policy", pid) is None
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "deleted &#39;CPU is busy at all&#39;" in page and f'id="policy-{pid}"' not in page
    assert client.post(f"/alerts/policies/{pid}/delete", data={"csrf_token": token},
                       headers={"Accept": "text/html"}).status_code == 404


def test_a_policy_test_is_a_table_and_an_unknown_policy_is_404(service, receiver):
    group = subscribe(service, [{"type": "webhook", "url": receiver.url}])
    client = create_app(service).test_client()
    pid = _api_policy(client, {**CPU_POLICY, "contact_groups": [group]})["policy_id"]
    token = _csrf(client)
    r = client.post(f"/alerts/policies/{pid}/test", data={"csrf_token": token})
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    section = _section(page, "test-result")
    assert "<pre>" not in section and "&#34;results&#34;" not in section  # no JSON dump
    head = [_text(h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", section)]
    assert head[:4] == ["Instance", "Condition", "Verdict", "Value"] and "Message" in head
    rows = re.findall(r'<tr class="test-row">(.*?)</tr>', section, re.S)
    assert len(rows) == 1
    cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0], re.S)]
    assert cells[0] == service.instance_id
    assert cells[1] == "critical cpu_usage avg over 1m >= 0 %"
    assert cells[2] in ("fires", "pending", "insufficient data")
    assert re.fullmatch(r"(-?[\d.]+(e[+-]\d+)? %|–)", cells[3]), cells[3]
    assert cells[-1].startswith("[")  # the message that would go out ([FIRING] or [RESOLVED] ...)
    assert re.search(r"Evaluated at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", _text(section))
    assert not receiver.bodies and not service.alerting.repo.alerts()  # nothing sent, nothing stored

    r = client.post("/alerts/policies/p-nope/test", data={"csrf_token": token}, headers={"Accept": "text/html"})
    assert r.status_code == 404 and "no policy p-nope" in r.get_data(as_text=True)


def test_a_failed_change_shows_a_failure_notice(service, monkeypatch):
    from diag.alerting.policy import PolicyError

    client = create_app(service).test_client()
    pid = _api_policy(client, CPU_POLICY)["policy_id"]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PolicyError("enabled", "the policy file owns this policy", 409)

    monkeypatch.setattr(service.alerting, "patch_policy", refuse)
    r = client.post(f"/alerts/policies/{pid}/enabled", data={"csrf_token": _csrf(client), "enabled": "off"})
    assert r.status_code == 409
    page = r.get_data(as_text=True)
    assert re.search(r'<p class="notice bad" role="alert">could not change &#39;CPU is busy at all&#39;: the policy '
                     r"file owns this policy</p>", page)
    assert 'class="notice good"' not in page


def test_one_row_per_policy_and_instance_at_its_highest_severity_with_the_value_now():
    policy = {"policy_id": "p1", "name": "CPU", "conditions": [
        {"metric": "cpu_usage", "statistic": "avg", "period": 300, "comparison": ">=", "threshold": 80, "severity": "warning"},
        {"metric": "cpu_usage", "statistic": "avg", "period": 300, "comparison": ">=", "threshold": 95, "severity": "critical"}]}
    alerts = [
        {"policy_id": "p1", "instance_id": "a", "condition": "conditions[0]", "state": "firing", "severity": "warning",
         "value": 46.56, "started_at": 100},
        {"policy_id": "p1", "instance_id": "a", "condition": "conditions[1]", "state": "firing", "severity": "critical",
         "value": 96.0, "started_at": 200},
        {"policy_id": "p1", "instance_id": "b", "condition": "conditions[0]", "state": "pending", "severity": "warning",
         "value": 81.0, "started_at": 50},
        {"policy_id": "p1", "instance_id": "c", "condition": "conditions[0]", "state": "firing", "severity": "warning",
         "value": 85.0, "started_at": 10},
    ]
    asked = []

    def now_of(instance: str, cond: dict) -> float | None:
        asked.append((instance, cond["threshold"]))
        return {"a": 87.25, "c": None}.get(instance)

    rows = alert_text.annotate(alerts, [policy], now_of)
    assert [(r["instance_id"], r["severity"], r["state"]) for r in rows] == [
        ("a", "critical", "firing"), ("c", "warning", "firing"), ("b", "warning", "pending")]
    a = rows[0]
    assert (a["now_text"], a["value_text"]) == ("87.25 %", "96 %")  # the value now, and when it fired
    assert a["also"] == ["cpu_usage avg over 5m >= 80 %"]
    assert rows[1]["now_text"] is None and rows[1]["value_text"] == "85 %"
    assert ("a", 95) in asked and ("a", 80) not in asked  # the row's own condition


def test_the_row_of_a_policy_on_two_filesystems_names_each_mountpoint():
    policy = {"policy_id": "p1", "name": "disk", "conditions": [
        {"metric": "fs_usage", "statistic": "avg", "period": 60, "comparison": ">=", "threshold": 90, "severity": "critical"}]}
    alerts = [{"policy_id": "p1", "instance_id": "a", "condition": "conditions[0]", "state": "firing",
               "severity": "critical", "value": v, "started_at": t, "series": {"mountpoint": m, "device": d}}
              for v, t, m, d in ((97.0, 100, "/", "vda1"), (98.0, 200, "/data", "vdb"))]
    (row,) = alert_text.annotate(alerts, [policy])
    assert row["condition_text"] == "fs_usage avg over 1m >= 90 %, on mountpoint=/ device=vda1"
    assert row["also"] == ["fs_usage avg over 1m >= 90 %, on mountpoint=/data device=vdb"]


def test_a_firing_alert_is_acknowledged_from_its_row(service):
    service.alerting.save_policy({"name": "oom", "event_conditions": [{"type": "Kernel.OOMKill"}]})
    service.events.detected(service.instance_id, "Kernel.OOMKill", time.time(), "Killed process 42 (java)")
    service.alerting.evaluate()
    [a] = service.alerting.repo.alerts(["firing"])
    client = create_app(service).test_client()
    page = client.get("/alerts").get_data(as_text=True)
    assert f'/alerts/{a["alert_id"]}/ack' in page
    r = client.post(f"/alerts/{a['alert_id']}/ack", data={"csrf_token": _csrf(client), "comment": "swapping the disk"})
    assert r.status_code == 303
    row = _text(_section(client.get("/alerts").get_data(as_text=True), "firing"))
    assert "acknowledged by local until" in row and "swapping the disk" in row
    assert service.alerting.repo.alert(a["alert_id"])["detail"]["ack"]["comment"] == "swapping the disk"


def test_silence_a_firing_alert_s_policy_from_its_row_then_expire_it(service):
    service.alerting.save_policy({"name": "oom", "event_conditions": [{"type": "Kernel.OOMKill"}]})
    service.events.detected(service.instance_id, "Kernel.OOMKill", time.time(), "Killed process 42 (java)")
    service.alerting.evaluate()
    [a] = service.alerting.repo.alerts(["firing"])
    client = create_app(service).test_client()
    token = _csrf(client)
    ids = {"alert_id": a["alert_id"], "policy_id": a["policy_id"], "instance_id": a["instance_id"]}
    bad = client.post("/alerts/silences", data={"csrf_token": token, "scope": "policy_id", **ids, "duration": "90d"})
    assert bad.status_code == 422 and service.alerting.repo.silences(time.time()) == []
    r = client.post("/alerts/silences", data={"csrf_token": token, "scope": "policy_id", **ids, "duration": "3h",
                                              "comment": "known: batch job"})
    assert r.status_code == 303
    [s] = service.alerting.repo.silences(time.time())
    assert (s["policy_id"], s["alert_id"], s["instance_id"], s["comment"]) == (a["policy_id"], None, None, "known: batch job")
    assert abs(s["ends_at"] - s["created_at"] - 3 * 3600) < 1
    page = client.get("/alerts").get_data(as_text=True)
    assert "🔇 silenced until" in _text(_section(page, "firing")) and f'id="silence-{s["silence_id"]}"' in page
    r = client.post(f"/alerts/silences/{s['silence_id']}/expire", data={"csrf_token": token})
    assert r.status_code == 303 and service.alerting.repo.silences(time.time()) == []
    assert client.post(f"/alerts/silences/{s['silence_id']}/expire", data={"csrf_token": token}).status_code == 404
