"""/healthz and /metrics: is the service itself working, and what it sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from diag import __version__
from diag.exposition import BatchCollector, HealthCollector, InstanceInfoCollector, ServiceCollector
from diag.settings.stale import HEALTHZ_FLOOR, stale_after
from diag.web.openapi import STR, doc
from diag.web.schemas import HEALTHZ, STATUS

bp = Blueprint("service", __name__)


def init_registry(service) -> CollectorRegistry:
    """The app's own registry: everything /metrics shows except the latest batch's families,
    which `BatchExposition` renders once per collection (see there)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(service))
    reg.register(HealthCollector(service.instances))
    reg.register(InstanceInfoCollector(service.instances))
    reg.register(service.job_durations)
    from diag.alerting.exposition import AlertsCollector  # alerting hook

    reg.register(AlertsCollector(service.alerting))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class BatchExposition:
    """The latest batch's families, encoded once per batch and content type.

    They change only when a collection ends, yet encoding them is most of a scrape's
    cost (hundreds of lines); under many concurrent scrapers re-encoding them per
    request made /metrics CPU-bound. The self-monitoring families stay fresh.
    """

    def __init__(self, service) -> None:  # diag.service.Service
        self._service = service
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(BatchCollector(self._batch, instance_id=lambda: service.instance_id))
        self._pinned = None  # the batch being encoded, so the collector and the cache key agree
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[object, bytes]] = {}

    def _batch(self):
        return self._pinned

    def render(self, encoder: Callable[[CollectorRegistry], bytes], content_type: str) -> bytes:
        batch = self._service.last_batch
        hit = self._cache.get(content_type)
        if hit is not None and hit[0] is batch:
            return hit[1]
        with self._lock:  # one encoder at a time: `_pinned` is shared
            self._pinned = batch
            try:
                body = encoder(self._registry)
            finally:
                self._pinned = None
        # The live part that follows carries the one OpenMetrics terminator.
        body = body.removesuffix(b"# EOF\n")
        self._cache[content_type] = (batch, body)
        return body


def _parts():
    ext = current_app.extensions["diag"]
    return ext["service"], ext["scheduler"], ext["registry"]


@bp.get("/healthz")
@doc("Is the service itself working?", responses={200: HEALTHZ, 503: HEALTHZ})
def healthz():
    service, scheduler, _ = _parts()
    failing: list[str] = []
    if scheduler is not None and not scheduler.running:
        failing.append("scheduler: not running")
    interval = service.config.interval
    last = service.last_batch.ts if service.last_batch else None
    # A service that has not collected for 3 intervals is not doing its job, whatever else works.
    grace = stale_after(interval, HEALTHZ_FLOOR)
    if (last is None and time.time() - service.started_at > grace) or (last is not None and time.time() - last > grace):
        failing.append(f"collection: none for more than {grace:.0f}s")
    if service.store_failing is not None:  # collecting, but the samples are lost (disk full, ...)
        failing.append(service.store_failing)
    # Writes refused for want of room (ingest, or any route writing diag.db): the last one
    # failed, so the service is not doing its job even while it still answers reads.
    for full in (getattr(service.store, "full", None), getattr(service.db, "full", None)):
        if full and f"store: {full}" != service.store_failing:
            failing.append(f"disk full: {full}")
    body = {"status": "ok" if not failing else "failing", "version": __version__,
            "instance_id": service.instance_id, "last_collection": last}
    if failing:
        body["failing"] = failing
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/api/v1/status")
@doc("What the service keeps and for how long: each level of the store (raw points and the 1m, 5m, "
     "1h and 1d roll-ups, which answer for recent points from the first minute) and the kernel log.",
     responses={200: STATUS})
def status():
    from diag.store.types import LEVELS, RAW

    service = _parts()[0]
    retention = getattr(service.store, "retention", None)
    levels = []
    if retention is not None:  # the embedded store; an engine behind --store-url keeps its own
        names = {RAW: "raw", 60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}
        levels = [{"level": names[lv], "resolution_seconds": lv or None, "retention_seconds": retention.for_level(lv)}
                  for lv in (RAW, *LEVELS)]
    return jsonify({
        "version": __version__, "instance_id": service.instance_id, "started_at": service.started_at,
        "store": {"kind": "embedded" if retention is not None else "remote",
                  "head_span_seconds": getattr(service.store, "head_span", None), "levels": levels,
                  "size_cap_bytes": getattr(service.store, "size_cap_bytes", None)},
        "kernel_log": {"lines_per_instance": service.kernel_log.max_lines, "retention_seconds": service.kernel_log.keep},
    })


@bp.get("/metrics")
@doc("Prometheus exposition of the latest collection and of the service itself.",
     responses={200: STR}, content_type="text/plain")
def metrics():
    # Served here only when reads are protected (auth has checked the token by now); otherwise
    # the WSGI fast path answers before Flask. Both render through the same cached function.
    body, content_type, encoding = current_app.extensions["diag"]["metrics"].body(
        request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", ""))
    r = Response(body, content_type=content_type)
    if encoding:
        r.headers["Content-Encoding"] = encoding
    r.vary.update(("Accept", "Accept-Encoding"))
    return r
