"""Benchmark: our HTTP service beside Prometheus node_exporter, same run, same machine.

Measured with wrk (64 connections, 2 threads, --latency) for DURATION seconds each, one
target at a time:
- node_exporter's /metrics (Debian prometheus-node-exporter, started here on a free
  loopback port with its default collectors, stopped after). It limits itself to 40
  concurrent scrapes (--web.max-requests) and answers the rest 503, so its successful
  requests/s is what compares;
- our /metrics from a `diag serve` collecting every 10 s (waitress, 8 threads);
- our /api/v1/query over one day at 60 s steps for 5 series, after a day of 10 s points
  for them was written into the data dir through the store in-process and compacted.

Targets: our /metrics with zero errors, >= 10x node_exporter's successful requests/s,
p99 < 50 ms. Run: `.venv/bin/python bench/http_service.py [--duration 10]`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diag.config import load  # noqa: E402
from diag.model import Sample  # noqa: E402
from diag.store import SqliteStore  # noqa: E402
from tests.conftest import ServeProcess, free_port  # noqa: E402

SERIES = 5
METRIC = "bench_http_series"
CONNECTIONS = 64


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def load_day(data_dir: Path, instance_id: str, now: float) -> int:
    """A day of 10 s points for SERIES series, written hour by hour, then compacted."""
    store = SqliteStore(data_dir / "metrics.db")
    start = now - 86400
    points = 0
    try:
        for hour in range(24):
            samples = [Sample(METRIC, {"k": str(k)}, float(k + i % 60), start + hour * 3600 + i * 10)
                       for i in range(360) for k in range(SERIES)]
            store.write(instance_id, samples)
            points += len(samples)
        store.maintain(now)
    finally:
        store.close()
    return points


def run_wrk(url: str, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    elapsed = _duration(re.search(r"requests in ([\d.]+\w+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    return {"requests": total, "non2xx": bad, "socket_errors": sum(map(int, sock.groups())) if sock else 0,
            "ok_rps": (total - bad) / elapsed,
            "p50": _latency(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
            "p99": _latency(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)), "raw": out}


def _duration(s: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", s).groups()
    return float(value) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _latency(s: str) -> float:
    """wrk's latency text in milliseconds."""
    value, unit = re.match(r"([\d.]+)(\w+)", s).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per target")
    args = ap.parse_args()
    for tool in ("wrk", "prometheus-node-exporter"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (make system-deps as root)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    instance_id = load(env={}, data_dir=str(data_dir)).resolved_instance_id()
    t0 = time.perf_counter()
    points = load_day(data_dir, instance_id, time.time())
    print(f"loaded {points} points ({SERIES} series x 1 day at 10 s) in {time.perf_counter() - t0:.1f}s")

    ne_port = free_port()
    node_exporter = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = ServeProcess(data_dir)
    try:
        ne, ours = f"http://127.0.0.1:{ne_port}", served.url
        wait_http(ne + "/metrics")
        served.wait_ready()
        served.wait_diagnosed()  # steady state: the start-up jobs are done
        query = f"{ours}/api/v1/query?metric={METRIC}&instance_id={instance_id}&start=-24h&end=now&step=60s"
        with urllib.request.urlopen(query) as r:
            got = json.load(r)
        n = sum(len(s["points"]) for s in got["series"])
        assert len(got["series"]) == SERIES and n >= SERIES * 1400, (len(got["series"]), n)
        lines = {u: len(urllib.request.urlopen(u).read().splitlines()) for u in (ne + "/metrics", ours + "/metrics")}
        # node_exporter goes last: after wrk stops it still works off queued scrapes for many seconds,
        # which would land on whichever target came next.
        targets = [("diag /metrics", ours + "/metrics"), ("diag /api/v1/query 1 day", query),
                   ("node_exporter /metrics", ne + "/metrics")]
        results = {}
        for name, url in targets:
            results[name] = run_wrk(url, args.duration)
            time.sleep(2)  # let the target settle before the next one is measured
    finally:
        node_exporter.terminate()
        node_exporter.wait(30)
        served.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    base = results["node_exporter /metrics"]["ok_rps"]
    print(f"\nwrk -t2 -c{CONNECTIONS} -d{args.duration}s --latency, one target at a time; "
          f"/metrics lines: node_exporter {lines[ne + '/metrics']}, diag {lines[ours + '/metrics']}; "
          f"query: {SERIES} series x {n // SERIES} points")
    print(f"{'target':28} {'requests':>9} {'non-2xx':>8} {'sock err':>8} {'ok req/s':>9} {'x node_exp':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:28} {r['requests']:9d} {r['non2xx']:8d} {r['socket_errors']:8d} {r['ok_rps']:9.0f} "
              f"{r['ok_rps'] / base if base else float('inf'):10.1f} {r['p50']:8.2f} {r['p99']:8.2f}")
    m = results["diag /metrics"]
    checks = {"zero errors": m["non2xx"] == 0 and m["socket_errors"] == 0,
              ">= 10x node_exporter ok req/s": base > 0 and m["ok_rps"] >= 10 * base,
              "p99 < 50 ms": m["p99"] < 50}
    print("\ndiag /metrics targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
