"""/healthz, /metrics and the catalogue through the Flask app over a real collection."""

import subprocess

import pytest

from diag import catalogue
from diag.web.app import create_app
from tests.conftest import collected_service, need_tool


@pytest.fixture
def service(tmp_path):
    s = collected_service(tmp_path / "data", collections=2, pause=0.2)  # the second cycle has rates
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def test_healthz_answers_ok_with_the_version(client, service):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ok" and body["version"] and body["instance_id"] == service.instance_id


def test_healthz_fails_when_collection_stalls(client, service):
    service.last_batch.ts -= 3600  # as if the last collection were an hour old
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.get_json()["failing"][0].startswith("collection")


def test_metrics_pass_promtool(client):
    promtool = need_tool("promtool")
    text = client.get("/metrics").data
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (check.stdout + check.stderr) == b""


def test_metrics_hold_the_last_collection(client, service):
    text = client.get("/metrics").data.decode()
    cpu = next(s for s in service.last_batch.samples if s.metric == "cpu_usage")
    # every catalogue series carries instance_id, so a scraping engine keeps instances apart
    iid = f'instance_id="{service.instance_id}"'
    # issue 17: a namespace and base units in the name, the value in that unit (percent -> 0-1)
    line = next(l for l in text.splitlines() if l.startswith(f"diag_cpu_usage_ratio{{{iid}}} "))
    assert float(line.split()[1]) == pytest.approx(cpu.value / 100)
    assert "# TYPE diag_cpu_seconds_total counter" in text and f'diag_cpu_seconds_total{{{iid},mode="user"}}' in text
    assert f"diag_mem_total_bytes{{{iid}}} " in text  # the catalogue's exposition name for mem_total


def test_openmetrics_when_asked(client):
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.content_type.startswith("application/openmetrics-text")
    assert r.data.rstrip().endswith(b"# EOF")


def test_catalogue_lists_every_metric(client):
    names = [m["name"] for m in client.get("/api/v1/metrics").get_json()["metrics"]]
    assert names == [m.name for m in catalogue.METRICS]


def test_unknown_path_is_a_json_error(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "NotFound"


def _health_lines(text: str, instance_id: str) -> dict[str, float]:
    prefix = f'diag_health_status{{instance_id="{instance_id}",state="'
    return {line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


def test_metrics_export_every_instances_health_state_and_follow_its_changes(client, service):
    from diag.health import STATES

    text = client.get("/metrics").data.decode()
    assert "# TYPE diag_health_status gauge" in text and "# HELP diag_health_status Health state" in text
    me = _health_lines(text, service.instance_id)
    assert set(me) == set(STATES) and me["Initializing"] == 1 and sum(me.values()) == 1  # no diagnosis yet
    # An instance that pushes to this server (registered by its first ingest) is exported too.
    service.instances.register("agent-h", hostname="h")
    # Each change is shown by the very next scrape (the cached body must not hide it).
    service.set_monitoring(service.instance_id, False)
    text = client.get("/metrics").data.decode()
    me = _health_lines(text, service.instance_id)
    assert me["NotApplicable"] == 1 and me["Initializing"] == 0 and sum(me.values()) == 1
    assert _health_lines(text, "agent-h")["Initializing"] == 1
    service.set_monitoring(service.instance_id, True)
    report = service.diagnose()
    text = client.get("/metrics").data.decode()
    me = _health_lines(text, service.instance_id)
    assert me[report["health_status"]] == 1 and me["NotApplicable"] == 0 and sum(me.values()) == 1
    promtool = need_tool("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0 and (check.stdout + check.stderr) == b"", check.stdout + check.stderr


def test_metrics_carry_one_info_series_per_instance_with_its_labels(client, service):
    service.instances.register("db1", hostname="db-one", labels={"role": "db", "job": "x", "zone": "b"})
    text = client.get("/metrics").get_data(as_text=True)
    lines = [ln for ln in text.splitlines() if ln.startswith("diag_instance_info{")]
    assert 'diag_instance_info{hostname="db-one",instance_id="db1",role="db",zone="b"} 1.0' in lines
    local = next(ln for ln in lines if f'instance_id="{service.instance_id}"' in ln)
    assert 'role=""' in local and "job=" not in text.split("diag_instance_info", 1)[1].split("\n# ", 1)[0]
    promtool = need_tool("promtool")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode in (0, 3), r.stderr
