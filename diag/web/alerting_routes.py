"""Alerting over HTTP: policies (CRUD and test), alerts, history, silences, contacts
and contact groups (API.md "Alerting")."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from diag.actor import actor
from diag.alerting import contacts, secrets, silences
from diag.alerting.policy import PolicyError
from diag.web import auth
from diag.web.bodies import AckBody, parse, schema
from diag.web.errors import ApiError
from diag.web.openapi import arr, doc, obj, query
from diag.web.schemas import (ALERT, ALERT_HISTORY, ALERT_STATES_PARAM, CONTACT, CONTACT_BODY, CONTACT_GROUP, CONTACT_TEST,
                              CONTACT_GROUP_BODY, POLICY, TIME_IN, between,
                              POLICY_BODY, POLICY_PATCH_BODY, POLICY_TEST, POLICY_TEST_BODY, SILENCE, SILENCE_BODY,
                              ALERT_GROUP, INHIBIT_RULE, INHIBIT_RULE_BODY)
from diag.web.validate import json_body, time_param
from diag.web.parts import parts

bp = Blueprint("alerting_api", __name__, url_prefix="/api/v1")

ALERT_STATES = ("ok", "pending", "firing", "resolved")
_KIND = {"contacts": "contact", "contact-groups": "contact_group"}
_PLURAL = {"contact": "contacts", "contact_group": "contact_groups"}
_SCHEMAS = {"contact": (CONTACT_BODY, CONTACT), "contact_group": (CONTACT_GROUP_BODY, CONTACT_GROUP)}


def _alerting():
    return parts().alerting


def _call(fn, *args: Any) -> Any:
    try:
        return fn(*args)
    except PolicyError as e:
        raise ApiError(e.status, e.message, e.field, errors=e.errors if e.status == 422 else None) from None


# -- policies -------------------------------------------------------------------------------

@bp.get("/alert-policies")
@doc("Alert policies.", responses={200: obj({"policies": arr(POLICY)})})
def list_policies():
    return jsonify({"policies": _alerting().repo.list("policy")})


@bp.post("/alert-policies")
@doc("Create an alert policy.", body=POLICY_BODY, responses={201: POLICY})
def create_policy():
    auth.require("token")
    return jsonify(_call(_alerting().save_policy, json_body())), 201


def _policy_or_404(policy_id: str) -> dict[str, Any]:
    p = _alerting().repo.get("policy", policy_id)
    if p is None:
        raise ApiError(404, f"no policy {policy_id}")
    return p


@bp.get("/alert-policies/<policy_id>")
@doc("One alert policy.", responses={200: POLICY})
def get_policy(policy_id: str):
    return jsonify(_policy_or_404(policy_id))


@bp.put("/alert-policies/<policy_id>")
@doc("Replace an alert policy.", body=POLICY_BODY, responses={200: POLICY})
def replace_policy(policy_id: str):
    auth.require("token")
    cur = _policy_or_404(policy_id)
    body = json_body()
    # What a GET returned may be sent back as it is: the fields the service keeps are not the user's to set.
    for kept in ("policy_id", "id", "source", "created_at", "updated_at"):
        body.pop(kept, None)
    return jsonify(_call(_alerting().save_policy, body, policy_id, cur["source"]))


@bp.patch("/alert-policies/<policy_id>")
@doc("Change some fields of an alert policy (e.g. {\"enabled\": false}).", body=POLICY_PATCH_BODY,
     responses={200: POLICY})
def change_policy(policy_id: str):
    auth.require("token")
    _policy_or_404(policy_id)
    return jsonify(_call(_alerting().patch_policy, policy_id, json_body()))


@bp.delete("/alert-policies/<policy_id>")
@doc("Delete an alert policy and its alerts; its firing alerts are first resolved (recovery notices, "
     "Alertmanager told).", responses={204: None})
def delete_policy(policy_id: str):
    auth.require("token")
    if not _alerting().delete_policy(policy_id):
        raise ApiError(404, f"no policy {policy_id}")
    return Response(status=204)


@bp.post("/alert-policies/<policy_id>/test")
@doc("Evaluate the policy now, or on a sample event; returns what would be sent, sends nothing.",
     body=POLICY_TEST_BODY, responses={200: POLICY_TEST})
def test_policy(policy_id: str):
    auth.require("token")
    _policy_or_404(policy_id)
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object (or empty)")
    unknown = set(body) - {"event"}
    if unknown:
        raise ApiError(422, "unknown field", sorted(unknown)[0])
    return jsonify(secrets.mask_preview(_call(_alerting().test, policy_id, body.get("event"))))


# -- alerts and history ---------------------------------------------------------------------

@bp.get("/alerts")
@doc("Alerts, by default the pending and firing ones.", responses={200: obj({"alerts": arr(ALERT)})}, params=[
    query("state", ALERT_STATES_PARAM), query("policy_id"),
    query("instance_id")])
def list_alerts():
    state = request.args.get("state")
    if state is None:
        states = ["pending", "firing"]
    elif state == "all":
        states = None
    else:
        states = [s for s in state.split(",") if s]
        bad = [s for s in states if s not in ALERT_STATES]
        if bad or not states:
            raise ApiError(400, f"state must be all or some of {', '.join(ALERT_STATES)}", "state")
    a = _alerting()
    alerts = a.repo.alerts(states, request.args.get("policy_id"), request.args.get("instance_id"))
    if alerts:
        cover = a.covering(time.time())
        for x in alerts:
            c = cover(x)
            x.update(labels=c["labels"], silenced_by=c["silence"]["silence_id"] if c["silence"] else None,
                     inhibited_by=c["inhibited_by"])
    return jsonify({"alerts": alerts})


@bp.get("/alerts/history")
@doc("State changes, notifications and delivery outcomes, newest first.",
     responses={200: obj({"history": arr(ALERT_HISTORY)})},
     params=[query("since", TIME_IN), query("alert_id"), query("limit", between(1, 10000, "integer"))])
def alert_history():
    since = None
    if "since" in request.args:
        since = time_param(request.args["since"], time.time(), "since")
    try:
        limit = int(request.args.get("limit", "1000"))
    except ValueError:
        raise ApiError(400, "must be an integer", "limit") from None
    if not 1 <= limit <= 10000:
        raise ApiError(400, "must be between 1 and 10000", "limit")
    rows = _alerting().repo.history(since, request.args.get("alert_id"), limit)
    return jsonify({"history": [secrets.mask_delivery(r) for r in rows]})


def who() -> str:
    """Who acts: the admin token's short fingerprint (never the token), or the local user."""
    return actor(parts().config.token)


@bp.post("/alerts/<alert_id>/ack")
@doc("Acknowledge a firing or pending alert: its repeats stop until it resolves or the acknowledgement "
     "expires.", body=schema(AckBody), responses={200: ALERT})
def ack_alert(alert_id: str):
    auth.require("token")
    body = parse(AckBody, json_body())
    return jsonify(_call(_alerting().ack, alert_id, who(), body.comment, body.expires_in))


# -- silences -------------------------------------------------------------------------------

@bp.get("/silences")
@doc("Active silences.", responses={200: obj({"silences": arr(SILENCE)})})
def list_silences():
    return jsonify({"silences": _alerting().repo.silences(time.time())})


@bp.post("/silences")
@doc("Mute one alert, policy or instance for a duration; or, with `matchers` (Alertmanager's =, !=, =~, !~ "
     "over the alert's labels), the alerts they all match, from `starts_at` (default now) to `ends_at` "
     "(or for `duration`).", body=SILENCE_BODY, responses={201: SILENCE})
def create_silence():
    auth.require("token")
    body = json_body()
    if "matchers" in body:
        return jsonify(_matcher_silence(body)), 201
    a = _alerting()
    given = {k: body[k] for k in silences.TARGETS if body.get(k) is not None}

    def exists() -> None:
        (field, value), = given.items()
        if not silences.target_exists(a.repo, a.instances, field, value):
            raise ApiError(404, f"no {field.removesuffix('_id')} {value}", field)

    # By hand, in the order the API always answered: an unknown field, then not exactly one
    # target, then a bad id, then a target that is not there, then a bad duration or comment.
    try:
        s = parse(silences.TargetSilence, body)
    except ApiError as e:
        if e.message != "unknown field" and len(given) != 1:
            raise ApiError(422, "give exactly one of alert_id, policy_id, instance_id", "alert_id") from None
        if e.field in ("duration", "comment"):
            exists()
        raise
    if len(given) != 1:
        raise ApiError(422, "give exactly one of alert_id, policy_id, instance_id", "alert_id")
    exists()
    (field, value), = given.items()
    return jsonify(silences.silence_target(a.repo, field, value, s.duration, s.comment, who(), time.time())), 201


def _matcher_silence(body: dict[str, Any]) -> dict[str, Any]:
    from diag.alerting import matchers

    def bounds(s: silences.MatcherSilence) -> tuple[float, float]:
        try:
            return s.bounds(now)
        except ValueError as e:
            raise ApiError(422, str(e), "ends_at") from None

    now = time.time()
    try:
        s = parse(silences.MatcherSilence, body)
    except ApiError as e:
        if e.field == "comment":  # by hand: the silence's bounds are said before its comment
            bounds(parse(silences.MatcherSilence, {k: v for k, v in body.items() if k != "comment"}))
        raise
    starts, ends = bounds(s)
    return _alerting().repo.add_silence(matchers=matchers.dump(s.matchers), starts_at=starts, ends_at=ends,
                                        comment=s.comment, now=now, created_by=who())


@bp.get("/silences/<silence_id>")
@doc("One active silence.", responses={200: SILENCE})
def get_silence(silence_id: str):
    s = _alerting().repo.get_silence(silence_id, time.time())
    if s is None:
        raise ApiError(404, f"no silence {silence_id}")
    return jsonify(s)


@bp.delete("/silences/<silence_id>")
@doc("End a silence.", responses={204: None})
def delete_silence(silence_id: str):
    auth.require("token")
    if not _alerting().repo.delete_silence(silence_id, time.time()):
        raise ApiError(404, f"no silence {silence_id}")
    return Response(status=204)


# -- inhibition rules and notification groups ----------------------------------------------

@bp.get("/inhibit-rules")
@doc("Inhibition rules: while an alert matching `source` fires (or an instance stopped reporting: "
     "alertname InstanceNotReporting, or is in maintenance: InstanceMaintaining), the alerts matching "
     "`target` with the same `equal` labels send no notice.", responses={200: obj({"rules": arr(INHIBIT_RULE)})})
def list_inhibit_rules():
    return jsonify({"rules": _alerting().inhibit_rules.list()})


@bp.post("/inhibit-rules")
@doc("Add an inhibition rule.", body=INHIBIT_RULE_BODY, responses={201: INHIBIT_RULE})
def create_inhibit_rule():
    from diag.alerting.inhibition import RuleError

    auth.require("token")
    try:
        return jsonify(_alerting().inhibit_rules.put(json_body())), 201
    except RuleError as e:
        raise ApiError(422, e.message, e.field) from None


@bp.delete("/inhibit-rules/<rule_id>")
@doc("Delete an inhibition rule (the default one too: it is not created again).", responses={204: None})
def delete_inhibit_rule(rule_id: str):
    auth.require("token")
    if not _alerting().inhibit_rules.delete(rule_id):
        raise ApiError(404, f"no inhibition rule {rule_id}")
    return Response(status=204)


@bp.get("/alert-groups")
@doc("The open notification groups of routed policies: their alerts, when each is next looked at and how "
     "many notices it sent.", responses={200: obj({"groups": arr(ALERT_GROUP)})})
def list_alert_groups():
    from diag.alerting import routing

    return jsonify({"groups": routing.groups(_alerting().db)})


# -- contacts and contact groups ------------------------------------------------------------

def _save(kind: str, body: Any, obj_id: str | None = None) -> dict[str, Any]:
    a = _alerting()
    if kind == "contact":
        return secrets.mask_contact(_call(contacts.save_contact, a, body, obj_id))
    return _call(a.save_group, body, obj_id)


def _shown(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return secrets.mask_contact(obj) if kind == "contact" else obj


def _register(path: str) -> None:
    kind = _KIND[path]
    ep = path.replace("-", "_")

    def list_():
        return jsonify({_PLURAL[kind]: [_shown(kind, o) for o in _alerting().repo.list(kind)]})

    def create():
        auth.require("token")
        return jsonify(_save(kind, json_body())), 201

    def get(obj_id: str):
        obj = _alerting().repo.get(kind, obj_id)
        if obj is None:
            raise ApiError(404, f"no {kind.replace('_', ' ')} {obj_id}")
        return jsonify(_shown(kind, obj))

    def put(obj_id: str):
        auth.require("token")
        get(obj_id)
        return jsonify(_save(kind, json_body(), obj_id))

    def delete(obj_id: str):
        auth.require("token")
        a = _alerting()
        users = contacts.users(a.repo, kind, obj_id)
        if users and a.repo.exists(kind, obj_id):
            if kind == "contact_group":
                raise ApiError(409, f"policies {', '.join(p['policy_id'] for p in users[:5])} notify this group; "
                                    "change them first")
            raise ApiError(409, f"groups {', '.join(g['contact_group_id'] for g in users[:5])} include this contact; "
                                "change them first")
        if not a.repo.delete(kind, obj_id):
            raise ApiError(404, f"no {kind.replace('_', ' ')} {obj_id}")
        return Response(status=204)

    body, one = _SCHEMAS[kind]
    noun = kind.replace("_", " ")
    bp.add_url_rule(f"/{path}", f"list_{ep}", doc(f"Every {noun}.", responses={200: obj({_PLURAL[kind]: arr(one)})})(
        list_), methods=["GET"])
    bp.add_url_rule(f"/{path}", f"create_{ep}", doc(f"Create a {noun}.", body=body, responses={201: one})(create),
                    methods=["POST"])
    bp.add_url_rule(f"/{path}/<obj_id>", f"get_{ep}", doc(f"One {noun}.", responses={200: one})(get), methods=["GET"])
    bp.add_url_rule(f"/{path}/<obj_id>", f"put_{ep}", doc(f"Replace a {noun}.", body=body, responses={200: one})(put),
                    methods=["PUT"])
    bp.add_url_rule(f"/{path}/<obj_id>", f"delete_{ep}", doc(f"Delete a {noun}.", responses={204: None})(delete),
                    methods=["DELETE"])


for _path in _KIND:
    _register(_path)


@bp.post("/contacts/<contact_id>/test")
@doc("Send a test notice to each channel of a contact now: one attempt each within the delivery deadline, "
     "not queued nor retried; each channel's outcome (a robot's refusal names its errcode).",
     responses={200: CONTACT_TEST})
def test_contact(contact_id: str):
    auth.require("token")
    results = _call(_alerting().test_contact, contact_id)
    return jsonify({"contact_id": contact_id, "results": [
        secrets.mask_delivery(r) for r in results]})
