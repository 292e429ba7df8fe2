"""The event log over HTTP: list, schedule maintenance, accept, reschedule, cancel."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from diag.events import STATUSES, EventError
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.bodies import EventBody, EventPatchBody, parse, schema
from diag.web.validate import json_body, time_param
from diag.web.openapi import arr, doc, obj, query
from diag.web.schemas import EVENT, EVENT_STATUS_PARAM, TIME_IN
from diag.web.parts import parts

bp = Blueprint("events_api", __name__, url_prefix="/api/v1")



def _time_arg(name: str, now: float) -> float | None:
    if name not in request.args:
        return None
    return time_param(request.args[name], now, name)


@bp.get("/events")
@doc("The event log, newest first.", responses={200: obj({"events": arr(EVENT)})}, params=[
    query("instance_id"), query("type", description="comma-separated types"), query("status", EVENT_STATUS_PARAM),
    query("since", TIME_IN), query("until", TIME_IN)])
def list_events():
    now = time.time()
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}", "status")
    types = [t for t in request.args.get("type", "").split(",") if t]
    events = parts().events.list(request.args.get("instance_id"), types=types, status=status,
                                    since=_time_arg("since", now), until=_time_arg("until", now))
    return jsonify({"events": events})


@bp.post("/events")
@doc("Schedule maintenance; the instance is Maintaining while it executes.", body=schema(EventBody),
     responses={201: EVENT})
def schedule_event():
    auth.require("token")
    s = parts()
    now = time.time()
    body = parse(EventBody, json_body(), now=now)
    instance_id = body.instance_id or s.instance_id
    if s.instances.get(instance_id) is None:
        raise ApiError(404, f"no instance {instance_id}", "instance_id")
    not_before = now if body.not_before is None else body.not_before
    try:
        event = s.events.schedule(instance_id, body.type, not_before, body.duration, body.comment, now,
                                  inquire=body.inquire)
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
    return jsonify(event), 201


@bp.post("/events/<event_id>/accept")
@doc("Accept an Inquiring event: it becomes Scheduled (Executing at once when its time has come).",
     responses={200: EVENT})
def accept_event(event_id: str):
    auth.require("token")
    try:
        return jsonify(parts().events.accept(event_id))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None


@bp.patch("/events/<event_id>")
@doc("Reschedule an event that has not started: a new not_before, the same duration; 409 in the past or "
     "once Executing.", body=schema(EventPatchBody), responses={200: EVENT})
def reschedule_event(event_id: str):
    auth.require("token")
    now = time.time()
    body = parse(EventPatchBody, json_body(), now=now)
    try:
        return jsonify(parts().events.reschedule(event_id, body.not_before, now))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None


@bp.post("/events/<event_id>/cancel")
@doc("Cancel a scheduled event.", responses={200: EVENT})
def cancel_event(event_id: str):
    auth.require("token")
    try:
        return jsonify(parts().events.cancel(event_id))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
