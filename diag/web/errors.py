"""One JSON error shape for every failure: {"error": {"code", "message", "field"}}, and
with a body invalid in several places also `errors`: every problem as {"field", "message"}
(the first of them is `field` and `message`)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

_CODES = {400: "InvalidParameter", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
          405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 421: "MisdirectedRequest", 415: "UnsupportedMediaType",
          422: "InvalidParameter", 424: "FailedDependency", 429: "TooManyRequests", 507: "InsufficientStorage",
          503: "Unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.errors = status, message, field, errors
        self.code = code or _CODES.get(status, "Error")
        self.headers = headers or {}  # e.g. Retry-After with a 429


def error_response(status: int, message: str, field: str | None = None, code: str | None = None,
                   errors: list[dict[str, str]] | None = None):
    body: dict[str, object] = {"code": code or _CODES.get(status, "Error"), "message": message}
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return jsonify({"error": body}), status


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
