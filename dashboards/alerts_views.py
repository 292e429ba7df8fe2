"""The Alerts page: policies (create, edit, enable/disable, delete, test), the alerts that
fire and the notification history, on `service.alerting`."""

from __future__ import annotations

import time
from typing import Any

from flask import abort, redirect, render_template, request, url_for

from dashboards import alert_text, policy_form, timefmt
from dashboards.views import alerting, bp, current_value, service, unheard
from diag import catalogue
from diag.alerting.policy import PolicyError
from diag.events import LEVELS, TYPES
from diag.web import secrets  # delivery history quotes webhook URLs: shown masked

HISTORY = 100


def _alerting() -> Any:
    a = alerting()
    if a is None:
        abort(404, "alerting is not running in this service")
    return a


VERDICTS = {"fire": "fires", "pending": "pending", "ok": "ok", "keep": "keeps its state",
            "insufficient": "insufficient data"}


def test_view(policy: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A policy test's answer as the page's table: one row per (instance, condition)."""
    rows = []
    for r in result.get("results", []):
        cond = str(r.get("condition", ""))
        rows.append({"instance_id": r.get("instance_id"), "condition": alert_text.condition_text(policy, cond),
                     "verdict": VERDICTS.get(r.get("verdict"), r.get("verdict")),
                     "value": alert_text.value_text(r.get("value"), alert_text.metric_of(policy, cond)),
                     "severity": r.get("severity"), "before": r.get("state_before"), "after": r.get("state_after"),
                     "would_notify": r.get("would_notify"), "sends": len(r.get("notifications") or []),
                     "message": r.get("message", "")})
    return {"policy": policy, "evaluated_at": result.get("evaluated_at"), "rows": rows}


def _page(values: dict[str, Any] | None = None, editing: str | None = None, errors: dict[str, str] | None = None,
          status: int = 200, notice: str | None = None, test: dict[str, Any] | None = None,
          failed: bool = False, extra: dict[str, Any] | None = None) -> Any:
    """The whole page; `failed` shows the notice as a failure, not as a done change; `extra`:
    the contacts section's context (contacts_views.context) when a contact form is at stake."""
    from dashboards import contacts_views

    a = _alerting()
    extra = contacts_views.context() if extra is None else extra
    policies = a.repo.list("policy")
    if values is None:
        editing = editing or request.args.get("edit")
        current = a.repo.get("policy", editing) if editing else None
        if editing and current is None:
            abort(404, f"no policy {editing}")
        values = policy_form.to_values(current)
    # the /metrics names too: a policy takes either (diag.alerting.policy.Condition)
    metrics = sorted(set(catalogue.BY_NAME) | set(catalogue.BY_EXPOSED) | set(a.metric_names()))
    families = sorted({t.split(".")[0] + ".*" for t in TYPES})
    return render_template(
        "alerts.html", policies=policies, alerts=alert_text.annotate(a.repo.alerts(["firing", "pending"]), policies, current_value),
        history=[secrets.mask_history(h) for h in a.repo.history(time.time() - 7 * 86400, None, HISTORY)], v=values, editing=editing,
        errors=errors or {}, notice=notice or request.args.get("notice"), notice_failed=failed, test=test,
        metrics=metrics,
        event_types=families + sorted(TYPES), levels=LEVELS, groups=a.repo.list("contact_group"),
        days=policy_form.DAYS, silences=policy_form.SILENCES, names={p["policy_id"]: p["name"] for p in policies},
        instances=service().instances.list(), unheard=unheard(), now=time.time(),
        active_silences=a.repo.silences(time.time()), muted_by=_muted_by(a), **extra), status


def _muted_by(a: Any) -> Any:
    """`muted_by(alert)`: the active silence covering an alert row, for the template."""
    from diag.alerting.repository import muted

    silences = a.repo.silences(time.time())
    return lambda row: muted(silences, row["alert_id"], row["policy_id"], row["instance_id"]) if silences else None


@bp.get("/alerts")
def alerts() -> Any:
    return _page()


@bp.post("/alerts/policies", defaults={"policy_id": None})
@bp.post("/alerts/policies/<policy_id>")
def save_policy(policy_id: str | None) -> Any:
    a = _alerting()
    form = request.form
    # A new policy is the dashboard's; an edited one keeps where it came from (file, API...).
    source = "dashboard" if policy_id is None else _policy_or_404(a, policy_id)["source"]
    more = form.get("more")
    if more:  # "add a condition": show the form again with one more row, saving nothing
        return _page(policy_form.values_from_form(form, more), policy_id)
    errors: dict[str, str] = {}
    try:
        body, kept = policy_form.to_body(form)
        saved = a.save_policy(body, policy_id, source)
    except policy_form.FormError as e:
        errors[e.field] = e.message
    except PolicyError as e:
        if e.status == 404:
            abort(404, e.message)
        errors[policy_form.form_field(e.field, kept) or "_form"] = e.message
    else:
        verb = "created" if policy_id is None else "saved"
        return redirect(url_for("dash.alerts", notice=f"{verb} policy {saved['name']!r} ({saved['policy_id']})")
                        + f"#policy-{saved['policy_id']}", 303)
    return _page(policy_form.values_from_form(form), policy_id, errors, 422)


@bp.post("/alerts/policies/<policy_id>/enabled")
def toggle_policy(policy_id: str) -> Any:
    a = _alerting()
    cur = _policy_or_404(a, policy_id)
    want = request.form.get("enabled") == "on"
    try:
        a.patch_policy(policy_id, {"enabled": want})
    except PolicyError as e:
        return _page(notice=f"could not change {cur['name']!r}: {e.message}", status=e.status, failed=True)
    state = "enabled" if want else "disabled"
    return redirect(url_for("dash.alerts", notice=f"{state} {cur['name']!r}") + f"#policy-{policy_id}", 303)


@bp.post("/alerts/policies/<policy_id>/delete")
def delete_policy(policy_id: str) -> Any:
    a = _alerting()
    cur = _policy_or_404(a, policy_id)
    if not a.repo.delete("policy", policy_id):
        abort(404, f"no policy {policy_id}")
    return redirect(url_for("dash.alerts", notice=f"deleted {cur['name']!r}"), 303)


@bp.post("/alerts/policies/<policy_id>/test")
def test_policy(policy_id: str) -> Any:
    a = _alerting()
    cur = _policy_or_404(a, policy_id)
    event = None
    if request.form.get("event_type"):
        event = {"type": request.form["event_type"]}
    try:
        result = a.test(policy_id, event)
    except PolicyError as e:
        return _page(notice=f"test of {cur['name']!r} failed: {e.message}", status=e.status, failed=True)
    return _page(test=test_view(cur, result))


def _policy_or_404(a: Any, policy_id: str) -> dict[str, Any]:
    cur = a.repo.get("policy", policy_id)
    if cur is None:
        abort(404, f"no policy {policy_id}")
    return cur


@bp.post("/alerts/policies/notify")
def notify_unheard() -> Any:
    """The banner's one step: every enabled policy that reaches nobody sends to this group."""
    a = _alerting()
    gid = request.form.get("group", "")
    group = a.repo.get("contact_group", gid)
    if group is None:
        return _page(notice="choose a contact group (create one under Contacts below)", failed=True, status=422)
    silent = (unheard() or {}).get("silent", [])
    for p in silent:
        a.patch_policy(p["policy_id"], {"contact_groups": [*p.get("contact_groups", []), gid]})
    return redirect(url_for("dash.alerts", notice=f"{len(silent)} policies now notify {group['name']}"), 303)


@bp.post("/alerts/<alert_id>/ack")
def ack_alert(alert_id: str) -> Any:
    """"I am on it" from the firing row: repeats stop for a day or until it resolves."""
    from diag.alerting.policy import PolicyError
    from diag.web.alerting_routes import who

    comment = request.form.get("comment", "").strip()[:1024]
    try:
        _alerting().ack(alert_id, who(), comment)
    except PolicyError as e:
        return _page(notice=f"could not acknowledge {alert_id}: {e.message}", failed=True, status=e.status)
    return redirect(url_for("dash.alerts", notice=f"acknowledged {alert_id}: no repeats for 24 h or until it resolves")
                    + "#firing", 303)


SILENCE_SCOPES = ("alert_id", "policy_id", "instance_id")


@bp.post("/alerts/silences")
def silence() -> Any:
    """A silence from a firing row: this alert, its whole policy or its whole instance, for a while."""
    from diag.units import parse_duration

    a = _alerting()
    scope = request.form.get("scope", "")
    target = request.form.get(scope, "") if scope in SILENCE_SCOPES else ""  # the row sends all three ids
    comment = request.form.get("comment", "").strip()[:1024]
    if scope not in SILENCE_SCOPES or not target:
        return _page(notice="choose what to silence", failed=True, status=422)
    exists = {"alert_id": lambda: a.repo.alert(target) is not None, "policy_id": lambda: a.repo.exists("policy", target),
              "instance_id": lambda: service().instances.get(target) is not None}[scope]()
    if not exists:
        return _page(notice=f"no {scope.removesuffix('_id')} {target}", failed=True, status=404)
    try:
        duration = parse_duration(request.form.get("duration", "1h"))
    except ValueError:
        duration = 0
    if not 60 <= duration <= 30 * 86400:
        return _page(notice="a duration from 1m to 30d", failed=True, status=422)
    targets = {k: (target if k == scope else None) for k in SILENCE_SCOPES}
    made = a.repo.add_silence(duration=duration, comment=comment, now=time.time(), **targets)
    return redirect(url_for("dash.alerts", notice=f"silenced {scope.removesuffix('_id')} {target} until "
                                                  f"{timefmt.when(made['ends_at'])} ({made['silence_id']})") + "#silences", 303)


@bp.post("/alerts/silences/<silence_id>/expire")
def expire_silence(silence_id: str) -> Any:
    if not _alerting().repo.delete_silence(silence_id, time.time()):
        return _page(notice=f"no active silence {silence_id}", failed=True, status=404)
    return redirect(url_for("dash.alerts", notice=f"silence {silence_id} expired") + "#silences", 303)
