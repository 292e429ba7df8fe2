"""Fleet: activations (admin), agent registration, an agent's own task list, and the
answer the API gives when the metrics engine behind `--store-url` fails."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request

from diag import fleet
from diag.commands import delivery
from diag.store.prometheus import EngineError
from diag.units import parse_duration
from diag.web import auth
from diag.web.errors import ApiError, error_response
from diag.web.openapi import doc, query
from diag.web.schemas import ACTIVATION, ACTIVATION_BODY, AGENT_TASKS, REGISTERED, REGISTER_BODY
from diag.web.validate import INSTANCE_ID, json_body, labels, string

bp = Blueprint("fleet_api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)


def _service():
    return current_app.extensions["diag"]["service"]


@bp.app_errorhandler(EngineError)
def _engine_error(e: EngineError):
    # The engine is another service: its failure is a 424 with its reason, never a 5xx.
    return error_response(e.http_status, str(e), code=e.code)


@bp.post("/activations")
@doc("Create an activation (admin); its code is shown only in this answer.", body=ACTIVATION_BODY,
     responses={201: ACTIVATION})
def create_activation():
    auth.require("token")
    body = json_body()
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= fleet.MAX_COUNT:
        raise ApiError(422, f"must be a whole number from 1 to {fleet.MAX_COUNT}", "count")
    raw = body.get("expires_in", "1h")
    try:
        if isinstance(raw, bool):  # float(True) is 1.0: a boolean is no duration (the document says so)
            raise TypeError
        expires_in = parse_duration(raw) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ApiError(422, "must be a duration like 1h or a number of seconds", "expires_in") from None
    if not 0 < expires_in <= fleet.MAX_EXPIRES:
        raise ApiError(422, "must be more than 0 and at most 365d", "expires_in")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 1000:
        raise ApiError(422, "must be a string of at most 1000 characters", "description")
    try:
        cidrs = fleet.parse_cidrs(body.get("source_cidrs"))
    except ValueError as e:
        where, _, message = str(e).partition(": ")
        raise ApiError(422, message, "source_cidrs" + where) from None
    return jsonify(_service().fleet.create_activation(count, expires_in, description, source_cidrs=cidrs)), 201


@bp.post("/agents/register")
@doc("Register an agent with an activation; answers a token bound to that instance.", body=REGISTER_BODY,
     responses={201: REGISTERED})
def register_agent():
    body = json_body()
    activation_id, code = body.get("activation_id"), body.get("activation_code")
    if not isinstance(activation_id, str) or not isinstance(code, str) or not activation_id or not code:
        raise ApiError(401, "activation_id and activation_code are required to register")
    instance_id = string(body.get("instance_id"), "instance_id", INSTANCE_ID, 128)
    hostname = body.get("hostname", "")
    if not isinstance(hostname, str) or len(hostname) > 255:
        raise ApiError(422, "must be a string of at most 255 characters", "hostname")
    inst_labels = labels(body.get("labels"), "labels")
    service = _service()
    if instance_id == service.instance_id:
        raise ApiError(409, f"instance {instance_id} is this server itself")
    try:
        token = service.fleet.register(activation_id, code, instance_id, source=request.remote_addr)
    except fleet.RegistrationError as e:
        if e.audit:
            # On the server's own instance: the claimed instance id is the caller's word.
            log.warning("agent registration refused: %s (%s)", e, e.audit)
            service.events.detected(service.instance_id, "Agent.RegistrationRefused", time.time(),
                                    f"registration of {instance_id} refused: {e}", level="WARN",
                                    labels=e.audit, fold_key=f"{activation_id}|{e.audit.get('source')}")
        raise ApiError(e.status, str(e)) from None
    service.instances.register(instance_id, hostname=hostname, labels=inst_labels)
    return jsonify({"instance_id": instance_id, "agent_token": token}), 201


@bp.delete("/agents/<instance_id>/token")
@doc("Revoke the agent token of an instance (a lost or replaced machine); it may then register again.",
     responses={204: None})
def revoke_agent(instance_id: str):
    auth.require("token")
    if not _service().fleet.revoke(instance_id):
        raise ApiError(404, f"instance {instance_id} has no agent token")
    return "", 204


@bp.get("/agents/<instance_id>/tasks")
@doc("The agent's pending remote-command tasks and stop orders (its own agent token only).",
     responses={200: AGENT_TASKS},
     params=[query("boot_id", description="the agent's boot id, to fire reboot invocations"),
             query("session", description="new with each agent process: the tasks an earlier one took fail "
                                          "(InstanceRestarted)")])
def agent_tasks(instance_id: str):
    auth.agent_for(instance_id)
    commands = _service().commands  # None unless remote commands are on
    if commands is None:
        # Not an empty list: a 404 tells the agent to ask again only now and then.
        raise ApiError(404, "remote commands are off on this server")
    boot, session = request.args.get("boot_id"), request.args.get("session")
    tasks = delivery.agent_tasks(commands, instance_id, boot[:64] if boot else None, session[:64] if session else None)
    return jsonify({"instance_id": instance_id, **tasks})
