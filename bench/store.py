"""Benchmark: our SqliteStore against VictoriaMetrics single-node, same data, one run.

Data: N series (default 1,000) x one day at 10 s (8.64 million points), each value a
random walk with two decimals (step ~ N(0, 1), rounded to 0.01). A second set, the
same series x 31 days at 1 h (744 points a series), is loaded through the normal
ingest path into a second store and into VictoriaMetrics (as another metric) for the
"100 series over 31 days at 1 h" query; in our store it is answered from the 1 h
roll-ups that compaction built from those points.

Measured:
- ingest points/s: ours in-process, one sender, batches shaped like collections
  (every series at one instant, one `write()` each, with a batch id); time spent
  building the Sample objects is excluded (it is the caller's) and printed apart.
  VictoriaMetrics: one sender POSTing Prometheus text to /api/v1/import/prometheus
  in 100,000-line bodies prepared beforehand. Ours over HTTP: `diag serve` started by
  the benchmark on a free loopback port (or `--ours-url` of a running one), one sender
  POSTing 360 prepared 1,000-sample bodies to /api/v1/ingest, a new connection each (as
  `diag agent` does), timed to the last 202, once the service's start-up jobs are done.
- bytes on disk per raw point after compaction: file + WAL after a checkpoint,
  raw chunks alone, and VictoriaMetrics' data directory after a flush and merge.
- query time (median of repeated warm runs): one series over the day at 10 s
  (raw), and 100 series over 31 days at 1 h (avg). VictoriaMetrics answers
  avg_over_time(...[step]) over HTTP with its response cache off; ours is in-process
  (the store itself; /api/v1/query adds JSON and HTTP, see bench/http_service.py).

Run: `.venv/bin/python bench/store.py` (about 1-2 minutes), or `--quick` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diag.model import Sample  # noqa: E402
from diag.store import Retention, SqliteStore  # noqa: E402
from tests.conftest import ServeProcess, free_port  # noqa: E402

VM_BIN = "/usr/bin/victoria-metrics"
DAY_METRIC, MONTH_METRIC = "bench_day", "bench_month"


def walk(rng: np.random.Generator, steps: int, nser: int) -> np.ndarray:
    # "+ 0.0" turns the -0.0 that rounding makes of tiny negatives into 0.0, as a
    # collector's value would be (the codec keeps -0.0 exactly, but in its XOR path).
    return np.round(100.0 + np.cumsum(np.round(rng.normal(0, 1, (steps, nser)), 2), axis=0), 2) + 0.0


def timeit(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- ours ----------------------------------------------------------------------------


def load_ours(store: SqliteStore, metric: str, values: np.ndarray, t0: float, every: float) -> dict[str, float]:
    steps, nser = values.shape
    names = [str(i) for i in range(nser)]
    write_s = build_s = 0.0
    for b in range(steps):
        t = time.perf_counter()
        ts = t0 + every * b
        # Fresh label dicts per batch, as collectors make them (no identity shortcut).
        batch = [Sample(metric, {"series": names[i]}, v, ts) for i, v in enumerate(values[b].tolist())]
        t1 = time.perf_counter()
        store.write("bench", batch, batch_id=f"{metric}-{b}")
        write_s += time.perf_counter() - t1
        build_s += t1 - t
    return {"points": steps * nser, "write_s": write_s, "build_s": build_s}


def post_ours_http(url: str, metric: str, values: np.ndarray, t0: float, every: float) -> float:
    """Hook for our HTTP ingest (POST /api/v1/ingest, API.md); points/s, one sender."""
    steps, nser = values.shape
    bodies = []
    for b in range(steps):
        ts = t0 + every * b
        samples = [{"metric": metric, "labels": {"series": str(i)}, "value": v, "ts": ts} for i, v in enumerate(values[b].tolist())]
        bodies.append(json.dumps({"instance_id": "bench-http", "samples": samples, "signals": []}).encode())
    t = time.perf_counter()
    for body in bodies:
        req = urllib.request.Request(url.rstrip("/") + "/api/v1/ingest", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            resp.read()
    return steps * nser / (time.perf_counter() - t)


def chunk_bytes(path: Path) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        raw = conn.execute("SELECT coalesce(sum(length(ts) + length(vals)), 0) FROM chunks").fetchone()[0]
        roll = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM rollups").fetchone()[0]
    return raw, roll


# -- VictoriaMetrics ----------------------------------------------------------------------


class Victoria:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [VM_BIN, f"-storageDataPath={data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-retentionPeriod=5y", "-search.disableCache", "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.read().strip() == b"OK":
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("victoria-metrics did not start")

    def get(self, path: str, **params: Any) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=300) as r:
            return r.read()

    def import_text(self, bodies: list[bytes]) -> float:
        t = time.perf_counter()
        for body in bodies:
            req = urllib.request.Request(self.url + "/api/v1/import/prometheus", data=body)
            with urllib.request.urlopen(req, timeout=300) as r:
                r.read()
        return time.perf_counter() - t

    def flush(self) -> None:
        self.get("/internal/force_flush")

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def prom_bodies(metric: str, values: np.ndarray, t0: float, every: float, lines_per_body: int = 100_000) -> list[bytes]:
    steps, nser = values.shape
    bodies, lines = [], []
    for b in range(steps):
        ms = int((t0 + every * b) * 1000)
        row = values[b].tolist()
        lines.extend(f'{metric}{{series="{i}"}} {row[i]!r} {ms}' for i in range(nser))
        if len(lines) >= lines_per_body:
            bodies.append(("\n".join(lines) + "\n").encode())
            lines = []
    if lines:
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


# -- the run -------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="2 h at 10 s instead of a day (same 1,000-series batches): a smoke run; "
                         "bytes per point are not meaningful on so small a file")
    ap.add_argument("--series", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=30, help="runs per query timing (median)")
    ap.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    ap.add_argument("--no-vm", action="store_true", help="ours only")
    ap.add_argument("--ours-url", help="time POST /api/v1/ingest of this running service instead of starting one")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = ap.parse_args()

    nser = args.series or 1000
    day_steps = 720 if args.quick else 8640
    month_steps = 31 * 24
    nquery = min(100, nser)
    rng = np.random.default_rng(2024)
    end = float(int(time.time()) // 3600 * 3600 - 3600)  # in the past, hour-aligned
    day_t0 = end - day_steps * 10.0
    month_t0 = end - month_steps * 3600.0
    day = walk(rng, day_steps, nser)
    month = walk(rng, month_steps, nser)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    rows: list[tuple[str, float | None, float | None, str, bool | None]] = []
    print(f"data: {nser} series x {day_steps} instants at 10 s = {day.size:,} points; "
          f"{nser} x {month_steps} at 1 h = {month.size:,} points; synchronous={args.synchronous}")

    # Ours: the day set.
    path = tmp / "day.db"
    store = SqliteStore(path, head_span=7200, synchronous=args.synchronous)
    r = load_ours(store, DAY_METRIC, day, day_t0, 10.0)
    ours_ingest = r["points"] / r["write_s"]
    print(f"ours: write() {r['write_s']:.1f} s ({ours_ingest:,.0f} points/s); building Samples "
          f"{r['build_s']:.1f} s more ({r['points'] / (r['write_s'] + r['build_s']):,.0f} points/s with it)")
    t = time.perf_counter()
    rep = store.maintain(end + 2 * 7200)  # compacts the whole day
    print(f"ours: compaction of {rep.compacted_points:,} points into {rep.chunks_written:,} chunks and "
          f"{rep.rollup_blocks_written:,} roll-up blocks: {time.perf_counter() - t:.1f} s")
    store.checkpoint()
    raw_b, roll_b = chunk_bytes(path)
    ours_file = store.size_bytes() / day.size
    print(f"ours: file {store.size_bytes():,} B = {ours_file:.2f} B/point (raw chunks {raw_b / day.size:.2f}, "
          f"roll-ups {roll_b / day.size:.2f}, rest is indexes and pages)")
    one = str(nser // 2)
    ours_q1 = timeit(lambda: store.query(DAY_METRIC, labels={"series": one}, start=day_t0, end=end, step=10), args.repeat)
    check1 = store.query(DAY_METRIC, labels={"series": one}, start=day_t0, end=end, step=10)
    assert len(check1) == day_steps and np.allclose(check1.value.to_numpy(), day[:, nser // 2])
    store.close()

    # Ours: the month set, in a second store (1 h points; the query reads the 1 h roll-ups).
    mpath = tmp / "month.db"
    mstore = SqliteStore(mpath, head_span=86400, retention=Retention(h1=40 * 86400), synchronous=args.synchronous)
    load_ours(mstore, MONTH_METRIC, month, month_t0, 3600.0)
    mstore.maintain(end + 2 * 86400)
    ids = [str(i) for i in range(nquery)]
    import re

    pattern = re.compile("|".join(ids))
    ours_q2 = timeit(
        lambda: mstore.query(MONTH_METRIC, labels={"series": pattern}, start=month_t0, end=end, step=3600), args.repeat
    )
    check2 = mstore.query(MONTH_METRIC, labels={"series": pattern}, start=month_t0, end=end, step=3600)
    assert len(check2) == nquery * month_steps
    mstore.close()

    vm_ingest = vm_bytes = vm_q1 = vm_q2 = None
    if not args.no_vm and Path(VM_BIN).exists():
        vm = Victoria(tmp / "vm")
        try:
            bodies = prom_bodies(DAY_METRIC, day, day_t0, 10.0)
            vm_ingest = day.size / vm.import_text(bodies)
            vm.flush()
            vm.get("/internal/force_merge")
            time.sleep(8)  # merges run in the background; the size settles after them
            vm.flush()
            vm_bytes = vm.disk_bytes() / day.size
            print(f"vm: data dir {vm.disk_bytes():,} B after the day set = {vm_bytes:.2f} B/point")
            vm.import_text(prom_bodies(MONTH_METRIC, month, month_t0, 3600.0))
            vm.flush()
            time.sleep(2)
            q1 = {"query": f'avg_over_time({DAY_METRIC}{{series="{one}"}}[10s])', "start": day_t0, "end": end - 10, "step": "10s", "nocache": 1}
            res = json.loads(vm.get("/api/v1/query_range", **q1))
            got = len(res["data"]["result"][0]["values"]) if res["data"]["result"] else 0
            print(f"vm: one-series query returned {got} points")
            vm_q1 = timeit(lambda: vm.get("/api/v1/query_range", **q1), args.repeat)
            sel = "|".join(ids)
            q2 = {"query": f'avg_over_time({MONTH_METRIC}{{series=~"{sel}"}}[1h])', "start": month_t0 + 3600, "end": end, "step": "1h", "nocache": 1}
            res = json.loads(vm.get("/api/v1/query_range", **q2))
            print(f"vm: 100-series query returned {len(res['data']['result'])} series, "
                  f"{sum(len(s['values']) for s in res['data']['result'])} points")
            vm_q2 = timeit(lambda: vm.get("/api/v1/query_range", **q2), args.repeat)
        finally:
            vm.stop()

    if args.ours_url:
        ours_http = post_ours_http(args.ours_url, "bench_http", day[:360], day_t0, 10.0)
    else:
        served = ServeProcess(tmp / "serve")
        try:
            served.wait_ready()
            served.wait_diagnosed()
            ours_http = post_ours_http(served.url, "bench_http", day[:360], day_t0, 10.0)
        finally:
            served.stop()

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a / b

    rows = [
        ("ingest in-process, points/s", ours_ingest, vm_ingest, "ours >= 1,000,000", ours_ingest >= 1e6),
        ("ingest over HTTP, points/s", ours_http, vm_ingest, "ours >= 300,000", ours_http >= 3e5),
        ("bytes per raw point (whole file)", ours_file, vm_bytes, "<= 3", ours_file <= 3),
        ("bytes per raw point (raw chunks)", raw_b / day.size, vm_bytes, "<= 3", raw_b / day.size <= 3),
        (f"1 series, {day_steps * 10 / 3600:.0f} h, raw (ms)", ours_q1 * 1e3, None if vm_q1 is None else vm_q1 * 1e3, "<= 2x VM", None),
        (f"{nquery} series, 31 d at 1 h (ms)", ours_q2 * 1e3, None if vm_q2 is None else vm_q2 * 1e3, "<= 2x VM", None),
    ]
    print()
    print(f"{'measure':36} {'ours':>14} {'VictoriaMetrics':>16} {'ours/VM':>8}  {'target':18} ok")
    for name, ours, theirs, target, ok in rows:
        rt = ratio(ours, theirs)
        if target == "<= 2x VM":
            ok = None if rt is None else rt <= 2
        fmt = (lambda x: "-" if x is None else (f"{x:,.0f}" if x >= 1000 else f"{x:.2f}"))
        print(f"{name:36} {fmt(ours):>14} {fmt(theirs):>16} {('-' if rt is None else f'{rt:.2f}'):>8}  "
              f"{target:18} {'-' if ok is None else ('yes' if ok else 'NO')}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
