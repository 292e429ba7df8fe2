"""The same samples in the embedded store and in a real Prometheus (backfilled with promtool):
every query of a fixed list, instant and range, gives the same series and values from
/prometheus/api/v1 as from Prometheus' own API, and the same errorType when it fails.

The data has what the semantics turn on: samples exactly on the query times' window edges
(15 s grid, queries at multiples of it), a counter with jittered timestamps and two resets,
a series with a gap and an end (lookback and staleness), a gauge with NaN samples, values
of 8e9 (formatting), and the older part of the store compacted to chunks, the newer in the head.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests.promql.realprom import RealPrometheus, write_store

pytestmark = pytest.mark.slow

STEP = 15
N = 960  # 4 h at 15 s
T0 = (int(time.time()) // 3600) * 3600 - 5 * 3600


def _walk(rng, lo: float, hi: float, n: int = N) -> np.ndarray:
    x = 50 + np.cumsum(rng.normal(0, 3, n))
    return np.round(np.clip(x, lo, hi), 2) + 0.0


def dataset() -> dict[tuple, list[tuple[float, float]]]:
    rng = np.random.default_rng(17)
    grid = [float(T0 + k * STEP) for k in range(N)]
    out: dict[tuple, list[tuple[float, float]]] = {}

    def put(metric: str, instance: str, labels: dict[str, str], ts, values) -> None:
        out[(metric, instance, tuple(sorted(labels.items())))] = [(float(t), float(v)) for t, v in zip(ts, values)]

    for i, inst in enumerate(("host-a", "host-b")):
        put("cpu_usage", inst, {}, grid, _walk(rng, 0, 100))
        put("cpu_user", inst, {}, grid, _walk(rng, 0, 60))
        for j, dev in enumerate(("sda", "sdb", "nvme0n1")):
            # a third decimal of its own: no two devices tie (topk's choice between equals is arbitrary)
            put("disk_util", inst, {"device": dev}, grid, _walk(rng, 0, 100) + 0.001 * (3 * i + j + 1))
        put("mem_available", inst, {}, grid, 8e9 + np.round(np.cumsum(rng.normal(0, 1e6, N))))
    load = _walk(rng, 0, 8)
    load[np.arange(N) % 97 == 5] = np.nan
    put("load_1", "host-a", {}, grid, load)
    put("load_1", "host-b", {}, grid, _walk(rng, 0, 8))
    # A filesystem that was away for 20 minutes, then gone 40 minutes before the end.
    keep = [k for k in range(N) if k < 400 or 480 <= k < 800]
    put("fs_usage", "host-b", {"mountpoint": "/data", "device": "sdc1", "fstype": "ext4"},
        [grid[k] for k in keep], _walk(rng, 0, 100, len(keep)))
    # Counters: jittered timestamps (ms), resets; one scraped every 30 s.
    jitter = rng.integers(-3000, 3000, N) / 1000.0
    inc = rng.integers(0, 20, N).astype(float)
    inc[300] = -np.cumsum(inc[:300]).max() + 3  # a reset to 3
    inc[700] = -np.cumsum(inc[:700]).max()  # a reset to 0
    put("http_requests_total", "host-a", {"path": "/a"}, np.array(grid) + jitter, np.cumsum(inc) + 100)
    put("http_requests_total", "host-b", {"path": "/b"}, grid[::2], np.cumsum(rng.integers(0, 50, N // 2)))
    return out


# Query times: on the 15 s grid (samples at window edges), off it, exactly 5 min after
# fs_usage's last sample (still seen in Prometheus 2.x) and 1 ms later (gone).
T_ON = T0 + 3 * 3600
T_OFF = T0 + 3 * 3600 + 7.5
T_LAST = T0 + 799 * STEP + 300
TIMES = [T_ON, T_OFF, T_LAST, T_LAST + 0.001]
RANGES = [(T0 + 1800, T0 + 4 * 3600, "60"), (T0 + 1800 + 7, T0 + 4 * 3600 - 1, "45s")]
T_AT = T0 + 5400

QUERIES = [
    # selectors, all four matchers, offset, @
    "cpu_usage",
    'disk_util{device="sda"}',
    'disk_util{device!="sda"}',
    'disk_util{device=~"sd.*"}',
    'disk_util{device!~"sd.*",instance="host-b"}',
    '{__name__=~"cpu_.*",instance="host-a"}',
    "fs_usage",
    "disk_util offset 10m",
    f"cpu_usage @ {T_AT}",
    "mem_available",
    # range functions
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[1m])",
    "increase(http_requests_total[10m])",
    "rate(http_requests_total[90s])",
    "increase(http_requests_total[1h])",
    "rate(http_requests_total[5m] offset 7m)",
    "delta(cpu_usage[10m])",
    "avg_over_time(cpu_usage[5m])",
    "min_over_time(disk_util[10m])",
    "max_over_time(disk_util[10m])",
    "sum_over_time(disk_util[2m])",
    "count_over_time(fs_usage[15m])",
    "last_over_time(fs_usage[30m])",
    "max_over_time(load_1[5m])",
    "min_over_time(load_1[5m])",
    "changes(cpu_usage[5m])",
    "resets(http_requests_total[30m])",
    # aggregations
    "sum(disk_util)",
    "sum by (instance) (disk_util)",
    "avg without (device) (disk_util)",
    "max by (device) (disk_util)",
    "min(cpu_usage)",
    "count by (instance) (disk_util)",
    "topk(2, disk_util)",
    "bottomk by (instance) (1, disk_util)",
    "sum by (instance) (rate(http_requests_total[5m]))",
    "max(load_1)",
    "quantile(0.9, disk_util)",
    "stddev(disk_util)",
    "count(cpu_usage > 30)",
    # arithmetic and comparisons, with scalars and between vectors
    "cpu_usage * 2 + 1",
    "100 - cpu_usage",
    "-cpu_usage",
    "mem_available / 1024 / 1024",
    "disk_util > 50",
    "disk_util > bool 50",
    "30 < cpu_usage",
    "cpu_usage - on(instance) cpu_user",
    "cpu_usage / cpu_user",
    "cpu_usage / ignoring(device) group_right disk_util",
    "disk_util / on(instance) group_left cpu_usage",
    "disk_util > on(instance) group_left cpu_usage",
    "cpu_usage > cpu_user",
    "cpu_usage == bool cpu_user",
    "cpu_user unless cpu_usage > 50",
    'disk_util{device="sda"} or disk_util{device="sdb"}',
    'cpu_usage and on(instance) (disk_util{device="sda"} > 30)',
    "sum(rate(http_requests_total[5m])) / count(http_requests_total)",
    # functions dashboards use around those
    'label_replace(cpu_usage, "host", "$1", "instance", "host-(.*)")',
    "clamp_max(cpu_usage, 50)",
    "abs(delta(cpu_usage[5m]))",
    "round(cpu_usage, 0.5)",
    "timestamp(fs_usage)",
    "vector(1)",
    "scalar(sum(cpu_usage))",
    "absent(nonexistent_metric)",
    "absent(cpu_usage)",
    "avg_over_time(cpu_usage[10m:1m])",
    "max_over_time(rate(http_requests_total[2m])[15m:30s])",
    "time()",
]
INSTANT_ONLY = ["disk_util[1m]", "http_requests_total[2m] offset 1m", "sort_desc(disk_util)"]
ERRORS = [
    "foo(cpu_usage)",  # unknown function
    "rate(cpu_usage)",  # wrong argument type
    "sum(cpu_usage",  # syntax
    'cpu_usage{instance=~"("}',  # bad regex
    "cpu_usage + on() disk_util",  # many-to-many
    "disk_util + on(instance) cpu_usage",  # many-to-one without group_left
    'rate({__name__=~"cpu_usage|cpu_user"}[5m])',  # same label set twice
    'abs({__name__=~"cpu_usage|cpu_user"})',
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from diag.config import load
    from diag.service import Service
    from diag.web.app import create_app

    series = dataset()
    prom = RealPrometheus(tmp_path_factory.mktemp("prometheus"), series)
    service = Service(load(env={}, data_dir=str(tmp_path_factory.mktemp("ours") / "data")))
    write_store(service.store, series)
    service.store.maintain(time.time())  # the older hours go to chunks and roll-ups, the rest stays in the head
    try:
        prom.wait_ready()
        client = create_app(service).test_client()

        def ours(path: str, params: dict[str, str]) -> tuple[int, dict]:
            r = client.get("/prometheus" + path, query_string=params)
            return r.status_code, r.get_json()

        yield ours, prom.get
    finally:
        prom.stop()
        service.close()


def _num(text: str) -> float:
    return float(text)


def _same_value(a: str, b: str) -> bool:
    x, y = _num(a), _num(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def _compare(query: str, ours: dict, theirs: dict) -> None:
    assert ours["status"] == theirs["status"] == "success", (query, ours, theirs)
    a, b = ours["data"], theirs["data"]
    assert a["resultType"] == b["resultType"], query
    if a["resultType"] in ("scalar", "string"):
        assert a["result"][0] == b["result"][0] and _same_value(a["result"][1], b["result"][1]), (query, a, b)
        return
    key = lambda r: tuple(sorted(r["metric"].items()))  # noqa: E731
    mine = {key(r): r for r in a["result"]}
    prom = {key(r): r for r in b["result"]}
    assert len(mine) == len(a["result"]), f"{query}: duplicate series in our answer"
    assert sorted(mine) == sorted(prom), f"{query}: series differ\nours:   {sorted(mine)}\ntheirs: {sorted(prom)}"
    for k in prom:
        if a["resultType"] == "vector":
            pa, pb = [mine[k]["value"]], [prom[k]["value"]]
        else:
            pa, pb = mine[k]["values"], prom[k]["values"]
        assert [p[0] for p in pa] == [p[0] for p in pb], f"{query} {k}: timestamps differ"
        bad = [(p[0], p[1], q[1]) for p, q in zip(pa, pb) if not _same_value(p[1], q[1])]
        assert not bad, f"{query} {k}: values differ (t, ours, Prometheus): {bad[:5]}"


def test_the_list_is_long_enough():
    assert len(QUERIES) + len(INSTANT_ONLY) + len(ERRORS) >= 40


@pytest.mark.parametrize("query", QUERIES + INSTANT_ONLY)
def test_instant_queries_agree(engines, query):
    ours, prom = engines
    for t in TIMES:
        params = {"query": query, "time": f"{t:.3f}"}
        s1, a = ours("/api/v1/query", params)
        s2, b = prom("/api/v1/query", params)
        assert s1 == s2 == 200, (query, t, a, b)
        _compare(f"{query} @ {t}", a, b)


@pytest.mark.parametrize("query", QUERIES)
def test_range_queries_agree(engines, query):
    ours, prom = engines
    for start, end, step in RANGES:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        s1, a = ours("/api/v1/query_range", params)
        s2, b = prom("/api/v1/query_range", params)
        assert s1 == s2 == 200, (query, a, b)
        _compare(f"{query} [{start}..{end} by {step}]", a, b)


@pytest.mark.parametrize("query", ERRORS)
def test_failing_queries_fail_alike(engines, query):
    ours, prom = engines
    for path, params in (("/api/v1/query", {"query": query, "time": f"{T_ON}"}),
                         ("/api/v1/query_range", {"query": query, "start": f"{RANGES[0][0]}",
                                                  "end": f"{RANGES[0][1]}", "step": "60"})):
        s1, a = ours(path, params)
        s2, b = prom(path, params)
        assert (s1, a["status"], a["errorType"]) == (s2, b["status"], b["errorType"]), (query, a, b)
        assert set(a) == set(b) == {"status", "errorType", "error"}


@pytest.mark.parametrize("params", [
    {"query": "cpu_usage[5m]", "start": str(T0), "end": str(T0 + 600), "step": "60"},  # range vector
    {"query": '"text"', "start": str(T0), "end": str(T0 + 600), "step": "60"},
    {"query": "cpu_usage", "start": str(T0 + 600), "end": str(T0), "step": "60"},  # end before start
    {"query": "cpu_usage", "start": str(T0), "end": str(T0 + 600), "step": "0"},
    {"query": "cpu_usage", "start": str(T0), "end": str(T0 + 86400), "step": "1"},  # > 11,000 points
    {"query": "cpu_usage", "start": "yesterday", "end": str(T0), "step": "60"},
    {"query": "cpu_usage", "start": str(T0), "end": str(T0 + 600), "step": "soon"},
])
def test_bad_range_parameters_fail_alike(engines, params):
    ours, prom = engines
    s1, a = ours("/api/v1/query_range", params)
    s2, b = prom("/api/v1/query_range", params)
    assert (s1, a["errorType"]) == (s2, b["errorType"]) == (400, "bad_data"), (a, b)


def test_a_function_we_do_not_evaluate_fails_as_prometheus_fails_an_unknown_one(engines):
    ours, prom = engines
    s1, a = ours("/api/v1/query", {"query": "predict_linear(cpu_usage[1h], 600)", "time": str(T_ON)})
    s2, b = prom("/api/v1/query", {"query": "no_such_function(cpu_usage[1h], 600)", "time": str(T_ON)})
    assert (s1, a["status"], a["errorType"]) == (s2, b["status"], b["errorType"]) == (400, "error", "bad_data")
    assert "predict_linear" in a["error"] and "not supported" in a["error"]


def test_series_and_labels_agree(engines):
    ours, prom = engines
    for path, params in (("/api/v1/series", {"match[]": 'disk_util{device=~"sd.*"}'}),
                         ("/api/v1/series", {"match[]": "fs_usage"}),
                         ("/api/v1/labels", {}),
                         ("/api/v1/label/device/values", {}),
                         ("/api/v1/label/__name__/values", {}),
                         ("/api/v1/label/instance/values", {"match[]": "load_1"})):
        s1, a = ours(path, params)
        s2, b = prom(path, params)
        assert s1 == s2 == 200
        if path == "/api/v1/series":
            a["data"].sort(key=lambda m: sorted(m.items()))
            b["data"].sort(key=lambda m: sorted(m.items()))
        assert a == b, path
