"""The metric catalogue over HTTP."""

from __future__ import annotations

from flask import Blueprint, jsonify

from diag import catalogue

bp = Blueprint("metrics_api", __name__, url_prefix="/api/v1")


@bp.get("/metrics")
def list_metrics():
    return jsonify({"metrics": [m.to_json() for m in catalogue.METRICS]})
