"""The Events page: a filterable list, and scheduling or canceling maintenance."""

from __future__ import annotations

import time
from typing import Any

from flask import redirect, render_template, request, url_for

from dashboards import timefmt
from dashboards.data import parse_input_time
from dashboards.views import bp, service
from diag.events import LEVELS, MAINTENANCE, STATUSES, TYPES, EventError
from diag.units import parse_duration

SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "31d": 31 * 86400, "60d": 60 * 86400}
PAGE = 200


def _filters() -> dict[str, str]:
    f = {k: request.args.get(k, "") for k in ("instance_id", "type", "level", "status", "since")}
    if f["since"] not in SINCE:
        f["since"] = "7d"
    return f


def _page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200,
          notice: str | None = None) -> Any:
    s = service()
    now = time.time()
    f = _filters()
    events = s.events.list(f["instance_id"] or None, types=[f["type"]] if f["type"] else None,
                           status=f["status"] or None, since=now - SINCE[f["since"]], limit=PAGE * 5)
    if f["level"]:
        events = [e for e in events if e["level"] == f["level"]]
    upcoming = [e for e in s.events.list(status="Scheduled", limit=100)
                + s.events.list(status="Executing", limit=100)]
    default_form = {"instance_id": s.instance_id, "type": MAINTENANCE[0],
                    "not_before": now + 600, "duration": "1h", "comment": ""}
    return render_template("events.html", events=events[:PAGE], more=len(events) > PAGE, f=f, since=SINCE,
                           types=sorted(TYPES), levels=LEVELS, statuses=STATUSES, maintenance=MAINTENANCE,
                           instances=s.instances.list(), upcoming=upcoming, form=form or default_form,
                           errors=errors or {}, notice=notice or request.args.get("notice")), status


@bp.get("/events")
def events() -> Any:
    return _page()


@bp.post("/events/schedule")
def schedule() -> Any:
    s = service()
    now = time.time()
    form = {k: request.form.get(k, "").strip() for k in ("instance_id", "type", "not_before", "duration", "comment")}
    errors: dict[str, str] = {}
    if s.instances.get(form["instance_id"]) is None:
        errors["instance_id"] = "choose an instance from the list"
    if form["type"] not in MAINTENANCE:
        errors["type"] = "choose a maintenance type"
    not_before = duration = None
    try:
        not_before = parse_input_time(form["not_before"] or "now", now, timefmt.chosen()[1])
    except (ValueError, IndexError):
        errors["not_before"] = f"a start time like {timefmt.input_value(now + 3600)} (in {timefmt.zone_name()})"
    try:
        duration = parse_duration(form["duration"])
    except ValueError:
        errors["duration"] = "a duration like 30m, 2h or 1d"
    if len(form["comment"]) > 1024:
        errors["comment"] = "at most 1024 characters"
    if not errors and not_before is not None and duration is not None:
        try:
            event = s.events.schedule(form["instance_id"], form["type"], not_before, duration, form["comment"], now)
        except EventError as e:
            errors[e.field or "type"] = e.message
        else:
            return redirect(url_for("dash.events", notice=f"scheduled {event['type']} ({event['event_id']})"), 303)
    # Keep what was typed: the form shows it back with each error beside its field.
    shown = {**form, "not_before": not_before if not_before is not None else form["not_before"]}
    return _page(form=shown, errors=errors, status=422)


@bp.post("/events/<event_id>/cancel")
def cancel(event_id: str) -> Any:
    try:
        event = service().events.cancel(event_id)
    except EventError as e:
        return _page(notice=f"could not cancel {event_id}: {e.message}", status=e.status)
    return redirect(url_for("dash.events", notice=f"canceled {event['type']} ({event_id})"), 303)
