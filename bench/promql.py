"""Benchmark: /prometheus/api/v1/query_range against a real Prometheus, same data, one run.

Data: 10 gauge series (`disk_util{device="d0".."d9"}`) and 10 counters
(`bench_requests_total{path="/p0".."/p9"}`) of one instance, one day at 10 s (the service's
default interval): 172,800 points. They are written into an embedded store (then
compacted as the service does, so all but the last two hours are chunks) and backfilled into
Prometheus 2.42 with `promtool tsdb create-blocks-from openmetrics`.

Measured: the median of repeated warm runs of each 24 h query_range at step 60 s (1,441
steps over 10 series), over HTTP with the same client for both: `diag serve` on the store
(started here on a free loopback port) and `prometheus` on the blocks. "engine" is ours
in-process without HTTP or JSON. Each answer is checked against Prometheus' (same series,
same timestamps, values equal within 1e-9) before it is timed.

Run: `.venv/bin/python bench/promql.py` (about a minute), or `--quick` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diag.promql import Engine  # noqa: E402
from diag.store import SqliteStore  # noqa: E402
from tests.conftest import ServeProcess  # noqa: E402
from tests.promql.realprom import RealPrometheus, write_store  # noqa: E402

INSTANCE = "bench-1"
QUERIES = [
    "disk_util",
    "avg_over_time(disk_util[5m])",
    "max by (instance) (disk_util)",
    "disk_util / on(instance) group_left sum by (instance) (disk_util)",
    "rate(bench_requests_total[5m])",
    "sum(rate(bench_requests_total[5m]))",
    "topk(3, disk_util)",
]


def dataset(end: int, hours: float, interval: int = 10) -> dict[tuple, list[tuple[float, float]]]:
    rng = np.random.default_rng(7)
    n = int(hours * 3600 / interval)
    ts = end - interval * np.arange(n)[::-1]
    out: dict[tuple, list[tuple[float, float]]] = {}
    for i in range(10):
        util = np.round(np.clip(50 + np.cumsum(rng.normal(0, 2, n)), 0, 100), 2) + 0.001 * i
        out[("disk_util", INSTANCE, (("device", f"d{i}"),))] = list(zip(ts.tolist(), util.tolist()))
        count = np.cumsum(rng.integers(0, 30, n)).astype(float)
        out[("bench_requests_total", INSTANCE, (("path", f"/p{i}"),))] = list(zip(ts.tolist(), count.tolist()))
    return out


def get(url: str, params: dict[str, str]) -> dict:
    with urllib.request.urlopen(url + "?" + urllib.parse.urlencode(params), timeout=120) as r:
        return json.loads(r.read())


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def same(a: dict, b: dict) -> str | None:
    """None when both answers hold the same series, timestamps and values (within 1e-9)."""
    ra = {tuple(sorted(r["metric"].items())): r["values"] for r in a["data"]["result"]}
    rb = {tuple(sorted(r["metric"].items())): r["values"] for r in b["data"]["result"]}
    if ra.keys() != rb.keys():
        return f"series differ: {sorted(ra)[:3]} vs {sorted(rb)[:3]}"
    for k in ra:
        if [t for t, _ in ra[k]] != [t for t, _ in rb[k]]:
            return f"timestamps differ for {k}"
        for (_, x), (_, y) in zip(ra[k], rb[k]):
            if not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9):
                return f"values differ for {k}: {x} vs {y}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 h of data and 3 runs: a smoke run")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    hours = 2 if args.quick else 24
    repeat = 3 if args.quick else args.repeat
    end = (int(time.time()) // 60) * 60 - 120
    start = end - int(hours * 3600)
    series = dataset(end, hours)

    with tempfile.TemporaryDirectory(prefix="bench-promql-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        t = time.perf_counter()
        store = SqliteStore(data / "metrics.db")
        points = write_store(store, series)
        store.maintain(time.time())
        load_s = time.perf_counter() - t
        prom = RealPrometheus(root / "prometheus", series)
        serve = None
        try:
            prom.wait_ready()
            print(f"data: {points:,} points (20 series x {hours} h at 10 s), written and compacted in {load_s:.1f} s")
            print(f"query_range over [{start}, {end}] at step 60 s ({(end - start) // 60 + 1} steps); "
                  f"median of {repeat} warm runs; HTTP with the same client for both\n")
            # In-process first, then the store is closed and `diag serve` opens it: one writer at a time.
            engine = Engine(store)
            inproc = {q: median_ms(lambda: engine.range(q, start * 1000, end * 1000, 60_000), repeat) for q in QUERIES}
            store.close()
            serve = ServeProcess(data)
            serve.wait_ready()
            serve.wait_diagnosed()  # its start-up jobs done, as bench/http_service.py waits
            rows = []
            for q in QUERIES:
                params = {"query": q, "start": str(start), "end": str(end), "step": "60"}
                ours_body = get(serve.url + "/prometheus/api/v1/query_range", params)
                prom_body = get(prom.url + "/api/v1/query_range", params)
                diff = same(ours_body, prom_body)
                if diff:
                    raise SystemExit(f"{q}: answers differ: {diff}")
                n_series = len(prom_body["data"]["result"])
                ours = median_ms(lambda: get(serve.url + "/prometheus/api/v1/query_range", params), repeat)
                theirs = median_ms(lambda: get(prom.url + "/api/v1/query_range", params), repeat)
                rows.append((q, n_series, ours, inproc[q], theirs))
            w = max(len(r[0]) for r in rows)
            print(f"{'query':{w}}  series  ours ms  (engine ms)  prometheus ms  ours/prometheus")
            for q, n_series, ours, eng, theirs in rows:
                print(f"{q:{w}}  {n_series:6d}  {ours:7.1f}  ({eng:8.1f})  {theirs:13.1f}  {ours / theirs:14.1f}x")
        finally:
            if serve is not None:
                serve.stop()
            prom.stop()
            store.close()

if __name__ == "__main__":
    main()
