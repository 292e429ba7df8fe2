"""The Events page: a filterable list, and scheduling, accepting, rescheduling or canceling
maintenance. Detected events are shown in an operator's words (ongoing while the fault is
still being reported, detected once it stopped); maintenance keeps the seed's states."""

from __future__ import annotations

import time
from typing import Any

from flask import redirect, render_template, request, url_for

from dashboards import timefmt
from dashboards.data import parse_input_time
from dashboards.blueprint import bp, parts
from diag.events import FOLD_WINDOW, LEVELS, MAINTENANCE, STATUSES, TYPES, EventError
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
    s = parts()
    now = time.time()
    f = _filters()
    events = s.events.list(f["instance_id"] or None, types=[f["type"]] if f["type"] else None,
                           status=f["status"] or None, since=now - SINCE[f["since"]], limit=PAGE * 5)
    if f["level"]:
        events = [e for e in events if e["level"] == f["level"]]
    upcoming = [e for status in ("Inquiring", "Scheduled", "Executing") for e in s.events.list(status=status, limit=100)]
    default_form = {"instance_id": s.instance_id, "type": MAINTENANCE[0],
                    "not_before": now + 600, "duration": "1h", "comment": "", "inquire": ""}
    return render_template("events.html", events=events[:PAGE], more=len(events) > PAGE, f=f, since=SINCE,
                           types=sorted(TYPES), levels=LEVELS, statuses=STATUSES, maintenance=MAINTENANCE,
                           instances=s.instances.list(), upcoming=upcoming, form=form or default_form,
                           errors=errors or {}, notice=notice or request.args.get("notice")), status


@bp.app_template_global("shown_status")
def shown_status(e: dict[str, Any], now: float | None = None) -> str:
    """The status in an operator's words: a fault reported again and again is ongoing while its
    repeats keep coming (they fold for FOLD_WINDOW), detected otherwise; maintenance keeps its state."""
    if e["type"] in MAINTENANCE or e["status"] != "Executed":
        return e["status"]
    now = time.time() if now is None else now
    repeated = (e.get("details") or {}).get("count", 1) > 1
    return "ongoing" if repeated and now - e["last_time"] < FOLD_WINDOW else "detected"


@bp.get("/events")
def events() -> Any:
    return _page()


@bp.post("/events/schedule")
def schedule() -> Any:
    s = parts()
    now = time.time()
    form = {k: request.form.get(k, "").strip() for k in ("instance_id", "type", "not_before", "duration", "comment",
                                                          "inquire")}
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
            event = s.events.schedule(form["instance_id"], form["type"], not_before, duration, form["comment"], now,
                                      inquire=bool(form["inquire"]))
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
        event = parts().events.cancel(event_id)
    except EventError as e:
        return _page(notice=f"could not cancel {event_id}: {e.message}", status=e.status)
    return redirect(url_for("dash.events", notice=f"canceled {event['type']} ({event_id})"), 303)


@bp.post("/events/<event_id>/accept")
def accept(event_id: str) -> Any:
    try:
        event = parts().events.accept(event_id)
    except EventError as e:
        return _page(notice=f"could not accept {event_id}: {e.message}", status=e.status)
    return redirect(url_for("dash.events", notice=f"accepted {event['type']} ({event_id}): {event['status']}"), 303)


@bp.post("/events/<event_id>/reschedule")
def reschedule(event_id: str) -> Any:
    now = time.time()
    text = request.form.get("not_before", "").strip()
    try:
        not_before = parse_input_time(text, now, timefmt.chosen()[1])
    except (ValueError, IndexError):
        return _page(notice=f"could not reschedule {event_id}: a start time like {timefmt.input_value(now + 3600)} "
                            f"(in {timefmt.zone_name()})", status=422)
    try:
        event = parts().events.reschedule(event_id, not_before, now)
    except EventError as e:
        return _page(notice=f"could not reschedule {event_id}: {e.message}", status=e.status)
    return redirect(url_for("dash.events", notice=f"rescheduled {event['type']} ({event_id}) to "
                                                  f"{timefmt.input_value(event['not_before'])}"), 303)
