"""Contacts and contact groups as the API and the Alerts page both change them: a contact
sent back with the masked secrets it was shown keeps the stored ones, and what something
still sends to is named before it may go."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diag.alerting import secrets

if TYPE_CHECKING:
    from diag.alerting import Alerting
    from diag.alerting.repository import Repository


def save_contact(alerting: Alerting, body: Any, contact_id: str | None = None) -> dict[str, Any]:
    """Create or replace a contact; `***` stands for the stored secret it masks (ApiError 422
    when there is none), PolicyError for a bad body. The contact as stored, unmasked."""
    stored = alerting.repo.get("contact", contact_id) if contact_id else None
    return alerting.save_contact(secrets.restore(body, stored), contact_id)


def users(repo: Repository, kind: str, obj_id: str) -> list[dict[str, Any]]:
    """What still sends to it: the policies notifying a contact group, the groups holding a contact."""
    if kind == "contact_group":
        return [p for p in repo.list("policy") if obj_id in p.get("contact_groups", [])]
    return [g for g in repo.list("contact_group") if obj_id in g.get("contacts", [])]
