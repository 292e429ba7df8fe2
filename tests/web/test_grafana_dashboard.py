"""dashboards/grafana/diag-host-overview.json: importable (a ${DS_PROMETHEUS} input), every
metric it names is in the catalogue, and every panel's query answers on /prometheus of a
service that has collected, with data for the host it runs on."""

from __future__ import annotations

import json
import time

import promql_parser as pp
import pytest

from diag import catalogue
from diag.web.app import create_app
from tests.conftest import ROOT, collected_service

DASHBOARD = ROOT / "dashboards" / "grafana" / "diag-host-overview.json"
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


def grafana(expr: str) -> str:
    """The query as Grafana sends it with every instance selected and a 1 m interval."""
    return expr.replace("$instance", ".*").replace("$__interval", "1m").replace("$__rate_interval", "1m")


def names(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node):
        if isinstance(node, pp.VectorSelector):
            if node.name:
                found.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    found.update(m.value.split("|"))
        return True

    pp.walk(pp.parse(expr), visit)
    return found


def test_the_dashboard_takes_its_data_source_as_an_input():
    d = dashboard()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in d["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for p in panels:
        assert p["datasource"] == DS and all(t["datasource"] == DS for t in p["targets"]), p["title"]
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    assert rows == ["CPU", "Memory", "Disk", "Network", "Kernel signals"]


@pytest.mark.parametrize("title, expr", targets())
def test_every_query_parses_and_names_catalogue_metrics(title, expr):
    used = names(grafana(expr))
    assert used and used <= set(catalogue.BY_NAME), (title, used - set(catalogue.BY_NAME))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    s = collected_service(tmp_path_factory.mktemp("data"), collections=3, pause=1.0)
    yield create_app(s).test_client(), s.instance_id
    s.close()


def test_every_panel_answers_on_the_service(client):
    c, instance = client
    now = time.time()
    values = c.get("/prometheus/api/v1/label/instance/values", query_string={"match[]": "uptime"}).get_json()
    assert values == {"status": "success", "data": [instance]}  # the $instance variable's query
    answered: dict[str, int] = {}
    for title, expr in targets():
        r = c.post("/prometheus/api/v1/query_range",
                   data={"query": grafana(expr), "start": f"{now - 600:.3f}", "end": f"{now:.3f}", "step": "15"})
        body = r.get_json()
        assert r.status_code == 200 and body["status"] == "success", (title, expr, body)
        answered[title] = answered.get(title, 0) + len(body["data"]["result"])
    for title in ("CPU usage", "CPU time by mode", "Load average", "Memory usage", "Memory used and available",
                  "TCP connections", "Blocked and running tasks"):
        assert answered[title] > 0, f"{title}: no series from a service that collected"
