"""Instances and their health."""

from __future__ import annotations

import re
import time

from flask import Blueprint, jsonify, request

from diag.kernel_lines import MAX_LIMIT, parse_level
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.openapi import BOOL, arr, doc, obj, query
from diag.web.schemas import HEALTH, INSTANCE, KERNEL_LEVEL_PARAM, KERNEL_LOG, TIME_IN
from diag.web.validate import json_body, time_param
from diag.web.parts import parts

bp = Blueprint("instances_api", __name__, url_prefix="/api/v1")



def _instance(inst: dict, health: dict) -> dict:
    return {"instance_id": inst["instance_id"], "hostname": inst["hostname"], "labels": inst["labels"],
            "local": inst["local"], "monitoring": inst["monitoring"], "first_seen": inst["first_seen"], "last_seen": inst["last_seen"],
            "health_status": health["health_status"], "health_reasons": health["health_reasons"],
            "latest_report_id": health["latest_report_id"]}


@bp.get("/instances")
@doc("Every instance with its health.", responses={200: obj({"instances": arr(INSTANCE)})})
def list_instances():
    s = parts()
    return jsonify({"instances": [_instance(i, s.diagnoser.health_of(i["instance_id"])) for i in s.instances.list()]})


@bp.get("/instances/<instance_id>")
@doc("One instance with its health and latest report.", responses={200: INSTANCE})
def get_instance(instance_id: str):
    s = parts()
    inst = s.instances.get(instance_id)
    if inst is None:
        raise ApiError(404, f"no instance {instance_id}")
    return jsonify(_instance(inst, s.diagnoser.health_of(instance_id)))


@bp.get("/instances/<instance_id>/health")
@doc("The health state now and the checks behind it.", responses={200: HEALTH})
def get_health(instance_id: str):
    h = parts().diagnoser.health_of(instance_id)
    if h is None:
        raise ApiError(404, f"no instance {instance_id}")
    return jsonify(h)


@bp.patch("/instances/<instance_id>")
@doc("Switch monitoring of an instance off (`NotApplicable`: no scheduled diagnosis, no alerts; "
     "its data is still stored) or on again.", body=obj({"monitoring": BOOL}, extra=False), responses={200: INSTANCE})
def change_instance(instance_id: str):
    auth.require("token")
    body = json_body()
    unknown = set(body) - {"monitoring"}
    if unknown:
        raise ApiError(422, "unknown field", sorted(unknown)[0])
    if not isinstance(body.get("monitoring"), bool):
        raise ApiError(422, "monitoring must be true or false", "monitoring")
    s = parts()
    try:
        s.diagnoser.set_monitoring(instance_id, body["monitoring"])
    except KeyError:
        raise ApiError(404, f"no instance {instance_id}") from None
    return jsonify(_instance(s.instances.get(instance_id), s.diagnoser.health_of(instance_id)))


@bp.delete("/instances/<instance_id>")
@doc("Forget an instance that no longer exists: it leaves the instance list, the dashboard, /metrics "
     "and alert evaluation, and its firing alerts resolve. Its samples, events and reports stay, "
     "readable by its id, until retention deletes them. If it reports again it is a new instance. "
     "The server's own instance cannot be forgotten (409).", responses={204: None})
def forget_instance(instance_id: str):
    auth.require("token")
    try:
        parts().roster.forget(instance_id)
    except KeyError:
        raise ApiError(404, f"no instance {instance_id}") from None
    except ValueError as e:
        raise ApiError(409, str(e)) from None
    return "", 204


_LIMIT = re.compile(r"[1-9][0-9]{0,3}")


def kernel_log_args(args, now: float) -> dict:
    """The kernel-log filters of a request (the API's and the page's): 400 naming the parameter."""
    out: dict = {}
    for name in ("since", "until"):
        if name in args:
            out[name] = time_param(args[name], now, name)
    if "level" in args:
        try:
            out["max_level"] = parse_level(args["level"])
        except ValueError as e:
            raise ApiError(400, str(e), "level") from None
    if "limit" in args:
        raw = args["limit"]
        if not (_LIMIT.fullmatch(raw) and int(raw) <= MAX_LIMIT):
            raise ApiError(400, f"must be an integer from 1 to {MAX_LIMIT}", "limit")
        out["limit"] = int(raw)
    return out


@bp.get("/instances/<instance_id>/kernel-log")
@doc("The instance's system log: the kernel lines kept (the newest `limit` that match, oldest "
     "first), from the server's own kernel log or the instance's agent.", responses={200: KERNEL_LOG}, params=[
    query("since", TIME_IN, description="lines at or after this time"),
    query("until", TIME_IN, description="lines at or before this time"),
    query("level", KERNEL_LEVEL_PARAM, description="this severity or a more severe one (a syslog name or 0-7)"),
    query("limit", {"type": "string", "pattern": r"^([1-9][0-9]{0,2}|[1-4][0-9]{3}|5000)$"},
          description=f"at most this many lines, 1 to {MAX_LIMIT} (default 1000)")])
def kernel_log(instance_id: str):
    s = parts()
    if s.instances.get(instance_id) is None:
        raise ApiError(404, f"no instance {instance_id}")
    args = kernel_log_args(request.args, time.time())
    lines, more = s.kernel_log.lines(instance_id, **args)
    return jsonify({"instance_id": instance_id, "lines": lines, "truncated": more,
                    "kept": {"lines": s.kernel_log.max_lines, "seconds": s.kernel_log.keep}})
