"""Through a real `diag serve`: a custom metric ingested over HTTP fires a policy and one
notification; a receiver that is down gets the notification once it is back, across a
restart of the service, exactly once."""

from __future__ import annotations

import json
import threading
import time

import pytest
from tests.alerting.alerting_helpers import Receiver

from tests.conftest import free_port, http

pytestmark = pytest.mark.slow


def _ingest(base: str, back: int = 8) -> int:
    now = time.time()
    samples = [{"metric": "app_queue_depth", "labels": {"queue": "mail"}, "value": 500, "ts": now - k * 0.5}
               for k in range(back * 2)]
    try:
        return http("POST", base + "/api/v1/ingest", {"instance_id": "app1", "samples": samples}, timeout=2)[0]
    except OSError:
        return 0  # the service is restarting


class Feeder:
    """Keeps the metric above the threshold, as a live application would."""

    def __init__(self, base: str) -> None:
        self.base, self.stop_ = base, threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop_.wait(0.5):
            _ingest(self.base, 2)

    def stop(self) -> None:
        self.stop_.set()
        self.t.join()


def _setup(url: str, base: str) -> str:
    assert _ingest(base) == 202
    status, _, body = http("POST", base + "/api/v1/contacts",
                           {"name": "ops", "channels": [{"type": "webhook", "url": url, "format": "alertmanager"}]})
    assert status == 201, body
    cid = json.loads(body)["contact_id"]
    status, _, body = http("POST", base + "/api/v1/contact-groups", {"name": "g", "contacts": [cid]})
    gid = json.loads(body)["contact_group_id"]
    status, _, body = http("POST", base + "/api/v1/alert-policies", {
        "name": "queue backlog", "targets": {"instances": ["app1"]}, "contact_groups": [gid],
        "conditions": [{"metric": "app_queue_depth", "statistic": "max", "period": "2s", "comparison": ">",
                        "threshold": 100, "consecutive": 2, "severity": "critical"}]})
    assert status == 201, body
    return json.loads(body)["policy_id"]


def _wait(pred, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _config(tmp_path) -> str:
    p = tmp_path / "alerting.yml"
    p.write_text("alerting:\n  defaults: false\n  retry_base: 1s\n  retry_cap: 2s\n  deliver_every: 1s\n")
    return str(p)


def test_ingested_metric_fires_one_notification(serve, tmp_path):
    r = Receiver()
    try:
        srv = serve("--interval", "1s", "--config", _config(tmp_path))
        pid = _setup(r.url, srv.url)
        feed = Feeder(srv.url)
        _wait(lambda: len(r.bodies) >= 1)
        time.sleep(3)  # more cycles: still one notification (silence 24 h)
        assert len(r.bodies) == 1
        body = r.bodies[0]
        assert body["status"] == "firing" and body["alerts"][0]["labels"]["instance_id"] == "app1"
        assert "app_queue_depth queue=mail max over 2s is 500" in body["alerts"][0]["annotations"]["description"]
        _, _, alerts = http("GET", srv.url + "/api/v1/alerts?state=firing")
        (a,) = json.loads(alerts)["alerts"]
        assert a["policy_id"] == pid and a["severity"] == "critical" and a["last_notified_at"]
        _, _, text = http("GET", srv.url + "/metrics")
        assert b'diag_alerts{severity="critical",state="firing"} 1.0' in text
        feed.stop()
    finally:
        r.stop()


def test_down_receiver_gets_it_after_a_restart_exactly_once(serve, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    data = tmp_path / "keep"
    srv = serve("--interval", "1s", "--config", _config(tmp_path), data_dir=data)
    _setup(url, srv.url)
    feed = Feeder(srv.url)

    def attempts() -> list[dict]:
        _, _, b = http("GET", srv.url + "/api/v1/alerts/history")
        return [h for h in json.loads(b)["history"] if h["kind"] == "delivery"]

    _wait(lambda: len(attempts()) >= 2)  # failing and retrying
    assert {h["outcome"] for h in attempts()} == {"retry"}
    assert srv.stop() == 0
    r = Receiver(port=port)
    try:
        srv2 = serve("--interval", "1s", "--config", _config(tmp_path), data_dir=data)
        feed.base = srv2.url
        _wait(lambda: len(r.bodies) >= 1)
        time.sleep(3)
        assert len(r.bodies) == 1  # nothing lost, nothing twice
        _, _, b = http("GET", srv2.url + "/api/v1/alerts/history")
        outcomes = [h["outcome"] for h in json.loads(b)["history"] if h["kind"] == "delivery"]
        assert outcomes[0] == "delivered" and outcomes.count("delivered") == 1
        assert r.bodies[0]["status"] == "firing"
    finally:
        feed.stop()
        r.stop()
