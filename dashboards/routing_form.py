"""The routing settings (diag.alerting.policy.Route) as form fields, shared by the policy
form and the contact group form. Input names are `routing.<field>`, the API's error paths,
so an error is shown beside its input."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from diag.alerting.notices import fmt_period as _text
from diag.alerting.policy import GROUP_BY_DEFAULT

DEFAULTS = {"routing.group_by": ", ".join(GROUP_BY_DEFAULT), "routing.group_wait": "30s",
            "routing.group_interval": "5m", "routing.repeat_interval": "4h"}
TIMERS = ("group_wait", "group_interval", "repeat_interval")


def values(routing: dict[str, Any] | None) -> dict[str, Any]:
    """The form's values for stored routing (or none: the defaults shown, switched off)."""
    if not routing:
        return {"routing.on": False, **DEFAULTS}
    return {"routing.on": True, "routing.group_by": ", ".join(routing.get("group_by", GROUP_BY_DEFAULT)),
            **{f"routing.{t}": _text(routing.get(t)) for t in TIMERS}}


def from_form(form: MultiDict) -> dict[str, Any]:
    """What the user typed, shown back."""
    return {"routing.on": form.get("routing.on") == "on",
            **{k: form.get(k, v) for k, v in DEFAULTS.items()}}


def body(form: MultiDict) -> dict[str, Any] | None:
    """The `routing` of a body: None when grouping is off (one notice per alert)."""
    if form.get("routing.on") != "on":
        return None
    g = lambda k: form.get(f"routing.{k}", "").strip()  # noqa: E731
    out: dict[str, Any] = {"group_by": [s.strip() for s in g("group_by").split(",") if s.strip()]}
    for t in TIMERS:
        if g(t):
            out[t] = int(g(t)) if g(t).isdigit() else g(t)
    return out


def describe(routing: dict[str, Any] | None) -> str:
    """One line for a table: how the notices are grouped."""
    if not routing:
        return ""
    by = ", ".join(routing.get("group_by", [])) or "nothing (one group)"
    return (f"grouped by {by}; first after {_text(routing['group_wait'])}, changes every "
            f"{_text(routing['group_interval'])}, repeats every {_text(routing['repeat_interval'])}")
