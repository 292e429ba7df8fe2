"""The Connectivity page: ask whether a source instance reaches an instance or an address on
a port, and read the answer step by step (POST /api/v1/connectivity, from a form).

The form posts (CSRF and, with a token set, a login session, like every other form): the
probe makes outbound connections, so a GET never runs it.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from dashboards.blueprint import bp, parts
from diag import connectivity
from diag.errors import ApiError

_FORM = ("source", "kind", "instance_id", "address", "port", "protocol", "timeout")


def _instances() -> list[dict[str, Any]]:
    """This server's own instance first, then the agents by id."""
    s = parts()
    return sorted(s.instances.list(), key=lambda i: (i["instance_id"] != s.instance_id, i["instance_id"]))


@bp.route("/connectivity", methods=["GET", "POST"])
def connectivity_page() -> Any:
    s = parts()
    src = request.values
    f = {k: (src.get(k) or "").strip() for k in _FORM}
    f["source"] = f["source"] or s.instance_id
    f["kind"] = f["kind"] if f["kind"] in ("instance", "address") else "address"
    f["protocol"] = f["protocol"] or "tcp"
    instances = _instances()
    result, error, status = None, None, 200
    if request.method == "POST":
        body: dict[str, Any] = {"source": f["source"], "protocol": f["protocol"],
                                "destination": {"instance_id": f["instance_id"]} if f["kind"] == "instance"
                                else {"address": f["address"]}}
        # The form's text becomes the API's types; what does not convert is refused as the API refuses it.
        body["port"] = int(f["port"]) if f["port"].isascii() and f["port"].isdigit() else f["port"]
        if f["protocol"] == "icmp" and not f["port"]:
            body["port"] = 1  # ICMP has no port; the API wants one and ignores it
        if f["timeout"]:
            try:
                body["timeout"] = float(f["timeout"])
            except ValueError:
                body["timeout"] = f["timeout"]
        try:
            result = parts().connectivity.ask(body)
        except ApiError as e:
            error, status = {"field": e.field, "message": e.message}, 429 if e.status == 429 else 400
    return render_template("connectivity.html", f=f, instances=instances, result=result, error=error,
                           protocols=connectivity.PROTOCOLS), status
