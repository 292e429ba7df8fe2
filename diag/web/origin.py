"""Browsers must not be able to change anything through the JSON API from another site.

Scripts and agents send no Origin; a browser always does on a cross-site POST. Without a
token a form on any web page could otherwise post to http://127.0.0.1:8080/api/v1/... .
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from diag.web.errors import error_response

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def install(app: Flask) -> None:
    @app.before_request
    def _same_origin_only():
        if request.method not in MUTATING or not request.path.startswith("/api/"):
            return None
        if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
            return error_response(403, "cross-site requests may not change anything", code="Forbidden")
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            here = urlsplit(request.host_url)
            there = urlsplit(origin)
            if (there.scheme, there.netloc) != (here.scheme, here.netloc):
                return error_response(403, f"requests from {origin} may not change anything here", code="Forbidden")
        elif origin == "null":
            return error_response(403, "requests from an opaque origin may not change anything", code="Forbidden")
        return None
