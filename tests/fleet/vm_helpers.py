"""A real VictoriaMetrics single-node for the tests: 127.0.0.1, a temp data dir, stopped after."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import free_port, http, need_tool
from tests.fleet.fleet_helpers import wait_for

from diag import catalogue


class VictoriaMetrics:
    def __init__(self, tmp: Path, *extra: str) -> None:
        binary = need_tool("victoria-metrics")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "vm.log", "w+b")
        # latencyOffset 0: answer with the newest points at once (the default hides the last 30 s)
        self.proc = subprocess.Popen([binary, f"-storageDataPath={tmp / 'vm-data'}",
                                      f"-httpListenAddr=127.0.0.1:{self.port}", "-search.latencyOffset=0s",
                                      "-loggerLevel=ERROR", *extra], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, "VictoriaMetrics to start", 30)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("victoria-metrics exited")
        try:
            return http("GET", self.url + "/health", timeout=2)[0] == 200
        except OSError:
            return False

    def import_samples(self, instance_id: str, samples) -> None:
        """Samples as the agents' /metrics name them (exposition name, instance_id label)."""
        lines = []
        for s in samples:
            name = catalogue.BY_NAME[s.metric].exposition_name
            labels = ",".join(f'{k}="{v}"' for k, v in {"instance_id": instance_id, **s.labels}.items())
            lines.append(f"{name}{{{labels}}} {s.value!r} {int(round(s.ts * 1000))}")
        req = urllib.request.Request(self.url + "/api/v1/import/prometheus", data="\n".join(lines).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 204
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=30):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
