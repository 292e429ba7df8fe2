"""The Commands page: saved commands (create, edit, delete), running one on chosen
instances, an invocation's records with their output, and stopping it; and the commands
a Diagnosis report offers beside a failing check, run only after a confirmation.

Everything here calls `service.commands` (diag/commands/engine.py) in-process. Like the
JSON API (diag/web/commands_routes.py) it is not there at all unless the service runs
with commands enabled, and when it is, every page (reading too: scripts and their output
can hold secrets) needs the admin login.
"""

from __future__ import annotations

import time
from typing import Any

from flask import abort, redirect, render_template, request, url_for

from checks.catalogue import ALL as CHECKS
from dashboards import command_form, security
from dashboards.blueprint import bp, parts
from diag.commands import model, states
from diag.commands.engine import Commands
from diag.commands.model import CommandError
from diag.commands.schedule import REPEAT_MODES

RECENT = 20  # invocations listed on the Commands page
SHOWN_RECORDS = 20  # per instance on an invocation page; a periodic one keeps up to 100
REFRESH_SECONDS = 2
LIVE = (states.RUNNING, states.STOPPING, states.PENDING)


def enabled() -> bool:
    return parts().commands is not None  # built only when enable_commands is set


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"commands_enabled": enabled}


def _engine() -> Commands:
    """The engine, or 404 when commands are off (as the API does), or the login page."""
    if not enabled():
        abort(404)
    if not security.logged_in():
        abort(redirect(url_for("dash.login", next=request.full_path.rstrip("?")), 303))
    return parts().commands


def _command(eng: Commands, command_id: str) -> dict[str, Any]:
    cmd = eng.repo.command(command_id)
    if cmd is None:
        abort(404, f"no command {command_id}")
    return cmd


def _audit(check_id: str | None) -> dict[str, Any]:
    """Who ran it, named as the API names the admin token, so both audits read alike."""
    token = parts().config.token or ""
    out = {**model.audit(token, request.remote_addr, request.headers.get("User-Agent", "")), "via": "dashboard"}
    if check_id:
        out["check_id"] = check_id
    return out


def offers(report: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """For each warning or critical check of the report, the saved commands tagged with it.
    Empty when commands are off or the browser is not logged in: no names leak."""
    if report is None or not enabled() or not security.logged_in():
        return {}
    failing = {c["id"] for c in report["checks"] if c["status"] in ("warning", "critical")}
    out: dict[str, list[dict[str, Any]]] = {}
    for cmd in parts().commands.repo.commands():
        for cid in cmd.get("check_ids", []):
            if cid in failing:
                out.setdefault(cid, []).append(cmd)
    return out


# -- saved commands ------------------------------------------------------------------------

def _list_page(values: dict[str, Any] | None = None, editing: str | None = None,
               errors: dict[str, str] | None = None, status: int = 200) -> Any:
    eng = _engine()
    if values is None:
        editing = editing or request.args.get("edit")
        values = command_form.to_values(_command(eng, editing) if editing else None)
    invocations = [eng.invocation(i["invoke_id"], max_records=1) for i in eng.repo.invocations(limit=RECENT)]
    return render_template("commands.html", commands=eng.repo.commands(), invocations=invocations, v=values,
                           editing=editing, errors=errors or {}, notice=request.args.get("notice"),
                           checks=CHECKS), status


@bp.get("/commands")
def commands() -> Any:
    return _list_page()


@bp.post("/commands/save", defaults={"command_id": None})
@bp.post("/commands/<command_id>/save")
def command_save(command_id: str | None) -> Any:
    eng = _engine()
    if command_id is not None:
        _command(eng, command_id)
    try:
        cmd = model.command(command_form.to_body(request.form))
    except CommandError as e:
        field = command_form.form_field(e.field)
        if field not in (*command_form.COMMAND_FIELDS, "check_ids"):
            field = "_form"
        return _list_page(command_form.values_from_form(request.form), command_id, {field: e.message}, 422)
    try:
        if command_id is not None:
            eng.save_command(command_id, cmd, time.time())
        saved_id = command_id or eng.create_command(cmd, time.time())["command_id"]
    except CommandError as e:
        return _list_page(command_form.values_from_form(request.form), command_id, {"content": e.message}, e.status)
    verb = "saved" if command_id else "created"
    return redirect(url_for("dash.commands", notice=f"{verb} command {cmd['name']!r} ({saved_id})")
                    + f"#command-{saved_id}", 303)


@bp.post("/commands/<command_id>/delete")
def command_delete(command_id: str) -> Any:
    eng = _engine()
    cmd = _command(eng, command_id)
    eng.repo.delete_command(command_id)
    return redirect(url_for("dash.commands", notice=f"deleted command {cmd['name']!r}"), 303)


@bp.post("/commands/<command_id>/clone")
def command_clone(command_id: str) -> Any:
    """A copy named <name>-copy, opened for editing (as POST /api/v1/commands/{id}/clone)."""
    eng = _engine()
    cmd = _command(eng, command_id)
    try:
        copy = eng.clone_command(cmd, None, time.time())
    except CommandError as e:
        return redirect(url_for("dash.commands", notice=f"not cloned: {e.message}"), 303)
    return redirect(url_for("dash.commands", edit=copy["command_id"], notice=f"cloned {cmd['name']!r} as {copy['name']!r}")
                    + "#command-form", 303)


# -- running -------------------------------------------------------------------------------

def _run_page(cmd: dict[str, Any], form: Any = None, errors: dict[str, str] | None = None, status: int = 200,
              confirm: dict[str, Any] | None = None) -> Any:
    """The run form, or (with `confirm`) the one-instance confirmation a diagnosis offer leads to."""
    s = parts()
    values = command_form.run_values(form, cmd["parameters"], s.instance_id)
    template = "command_confirm.html" if confirm else "command_run.html"
    return render_template(template, cmd=cmd, v=values, errors=errors or {}, instances=s.instances.list(),
                           repeat_modes=REPEAT_MODES, local_id=s.instance_id, confirm=confirm), status


def _confirmation(cmd: dict[str, Any], values: Any) -> dict[str, Any]:
    """What the confirmation page is about: one known instance and a check the command is tagged for."""
    instance_id, check_id = values.get("instance_id", ""), values.get("check_id", "")
    inst = parts().instances.get(instance_id)
    if inst is None or check_id not in cmd.get("check_ids", []):
        abort(404, "this command is not offered for that check on that instance")
    return {"instance": inst, "check_id": check_id, "report": values.get("report", "")}


@bp.get("/commands/<command_id>/run")
def command_run_form(command_id: str) -> Any:
    return _run_page(_command(_engine(), command_id))


@bp.get("/commands/<command_id>/confirm")
def command_confirm(command_id: str) -> Any:
    """Only shows what would run; nothing runs until the form on it is posted."""
    cmd = _command(_engine(), command_id)
    return _run_page(cmd, confirm=_confirmation(cmd, request.args))


@bp.post("/commands/<command_id>/run")
def command_run(command_id: str) -> Any:
    eng = _engine()
    cmd = _command(eng, command_id)
    form = request.form
    confirm = _confirmation(cmd, {"instance_id": form.get("instance_ids", ""), "check_id": form["check_id"],
                                  "report": form.get("report", "")}) if form.get("check_id") else None
    body = command_form.run_request(form, cmd["parameters"])
    try:
        ids = model.known_instance_ids(body["instance_ids"], lambda iid: parts().instances.get(iid) is not None)
        timeout = model.timeout(body["timeout"]) if body["timeout"] is not None else None
        inv = eng.invoke(cmd, ids, body["parameters"], body["repeat_mode"], body["frequency"], timeout,
                         _audit(confirm["check_id"] if confirm else None))
    except CommandError as e:
        field = command_form.form_field(e.field)
        if field not in command_form.RUN_FIELDS and not field.startswith("parameters."):
            field = "_form"  # the allow-list names the command, which this form does not edit
        return _run_page(cmd, form, {field: e.message}, 403 if e.status == 403 else 422, confirm)
    return redirect(url_for("dash.command_invocation", invoke_id=inv["invoke_id"]), 303)


# -- invocations ---------------------------------------------------------------------------

@bp.get("/commands/invocations/<invoke_id>")
def command_invocation(invoke_id: str) -> Any:
    eng = _engine()
    try:
        inv = eng.invocation(invoke_id, max_records=SHOWN_RECORDS)
    except CommandError as e:
        abort(404, e.message)
    cmd = eng.repo.command(inv["command_id"], saved_only=False) if inv["command_id"] else None
    return render_template("command_invocation.html", inv=inv, cmd=cmd, live=inv["status"] in LIVE,
                           refresh=REFRESH_SECONDS, notice=request.args.get("notice"),
                           names={i["instance_id"]: i.get("hostname") for i in parts().instances.list()})


@bp.post("/commands/invocations/<invoke_id>/stop")
def command_stop(invoke_id: str) -> Any:
    eng = _engine()
    try:
        inv = eng.stop(invoke_id)
    except CommandError as e:
        abort(404, e.message)
    return redirect(url_for("dash.command_invocation", invoke_id=invoke_id, notice=f"stop asked: {inv['status']}"),
                    303)
