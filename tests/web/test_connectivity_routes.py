"""POST /api/v1/connectivity over the Flask app: bad input is a 4xx naming the field, the admin
token is needed when one is set, and a good request walks all five steps against loopback."""

import socket

import pytest

from diag.config import load
from diag.service import Service
from diag.web.app import create_app
from tests.conftest import free_port

TOKEN = "connectivity-admin-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    s = Service(load(env={}, data_dir=str(tmp_path_factory.mktemp("data"))))
    yield s
    s.close()


@pytest.fixture
def client(service):
    return create_app(service).test_client()


@pytest.mark.parametrize("body, status, field", [
    ({"port": 80}, 422, "destination"),
    ({"destination": "10.0.0.5", "port": 80}, 422, "destination"),
    ({"destination": {}, "port": 80}, 422, "destination"),
    ({"destination": {"address": "10.0.0.5", "instance_id": "x"}, "port": 80}, 422, "destination"),
    ({"destination": {"host": "10.0.0.5"}, "port": 80}, 422, "destination"),
    ({"destination": {"address": "10.0.0.300"}, "port": 80}, 422, "destination.address"),
    ({"destination": {"address": "example.com"}, "port": 80}, 422, "destination.address"),
    ({"destination": {"address": "fe80::1%eth0"}, "port": 80}, 422, "destination.address"),
    ({"destination": {"address": 167772165}, "port": 80}, 422, "destination.address"),
    ({"destination": {"instance_id": "../etc"}, "port": 80}, 422, "destination.instance_id"),
    ({"destination": {"instance_id": "i-nobody"}, "port": 80}, 404, "destination.instance_id"),
    ({"source": "i-nobody", "destination": {"address": "127.0.0.1"}, "port": 80}, 404, "source"),
    ({"source": "", "destination": {"address": "127.0.0.1"}, "port": 80}, 422, "source"),
    ({"destination": {"address": "127.0.0.1"}}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": 0}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": 65536}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": "80"}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": True}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80.5}, 422, "port"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80, "protocol": "sctp"}, 422, "protocol"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80, "protocol": "TCP"}, 422, "protocol"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80, "timeout": 30}, 422, "timeout"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80, "timeout": "1"}, 422, "timeout"),
    ({"destination": {"address": "127.0.0.1"}, "port": 80, "count": 3}, 422, "count"),
])
def test_bad_input_is_refused_naming_the_field(client, body, status, field):
    r = client.post("/api/v1/connectivity", json=body)
    assert r.status_code == status, r.get_json()
    assert r.get_json()["error"]["field"] == field


def test_a_body_that_is_not_a_json_object_is_a_400(client):
    assert client.post("/api/v1/connectivity", data="port=80").status_code == 400
    assert client.post("/api/v1/connectivity", json=[1]).status_code == 400


def test_a_listener_on_loopback_is_reachable_through_every_step(client, service):
    port = free_port()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen(4)
        r = client.post("/api/v1/connectivity", json={"destination": {"instance_id": service.instance_id},
                                                      "port": port})
    assert r.status_code == 200
    got = r.get_json()
    assert got["verdict"] == "reachable" and got["first_problem"] is None
    assert [s["step"] for s in got["steps"]] == ["source_route", "source_firewall", "destination_firewall",
                                                 "destination_listener", "probe"]
    assert all(s["verdict"] in ("ok", "problem", "unknown", "not_applicable") for s in got["steps"])
    assert got["source"] == service.instance_id and got["destination"]["address"] == "127.0.0.1"


def test_with_a_token_set_the_probe_needs_the_admin_token(tmp_path):
    s = Service(load(env={"DIAG_TOKEN": TOKEN}, data_dir=str(tmp_path / "data")))
    try:
        c = create_app(s).test_client()
        body = {"destination": {"address": "127.0.0.1"}, "port": free_port()}
        assert c.post("/api/v1/connectivity", json=body).status_code == 401
        assert c.post("/api/v1/connectivity", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        r = c.post("/api/v1/connectivity", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.get_json()["steps"][-1]["evidence"]["outcome"] == "refused"
    finally:
        s.close()


def test_a_third_walk_at_once_is_a_429_not_a_held_thread(client):
    from diag import connectivity_request as cr

    # Two walks hold the slots (as two slow probes would); the next request is refused at once.
    held = [cr._running.acquire(blocking=False) for _ in range(cr.MAX_RUNNING)]
    try:
        assert all(held)
        r = client.post("/api/v1/connectivity", json={"destination": {"address": "127.0.0.1"}, "port": free_port()})
        assert r.status_code == 429 and r.headers["Retry-After"] == "5"
    finally:
        for _ in held:
            cr._running.release()
    r = client.post("/api/v1/connectivity", json={"destination": {"address": "127.0.0.1"}, "port": free_port()})
    assert r.status_code == 200
