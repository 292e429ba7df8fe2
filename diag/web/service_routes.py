"""/healthz and /metrics: is the service itself working, and what it sees."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from diag import __version__
from diag.exposition import BatchCollector, ServiceCollector

bp = Blueprint("service", __name__)


def init_registry(service) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BatchCollector(lambda: service.last_batch))
    reg.register(ServiceCollector(service))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


def _parts():
    ext = current_app.extensions["diag"]
    return ext["service"], ext["scheduler"], ext["registry"]


@bp.get("/healthz")
def healthz():
    service, scheduler, _ = _parts()
    failing: list[str] = []
    if scheduler is not None and not scheduler.running:
        failing.append("scheduler: not running")
    interval = service.config.interval
    last = service.last_batch.ts if service.last_batch else None
    # A service that has not collected for 3 intervals is not doing its job, whatever else works.
    grace = max(3 * interval, 30)
    if (last is None and time.time() - service.started_at > grace) or (last is not None and time.time() - last > grace):
        failing.append(f"collection: none for more than {grace:.0f}s")
    body = {"status": "ok" if not failing else "failing", "version": __version__,
            "instance_id": service.instance_id, "last_collection": last}
    if failing:
        body["failing"] = failing
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/metrics")
def metrics():
    _, _, registry = _parts()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type)
