"""POST /api/v1/connectivity: the path from a source instance to a destination, step by step."""

from __future__ import annotations

import ipaddress
import threading

from flask import Blueprint, current_app, jsonify

from diag import connectivity
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.openapi import doc, ref
from diag.web.schemas import CONNECTIVITY, CONNECTIVITY_BODY
from diag.web.validate import INSTANCE_ID, finite, json_body, string

bp = Blueprint("connectivity_api", __name__, url_prefix="/api/v1")

_FIELDS = {"source", "destination", "port", "protocol", "timeout"}
# Each walk holds a server thread for up to a few seconds (the probe, the firewall read): a
# few at once, so that a burst of them never takes all of waitress's eight threads.
MAX_RUNNING = 2
_running = threading.BoundedSemaphore(MAX_RUNNING)


def parse(body: dict, local_id: str) -> dict:
    """The request's fields, each refused with a 4xx naming it (the instances' existence is
    checked by the caller)."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise ApiError(422, "unknown field", sorted(unknown)[0])
    source = string(body.get("source", local_id), "source", INSTANCE_ID, 128)
    dest = body.get("destination")
    if not isinstance(dest, dict) or len(dest) != 1 or not {"instance_id", "address"} & set(dest):
        raise ApiError(422, "must be an object with either instance_id or address", "destination")
    dest_id, address = None, None
    if "instance_id" in dest:
        dest_id = string(dest["instance_id"], "destination.instance_id", INSTANCE_ID, 128)
    else:
        raw = dest["address"]
        try:
            if not isinstance(raw, str) or "%" in raw or len(raw) > 39:
                raise ValueError
            address = str(ipaddress.ip_address(raw))
        except ValueError:
            raise ApiError(422, "must be an IPv4 or IPv6 address (no scope)", "destination.address") from None
    port = body.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ApiError(422, "must be a whole number from 1 to 65535", "port")
    protocol = body.get("protocol", "tcp")
    if protocol not in connectivity.PROTOCOLS:
        raise ApiError(422, "must be tcp, udp or icmp", "protocol")
    timeout = body.get("timeout", connectivity.DEFAULT_TIMEOUT_S)
    timeout = finite(timeout, "timeout")
    if not 0.1 <= timeout <= 3:
        raise ApiError(422, "must be from 0.1 to 3 seconds", "timeout")
    return {"source_id": source, "dest_id": dest_id, "address": address, "port": port, "protocol": protocol,
            "timeout": timeout}


@bp.post("/connectivity")
@doc("Diagnose connectivity from a source instance (default: this one) to an instance or address: the "
     "source's route, its outbound and the destination's inbound firewall rules, the destination's "
     "listener and a real probe (TCP connect, UDP, ICMP echo), each with a verdict and evidence. Needs "
     "the admin token when one is set: the probe makes outbound connections.",
     body=CONNECTIVITY_BODY, responses={200: CONNECTIVITY, 429: ref("Error")})
def diagnose_connectivity():
    auth.require("token")
    service = current_app.extensions["diag"]["service"]
    req = parse(json_body(), service.instance_id)
    if service.instances.get(req["source_id"]) is None:
        raise ApiError(404, f"no instance {req['source_id']}", "source")
    if req["dest_id"] is not None and service.instances.get(req["dest_id"]) is None:
        raise ApiError(404, f"no instance {req['dest_id']}", "destination.instance_id")
    return jsonify(run(service, req))


def run(service, req: dict) -> dict:
    """The walk, unless MAX_RUNNING are under way already (429: try again in a few seconds)."""
    if not _running.acquire(blocking=False):
        raise ApiError(429, f"{MAX_RUNNING} connectivity diagnoses are running; try again in a few seconds",
                       headers={"Retry-After": "5"})
    try:
        return connectivity.diagnose(service, **req)
    finally:
        _running.release()
