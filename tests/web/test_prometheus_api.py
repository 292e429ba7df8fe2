"""The Prometheus-compatible API under /prometheus: matchers, GET and form POST, the error
shape and codes, the catalogue's names and the `instance` label, auth. The comparison with a
real Prometheus is tests/promql/test_differential.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from diag.config import load
from diag.model import Sample
from diag.promql.engine import format_value, format_values
from diag.service import Service
from diag.web.app import create_app

T0 = (int(time.time()) // 60) * 60 - 1800
TOKEN = "admin-secret-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    s = Service(load(env={}, data_dir=str(tmp_path_factory.mktemp("data"))))
    samples = []
    for i in range(60):
        ts = T0 + i * 10
        for n, dev in enumerate(("sda", "sdb", "nvme0n1")):
            samples.append(Sample("disk_util", {"device": dev}, float(10 * n + i % 5), ts))
        samples.append(Sample("mem_total", {}, 8e9, ts))
        samples.append(Sample("jobs_done_total", {"queue": "mail", "instance": "relay-7"}, float(i * 2), ts))
        samples.append(Sample("net_in", {"interface": "eth0", "scope": ""}, 1000.0 + i, ts))
    s.store.write("web-1", samples)
    s.store.write("db-1", [Sample("disk_util", {"device": "sda"}, 99.0, T0 + 590)])
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(service):
    return create_app(service).test_client()


AT = str(T0 + 590)


def instant(client, query: str, method: str = "GET", **extra):
    params = {"query": query, "time": AT, **extra}
    if method == "POST":
        return client.post("/prometheus/api/v1/query", data=params)
    return client.get("/prometheus/api/v1/query", query_string=params)


def vector(r) -> dict[tuple, str]:
    body = r.get_json()
    assert r.status_code == 200 and body["status"] == "success", body
    assert body["data"]["resultType"] == "vector"
    return {tuple(sorted(x["metric"].items())): x["value"][1] for x in body["data"]["result"]}


def devices(r) -> list[tuple[str, str]]:
    return sorted((dict(k)["instance"], dict(k).get("device", "")) for k in vector(r))


# -- matchers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ('disk_util{device="sda"}', [("db-1", "sda"), ("web-1", "sda")]),
    ('disk_util{device!="sda"}', [("web-1", "nvme0n1"), ("web-1", "sdb")]),
    ('disk_util{device=~"sd."}', [("db-1", "sda"), ("web-1", "sda"), ("web-1", "sdb")]),
    ('disk_util{device!~"sd.",instance="web-1"}', [("web-1", "nvme0n1")]),
    ('disk_util{device=~"SD.*"}', []),  # anchored and case-sensitive, as in Prometheus
    ('disk_util{device=~"(?i)SD.*"}', [("db-1", "sda"), ("web-1", "sda"), ("web-1", "sdb")]),
    ('disk_util{device=~"sd"}', []),  # anchored: no partial match
    ('{__name__=~"disk_.*",instance="db-1"}', [("db-1", "sda")]),
    ('disk_util{missing=""}', [("db-1", "sda"), ("web-1", "nvme0n1"), ("web-1", "sda"), ("web-1", "sdb")]),
    ('disk_util{missing!=""}', []),
])
def test_the_four_matchers(client, query, expected):
    assert devices(instant(client, query)) == expected


def test_labels_are_the_stores_plus_instance_and_the_catalogue_name(client):
    got = vector(instant(client, 'disk_util{instance="web-1",device="sda"}'))
    assert list(got) == [(("__name__", "disk_util"), ("device", "sda"), ("instance", "web-1"))]
    # an empty label value is no label; a store label called instance is renamed like a scrape does it
    assert list(vector(instant(client, "net_in"))) == [(("__name__", "net_in"), ("instance", "web-1"),
                                                        ("interface", "eth0"))]
    jobs = dict(next(iter(vector(instant(client, "jobs_done_total")))))
    assert jobs["instance"] == "web-1" and jobs["exported_instance"] == "relay-7"


def test_the_exposition_name_selects_the_catalogue_metric_in_its_unit(client):
    # issue 17: /metrics names carry a namespace and base units, and the query API reads them
    # as a Prometheus that scraped /metrics would have them
    got = vector(instant(client, "diag_mem_total_bytes"))
    assert got == {(("__name__", "diag_mem_total_bytes"), ("instance", "web-1")): "8000000000"}
    assert vector(instant(client, 'diag_disk_util_ratio{instance="db-1"}')) == {
        (("__name__", "diag_disk_util_ratio"), ("device", "sda"), ("instance", "db-1")): "0.99"}
    assert vector(instant(client, 'disk_util{instance="db-1"} / 100 - diag_disk_util_ratio{instance="db-1"}')) == {
        (("device", "sda"), ("instance", "db-1")): "0"}
    assert vector(instant(client, "diag_net_receive_bytes_per_second")) == {
        (("__name__", "diag_net_receive_bytes_per_second"), ("instance", "web-1"), ("interface", "eth0")):
            str((1000.0 + 59) / 8)}


def test_a_regex_runs_on_re2_so_a_catastrophic_pattern_is_quick(client):
    t = time.perf_counter()
    r = instant(client, 'disk_util{device=~"(.+)+!"}')
    assert vector(r) == {} and time.perf_counter() - t < 2


def test_lookback_and_staleness(client):
    # db-1's one sample at T0+590 is seen for 5 minutes, then no more
    q = 'disk_util{instance="db-1"}'
    assert devices(client.get("/prometheus/api/v1/query", query_string={"query": q, "time": T0 + 590 + 300})) \
        == [("db-1", "sda")]
    assert devices(client.get("/prometheus/api/v1/query", query_string={"query": q, "time": T0 + 590 + 300.001})) == []
    assert devices(client.get("/prometheus/api/v1/query", query_string={"query": q, "time": T0 + 589})) == []


# -- GET and POST ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_instant_query_by_get_and_form_post(client, method):
    r = instant(client, "sum by (instance) (disk_util)", method)
    assert vector(r) == {(("instance", "db-1"),): "99", (("instance", "web-1"),): "42"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_range_query_by_get_and_form_post(client, method):
    params = {"query": 'rate(jobs_done_total[1m])', "start": str(T0 + 60), "end": str(T0 + 300), "step": "1m"}
    r = (client.post("/prometheus/api/v1/query_range", data=params) if method == "POST"
         else client.get("/prometheus/api/v1/query_range", query_string=params))
    body = r.get_json()
    assert r.status_code == 200 and body["data"]["resultType"] == "matrix"
    (series,) = body["data"]["result"]
    assert series["metric"] == {"exported_instance": "relay-7", "instance": "web-1", "queue": "mail"}
    assert [t for t, _ in series["values"]] == [T0 + 60 * k for k in range(1, 6)]
    assert {v for _, v in series["values"]} == {"0.2"}  # 2 per 10 s


def test_rfc3339_times_and_duration_steps(client):
    from datetime import datetime, timezone

    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    r = client.get("/prometheus/api/v1/query_range", query_string={
        "query": 'disk_util{instance="web-1",device="sda"}', "start": iso(T0), "end": iso(T0 + 120), "step": "30s"})
    assert [t for t, _ in r.get_json()["data"]["result"][0]["values"]] == [T0, T0 + 30, T0 + 60, T0 + 90, T0 + 120]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_series_labels_and_values_by_get_and_post(client, method):
    def call(path, params):
        return client.post(path, data=params) if method == "POST" else client.get(path, query_string=params)

    r = call("/prometheus/api/v1/series", {"match[]": ['disk_util{instance="db-1"}', "mem_total"]})
    assert r.get_json() == {"status": "success", "data": [
        {"__name__": "disk_util", "device": "sda", "instance": "db-1"},
        {"__name__": "mem_total", "instance": "web-1"}]}
    names = call("/prometheus/api/v1/labels", {}).get_json()["data"]
    assert {"__name__", "instance", "device", "queue", "interface"} <= set(names) and names == sorted(names)
    assert "scope" not in names  # only ever empty
    values = client.get("/prometheus/api/v1/label/device/values", query_string={"match[]": 'disk_util{instance="db-1"}'})
    assert values.get_json() == {"status": "success", "data": ["sda"]}
    assert client.get("/prometheus/api/v1/label/__name__/values").get_json()["data"] == [
        "disk_util", "jobs_done_total", "mem_total", "net_in"]


def test_metadata_and_buildinfo(client):
    meta = client.get("/prometheus/api/v1/metadata").get_json()["data"]
    assert meta["disk_util"] == [{"type": "gauge", "help": "Share of the interval the device had I/O in flight.",
                                  "unit": "percent"}]
    assert meta["jobs_done_total"] == [{"type": "unknown", "help": "", "unit": ""}]
    assert list(client.get("/prometheus/api/v1/metadata?metric=mem_total").get_json()["data"]) == ["mem_total"]
    assert len(client.get("/prometheus/api/v1/metadata?limit=2").get_json()["data"]) == 2
    info = client.get("/prometheus/api/v1/status/buildinfo").get_json()
    assert info["status"] == "success" and info["data"]["version"].startswith("2.")


# -- errors ----------------------------------------------------------------------------------------

def error(r, status: int, error_type: str) -> str:
    """Asserts Prometheus' error shape; returns its message, which is never empty."""
    body = r.get_json()
    assert (r.status_code, body["status"], body["errorType"]) == (status, "error", error_type), body
    assert set(body) == {"status", "errorType", "error"}
    assert r.headers["Content-Type"] == "application/json"
    assert body["error"]
    return body["error"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("query", ["sum(disk_util", "disk_util{", "rate(disk_util)", "foo(disk_util)", "",
                                   'disk_util{device=~"("}', '{device=~".*"}', "1 +",
                                   'disk_util{device="a" or device="b"}'])
def test_a_bad_query_is_400_bad_data(client, method, query):
    assert error(instant(client, query, method), 400, "bad_data")


def test_an_unsupported_function_is_a_prometheus_error_naming_it(client):
    msg = error(instant(client, "histogram_quantile(0.9, disk_util)"), 400, "bad_data")
    assert "histogram_quantile" in msg and "not supported" in msg
    msg = error(instant(client, 'count_values("v", disk_util)'), 400, "bad_data")
    assert "count_values" in msg


@pytest.mark.parametrize("query", ["disk_util + on(instance) mem_total",
                                   "mem_total + on() disk_util"])
def test_matching_errors_are_422_execution(client, query):
    assert error(instant(client, query), 422, "execution")


@pytest.mark.parametrize("params", [
    {"start": str(T0), "end": str(T0 + 60), "step": "0"},
    {"start": str(T0), "end": str(T0 + 60), "step": "-5"},
    {"start": str(T0 + 60), "end": str(T0), "step": "10"},
    {"start": "noon", "end": str(T0), "step": "10"},
    {"start": str(T0), "end": str(T0 + 86400 * 2), "step": "1"},
    {"end": str(T0), "step": "10"},
])
def test_bad_range_parameters_are_400_bad_data(client, params):
    assert error(client.get("/prometheus/api/v1/query_range", query_string={"query": "disk_util", **params}), 400, "bad_data")


def test_other_bad_parameters(client):
    assert error(client.get("/prometheus/api/v1/query", query_string={"query": "1", "time": "tomorrow"}), 400, "bad_data")
    assert error(client.get("/prometheus/api/v1/series"), 400, "bad_data")
    assert error(client.get("/prometheus/api/v1/series", query_string={"match[]": "rate(x[5m])"}), 400, "bad_data")
    assert error(client.get("/prometheus/api/v1/label/not-a-name/values"), 400, "bad_data")
    assert error(client.get("/prometheus/api/v1/query", query_string={"query": "1", "timeout": "soon"}), 400, "bad_data")


def test_a_query_past_its_timeout_is_503_timeout(client, monkeypatch):
    from diag.promql import engine

    ticks = iter(range(0, 10_000, 5))
    monkeypatch.setattr(engine.time, "monotonic", lambda: float(next(ticks)))
    assert error(instant(client, "sum(rate(jobs_done_total[5m]))", timeout="1s"), 503, "timeout")


def test_too_many_samples_is_422_execution(service):
    from diag.promql import engine

    app = create_app(service)
    app.extensions["diag"]["promql_engine"] = engine.Engine(service.store, max_samples=10)
    r = app.test_client().get("/prometheus/api/v1/query", query_string={"query": "disk_util[10m]", "time": AT})
    assert error(r, 422, "execution")


def test_scalar_string_and_matrix_results(client):
    assert instant(client, "1 + 2 * 3").get_json()["data"] == {"resultType": "scalar", "result": [int(AT), "7"]}
    assert instant(client, '"hello"').get_json()["data"] == {"resultType": "string", "result": [int(AT), "hello"]}
    m = instant(client, 'disk_util{instance="web-1",device="sda"}[30s]').get_json()["data"]
    assert m["resultType"] == "matrix"
    assert [t for t, _ in m["result"][0]["values"]] == [T0 + 560, T0 + 570, T0 + 580, T0 + 590]


@pytest.mark.parametrize("value, text", [(1.0, "1"), (0.1, "0.1"), (8e9, "8000000000"), (1e21, "1000000000000000000000"),
                                         (1e-7, "0.0000001"), (-2.5, "-2.5"), (float("nan"), "NaN"),
                                         (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (1 / 3, "0.3333333333333333"),
                                         (-0.0, "-0"), (123456789012345678.0, "123456789012345680"),
                                         (2.5e-5, "0.000025")])
def test_values_are_formatted_as_prometheus_does(value, text):
    assert format_value(value) == text
    assert format_values(np.array([value, 2.0]))[0] == text


def test_label_replace_expands_groups_as_go_does(client):
    got = vector(instant(client, 'label_replace(disk_util{instance="db-1"}, "host", "x-${1}-$2$$", "instance", '
                                 '"(.*)-(.*)")'))
    assert dict(next(iter(got)))["host"] == "x-db-1$"


# -- auth ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    s = Service(load(env={"DIAG_TOKEN": TOKEN}, data_dir=str(tmp_path_factory.mktemp("p")), protect_reads=True))
    s.store.write("web-1", [Sample("cpu_usage", {}, 5.0, T0)])
    yield create_app(s).test_client()
    s.close()


@pytest.mark.parametrize("method, path", [
    ("GET", "/prometheus/api/v1/query?query=cpu_usage"), ("POST", "/prometheus/api/v1/query"),
    ("GET", "/prometheus/api/v1/query_range?query=cpu_usage&start=0&end=60&step=15"),
    ("POST", "/prometheus/api/v1/query_range"), ("GET", "/prometheus/api/v1/labels"),
    ("POST", "/prometheus/api/v1/series"), ("GET", "/prometheus/api/v1/label/__name__/values"),
    ("GET", "/prometheus/api/v1/metadata"), ("GET", "/prometheus/api/v1/status/buildinfo"),
])
def test_with_reads_protected_every_route_needs_the_admin_token(protected, method, path):
    data = {"query": "cpu_usage", "match[]": "cpu_usage", "start": "0", "end": "60", "step": "15"} \
        if method == "POST" else None
    assert protected.open(path, method=method, data=data).status_code == 401
    assert protected.open(path, method=method, data=data, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = protected.open(path, method=method, data=data, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.get_json()


def test_with_an_engine_behind_store_url_the_api_says_to_ask_the_engine(tmp_path):
    from diag.store.prometheus import PrometheusStore

    s = Service(load(env={}, data_dir=str(tmp_path)), store=PrometheusStore("http://127.0.0.1:9"))
    try:
        msg = error(instant(create_app(s).test_client(), "cpu_usage"), 503, "unavailable")
        assert "store_url" in msg
    finally:
        s.close()


@pytest.mark.parametrize("query", ["(" * 5000 + "1" + ")" * 5000, "+".join(["disk_util"] * 3000),
                                   "-" * 300 + "1", "x" * 20000, "sum(" * 70 + "disk_util" + ")" * 70])
def test_a_query_too_deep_or_long_for_the_parser_is_refused_quickly(client, query):
    t = time.perf_counter()
    assert error(instant(client, query, "POST"), 400, "bad_data")
    assert time.perf_counter() - t < 1


def test_strings_and_comments_do_not_count_as_operators(client):
    q = 'disk_util{device=~"' + "a|" * 400 + 'sda"} # ' + "+" * 300
    assert devices(instant(client, q, "POST")) == [("db-1", "sda"), ("web-1", "sda")]
