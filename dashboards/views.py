"""The Overview and Instance pages, login, the template filters and globals every page
uses, and plotly.js: the partial "basic" bundle (scatter and bar, all the charts draw)
vendored in static/vendor, a quarter of the full bundle's bytes.
"""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path
from typing import Any

from flask import Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup

from dashboards import advice, alert_text, data, figures, now_strip, security, timefmt
from dashboards.blueprint import alerting, bp, current_value, instance_or_404, parts, unheard
from diag.health import STATES

# From npm's plotly.js-basic-dist-min, the version the plotly Python package bundles (its
# licence beside it); tests/dashboards/test_views.py checks the two versions agree.
PLOTLY_VERSION = "basic-4.1.1"
PLOTLY_JS = Path(__file__).parent / "static" / "vendor" / f"plotly-{PLOTLY_VERSION}.min.js"

# A state's look: CSS class and a glyph, so colour is never the only cue (PRODUCT.md colours).
STATE_LOOK = {"Ok": "✓", "Impaired": "✕", "Warning": "!", "Maintaining": "⚙", "Initializing": "…",
              "InsufficientData": "?", "NotApplicable": "–"}


@bp.app_template_filter("steps")
def _steps(text: str) -> Markup:
    return advice.render(text)


@bp.app_template_filter("when")
def _when(ts: float | None) -> str:
    return timefmt.when(ts)


@bp.app_template_filter("localtimes")
def _localtimes(text: str | None) -> str:
    return timefmt.localize(text)


@bp.app_template_filter("readable_evidence")
def _readable_evidence(evidence: Any) -> Any:
    return timefmt.readable_evidence(evidence)


@bp.app_template_filter("ago")
def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    d = time.time() - ts
    if d < 0:
        return "in " + _span(-d)
    return _span(d) + " ago"


def _span(d: float) -> str:
    for unit, secs in (("d", 86400), ("h", 3600), ("min", 60)):
        if d >= secs:
            return f"{d / secs:.0f} {unit}"
    return f"{d:.0f} s"


@bp.app_template_filter("iso_input")
def _iso_input(ts: float | None) -> str:
    """A time for a text input, in the zone the page's times are in: `2026-12-05 03:04`."""
    return timefmt.input_value(ts)


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"csrf_token": security.csrf_token, "logged_in": security.logged_in,
            "token_required": security.token_required, "STATE_LOOK": STATE_LOOK, "STATES": STATES,
            "plotly_url": url_for("dash.plotly_js", version=PLOTLY_VERSION),
            "metric_condition_text": alert_text.metric_condition_text,
            "event_condition_text": alert_text.event_condition_text, "event_severity": alert_text.event_severity,
            "num4": alert_text.number, "tz_name": timefmt.zone_name}


# -- plotly.js -----------------------------------------------------------------------------

_plotly_gz: bytes | None = None
_plotly_lock = threading.Lock()


@bp.get("/dashboard-static/plotly-<version>.min.js")
def plotly_js(version: str) -> Any:
    """The vendored plotly.js, compressed once and cached by the browser for a year: the
    URL changes with the bundle's version."""
    global _plotly_gz
    if version != PLOTLY_VERSION:
        return redirect(url_for("dash.plotly_js", version=PLOTLY_VERSION), 301)
    etag = f'"plotly-{PLOTLY_VERSION}"'
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag, "Vary": "Accept-Encoding"}
    if request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers=headers)
    if "gzip" not in request.headers.get("Accept-Encoding", ""):
        return Response(PLOTLY_JS.read_bytes(), mimetype="text/javascript", headers=headers)
    with _plotly_lock:
        if _plotly_gz is None:
            _plotly_gz = gzip.compress(PLOTLY_JS.read_bytes(), 6)
    return Response(_plotly_gz, mimetype="text/javascript", headers={**headers, "Content-Encoding": "gzip"})


# -- login ---------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = security.safe_next(request.values.get("next"))
    error = None
    if request.method == "POST":
        if not security.token_required():
            return redirect(nxt, 303)
        if security.log_in(request.form.get("token", "")):
            return redirect(nxt, 303)
        error = "That is not the admin token."
    return render_template("login.html", next=nxt, error=error, secure=security.secure_transport(),
                           needed=security.token_required()), 401 if error else 200


@bp.post("/logout")
def logout() -> Any:
    security.log_out()
    return redirect(url_for("dash.overview"), 303)


# -- overview ------------------------------------------------------------------------------

def _firing(instance_id: str | None = None) -> list[dict[str, Any]] | None:
    a = alerting()
    try:
        alerts = a.repo.alerts(["firing"], instance_id=instance_id)
        policies = a.repo.list("policy") if alerts else []
    except Exception:  # noqa: BLE001 - the overview stays up when alerting cannot answer
        current_app.logger.exception("firing alerts")
        return None
    return alert_text.annotate(alerts, policies, current_value)


@bp.get("/")
def overview() -> Any:
    s = parts()
    now = time.time()
    rows = []
    for inst in s.instances.list():
        h = s.diagnoser.health_of(inst["instance_id"], now) or {}
        rows.append({**inst, **h})
    order = {"Impaired": 0, "Warning": 1, "InsufficientData": 2, "Maintaining": 3, "Initializing": 4,
             "NotApplicable": 5, "Ok": 6}
    rows.sort(key=lambda r: (order.get(r["health_status"], 9), r["instance_id"]))
    counts = {st: sum(1 for r in rows if r["health_status"] == st) for st in STATES}
    events = s.events.list(since=now - 86400, limit=15)
    return render_template("overview.html", rows=rows, glance=data.glance(s.store, s.config.interval, now), counts=counts,
                           events=events, firing=_firing(), now=now, unheard=unheard(),
                           groups=alerting().repo.list("contact_group"))


# -- instance ------------------------------------------------------------------------------

@bp.get("/instances/<instance_id>")
def instance(instance_id: str) -> Any:
    s = parts()
    inst = instance_or_404(instance_id)
    rng = data.fit_to_data(s.store, inst, data.pick_range(request.args, tz=timefmt.chosen()[1]))
    figs, events, store_error = data.chart_figures(s.store, s.events, instance_id, rng)
    health = s.diagnoser.health_of(instance_id) or {}
    return render_template("instance.html", inst=inst, health=health, rng=rng, figs=figs, events=events[:20],
                           now=now_strip.now_strip(s.store, s.processes, instance_id, s.diagnoser.interval_of(inst)),
                           charts=figures.CHARTS, ranges=data.RANGES, level=data.level_name(rng.step),
                           firing=_firing(instance_id), interval=s.config.interval, store_error=store_error,
                           is_self=instance_id == s.instance_id)


@bp.post("/instances/<instance_id>/monitoring")
def instance_monitoring(instance_id: str) -> Any:
    instance_or_404(instance_id)
    enabled = request.form.get("monitoring") == "on"
    parts().diagnoser.set_monitoring(instance_id, enabled)
    return redirect(url_for("dash.instance", instance_id=instance_id), 303)


@bp.post("/instances/<instance_id>/forget")
def instance_forget(instance_id: str) -> Any:
    """A machine that no longer exists leaves the lists and its alerts resolve; its history
    stays until retention (DELETE /api/v1/instances/{id})."""
    instance_or_404(instance_id)
    try:
        parts().roster.forget(instance_id)
    except ValueError as e:  # this server itself
        abort(409, str(e))
    return redirect(url_for("dash.overview"), 303)


@bp.get("/instances/<instance_id>/charts")
def instance_charts(instance_id: str) -> Any:
    """What auto-refresh and the range picker fetch: the figures, the health panel, the
    range as the picker shows it and its events, for the query the page URL would have."""
    s = parts()
    inst = instance_or_404(instance_id)
    rng = data.fit_to_data(s.store, inst, data.pick_range(request.args, tz=timefmt.chosen()[1]))
    figs, events, store_error = data.chart_figures(s.store, s.events, instance_id, rng)
    health = s.diagnoser.health_of(instance_id) or {}
    now = time.time()
    return jsonify({"figures": figs, "health_html": render_template("_health.html", health=health),
                    "generated_at": now, "generated_text": timefmt.when(now), "store_error": store_error,
                    "range": {"key": rng.key, "live": rng.live, "error": rng.error,
                              "start_input": timefmt.input_value(rng.start), "end_input": timefmt.input_value(rng.end),
                              "info_html": render_template("_rangeinfo.html", rng=rng,
                                                           level=data.level_name(rng.step))},
                    "events_html": render_template("_range_events.html", events=events[:20])})
