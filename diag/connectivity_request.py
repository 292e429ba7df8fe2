"""A connectivity question as the API (POST /api/v1/connectivity) and the Connectivity page
both ask it: the body's fields checked, the instances it names known, and the walk run
unless MAX_RUNNING are under way already. Each refusal is an ApiError naming its field."""

from __future__ import annotations

import ipaddress
import threading
from typing import TYPE_CHECKING, Any

from collectors.roots import Roots
from diag import connectivity
from diag.errors import ApiError
from diag.fields import finite
from diag.host_facts import Facts
from diag.identity import INSTANCE_ID
from diag.instances import Instances

if TYPE_CHECKING:
    from diag.commands.engine import Commands

_FIELDS = {"source", "destination", "port", "protocol", "timeout"}
# Each walk holds a server thread for up to a few seconds (the probe, the firewall read): a
# few at once, so that a burst of them never takes all of waitress's eight threads.
MAX_RUNNING = 2
_running = threading.BoundedSemaphore(MAX_RUNNING)


class Connectivity:
    """The connectivity use case over this service's parts; a `connectivity.Host` for the walk."""

    def __init__(self, *, local_id: str, roots: Roots, facts: Facts, instances: Instances,
                 commands: Commands | None) -> None:
        self.local_id = local_id
        self.roots = roots
        self.commands = commands
        self._facts = facts
        self._instances = instances

    def facts_of(self, instance_id: str) -> tuple[dict | None, float | None]:
        return self._facts.of(instance_id)

    def ask(self, body: Any) -> dict[str, Any]:
        """The walk's answer for a request body; 422 for a bad field, 404 for an unknown
        instance, 429 when MAX_RUNNING walks are under way."""
        req = parse(body, self.local_id)
        if self._instances.get(req["source_id"]) is None:
            raise ApiError(404, f"no instance {req['source_id']}", "source")
        if req["dest_id"] is not None and self._instances.get(req["dest_id"]) is None:
            raise ApiError(404, f"no instance {req['dest_id']}", "destination.instance_id")
        return self._run(req)

    def _run(self, req: dict[str, Any]) -> dict[str, Any]:
        """The walk, unless MAX_RUNNING are under way already (429: try again in a few seconds)."""
        if not _running.acquire(blocking=False):
            raise ApiError(429, f"{MAX_RUNNING} connectivity diagnoses are running; try again in a few seconds",
                           headers={"Retry-After": "5"})
        try:
            return connectivity.diagnose(self, **req)
        finally:
            _running.release()


def parse(body: dict[str, Any], local_id: str) -> dict[str, Any]:
    """The request's fields, each refused with a 4xx naming it (the instances' existence is
    checked by `ask`)."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise ApiError(422, "unknown field", sorted(unknown)[0])
    source = _instance_id(body.get("source", local_id), "source")
    dest = body.get("destination")
    if not isinstance(dest, dict) or len(dest) != 1 or not {"instance_id", "address"} & set(dest):
        raise ApiError(422, "must be an object with either instance_id or address", "destination")
    dest_id, address = None, None
    if "instance_id" in dest:
        dest_id = _instance_id(dest["instance_id"], "destination.instance_id")
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
    timeout = finite(body.get("timeout", connectivity.DEFAULT_TIMEOUT_S), "timeout")
    if not 0.1 <= timeout <= 3:
        raise ApiError(422, "must be from 0.1 to 3 seconds", "timeout")
    return {"source_id": source, "dest_id": dest_id, "address": address, "port": port, "protocol": protocol,
            "timeout": timeout}


def _instance_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ApiError(422, "must be a non-empty string of at most 128 characters", field)
    if not INSTANCE_ID.match(value):
        raise ApiError(422, f"{value[:80]!r} is not a valid name ({INSTANCE_ID.pattern})", field)
    return value
