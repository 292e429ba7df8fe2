"""A load run: wrk against a real `diag serve --interval 1s` while it collects.

64 connections in all, split over /metrics, a query and a report, for 30 s at once.
Nothing here asserts a latency (speed is for bench/http_service.py); a load run fails on any
error: a non-2xx answer, a refused or reset connection, a timed-out request.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT, http, need_tool

SECONDS = 30
ENDPOINTS = (("/metrics", 22), ("/api/v1/query?metric=cpu_usage&start=-1h", 21), (None, 21))


def _errors(out: str) -> list[str]:
    # wrk prints these lines only when the count is not zero.
    return [line.strip() for line in out.splitlines() if line.strip().startswith(("Non-2xx", "Socket errors"))]


def test_sustained_load_answers_without_errors(serve):
    wrk = need_tool("wrk")
    p = serve("--interval", "1s")
    status, _, raw = http("POST", p.url + "/api/v1/diagnoses", {"window": "1h"})
    assert status == 201, raw
    report = f"/api/v1/diagnoses/{json.loads(raw)['report_id']}"
    runs = []
    for path, conns in ENDPOINTS:
        url = p.url + (path or report)
        cmd = [wrk, "-t1", f"-c{conns}", f"-d{SECONDS}s", "--timeout", "5s", "--latency", url]
        runs.append((url, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    lines, failures = [], []
    for url, proc in runs:
        out, _ = proc.communicate(timeout=SECONDS + 30)
        assert proc.returncode == 0, out
        p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
        rps = re.search(r"^Requests/sec:\s+(\S+)", out, re.M)
        total = re.search(r"(\d+) requests in", out)
        assert p99 and rps and total and int(total.group(1)) > 0, out
        lines.append(f"{url}: {total.group(1)} requests, {rps.group(1)} req/s, p99 {p99.group(1)}")
        failures += [f"{url}: {e}" for e in _errors(out)]
        lines.append(out)
    text = "\n".join(lines)
    print(text)  # shown in the test log when it fails, and with -s
    art = Path(ROOT / "test-artifacts")
    art.mkdir(exist_ok=True)
    (art / "load.txt").write_text(text)
    assert not failures, failures
    assert p.proc.poll() is None and http("GET", p.url + "/healthz")[0] == 200, p.output()
