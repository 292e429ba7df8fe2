"""Fleet: activations (admin), agent registration, an agent's own task list, and the
answer the API gives when the metrics engine behind `--store-url` fails."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify, request

from diag import fleet
from diag.commands import delivery
from diag.store.prometheus import EngineError
from diag.web import auth
from diag.web.errors import ApiError, error_response
from diag.web.openapi import doc, query
from diag.web.bodies import ActivationBody, RegisterBody, parse, schema
from diag.web.schemas import ACTIVATION, AGENT_TASKS, REGISTERED
from diag.web.validate import json_body
from diag.web.parts import parts

bp = Blueprint("fleet_api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)



@bp.app_errorhandler(EngineError)
def _engine_error(e: EngineError):
    # The engine is another service: its failure is a 424 with its reason, never a 5xx.
    return error_response(e.http_status, str(e), code=e.code)


@bp.post("/activations")
@doc("Create an activation (admin); its code is shown only in this answer.", body=schema(ActivationBody),
     responses={201: ACTIVATION})
def create_activation():
    auth.require("token")
    body = parse(ActivationBody, json_body())
    return jsonify(parts().fleet.create_activation(body.count, body.expires_in, body.description,
                                                      source_cidrs=body.source_cidrs or [])), 201


@bp.post("/agents/register")
@doc("Register an agent with an activation; answers a token bound to that instance.", body=schema(RegisterBody),
     responses={201: REGISTERED})
def register_agent():
    try:
        body = parse(RegisterBody, json_body())
    except ApiError as e:
        if e.field in ("activation_id", "activation_code"):
            raise ApiError(401, "activation_id and activation_code are required to register") from None
        raise
    activation_id, instance_id = body.activation_id, body.instance_id
    p = parts()
    if instance_id == p.instance_id:
        raise ApiError(409, f"instance {instance_id} is this server itself")
    try:
        token = p.fleet.register(activation_id, body.activation_code, instance_id, source=request.remote_addr)
    except fleet.RegistrationError as e:
        if e.audit:
            # On the server's own instance: the claimed instance id is the caller's word.
            log.warning("agent registration refused: %s (%s)", e, e.audit)
            p.events.detected(p.instance_id, "Agent.RegistrationRefused", time.time(),
                                    f"registration of {instance_id} refused: {e}", level="WARN",
                                    labels=e.audit, fold_key=f"{activation_id}|{e.audit.get('source')}")
        raise ApiError(e.status, str(e)) from None
    p.instances.register(instance_id, hostname=body.hostname, labels=body.labels or {})
    return jsonify({"instance_id": instance_id, "agent_token": token}), 201


@bp.delete("/agents/<instance_id>/token")
@doc("Revoke the agent token of an instance (a lost or replaced machine); it may then register again.",
     responses={204: None})
def revoke_agent(instance_id: str):
    auth.require("token")
    if not parts().fleet.revoke(instance_id):
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
    commands = parts().commands  # None unless remote commands are on
    if commands is None:
        # Not an empty list: a 404 tells the agent to ask again only now and then.
        raise ApiError(404, "remote commands are off on this server")
    boot, session = request.args.get("boot_id"), request.args.get("session")
    tasks = delivery.agent_tasks(commands, instance_id, boot[:64] if boot else None, session[:64] if session else None)
    return jsonify({"instance_id": instance_id, **tasks})
