"""The chat robots (DingTalk, WeCom, Slack, Feishu) against a real HTTP server on loopback
that answers as the vendor does: it checks the exact message, verifies the DingTalk and
Feishu signatures the way the vendors document it, and answers errcode/code. Then the
outbox: a refusal is retried, also across a restart of the service; and the API never
shows a robot's token or secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.alerting.alerting_helpers import T0, make_service, policy, put, subscribe

from checks import catalogue

TOKEN = "5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"
SECRET = "SEC0123456789abcdefS3CRET"
COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90, "severity": "critical"}]
EXTERNAL = "https://diag.example.org/ops"
# Retries need a recent alert: the outbox gives up on a notice older than give_up_after (1 d).
NOW = time.time() // 60 * 60 - 61
CPU_ADVICE = catalogue.get("performance.cpu").recommendation


class Robot:
    """A chat robot's webhook: records each request (path and query, JSON body) and answers
    with `answers` in turn (the last one repeats). `vendor` and `secret` make it verify the
    signature as that vendor does, refusing a bad one with the vendor's own code."""

    def __init__(self, vendor: str, secret: str | None = None, answers: list[tuple[int, str]] | None = None) -> None:
        self.vendor, self.secret = vendor, secret
        self.answers = answers or [(200, OK[vendor])]
        self.requests: list[dict[str, Any]] = []
        self.signatures: list[bool] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                u = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                status, text = outer.answer(query, body)
                outer.requests.append({"path": u.path, "query": query, "raw_query": u.query, "body": body})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if vendor == "slack" else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, query: dict[str, str], body: dict[str, Any]) -> tuple[int, str]:
        if self.secret is not None:
            ok = self.verify(query, body)
            self.signatures.append(ok)
            if not ok:
                return 200, BAD_SIGN[self.vendor]
        return self.answers[min(len(self.requests), len(self.answers) - 1)]

    def verify(self, query: dict[str, str], body: dict[str, Any]) -> bool:
        """As the vendors' documents say the server checks: DingTalk takes `timestamp` (ms)
        and `sign` from the query, Feishu `timestamp` (s) and `sign` from the body; both
        refuse a timestamp more than an hour from now."""
        assert self.secret is not None
        if self.vendor == "dingtalk":
            ts, sign = query.get("timestamp", ""), query.get("sign", "")
            if not ts.isdigit() or abs(int(ts) / 1000 - time.time()) > 3600:
                return False
            want = hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(), hashlib.sha256).digest()
            return hmac.compare_digest(base64.b64decode(sign), want)  # parse_qsl has URL-decoded it
        ts, sign = body.get("timestamp", ""), body.get("sign", "")
        if not isinstance(ts, str) or not ts.isdigit() or abs(int(ts) - time.time()) > 3600:
            return False
        want = hmac.new(f"{ts}\n{self.secret}".encode(), b"", hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64decode(sign), want)

    def url(self) -> str:
        return {"dingtalk": f"{self.base}/robot/send?access_token={TOKEN}",
                "wecom": f"{self.base}/cgi-bin/webhook/send?key={TOKEN}",
                "slack": f"{self.base}/services/T000/B000/{TOKEN}",
                "feishu": f"{self.base}/open-apis/bot/v2/hook/{TOKEN}"}[self.vendor]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OK = {"dingtalk": '{"errcode":0,"errmsg":"ok"}', "wecom": '{"errcode":0,"errmsg":"ok"}', "slack": "ok",
      "feishu": '{"code":0,"data":{},"msg":"success"}'}
BAD_SIGN = {"dingtalk": '{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}',
            "feishu": '{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}'}
BUSY = {"dingtalk": '{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}',
        "wecom": '{"errcode":45009,"errmsg":"api freq out of limit"}',
        "feishu": '{"code":11232,"data":{},"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}'}


@pytest.fixture
def svc(tmp_path):
    s = make_service(tmp_path / "data", external_url=EXTERNAL + "/", timezone="Asia/Shanghai")
    s.instances.register("i-bp1ecr5go2go", hostname="web-01", labels={"role": "web"})
    yield s
    s.close()


def _fire(svc, channel: dict[str, Any], start: float = T0) -> str:
    pid = policy(svc, name="cpu high", targets={"instances": ["i-bp1ecr5go2go"]}, conditions=COND,
                 contact_groups=[subscribe(svc, [channel])])
    put(svc, "i-bp1ecr5go2go", "cpu_usage", start, [95])
    svc.alerting.evaluate(now=start + 61)
    return pid


@pytest.fixture
def robots():
    made: list[Robot] = []

    def make(vendor: str, secret: str | None = None, answers: list[tuple[int, str]] | None = None) -> Robot:
        made.append(Robot(vendor, secret, answers))
        return made[-1]

    yield make
    for r in made:
        r.stop()


TITLE = "diag FIRING critical: cpu high on web-01"
FINDING = "cpu_usage avg over 1m is 95 % (> 90 %, for 1m)"
SINCE = "2023-11-15 06:01:01 +0800"  # T0 + 61 s in Asia/Shanghai
LINK = EXTERNAL + "/instances/i-bp1ecr5go2go"


def test_dingtalk_signed_markdown(svc, robots):
    robot = robots("dingtalk", secret=SECRET)
    _fire(svc, {"type": "dingtalk", "url": robot.url(), "secret": SECRET})
    assert svc.alerting.deliver() == {"delivered": 1}
    (req,) = robot.requests
    assert robot.signatures == [True]
    assert req["path"] == "/robot/send" and req["query"]["access_token"] == TOKEN
    assert req["raw_query"].startswith(f"access_token={TOKEN}&timestamp=")  # appended as &timestamp=..&sign=..
    assert req["body"] == {"msgtype": "markdown", "markdown": {"title": TITLE, "text": "\n\n".join([
        f"#### {TITLE}",
        "**Instance**: web-01 (i-bp1ecr5go2go)",
        "**Severity**: critical",
        f"**Finding**: {FINDING}",
        f"**Since**: {SINCE}",
        f"**Recommendation**: {CPU_ADVICE}",
        f"[Open in diag]({LINK})"])}}
    delivery = [h for h in svc.alerting.repo.history() if h["kind"] == "delivery"]
    assert delivery[0]["outcome"] == "delivered" and "errcode 0" in delivery[0]["detail"]


@pytest.mark.parametrize("vendor, code", [("dingtalk", "errcode 310000 sign not match"),
                                           ("feishu", "code 19021 sign match fail")])
def test_a_wrong_secret_is_refused_by_the_robot_and_retried(svc, robots, vendor, code):
    robot = robots(vendor, secret=SECRET)
    _fire(svc, {"type": vendor, "url": robot.url(), "secret": "SECnot-the-robots-secret"}, NOW)
    assert svc.alerting.deliver() == {"retry": 1}
    assert robot.signatures == [False]
    (h,) = [h for h in svc.alerting.repo.history() if h["kind"] == "delivery"]
    assert code in h["detail"]


def test_dingtalk_without_a_secret_sends_no_signature(svc, robots):
    robot = robots("dingtalk")
    _fire(svc, {"type": "dingtalk", "url": robot.url()})
    assert svc.alerting.deliver() == {"delivered": 1}
    assert robot.requests[0]["query"] == {"access_token": TOKEN}


def test_wecom_markdown(svc, robots):
    robot = robots("wecom")
    _fire(svc, {"type": "wecom", "url": robot.url()})
    assert svc.alerting.deliver() == {"delivered": 1}
    (req,) = robot.requests
    assert req["path"] == "/cgi-bin/webhook/send" and req["query"] == {"key": TOKEN}
    assert req["body"] == {"msgtype": "markdown", "markdown": {"content": "\n".join([
        f'**<font color="warning">{TITLE}</font>**',
        "> Instance: web-01 (i-bp1ecr5go2go)",
        "> Severity: critical",
        f"> Finding: {FINDING}",
        f"> Since: {SINCE}",
        f"> Recommendation: {CPU_ADVICE}",
        f"[Open in diag]({LINK})"])}}


def test_a_long_chinese_finding_fits_the_wecom_limit(svc, robots):
    """WeCom refuses markdown over 4096 bytes (errcode 40058) and a retry would not mend it:
    the message is cut to fit, in bytes, at a character boundary."""
    robot = robots("wecom")
    robot.answer = lambda query, body: (200, OK["wecom"] if len(body["markdown"]["content"].encode()) <= 4096
                                        else '{"errcode":40058,"errmsg":"markdown.content exceed max length 4096"}')
    group = subscribe(svc, [{"type": "wecom", "url": robot.url()}])
    policy(svc, targets={"instances": ["*"]}, conditions=[], event_conditions=[{"type": "Kernel.HungTask"}],
           contact_groups=[group])
    svc.alerting.evaluate(now=T0)
    svc.events.detected("i-bp1ecr5go2go", "Kernel.HungTask", T0 + 1, "任务挂起" * 1000)
    svc.alerting.evaluate(now=T0 + 5)
    assert svc.alerting.deliver() == {"delivered": 1}
    content = robot.requests[0]["body"]["markdown"]["content"]
    assert 4000 < len(content.encode()) <= 4096 and "任务挂起任务挂起" in content and "…\n> Since: " in content
    # The finding is what is cut: the instance, the recommendation and the link stay.
    assert "> Instance: web-01 (i-bp1ecr5go2go)" in content and content.endswith(f"[Open in diag]({LINK})")
    assert f"> Recommendation: {catalogue.get('state.kernel_fault').recommendation}" in content


def test_slack_incoming_webhook(svc, robots):
    robot = robots("slack")
    _fire(svc, {"type": "slack", "url": robot.url()})
    assert svc.alerting.deliver() == {"delivered": 1}
    (req,) = robot.requests
    assert req["path"] == f"/services/T000/B000/{TOKEN}"
    assert req["body"] == {"text": f"{TITLE}: {FINDING}", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": TITLE}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join([
            "*Instance*: web-01 (i-bp1ecr5go2go)", "*Severity*: critical", f"*Finding*: {FINDING}",
            f"*Since*: {SINCE}", f"*Recommendation*: {CPU_ADVICE}"])}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{LINK}|Open in diag>"}]}]}


def test_slack_error_answer_is_a_permanent_failure(svc, robots):
    robot = robots("slack", answers=[(404, "no_service")])  # Slack's answer for a removed webhook
    _fire(svc, {"type": "slack", "url": robot.url()})
    assert svc.alerting.deliver() == {"failed": 1}
    assert svc.alerting.deliver(now=time.time() + 1000) == {}


def test_feishu_signed_card(svc, robots):
    robot = robots("feishu", secret=SECRET)
    _fire(svc, {"type": "feishu", "url": robot.url(), "secret": SECRET})
    assert svc.alerting.deliver() == {"delivered": 1}
    (req,) = robot.requests
    assert robot.signatures == [True]
    body = dict(req["body"])
    assert body.pop("timestamp").isdigit() and body.pop("sign")
    assert body == {"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": TITLE}, "template": "red"},
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join([
                "**Instance**: web-01 (i-bp1ecr5go2go)", "**Severity**: critical", f"**Finding**: {FINDING}",
                f"**Since**: {SINCE}", f"**Recommendation**: {CPU_ADVICE}"])}},
            {"tag": "action", "actions": [{"tag": "button", "type": "default", "url": LINK,
                                           "text": {"tag": "plain_text", "content": "Open in diag"}}]}]}}


def test_no_link_without_an_external_url(tmp_path, robots):
    s = make_service(tmp_path / "data")
    try:
        s.instances.register("i-bp1ecr5go2go", hostname="web-01")
        robot = robots("dingtalk")
        _fire(s, {"type": "dingtalk", "url": robot.url()})
        assert s.alerting.deliver() == {"delivered": 1}
        text = robot.requests[0]["body"]["markdown"]["text"]
        assert "Open in diag" not in text and "http" not in text
    finally:
        s.close()


@pytest.mark.parametrize("vendor", ["dingtalk", "wecom", "feishu"])
def test_a_non_zero_code_is_retried_through_the_outbox(svc, robots, vendor):
    secret = SECRET if vendor in ("dingtalk", "feishu") else None
    robot = robots(vendor, secret=secret, answers=[(200, BUSY[vendor]), (200, OK[vendor])])
    _fire(svc, {"type": vendor, "url": robot.url(), **({"secret": secret} if secret else {})}, NOW)
    assert svc.alerting.deliver() == {"retry": 1}
    (row,) = svc.alerting.outbox.list()
    assert row["state"] == "pending" and row["attempts"] == 1
    assert svc.alerting.deliver() == {}  # backing off
    assert svc.alerting.deliver(now=time.time() + 2) == {"delivered": 1}
    assert len(robot.requests) == 2 and robot.requests[0]["body"].get("msgtype", robot.requests[0]["body"].get(
        "msg_type")) == robot.requests[1]["body"].get("msgtype", robot.requests[1]["body"].get("msg_type"))
    if secret:
        assert robot.signatures == [True, True]  # each attempt signed afresh
    outcomes = [h["outcome"] for h in reversed(svc.alerting.repo.history()) if h["kind"] == "delivery"]
    assert outcomes == ["retry", "delivered"]


def test_a_failing_robot_is_retried_across_a_restart(tmp_path, robots):
    data = tmp_path / "data"
    robot = robots("dingtalk", secret=SECRET, answers=[(200, BUSY["dingtalk"])])
    s = make_service(data, timezone="Asia/Shanghai")
    s.instances.register("i-bp1ecr5go2go", hostname="web-01")
    _fire(s, {"type": "dingtalk", "url": robot.url(), "secret": SECRET}, NOW)
    assert s.alerting.deliver() == {"retry": 1}
    s.close()
    robot.answers = [(200, OK["dingtalk"])]
    s2 = make_service(data, timezone="Asia/Shanghai")
    try:
        assert s2.alerting.deliver(now=time.time() + 10) == {"delivered": 1}
        assert s2.alerting.deliver(now=time.time() + 100) == {}
    finally:
        s2.close()
    assert len(robot.requests) == 2 and robot.signatures == [True, True]
    assert robot.requests[0]["body"] == robot.requests[1]["body"]  # the stored message, sent again


def test_the_robot_lane_is_per_robot(svc, robots):
    """Two robots on one host: the one refusing does not hold the other's notice."""
    host = robots("dingtalk")
    host.answer = lambda query, body: (200, BUSY["dingtalk"] if query["access_token"] == "busy" else OK["dingtalk"])
    busy, fine = (f"{host.base}/robot/send?access_token={t}" for t in ("busy", "fine"))
    contact = svc.alerting.save_contact({"name": "two robots", "channels": [
        {"type": "dingtalk", "url": busy}, {"type": "dingtalk", "url": fine}]})
    group = svc.alerting.save_group({"name": "g", "contacts": [contact["contact_id"]]})["contact_group_id"]
    policy(svc, targets={"instances": ["i-bp1ecr5go2go"]}, conditions=COND, contact_groups=[group])
    put(svc, "i-bp1ecr5go2go", "cpu_usage", NOW, [95])
    svc.alerting.evaluate(now=NOW + 61)
    assert svc.alerting.deliver() == {"retry": 1, "delivered": 1}
    from diag.alerting.outbox import receiver

    a, b = (receiver({"type": "dingtalk", "url": u}) for u in (busy, fine))
    assert a != b and a.startswith(host.base) and "busy" not in a


# -- the seed's notice shape (issue 18 item 5, issue 20 item 10) ------------------------------------

def test_alibaba_notice_in_the_seeds_shape(svc, robots):
    from tests.alerting.alerting_helpers import Receiver

    r = Receiver()
    try:
        _fire(svc, {"type": "webhook", "url": r.url, "format": "alibaba"})
        assert svc.alerting.deliver() == {"delivered": 1}
    finally:
        r.stop()
    body = r.bodies[0]
    assert body["ver"] == "1.0" and body["eventTime"] == "20231115T060101.000+0800"
    assert set(body) == {"ver", "id", "eventTime", "level", "name", "product", "resourceId", "content"}
    assert body["resourceId"] == "i-bp1ecr5go2go" and body["level"] == "CRITICAL"
    assert body["content"]["instanceId"] == "i-bp1ecr5go2go" and body["content"]["instanceName"] == "web-01"
    assert body["content"]["recommendation"] == CPU_ADVICE and body["content"]["check_id"] == "performance.cpu"
    assert body["content"]["dashboard_url"] == LINK


def test_alertmanager_and_email_notices_carry_the_recommendation(svc, receiver):
    _fire(svc, {"type": "webhook", "url": receiver.url, "format": "alertmanager"})
    assert svc.alerting.deliver() == {"delivered": 1}
    (a,) = receiver.bodies[0]["alerts"]
    assert a["annotations"]["recommendation"] == CPU_ADVICE and a["annotations"]["dashboard"] == LINK
    assert a["labels"]["hostname"] == "web-01" and a["labels"]["instance_id"] == "i-bp1ecr5go2go"
    from diag.alerting.notifiers.payloads import email

    (row,) = svc.alerting.outbox.list()
    notice = {**json.loads(svc.alerting.db.read("SELECT payload FROM alert_outbox")[0]["payload"])["alerts"][0]}
    assert notice["annotations"]["summary"] == "cpu high: web-01" and row["state"] == "delivered"
    text = email({"status": "firing", "severity": "critical", "policy_name": "cpu high", "hostname": "web-01",
                  "instance_id": "i-1", "instance_name": "web-01", "message": "m", "url": LINK, "policy_id": "p",
                  "alert_id": "a", "condition": "c", "recommendation": CPU_ADVICE})["text"]
    assert "instance: web-01 (i-1)" in text and f"Recommendation: {CPU_ADVICE}" in text


def test_event_notice_time_and_the_reports_own_recommendation(svc):
    from tests.alerting.alerting_helpers import Receiver

    r = Receiver()
    try:
        group = subscribe(svc, [{"type": "webhook", "url": r.url, "format": "alibaba"}])
        policy(svc, targets={"instances": ["*"]}, conditions=[], event_conditions=[{"type": "Disk.Full"}],
               contact_groups=[group])
        svc.alerting.evaluate(now=T0)
        e = svc.events.detected("i-bp1ecr5go2go", "Disk.Full", T0 + 3.5, "/data is 99 % full",
                                labels={"check_id": "storage.disk_usage"}, fold_key="storage.disk_usage")
        svc.alerting.evaluate(now=T0 + 10)
        assert svc.alerting.deliver() == {"delivered": 1}
    finally:
        r.stop()
    body = r.bodies[0]
    assert body["id"] == e["event_id"] and body["name"] == "Instance:Disk.Full:Executed"
    assert body["ver"] == "1.0" and body["eventTime"] == "20231115T060003.500+0800"  # the event's own time
    assert body["content"]["instanceName"] == "web-01"
    assert body["content"]["recommendation"] == catalogue.get("storage.disk_usage").recommendation


def test_seed_time_format():
    from diag.alerting.notices import seed_time

    # The seed's own example: 2018-12-26 22:01:14.058 in UTC+8.
    ts = 1545832874.058
    assert seed_time(ts, "Asia/Shanghai") == "20181226T220114.058+0800"
    assert seed_time(ts, "UTC") == "20181226T140114.058+0000"
    assert seed_time(ts, "America/New_York") == "20181226T090114.058-0500"


# -- secrets and validation ------------------------------------------------------------------------

def test_the_api_never_returns_the_token_or_the_secret(svc, robots, caplog):
    from diag.web.app import create_app

    client = create_app(svc).test_client()
    robot = robots("dingtalk", secret=SECRET, answers=[(200, BUSY["dingtalk"])])
    body = {"name": "ops", "channels": [{"type": "dingtalk", "url": robot.url(), "secret": SECRET},
                                        {"type": "feishu", "url": robots("feishu").url(), "secret": SECRET},
                                        {"type": "wecom", "url": robots("wecom").url()},
                                        {"type": "slack", "url": robots("slack").url()}]}

    def clean(resp) -> Any:
        text = resp.get_data(as_text=True)
        assert TOKEN not in text and SECRET not in text
        return resp.get_json()

    created = clean(client.post("/api/v1/contacts", json=body))
    cid = created["contact_id"]
    assert [c.get("secret") for c in created["channels"]] == ["***", "***", None, None]
    assert created["channels"][0]["url"] == robot.base + "/***"
    clean(client.get("/api/v1/contacts"))
    shown = clean(client.get(f"/api/v1/contacts/{cid}"))
    # What a GET showed, sent back, keeps the stored token and secret.
    assert client.put(f"/api/v1/contacts/{cid}", json={"name": "ops 2", "channels": shown["channels"]}).status_code == 200
    stored = svc.alerting.repo.get("contact", cid)
    assert stored["channels"][0]["url"] == robot.url() and stored["channels"][0]["secret"] == SECRET
    assert stored["channels"][1]["secret"] == SECRET and "secret" not in stored["channels"][2]
    group = clean(client.post("/api/v1/contact-groups", json={"name": "g", "contacts": [cid]}))
    pid = policy(svc, targets={"instances": ["i-bp1ecr5go2go"]}, conditions=COND,
                 contact_groups=[group["contact_group_id"]])
    clean(client.post(f"/api/v1/alert-policies/{pid}/test", json={}))
    put(svc, "i-bp1ecr5go2go", "cpu_usage", NOW, [95])
    with caplog.at_level(logging.DEBUG):
        svc.alerting.evaluate(now=NOW + 61)
        svc.alerting.deliver()
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    history = clean(client.get("/api/v1/alerts/history"))["history"]
    assert any(h["outcome"] == "retry" and "errcode 130101" in h["detail"] for h in history)
    # Not even the database's history holds them: it names the robot by host and a hash.
    assert not any(TOKEN in (h["channel"] or "") + h["detail"] for h in svc.alerting.repo.history())
    clean(client.get("/alerts"))


def test_test_send_reaches_each_channel_once_and_says_how_it_went(svc, robots):
    from diag.web.app import create_app

    client = create_app(svc).test_client()
    ding, busy = robots("dingtalk", secret=SECRET), robots("wecom", answers=[(200, BUSY["wecom"])])
    cid = client.post("/api/v1/contacts", json={"name": "ops", "channels": [
        {"type": "dingtalk", "url": ding.url(), "secret": SECRET},
        {"type": "wecom", "url": busy.url()}]}).get_json()["contact_id"]
    r = client.post(f"/api/v1/contacts/{cid}/test")
    assert r.status_code == 200, r.get_json()
    assert TOKEN not in r.get_data(as_text=True) and SECRET not in r.get_data(as_text=True)
    got = r.get_json()
    assert [(x["type"], x["outcome"]) for x in got["results"]] == [("dingtalk", "delivered"), ("wecom", "failed")]
    assert "errcode 45009 api freq out of limit" in got["results"][1]["detail"]
    assert ding.signatures == [True] and len(busy.requests) == 1
    md = ding.requests[0]["body"]["markdown"]
    assert md["title"].startswith("diag TEST info: Test notification on ")
    assert "a test notification from diag to ops" in md["text"] and f"({EXTERNAL}/alerts)" in md["text"]
    assert svc.alerting.outbox.list() == []  # not queued: a failed test is not retried
    tests = [h for h in svc.alerting.repo.history() if h["kind"] == "test"]
    assert sorted(h["outcome"] for h in tests) == ["delivered", "failed"]
    assert client.post("/api/v1/contacts/c-nope/test").status_code == 404


def test_a_url_urlsplit_cannot_read_fails_alone_and_at_once(svc, robots):
    """"http://[" passes a channel's check (an http(s) scheme and a host part) but no HTTP
    client can send to it: its notice fails permanently, a test says so, and the other
    lanes are delivered in the same pass."""
    from diag.web.app import create_app

    fine = robots("wecom")
    contact = svc.alerting.save_contact({"name": "two", "channels": [
        {"type": "dingtalk", "url": "http://[", "secret": SECRET}, {"type": "wecom", "url": fine.url()}]})
    group = svc.alerting.save_group({"name": "g", "contacts": [contact["contact_id"]]})["contact_group_id"]
    policy(svc, targets={"instances": ["i-bp1ecr5go2go"]}, conditions=COND, contact_groups=[group])
    put(svc, "i-bp1ecr5go2go", "cpu_usage", NOW, [95])
    svc.alerting.evaluate(now=NOW + 61)
    assert svc.alerting.deliver() == {"failed": 1, "delivered": 1}
    r = create_app(svc).test_client().post(f"/api/v1/contacts/{contact['contact_id']}/test")
    assert r.status_code == 200
    assert [(x["outcome"], x["detail"].split(":")[0]) for x in r.get_json()["results"]] == [
        ("failed", "not a valid URL"), ("delivered", "HTTP 200, errcode 0")]
    assert SECRET not in r.get_data(as_text=True)


@pytest.mark.parametrize("channel, field, words", [
    ({"type": "dingtalk"}, "channels[0]", "needs an http(s) url"),
    ({"type": "slack", "url": "hooks.slack.com/services/x"}, "channels[0]", "needs an http(s) url"),
    ({"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "secret": "s"},
     "channels[0]", "only dingtalk and feishu"),
    ({"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=t", "secret": ""},
     "channels[0].secret", "at least 1 character"),
    ({"type": "teams", "url": "https://example.com/x"}, "channels[0].type", "Input should be"),
    ({"type": "feishu", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/t", "secret": None},
     "channels[0].secret", "must be a string"),
])
def test_a_bad_channel_names_its_field(svc, channel, field, words):
    from diag.web.app import create_app

    r = create_app(svc).test_client().post("/api/v1/contacts", json={"name": "ops", "channels": [channel]})
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["field"] == field and words in err["message"], err


def test_external_url_and_timezone_are_checked_with_file_line_and_field(tmp_path):
    from diag.config import ConfigError, load

    f = tmp_path / "diag.yml"
    f.write_text("interval: 10s\nalerting:\n  defaults: false\n  external_url: diag.example.org\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 4, "alerting.external_url")
    assert "http(s) URL" in e.value.message
    f.write_text("alerting:\n  external_url: https://diag.example.org/?x=1\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.line, e.value.field) == (2, "alerting.external_url") and "?query" in e.value.message
    f.write_text("alerting:\n  external_url: https://diag.example.org/\n  timezone: Asia/Shanghia\n")
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert (e.value.line, e.value.field) == (3, "alerting.timezone") and "Asia/Shanghia" in e.value.message
    f.write_text("alerting:\n  external_url: https://diag.example.org/\n  timezone: Asia/Shanghai\n")
    cfg = load(f, env={})
    assert cfg.alerting.external_url == "https://diag.example.org" and cfg.alerting.timezone == "Asia/Shanghai"


# -- through a real `diag serve`, restarted ---------------------------------------------------------

@pytest.mark.slow
def test_a_refusing_robot_gets_the_notice_after_a_restart_of_serve_exactly_once(serve, tmp_path, robots):
    """The robot answers errcode 130101 (too fast) while the service runs; the service stops;
    the robot recovers; the restarted service delivers the stored notice, signed afresh, once."""
    from tests.alerting.test_serve_alerting import Feeder, _config, _ingest, _wait

    from tests.conftest import http

    robot = robots("dingtalk", secret=SECRET, answers=[(200, BUSY["dingtalk"])])
    data = tmp_path / "keep"
    srv = serve("--interval", "1s", "--config", _config(tmp_path), data_dir=data)
    assert _ingest(srv.url) == 202
    status, _, body = http("POST", srv.url + "/api/v1/contacts", {"name": "ops", "channels": [
        {"type": "dingtalk", "url": robot.url(), "secret": SECRET}]})
    assert status == 201 and TOKEN.encode() not in body and SECRET.encode() not in body
    cid = json.loads(body)["contact_id"]
    _, _, body = http("POST", srv.url + "/api/v1/contact-groups", {"name": "g", "contacts": [cid]})
    status, _, body = http("POST", srv.url + "/api/v1/alert-policies", {
        "name": "queue backlog", "targets": {"instances": ["app1"]},
        "contact_groups": [json.loads(body)["contact_group_id"]],
        "conditions": [{"metric": "app_queue_depth", "statistic": "max", "period": "2s", "comparison": ">",
                        "threshold": 100, "consecutive": 2, "severity": "critical"}]})
    assert status == 201, body
    feed = Feeder(srv.url)
    try:
        _wait(lambda: len(robot.requests) >= 2)  # refused, retried, refused
        assert srv.stop() == 0
        refused = len(robot.requests)
        robot.answers = [(200, OK["dingtalk"])]
        robot.requests.clear()
        srv2 = serve("--interval", "1s", "--config", _config(tmp_path), data_dir=data)
        feed.base = srv2.url
        _wait(lambda: len(robot.requests) >= 1)
        time.sleep(3)  # more delivery passes: still one message
        # The stored firing notice, once; the restart's gap in the data may resolve the alert
        # (insufficient data) and fire it anew, which are notices of their own.
        titles = [r["body"]["markdown"]["title"] for r in robot.requests]
        assert titles[0] == "diag FIRING critical: queue backlog on app1" and refused >= 2
        assert robot.requests[0]["body"]["markdown"]["text"].count("Since") == 1
        assert len(set(json.dumps(r["body"]) for r in robot.requests)) == len(robot.requests)  # none sent twice
        assert all(robot.signatures)  # each attempt signed with a fresh timestamp
        _, _, b = http("GET", srv2.url + "/api/v1/alerts/history")
        assert TOKEN.encode() not in b and SECRET.encode() not in b
        rows = list(reversed([h for h in json.loads(b)["history"] if h["kind"] == "delivery"]))
        first = rows[0]["notification_id"]  # the notice queued before the restart
        mine = [h["outcome"] for h in rows if h["notification_id"] == first]
        assert mine[-1] == "delivered" and mine.count("delivered") == 1 and set(mine[:-1]) == {"retry"}
        assert all([h["outcome"] for h in rows if h["notification_id"] == n].count("delivered") <= 1
                   for n in {h["notification_id"] for h in rows})
    finally:
        feed.stop()
