"""The metric catalogue over HTTP."""

from __future__ import annotations

from flask import Blueprint, jsonify

from diag import catalogue
from diag.web.openapi import arr, doc, obj
from diag.web.schemas import METRIC

bp = Blueprint("metrics_api", __name__, url_prefix="/api/v1")


@bp.get("/metrics")
@doc("The metric catalogue.", responses={200: obj({"metrics": arr(METRIC)})})
def list_metrics():
    return jsonify({"metrics": [m.to_json() for m in catalogue.METRICS]})
