"""The event log over HTTP: list, schedule maintenance, cancel."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from diag.events import MAINTENANCE, STATUSES, EventError
from diag.units import parse_duration, parse_time
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.validate import INSTANCE_ID, json_body, string, time_param
from diag.web.openapi import arr, doc, obj, query
from diag.web.schemas import EVENT, EVENT_BODY, EVENT_STATUS_PARAM, TIME_IN

bp = Blueprint("events_api", __name__, url_prefix="/api/v1")


def _service():
    return current_app.extensions["diag"]["service"]


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
    events = _service().events.list(request.args.get("instance_id"), types=types, status=status,
                                    since=_time_arg("since", now), until=_time_arg("until", now))
    return jsonify({"events": events})


@bp.post("/events")
@doc("Schedule maintenance; the instance is Maintaining while it executes.", body=EVENT_BODY,
     responses={201: EVENT})
def schedule_event():
    auth.require("token")
    s = _service()
    body = json_body()
    now = time.time()
    instance_id = string(body.get("instance_id", s.instance_id), "instance_id", INSTANCE_ID, 128)
    if s.instances.get(instance_id) is None:
        raise ApiError(404, f"no instance {instance_id}", "instance_id")
    etype = body.get("type")
    if etype not in MAINTENANCE:
        raise ApiError(422, f"must be one of {', '.join(MAINTENANCE)}", "type")
    try:
        nb = body.get("not_before", now)
        not_before = float(nb) if isinstance(nb, (int, float)) and not isinstance(nb, bool) else parse_time(str(nb), now)
    except ValueError as e:
        raise ApiError(422, str(e), "not_before") from None
    try:
        duration = parse_duration(body.get("duration", "1h"))
    except (ValueError, TypeError) as e:
        raise ApiError(422, str(e), "duration") from None
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1024:
        raise ApiError(422, "must be a string of at most 1024 characters", "comment")
    try:
        event = s.events.schedule(instance_id, etype, not_before, duration, comment, now)
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
    return jsonify(event), 201


@bp.post("/events/<event_id>/cancel")
@doc("Cancel a scheduled event.", responses={200: EVENT})
def cancel_event(event_id: str):
    auth.require("token")
    try:
        return jsonify(_service().events.cancel(event_id))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
