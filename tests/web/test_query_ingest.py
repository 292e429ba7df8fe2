"""Ingest a batch over HTTP, read it back through /api/v1/query; bad bodies change nothing."""

import time

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app


@pytest.fixture
def service(tmp_path):
    s = Service(load(env={}, data_dir=str(tmp_path / "data")))
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def aligned_now(step: int = 60) -> float:
    return (time.time() // step) * step - 3 * step


def test_ingested_custom_metric_comes_back_bucketed(client):
    t0 = aligned_now()
    samples = [{"metric": "queue_depth", "labels": {"queue": "mail"}, "value": v, "ts": t0 + i * 10}
               for i, v in enumerate([1, 2, 3, 4, 5, 6])]
    r = client.post("/api/v1/ingest", json={"instance_id": "web-1", "samples": samples})
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["accepted"] == 6
    q = client.get(f"/api/v1/query?metric=queue_depth&instance_id=web-1&start={t0}&end={t0 + 60}&step=60s&agg=avg")
    assert q.status_code == 200, q.get_json()
    body = q.get_json()
    assert body["step"] == 60
    assert body["series"] == [{"instance_id": "web-1", "labels": {"queue": "mail"}, "points": [[t0, 3.5]]}]
    mx = client.get(f"/api/v1/query?metric=queue_depth&instance_id=web-1&start={t0}&end={t0 + 60}&step=60&agg=max")
    assert mx.get_json()["series"][0]["points"] == [[t0, 6.0]]


def test_label_filters_exact_and_regex(client):
    t0 = aligned_now()
    samples = [{"metric": "disk_util", "labels": {"device": d}, "value": n, "ts": t0}
               for n, d in enumerate(["sda", "sdb", "nvme0n1"])]
    assert client.post("/api/v1/ingest", json={"instance_id": "db-1", "samples": samples}).status_code == 202
    base = f"/api/v1/query?metric=disk_util&instance_id=db-1&start={t0}&end={t0 + 60}&step=60"
    exact = client.get(base + "&device=sdb").get_json()["series"]
    assert [s["labels"]["device"] for s in exact] == ["sdb"]
    regex = client.get(base + "&device=~sd.").get_json()["series"]
    assert sorted(s["labels"]["device"] for s in regex) == ["sda", "sdb"]


def test_the_metrics_name_reads_the_catalogue_metric_in_its_unit(client):
    """Issue 17: /api/v1/query takes a /metrics name too, and answers under the catalogue's
    name and unit, as its contract says."""
    t0 = aligned_now()
    samples = [{"metric": "disk_util", "labels": {"device": "sda"}, "value": 42.0, "ts": t0}]
    assert client.post("/api/v1/ingest", json={"instance_id": "db-2", "samples": samples}).status_code == 202
    body = client.get(f"/api/v1/query?metric=diag_disk_util_ratio&instance_id=db-2&start={t0}&end={t0 + 60}"
                      "&step=60").get_json()
    assert (body["metric"], body["unit"]) == ("disk_util", "percent")
    assert body["series"][0]["points"] == [[t0, 42.0]]


def test_repeated_batch_id_is_stored_once(client):
    t0 = aligned_now()
    body = {"instance_id": "web-2", "batch_id": "b-1",
            "samples": [{"metric": "jobs", "labels": {}, "value": 7, "ts": t0}]}
    first, again = client.post("/api/v1/ingest", json=body), client.post("/api/v1/ingest", json=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json()["duplicate"] is True
    q = client.get(f"/api/v1/query?metric=jobs&instance_id=web-2&start={t0}&end={t0 + 60}&step=60&agg=count")
    assert q.get_json()["series"][0]["points"] == [[t0, 1.0]]


@pytest.mark.parametrize("body, status, field", [
    ({"samples": [{"metric": "bad name", "value": 1}]}, 422, "samples[0].metric"),
    ({"samples": [{"metric": "ok_name", "value": "NaN"}]}, 422, "samples[0].value"),
    ({"samples": [{"metric": "ok_name", "value": 1, "ts": time.time() + 86400}]}, 422, "samples[0].ts"),
    ({"samples": [{"metric": "ok_name", "value": 1, "labels": {"bad-key": "x"}}]}, 422, "samples[0].labels.bad-key"),
    ({"samples": [{"metric": "cpu_usage", "value": 1, "labels": {"cpu": "0"}}]}, 422, "samples[0].labels"),
    ({"samples": "many"}, 422, "samples"),
    ({"instance_id": "../etc", "samples": []}, 422, "instance_id"),
    ({"samples": [], "interval": 0}, 422, "interval"),
    ({"samples": [], "interval": "10s"}, 422, "interval"),
    ({"samples": [], "interval": True}, 422, "interval"),
    ({"samples": [], "processes": [1]}, 422, "processes"),
    ({"samples": [], "processes": {"by_cpu": [{"pid": "1", "name": "x"}]}}, 422, "processes.by_cpu[0]"),
    ({"samples": [], "processes": {"by_memory": [{"pid": 1, "name": "x" * 65}]}}, 422, "processes.by_memory[0]"),
])
def test_bad_ingest_bodies_are_refused_and_store_nothing(client, service, body, status, field):
    good = {"metric": "ok_name", "labels": {}, "value": 1, "ts": time.time()}
    body = {**body, "samples": [good] + body["samples"] if isinstance(body.get("samples"), list) else body["samples"]}
    if isinstance(body["samples"], list):  # the bad sample is now the second one
        field = field.replace("samples[0]", "samples[1]")
    r = client.post("/api/v1/ingest", json=body)
    assert r.status_code == status
    assert r.get_json()["error"]["field"] == field
    assert "ok_name" not in service.store.metric_names()


def test_a_known_series_is_still_checked_and_a_new_one_fully(client):
    # Once a series is stored, its names are not checked again; its value and time always are.
    t0 = aligned_now()
    known = {"metric": "queue_depth", "labels": {"queue": "mail"}, "value": 1, "ts": t0}
    assert client.post("/api/v1/ingest", json={"instance_id": "web-3", "samples": [known]}).status_code == 202
    for bad, field in (({"value": "1"}, "samples[0].value"), ({"value": True}, "samples[0].value"),
                       ({"ts": t0 + 86400}, "samples[0].ts"),
                       ({"labels": {"queue": "mail", "bad-key": "x"}}, "samples[0].labels.bad-key"),
                       ({"labels": {"queue": "x" * 10_000}}, "samples[0].labels.queue"),
                       ({"labels": {"queue": ["mail"]}}, "samples[0].labels.queue"),
                       ({"labels": ["queue"]}, "samples[0].labels"), ({"labels": 0}, "samples[0].labels"),
                       ({"metric": ["queue_depth"]}, "samples[0].metric")):
        r = client.post("/api/v1/ingest", json={"instance_id": "web-3", "samples": [{**known, **bad}]})
        assert (r.status_code, r.get_json()["error"]["field"]) == (422, field), bad
    q = client.get(f"/api/v1/query?metric=queue_depth&instance_id=web-3&start={t0}&end={t0 + 60}&step=60&agg=count")
    assert q.get_json()["series"] == [{"instance_id": "web-3", "labels": {"queue": "mail"}, "points": [[t0, 1.0]]}]


def test_not_json_and_too_large(client):
    assert client.post("/api/v1/ingest", data="{", content_type="application/json").status_code == 400
    big = client.post("/api/v1/ingest", data=b"x" * (2 << 20), content_type="application/json")
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "PayloadTooLarge"


def test_query_refuses_too_many_points_with_a_hint(client):
    r = client.get("/api/v1/query?metric=cpu_usage&start=-31d&end=now&step=10s")
    assert r.status_code == 422
    assert "use a step of at least" in r.get_json()["error"]["message"]


@pytest.mark.parametrize("qs, field", [("metric=nope_metric", "metric"), ("", "metric"),
                                       ("metric=cpu_usage&agg=median", "agg"),
                                       ("metric=cpu_usage&start=yesterday", "start"),
                                       ("metric=cpu_usage&step=0s", "step")])
def test_bad_queries(client, qs, field):
    r = client.get("/api/v1/query?" + qs)
    assert 400 <= r.status_code < 500 and r.get_json()["error"]["field"] == field


def test_ingest_needs_a_token_when_one_is_set(tmp_path):
    s = Service(load(env={"DIAG_INGEST_TOKEN": "push-only"}, data_dir=str(tmp_path / "d")))
    try:
        c = create_app(s).test_client()
        body = {"samples": [{"metric": "jobs", "labels": {}, "value": 1, "ts": time.time()}]}
        assert c.post("/api/v1/ingest", json=body).status_code == 401
        assert c.post("/api/v1/ingest", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert "jobs" not in s.store.metric_names()
        assert c.post("/api/v1/ingest", json=body, headers={"Authorization": "Bearer push-only"}).status_code == 202
    finally:
        s.close()


def test_deeply_nested_bodies_are_refused_not_crashed_on(client):
    very_deep = "[" * 100_000 + "]" * 100_000
    r = client.post("/api/v1/ingest", data=very_deep, content_type="application/json")
    assert r.status_code == 400 and "nested deeper" in r.get_json()["error"]["message"]
    deep_facts = '{"instance_id": "web-9", "facts": ' + '{"a": ' * 40 + '"x"' + "}" * 40 + "}"
    r = client.post("/api/v1/ingest", data=deep_facts, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "facts"
    deep_body = '{"window": "1h", "x": ' + "[" * 40 + "]" * 40 + "}"
    r = client.post("/api/v1/diagnoses", data=deep_body, content_type="application/json")
    assert r.status_code == 400 and "nested deeper" in r.get_json()["error"]["message"]
