"""A saved command and a run request as HTML forms and back.

Input names are the API's field names (`content`, `parameters.host`, `instance_ids`), so
the field a `CommandError` names is the input its message is shown beside. The engine
does the validating; this module only turns text inputs into the body the API takes.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.datastructures import MultiDict

COMMAND_FIELDS = ("name", "description", "type", "content", "working_dir", "timeout", "username", "tags")
RUN_FIELDS = ("instance_ids", "repeat_mode", "frequency", "timeout")
_INDEXED = re.compile(r"^(check_ids|instance_ids|tags)\[\d+\]$")


def _seconds(text: str) -> Any:
    """A number when it reads as one (the API takes seconds or "5m"); None when left empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def to_body(form: MultiDict) -> dict[str, Any]:
    """The command body as POST /api/v1/commands takes it."""
    g = lambda k: form.get(k, "")  # noqa: E731
    return {"name": g("name").strip(), "description": g("description").strip(),
            "type": g("type") or "RunShellScript",
            # the script is kept byte for byte but for the browser's CRLF line ends, which bash reads as part of words
            "content": g("content").replace("\r\n", "\n"),
            "working_dir": g("working_dir").strip(), "timeout": _seconds(g("timeout")),
            "username": g("username").strip(), "tags": _split(g("tags")),
            "check_ids": [c for c in form.getlist("check_ids") if c]}


def form_field(field: str | None) -> str:
    """The input an error belongs to: `check_ids[2]` is shown beside the one check list."""
    if not field:
        return "_form"
    m = _INDEXED.match(field)
    return m.group(1) if m else field


def to_values(cmd: dict[str, Any] | None) -> dict[str, Any]:
    """What the form shows for a stored command (or a new one)."""
    if cmd is None:
        return {"name": "", "description": "", "type": "RunShellScript", "content": "", "working_dir": "", "timeout": "60", "username": "",
                "tags": "", "check_ids": [], "parameters": []}
    t = cmd.get("timeout", 60)
    return {"name": cmd["name"], "description": cmd.get("description", ""),
            "type": cmd.get("type", "RunShellScript"), "content": cmd["content"],
            "working_dir": cmd.get("working_dir", ""), "timeout": f"{t:g}" if isinstance(t, float) else str(t),
            "username": cmd.get("username", ""), "tags": ", ".join(cmd.get("tags", [])),
            "check_ids": list(cmd.get("check_ids", [])), "parameters": list(cmd.get("parameters", []))}


def values_from_form(form: MultiDict) -> dict[str, Any]:
    """What the user typed, shown back after an error."""
    out: dict[str, Any] = {k: form.get(k, "") for k in COMMAND_FIELDS}
    out["check_ids"] = form.getlist("check_ids")
    out["parameters"] = []
    return out


def run_request(form: MultiDict, wanted: list[str]) -> dict[str, Any]:
    """The invoke body (POST /api/v1/commands/{id}/invoke) from the run form."""
    return {"instance_ids": [i for i in form.getlist("instance_ids") if i],
            "parameters": {k: form.get(f"parameters.{k}", "") for k in wanted},
            "repeat_mode": form.get("repeat_mode", "Once") or "Once",
            "frequency": form.get("frequency", "").strip() or None,
            "timeout": _seconds(form.get("timeout", ""))}


def run_values(form: MultiDict | None, wanted: list[str], default_instance: str) -> dict[str, Any]:
    """The run form's values: blank for a first look, else what was sent."""
    if form is None:
        return {"instance_ids": [default_instance], "parameters": {k: "" for k in wanted}, "repeat_mode": "Once",
                "frequency": "", "timeout": ""}
    return {"instance_ids": form.getlist("instance_ids"),
            "parameters": {k: form.get(f"parameters.{k}", "") for k in wanted},
            "repeat_mode": form.get("repeat_mode", "Once"), "frequency": form.get("frequency", ""),
            "timeout": form.get("timeout", "")}
