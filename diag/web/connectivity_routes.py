"""POST /api/v1/connectivity: the path from a source instance to a destination, step by step
(the question itself: diag.connectivity_request, which the Connectivity page asks too)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from diag.web import auth
from diag.web.openapi import doc, ref
from diag.web.parts import parts
from diag.web.schemas import CONNECTIVITY, CONNECTIVITY_BODY
from diag.web.validate import json_body

bp = Blueprint("connectivity_api", __name__, url_prefix="/api/v1")


@bp.post("/connectivity")
@doc("Diagnose connectivity from a source instance (default: this one) to an instance or address: the "
     "source's route, its outbound and the destination's inbound firewall rules, the destination's "
     "listener and a real probe (TCP connect, UDP, ICMP echo), each with a verdict and evidence. Needs "
     "the admin token when one is set: the probe makes outbound connections.",
     body=CONNECTIVITY_BODY, responses={200: CONNECTIVITY, 429: ref("Error")})
def diagnose_connectivity():
    auth.require("token")
    return jsonify(parts().connectivity.ask(json_body()))
