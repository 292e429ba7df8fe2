"""Instances and their health."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from diag.web import auth
from diag.web.errors import ApiError
from diag.web.openapi import BOOL, arr, doc, obj
from diag.web.schemas import HEALTH, INSTANCE
from diag.web.validate import json_body

bp = Blueprint("instances_api", __name__, url_prefix="/api/v1")


def _service():
    return current_app.extensions["diag"]["service"]


def _instance(inst: dict, health: dict) -> dict:
    return {"instance_id": inst["instance_id"], "hostname": inst["hostname"], "labels": inst["labels"],
            "local": inst["local"], "monitoring": inst["monitoring"], "first_seen": inst["first_seen"], "last_seen": inst["last_seen"],
            "health_status": health["health_status"], "health_reasons": health["health_reasons"],
            "latest_report_id": health["latest_report_id"]}


@bp.get("/instances")
@doc("Every instance with its health.", responses={200: obj({"instances": arr(INSTANCE)})})
def list_instances():
    s = _service()
    return jsonify({"instances": [_instance(i, s.health_of(i["instance_id"])) for i in s.instances.list()]})


@bp.get("/instances/<instance_id>")
@doc("One instance with its health and latest report.", responses={200: INSTANCE})
def get_instance(instance_id: str):
    s = _service()
    inst = s.instances.get(instance_id)
    if inst is None:
        raise ApiError(404, f"no instance {instance_id}")
    return jsonify(_instance(inst, s.health_of(instance_id)))


@bp.get("/instances/<instance_id>/health")
@doc("The health state now and the checks behind it.", responses={200: HEALTH})
def get_health(instance_id: str):
    h = _service().health_of(instance_id)
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
    s = _service()
    try:
        s.set_monitoring(instance_id, body["monitoring"])
    except KeyError:
        raise ApiError(404, f"no instance {instance_id}") from None
    return jsonify(_instance(s.instances.get(instance_id), s.health_of(instance_id)))
