"""With an admin token set, every mutating endpoint refuses requests without it, or with a
wrong one, and changes nothing. The routes come from the app itself, so a new endpoint is
covered the day it is added."""

import re

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app

TOKEN = "admin-secret-token"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    s = Service(load(env={"DIAG_TOKEN": TOKEN, "DIAG_COMMANDS": "1"}, data_dir=str(tmp_path_factory.mktemp("d"))))
    s.collect()
    app = create_app(s)
    yield app
    s.close()


def mutating_routes(app) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue  # the dashboard's forms answer to a login session and a CSRF token (tests/dashboards)
        for method in sorted((rule.methods or set()) & MUTATING):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"x-\1", rule.rule)
            out.append((method, path))
    return out


def snapshot(app) -> dict:
    s = app.extensions["diag"]["parts"]
    tables = [r["name"] for r in s.db.read("SELECT name FROM sqlite_master WHERE type = 'table'")]
    counts = {t: s.db.read(f'SELECT COUNT(*) AS n FROM "{t}"')[0]["n"] for t in tables if t != "kv"}
    return {"rows": counts, "metrics": s.store.metric_names()}


def test_there_are_mutating_routes_to_check(app):
    assert ("POST", "/api/v1/ingest") in mutating_routes(app)
    assert ("POST", "/api/v1/diagnoses") in mutating_routes(app)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}],
                         ids=["no token", "wrong token", "not bearer"])
def test_every_mutating_route_needs_the_token(app, headers):
    client = app.test_client()
    before = snapshot(app)
    refused = []
    for method, path in mutating_routes(app):
        r = client.open(path, method=method, json={"instance_id": "x", "samples": [], "name": "n"}, headers=headers)
        if r.status_code != 401 or r.get_json()["error"]["code"] != "Unauthorized":
            refused.append((method, path, r.status_code))
    assert refused == [], "mutating routes that did not answer 401"
    assert snapshot(app) == before


def test_another_site_cannot_change_anything_through_a_browser(app):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    cross = client.post("/api/v1/diagnoses", json={}, headers={**auth, "Origin": "https://evil.example"})
    assert cross.status_code == 403 and cross.get_json()["error"]["code"] == "Forbidden"
    fetch_meta = client.post("/api/v1/diagnoses", json={}, headers={**auth, "Sec-Fetch-Site": "cross-site"})
    assert fetch_meta.status_code == 403
    same = client.post("/api/v1/diagnoses", json={}, headers={**auth, "Origin": "http://localhost"})
    assert same.status_code == 201
