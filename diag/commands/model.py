"""Validation of command and invocation bodies; each failure names its field."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from diag.commands import parameters
from diag.commands.runner import SCRIPT_TYPES
from diag.actor import token_fingerprint
from diag.identity import INSTANCE_ID
from diag.units import parse_duration

MAX_CONTENT = 16 * 1024
MAX_INSTANCES = 50
MAX_CHECK_IDS = 20
DEFAULT_TIMEOUT, MIN_TIMEOUT, MAX_TIMEOUT = 60.0, 10.0, 86400.0
USERNAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")


class CommandError(ValueError):
    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code


def _text(body: dict, key: str, max_len: int, required: bool = False, default: str = "") -> str:
    v = body.get(key, default)
    if v is None:
        v = default
    if not isinstance(v, str) or len(v) > max_len or (required and not v.strip()) or "\x00" in v:
        raise CommandError(422, f"must be {'a non-empty' if required else 'a'} string of at most {max_len} characters",
                           key)
    return v


def timeout(value: Any, field: str = "timeout") -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        t = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else parse_duration(value)
    except (ValueError, TypeError):
        raise CommandError(422, "must be seconds or a duration like 60s, 5m", field) from None
    if not MIN_TIMEOUT <= t <= MAX_TIMEOUT:
        raise CommandError(422, f"must be between {MIN_TIMEOUT:g}s and {MAX_TIMEOUT:g}s", field)
    return t


def content(body: dict) -> str:
    raw = body.get("content")
    if not isinstance(raw, str) or not raw:
        raise CommandError(422, "must be a non-empty string (the script)", "content")
    if body.get("content_encoding", "PlainText") == "Base64":
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input (a plain ValueError)
            raise CommandError(422, "is not base64 of UTF-8 text", "content") from None
    elif body.get("content_encoding", "PlainText") != "PlainText":
        raise CommandError(422, "must be PlainText or Base64", "content_encoding")
    if len(raw.encode()) > MAX_CONTENT:
        raise CommandError(413 if len(raw.encode()) > 4 * MAX_CONTENT else 422,
                           f"is {len(raw.encode())} bytes; at most {MAX_CONTENT} (16 KiB)", "content")
    if "\x00" in raw:
        raise CommandError(422, "must not contain NUL", "content")
    return raw


def command(body: dict, base: dict | None = None) -> dict[str, Any]:
    """A full command from a create body, or `base` updated by a PUT body."""
    if base is not None:
        body = {**base, **{k: v for k, v in body.items() if k != "command_id"}}
    cmd_type = body.get("type", "RunShellScript")  # "" or null is a wrong type, not the default
    if cmd_type not in SCRIPT_TYPES:
        raise CommandError(422, f"must be one of {', '.join(SCRIPT_TYPES)}", "type")
    text = content(body)
    try:
        names = parameters.names(text, cmd_type)
    except parameters.ParameterError as e:
        raise CommandError(422, e.message, e.field) from None
    working_dir = _text(body, "working_dir", 1024)
    if working_dir and not working_dir.startswith("/"):
        raise CommandError(422, "must be an absolute path", "working_dir")
    username = _text(body, "username", 33)
    if username and not USERNAME.match(username):
        raise CommandError(422, "is not a valid user name", "username")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or len(tags) > 10 or not all(isinstance(t, str) and 0 < len(t) <= 128 for t in tags):
        raise CommandError(422, "must be a list of at most 10 strings (e.g. check ids)", "tags")
    return {"name": _text(body, "name", 128, required=True), "description": _text(body, "description", 512),
            "type": cmd_type, "content": text, "parameters": names, "working_dir": working_dir,
            "timeout": timeout(body.get("timeout")), "username": username, "tags": tags,
            "check_ids": check_ids(body.get("check_ids"))}


EDITABLE = ("name", "description", "type", "content", "working_dir", "timeout", "username", "tags", "check_ids")


def editable(cmd: dict[str, Any]) -> dict[str, Any]:
    """The fields of a saved command that a PUT or a clone may change."""
    return {k: cmd[k] for k in EDITABLE}


def clone(cmd: dict[str, Any], changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a saved command named <name>-copy, the fields in `changes` replacing its own."""
    return command(changes or {}, base={**editable(cmd), "name": cmd["name"][:123] + "-copy"})


def known_instance_ids(value: Any, known: Callable[[str], bool]) -> list[str]:
    """`instance_ids`, each an instance this server knows (422 naming the first it does not)."""
    ids = instance_ids(value)
    for i, iid in enumerate(ids):
        if not known(iid):
            raise CommandError(422, f"no instance {iid}", f"instance_ids[{i}]")
    return ids


def audit(token: str, source: str | None, user_agent: str) -> dict[str, Any]:
    """Who started an invocation, from where and with what, as the API and the page record it."""
    return {"who": token_fingerprint(token), "source": source, "user_agent": user_agent[:200]}


def check_ids(value: Any) -> list[str]:
    """The diagnosis checks a command is offered for (beside a failing one on the Diagnosis page)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_CHECK_IDS:
        raise CommandError(422, f"must be a list of at most {MAX_CHECK_IDS} check ids", "check_ids")
    if not value:
        return []
    from checks.catalogue import BY_ID  # here, not at the top: agents import this module and run no checks

    for i, v in enumerate(value):
        if not isinstance(v, str) or v not in BY_ID:
            raise CommandError(422, "is not a check id (GET /api/v1/checks lists them)", f"check_ids[{i}]")
    if len(set(value)) != len(value):
        raise CommandError(422, "lists a check twice", "check_ids")
    return list(value)


def instance_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INSTANCES:
        raise CommandError(422, f"must be a list of 1-{MAX_INSTANCES} instance ids", "instance_ids")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not INSTANCE_ID.match(v):
            raise CommandError(422, "is not an instance id", f"instance_ids[{i}]")
    if len(set(value)) != len(value):
        raise CommandError(422, "lists an instance twice", "instance_ids")
    return list(value)
