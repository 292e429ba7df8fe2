"""A real Prometheus over the same samples as an embedded store: the differential test and
bench/promql.py use it.

The samples are backfilled with `promtool tsdb create-blocks-from openmetrics`, then
`prometheus` is started on those blocks on a free loopback port (no scrape targets), and
stopped by `stop()`. Series labels are PromQL's: `instance` is the store's instance id.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

from diag.model import Sample
from tests.conftest import free_port, need_tool


def openmetrics(series: dict[tuple, list[tuple[float, float]]]) -> str:
    """OpenMetrics text of {(metric, instance, labels-items): [(ts, value), ...]}: one
    family per metric, each series' points in time order."""
    by_metric: dict[str, list[tuple]] = defaultdict(list)
    for key in series:
        by_metric[key[0]].append(key)
    lines = []
    for metric in sorted(by_metric):
        lines.append(f"# TYPE {metric} gauge")
        for key in sorted(by_metric[metric]):
            _, instance, items = key
            labels = {"instance": instance, **dict(items)}
            lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            for ts, v in series[key]:
                value = "NaN" if math.isnan(v) else repr(float(v))
                lines.append(f"{metric}{{{lab}}} {value} {ts:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_store(store, series: dict[tuple, list[tuple[float, float]]]) -> int:
    """The same points into an embedded store, one write per instance and timestamp (as
    collections come); returns the number of points."""
    batches: dict[tuple[str, float], list[Sample]] = defaultdict(list)
    for (metric, instance, items), points in series.items():
        for ts, v in points:
            batches[(instance, ts)].append(Sample(metric=metric, labels=dict(items), value=v, ts=ts))
    n = 0
    for (instance, _), samples in sorted(batches.items(), key=lambda kv: kv[0][1]):
        store.write(instance, samples)
        n += len(samples)
    return n


class RealPrometheus:
    def __init__(self, workdir: Path, series: dict[tuple, list[tuple[float, float]]]) -> None:
        promtool = need_tool("promtool")
        self.binary = need_tool("prometheus")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        om = self.dir / "samples.om"
        om.write_text(openmetrics(series))
        self.data = self.dir / "tsdb"
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(self.data)],
                       check=True, capture_output=True, timeout=120)
        (self.dir / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "prometheus.log", "w+b")
        self.proc = subprocess.Popen(
            [self.binary, f"--storage.tsdb.path={self.data}", f"--config.file={self.dir / 'prometheus.yml'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y"],
            cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready in {timeout}s: {self.output()}")

    def get(self, path: str, params: dict[str, str]) -> tuple[int, dict]:
        url = self.url + path + "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
