"""Remote commands (API.md "Remote commands"): 404 everywhere unless the service was started
with commands enabled; then the admin token on every endpoint, loopback or not."""

from __future__ import annotations

import base64
import hmac
import time
from typing import Any

from flask import Blueprint, jsonify, request

from diag.commands import delivery, model, sendfile
from diag.commands.engine import Commands
from diag.commands.model import CommandError
from diag.commands.repository import new_id
from diag.web import auth
from diag.web.bodies import FileBody, parse, schema
from diag.web.errors import ApiError, error_response
from diag.web.openapi import arr, doc, obj, query
from diag.web.schemas import (COMMAND, COMMAND_BODY, COMMAND_PATCH_BODY, COMMAND_RECORD, INVOCATION,
                              INVOKE_BODY, LIBRARY_COMMAND, RUN_COMMAND_BODY)
from diag.web.validate import json_body
from diag.web.parts import parts

bp = Blueprint("commands_api", __name__, url_prefix="/api/v1")


def _commands() -> Commands:
    commands = parts().commands
    assert commands is not None  # _gate answered 404 otherwise
    return commands


@bp.before_request
def _gate() -> None:
    p = parts()
    if p.commands is None:  # built only with enable_commands
        raise ApiError(404, "not found")  # off: indistinguishable from a route that does not exist
    if request.endpoint == "commands_api.task_result":
        return  # the agent's own token, checked in the view
    token = p.config.token
    header = request.headers.get("Authorization", "")
    got = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token or not got or not hmac.compare_digest(got.encode(), token.encode()):
        raise ApiError(401, "remote commands need the admin token (Authorization: Bearer <token>)")


@bp.errorhandler(CommandError)
def _command_error(e: CommandError):
    return error_response(e.status, e.message, e.field, e.code)


def _audit() -> dict[str, Any]:
    token = parts().config.token or ""
    return model.audit(token, request.remote_addr, request.headers.get("User-Agent", ""))


def _known_instances(value: Any) -> list[str]:
    instances = parts().instances
    return model.known_instance_ids(value, lambda iid: instances.get(iid) is not None)


# -- saved commands ------------------------------------------------------------------------

@bp.get("/commands")
@doc("Saved commands.", responses={200: obj({"commands": arr(COMMAND)})})
def list_commands():
    return jsonify({"commands": _commands().repo.commands()})


@bp.post("/commands")
@doc("Save a command.", body=COMMAND_BODY, responses={201: COMMAND})
def create_command():
    return jsonify(_commands().create_command(model.command(json_body()), time.time())), 201


@bp.get("/commands/<command_id>")
@doc("One saved command.", responses={200: COMMAND})
def get_command(command_id: str):
    return jsonify(_existing(command_id))


@bp.put("/commands/<command_id>")
@doc("Change a saved command; fields left out keep their value.", body=COMMAND_PATCH_BODY,
     responses={200: COMMAND})
def update_command(command_id: str):
    old = _existing(command_id)
    cmd = model.command(json_body(), base=model.editable(old))
    if old.get("library_id"):
        cmd["library_id"] = old["library_id"]  # still the library's entry, as edited here
    _commands().save_command(command_id, cmd, time.time())
    return jsonify(_commands().repo.command(command_id))


@bp.post("/commands/<command_id>/clone")
@doc("Copy a saved command into a new one; fields given replace the copy's (name: the original's "
     "name with -copy).", body=COMMAND_PATCH_BODY, body_required=False, responses={201: COMMAND})
def clone_command(command_id: str):
    old = _existing(command_id)
    body = json_body() if request.get_data(cache=True) else {}
    return jsonify(_commands().clone_command(old, body, time.time())), 201


# -- the library of public commands --------------------------------------------------------

@bp.get("/command-library")
@doc("The bundled public commands (disk usage, disk resize, network, logs) and whether each is enabled.",
     responses={200: obj({"commands": arr(LIBRARY_COMMAND)})})
def list_library():
    from diag.commands import library

    enabled = _enabled_library()
    return jsonify({"commands": [{**e, "enabled": lid in enabled, "command_id": enabled.get(lid)}
                                 for lid, e in library.entries().items()]})


@bp.post("/command-library/<library_id>/enable")
@doc("Enable a public command: it is saved as a command (deleting that command disables it).",
     responses={201: COMMAND})
def enable_library(library_id: str):
    from diag.commands import library

    entry = library.entries().get(library_id)
    if entry is None:
        raise ApiError(404, f"no public command {library_id} (GET /api/v1/command-library lists them)")
    enabled = _enabled_library()
    if library_id in enabled:
        raise ApiError(409, f"{library_id} is enabled already, as command {enabled[library_id]}")
    return jsonify(_commands().create_command(dict(entry), time.time())), 201


def _enabled_library() -> dict[str, str]:
    """library id -> the saved command that enables it."""
    return {c["library_id"]: c["command_id"] for c in _commands().repo.commands() if c.get("library_id")}


@bp.delete("/commands/<command_id>")
@doc("Delete a saved command (its invocations stay).", responses={204: None})
def delete_command(command_id: str):
    if not _commands().repo.delete_command(command_id):
        raise ApiError(404, f"no command {command_id}")
    return "", 204


def _existing(command_id: str) -> dict[str, Any]:
    cmd = _commands().repo.command(command_id)
    if cmd is None:
        raise ApiError(404, f"no command {command_id}")
    return cmd


# -- invoking ------------------------------------------------------------------------------

def _invoke(cmd: dict[str, Any], body: dict[str, Any], adhoc: bool = False):
    instances = parts().instances
    b = model.invocation(body, lambda iid: instances.get(iid) is not None)
    inv = _commands().invoke(cmd, b.instance_ids, b.parameters, b.repeat_mode or "Once", b.frequency, b.timeout,
                             _audit(), adhoc=adhoc)
    return jsonify(inv), 201


@bp.post("/commands/<command_id>/invoke")
@doc("Run a saved command on instances, now, later or repeatedly.", body=INVOKE_BODY,
     responses={201: INVOCATION})
def invoke_command(command_id: str):
    return _invoke(_existing(command_id), json_body())


@bp.post("/run-command")
@doc("Create and invoke a command in one step (keep_command saves it).", body=RUN_COMMAND_BODY,
     responses={201: INVOCATION})
def run_command():
    body = json_body()
    body.setdefault("name", "run-command")
    cmd = model.command(body)
    keep = body.get("keep_command", False)
    if not isinstance(keep, bool):
        raise ApiError(422, "must be true or false", "keep_command")
    if not _commands().allowed(cmd["name"], cmd["content"], adhoc=True):
        raise ApiError(403, f"{cmd['name']!r} with this content is not on the allow-list of this service "
                            "(a one-off command needs name@sha256 there)", "content")
    command_id = new_id("c")
    # Saved even when not kept (unsaved), so the invocation can name the command it ran.
    _commands().save_command(command_id, cmd, time.time(), saved=keep)
    return _invoke({"command_id": command_id, **cmd}, body, adhoc=True)


@bp.post("/files")
@doc("Send a small file (base64 content, at most 32 KiB) to instances.", body=schema(FileBody),
     responses={201: INVOCATION})
def send_file():
    try:
        body = parse(FileBody, json_body())
    except ApiError as e:
        if e.message == "unknown field":
            raise ApiError(400, f"unknown field (the fields are {', '.join(sorted(FileBody.model_fields))})",
                           e.field) from None
        raise
    ids = _known_instances(body.instance_ids)
    if len(body.content) > sendfile.MAX_BYTES:
        raise ApiError(413, f"is {len(body.content)} bytes; at most {sendfile.MAX_BYTES} (32 KiB)", "content")
    spec = {"file_name": body.name, "content_b64": base64.b64encode(body.content).decode(),
            "target_dir": body.target_dir, "mode": body.mode, "owner": body.owner, "group": body.group,
            "overwrite": body.overwrite, "timeout": body.timeout, "description": body.description}
    return jsonify(_commands().send_file(spec, ids, _audit())), 201


# -- invocations ---------------------------------------------------------------------------

@bp.get("/invocations")
@doc("Invocations, newest first, each with its last 5 records per instance.",
     responses={200: obj({"invocations": arr(INVOCATION)})}, params=[query("command_id"), query("status")])
def list_invocations():
    status = request.args.get("status")
    cmds = _commands()
    out = [cmds.invocation(i["invoke_id"], max_records=5)
           for i in cmds.repo.invocations(request.args.get("command_id") or None)]
    return jsonify({"invocations": [i for i in out if not status or i["status"] == status]})


@bp.get("/invocations/<invoke_id>")
@doc("One invocation with its instances and records.", responses={200: INVOCATION})
def get_invocation(invoke_id: str):
    return jsonify(_commands().invocation(invoke_id))


@bp.post("/invocations/<invoke_id>/stop")
@doc("Stop an invocation: running records become Stopping, then Stopped.", responses={200: INVOCATION})
def stop_invocation(invoke_id: str):
    return jsonify(_commands().stop(invoke_id))


# -- the agent's side (GET .../tasks is fleet_routes', which calls delivery.agent_tasks) -----

@bp.post("/agents/<instance_id>/tasks/<task_id>/result")
@doc("An agent reports a record's final state, exit code and output (its own agent token).",
     body=schema(delivery.TaskResult), responses={200: COMMAND_RECORD})
def task_result(instance_id: str, task_id: str):
    auth.agent_for(instance_id)
    return jsonify(delivery.result(_commands(), instance_id, task_id, json_body()))
