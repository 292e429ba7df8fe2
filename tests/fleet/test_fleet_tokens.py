"""Who may do what: the ingest token and agent tokens only push (agent tokens only for
their own instance), reads can be reserved to the admin, activations run out and expire."""

from __future__ import annotations

import re
import time

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app

ADMIN, INGEST = "admin-tok", "ingest-tok"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    cfg = load(env={"DIAG_TOKEN": ADMIN, "DIAG_INGEST_TOKEN": INGEST, "DIAG_COMMANDS": "1"}, data_dir=str(tmp_path_factory.mktemp("d")),
               protect_reads=True)
    s = Service(cfg)
    s.collect()
    app = create_app(s)
    yield app
    s.close()


@pytest.fixture(scope="module")
def agent_token(app):
    c = app.test_client()
    act = c.post("/api/v1/activations", json={"count": 1, "expires_in": "1h", "description": "t"},
                 headers=bearer(ADMIN)).get_json()
    r = c.post("/api/v1/agents/register", json={"activation_id": act["activation_id"],
                                                 "activation_code": act["activation_code"], "instance_id": "own-1"})
    assert r.status_code == 201
    return r.get_json()["agent_token"]


def _push(c, token: str, instance_id: str):
    return c.post("/api/v1/ingest", headers=bearer(token), json={
        "instance_id": instance_id, "samples": [{"metric": "cpu_usage", "labels": {}, "value": 1.0, "ts": time.time()}]})


def test_the_activation_code_is_shown_once_and_stored_hashed(app):
    c = app.test_client()
    act = c.post("/api/v1/activations", json={"count": 2, "expires_in": 600}, headers=bearer(ADMIN)).get_json()
    s = app.extensions["diag"]["parts"]
    row = s.db.read("SELECT * FROM activations WHERE activation_id = ?", (act["activation_id"],))[0]
    assert act["activation_code"] not in dict(row).values()
    assert act["count"] == 2 and act["remaining"] == 2


def test_a_used_up_or_expired_activation_is_refused(app):
    c = app.test_client()
    act = c.post("/api/v1/activations", json={"count": 1, "expires_in": "1h"}, headers=bearer(ADMIN)).get_json()
    body = {"activation_id": act["activation_id"], "activation_code": act["activation_code"], "instance_id": "x-1"}
    assert c.post("/api/v1/agents/register", json=body).status_code == 201
    used = c.post("/api/v1/agents/register", json={**body, "instance_id": "x-2"})
    assert used.status_code == 403 and "used up" in used.get_json()["error"]["message"]
    s = app.extensions["diag"]["parts"]
    old = s.fleet.create_activation(5, 3600, now=time.time() - 7200)  # expired an hour ago
    expired = c.post("/api/v1/agents/register", json={"activation_id": old["activation_id"],
                                                      "activation_code": old["activation_code"], "instance_id": "x-3"})
    assert expired.status_code == 403 and "expired" in expired.get_json()["error"]["message"]
    wrong = c.post("/api/v1/agents/register", json={**body, "activation_code": "guess"})
    assert wrong.status_code == 401
    assert c.post("/api/v1/activations", json={"count": 1}, headers=bearer(INGEST)).status_code == 401


def test_an_activation_cannot_take_over_an_instance_that_has_an_agent(app, agent_token):
    c = app.test_client()
    s = app.extensions["diag"]["parts"]
    act = c.post("/api/v1/activations", json={"count": 5, "expires_in": "1h"}, headers=bearer(ADMIN)).get_json()
    body = {"activation_id": act["activation_id"], "activation_code": act["activation_code"]}
    for victim in ("own-1", s.instance_id):  # another agent's instance, and the server itself
        r = c.post("/api/v1/agents/register", json={**body, "instance_id": victim})
        assert r.status_code == 409, r.get_json()
    assert _push(c, agent_token, "own-1").status_code == 202  # the rightful agent is untouched
    remaining = s.db.read("SELECT remaining FROM activations WHERE activation_id = ?", (act["activation_id"],))
    assert remaining[0]["remaining"] == 5  # a refused registration uses nothing up

    # The admin revokes a replaced machine's token; then it may register again.
    other = c.post("/api/v1/agents/register", json={**body, "instance_id": "replaced-1"}).get_json()["agent_token"]
    assert c.delete("/api/v1/agents/replaced-1/token", headers=bearer(other)).status_code == 401
    assert c.delete("/api/v1/agents/replaced-1/token", headers=bearer(ADMIN)).status_code == 204
    assert _push(c, other, "replaced-1").status_code == 401  # the old token is dead at once
    assert c.delete("/api/v1/agents/replaced-1/token", headers=bearer(ADMIN)).status_code == 404
    assert c.post("/api/v1/agents/register", json={**body, "instance_id": "replaced-1"}).status_code == 201


def test_push_tokens_push_and_nothing_else(app, agent_token):
    c = app.test_client()
    assert _push(c, INGEST, "anyone-1").status_code == 202
    assert _push(c, agent_token, "own-1").status_code == 202
    assert _push(c, agent_token, "someone-else").status_code == 403
    assert _push(c, "dat_forged", "own-1").status_code == 401
    mutating = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule in ("/api/v1/ingest", "/api/v1/agents/register"):
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            mutating.append((method, re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"x-\1", rule.rule)))
    assert ("POST", "/api/v1/alert-policies") in mutating and any(m == "DELETE" for m, _ in mutating)
    allowed = []
    for token in (INGEST, agent_token):
        for method, path in mutating:
            r = c.open(path, method=method, json={"name": "n", "instance_id": "own-1"}, headers=bearer(token))
            if r.status_code not in (401, 403):
                allowed.append((token[:4], method, path, r.status_code))
    assert allowed == []


def test_with_reads_protected_only_the_admin_reads(app, agent_token):
    c = app.test_client()
    for path in ("/api/v1/diagnoses", "/api/v1/instances", "/api/v1/events", "/metrics"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=bearer(INGEST)).status_code == 403, path
        assert c.get(path, headers=bearer(agent_token)).status_code == 403, path
        assert c.get(path, headers=bearer(ADMIN)).status_code == 200, path
    assert c.get("/healthz").status_code in (200, 503)  # liveness stays open


def test_an_agent_fetches_only_its_own_tasks(app, agent_token):
    c = app.test_client()
    assert c.get("/api/v1/agents/own-1/tasks", headers=bearer(agent_token)).status_code == 200
    assert c.get("/api/v1/agents/other-1/tasks", headers=bearer(agent_token)).status_code == 403
    assert c.get("/api/v1/agents/own-1/tasks", headers=bearer(INGEST)).status_code == 403
    assert c.get("/api/v1/agents/own-1/tasks").status_code == 401


def test_every_activation_code_can_be_given_on_the_agent_command_line(tmp_path):
    import argparse

    from diag.db import Database
    from diag.fleet import Fleet

    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--activation-code")
    fleet = Fleet(Database(tmp_path / "diag.db"))
    for _ in range(300):  # a bare token_urlsafe code starts with "-" once in 64
        code = fleet.create_activation(1, 3600)["activation_code"]
        assert parser.parse_args(["--activation-code", code]).activation_code == code
