"""The one error shape of the API and the pages: {"error": {"code", "message", "field"}}, and
with a body invalid in several places also `errors`: every problem as {"field", "message"}
(the first of them is `field` and `message`).

Neutral ground: an engine, a request parser or a page raises ApiError, and diag.web renders
it (diag.web.errors), so none of them needs the web package to say what went wrong.
"""

from __future__ import annotations

CODES = {400: "InvalidParameter", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
         405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge", 421: "MisdirectedRequest", 415: "UnsupportedMediaType",
         422: "InvalidParameter", 424: "FailedDependency", 429: "TooManyRequests", 507: "InsufficientStorage",
         503: "Unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.errors = status, message, field, errors
        self.code = code or CODES.get(status, "Error")
        self.headers = headers or {}  # e.g. Retry-After with a 429


def error_body(status: int, message: str, field: str | None = None, code: str | None = None,
               errors: list[dict[str, str]] | None = None) -> dict[str, dict[str, object]]:
    body: dict[str, object] = {"code": code or CODES.get(status, "Error"), "message": message}
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return {"error": body}
