"""/healthz and /metrics: is the service itself working, and what it sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from diag import __version__
from diag.alerting.exposition import AlertsCollector
from diag.collection import Collection
from diag.exposition import BatchCollector, HealthCollector, InstanceInfoCollector, ServiceCollector
from diag.settings.stale import HEALTHZ_FLOOR, stale_after
from diag.web.openapi import STR, doc
from diag.web.parts import parts
from diag.web.schemas import HEALTHZ, STATUS
from diag.wiring import Parts

bp = Blueprint("service", __name__)


def init_registry(p: Parts) -> CollectorRegistry:
    """The app's own registry: everything /metrics shows except the latest batch's families,
    which `BatchExposition` renders once per collection (see there)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(p.collection, p.jobs, p.store))
    reg.register(HealthCollector(p.instances))
    reg.register(InstanceInfoCollector(p.instances))
    reg.register(p.jobs.durations)
    reg.register(AlertsCollector(p.alerting))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class BatchExposition:
    """The latest batch's families, encoded once per batch and content type.

    They change only when a collection ends, yet encoding them is most of a scrape's
    cost (hundreds of lines); under many concurrent scrapers re-encoding them per
    request made /metrics CPU-bound. The self-monitoring families stay fresh.
    """

    def __init__(self, collection: Collection, instance_id: str) -> None:
        self._collection = collection
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(BatchCollector(self._batch, instance_id=lambda: instance_id))
        self._pinned = None  # the batch being encoded, so the collector and the cache key agree
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[object, bytes]] = {}

    def _batch(self):
        return self._pinned

    def render(self, encoder: Callable[[CollectorRegistry], bytes], content_type: str) -> bytes:
        batch = self._collection.last_batch
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


@bp.get("/healthz")
@doc("Is the service itself working?", responses={200: HEALTHZ, 503: HEALTHZ})
def healthz():
    p, scheduler = parts(), current_app.extensions["diag"]["scheduler"]
    collection = p.collection
    failing: list[str] = []
    if scheduler is not None and not scheduler.running:
        failing.append("scheduler: not running")
    last = collection.last_batch.ts if collection.last_batch else None
    # A service that has not collected for 3 intervals is not doing its job, whatever else works.
    grace = stale_after(p.config.interval, HEALTHZ_FLOOR)
    if (last is None and time.time() - collection.started_at > grace) or (last is not None and time.time() - last > grace):
        failing.append(f"collection: none for more than {grace:.0f}s")
    if collection.store_failing is not None:  # collecting, but the samples are lost (disk full, ...)
        failing.append(collection.store_failing)
    # Writes refused for want of room (ingest, or any route writing diag.db): the last one
    # failed, so the service is not doing its job even while it still answers reads.
    for full in (p.writer.full if p.writer is not None else None, p.db.full):
        if full and f"store: {full}" != collection.store_failing:
            failing.append(f"disk full: {full}")
    body = {"status": "ok" if not failing else "failing", "version": __version__,
            "instance_id": p.instance_id, "last_collection": last}
    if failing:
        body["failing"] = failing
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/api/v1/status")
@doc("What the service keeps and for how long: each level of the store (raw points and the 1m, 5m, "
     "1h and 1d roll-ups, which answer for recent points from the first minute) and the kernel log.",
     responses={200: STATUS})
def status():
    p = parts()
    return jsonify({
        "version": __version__, "instance_id": p.instance_id, "started_at": p.collection.started_at,
        "store": p.store.keeps(),
        "kernel_log": {"lines_per_instance": p.kernel_log.max_lines, "retention_seconds": p.kernel_log.keep},
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
