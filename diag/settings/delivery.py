"""What the service sends out: alert notices (diag/alerting) and command records (diag/commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from diag.settings.types import Duration, Strict as _Strict


class Smtp(_Strict):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "diag@localhost"
    timeout: Duration = 10
    verify: bool = True
    ca_file: Path | None = None


class AlertingConfig(_Strict):
    policies_file: Path | None = None  # YAML/JSON: policies, contacts, contact_groups, upserted at start
    defaults: bool = True  # create the one-click default policies on first start
    external_url: str | None = None  # base of the links in notifications; else http://host:port
    # One URL for people to hear of the one-click policies: at start a webhook contact and a
    # group holding it are upserted (diag/alerting/defaults.py) and given to each default
    # policy that has no contact group, so `make run NOTIFY=...` notifies someone.
    notify_webhook: str | None = Field(None, description="send the notices of the default alert policies that "
                                                         "have no contact group to this http(s) webhook URL")
    # The zone of the times in notices (the seed's eventTime, 20181226T220114.058+0800, and
    # the chat messages); the server's own zone when unset.
    timezone: str | None = None
    smtp: Smtp = Smtp()
    retry_base: Duration = 5
    retry_cap: Duration = 600
    give_up_after: Duration = 86400
    deliver_every: Duration = 2
    # How often notices past their policy's expiry are closed.
    expire_every: Duration = 3600

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, v: str | None) -> str | None:
        # Every notice links to {external_url}/instances/{id}: a query, a fragment or a
        # missing scheme would make each of those links wrong, so they are refused here.
        if v is None:
            return v
        u = _urlsplit(v)
        if u is None or u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("must be an http(s) URL like https://diag.example.org")
        if u.query or u.fragment or any(c.isspace() for c in v):
            raise ValueError("must be a base URL without spaces, ?query or #fragment (a path prefix is fine)")
        return v.rstrip("/")

    @field_validator("notify_webhook")
    @classmethod
    def _notify_webhook(cls, v: str | None) -> str | None:
        return http_url(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v[:80]!r} (use an IANA name like Asia/Shanghai)") from None
        return v


def _urlsplit(v: str) -> Any:
    import urllib.parse

    try:
        u = urllib.parse.urlsplit(v)
        u.port  # noqa: B018 - raises on a bad port
        return u
    except ValueError:
        return None


class RecordDelivery(_Strict):
    """Where each finished execution record goes (diag/commands/records.py): appended to a
    JSON-lines file, POSTed to a webhook, or both; at least once, through a persisted outbox."""

    file: Path | None = None
    webhook: str | None = None
    headers: dict[str, str] = {}  # sent with each POST, e.g. Authorization for the receiver
    retry_base: Duration = 5
    retry_cap: Duration = 600
    give_up_after: Duration = 7 * 86400

    @field_validator("file")
    @classmethod
    def _absolute_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_absolute():
            raise ValueError(f"must be an absolute path, not {str(v)!r}")
        if v is not None and not v.parent.is_dir():
            raise ValueError(f"{v.parent} is not a directory")
        return v

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return http_url(v)


def http_url(v: str | None) -> str | None:
    """A URL the service POSTs to: http(s), with a host and a valid port."""
    import urllib.parse

    if v is None:
        return v
    u = urllib.parse.urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, not {v[:100]!r}")
    try:
        u.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as e:
        raise ValueError(f"has a bad port: {e}") from None
    return v


class CommandsConfig(_Strict):  # remote commands (diag/commands), used only with enable_commands
    allow: list[str] = []  # command names (or name@sha256 of the content) that may run; empty: any
    delivery_timeout: Duration = 60  # a task no agent collected by then fails (AgentNotOnline)
    workers: Annotated[int, Field(ge=1, le=64)] = 4  # concurrent runs on this instance
    records: RecordDelivery = RecordDelivery()
    # How often due schedules start and undelivered tasks time out.
    tick_every: Duration = 1
