"""Renders the API's one error shape (diag.errors) for every failure, the unexpected included."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from diag.errors import ApiError, error_body

log = logging.getLogger(__name__)


def error_response(status: int, message: str, field: str | None = None, code: str | None = None,
                   errors: list[dict[str, str]] | None = None):
    return jsonify(error_body(status, message, field, code, errors)), status


def install(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(e: ApiError):
        body, status = error_response(e.status, e.message, e.field, e.code, e.errors)
        body.headers.update(e.headers)
        return body, status

    from diag.store.types import StoreFullError

    @app.errorhandler(StoreFullError)
    def _full(e: StoreFullError):
        # A full disk is the server's condition, not a bug: every write route says so alike.
        return error_response(507, f"the service cannot write now: {e}", code="InsufficientStorage")

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        body, status = error_response(e.code or 500, e.description or e.name)
        # Keep the exception's own headers but its text/html Content-Type: a 405 must name the
        # methods the resource allows (`Allow`, RFC 9110 15.5.6), a 429 or 503 its Retry-After.
        body.headers.extend((k, v) for k, v in e.get_headers() if k.lower() != "content-type")
        return body, status

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        # Never a stack trace to the client; the log keeps it.
        log.exception("unhandled error")
        return error_response(500, "internal error; see the service log", code="InternalError")
