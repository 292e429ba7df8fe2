"""The check catalogue and diagnosis reports over HTTP (JSON, HTML, Markdown)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request

from diag import report_format
from diag.web import auth
from diag.web.errors import ApiError
from diag.web.bodies import DiagnosisBody, parse, schema
from diag.web.validate import json_body
from diag.web.openapi import arr, doc, enum, live, nullable, obj, query
from diag.web.schemas import CHECK, REPORT, REPORT_SUMMARY, between
from diag.web.parts import parts

bp = Blueprint("diagnosis_api", __name__, url_prefix="/api/v1", template_folder="templates")



@bp.get("/checks")
@doc("The check catalogue, with the thresholds as configured.", responses={200: obj({"checks": arr(CHECK)})})
def list_checks():
    # the configured checks, not the catalogue's defaults: the thresholds a report is judged by.
    return jsonify({"checks": [c.to_json() for c in parts().checks]})


def _check_ids() -> list[str]:
    # The catalogue's and the configured plugin checks (plugin.<name>), as of the request.
    return sorted({c.id for c in parts().checks})


@bp.post("/diagnoses")
@doc("Run a diagnosis now; the report is stored.", body_required=False, responses={201: REPORT}, body=schema(
    DiagnosisBody, served={"checks": live(lambda: nullable(arr(enum(*_check_ids()), minItems=1,
                                                               maxItems=len(_check_ids()))))}))
def create_diagnosis():
    auth.require("token")
    body = parse(DiagnosisBody, json_body() if request.content_length else {})
    p = parts()
    instance_id = body.instance_id or p.instance_id
    if body.checks is not None:
        known = _check_ids()
        if len(body.checks) > len(known):
            raise ApiError(422, "must be a non-empty list of check ids", "checks")
        for i, c in enumerate(body.checks):
            if c not in known:
                raise ApiError(422, f"unknown check {c!r}: see GET /api/v1/checks", f"checks[{i}]")
    if p.instances.get(instance_id) is None:
        raise ApiError(404, f"no instance {instance_id}", "instance_id")
    report = p.diagnoser.diagnose(instance_id, body.window, body.checks, fresh_facts=True)
    return jsonify(report), 201


@bp.get("/diagnoses")
@doc("Stored reports, newest first.", responses={200: obj({"reports": arr(REPORT_SUMMARY)})},
     params=[query("instance_id"), query("limit", between(1, 1000, "integer"))])
def list_diagnoses():
    instance_id = request.args.get("instance_id")
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "limit must be a whole number", "limit") from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit must be from 1 to 1000", "limit")
    return jsonify({"reports": parts().reports.list(instance_id, limit)})


@bp.get("/diagnoses/<report_id>")
@doc("One report (JSON; HTML with Accept: text/html or ?format=html; Markdown with ?format=md).",
     responses={200: REPORT})
def get_diagnosis(report_id: str):
    report = parts().reports.get(report_id)
    if report is None:
        raise ApiError(404, f"no report {report_id}")
    fmt = request.args.get("format")
    if fmt is None and request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html" \
            and "text/html" in request.headers.get("Accept", ""):
        fmt = "html"
    if fmt == "md":
        return Response(report_format.markdown(report), content_type="text/markdown; charset=utf-8")
    if fmt == "html":
        groups = {}
        for c in report["checks"]:
            groups.setdefault(c["category"], []).append(c)
        return render_template("report.html", r=report, groups=list(groups.items()), when=report_format.when)
    if fmt not in (None, "json"):
        raise ApiError(400, "format must be json, html or md", "format")
    return jsonify(report)
