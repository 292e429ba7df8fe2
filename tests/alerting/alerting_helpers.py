"""Helpers for the alerting tests: an in-process Service on a temp data dir (no default
policies unless asked), constructed samples at chosen times, and real receivers."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from diag.config import load
from diag.model import Sample
from diag.service import Service
from tests.conftest import free_port, need_tool

T0 = 1_700_000_000 // 3600 * 3600  # an hour boundary: every period below aligns on it


def make_service(data_dir: Path, **alerting: Any) -> Service:
    cfg = load(env={}, data_dir=str(data_dir), interval=10,
               alerting={"defaults": False, "retry_base": 1, "retry_cap": 8, **alerting})
    return Service(cfg)


@pytest.fixture
def svc(tmp_path):
    s = make_service(tmp_path / "data")
    s.instances.register("web1", hostname="web1", labels={"role": "web"})
    s.instances.register("db1", hostname="db1", labels={"role": "db"})
    yield s
    s.close()


def put(svc: Service, instance: str, metric: str, start: float, values: list[float | None], period: float = 60,
        per_period: int = 6, labels: dict[str, str] | None = None) -> None:
    """One value per period (None = no sample at all in that period), `per_period` points each."""
    samples = []
    for k, v in enumerate(values):
        if v is None:
            continue
        for j in range(per_period):
            samples.append(Sample(metric, labels or {}, float(v), start + k * period + j * period / per_period))
    svc.store.write(instance, samples)


def policy(svc: Service, **over: Any) -> str:
    body = {"name": "cpu high", "targets": {"instances": ["web1"]},
            "conditions": [{"metric": "cpu_usage", "statistic": "avg", "period": "1m", "comparison": ">=",
                            "threshold": 90, "consecutive": 3, "severity": "critical"}]}
    body.update(over)
    return svc.alerting.save_policy(body)["policy_id"]


def states(svc: Service, policy_id: str) -> dict[tuple[str, str], str]:
    return {(a["instance_id"], a["condition"]): a["state"] for a in svc.alerting.repo.alerts(None, policy_id)}


class Receiver:
    """A real HTTP server that records each POST's JSON body and headers."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(n)))
                outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def subscribe(svc: Service, channels: list[dict[str, Any]]) -> str:
    """A contact with these channels in a new group; returns the group id."""
    contact = svc.alerting.save_contact({"name": "ops", "channels": channels})
    return svc.alerting.save_group({"name": "oncall", "contacts": [contact["contact_id"]]})["contact_group_id"]


class Alertmanager:
    """A real `prometheus-alertmanager` on a free loopback port, routing to nobody: the
    tests read what it holds through its v2 API."""

    def __init__(self, tmp: Path) -> None:
        binary = need_tool("prometheus-alertmanager")
        cfg = tmp / "am.yml"
        cfg.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.path={tmp / 'am'}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("alertmanager did not start")

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """The alerts it holds active (not ended) with these labels."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as resp:
            got = json.load(resp)
        return [a for a in got if all(a["labels"].get(k) == v for k, v in labels.items())]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def alertmanager(tmp_path):
    am = Alertmanager(tmp_path)
    yield am
    am.stop()
