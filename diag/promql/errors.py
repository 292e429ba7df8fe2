"""Prometheus' error types (`errorType` in its JSON) with the HTTP status it answers them with."""

from __future__ import annotations


class PromQLError(Exception):
    error_type = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadData(PromQLError):
    """The request or the query is wrong: a parse error, a bad parameter, an unsupported function."""

    error_type = "bad_data"
    status = 400


class ExecutionError(PromQLError):
    """The query is valid but cannot be answered (duplicate label sets, many-to-many matching)."""

    error_type = "execution"
    status = 422


class QueryTimeout(PromQLError):
    error_type = "timeout"
    status = 503


class Unavailable(PromQLError):
    error_type = "unavailable"
    status = 503
