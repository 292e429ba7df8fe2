"""The dashboard's blueprint and what every page shares: the guard and headers of each
request (CSRF, login, security headers, compression), the error pages, and the pages'
access to the service's parts.

Every page module adds its routes to `bp` from here; `dashboards.pages` imports them all,
and `diag.web.app.create_app` mounts the result at `/`. The guard lives beside `bp`, so a
page module can never be served without it.
"""

from __future__ import annotations

import gzip
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from dashboards import alert_text, security
from diag.alerting import Alerting
from diag.errors import error_body
from diag.wiring import Parts

bp = Blueprint("dash", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard-static")

_COMPRESSIBLE = ("text/html", "application/json", "text/css", "text/javascript", "application/javascript")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


@bp.record_once
def _setup(state: Any) -> None:
    security.configure(state.app, state.app.extensions["diag"]["parts"].config.data_dir)


def parts() -> Parts:
    """The service's parts, as the app factory was given them: each page takes the one it shows."""
    return current_app.extensions["diag"]["parts"]


def alerting() -> Alerting:
    return parts().alerting


def instance_or_404(instance_id: str) -> dict[str, Any]:
    inst = parts().instances.get(instance_id)
    if inst is None:
        abort(404, f"no instance {instance_id}")
    return inst


def unheard() -> dict[str, list[dict[str, Any]]] | None:
    """The enabled policies nobody would hear of (for the banner), or None when alerting cannot say."""
    a = alerting()
    from diag.alerting.notices import recipients

    try:
        return alert_text.unheard(a.repo.list("policy"), a.repo.alerts(["firing"]),
                                  lambda groups: sum(len(c.get("channels") or []) for c in recipients(a.repo, groups)))
    except Exception:  # noqa: BLE001 - the page stays up without its banner
        current_app.logger.exception("unheard policies")
        return None


def current_value(instance_id: str, cond: dict[str, Any]) -> float | None:
    """The condition's metric now: its latest sample on the instance (the highest of several
    series for a `>` condition, the lowest for `<`), None when the store has none or fails."""
    try:
        lat = parts().store.latest(cond["metric"], instance_id=instance_id, labels=cond.get("labels") or None)
    except Exception:  # noqa: BLE001 - the page shows the value at firing instead
        return None
    if lat is None or lat.empty:
        return None
    values = lat["value"].astype(float)
    return float(values.min() if str(cond.get("comparison", ">")).startswith("<") else values.max())


# -- hooks ---------------------------------------------------------------------------------

@bp.before_request
def _guard() -> Any:
    if request.method in security.MUTATING:
        security.check_csrf()
        if request.endpoint != "dash.login" and not security.logged_in():
            if request.headers.get(security.CSRF_HEADER):
                return jsonify({"error": {"code": "Unauthorized", "message": "log in first"}}), 401
            return redirect(url_for("dash.login", next=request.referrer and _path(request.referrer)), 303)
    return None


def _path(url: str) -> str:
    p = urlsplit(url)
    return p.path + ("?" + p.query if p.query else "")


@bp.after_request
def _finish(resp: BaseResponse) -> BaseResponse:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if resp.mimetype == "text/html":
        resp.headers.setdefault("Cache-Control", "no-store")
    return _compress(resp)


def _compress(resp: BaseResponse) -> BaseResponse:
    if (resp.direct_passthrough or resp.status_code != 200 or "Content-Encoding" in resp.headers
            or resp.mimetype not in _COMPRESSIBLE or "gzip" not in request.headers.get("Accept-Encoding", "")):
        return resp
    body = resp.get_data()
    if len(body) < 1400:
        return resp
    resp.set_data(gzip.compress(body, 5))
    resp.headers["Content-Encoding"] = "gzip"
    resp.headers.add("Vary", "Accept-Encoding")
    return resp


@bp.app_errorhandler(404)
def _not_found(e: Any) -> Any:
    # Pages get a page; the JSON API keeps its JSON error.
    if request.path.startswith("/api/") or request.blueprint not in (None, bp.name) \
            or "text/html" not in request.headers.get("Accept", ""):
        return jsonify(error_body(404, getattr(e, "description", "not found"))), 404
    return render_template("error.html", code=404, message=getattr(e, "description", "not found")), 404


@bp.errorhandler(403)
def _forbidden(e: Any) -> Any:
    if request.headers.get(security.CSRF_HEADER) is not None or request.is_json:
        return jsonify({"error": {"code": "Forbidden", "message": e.description}}), 403
    return render_template("error.html", code=403, message=e.description), 403
