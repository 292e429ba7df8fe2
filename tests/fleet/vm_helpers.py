"""A real VictoriaMetrics single-node for the tests: 127.0.0.1, a temp data dir, stopped after."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import free_port, http, need_tool
from tests.fleet.fleet_helpers import wait_for

from diag import catalogue


def _line(name: str, labels: dict[str, str], value: float, ms: int) -> str:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items() if v != "")
    return f"{name}{{{text}}} {value!r} {ms}"


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
        """Samples as the agents' /metrics give them: exposition names and units, an
        instance_id label, and a per-interval count as the running total of its counter
        (from 0 just before its first sample, so no count is lost at the start)."""
        lines = []
        totals: dict[tuple, float] = {}
        for s in sorted(samples, key=lambda s: s.ts):
            m = catalogue.BY_NAME[s.metric]
            ms = int(round(s.ts * 1000))
            if m.kind == "delta":
                counter = catalogue.BY_NAME[m.counter]
                labels = {"instance_id": instance_id, **{k: s.labels.get(k, "") for k in counter.labels}}
                key = (counter.exposition_name, tuple(labels.items()))
                if key not in totals:
                    totals[key] = 0.0
                    lines.append(_line(counter.exposition_name, labels, 0.0, ms - 1))
                totals[key] += s.value
                lines.append(_line(counter.exposition_name, labels, totals[key], ms))
            else:
                lines.append(_line(m.exposition_name, {"instance_id": instance_id, **s.labels},
                                   catalogue.to_exposed(m, s.value), ms))
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
