"""Self-monitoring of the HTTP service: request counts and latencies in /metrics.

One histogram, labelled by the route's URL template (never the raw path: ids and
typos would make a series each), the method and the status class. Its `_count` is the
request count, so no separate counter is kept.
"""

from __future__ import annotations

import time

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Histogram

# 1 ms .. 5 s: a cached /metrics answers in about a millisecond, a day-long query in
# tens of milliseconds, and anything beyond 5 s has already failed its client.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Any token is a legal HTTP method; only these get a label value of their own, so a
# client cannot grow the exposition by inventing methods.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_START = "diag.request_start"
UNMATCHED = "unmatched"  # 404s and 405s: no route, so no template to name


def install(app: Flask, registry: CollectorRegistry) -> Histogram:
    """Time every request of `app` into `registry`; returns the histogram (tests read it)."""
    hist = Histogram(
        "diag_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template, method and status class.",
        ["endpoint", "method", "status"],
        registry=registry,
        buckets=BUCKETS,
    )

    @app.before_request
    def _start() -> None:
        request.environ[_START] = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        # after_request also runs for answers made by the error handlers, so failures
        # (4xx from validation, 5xx from a bug) are counted under their own route.
        started = request.environ.get(_START)
        if started is not None:
            rule = request.url_rule
            method = request.method if request.method in _METHODS else "other"
            hist.labels(rule.rule if rule is not None else UNMATCHED, method,
                        f"{response.status_code // 100}xx").observe(time.perf_counter() - started)
        return response

    return hist
