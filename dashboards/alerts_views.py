"""The Alerts page: policies (create, edit, enable/disable, delete, test), the alerts that
fire and the notification history, on `service.alerting`."""

from __future__ import annotations

import time
from typing import Any

from flask import abort, redirect, render_template, request, url_for

from dashboards import alert_text, contacts_section, policy_form, timefmt
from dashboards.blueprint import alerting, bp, current_value, parts, unheard
from diag.actor import actor
from diag.alerting import secrets, silences  # delivery history quotes webhook URLs: shown masked
from diag.alerting.policy import PolicyError
from diag.events import LEVELS, TYPES

HISTORY = 100


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
                     "message": r.get("message", ""),
                     "sent": [{"to": secrets.mask_text(n["to"]), "outcome": n["outcome"]}
                              for n in r.get("notifications") or [] if "outcome" in n]})
    return {"policy": policy, "evaluated_at": result.get("evaluated_at"), "rows": rows, "event": result.get("event")}


def _page(values: dict[str, Any] | None = None, editing: str | None = None, errors: dict[str, str] | None = None,
          status: int = 200, notice: str | None = None, test: dict[str, Any] | None = None,
          failed: bool = False, extra: dict[str, Any] | None = None) -> Any:
    """The whole page; `failed` shows the notice as a failure, not as a done change; `extra`:
    the contacts section's context (contacts_section.context) when a contact form is at stake."""
    a = alerting()
    extra = contacts_section.context() if extra is None else extra
    policies = a.repo.list("policy")
    if values is None:
        editing = editing or request.args.get("edit")
        current = a.repo.get("policy", editing) if editing else None
        if editing and current is None:
            abort(404, f"no policy {editing}")
        values = policy_form.to_values(current)
    metrics = policy_form.metric_groups(a.metric_names(), (c.get("metric", "") for c in values["conditions"]))
    families = sorted({t.split(".")[0] + ".*" for t in TYPES})
    return render_template(
        "alerts.html", policies=policies, alerts=alert_text.annotate(a.repo.alerts(["firing", "pending"]), policies, current_value),
        history=[secrets.mask_delivery(h) for h in a.repo.history(time.time() - 7 * 86400, None, HISTORY)], v=values, editing=editing,
        errors=errors or {}, notice=notice or request.args.get("notice"), notice_failed=failed, test=test,
        metrics=metrics, metric_info={m.name: m for _, group in metrics for m in group}, fields=policy_form,
        event_types=families + sorted(TYPES), levels=LEVELS, groups=a.repo.list("contact_group"),
        days=policy_form.DAYS, silences=policy_form.SILENCES, names={p["policy_id"]: p["name"] for p in policies},
        instances=parts().instances.list(), unheard=unheard(), now=time.time(),
        active_silences=a.repo.silences(time.time()), cover=a.covering(time.time()), matcher_lines=matcher_lines,
        inhibit_rules=a.inhibit_rules.list(), starts=SILENCE_STARTS,
        **extra), status


def _who() -> str:
    """Who acts, named as the API names them (diag.actor)."""
    return actor(parts().config.token)


def matcher_lines(labels: dict[str, str]) -> str:
    """An alert's labels as the matchers a silence from its row starts with, one a line."""
    return "\n".join(f'{k}="{v}"' for k, v in labels.items() if k not in ("condition", "policy_id"))


@bp.get("/alerts")
def alerts() -> Any:
    return _page()


@bp.post("/alerts/policies", defaults={"policy_id": None})
@bp.post("/alerts/policies/<policy_id>")
def save_policy(policy_id: str | None) -> Any:
    a = alerting()
    form = request.form
    # A new policy is the dashboard's; an edited one keeps where it came from (file, API...).
    source = "dashboard" if policy_id is None else _policy_or_404(a, policy_id)["source"]
    more = form.get("more")
    if more:  # "add a condition": show the form again with one more row, saving nothing
        return _page(policy_form.values_from_form(form, more), policy_id)
    body, kept, errors = policy_form.to_body(form)
    try:
        if errors:  # the validator's word on the rest too, so that every bad field is marked at once
            a.validate_policy(body)
        else:
            saved = a.save_policy(body, policy_id, source)
    except PolicyError as e:
        if e.status == 404:
            abort(404, e.message)
        policy_form.merge_errors(errors, e.errors, kept, form)
    if errors:
        return _page(policy_form.values_from_form(form), policy_id, errors, 422)
    verb = "created" if policy_id is None else "saved"
    return redirect(url_for("dash.alerts", notice=f"{verb} policy {saved['name']!r} ({saved['policy_id']})")
                    + f"#policy-{saved['policy_id']}", 303)


@bp.post("/alerts/policies/<policy_id>/enabled")
def toggle_policy(policy_id: str) -> Any:
    a = alerting()
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
    a = alerting()
    cur = _policy_or_404(a, policy_id)
    if not a.delete_policy(policy_id):
        abort(404, f"no policy {policy_id}")
    return redirect(url_for("dash.alerts", notice=f"deleted {cur['name']!r}"), 303)


@bp.post("/alerts/policies/<policy_id>/test")
def test_policy(policy_id: str) -> Any:
    a = alerting()
    cur = _policy_or_404(a, policy_id)
    event = None
    if request.form.get("event_type"):
        event = {"type": request.form["event_type"]}
    try:
        if event is None and cur["event_conditions"] and not cur["conditions"]:
            # An event policy has nothing to evaluate until its event happens: play one.
            result = a.simulate_event(policy_id)
        else:
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
    a = alerting()
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

    comment = request.form.get("comment", "").strip()[:1024]
    try:
        alerting().ack(alert_id, _who(), comment)
    except PolicyError as e:
        return _page(notice=f"could not acknowledge {alert_id}: {e.message}", failed=True, status=e.status)
    return redirect(url_for("dash.alerts", notice=f"acknowledged {alert_id}: no repeats for 24 h or until it resolves")
                    + "#firing", 303)


SILENCE_STARTS = {"now": 0, "in 15m": 900, "in 1h": 3600, "in 3h": 10800, "in 12h": 43200}


def _parse_lines(text: str) -> list[dict[str, str]]:
    """`name="value"` (or !=, =~, !~) one a line, as stored matchers; MatcherError says which line is wrong."""
    from diag.alerting import matchers

    return matchers.dump([matchers.parse(line) for line in text.splitlines() if line.strip()])


def _duration_field(name: str, default: str) -> float:
    from diag.units import parse_duration

    try:
        return parse_duration(request.form.get(name, default))
    except ValueError:
        return 0


@bp.post("/alerts/silences")
def silence() -> Any:
    """A silence from a firing row: this alert, its whole policy, its whole instance, or the
    alerts matching the labels shown (the row's, as the user edited them), for a while."""
    from diag.alerting.matchers import MatcherError

    a = alerting()
    scope = request.form.get("scope", "")
    comment = request.form.get("comment", "").strip()[:1024]
    duration = _duration_field("duration", "1h")
    if not 60 <= duration <= 30 * 86400:
        return _page(notice="a duration from 1m to 30d", failed=True, status=422)
    if scope == "matchers":
        try:
            found = _parse_lines(request.form.get("matchers", ""))
        except MatcherError as e:
            return _page(notice=f"the silence was not made: {e}", failed=True, status=422)
        if not found or len(found) > 20:
            return _page(notice="give 1 to 20 matchers, one a line, like instance_id=\"web1\"", failed=True, status=422)
        starts = SILENCE_STARTS.get(request.form.get("starts", "now"))
        if starts is None:
            return _page(notice="choose when the silence starts", failed=True, status=422)
        now = time.time()
        made = a.repo.add_silence(matchers=found, starts_at=now + starts, duration=duration, comment=comment, now=now,
                                  created_by=_who())
        return redirect(url_for("dash.alerts", notice=f"silenced what matches {len(found)} matcher(s) from "
                                f"{timefmt.when(made['starts_at'])} until {timefmt.when(made['ends_at'])} "
                                f"({made['silence_id']})") + "#silences", 303)
    target = request.form.get(scope, "") if scope in silences.TARGETS else ""  # the row sends all three ids
    if scope not in silences.TARGETS or not target:
        return _page(notice="choose what to silence", failed=True, status=422)
    if not silences.target_exists(a.repo, parts().instances, scope, target):
        return _page(notice=f"no {scope.removesuffix('_id')} {target}", failed=True, status=404)
    made = silences.silence_target(a.repo, scope, target, duration, comment, _who(), time.time())
    return redirect(url_for("dash.alerts", notice=f"silenced {scope.removesuffix('_id')} {target} until "
                                                  f"{timefmt.when(made['ends_at'])} ({made['silence_id']})") + "#silences", 303)


@bp.post("/alerts/inhibit-rules")
def add_inhibit_rule() -> Any:
    from diag.alerting.inhibition import RuleError
    from diag.alerting.matchers import MatcherError

    f = request.form
    try:
        body = {"name": f.get("name", "").strip(), "comment": f.get("comment", "").strip(),
                "source": _parse_lines(f.get("source", "")),
                "target": _parse_lines(f.get("target", "")),
                "equal": [s.strip() for s in f.get("equal", "").split(",") if s.strip()]}
        rule = alerting().inhibit_rules.put(body)
    except (MatcherError, RuleError) as e:
        return _page(notice=f"the rule was not added: {e}", failed=True, status=422)
    return redirect(url_for("dash.alerts", notice=f"added inhibition rule {rule['name']!r}") + f"#rule-{rule['rule_id']}", 303)


@bp.post("/alerts/inhibit-rules/<rule_id>/delete")
def delete_inhibit_rule(rule_id: str) -> Any:
    if not alerting().inhibit_rules.delete(rule_id):
        return _page(notice=f"no inhibition rule {rule_id}", failed=True, status=404)
    return redirect(url_for("dash.alerts", notice=f"inhibition rule {rule_id} deleted") + "#inhibition", 303)


@bp.post("/alerts/silences/<silence_id>/expire")
def expire_silence(silence_id: str) -> Any:
    if not alerting().repo.delete_silence(silence_id, time.time()):
        return _page(notice=f"no active silence {silence_id}", failed=True, status=404)
    return redirect(url_for("dash.alerts", notice=f"silence {silence_id} expired") + "#silences", 303)
