"""A connectivity question as the API (POST /api/v1/connectivity) and the Connectivity page
both ask it: the body's fields checked, the instances it names known, and the walk run
unless MAX_RUNNING are under way already. Each refusal is an ApiError naming its field."""

from __future__ import annotations

import ipaddress
import math
import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from collectors.roots import Roots
from diag import connectivity
from diag.alerting import policy
from diag.errors import ApiError
from diag.host_facts import Facts
from diag.identity import INSTANCE_ID
from diag.instances import Instances

if TYPE_CHECKING:
    from diag.commands.engine import Commands

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


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _instance_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError("must be a non-empty string of at most 128 characters")
    if not INSTANCE_ID.match(value):
        raise ValueError(f"{value[:80]!r} is not a valid name ({INSTANCE_ID.pattern})")
    return value


def _address(raw: Any) -> str:
    try:
        if not isinstance(raw, str) or "%" in raw or len(raw) > 39:
            raise ValueError
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address (no scope)") from None


def _one_of(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1 or not {"instance_id", "address"} & set(value):
        raise ValueError("must be an object with either instance_id or address")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a whole number from 1 to 65535")
    return value


def _protocol(value: Any) -> str:
    if value not in connectivity.PROTOCOLS:
        raise ValueError("must be tcp, udp or icmp")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if not 0.1 <= value <= 3:
        raise ValueError("must be from 0.1 to 3 seconds")
    return float(value)


# Each field's own check gives the refusal its message; the constraints beside it are its schema.
InstanceId = Annotated[str, Field(min_length=1, max_length=128, pattern=INSTANCE_ID.pattern),
                       BeforeValidator(_instance_id)]
# An address as ipaddress.ip_address reads it, without an IPv6 scope (`%eth0`: refused).
Address = Annotated[str, BeforeValidator(_address), WithJsonSchema({"anyOf": [
    {"type": "string", "format": "ipv4", "maxLength": 15},
    {"type": "string", "format": "ipv6", "maxLength": 39, "pattern": "^[0-9A-Fa-f:.]+$"}]})]


def _either(schema: dict[str, Any]) -> None:
    """The document's form of `_one_of`: exactly one of the properties."""
    props = schema.pop("properties")
    for k in ("type", "additionalProperties"):
        schema.pop(k, None)
    schema["oneOf"] = [{"type": "object", "properties": {k: v}, "required": [k], "additionalProperties": False}
                       for k, v in props.items()]


class Destination(_Closed):
    """An instance or an address: exactly one (`_one_of`)."""
    model_config = ConfigDict(json_schema_extra=_either)
    # None: the other one was given (a null is refused by the field's check, which only a value meets).
    instance_id: InstanceId = Field(None)
    address: Address = Field(None)


class Question(_Closed):
    """From a source instance to an instance or an address, on a port."""
    source: InstanceId = Field(None)  # absent: the local instance
    destination: Annotated[Destination, BeforeValidator(_one_of)]
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_port)]  # icmp ignores it
    protocol: Annotated[Literal["tcp", "udp", "icmp"], BeforeValidator(_protocol)] = "tcp"
    # The probe's deadline in seconds.
    timeout: Annotated[float, Field(ge=0.1, le=3), BeforeValidator(_timeout)] = connectivity.DEFAULT_TIMEOUT_S


assert Question.model_fields["protocol"].annotation.__args__ == connectivity.PROTOCOLS  # type: ignore[union-attr]


def parse(body: Any, local_id: str) -> dict[str, Any]:
    """The request's fields as `connectivity.diagnose` takes them, the first bad one refused
    with a 4xx naming it (an unknown field before the others, as the body reads; the
    instances' existence is checked by `ask`)."""
    try:
        q = policy.parse(Question, body)
    except policy.PolicyError as e:
        first = next((p for p in e.errors if p.get("message") == "unknown field" and "." not in p.get("field", ".")),
                     e.errors[0])
        raise ApiError(e.status, first["message"], first.get("field")) from None
    return {"source_id": q.source or local_id, "dest_id": q.destination.instance_id,
            "address": q.destination.address, "port": q.port, "protocol": q.protocol, "timeout": q.timeout}
