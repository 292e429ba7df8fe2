"""Each channel against a real receiver: an HTTP server, an SMTP server (aiosmtpd) and a
real Prometheus Alertmanager; and a receiver that is down, then back."""

from __future__ import annotations

import time

import pytest
from tests.alerting.alerting_helpers import T0, Receiver, policy, put, subscribe

from tests.conftest import free_port

COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90, "severity": "critical"}]


def _fire(svc, group, start: float = T0):
    pid = policy(svc, contact_groups=[group], conditions=COND)
    put(svc, "web1", "cpu_usage", start, [95])
    svc.alerting.evaluate(now=start + 61)
    return pid


def test_webhook_gets_the_alertmanager_payload(svc, receiver):
    pid = _fire(svc, subscribe(svc, [{"type": "webhook", "url": receiver.url, "format": "alertmanager"}]))
    assert svc.alerting.deliver() == {"delivered": 1}
    body = receiver.bodies[0]
    assert set(body) >= {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                         "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops"
    (a,) = body["alerts"]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["labels"]["alertname"] == "CpuHigh" and a["labels"]["severity"] == "critical"
    assert a["labels"]["instance_id"] == "web1" and a["labels"]["policy_id"] == pid
    assert a["endsAt"] == "0001-01-01T00:00:00Z" and a["startsAt"].endswith("Z")
    assert a["generatorURL"].endswith("/instances/web1")
    assert receiver.headers[0]["Idempotency-Key"]
    hist = svc.alerting.repo.history()
    assert [h["outcome"] for h in hist if h["kind"] in ("notification", "delivery")] == ["delivered", "queued"]


def test_email_over_smtp(svc):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got = []

    class Keep(Message):
        def handle_message(self, message):
            got.append(message)

    port = free_port()
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        svc.alerting.settings.smtp.host, svc.alerting.settings.smtp.port = "127.0.0.1", port
        _fire(svc, subscribe(svc, [{"type": "email", "address": "ops@example.com"}]))
        assert svc.alerting.deliver() == {"delivered": 1}
    finally:
        ctl.stop()
    (m,) = got
    assert m["To"] == "ops@example.com" and "FIRING critical: cpu high on web1" in m["Subject"]
    assert "cpu_usage avg over 1m is 95 %" in m.get_payload()
    assert m["Message-ID"].endswith("@diag>")


def test_down_receiver_is_retried_until_it_is_back(svc):
    port = free_port()
    _fire(svc, subscribe(svc, [{"type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}]),
          time.time() // 60 * 60 - 61)
    assert svc.alerting.deliver() == {"retry": 1}
    assert svc.alerting.deliver() == {}  # backing off: not due yet
    assert svc.alerting.deliver(now=time.time() + 2) == {"retry": 1}
    r = Receiver(port=port)
    try:
        assert svc.alerting.deliver(now=time.time() + 10) == {"delivered": 1}
        assert svc.alerting.deliver(now=time.time() + 100) == {}
    finally:
        r.stop()
    assert len(r.bodies) == 1
    outcomes = [h["outcome"] for h in reversed(svc.alerting.repo.history()) if h["kind"] == "delivery"]
    assert outcomes == ["retry", "retry", "delivered"]


def test_a_4xx_answer_is_not_retried(svc):
    r = Receiver(status=400)
    try:
        _fire(svc, subscribe(svc, [{"type": "webhook", "url": r.url}]))
        assert svc.alerting.deliver() == {"failed": 1}
        assert svc.alerting.deliver(now=time.time() + 1000) == {}
    finally:
        r.stop()


def test_backoff_doubles_up_to_the_cap(svc):
    ob = svc.alerting.outbox
    assert [ob.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]  # base 1 s, cap 8 s in these tests


@pytest.mark.slow
def test_real_alertmanager_lists_the_alert(svc, alertmanager):
    # now, not T0: Alertmanager lists only alerts that have not ended
    pid = _fire(svc, subscribe(svc, [{"type": "alertmanager", "url": alertmanager.url}]), time.time() // 60 * 60 - 61)
    assert svc.alerting.deliver() == {"delivered": 1}
    mine = alertmanager.alerts(policy_id=pid)
    assert len(mine) == 1
    assert mine[0]["labels"]["alertname"] == "CpuHigh" and mine[0]["status"]["state"] == "active"
    assert "/instances/web1" in mine[0]["annotations"]["dashboard"]
