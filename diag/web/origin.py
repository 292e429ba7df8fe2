"""Browsers must not be able to change anything through the JSON API from another site.

Scripts and agents send no Origin; a browser always does on a cross-site POST. Without a
token a form on any web page could otherwise post to http://127.0.0.1:8080/api/v1/... .

Nor read or change anything by DNS rebinding: a page on evil.example whose name then
resolves to 127.0.0.1 is same-origin with itself, so Origin checks pass, but its requests
carry `Host: evil.example`. Without a token the service answers only loopback Host names.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request

from diag.web.errors import error_response

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback: localhost, 127.0.0.0/8 or [::1],
    with or without a port. Written forms only: a name is never resolved here."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep:
            return False
    else:
        name, _, rest = host.partition(":")
        rest = ":" + rest if _ else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and rest[1:].isascii()):
        return False
    if name in ("localhost", "localhost."):
        return True
    if not name or not all(c in "0123456789abcdef.:" for c in name):
        return False  # ipaddress would accept forms no browser sends (scoped, %-zones)
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    # "[127.0.0.1]" is no Host a browser sends: IPv4 only bare, IPv6 only bracketed.
    return addr.is_loopback and (addr.version == 6) == host.startswith("[")


def host_allowed(config: Any, environ: dict) -> bool:
    """With a token the token guards the service; without one only loopback names are answered."""
    if config.token:
        return True
    host = environ.get("HTTP_HOST")
    # No Host at all is an HTTP/1.0 script, never a browser (rebinding needs the browser's Host).
    return host is None or loopback_host(host)


def install(app: Flask) -> None:
    @app.before_request
    def _loopback_host_only():
        config = app.extensions["diag"]["parts"].config
        if not host_allowed(config, request.environ):
            return error_response(421, "this service has no token and answers only to localhost, 127.0.0.0/8 "
                                       "and [::1] (set DIAG_TOKEN to serve other names)", code="MisdirectedRequest")
        return None

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
