"""The event log over HTTP: list, schedule maintenance, accept, reschedule, cancel."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from diag.events import MAINTENANCE, STATUSES, EventError
from diag.units import parse_duration, parse_time
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.validate import INSTANCE_ID, json_body, string, time_param
from diag.web.openapi import arr, doc, obj, query
from diag.web.schemas import EVENT, EVENT_BODY, EVENT_PATCH_BODY, EVENT_STATUS_PARAM, TIME_IN

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
    not_before = _not_before(body.get("not_before", now), now)
    inquire = body.get("inquire", False)
    if not isinstance(inquire, bool):
        raise ApiError(422, "must be true or false", "inquire")
    try:
        duration = parse_duration(body.get("duration", "1h"))
    except (ValueError, TypeError) as e:
        raise ApiError(422, str(e), "duration") from None
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1024:
        raise ApiError(422, "must be a string of at most 1024 characters", "comment")
    try:
        event = s.events.schedule(instance_id, etype, not_before, duration, comment, now, inquire=inquire)
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
    return jsonify(event), 201


def _not_before(value: object, now: float) -> float:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return parse_time(str(value), now)
    except ValueError as e:
        raise ApiError(422, str(e), "not_before") from None


@bp.post("/events/<event_id>/accept")
@doc("Accept an Inquiring event: it becomes Scheduled (Executing at once when its time has come).",
     responses={200: EVENT})
def accept_event(event_id: str):
    auth.require("token")
    try:
        return jsonify(_service().events.accept(event_id))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None


@bp.patch("/events/<event_id>")
@doc("Reschedule an event that has not started: a new not_before, the same duration; 409 in the past or "
     "once Executing.", body=EVENT_PATCH_BODY, responses={200: EVENT})
def reschedule_event(event_id: str):
    auth.require("token")
    body = json_body()
    now = time.time()
    unknown = set(body) - {"not_before"}
    if unknown:
        raise ApiError(422, "unknown field", sorted(unknown)[0])
    if "not_before" not in body:
        raise ApiError(422, "required", "not_before")
    try:
        return jsonify(_service().events.reschedule(event_id, _not_before(body["not_before"], now), now))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None


@bp.post("/events/<event_id>/cancel")
@doc("Cancel a scheduled event.", responses={200: EVENT})
def cancel_event(event_id: str):
    auth.require("token")
    try:
        return jsonify(_service().events.cancel(event_id))
    except EventError as e:
        raise ApiError(e.status, e.message, e.field) from None
