"""GET /metrics without Flask: the whole exposition cached for up to a second.

Prometheus scrapes every 15 s or more, so a body at most one second old is as good as
a fresh one; serving it from bytes keeps /metrics cheap under many concurrent
scrapers (and a scrape storm cannot starve the API). While one request renders a new
body, the others get the previous one instead of waiting for it. With reads protected,
or a Host header the service does not answer to (diag.web.origin), the request goes
through Flask, where the token and the Host are checked. A scraper that accepts gzip
(Prometheus does) gets the body gzipped, compressed once per rendered body.
"""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any, Callable, Iterable

from flask import Flask
from prometheus_client.exposition import choose_encoder

from diag.config import reads_protected
from diag.web.origin import host_allowed

MAX_AGE = 1.0


class MetricsFastPath:
    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]], histogram: Any = None) -> None:
        self.app, self.wsgi_app, self.histogram = app, wsgi_app, histogram
        # content type -> (monotonic time, (batch, health generation), body)
        self._cache: dict[str, tuple[float, tuple[object, int], bytes]] = {}
        self._lock = threading.Lock()
        # content type -> (the rendered body it compresses, that body gzipped)
        self._gzipped: dict[str, tuple[bytes, bytes]] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        ext = self.app.extensions["diag"]
        if (environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") != "GET"
                or reads_protected(ext["parts"].config) or not host_allowed(ext["parts"].config, environ)):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body, content_type, encoding = self.body(environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                   ("Vary", "Accept, Accept-Encoding")]
        start_response("200 OK", headers + ([("Content-Encoding", encoding)] if encoding else []))
        if self.histogram is not None:
            self.histogram.labels("/metrics", "GET", "2xx").observe(time.perf_counter() - started)
        return [body]

    def _fresh(self, content_type: str, key: tuple[object, int]) -> bytes | None:
        hit = self._cache.get(content_type)
        # A new collection or a changed health state is shown at once; only the
        # self-monitoring part may lag.
        if hit is not None and hit[1][0] is key[0] and hit[1][1] == key[1] and time.monotonic() - hit[0] < MAX_AGE:
            return hit[2]
        return None

    def body(self, accept: str, accept_encoding: str = "") -> tuple[bytes, str, str]:
        """The exposition for these Accept headers, its content type and content encoding
        ("" or "gzip"); also used by the Flask route, which serves /metrics when reads are
        protected."""
        encoder, content_type = choose_encoder(accept)
        body = self._body(encoder, content_type)
        if not accepts_gzip(accept_encoding):
            return body, content_type, ""
        hit = self._gzipped.get(content_type)
        if hit is None or hit[0] is not body:
            hit = self._gzipped[content_type] = (body, gzip.compress(body, compresslevel=6, mtime=0))
        return hit[1], content_type, "gzip"

    def _body(self, encoder: Callable, content_type: str) -> bytes:
        ext = self.app.extensions["diag"]
        p = ext["parts"]
        key = (p.collection.last_batch, p.instances.health_generation)
        body = self._fresh(content_type, key)
        if body is not None:
            return body
        last = self._cache.get(content_type)
        if last is None:
            self._lock.acquire()  # nothing to serve yet: wait for the first render
        elif not self._lock.acquire(blocking=False):
            # Another request is rendering (it reads the database, and under load waits its
            # turn for the GIL): serve the previous body rather than queue every scrape
            # behind it. It is at most one render old; a scrape that finds no render
            # running renders the new one itself.
            return last[2]
        try:
            body = self._fresh(content_type, key)
            if body is None:
                body = ext["batch_exposition"].render(encoder, content_type) + encoder(ext["registry"])
                self._cache[content_type] = (time.monotonic(), key, body)
            return body
        finally:
            self._lock.release()


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (not with q=0)."""
    for part in header.split(","):
        token, _, params = part.strip().partition(";")
        if token.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False
