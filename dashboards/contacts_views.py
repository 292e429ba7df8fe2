"""Contacts, their channels and contact groups on the Alerts page: list, create, edit,
test-send and delete, on `service.alerting` as the API does it (diag/web/alerting_routes).

A channel's secrets are write-only here too: the form shows the robot's URL as
`https://host/***` and a stored secret as `***`; sent back unchanged they keep what is
stored (diag.alerting.contacts.save_contact), so editing a contact's name never needs the
token again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, redirect, request, url_for

from dashboards import routing_form
from dashboards.alerts_views import _page
from dashboards.blueprint import alerting, bp
from dashboards.contacts_section import FIELDS, context
from diag.alerting import contacts, secrets
from diag.alerting.policy import SIGNED, PolicyError
from diag.errors import ApiError


def _body_from_form() -> tuple[dict[str, Any], dict[str, Any]]:
    """The API body of the contact form, and the values to show again on an error. A row
    without a type is dropped; fields a type does not use are not sent."""
    form = request.form
    rows, channels = [], []
    i = 0
    while f"channels[{i}].type" in form:
        row = {k: form.get(f"channels[{i}].{k}", "").strip() for k in FIELDS}
        i += 1
        if not row["type"]:
            continue
        rows.append(row)
        ch: dict[str, Any] = {"type": row["type"]}
        if row["type"] == "email":
            ch["address"] = row["address"]
        else:
            ch["url"] = row["url"]
        if row["type"] == "webhook" and row["format"]:
            ch["format"] = row["format"]
        if row["secret"] and row["type"] in SIGNED:
            ch["secret"] = row["secret"]
        channels.append(ch)
    values = {"name": form.get("name", "").strip(), "channels": rows + [{k: "" for k in FIELDS}]}
    return {"name": values["name"], "channels": channels}, values


@bp.post("/alerts/contacts", defaults={"contact_id": None})
@bp.post("/alerts/contacts/<contact_id>")
def save_contact(contact_id: str | None) -> Any:
    a = alerting()
    if contact_id and not a.repo.exists("contact", contact_id):
        abort(404, f"no contact {contact_id}")
    body, values = _body_from_form()
    values["id"] = contact_id
    try:
        saved = contacts.save_contact(a, body, contact_id)
    except (PolicyError, ApiError) as e:
        field = e.field or "_contact"
        # A masked value the user changed the type of: shown again masked, never as stored.
        values["channels"] = [{k: (secrets.mask_channel(r).get(k) or "") for k in FIELDS} for r in values["channels"]]
        return _page(status=422, extra=context(contact_values=values, errors={field: e.message}),
                     notice=f"the contact was not saved: {field}: {e.message}", failed=True)
    verb = "created" if contact_id is None else "saved"
    return redirect(url_for("dash.alerts", notice=f"{verb} contact {saved['name']!r}")
                    + f"#contact-{saved['contact_id']}", 303)


def _delete(kind: str, obj_id: str, what: str, anchor: str, in_use: Callable[[dict[str, Any]], str | None]) -> Any:
    """Delete a contact or a group unless something still sends to it (409, saying what)."""
    a = alerting()
    cur = a.repo.get(kind, obj_id)
    if cur is None:
        abort(404, f"no {what} {obj_id}")
    refusal = in_use(cur)
    if refusal:
        return _page(notice=refusal, status=409, failed=True)
    a.repo.delete(kind, obj_id)
    return redirect(url_for("dash.alerts", notice=f"deleted {what} {cur['name']!r}") + anchor, 303)


@bp.post("/alerts/contacts/<contact_id>/delete")
def delete_contact(contact_id: str) -> Any:
    def in_use(cur: dict[str, Any]) -> str | None:
        users = [g["name"] for g in contacts.users(alerting().repo, "contact", contact_id)]
        return f"{cur['name']!r} is in the groups {', '.join(users[:5])}: take it out of them first" if users else None

    return _delete("contact", contact_id, "contact", "#contacts", in_use)


@bp.post("/alerts/contacts/<contact_id>/test")
def test_contact(contact_id: str) -> Any:
    a = alerting()
    try:
        results = a.test_contact(contact_id)
    except PolicyError as e:
        abort(e.status if e.status == 404 else 422, e.message)
    cur = a.repo.get("contact", contact_id) or {"name": contact_id}
    shown = [secrets.mask_delivery(r) for r in results]
    ok = all(r["outcome"] == "delivered" for r in results)
    return _page(extra=context(tested={"name": cur["name"], "results": shown}),
                 notice=f"test of {cur['name']!r}: " + ("every channel took it" if ok else "a channel failed"),
                 failed=not ok)


@bp.post("/alerts/groups", defaults={"group_id": None})
@bp.post("/alerts/groups/<group_id>")
def save_group(group_id: str | None) -> Any:
    a = alerting()
    if group_id and not a.repo.exists("contact_group", group_id):
        abort(404, f"no contact group {group_id}")
    body = {"name": request.form.get("name", "").strip(), "contacts": request.form.getlist("contacts"),
            "routing": routing_form.body(request.form)}
    try:
        saved = a.save_group(body, group_id)
    except PolicyError as e:
        field = e.field or "_group"
        shown = {**body, "id": group_id, **routing_form.from_form(request.form)}
        return _page(status=422, extra=context(group_values=shown, errors={"group." + field: e.message}),
                     notice=f"the group was not saved: {field}: {e.message}", failed=True)
    verb = "created" if group_id is None else "saved"
    return redirect(url_for("dash.alerts", notice=f"{verb} contact group {saved['name']!r}")
                    + f"#group-{saved['contact_group_id']}", 303)


@bp.post("/alerts/groups/<group_id>/delete")
def delete_group(group_id: str) -> Any:
    def in_use(cur: dict[str, Any]) -> str | None:
        users = [p["name"] for p in contacts.users(alerting().repo, "contact_group", group_id)]
        return f"policies {', '.join(users[:5])} notify {cur['name']!r}: change them first" if users else None

    return _delete("contact_group", group_id, "contact group", "#contact-groups", in_use)